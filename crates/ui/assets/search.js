// The search page (`/` and `/search?...`): the form (service, operation, tags, durations, time
// range, limit) kept in the URL, the results as a scatter plus a sortable list, the empty state
// for a server without spans, and error states.
import * as api from './api.js';
import { navigate } from './app.js';
import { el, fmtDuration, fmtTime, isoTime, parseGoDuration, parseTagText, serviceChips, tagsToText } from './format.js';
import { drawScatter } from './scatter.js';
import { summarize } from './tracemodel.js';

const LOOKBACKS = [['5m', 'Last 5 minutes', 5 * 60e6], ['15m', 'Last 15 minutes', 15 * 60e6], ['1h', 'Last hour', 3600e6],
  ['6h', 'Last 6 hours', 6 * 3600e6], ['24h', 'Last 24 hours', 24 * 3600e6], ['2d', 'Last 2 days', 48 * 3600e6], ['custom', 'Custom range', 0]];
const SORTS = [['recent', 'Most recent'], ['longest', 'Longest first'], ['shortest', 'Shortest first'], ['spans', 'Most spans'], ['errors', 'Most errors']];

/** The search state a URL holds (Jaeger UI's parameter names; `tags` is JSON). */
function stateFromUrl(url) {
  const p = url.searchParams;
  let tags = [];
  try {
    const json = p.get('tags');
    if (json) tags = Object.entries(JSON.parse(json)).map(([k, v]) => [k, String(v)]);
  } catch { /* a malformed tags param is shown to the user by the API's own error */ }
  for (const t of p.getAll('tag')) { const i = t.indexOf(':'); if (i > 0) tags.push([t.slice(0, i), t.slice(i + 1)]); }
  const lookback = LOOKBACKS.some(([k]) => k === p.get('lookback')) ? p.get('lookback') : (p.get('start') && p.get('end') && !p.get('lookback') ? 'custom' : '1h');
  return {
    service: p.get('service') || '',
    operation: p.get('operation') || '',
    tags,
    lookback,
    start: Number(p.get('start')) || 0,
    end: Number(p.get('end')) || 0,
    minDuration: p.get('minDuration') || '',
    maxDuration: p.get('maxDuration') || '',
    limit: Math.max(1, Math.min(1500, Number(p.get('limit')) || 20)),
    sortBy: SORTS.some(([k]) => k === p.get('sortBy')) ? p.get('sortBy') : 'recent',
  };
}

function urlFromState(s) {
  const p = new URLSearchParams();
  if (s.service) p.set('service', s.service);
  if (s.operation) p.set('operation', s.operation);
  if (s.tags.length) p.set('tags', JSON.stringify(Object.fromEntries(s.tags)));
  p.set('lookback', s.lookback);
  if (s.lookback === 'custom') { p.set('start', String(s.start)); p.set('end', String(s.end)); }
  if (s.minDuration) p.set('minDuration', s.minDuration);
  if (s.maxDuration) p.set('maxDuration', s.maxDuration);
  p.set('limit', String(s.limit));
  if (s.sortBy !== 'recent') p.set('sortBy', s.sortBy);
  return `/search?${p}`;
}

/** The /api/traces parameters for a state, the window resolved against now. */
function apiParams(s) {
  let start; let end;
  if (s.lookback === 'custom' && s.start && s.end) { start = s.start; end = s.end; } else {
    end = Date.now() * 1000;
    start = end - (LOOKBACKS.find(([k]) => k === s.lookback) || LOOKBACKS[2])[2];
  }
  const p = [['start', String(Math.floor(start))], ['end', String(Math.ceil(end))], ['limit', String(s.limit)]];
  if (s.service) p.push(['service', s.service]);
  if (s.operation) p.push(['operation', s.operation]);
  if (s.tags.length) p.push(['tags', JSON.stringify(Object.fromEntries(s.tags))]);
  if (s.minDuration) p.push(['minDuration', s.minDuration]);
  if (s.maxDuration) p.push(['maxDuration', s.maxDuration]);
  return p;
}

