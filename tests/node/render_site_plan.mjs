// Renders the demo's site plan (web/demo/site-plan.svg) to the JPEG `lookout demo` configures
// (web/demo/site-plan.jpg): the shift report's PDF embeds a JPEG or PNG plan as it is, and the
// appliance carries no SVG renderer. Run after changing the SVG:
//   node tests/node/render_site_plan.mjs
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './harness.mjs';

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'demo');
const svg = fs.readFileSync(path.join(web, 'site-plan.svg'), 'utf8');
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1000, height: 800 }, deviceScaleFactor: 1 });
await page.setContent(`<body style="margin:0">${svg.replace('<svg ', '<svg width="1000" height="800" ')}</body>`);
await page.screenshot({ path: path.join(web, 'site-plan.jpg'), type: 'jpeg', quality: 85, clip: { x: 0, y: 0, width: 1000, height: 800 } });
await browser.close();
