// The search results' scatter plot: one SVG circle per trace, start time across, duration up,
// size by span count, red ring for errors; each circle links to its trace.
import { fmtClock, fmtDuration, fmtTime, serviceColor, svg } from './format.js';

const H = 170; const PAD_L = 56; const PAD_R = 14; const PAD_T = 12; const PAD_B = 24;

export function drawScatter(host, items) {
  const W = Math.max(320, Math.floor(host.getBoundingClientRect().width) || 800);
  let t0 = Math.min(...items.map((t) => t.start)); let t1 = Math.max(...items.map((t) => t.start));
  if (t1 - t0 < 1000) { t0 -= 500; t1 += 500; }
  const dMax = Math.max(...items.map((t) => t.duration), 1) * 1.1;
  const maxSpans = Math.max(...items.map((t) => t.spanCount), 1);
  const x = (us) => PAD_L + ((us - t0) / (t1 - t0)) * (W - PAD_L - PAD_R);
  const y = (d) => H - PAD_B - (d / dMax) * (H - PAD_T - PAD_B);
  const g = svg('g');
  for (let i = 0; i <= 3; i++) {
    const d = (dMax * i) / 3;
    g.append(svg('line', { class: 'grid', x1: PAD_L, x2: W - PAD_R, y1: y(d), y2: y(d) }),
      svg('text', { x: PAD_L - 6, y: y(d) + 4, 'text-anchor': 'end' }, fmtDuration(d)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    g.append(svg('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, fmtClock(t, t1 - t0 < 20e6)));
  }
  for (const t of items) {
    const r = 3.5 + 5 * Math.sqrt(t.spanCount / maxSpans);
    const color = serviceColor(t.rootService);
    g.append(svg('a', { href: `/trace/${t.traceID}`, tabindex: '-1', 'aria-hidden': 'true' },
      svg('circle', { cx: x(t.start).toFixed(1), cy: y(t.duration).toFixed(1), r: r.toFixed(1), fill: color, stroke: color, class: t.errors ? 'err' : null },
        svg('title', {}, `${t.rootService}: ${t.rootOperation}\n${fmtDuration(t.duration)}, ${t.spanCount} spans${t.errors ? `, ${t.errors} errors` : ''}\n${fmtTime(t.start)}`))));
  }
  host.replaceChildren(svg('svg', { class: 'scatter', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Duration over time of ${items.length} traces` }, g));
}
