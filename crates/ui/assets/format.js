// Small shared helpers: DOM building without innerHTML, duration/time formatting (local time
// with the zone), service colours, and parsing of Go-style durations and k=v tag text.

/** el('div', {class: 'x', onclick: f}, child, 'text', ...) — attributes set safely, no HTML parsing. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
}

/** Microseconds as "1.25s", "12.3ms", "850µs". */
export function fmtDuration(us) {
  if (!Number.isFinite(us)) return '–';
  if (us >= 60e6) { const m = Math.floor(us / 60e6); return `${m}m${((us - m * 60e6) / 1e6).toFixed(1)}s`; }
  if (us >= 1e6) return `${trim(us / 1e6)}s`;
  if (us >= 1e3) return `${trim(us / 1e3)}ms`;
  return `${Math.round(us)}µs`;
}
function trim(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  fractionalSecondDigits: 3, hour12: false, timeZoneName: 'short',
});
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const timeMs = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3, hour12: false });

/** Unix µs as local date and time with the zone, e.g. "Nov 21, 2026, 07:01:02.345 UTC". */
export function fmtTime(us) { return dateTime.format(new Date(us / 1000)); }
/** Unix µs as a short local clock time for axes. */
export function fmtClock(us, withMs = false) { return (withMs ? timeMs : timeOnly).format(new Date(us / 1000)); }
/** Unix µs as an ISO instant (for <time datetime>). */
export function isoTime(us) { return new Date(us / 1000).toISOString(); }

const PALETTE = ['#4e79d8', '#e8833a', '#3fa66b', '#d64f5c', '#8c6bd0', '#c9a227', '#2fa4b5', '#d36fb0',
  '#7f8c3a', '#b0703c', '#5b8fb0', '#9c5a8f', '#46a08a', '#c45f2b', '#6d7fcc', '#a1a142'];
const assigned = new Map();
/** A stable colour per service name (hash of the name into a palette). */
export function serviceColor(name) {
  let c = assigned.get(name);
  if (!c) {
    let h = 2166136261;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
    c = PALETTE[(h >>> 0) % PALETTE.length];
    assigned.set(name, c);
  }
  return c;
}

/** Colour-keyed service chips for [[name, spanCount]] entries; past `max`, a "+N more" note. */
export function serviceChips(entries, max = 12) {
  const chips = entries.slice(0, max).map(([name, n]) => el('span', { class: 'chip' },
    el('i', { style: { background: serviceColor(name) }, 'aria-hidden': 'true' }), `${name} (${n})`));
  if (entries.length > max) {
    chips.push(el('span', { class: 'chip muted', title: entries.slice(max).map(([name]) => name).join(', ') }, `+${entries.length - max} more`));
  }
  return el('span', { class: 'chips' }, chips);
}

/** A Go duration ("150ms", "1.5s", "2m") to µs, or NaN when it is not one. */
export function parseGoDuration(text) {
  const t = String(text).trim();
  if (!t) return NaN;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  const scale = { ns: 1e-3, us: 1, 'µs': 1, 'μs': 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };
  let total = 0; let m; let end = 0;
  while ((m = re.exec(t))) { total += parseFloat(m[1]) * scale[m[2]]; end = re.lastIndex; }
  return end === t.length ? total : NaN;
}

/** `k=v k2="a b"` to [[k, v], ...]; throws Error naming the bad part. */
export function parseTagText(text) {
  const out = [];
  const re = /\s*([^\s=]+)=("((?:[^"\\]|\\.)*)"|\S*)/y;
  let i = 0; const s = String(text).trim();
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) throw new Error(`"${s.slice(i).trim().split(/\s+/)[0]}" is not key=value`);
    out.push([m[1], m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2]]);
    i = re.lastIndex;
    while (s[i] === ' ') i++;
  }
  return out;
}

/** [[k, v]] back to `k=v` text, quoting values with spaces. */
export function tagsToText(pairs) {
  return pairs.map(([k, v]) => (/[\s"]/.test(v) || v === '' ? `${k}="${v.replace(/["\\]/g, '\\$&')}"` : `${k}=${v}`)).join(' ');
}

/** A trace id as written in URLs and the API: lowercase hex, or null when it is not one. */
export function normTraceId(text) {
  const t = String(text).trim().toLowerCase();
  return /^[0-9a-f]{1,32}$/.test(t) ? t : null;
}
