// The service graph page (`/dependencies?lookback=..`): services as nodes and calls as edges with
// counts (and error rates when the API gives `errorCount`), from /api/dependencies over the
// chosen window, in a deterministic layered SVG layout, plus the same data as a table.
import * as api from './api.js';
import { navigate } from './app.js';
import { el, serviceColor, svg } from './format.js';
import { errorBox } from './search.js';

const WINDOWS = [['1h', 'Last hour', 3600e3], ['6h', 'Last 6 hours', 6 * 3600e3], ['24h', 'Last 24 hours', 24 * 3600e3],
  ['2d', 'Last 2 days', 48 * 3600e3], ['7d', 'Last 7 days', 7 * 24 * 3600e3]];
const NODE_W = 170; const NODE_H = 36; const COL_GAP = 110; const ROW_GAP = 26; const PAD = 20;

export function mount(main, url) {
  document.title = 'Service graph · meshtrace';
  const lookback = WINDOWS.find(([k]) => k === url.searchParams.get('lookback')) || WINDOWS[2];
  const endTs = Number(url.searchParams.get('endTs')) || Date.now();
  const aborter = new AbortController();
  const sel = el('select', { id: 'g-window' }, WINDOWS.map(([k, label]) => el('option', { value: k, selected: k === lookback[0] }, label)));
  sel.addEventListener('change', () => navigate(`/dependencies?lookback=${sel.value}`));
  const body = el('div', { class: 'graph', 'aria-live': 'polite' }, el('p', { class: 'muted' }, 'Loading dependencies…'));
  main.append(el('div', { class: 'graph-page' },
    el('h1', {}, 'Service graph'),
    el('div', { class: 'controls' }, el('div', { class: 'field' }, el('label', { for: 'g-window' }, 'Time window'), sel),
      el('span', { class: 'muted' }, `Calls between services in the window ending ${new Date(endTs).toLocaleString(undefined, { timeZoneName: 'short' })}.`)),
    body));

  (async () => {
    let links;
    try {
      links = await api.dependencies(endTs, lookback[2], aborter.signal);
    } catch (e) {
      if (e.name !== 'AbortError') body.replaceChildren(errorBox('Cannot load the service graph', e));
      return;
    }
    if (!links.length) {
      body.replaceChildren(el('div', { class: 'notice' }, el('h2', {}, 'No calls between services in this window'),
        el('p', {}, 'The graph is drawn from parent/child spans of different services. Choose a longer window, or send traces that cross services.')));
      return;
    }
    body.replaceChildren(drawGraph(links), edgeTable(links));
  })();
  return () => aborter.abort();
}

/** Layers by longest call path from services nobody calls (cycles broken), names sorted in a layer. */
function layout(links) {
  const names = [...new Set(links.flatMap((l) => [l.parent, l.child]))].sort();
  const out = new Map(names.map((n) => [n, []]));
  const indeg = new Map(names.map((n) => [n, 0]));
  for (const l of links) if (l.parent !== l.child) { out.get(l.parent).push(l.child); indeg.set(l.child, indeg.get(l.child) + 1); }
  const layer = new Map();
  // Kahn's order gives longest-path layers on the acyclic part; what remains (cycles) goes after.
  const queue = names.filter((n) => indeg.get(n) === 0);
  for (const n of queue) layer.set(n, 0);
  const deg = new Map(indeg);
  while (queue.length) {
    const n = queue.shift();
    for (const c of out.get(n)) {
      layer.set(c, Math.max(layer.get(c) || 0, layer.get(n) + 1));
      deg.set(c, deg.get(c) - 1);
      if (deg.get(c) === 0) queue.push(c);
    }
  }
  const maxLayer = Math.max(0, ...layer.values());
  for (const n of names) if (!layer.has(n)) layer.set(n, maxLayer + 1);
  const columns = [];
  for (const n of names) (columns[layer.get(n)] ||= []).push(n);
  // Fewer crossings: each layer ordered by the mean row of its callers in earlier layers.
  const callers = new Map(names.map((n) => [n, []]));
  for (const l of links) if (l.parent !== l.child) callers.get(l.child).push(l.parent);
  const row = new Map();
  columns.forEach((col, x) => {
    if (!col) return;
    const key = (n) => {
      const ys = callers.get(n).filter((p) => layer.get(p) < x && row.has(p)).map((p) => row.get(p));
      return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
    };
    const keys = new Map(col.map((n) => [n, key(n)]));
    col.sort((a, b) => (keys.get(a) - keys.get(b)) || (a < b ? -1 : a > b ? 1 : 0));
    col.forEach((n, y) => row.set(n, y));
  });
  const pos = new Map();
  columns.forEach((col, x) => (col || []).forEach((n, y) => pos.set(n, { x: PAD + x * (NODE_W + COL_GAP), y: PAD + y * (NODE_H + ROW_GAP) })));
  const width = PAD * 2 + columns.length * NODE_W + (columns.length - 1) * COL_GAP;
  const height = PAD * 2 + Math.max(...columns.map((c) => (c || []).length)) * (NODE_H + ROW_GAP) - ROW_GAP;
  return { names, pos, width, height };
}

