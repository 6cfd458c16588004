// What every view needs once the model is loaded: the worker, the model and its limits, the
// settings, the schedule's curves and the bundled real digits.

import { fitImage, loadDigits } from '../digits.js';

/** Resolves to the views' shared context; `extra` adds the page's own hooks (startRun, …). */
export async function viewContext({ client, model, limits, settings, status }, extra = {}) {
  const [schedule, digits] = await Promise.all([client.request('schedule'), loadDigits()]);
  /** Bundled digit `i` at the model's size and channels, as the engine takes it. */
  const digitForModel = (i) => fitImage(digits.image(i), digits.rows, digits.cols, model.channels, model.image_size);
  return { client, model, limits, settings, status, schedule, digits, digitForModel, ...extra };
}

/** Fills `root` with a view's HTML; returns a lookup of its elements by id. */
export function render(root, html) {
  root.innerHTML = html;
  return (id) => root.querySelector(`#${id}`);
}

/** Where a view's t slider opens: the URL's t, or the first t at which ᾱ_t has fallen to
 * `alphaBar` (the same amount of noise whatever the model's schedule). */
export function openingT(ctx, alphaBar) {
  if (ctx.settings.t !== null) return ctx.settings.t;
  const t = ctx.schedule.alphas_cumprod.findIndex((value) => value <= alphaBar);
  return t < 0 ? ctx.schedule.alphas_cumprod.length - 1 : t;
}

/** A t slider over the model's timesteps 0..T−1, starting at `t`. */
export function timestepSlider(slider, limits, t) {
  slider.max = limits.timesteps - 1;
  slider.value = Math.min(t, limits.timesteps - 1);
  return slider;
}
