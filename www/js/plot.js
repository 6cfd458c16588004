// Small line plots on a canvas (2D context, no library): curves the engine computed, over t,
// with a marker at the current t. Only drawing happens here; every number comes from the engine.

const COLOURS = ['#7cc4ff', '#ffb86b', '#b48cff'];

/** A plot over x = 0..xMax of named series, each on its own y range (or one log range).
 * `series`: [{ label, xs, ys, log }]; log series share a log10 axis. */
export class Plot {
  constructor(canvas, { xLabel = 't', xMax }) {
    this.canvas = canvas;
    this.xLabel = xLabel;
    this.xMax = xMax;
    this.series = [];
    this.marker = null;
  }

  /** Sets the curves; their plotted values and ranges are worked out here once, not at every
   * marker move (the generation view moves it every frame). */
  setSeries(series) {
    this.series = series.map((s) => {
      const values = s.ys.map((y) => (s.log ? Math.log10(Math.max(y, 1e-12)) : y));
      return { ...s, values, lo: Math.min(...values), hi: Math.max(...values) };
    });
    // The log series share one range, so that they can be compared.
    const logs = this.series.filter((s) => s.log);
    const [lo, hi] = [Math.min(...logs.map((s) => s.lo)), Math.max(...logs.map((s) => s.hi))];
    for (const s of logs) Object.assign(s, { lo, hi });
    this.draw();
  }

  /** Moves the marker to x (and draws each series' value there). */
  mark(x) {
    this.marker = x;
    this.canvas.dataset.marker = String(x);
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 320;
    const height = canvas.clientHeight || 140;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const pad = { left: 8, right: 8, top: 8, bottom: 18 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const xAt = (x) => pad.left + (x / this.xMax) * plotW;
    ctx.strokeStyle = '#3b3f4b';
    ctx.strokeRect(pad.left, pad.top, plotW, plotH);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#9a9cab';
    ctx.fillText('0', pad.left, height - 4);
    ctx.textAlign = 'right';
    ctx.fillText(`${this.xLabel} = ${this.xMax}`, width - pad.right, height - 4);
    ctx.textAlign = 'left';

    this.series.forEach(({ values, lo, hi, xs }, i) => {
      const yAt = (v) => pad.top + plotH - ((v - lo) / (hi - lo || 1)) * plotH;
      ctx.strokeStyle = COLOURS[i % COLOURS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      values.forEach((v, k) => (k ? ctx.lineTo(xAt(xs[k]), yAt(v)) : ctx.moveTo(xAt(xs[k]), yAt(v))));
      ctx.stroke();
    });
    // The legend, on a backing so that the curves do not run through it.
    this.series.forEach((s, i) => {
      const at = this.marker === null ? '' : ` = ${format(valueAt(s, this.marker))}`;
      const text = `${s.label}${at}`;
      const y = pad.top + 12 + 13 * i;
      ctx.fillStyle = 'rgba(27, 29, 35, 0.85)';
      ctx.fillRect(pad.left + 2, y - 10, ctx.measureText(text).width + 4, 13);
      ctx.fillStyle = COLOURS[i % COLOURS.length];
      ctx.fillText(text, pad.left + 4, y);
    });

    if (this.marker !== null) {
      ctx.strokeStyle = '#e8e8ec';
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(xAt(this.marker), pad.top);
      ctx.lineTo(xAt(this.marker), pad.top + plotH);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
}

/** The series' value at x: its point at x, or the nearest one computed. */
function valueAt(series, x) {
  let best = 0;
  series.xs.forEach((sx, k) => Math.abs(sx - x) < Math.abs(series.xs[best] - x) && (best = k));
  return series.ys[best];
}

const format = (v) => (Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(2) : v.toFixed(3));

/** The schedule plot: ᾱ_t, log SNR(t) and β_t from the engine's `schedule`. */
export function schedulePlot(canvas, schedule) {
  const xs = schedule.alphas_cumprod.map((_, t) => t);
  const plot = new Plot(canvas, { xMax: xs.length - 1 });
  plot.setSeries([
    { label: 'ᾱ_t', xs, ys: schedule.alphas_cumprod },
    { label: 'log SNR(t)', xs, ys: schedule.log_snr },
    { label: 'β_t', xs, ys: schedule.betas },
  ]);
  canvas.setAttribute('aria-label', `Noise schedule over t = 0…${xs.length - 1}: ᾱ_t falls from 1 to 0, log SNR from ${schedule.log_snr[0].toFixed(1)} to ${schedule.log_snr[xs.length - 1].toFixed(1)}`);
  return plot;
}