/** `12%`, `0.4%`, `100%`: a rate in as few characters as reads well. */
function formatRate(rate) {
  const pct = rate * 100;
  return `${pct >= 10 || Number.isInteger(pct) ? Math.round(pct) : pct.toFixed(1)}%`;
}

function drawGraph(links) {
  const { names, pos, width, height } = layout(links);
  const maxCalls = Math.max(...links.map((l) => l.callCount), 1);
  const defs = svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' }, svg('path', { d: 'M0 0 10 5 0 10z' })));
  const edges = links.map((l) => {
    const a = pos.get(l.parent); const b = pos.get(l.child);
    const rate = typeof l.errorCount === 'number' && l.callCount ? l.errorCount / l.callCount : null;
    // The error part only when there are errors, short enough for the gap between columns.
    const label = `${l.callCount} call${l.callCount === 1 ? '' : 's'}${rate ? `, ${formatRate(rate)} err` : ''}`;
    let d; let lx; let ly;
    if (l.parent === l.child) {
      d = `M${a.x + NODE_W - 30} ${a.y} c 0 -26 40 -26 30 0`; lx = a.x + NODE_W - 10; ly = a.y - 22;
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + NODE_W : a.x + NODE_W / 2; const y1 = forward ? a.y + NODE_H / 2 : a.y + NODE_H;
      const x2 = forward ? b.x : b.x + NODE_W / 2; const y2 = forward ? b.y + NODE_H / 2 : b.y + NODE_H;
      const bend = forward ? (x2 - x1) / 2 : 60;
      d = forward ? `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}` : `M${x1} ${y1} C${x1} ${y1 + bend} ${x2} ${y2 + bend} ${x2} ${y2}`;
      lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 5 + (forward ? 0 : bend * 0.75);
    }
    return svg('g', { class: `edge${rate ? ' err' : ''}` },
      svg('path', { d, 'marker-end': 'url(#arrow)', 'stroke-width': (1.2 + 3 * Math.sqrt(l.callCount / maxCalls)).toFixed(1) }, svg('title', {}, `${l.parent} → ${l.child}: ${label}`)),
      svg('text', { x: lx, y: ly, 'text-anchor': 'middle' }, label));
  });
  const nodes = names.map((n) => {
    const p = pos.get(n);
    return svg('a', { href: `/search?service=${encodeURIComponent(n)}`, class: 'node', 'data-service': n, 'aria-label': `Search traces of ${n}` },
      svg('rect', { class: 'box', x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 6 }),
      svg('rect', { x: p.x, y: p.y, width: 6, height: NODE_H, rx: 2, fill: serviceColor(n) }),
      svg('text', { x: p.x + 14, y: p.y + NODE_H / 2 + 4.5 }, n.length > 20 ? `${n.slice(0, 19)}…` : n, svg('title', {}, n)));
  });
  return svg('svg', { width: width + 40, height: height + 30, viewBox: `-10 -20 ${width + 40} ${height + 30}`, role: 'group', 'aria-label': `Service graph: ${names.length} services, ${links.length} call edges`, 'data-testid': 'service-graph' }, defs, edges, nodes);
}

function edgeTable(links) {
  const hasErrors = links.some((l) => typeof l.errorCount === 'number');
  return el('table', { class: 'kv edge-table' },
    el('caption', { class: 'visually-hidden' }, 'Calls between services'),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Caller'), el('th', { scope: 'col' }, 'Callee'), el('th', { scope: 'col' }, 'Calls'), hasErrors ? el('th', { scope: 'col' }, 'Error rate') : null)),
    el('tbody', {}, links.slice().sort((a, b) => b.callCount - a.callCount).map((l) => el('tr', {},
      el('td', {}, l.parent), el('td', {}, l.child), el('td', { class: 'num' }, String(l.callCount)),
      hasErrors ? el('td', { class: 'num' }, l.callCount ? formatRate((l.errorCount || 0) / l.callCount) : '–') : null))));
}
