// Where a page's main-thread time goes while it runs on its own: Chrome's Performance metrics
// split by phase (script, style, layout, the rest), and with PROFILE=DIR a CPU profile and a
// trace of the same window summarised into DIR (what the dashboard's scale test measures with).
import fs from 'node:fs';
import path from 'node:path';

const METRICS = {
  task: 'TaskDuration',
  cpu: 'ThreadTime',
  script: 'ScriptDuration',
  style: 'RecalcStyleDuration',
  layout: 'LayoutDuration',
  layouts: 'LayoutCount',
  recalcs: 'RecalcStyleCount',
  nodes: 'Nodes',
};

async function metrics(cdp) {
  const all = (await cdp.send('Performance.getMetrics')).metrics;
  return Object.fromEntries(Object.entries(METRICS).map(([k, name]) => [k, all.find((m) => m.name === name)?.value ?? 0]));
}

/**
 * Measures `page` for `ms`: main-thread milliseconds in all (`mainThreadMs`, and `cpuMs` on the
 * CPU), in script, style recalculation and layout, how many layouts and style recalculations,
 * and the DOM's size.
 * With PROFILE set, also writes `<PROFILE>/<label>.profile.txt` (self and inclusive time by
 * function) and `<label>.trace.txt` (main-thread events by name, the elements each style
 * recalculation touched, the objects each layout laid out).
 */
export async function measure(browser, context, page, ms, label) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const profile = process.env.PROFILE;
  if (profile) {
    fs.mkdirSync(profile, { recursive: true });
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
    await cdp.send('Profiler.start');
    await browser.startTracing(page, {
      path: path.join(profile, `${label}.trace.json`),
      categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink', 'v8'],
    });
  }
  const before = await metrics(cdp);
  await page.waitForTimeout(ms);
  const after = await metrics(cdp);
  if (profile) {
    const trace = await browser.stopTracing();
    const { profile: cpu } = await cdp.send('Profiler.stop');
    fs.writeFileSync(path.join(profile, `${label}.profile.txt`), summariseProfile(cpu));
    fs.writeFileSync(path.join(profile, `${label}.trace.txt`), summariseTrace(JSON.parse(trace.toString())));
    fs.writeFileSync(path.join(profile, `${label}.nodes.txt`), await page.evaluate(nodesByPart));
  }
  const d = (k) => Math.round((after[k] - before[k]) * 1000);
  return {
    mainThreadMs: d('task'),
    // The main thread's CPU time: on a shared machine, wall-clock task time counts the time
    // other processes held the cores; this does not.
    cpuMs: d('cpu'),
    scriptMs: d('script'),
    styleMs: d('style'),
    layoutMs: d('layout'),
    layouts: Math.round(after.layouts - before.layouts),
    styleRecalcs: Math.round(after.recalcs - before.recalcs),
    nodes: after.nodes,
  };
}

/** In the page: the DOM's nodes under each element with an id, the largest first. */
function nodesByPart() {
  const count = (n) => 1 + [...n.childNodes].reduce((a, c) => a + count(c), 0);
  const parts = [...document.querySelectorAll('[id]')].map((e) => [count(e), `${e.tagName.toLowerCase()}#${e.id}${e.closest('[hidden]') ? ' (hidden)' : ''}`]);
  return `# nodes in the document: ${count(document)}\n${parts.filter(([n]) => n >= 50).sort((a, b) => b[0] - a[0]).map(([n, k]) => `${String(n).padStart(7)}  ${k}`).join('\n')}\n`;
}

const ms = (us) => (us / 1000).toFixed(1).padStart(8);

/** Self time by function, and inclusive time by the page's own functions (web/ URLs). */
function summariseProfile(cpu) {
  const byId = new Map(cpu.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of cpu.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => {
    const f = n.callFrame;
    return `${f.functionName || '(anonymous)'} ${f.url ? `${f.url.replace(/^.*\/\/[^/]+\//, '')}:${f.lineNumber + 1}` : ''}`.trim();
  };
  const self = new Map();
  const inclusive = new Map();
  for (let i = 0; i < cpu.samples.length; i += 1) {
    const dt = cpu.timeDeltas[i + 1] ?? 0;
    let node = byId.get(cpu.samples[i]);
    const key = name(node);
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set();
    for (; node; node = byId.get(parent.get(node.id))) {
      if (!node.callFrame.url || !/\.m?js$/.test(node.callFrame.url) || node.callFrame.url.includes('/vendor/')) continue;
      const k = name(node);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
    }
  }
  const top = (map, n) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${ms(v)} ms  ${k}`).join('\n');
  return `# self time (ms), top 40\n${top(self, 40)}\n\n# inclusive time of the page's functions (ms), top 40\n${top(inclusive, 40)}\n`;
}

/** Main-thread trace events by name; style recalculations by elements touched; layouts. */
function summariseTrace(trace) {
  const events = trace.traceEvents ?? trace;
  const main = events.find((e) => e.name === 'thread_name' && e.args?.name === 'CrRendererMain');
  const onMain = events.filter((e) => main && e.pid === main.pid && e.tid === main.tid && e.ph === 'X' && e.dur);
  const byName = new Map();
  for (const e of onMain) {
    const s = byName.get(e.name) ?? { n: 0, dur: 0 };
    s.n += 1;
    s.dur += e.dur;
    byName.set(e.name, s);
  }
  const lines = ['# main-thread events (inclusive ms, count), top 40'];
  for (const [k, s] of [...byName].sort((a, b) => b[1].dur - a[1].dur).slice(0, 40)) lines.push(`${ms(s.dur)} ms ${String(s.n).padStart(6)}x  ${k}`);
  const styles = onMain.filter((e) => e.name === 'UpdateLayoutTree');
  const elements = styles.map((e) => e.args?.elementCount ?? 0).sort((a, b) => a - b);
  const sum = elements.reduce((a, b) => a + b, 0);
  lines.push('', `# style recalculations: ${styles.length}, elements restyled in all ${sum}, median ${elements[elements.length >> 1] ?? 0}, max ${elements.at(-1) ?? 0}`);
  const layouts = onMain.filter((e) => e.name === 'Layout');
  const dirty = layouts.map((e) => e.args?.beginData?.dirtyObjects ?? 0);
  const total = layouts.map((e) => e.args?.beginData?.totalObjects ?? 0);
  lines.push(`# layouts: ${layouts.length}, dirty objects in all ${dirty.reduce((a, b) => a + b, 0)}, objects of the tree (max) ${Math.max(0, ...total)}`);
  // What started each style recalculation, when the trace says (stack of the script that forced it).
  const causes = new Map();
  for (const e of onMain.filter((x) => x.name === 'UpdateLayoutTree' || x.name === 'Layout')) {
    const frame = e.args?.beginData?.stackTrace?.[0];
    const k = `${e.name} ${frame ? `${frame.functionName} ${String(frame.url).replace(/^.*\/\/[^/]+\//, '')}:${frame.lineNumber}` : '(frame update)'}`;
    const s = causes.get(k) ?? { n: 0, dur: 0 };
    s.n += 1;
    s.dur += e.dur;
    causes.set(k, s);
  }
  lines.push('', '# style and layout by what forced them (ms, count)');
  for (const [k, s] of [...causes].sort((a, b) => b[1].dur - a[1].dur).slice(0, 20)) lines.push(`${ms(s.dur)} ms ${String(s.n).padStart(6)}x  ${k}`);
  return `${lines.join('\n')}\n`;
}
