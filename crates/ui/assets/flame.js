// The flame-graph view of a trace: one row per depth, each span a box as wide as its duration
// within the zoom window; tiny boxes are skipped so large traces stay light. Click opens a span.
import { el, fmtDuration, serviceColor } from './format.js';

export class FlameGraph {
  constructor(model, { onSelect }) {
    this.model = model;
    this.onSelect = onSelect;
    this.view = [0, 1];
    this.element = el('div', { class: 'flame', 'data-testid': 'flame' });
    this.element.addEventListener('click', (e) => {
      const b = e.target.closest('[data-span-id]');
      if (b) this.onSelect(this.model.byId.get(b.dataset.spanId));
    });
  }

  setView(v0, v1) { this.view = [v0, v1]; this.render(); }

  render() {
    const { model } = this;
    const width = this.element.clientWidth || 1000;
    const [v0, v1] = this.view;
    const t0 = model.start + v0 * model.duration;
    const span = Math.max(1, (v1 - v0) * model.duration);
    const rows = [];
    for (const s of model.order) {
      const left = ((s.start - t0) / span) * 100;
      const w = (s.duration / span) * 100;
      if (left > 100 || left + w < 0 || (w * width) / 100 < 2) continue;
      (rows[s.depth] ||= []).push(el('button', {
        type: 'button', class: `flame-box${s.error ? ' err' : ''}${s.proxy ? ' proxy' : ''}`, 'data-span-id': s.spanID,
        style: { left: `${Math.max(left, 0)}%`, width: `${Math.min(w, 100 - Math.max(left, 0))}%`, backgroundColor: serviceColor(s.service) },
        title: `${s.service}: ${s.operation} ${fmtDuration(s.duration)}${s.proxy ? ' (proxy)' : ''}`,
      }, `${s.service}: ${s.operation}`));
    }
    this.element.replaceChildren(...rows.map((boxes) => el('div', { class: 'flame-row' }, boxes || [])));
  }
}
