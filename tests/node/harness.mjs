// What the browser scripts share: their settings from the environment, the JSON lines they
// report their steps in to the Rust test that runs them, and how Chromium is started.
import { chromium } from 'playwright-core';

/** The value of a required environment variable. */
export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

/** Reports one step to the Rust side. */
export const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

/** Debian's headless Chromium (or CHROMIUM), with `args` besides the sandbox flag. */
export const launch = (args = []) =>
  chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', ...args],
  });
