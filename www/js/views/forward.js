// Part 1, the forward process q(x_t | x_0): a real digit noised to any t, with the schedule.

import { digitPicker } from '../digits.js';
import { drawRgba } from '../draw.js';
import { schedulePlot } from '../plot.js';
import { OPENING_NOISE } from '../settings.js';
import { openingT, render, timestepSlider } from './context.js';

const TEMPLATE = `
  <h2>1 · Noise is added, step by step</h2>
  <p>Pick a real digit and drag t. Each step of the forward process mixes in a little Gaussian noise;
    after T steps nothing of the digit is left. No network is involved here: this is how the training
    pictures are made.</p>
  <details><summary>The maths</summary>
    <p>x<sub>t</sub> = √ᾱ<sub>t</sub> x<sub>0</sub> + √(1 − ᾱ<sub>t</sub>) ε with ε ~ N(0, I) and
      ᾱ<sub>t</sub> = ∏<sub>s≤t</sub>(1 − β<sub>s</sub>) (Ho et al. 2020, eq. 4). SNR(t) = ᾱ<sub>t</sub>/(1 − ᾱ<sub>t</sub>).</p>
    <p id="schedule-name"></p>
  </details>
  <div id="digit-picker" class="digit-picker" role="group" aria-label="Real MNIST digits"></div>
  <div class="forward-row">
    <canvas id="forward" width="1" height="1" role="img" aria-label="The noised digit x_t"></canvas>
    <div>
      <label>t = <output id="forward-t"></output>
        <input id="forward-slider" type="range" min="0" max="999" value="300">
      </label>
      <p>ᾱ<sub>t</sub> = <output id="alpha-bar">–</output> · SNR = <output id="snr">–</output></p>
      <button id="denoise-here" type="button" hidden>Denoise from here</button>
      <canvas id="forward-schedule" class="plot" role="img"></canvas>
    </div>
  </div>`;

/** The β schedule a model file names (the engine's `beta_schedule`), in words, over T steps. */
function scheduleName(beta, T) {
  if (beta.kind === 'linear') {
    return `This model's β<sub>t</sub> rises linearly from ${beta.beta_start} to ${beta.beta_end} over T = ${T} steps (the paper's schedule, §4).`;
  }
  if (beta.kind === 'cosine') {
    return `This model uses the cosine schedule (Nichol &amp; Dhariwal 2021, eq. 17): ᾱ<sub>t</sub> = f(t)/f(0) with
      f(t) = cos²(((t/T + s)/(1 + s))·π/2), s = ${beta.s}, T = ${T}, β<sub>t</sub> capped at 0.999. It takes the digit
      away more evenly over t than the paper's linear β, under which little is left after t ≈ 600.`;
  }
  return `This model's schedule: ${beta.kind}, T = ${T}.`;
}

/** Mounts the view into `root`. `ctx`: { client, model, limits, schedule, digits, settings,
 * status, startRun (absent in the embed) }. */
export function mount(root, ctx) {
  const $ = render(root, TEMPLATE);
  const slider = timestepSlider($('forward-slider'), ctx.limits, openingT(ctx, OPENING_NOISE.views));
  const plot = schedulePlot($('forward-schedule'), ctx.schedule);
  $('schedule-name').innerHTML = scheduleName(ctx.schedule.beta_schedule, ctx.schedule.alphas_cumprod.length);
  let chosen = 0;
  const image = () => ctx.digitForModel(chosen);

  async function show() {
    const t = Number(slider.value);
    plot.mark(t);
    try {
      const frame = await ctx.client.request('noised', { pixels: image(), t, seed: ctx.settings.seed });
      drawRgba($('forward'), frame.width, frame.height, frame.sample);
      $('alpha-bar').textContent = frame.alpha_bar.toPrecision(4);
      $('snr').textContent = frame.snr >= 100 ? frame.snr.toExponential(2) : frame.snr.toFixed(3);
      $('forward-t').textContent = frame.timestep;
    } catch (error) {
      ctx.status(error.message, 'error');
    }
  }

  slider.addEventListener('input', show);
  if (ctx.startRun) {
    $('denoise-here').hidden = false;
    $('denoise-here').onclick = () => ctx.startRun({ pixels: image(), timestep: Number(slider.value) });
  }
  digitPicker($('digit-picker'), ctx.digits, (i) => ((chosen = i), show()));
  return { show };
}