const toLocalInput = (us) => { const d = new Date(us / 1000 - new Date(us / 1000).getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); };
const fromLocalInput = (v) => (v ? new Date(v).getTime() * 1000 : 0);

export function mount(main, url) {
  document.title = 'Search · meshtrace';
  const state = stateFromUrl(url);
  const aborter = new AbortController();
  const { signal } = aborter;

  const field = (id, label, control, hint) => el('div', { class: 'field' },
    el('label', { for: id }, label), control, hint ? el('span', { class: 'hint', id: `${id}-hint` }, hint) : null);
  const serviceSel = el('select', { id: 's-service', name: 'service' }, el('option', { value: '' }, 'All services'));
  const opSel = el('select', { id: 's-operation', name: 'operation' }, el('option', { value: '' }, 'All operations'));
  const tagsIn = el('input', { id: 's-tags', name: 'tags', placeholder: 'http.status_code=500 error=true', value: tagsToText(state.tags), 'aria-describedby': 's-tags-hint', spellcheck: 'false', autocomplete: 'off' });
  const lookSel = el('select', { id: 's-lookback', name: 'lookback' }, LOOKBACKS.map(([k, label]) => el('option', { value: k, selected: k === state.lookback }, label)));
  const nowUs = Date.now() * 1000;
  const startIn = el('input', { id: 's-start', type: 'datetime-local', value: toLocalInput(state.start || nowUs - 3600e6) });
  const endIn = el('input', { id: 's-end', type: 'datetime-local', value: toLocalInput(state.end || nowUs) });
  const custom = el('div', { class: 'field-row', hidden: state.lookback !== 'custom' }, field('s-start', 'From', startIn), field('s-end', 'To', endIn));
  const minIn = el('input', { id: 's-min', name: 'minDuration', placeholder: 'e.g. 100ms', value: state.minDuration, 'aria-describedby': 's-dur-hint', autocomplete: 'off' });
  const maxIn = el('input', { id: 's-max', name: 'maxDuration', placeholder: 'e.g. 1.5s', value: state.maxDuration, 'aria-describedby': 's-dur-hint', autocomplete: 'off' });
  const limitIn = el('input', { id: 's-limit', name: 'limit', type: 'number', min: '1', max: '1500', value: String(state.limit) });
  const formError = el('p', { class: 'notice error', role: 'alert', hidden: true });
  const form = el('form', { class: 'search-form', 'aria-labelledby': 's-title', novalidate: true },
    el('h1', { id: 's-title' }, 'Find traces'),
    field('s-service', 'Service', serviceSel),
    field('s-operation', 'Operation', opSel),
    field('s-tags', 'Tags', tagsIn, 'Space-separated key=value pairs; quote values with spaces.'),
    field('s-lookback', 'Time range', lookSel), custom,
    el('div', { class: 'field-row' }, field('s-min', 'Min duration', minIn), field('s-max', 'Max duration', maxIn)),
    el('span', { class: 'hint', id: 's-dur-hint' }, 'Durations like 250ms, 1.5s, 2m.'),
    field('s-limit', 'Limit results', limitIn),
    formError,
    el('button', { type: 'submit', class: 'primary' }, 'Find traces'));
  const results = el('section', { class: 'results', 'aria-label': 'Search results', 'aria-live': 'polite', 'aria-busy': 'false' });
  main.append(el('div', { class: 'search-page' }, form, results));

  lookSel.addEventListener('change', () => { custom.hidden = lookSel.value !== 'custom'; });
  serviceSel.addEventListener('change', () => loadOperations(serviceSel.value, ''));

  async function loadOperations(service, selected) {
    opSel.replaceChildren(el('option', { value: '' }, 'All operations'));
    opSel.disabled = !service;
    opSel.title = service ? '' : 'Choose a service to pick one of its operations';
    if (!service) return;
    try {
      const ops = await api.operations(service, signal);
      opSel.append(...ops.map((o) => el('option', { value: o, selected: o === selected }, o)));
    } catch (e) { if (e.name !== 'AbortError') opSel.append(el('option', { value: '', disabled: true }, `(operations unavailable: ${e.message})`)); }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const problems = [];
    const mark = (input, bad) => { input.setAttribute('aria-invalid', bad ? 'true' : 'false'); };
    let tags = [];
    try { tags = parseTagText(tagsIn.value); mark(tagsIn, false); } catch (err) { problems.push([tagsIn, `Tags: ${err.message}.`]); mark(tagsIn, true); }
    for (const [input, name] of [[minIn, 'Min duration'], [maxIn, 'Max duration']]) {
      const bad = input.value.trim() !== '' && Number.isNaN(parseGoDuration(input.value));
      mark(input, bad);
      if (bad) problems.push([input, `${name}: "${input.value}" is not a duration (use e.g. 250ms, 1.5s).`]);
    }
    const next = {
      service: serviceSel.value, operation: opSel.value, tags, lookback: lookSel.value,
      start: fromLocalInput(startIn.value), end: fromLocalInput(endIn.value),
      minDuration: minIn.value.trim(), maxDuration: maxIn.value.trim(),
      limit: Math.max(1, Math.min(1500, Number(limitIn.value) || 20)), sortBy: state.sortBy,
    };
    if (next.lookback === 'custom' && !(next.start && next.end && next.start < next.end)) problems.push([startIn, 'Time range: "From" must be before "To".']);
    if (problems.length) {
      formError.hidden = false;
      formError.textContent = problems.map(([, m]) => m).join(' ');
      problems[0][0].focus();
      return;
    }
    formError.hidden = true;
    navigate(urlFromState(next));
  });

  (async () => {
    let services;
    try {
      services = await api.services(signal);
    } catch (e) {
      if (e.name === 'AbortError') return;
      results.replaceChildren(errorBox('Cannot list services', e));
      return;
    }
    serviceSel.append(...services.map((s) => el('option', { value: s, selected: s === state.service }, s)));
    if (state.service && !services.includes(state.service)) {
      serviceSel.append(el('option', { value: state.service, selected: true }, `${state.service} (no spans stored)`));
    }
    loadOperations(state.service, state.operation);
    if (!services.length) { results.replaceChildren(emptyState()); return; }
    runSearch();
  })();

  async function runSearch() {
    results.setAttribute('aria-busy', 'true');
    results.replaceChildren(el('p', { class: 'muted' }, 'Searching…'));
    let traces;
    try {
      traces = await api.searchTraces(apiParams(state), signal);
    } catch (e) {
      if (e.name === 'AbortError') return;
      results.setAttribute('aria-busy', 'false');
      results.replaceChildren(errorBox('The search failed', e));
      return;
    }
    results.setAttribute('aria-busy', 'false');
    showResults(traces.map(summarize));
  }

  function showResults(items) {
    if (!items.length) {
      results.replaceChildren(el('div', { class: 'notice' }, el('h2', {}, 'No traces found'),
        el('p', {}, 'Nothing matches in this time range. Try a longer range, fewer tags, or all services.')));
      return;
    }
    const sortSel = el('select', { id: 'r-sort', 'aria-label': 'Sort results' }, SORTS.map(([k, l]) => el('option', { value: k, selected: k === state.sortBy }, l)));
    const list = el('ol', { class: 'trace-list', 'aria-label': 'Traces' });
    const scatterHost = el('div');
    const maxDur = Math.max(...items.map((t) => t.duration), 1);
    const draw = () => {
      const sorted = sortItems(items, state.sortBy);
      list.replaceChildren(...sorted.map((t) => resultItem(t, maxDur)));
    };
    sortSel.addEventListener('change', () => {
      state.sortBy = sortSel.value;
      history.replaceState(null, '', urlFromState(state));
      draw();
    });
    results.replaceChildren(
      el('div', { class: 'results-head' }, el('h2', {}, `${items.length} trace${items.length === 1 ? '' : 's'}`),
        el('span', { class: 'sort' }, sortSel)),
      scatterHost, list);
    drawScatter(scatterHost, items);
    draw();
  }

  return () => aborter.abort();
}

