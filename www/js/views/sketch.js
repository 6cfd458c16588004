// Part 4, your own digit: a drawing pad at the model's resolution, noised to t and cleaned by the
// model (SDEdit, Meng et al. 2021), every step drawn as in the main view.

import { fitImage } from '../digits.js';
import { drawGrey } from '../draw.js';
import { OPENING_NOISE } from '../settings.js';
import { openingT, render, timestepSlider } from './context.js';

const TEMPLATE = `
  <h2>4 · Clean your own drawing</h2>
  <p>Draw a digit (mouse, finger or pen) or start from a real one, choose how much noise to bury it in, and let the model clean it.
    <strong>Low t keeps your sketch and tidies it; high t lets the model redraw it as it likes.</strong></p>
  <details><summary>The maths</summary>
    <p>SDEdit (Meng et al. 2021): x<sub>t</sub> = √ᾱ<sub>t</sub> x<sub>sketch</sub> + √(1 − ᾱ<sub>t</sub>) ε, then the reverse
      process from t down to 0 with the sampler, digit and guidance chosen above. The same run on the command line:
      <code>emerge sample --from sketch.png --t <span id="sketch-t-code"></span></code>.</p>
  </details>
  <div class="sketch-row">
    <div>
      <canvas id="sketch-pad" class="pad" width="28" height="28" role="img"
        aria-label="Drawing pad: draw a digit with the mouse, a finger or a pen"></canvas>
      <div class="buttons">
        <button id="sketch-digit" type="button">Start from a real digit</button>
        <button id="sketch-undo" type="button">Undo</button>
        <button id="sketch-clear" type="button">Clear</button>
      </div>
    </div>
    <div>
      <label>Noise level t = <output id="sketch-t-out"></output>
        <input id="sketch-t" type="range" min="0" max="999">
      </label>
      <button id="sketch-clean" type="button">Clean it</button>
      <div class="stage">
        <figure><canvas id="sketch-samples" width="1" height="1" role="img" aria-label="Your sketch being cleaned, x_t"></canvas>
          <figcaption>x<sub>t</sub> · t = <output id="sketch-step-t">–</output></figcaption></figure>
        <figure><canvas id="sketch-prediction" width="1" height="1" role="img" aria-label="The cleaned digit predicted so far"></canvas>
          <figcaption>predicted x̂<sub>0</sub></figcaption></figure>
      </div>
    </div>
  </div>`;

/** Strokes (lists of points in pixel units of the model's image) over an optional base image
 * (a real digit to draw on), rendered at the model's resolution. */
class Sketch {
  constructor(size) {
    this.size = size;
    this.base = null;
    this.strokes = [];
    this.canvas = document.createElement('canvas');
    this.canvas.width = this.canvas.height = size;
  }

  /** The sketch as grey u8 pixels (row-major): white strokes, 2.4 pixels wide, on black. */
  pixels() {
    const ctx = this.canvas.getContext('2d', { willReadFrequently: true });
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, this.size, this.size);
    if (this.base) {
      const rgba = new Uint8ClampedArray(this.size * this.size * 4);
      this.base.forEach((v, i) => rgba.set([v, v, v, 255], 4 * i));
      ctx.putImageData(new ImageData(rgba, this.size, this.size), 0, 0);
    }
    ctx.strokeStyle = '#fff';
    ctx.fillStyle = '#fff';
    ctx.lineWidth = (2.4 * this.size) / 28;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (const stroke of this.strokes) {
      ctx.beginPath();
      stroke.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (stroke.length === 1) ctx.lineTo(stroke[0][0] + 0.01, stroke[0][1]);
      ctx.stroke();
    }
    const rgba = ctx.getImageData(0, 0, this.size, this.size).data;
    return Uint8Array.from({ length: this.size * this.size }, (_, i) => rgba[4 * i]);
  }
}

/** Mounts the view into `root`. `ctx` as in forward.js, plus `cleanSketch({ pixels, timestep })`, which
 * starts the run whose frames `showFrame` below receives. */
export function mount(root, ctx) {
  const $ = render(root, TEMPLATE);
  const size = ctx.model.image_size;
  const pad = $('sketch-pad');
  pad.width = pad.height = size;
  const sketch = new Sketch(size);
  const debug = (window.emergeDebug.sketch = { pixels: null, t: null });
  const slider = timestepSlider($('sketch-t'), ctx.limits, openingT(ctx, OPENING_NOISE.sketch));
  const syncT = () => ($('sketch-t-out').textContent = $('sketch-t-code').textContent = slider.value);
  slider.addEventListener('input', syncT);
  syncT();

  const redraw = () => drawGrey(pad, sketch.pixels(), size, size);
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    return [((event.clientX - box.left) / box.width) * size, ((event.clientY - box.top) / box.height) * size];
  };
  let drawing = false;
  pad.addEventListener('pointerdown', (event) => {
    drawing = true;
    pad.setPointerCapture?.(event.pointerId);
    sketch.strokes.push([point(event)]);
    redraw();
    event.preventDefault();
  });
  pad.addEventListener('pointermove', (event) => {
    if (!drawing) return;
    sketch.strokes.at(-1).push(point(event));
    redraw();
  });
  for (const end of ['pointerup', 'pointercancel', 'pointerleave']) pad.addEventListener(end, () => (drawing = false));
  $('sketch-undo').onclick = () => (sketch.strokes.pop(), redraw());
  $('sketch-clear').onclick = () => ((sketch.strokes = []), (sketch.base = null), redraw());
  // Each press takes the next bundled real digit as the base (also the way in without a pointer).
  let nextDigit = 0;
  $('sketch-digit').onclick = () => {
    sketch.base = fitImage(ctx.digits.image(nextDigit), ctx.digits.rows, ctx.digits.cols, 1, size);
    nextDigit = (nextDigit + 1) % ctx.digits.count;
    redraw();
  };
  $('sketch-clean').onclick = () => {
    if (!sketch.strokes.length && !sketch.base) return ctx.status('Draw something on the pad first, or start from a real digit.', 'warning');
    const pixels = sketch.pixels();
    const image = new Uint8Array(ctx.model.channels * size * size);
    for (let c = 0; c < ctx.model.channels; c++) image.set(pixels, c * size * size);
    debug.pixels = Array.from(pixels);
    debug.t = Number(slider.value);
    ctx.cleanSketch({ pixels: image, timestep: Number(slider.value) });
  };
  redraw();
  return {
    targets: { samples: $('sketch-samples'), prediction: $('sketch-prediction'), t: $('sketch-step-t'), progress: null },
  };
}
