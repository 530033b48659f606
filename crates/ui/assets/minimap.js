// The trace mini-map: every span drawn small on a canvas, the current zoom window shown, and a
// drag across it chooses the time window the timeline shows (double-click resets).
import { el, serviceColor } from './format.js';

export class Minimap {
  /** `onZoom(v0, v1)` receives the chosen window as fractions of the trace's duration. */
  constructor(model, { onZoom }) {
    this.model = model;
    this.onZoom = onZoom;
    this.view = [0, 1];
    this.canvas = el('canvas', { 'aria-hidden': 'true' });
    this.shadeL = el('div', { class: 'shade', style: { left: '0' } });
    this.shadeR = el('div', { class: 'shade', style: { right: '0' } });
    this.drag = el('div', { class: 'drag', hidden: true });
    this.element = el('div', {
      class: 'minimap', role: 'slider', tabindex: '0', 'data-testid': 'minimap',
      'aria-label': 'Zoom: drag across the mini-map to choose a time window; arrow keys move it, Escape resets',
      'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0',
    }, this.canvas, this.shadeL, this.shadeR, this.drag);
    this.element.addEventListener('pointerdown', (e) => this.down(e));
    this.element.addEventListener('dblclick', () => this.onZoom(0, 1));
    this.element.addEventListener('keydown', (e) => this.key(e));
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.element);
  }

  destroy() { this.resizeObserver.disconnect(); }

  draw() {
    const rect = this.element.getBoundingClientRect();
    if (!rect.width) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.floor(rect.width * dpr); const h = Math.floor(rect.height * dpr);
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    const ctx = this.canvas.getContext('2d');
    ctx.clearRect(0, 0, w, h);
    const { order, start, duration } = this.model;
    const n = order.length || 1;
    const rowH = Math.max(h / n, 1);
    const dur = Math.max(duration, 1);
    let lastColor = '';
    for (let i = 0; i < order.length; i++) {
      const s = order[i];
      const c = s.error ? '#d32f2f' : serviceColor(s.service);
      if (c !== lastColor) { ctx.fillStyle = c; lastColor = c; }
      ctx.fillRect(((s.start - start) / dur) * w, (i / n) * h, Math.max((s.duration / dur) * w, 1), rowH);
    }
  }

  setView(v0, v1) {
    this.view = [v0, v1];
    this.shadeL.style.width = `${v0 * 100}%`;
    this.shadeR.style.width = `${(1 - v1) * 100}%`;
    this.element.setAttribute('aria-valuenow', String(Math.round(v0 * 100)));
    this.element.setAttribute('aria-valuetext', `showing ${Math.round(v0 * 100)}% to ${Math.round(v1 * 100)}% of the trace`);
  }

  fraction(e) {
    const r = this.element.getBoundingClientRect();
    return Math.max(0, Math.min(1, (e.clientX - r.left) / r.width));
  }

  down(e) {
    if (e.button !== 0) return;
    const a = this.fraction(e);
    this.element.setPointerCapture(e.pointerId);
    const show = (b) => {
      this.drag.hidden = false;
      this.drag.style.left = `${Math.min(a, b) * 100}%`;
      this.drag.style.width = `${Math.abs(b - a) * 100}%`;
    };
    const move = (ev) => show(this.fraction(ev));
    const up = (ev) => {
      this.element.removeEventListener('pointermove', move);
      this.element.removeEventListener('pointerup', up);
      this.drag.hidden = true;
      const b = this.fraction(ev);
      if (Math.abs(b - a) > 0.003) this.onZoom(Math.min(a, b), Math.max(a, b));
    };
    this.element.addEventListener('pointermove', move);
    this.element.addEventListener('pointerup', up);
  }

  key(e) {
    const [v0, v1] = this.view; const w = v1 - v0; const step = w / 4;
    if (e.key === 'ArrowLeft') this.onZoom(Math.max(0, v0 - step), Math.max(0, v0 - step) + w);
    else if (e.key === 'ArrowRight') this.onZoom(Math.min(1, v1 + step) - w, Math.min(1, v1 + step));
    else if (e.key === '+' || e.key === '=') this.onZoom(v0 + w / 4, v1 - w / 4);
    else if (e.key === '-') this.onZoom(Math.max(0, v0 - w / 2), Math.min(1, v1 + w / 2));
    else if (e.key === 'Escape') this.onZoom(0, 1);
    else return;
    e.preventDefault();
  }
}