function sortItems(items, by) {
  const s = items.slice();
  const cmp = { recent: (a, b) => b.start - a.start, longest: (a, b) => b.duration - a.duration, shortest: (a, b) => a.duration - b.duration,
    spans: (a, b) => b.spanCount - a.spanCount, errors: (a, b) => b.errors - a.errors || b.start - a.start }[by];
  return s.sort(cmp);
}

function resultItem(t, maxDur) {
  return el('li', { class: 'trace-item' }, el('a', { class: 'card', href: `/trace/${t.traceID}`, 'data-trace-id': t.traceID },
    el('div', { class: 'card-top' },
      el('span', { class: 'card-title' }, `${t.rootService}: ${t.rootOperation}`),
      el('span', { class: 'card-id' }, t.traceID.slice(0, 8)),
      el('span', { class: 'card-dur' }, fmtDuration(t.duration))),
    el('div', { class: 'card-bar', 'aria-hidden': 'true' }, el('span', { style: { width: `${Math.max(0.5, (100 * t.duration) / maxDur)}%` } })),
    el('div', { class: 'card-meta' },
      el('span', {}, `${t.spanCount} span${t.spanCount === 1 ? '' : 's'}`),
      t.errors ? el('span', { class: 'badge err' }, `${t.errors} error${t.errors === 1 ? '' : 's'}`) : null,
      t.missingRoot ? el('span', { class: 'badge', title: 'The first span has a parent that is not stored (yet)' }, 'root span missing') : null,
      serviceChips(t.services),
      el('time', { datetime: isoTime(t.start), style: { marginLeft: 'auto' } }, fmtTime(t.start)))));
}

