// The dashboard's operations panel shows an alarm receiving centre's receiver up, then down when
// it stops answering, in real headless Chromium, for tests/arc.rs. Steps are JSON lines on
// stdout; screenshots go to LOOKOUT_ARTIFACTS.
import fs from 'node:fs';
import path from 'node:path';
import { desktopPage, emit, env, launch } from './harness.mjs';

const link = env('LOOKOUT_LINK');
const artifacts = env('LOOKOUT_ARTIFACTS');
fs.mkdirSync(artifacts, { recursive: true });

async function main() {
  const browser = await launch();
  const { page, problems } = await desktopPage(browser);
  await page.goto(link);
  const row = page.locator('#ops dt', { hasText: /^ARC arc1$/ }).locator('xpath=following-sibling::dd[1]');
  await row.waitFor({ timeout: 30000 });
  await page.waitForFunction(() => [...document.querySelectorAll('#ops dd')].some((d) => d.textContent.startsWith('up (')), null, { timeout: 30000 });
  emit({ event: 'up', text: await row.textContent() });
  await page.locator('.card.ops').screenshot({ path: path.join(artifacts, 'arc-up.png') });
  // The panel refreshes every 5 s; the receiver shows down within two refreshes of the check.
  await page.locator('#ops dd.down').waitFor({ timeout: 30000 });
  emit({ event: 'down', text: await row.textContent(), problems });
  await page.locator('.card.ops').screenshot({ path: path.join(artifacts, 'arc-down.png') });
  await browser.close();
}

main().catch((e) => {
  emit({ event: 'fail', error: String(e.stack || e) });
  process.exit(1);
});
