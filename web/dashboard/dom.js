// Small DOM helpers shared by the dashboard's modules: element and SVG builders, a selector,
// coalesced renders, ages and times for display, a CSV cell, and a download from a blob: URL
// (of text made here, or of a file fetched with the token).

export const $ = (selector) => document.querySelector(selector);
const SVG = 'http://www.w3.org/2000/svg';

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children);
  return node;
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

/** `fn` run once, `ms` (or the next frame when 0) after the first of any number of calls. */
export function coalesce(fn, ms) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    const run = () => {
      pending = false;
      fn();
    };
    if (ms) setTimeout(run, ms);
    else requestAnimationFrame(run);
  };
}

export function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}

/** A local date and time for a `datetime-local` input. */
export function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function when(ms) {
  return new Date(ms).toLocaleString();
}

/** One CSV cell: quoted when it must be; a leading =, +, - or @ cannot become a formula. */
export function csvCell(value) {
  let s = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function download(name, text, type) {
  saveBlob(name, new Blob([text], { type }));
}

/** Saves a blob (e.g. a report fetched with the token) under `name`, through a blob: URL. */
export function saveBlob(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The text of a message's data: a string, `text`, or its JSON. */
export function textOf(data) {
  if (typeof data === 'string') return data;
  if (data && typeof data.text === 'string') return data.text;
  if (data && typeof data.message === 'string') return data.message;
  return JSON.stringify(data);
}