/** What to show before the first span arrives: where to send it. */
function emptyState() {
  const host = location.hostname || 'localhost';
  return el('div', { class: 'notice', 'data-testid': 'empty-state' },
    el('h2', {}, 'No traces yet'),
    el('p', {}, 'meshtrace has not received a span. Point your tracers at its receivers (default ports; the server prints the actual ones when it starts):'),
    el('ul', {},
      el('li', {}, 'OTLP gRPC: ', el('code', {}, `${host}:4317`)),
      el('li', {}, 'OTLP HTTP: ', el('code', {}, `http://${host}:4318/v1/traces`)),
      el('li', {}, 'Zipkin v2 (Envoy, Pipy, Brave): ', el('code', {}, `http://${host}:9411/api/v2/spans`))),
    el('p', {}, 'For an OpenTelemetry SDK, set:'),
    el('pre', {}, el('code', {}, `OTEL_EXPORTER_OTLP_ENDPOINT=http://${host}:4318\nOTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf\nOTEL_SERVICE_NAME=my-service`)),
    el('p', {}, 'Or send one span by hand:'),
    el('pre', {}, el('code', {}, `curl -X POST http://${host}:9411/api/v2/spans -H 'content-type: application/json' \\\n  -d '[{"traceId":"463ac35c9f6413ad","id":"463ac35c9f6413ad","name":"hello","timestamp":'$(date +%s%6N)',"duration":1000,"localEndpoint":{"serviceName":"my-service"}}]'`)),
    el('p', {}, 'Then ', el('a', { href: '/search' }, 'reload this page'), '.'));
}

export function errorBox(title, e) {
  return el('div', { class: 'notice error', role: 'alert' }, el('h2', {}, title),
    el('p', {}, e.status ? `The server answered ${e.status}: ${e.message}` : e.message));
}
