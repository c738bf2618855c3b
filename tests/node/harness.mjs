// What the browser scripts share: their settings from the environment, and the JSON lines
// they report their steps in to the Rust test that runs them.

/** The value of a required environment variable. */
export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

/** Reports one step to the Rust side. */
export const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
