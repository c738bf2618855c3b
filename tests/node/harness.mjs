// What the browser scripts share: their settings from the environment, the JSON lines they
// report their steps in to the Rust test that runs them, and how Chromium is started.
import fs from 'node:fs';
import path from 'node:path';
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

/** A phone-sized browser context (the guard app's), at `geolocation`, with `permissions`. */
export const phoneContext = (browser, geolocation, permissions) => browser.newContext({
  ignoreHTTPSErrors: true,
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  geolocation,
  permissions,
});

/** A desktop-sized page (the dashboard's) of a new context; its page errors go to `problems`. */
export async function desktopPage(browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { context, page, problems };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the Rust side creates `control/name` (the step may go on): up to 2 min. */
export async function proceed(control, name) {
  const file = path.join(control, name);
  for (let i = 0; i < 1200 && !fs.existsSync(file); i += 1) await sleep(100);
  if (!fs.existsSync(file)) throw new Error(`never told to go on after ${name}`);
}

/** Page errors and CSP refusals of `page` go to `problems`. */
export function watchPage(page, who, problems) {
  page.on('pageerror', (e) => problems.push(`${who} page error: ${e.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`${who}: ${msg.text()}`);
  });
}

/** The appliance has no internet: `context` reaches its own origin only; the rest is listed. */
export async function sameOriginOnly(context, origin, foreign) {
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === origin || url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    foreign.push(url.href);
    return route.abort();
  });
}

/**
 * The supervisor's dashboard signed in with `token`, in a desktop-sized context of its own that
 * reaches `origin` only (anything else is listed in `foreign`), once its connection is open;
 * its page errors go to `problems`. The context too, for the pages the dashboard opens.
 */
export async function signedInDashboard(browser, { origin, token, foreign, problems, timeout = 30000 }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  await sameOriginOnly(context, origin, foreign);
  await context.addInitScript((t) => sessionStorage.setItem('lookout.token', t), token);
  const page = await context.newPage();
  watchPage(page, 'dashboard', problems);
  await page.goto(`${origin}/`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout });
  return { context, page };
}
