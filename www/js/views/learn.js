// Part 2, how the network learns: one training step on a real digit, the loss over t, and the
// training timeline (the same step and the same seed's samples with earlier weights).

import { digitPicker } from '../digits.js';
import { drawRgba } from '../draw.js';
import { Plot, schedulePlot } from '../plot.js';
import { OPENING_NOISE } from '../settings.js';
import { openingT, render, timestepSlider } from './context.js';
import { mountTimeline } from './timeline.js';

const CURVE_POINTS = 21;

const TEMPLATE = `
  <h2>2 · A network learns to remove the noise</h2>
  <p>Training shows the network a clean digit buried in noise it has never seen and asks one thing:
    <em>which part of this is noise?</em> Like a restorer checking their cleaning against the original
    photograph, it is then told how far off its guess was, and nudged to do better. Millions of such
    lessons later it can clean any noise level. Here is one lesson, computed live by the shipped network.</p>
  <details><summary>The maths</summary>
    <p>Draw x<sub>0</sub>, t and ε ~ N(0, I); form x<sub>t</sub> = √ᾱ<sub>t</sub> x<sub>0</sub> + √(1 − ᾱ<sub>t</sub>) ε;
      the loss is L<sub>simple</sub> = ‖ε − ε<sub>θ</sub>(x<sub>t</sub>, t)‖² (Ho et al. 2020, eq. 14, shown as the mean over pixels).
      The clean image the guess implies is x̂<sub>0</sub> = (x<sub>t</sub> − √(1 − ᾱ<sub>t</sub>) ε<sub>θ</sub>)/√ᾱ<sub>t</sub> (eq. 15).
      Noise images are drawn at half scale: mid-grey is 0, white +2.</p>
  </details>
  <div id="learn-picker" class="digit-picker" role="group" aria-label="Real MNIST digits to learn from"></div>
  <div class="lesson">
    <figure><canvas id="learn-x0" width="1" height="1" role="img" aria-label="The clean digit x_0"></canvas><figcaption>the clean photo x<sub>0</sub></figcaption></figure>
    <figure><canvas id="learn-eps" width="1" height="1" role="img" aria-label="The true noise"></canvas><figcaption>the noise added, ε</figcaption></figure>
    <figure><canvas id="learn-xt" width="1" height="1" role="img" aria-label="The noisy digit x_t"></canvas><figcaption>what it is shown, x<sub>t</sub></figcaption></figure>
    <figure><canvas id="learn-eps-hat" width="1" height="1" role="img" aria-label="The network's guess of the noise"></canvas><figcaption>its guess of the noise, ε̂</figcaption></figure>
    <figure><canvas id="learn-x0-hat" width="1" height="1" role="img" aria-label="The clean digit the guess implies"></canvas><figcaption>the photo its guess implies, x̂<sub>0</sub></figcaption></figure>
  </div>
  <div class="learn-row">
    <div>
      <label>t = <output id="learn-t"></output>
        <input id="learn-slider" type="range" min="0" max="999">
      </label>
      <button id="learn-noise" type="button">New noise</button>
      <p>How far off the noise guess is, L<sub>simple</sub> = <output id="learn-loss">–</output><br>
        how far off the implied photo is, ‖x<sub>0</sub> − x̂<sub>0</sub>‖² = <output id="learn-error">–</output></p>
      <p class="hint">At low t the noise is faint and hard to pin down exactly; at high t almost everything is
        noise, so guessing the noise is easy but the photo it implies is a guess.</p>
    </div>
    <figure><canvas id="learn-curve" class="plot" role="img" aria-label="Both losses over t for this digit and this noise"></canvas>
      <figcaption>both over t for this digit and noise (log scale)</figcaption></figure>
    <figure><canvas id="learn-schedule" class="plot" role="img"></canvas><figcaption>the noise schedule</figcaption></figure>
  </div>
  <div id="timeline" class="timeline"></div>`;

/** Mounts the view into `root`; see forward.js for `ctx`. */
export function mount(root, ctx) {
  const $ = render(root, TEMPLATE);
  const slider = timestepSlider($('learn-slider'), ctx.limits, openingT(ctx, OPENING_NOISE.views));
  const schedule = schedulePlot($('learn-schedule'), ctx.schedule);
  const curve = new Plot($('learn-curve'), { xMax: ctx.limits.timesteps - 1 });
  const state = { digit: 0, seed: ctx.settings.seed, checkpoint: null };
  const debug = (window.emergeDebug.lesson = { frames: 0, curve: null, frame: null });

  const pixels = () => ctx.digitForModel(state.digit);
  const label = () => (ctx.limits.classes > 0 ? ctx.digits.label(state.digit) : null);
  const fields = () => ({ pixels: pixels(), label: label(), seed: state.seed, checkpoint: state.checkpoint });

  // A drag fires many input events: the markers follow each one, while lessons run one at a time,
  // the next one for wherever the slider is when the last one lands (no queue of stale lessons).
  const lessons = { running: false, wanted: false };
  async function showLesson() {
    schedule.mark(Number(slider.value));
    curve.mark(Number(slider.value));
    lessons.wanted = true;
    if (lessons.running) return;
    lessons.running = true;
    while (lessons.wanted) {
      lessons.wanted = false;
      await computeLesson();
    }
    lessons.running = false;
  }

  async function computeLesson() {
    try {
      const request = { ...fields(), t: Number(slider.value) };
      const frame = await ctx.client.request('lesson', request);
      const images = { 'learn-x0': frame.original, 'learn-eps': frame.noise, 'learn-xt': frame.noisy, 'learn-eps-hat': frame.predicted_noise, 'learn-x0-hat': frame.prediction };
      for (const [id, rgba] of Object.entries(images)) drawRgba($(id), frame.width, frame.height, rgba);
      $('learn-loss').textContent = frame.noise_loss.toPrecision(3);
      $('learn-error').textContent = frame.image_error.toPrecision(3);
      $('learn-t').textContent = frame.timestep;
      debug.frame = { timestep: frame.timestep, noise_loss: frame.noise_loss, image_error: frame.image_error, checkpoint: state.checkpoint, seed: request.seed };
      debug.frames += 1;
    } catch (error) {
      ctx.status(error.message, 'error');
    }
  }

  async function showCurve() {
    try {
      const result = await ctx.client.request('lossCurve', { ...fields(), points: CURVE_POINTS });
      curve.setSeries([
        { label: 'L_simple', xs: result.timesteps, ys: result.noise_loss, log: true },
        { label: '‖x0 − x̂0‖²', xs: result.timesteps, ys: result.image_error, log: true },
      ]);
      debug.curve = result;
    } catch (error) {
      ctx.status(error.message, 'error');
    }
  }

  const refresh = () => Promise.all([showLesson(), showCurve()]);
  slider.addEventListener('input', showLesson);
  $('learn-noise').onclick = () => {
    state.seed = Math.floor(Math.random() * 2 ** 32);
    refresh();
  };
  digitPicker($('learn-picker'), ctx.digits, (i) => ((state.digit = i), refresh()));
  mountTimeline($('timeline'), ctx, (checkpoint) => {
    state.checkpoint = checkpoint;
    refresh();
  });
}
