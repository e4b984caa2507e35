// Small SVG charts, built with DOM calls (no inline style: the console's CSP forbids it).
const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * A chart of one series: bars for counts, a line with dots for ratios and durations. Points with no
 * value are gaps. The chart is labelled for screen readers with its title and latest value.
 */
export function seriesChart(series, format) {
  const w = 360;
  const h = 140;
  const pad = { l: 34, r: 6, t: 8, b: 18 };
  const svg = el('svg', {
    class: 'chart',
    viewBox: `0 0 ${w} ${h}`,
    role: 'img',
    'data-metric': series.name,
  });
  svg.append(el('title', {}, `${series.title}: ${format(series.current)}`));
  const values = series.points.map((p) => p.v).filter((v) => v !== null);
  const max = series.unit === 'ratio' ? 1 : Math.max(1, ...values);
  const n = series.points.length;
  const x = (i) => pad.l + ((w - pad.l - pad.r) * (i + 0.5)) / n;
  const y = (v) => pad.t + (h - pad.t - pad.b) * (1 - v / max);
  svg.append(el('line', { class: 'axis', x1: pad.l, y1: y(0), x2: w - pad.r, y2: y(0) }));
  svg.append(el('line', { class: 'axis', x1: pad.l, y1: pad.t, x2: pad.l, y2: y(0) }));
  svg.append(el('text', { x: 2, y: pad.t + 8 }, format(max)));
  svg.append(el('text', { x: 2, y: y(0) }, format(0)));
  const first = series.points[0];
  const last = series.points[n - 1];
  if (first !== undefined) svg.append(el('text', { x: pad.l, y: h - 4 }, new Date(first.t).toLocaleString()));
  if (last !== undefined)
    svg.append(
      el('text', { x: w - pad.r, y: h - 4, 'text-anchor': 'end' }, new Date(last.t).toLocaleTimeString()),
    );
  if (series.unit === 'count') {
    const bw = Math.max(2, (w - pad.l - pad.r) / n - 3);
    series.points.forEach((p, i) => {
      if (p.v === null || p.v === 0) return;
      const r = el('rect', { class: 'bar', x: x(i) - bw / 2, y: y(p.v), width: bw, height: y(0) - y(p.v) });
      r.append(el('title', {}, `${p.t}: ${format(p.v)}`));
      svg.append(r);
    });
    return svg;
  }
  let d = '';
  series.points.forEach((p, i) => {
    if (p.v === null) return;
    d += `${d === '' || series.points[i - 1]?.v === null ? 'M' : 'L'}${x(i).toFixed(1)},${y(p.v).toFixed(1)} `;
    const c = el('circle', { class: 'dot', cx: x(i), cy: y(p.v), r: 3 });
    c.append(el('title', {}, `${p.t}: ${format(p.v)} (${p.n})`));
    svg.append(c);
  });
  if (d !== '') svg.append(el('path', { class: 'line', d }));
  return svg;
}

/** A job's lifecycle as a timeline: one bar per step, from its start, as long as it took. */
export function timeline(steps) {
  const w = 720;
  const row = 18;
  const h = 20 + row * steps.length;
  const svg = el('svg', { class: 'timeline', viewBox: `0 0 ${w} ${h}`, role: 'img', width: '100%' });
  svg.append(el('title', {}, `Lifecycle: ${steps.map((s) => s.name).join(', ')}`));
  if (steps.length === 0) return svg;
  const t0 = Math.min(...steps.map((s) => Date.parse(s.startedAt)));
  const t1 = Math.max(...steps.map((s) => Date.parse(s.startedAt) + s.durationMs), t0 + 1);
  const x = (t) => 120 + ((w - 130) * (t - t0)) / (t1 - t0);
  steps.forEach((s, i) => {
    const start = Date.parse(s.startedAt);
    const yy = 4 + i * row;
    svg.append(el('text', { x: 0, y: yy + 11 }, s.name));
    const r = el('rect', {
      class: s.ok ? 'step-ok' : 'step-bad',
      x: x(start),
      y: yy,
      width: Math.max(2, x(start + s.durationMs) - x(start)),
      height: row - 6,
    });
    r.append(el('title', {}, `${s.name}: ${s.durationMs} ms${s.ok ? '' : ' (failed)'}`));
    svg.append(r);
  });
  svg.append(el('text', { x: w, y: h - 2, 'text-anchor': 'end' }, `${((t1 - t0) / 1000).toFixed(2)} s`));
  return svg;
}
