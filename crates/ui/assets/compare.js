// The compare page (`/compare?a=<id>&b=<id>`): two traces matched span by span on
// service + operation + position in the tree; lists spans added, removed, slower and faster.
import * as api from './api.js';
import { navigate } from './app.js';
import { el, fmtDuration, normTraceId } from './format.js';
import { errorBox } from './search.js';
import { buildTrace } from './tracemodel.js';

export function mount(main, url) {
  document.title = 'Compare traces · meshtrace';
  const a = url.searchParams.get('a') || ''; const b = url.searchParams.get('b') || '';
  const inA = el('input', { id: 'c-a', value: a, class: 'mono', size: '34', placeholder: 'Trace id A (baseline)' });
  const inB = el('input', { id: 'c-b', value: b, class: 'mono', size: '34', placeholder: 'Trace id B' });
  const form = el('form', {},
    el('div', { class: 'field' }, el('label', { for: 'c-a' }, 'Baseline trace (A)'), inA),
    el('div', { class: 'field' }, el('label', { for: 'c-b' }, 'Compared trace (B)'), inB),
    el('button', { type: 'submit', class: 'primary' }, 'Compare'));
  const out = el('div', { 'aria-live': 'polite' });
  main.append(el('div', { class: 'compare-page' }, el('h1', {}, 'Compare two traces'), form, out));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const ia = normTraceId(inA.value); const ib = normTraceId(inB.value);
    if (!ia || !ib) { out.replaceChildren(el('p', { class: 'notice error', role: 'alert' }, 'Both trace ids must be 1 to 32 hexadecimal digits.')); return; }
    navigate(`/compare?a=${ia}&b=${ib}`);
  });
  const ia = normTraceId(a); const ib = normTraceId(b);
  if (!ia || !ib) { out.append(el('p', { class: 'muted' }, 'Enter two trace ids. Spans are matched by service, operation and their path from the root.')); return null; }
  const aborter = new AbortController();
  (async () => {
    out.replaceChildren(el('p', { class: 'muted' }, 'Loading both traces…'));
    let ta; let tb;
    try {
      [ta, tb] = await Promise.all([api.trace(ia, aborter.signal), api.trace(ib, aborter.signal)]);
    } catch (e) {
      if (e.name !== 'AbortError') out.replaceChildren(errorBox('Cannot load both traces', e));
      return;
    }
    out.replaceChildren(diffTable(buildTrace(ta), buildTrace(tb)));
  })();
  return () => aborter.abort();
}

/** Spans keyed by their path of service:operation from the root, with a counter for repeats. */
function keyed(model) {
  const out = new Map(); const pathOf = new Map();
  for (const s of model.order) {
    const base = `${s.parent ? pathOf.get(s.parent) : ''}/${s.service}:${s.operation}`;
    let n = 0; while (out.has(`${base}#${n}`)) n++;
    const key = `${base}#${n}`;
    pathOf.set(s, base);
    out.set(key, s);
  }
  return out;
}

function diffTable(A, B) {
  const ka = keyed(A); const kb = keyed(B);
  const rows = [];
  for (const [k, s] of ka) {
    const t = kb.get(k);
    if (!t) rows.push(['removed', s, null]);
    else rows.push([t.duration > s.duration * 1.1 && t.duration - s.duration > 100 ? 'slower' : t.duration < s.duration * 0.9 ? 'faster' : 'same', s, t]);
  }
  for (const [k, t] of kb) if (!ka.has(k)) rows.push(['added', null, t]);
  const count = (w) => rows.filter((r) => r[0] === w).length;
  const order = { slower: 0, added: 1, removed: 2, faster: 3, same: 4 };
  rows.sort((x, y) => order[x[0]] - order[y[0]]);
  const cell = (model, x) => (x ? el('a', { href: `/trace/${model.traceID}?uiFind=${x.spanID}` }, fmtDuration(x.duration)) : '–');
  return el('div', {},
    el('p', { 'data-testid': 'compare-summary' }, `A: ${A.spans.length} spans, ${fmtDuration(A.duration)} · B: ${B.spans.length} spans, ${fmtDuration(B.duration)} · `,
      `${count('added')} added, ${count('removed')} removed, ${count('slower')} slower, ${count('faster')} faster`),
    el('table', { class: 'diff' },
      el('thead', {}, el('tr', {}, ['Change', 'Service: operation', 'A', 'B', 'Δ'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.map(([what, s, t]) => {
        const x = s || t;
        return el('tr', { class: what }, el('td', {}, what), el('td', {}, `${x.service}: ${x.operation}`),
          el('td', {}, cell(A, s)), el('td', {}, cell(B, t)),
          el('td', { class: 'delta' }, s && t ? `${t.duration >= s.duration ? '+' : '−'}${fmtDuration(Math.abs(t.duration - s.duration))}` : ''));
      }))));
}
