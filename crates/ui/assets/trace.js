// The trace page (`/trace/{id}`): header with the trace's summary, toolbar (find, expand and
// collapse, critical path, views), the mini-map, the timeline or flame graph, and the details of
// the selected span. The selected span lives in the URL as `?uiFind=<spanID>` (or `#<spanID>`).
import * as api from './api.js';
import { navigate } from './app.js';
import { renderDetails } from './details.js';
import { el, fmtDuration, fmtTime, isoTime, normTraceId, serviceChips } from './format.js';
import { Minimap } from './minimap.js';
import { errorBox } from './search.js';
import { Timeline } from './timeline.js';
import { buildTrace, findSpans } from './tracemodel.js';

let cache = null; // the last trace shown: back/forward to it does not fetch again

export function mount(main, url, match) {
  const rawId = decodeURIComponent(match[1]);
  if (rawId.includes('...')) { // Jaeger's compare path /trace/a...b
    const [a, b] = rawId.split('...');
    navigate(`/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`, { replace: true });
    return null;
  }
  const id = normTraceId(rawId);
  document.title = `Trace ${rawId} · meshtrace`;
  if (!id) {
    main.append(el('div', { class: 'notice error', role: 'alert' }, el('h1', {}, 'Not a trace id'),
      el('p', {}, `"${rawId}" is not a trace id: one is 1 to 32 hexadecimal digits.`)));
    return null;
  }
  const aborter = new AbortController();
  let page = null;
  const loading = el('p', { class: 'muted pad', role: 'status' }, `Loading trace ${id}…`);
  main.append(loading);
  const t0 = performance.now();

  (async () => {
    let model;
    if (cache && cache.id === id) model = cache.model;
    else {
      let raw;
      try {
        raw = await api.trace(id, aborter.signal);
      } catch (e) {
        if (e.name === 'AbortError') return;
        loading.remove();
        main.append(e.status === 404
          ? el('div', { class: 'notice error', role: 'alert' }, el('h1', {}, 'Trace not found'),
            el('p', {}, `No trace with id ${id} is stored. It may not have arrived yet, may be older than the retention, or the id may be mistyped.`),
            el('p', {}, el('a', { href: '/search' }, 'Search traces')))
          : errorBox(`Cannot load trace ${id}`, e));
        return;
      }
      model = buildTrace(raw);
      cache = { id, model };
    }
    loading.remove();
    page = new TracePage(main, model, url);
    // Timing marks (read by the speed test): rows in the DOM, then the frame that shows them.
    performance.mark('meshtrace:trace-rendered');
    window.__meshtraceRender = { spans: model.spans.length, ms: performance.now() - t0 };
    requestAnimationFrame(() => setTimeout(() => performance.mark('meshtrace:trace-painted')));
  })();

  return () => { aborter.abort(); if (page) page.destroy(); };
}

