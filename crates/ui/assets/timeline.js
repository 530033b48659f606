// The trace timeline: a collapsible span tree with bars on a time axis, virtualised (only the
// rows in view are in the DOM, so 10,000+ spans stay smooth). Keyboard: the tree is one tab stop
// (role=tree with aria-activedescendant); arrows move and expand/collapse, Enter opens a span.
import { el, fmtDuration, serviceColor } from './format.js';

const ROW_H = 24;
const OVERSCAN = 8;

export class Timeline {
  /** `model` from buildTrace; `onSelect(span)` when a span is opened (click or Enter). */
  constructor(model, { onSelect }) {
    this.model = model;
    this.onSelect = onSelect;
    this.collapsed = new Set();
    this.matches = new Set();
    this.selected = null;
    this.active = 0;
    this.view = [0, 1];
    this.showCritical = true;
    this.rows = [];
    this.frame = 0;

    this.ticks = el('div', { class: 'ticks', 'aria-hidden': 'true' });
    this.nameWidth = 36; // percent of the timeline given to the names
    this.resizer = el('div', {
      class: 'resizer', role: 'separator', tabindex: '0', 'aria-orientation': 'vertical', 'aria-label': 'Width of the name column',
      'aria-valuemin': '15', 'aria-valuemax': '70', 'aria-valuenow': String(this.nameWidth),
    });
    this.axis = el('div', { class: 'tl-axis' }, el('div', { class: 'name-h' }, 'Service and operation', this.resizer), this.ticks);
    this.spacer = el('div', { class: 'tl-spacer' });
    this.scroller = el('div', { class: 'tl-scroll', role: 'tree', tabindex: '0', 'aria-label': `Spans of trace ${model.traceID}`, 'data-testid': 'timeline' }, this.spacer);
    this.element = el('div', { class: 'timeline' }, this.axis, this.scroller);

    this.resizer.addEventListener('pointerdown', (e) => this.startResize(e));
    this.resizer.addEventListener('keydown', (e) => {
      const step = { ArrowLeft: -2, ArrowRight: 2 }[e.key];
      if (step) { e.preventDefault(); this.setNameWidth(this.nameWidth + step); }
    });
    this.scroller.addEventListener('scroll', () => this.schedule());
    this.scroller.addEventListener('click', (e) => this.onClick(e));
    this.scroller.addEventListener('keydown', (e) => this.onKey(e));
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.scroller);
    this.computeRows();
  }

  setNameWidth(pct) {
    this.nameWidth = Math.max(15, Math.min(70, pct));
    this.element.style.setProperty('--name-w', `${this.nameWidth}%`);
    this.resizer.setAttribute('aria-valuenow', String(Math.round(this.nameWidth)));
  }

  startResize(e) {
    e.preventDefault();
    this.resizer.setPointerCapture(e.pointerId);
    const box = this.element.getBoundingClientRect();
    const move = (ev) => this.setNameWidth(((ev.clientX - box.left) / box.width) * 100);
    const up = () => { this.resizer.removeEventListener('pointermove', move); this.resizer.removeEventListener('pointerup', up); };
    this.resizer.addEventListener('pointermove', move);
    this.resizer.addEventListener('pointerup', up);
  }

  destroy() { this.resizeObserver.disconnect(); cancelAnimationFrame(this.frame); }

  /** Visible rows: the pre-order list without descendants of collapsed spans. */
  computeRows() {
    const rows = [];
    let skipDeeperThan = Infinity;
    for (const s of this.model.order) {
      if (s.depth > skipDeeperThan) continue;
      skipDeeperThan = Infinity;
      rows.push(s);
      if (this.collapsed.has(s) && s.children.length) skipDeeperThan = s.depth;
    }
    this.rows = rows;
    this.index = new Map(rows.map((s, i) => [s, i]));
    this.spacer.style.height = `${rows.length * ROW_H}px`;
    this.active = Math.min(this.active, Math.max(0, rows.length - 1));
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  /** Draws now (used for the first paint and by tests of speed). */
  render() {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const [v0, v1] = this.view;
    const t0 = this.model.start + v0 * this.model.duration;
    const span = Math.max(1, (v1 - v0) * this.model.duration);
    const nodes = [];
    for (let i = first; i < last; i++) nodes.push(this.row(this.rows[i], i, t0, span));
    this.spacer.replaceChildren(...nodes);
    const activeSpan = this.rows[this.active];
    if (activeSpan) this.scroller.setAttribute('aria-activedescendant', rowId(activeSpan));
    else this.scroller.removeAttribute('aria-activedescendant');
    this.drawTicks(t0, span);
  }

  drawTicks(t0, span) {
    const base = t0 - this.model.start;
    const labels = [];
    for (let i = 0; i <= 4; i++) labels.push(el('span', { style: { left: `${i * 25}%` } }, fmtDuration(base + (span * i) / 4)));
    this.ticks.replaceChildren(...labels);
  }

  row(s, i, t0, span) {
    const left = ((s.start - t0) / span) * 100;
    const width = Math.max((s.duration / span) * 100, 0.05);
    const hasKids = s.children.length > 0;
    const expanded = hasKids && !this.collapsed.has(s);
    const color = serviceColor(s.service);
    const label = `${s.service} ${s.operation}, ${fmtDuration(s.duration)}${s.error ? ', error' : ''}${s.proxy ? ', proxy span' : ''}`;
    const classes = ['row'];
    if (this.matches.has(s.spanID)) classes.push('match');
    if (i === this.active) classes.push('active');
    const barClasses = ['bar'];
    if (s.error) barClasses.push('err');
    if (s.proxy) barClasses.push('proxy');
    if (this.showCritical && s.critical) barClasses.push('crit');
    const right = left + width;
    // The duration label goes after the bar, before it when the bar reaches the right edge, or
    // inside it when the bar spans the whole (zoomed) window.
    let labelStyle;
    let labelClass = 'dur';
    if (right < 82) labelStyle = { left: `calc(${Math.max(right, 0)}% + 4px)` };
    else if (left > 12) labelStyle = { right: `calc(${Math.max(100 - left, 0)}% + 4px)` };
    else { labelStyle = { left: `calc(${Math.max(left, 0)}% + 4px)` }; labelClass = 'dur inbar'; }
    const durLabel = el('span', { class: labelClass, style: labelStyle }, fmtDuration(s.duration));
    return el('div', {
      class: classes.join(' '), id: rowId(s), role: 'treeitem', 'aria-level': String(s.depth + 1),
      'aria-expanded': hasKids ? String(expanded) : null, 'aria-selected': String(this.selected === s),
      'aria-label': label, 'data-span-id': s.spanID, 'data-index': String(i), style: { top: `${i * ROW_H}px` },
    },
    el('div', { class: 'name' },
      el('span', { class: 'indent', style: { width: `${Math.min(s.depth, 40) * 14}px` } }),
      el('span', { class: `tog${hasKids ? '' : ' leaf'}`, 'data-toggle': '1', title: expanded ? 'Collapse' : 'Expand' }, expanded ? '▾' : '▸'),
      el('span', { class: 'svc-mark', style: { background: color } }),
      el('span', { class: 'svc' }, s.service),
      s.error ? el('span', { class: 'err-i', title: 'Error' }, '!') : null,
      s.proxy ? el('span', { class: 'proxy-i', title: 'Span emitted by a proxy (component=proxy)' }, 'proxy') : null,
      el('span', { class: 'op' }, s.operation),
      hasKids && !expanded ? el('span', { class: 'hidden-n', title: 'Spans hidden under this one' }, `+${s.descendants}`) : null),
    el('div', { class: 'lane' },
      el('span', { class: barClasses.join(' '), style: { left: `${left}%`, width: `${width}%`, backgroundColor: color }, title: `${s.operation} ${fmtDuration(s.duration)}` }),
      s.logs.slice(0, 50).map((log) => el('span', { class: 'logmark', style: { left: `${((log.timestamp - t0) / span) * 100}%` }, title: `event at +${fmtDuration(log.timestamp - this.model.start)}` })),
      durLabel));
  }

  onClick(e) {
    const rowEl = e.target.closest('.row');
    if (!rowEl) return;
    const i = Number(rowEl.dataset.index);
    const s = this.rows[i];
    if (!s) return;
    this.active = i;
    if (e.target.closest('[data-toggle]') && s.children.length) this.toggle(s);
    else this.onSelect(s);
    this.scroller.focus({ preventScroll: true });
  }

  onKey(e) {
    const s = this.rows[this.active];
    if (!s) return;
    const pageRows = Math.max(1, Math.floor(this.scroller.clientHeight / ROW_H) - 1);
    let handled = true;
    switch (e.key) {
      case 'ArrowDown': this.moveTo(this.active + 1); break;
      case 'ArrowUp': this.moveTo(this.active - 1); break;
      case 'PageDown': this.moveTo(this.active + pageRows); break;
      case 'PageUp': this.moveTo(this.active - pageRows); break;
      case 'Home': this.moveTo(0); break;
      case 'End': this.moveTo(this.rows.length - 1); break;
      case 'ArrowRight':
        if (s.children.length && this.collapsed.has(s)) this.toggle(s);
        else if (s.children.length) this.moveTo(this.active + 1);
        break;
      case 'ArrowLeft':
        if (s.children.length && !this.collapsed.has(s)) this.toggle(s);
        else if (s.parent && this.index.has(s.parent)) this.moveTo(this.index.get(s.parent));
        break;
      case 'Enter': case ' ': this.onSelect(s); break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  }

  moveTo(i) {
    this.active = Math.max(0, Math.min(this.rows.length - 1, i));
    this.scrollToIndex(this.active);
    this.schedule();
  }

  scrollToIndex(i, center = false) {
    const top = i * ROW_H;
    const h = this.scroller.clientHeight;
    if (center) this.scroller.scrollTop = Math.max(0, top - h / 2);
    else if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + ROW_H > this.scroller.scrollTop + h) this.scroller.scrollTop = top + ROW_H - h;
  }

  toggle(s) {
    if (this.collapsed.has(s)) this.collapsed.delete(s); else this.collapsed.add(s);
    const keep = this.rows[this.active];
    this.computeRows();
    if (keep && this.index.has(keep)) this.active = this.index.get(keep);
  }

  expandAll() { this.collapsed.clear(); this.computeRows(); }

  /** Collapses every span with children below the top level, so the roots' children show. */
  collapseAll() {
    this.collapsed = new Set(this.model.spans.filter((s) => s.children.length && s.depth >= 1));
    this.active = 0;
    this.computeRows();
  }

  /** Opens `s` in the tree (expanding its ancestors), makes it current and scrolls to it. */
  reveal(s, { select = true } = {}) {
    let changed = false;
    for (let p = s.parent; p; p = p.parent) if (this.collapsed.delete(p)) changed = true;
    if (changed) this.computeRows();
    if (select) this.selected = s;
    const i = this.index.get(s);
    if (i !== undefined) { this.active = i; this.scrollToIndex(i, true); }
    this.schedule();
  }

  setSelected(s) { this.selected = s; this.schedule(); }
  setMatches(set) { this.matches = set; this.schedule(); }
  setCritical(on) { this.showCritical = on; this.schedule(); }
  setView(v0, v1) { this.view = [v0, v1]; this.schedule(); }
}

function rowId(s) { return `span-row-${s.spanID}`; }
