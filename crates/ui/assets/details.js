// The span details panel: service, operation, kind, ids, start offset, duration, tags, events
// (logs) with their times, process (resource) tags, and references/links to other spans.
import { el, fmtDuration, fmtTime } from './format.js';

/** The panel for `span` of `model`; `onOpenSpan(span)` follows a reference inside the trace. */
export function renderDetails(span, model, { onOpenSpan, onClose }) {
  const offset = span.start - model.start;
  const kv = (rows) => el('table', { class: 'kv' }, el('tbody', {}, rows.map(([k, v, cls]) => el('tr', { class: cls || null }, el('th', { scope: 'row' }, k), el('td', {}, v)))));
  const tagRows = (tags) => tags.map((t) => [t.key, fmtValue(t), isErrorTag(t) ? 'err' : null]);
  const sections = [];

  sections.push(kv([
    ['service', span.service],
    ['operation', span.operation],
    ['kind', span.kind || '(unspecified)'],
    ['span ID', span.spanID],
    ['trace ID', span.traceID],
    ['parent ID', span.parent ? span.parent.spanID : '(root)'],
    ['start', `+${fmtDuration(offset)} (${fmtTime(span.start)})`],
    ['duration', fmtDuration(span.duration)],
    ['self time', fmtDuration(span.selfTime)],
    ['emitted by', span.proxy ? 'a proxy (component=proxy)' : 'the application'],
  ]));

  sections.push(el('h3', {}, `Tags (${span.tags.length})`), span.tags.length ? kv(tagRows(span.tags)) : el('p', { class: 'muted' }, 'No tags.'));

  sections.push(el('h3', {}, `Events (${span.logs.length})`));
  if (!span.logs.length) sections.push(el('p', { class: 'muted' }, 'No events.'));
  for (const log of span.logs) {
    sections.push(el('div', { class: 'log' },
      el('div', { class: 't' }, `+${fmtDuration(log.timestamp - model.start)} into the trace, +${fmtDuration(log.timestamp - span.start)} into the span · ${fmtTime(log.timestamp)}`),
      kv(tagRows(log.fields || []))));
  }

  const ptags = span.process.tags || [];
  sections.push(el('h3', {}, `Process (${span.service})`), ptags.length ? kv(tagRows(ptags)) : el('p', { class: 'muted' }, 'No process tags.'));

  sections.push(el('h3', {}, `References (${span.references.length})`));
  if (!span.references.length) sections.push(el('p', { class: 'muted' }, 'None: a root span.'));
  else {
    sections.push(el('ul', {}, span.references.map((r) => {
      const target = r.traceID === model.traceID ? model.byId.get(r.spanID) : null;
      const what = r.refType === 'CHILD_OF' ? 'child of' : 'follows from';
      if (target) {
        return el('li', {}, `${what} `, el('a', { href: `#${r.spanID}`, onclick: (e) => { e.preventDefault(); onOpenSpan(target); } }, `${target.service}: ${target.operation}`), el('span', { class: 'mono muted' }, ` ${r.spanID}`));
      }
      if (r.traceID !== model.traceID) {
        return el('li', {}, `${what} `, el('a', { href: `/trace/${r.traceID}?uiFind=${r.spanID}` }, `span ${r.spanID} in trace ${r.traceID}`));
      }
      return el('li', {}, `${what} span ${r.spanID} (not in this trace)`);
    })));
  }
  if (span.raw.warnings && span.raw.warnings.length) {
    sections.push(el('h3', {}, 'Warnings'), el('ul', {}, span.raw.warnings.map((w) => el('li', {}, w))));
  }

  return el('aside', { class: 'details', 'aria-labelledby': 'details-title', 'data-testid': 'span-details' },
    el('button', { class: 'close', type: 'button', 'aria-label': 'Close span details', onclick: onClose }, '✕'),
    el('h2', { id: 'details-title', tabindex: '-1' },
      span.error ? el('span', { class: 'badge err' }, 'error') : null, ' ',
      span.proxy ? el('span', { class: 'badge proxy' }, 'proxy') : null, ' ',
      `${span.service}: ${span.operation}`),
    sections);
}

function fmtValue(t) {
  if (t.type === 'binary') return `(${String(t.value).length} base64 chars) ${String(t.value).slice(0, 64)}`;
  return typeof t.value === 'string' ? t.value : JSON.stringify(t.value);
}

function isErrorTag(t) {
  return (t.key === 'error' && (t.value === true || t.value === 'true')) || (t.key === 'otel.status_code' && t.value === 'ERROR');
}