class TracePage {
  constructor(main, model, url) {
    this.model = model;
    this.selected = null;
    document.title = `${model.root ? `${model.root.service}: ${model.root.operation}` : model.traceID} · meshtrace`;

    this.timeline = new Timeline(model, { onSelect: (s) => this.select(s, { fromTree: true }) });
    this.minimap = new Minimap(model, { onZoom: (a, b) => this.zoom(a, b) });
    this.findIn = el('input', { class: 'find', type: 'search', id: 't-find', placeholder: 'Find spans (text, tag, id)', autocomplete: 'off', spellcheck: 'false' });
    this.findCount = el('span', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    this.critBox = el('input', { type: 'checkbox', id: 't-crit', checked: true });
    this.tabTimeline = el('button', { type: 'button', role: 'tab', 'aria-selected': 'true', 'aria-controls': 't-view' }, 'Timeline');
    this.tabFlame = el('button', { type: 'button', role: 'tab', 'aria-selected': 'false', 'aria-controls': 't-view' }, 'Flame graph');
    this.view = el('div', { class: 'trace-body', id: 't-view', role: 'tabpanel' }, this.timeline.element);
    this.detailsHost = null;

    const toolbar = el('div', { class: 'toolbar' },
      el('div', { class: 'tabs', role: 'tablist', 'aria-label': 'View' }, this.tabTimeline, this.tabFlame),
      el('label', { for: 't-find', class: 'visually-hidden' }, 'Find spans'), this.findIn, this.findCount,
      el('button', { type: 'button', onclick: () => this.timeline.expandAll() }, 'Expand all'),
      el('button', { type: 'button', onclick: () => this.timeline.collapseAll() }, 'Collapse all'),
      el('label', {}, this.critBox, ' Critical path'),
      el('button', { type: 'button', onclick: () => this.zoom(0, 1) }, 'Reset zoom'),
      el('a', { href: `/compare?a=${model.traceID}` }, 'Compare…'),
      el('a', { href: `/api/traces/${model.traceID}`, download: `trace-${model.traceID}.json` }, 'JSON'));

    this.root = el('div', { class: 'trace-page' }, header(model), toolbar, this.minimap.element, this.view);
    main.append(this.root);

    this.critBox.addEventListener('change', () => this.timeline.setCritical(this.critBox.checked));
    this.findIn.addEventListener('input', () => this.find(this.findIn.value, true));
    this.findIn.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); this.nextMatch(); } });
    this.tabTimeline.addEventListener('click', () => this.showView('timeline'));
    this.tabFlame.addEventListener('click', () => this.showView('flame'));
    this.onKey = (e) => { if (e.key === 'Escape' && this.selected && !e.target.closest('.minimap')) this.select(null); };
    document.addEventListener('keydown', this.onKey);

    this.timeline.render();
    this.minimap.draw();
    this.minimap.setView(0, 1);

    // The URL's selection: ?uiFind=<spanID> or #<spanID> opens that span; other uiFind text
    // highlights the spans it finds.
    const find = url.searchParams.get('uiFind') || '';
    const hash = url.hash.replace(/^#(span-)?/, '');
    const wanted = model.byId.get(find) || model.byId.get(hash);
    if (wanted) this.select(wanted, { replaceUrl: false });
    else if (find) { this.findIn.value = find; this.find(find, false); }
    if (url.searchParams.get('view') === 'flame') this.showView('flame');
    const zoom = /^(\d*\.?\d+)-(\d*\.?\d+)$/.exec(url.searchParams.get('zoom') || '');
    if (zoom && Number(zoom[1]) < Number(zoom[2])) this.zoom(Math.max(0, Number(zoom[1])), Math.min(1, Number(zoom[2])), { writeUrl: false });
  }

  destroy() {
    document.removeEventListener('keydown', this.onKey);
    this.timeline.destroy();
    this.minimap.destroy();
  }

  zoom(a, b, { writeUrl = true } = {}) {
    this.timeline.setView(a, b);
    this.minimap.setView(a, b);
    if (this.flame) this.flame.setView(a, b);
    if (writeUrl) {
      const u = new URL(location.href);
      if (a <= 0 && b >= 1) u.searchParams.delete('zoom'); else u.searchParams.set('zoom', `${a.toFixed(4)}-${b.toFixed(4)}`);
      history.replaceState(null, '', u.pathname + u.search + u.hash);
    }
  }

  /** Opens `span`'s details (null closes them) and records it in the URL. */
  select(span, { replaceUrl = true, fromTree = false } = {}) {
    this.selected = span;
    this.timeline.setSelected(span);
    if (this.detailsHost) { this.detailsHost.remove(); this.detailsHost = null; }
    if (span) {
      if (!fromTree) this.timeline.reveal(span);
      this.detailsHost = renderDetails(span, this.model, {
        onOpenSpan: (s) => this.select(s),
        onClose: () => { this.select(null); this.timeline.scroller.focus(); },
      });
      this.view.append(this.detailsHost);
      if (fromTree) this.detailsHost.querySelector('h2').focus({ preventScroll: true });
    }
    if (replaceUrl) {
      const u = new URL(location.href);
      u.hash = '';
      if (span) u.searchParams.set('uiFind', span.spanID); else u.searchParams.delete('uiFind');
      history.replaceState(null, '', u.pathname + u.search);
    }
  }

  find(text, writeUrl) {
    const matches = findSpans(this.model, text);
    this.matches = [...matches];
    this.matchAt = -1;
    this.timeline.setMatches(matches);
    this.findCount.textContent = text.trim() ? `${matches.size} match${matches.size === 1 ? '' : 'es'}` : '';
    if (writeUrl) {
      const u = new URL(location.href);
      if (text.trim()) u.searchParams.set('uiFind', text.trim()); else u.searchParams.delete('uiFind');
      history.replaceState(null, '', u.pathname + u.search);
    }
  }

  nextMatch() {
    if (!this.matches || !this.matches.length) return;
    this.matchAt = (this.matchAt + 1) % this.matches.length;
    this.timeline.reveal(this.model.byId.get(this.matches[this.matchAt]), { select: false });
  }

  async showView(which) {
    const flame = which === 'flame';
    this.tabTimeline.setAttribute('aria-selected', String(!flame));
    this.tabFlame.setAttribute('aria-selected', String(flame));
    const u = new URL(location.href);
    if (flame) u.searchParams.set('view', 'flame'); else u.searchParams.delete('view');
    history.replaceState(null, '', u.pathname + u.search);
    if (flame) {
      if (!this.flame) {
        const { FlameGraph } = await import('./flame.js');
        this.flame = new FlameGraph(this.model, { onSelect: (s) => this.select(s) });
        this.flame.setView(...this.timeline.view);
      }
      this.timeline.element.replaceWith(this.flame.element);
    } else if (this.flame && this.flame.element.isConnected) {
      this.flame.element.replaceWith(this.timeline.element);
      this.timeline.schedule();
    }
  }
}

function header(model) {
  const root = model.root;
  const stat = (k, v, attrs) => el('div', attrs || {}, el('dt', {}, k), el('dd', {}, v));
  return el('section', { class: 'trace-head', 'aria-labelledby': 'trace-title' },
    el('h1', { id: 'trace-title' }, root ? `${root.service}: ${root.operation}` : 'Empty trace', el('span', { class: 'mono' }, model.traceID)),
    el('dl', { class: 'stats', 'data-testid': 'trace-stats' },
      stat('Started', el('time', { datetime: isoTime(model.start) }, fmtTime(model.start))),
      stat('Duration', fmtDuration(model.duration)),
      stat('Services', String(model.services.size)),
      stat('Depth', String(model.depth)),
      stat('Spans', String(model.spans.length)),
      stat('Errors', String(model.errors), model.errors ? { class: 'badge err' } : null)),
    el('div', { style: { marginTop: '4px' } }, serviceChips([...model.services.entries()], 24)),
    model.warnings.length ? el('p', { class: 'muted' }, `Warnings: ${model.warnings.join('; ')}`) : null);
}
