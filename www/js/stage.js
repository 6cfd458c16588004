// What the full page and the embed share: choosing the model from the manifest, drawing a frame
// of the reverse process, and the hooks the end-to-end tests read.

import { formatBytes } from './client.js';
import { drawRgba } from './draw.js';
import { CPU_BATCH } from './settings.js';

/** The manifest entry named `name` (or the default one, with a note saying so). */
export function chooseModel(manifest, name, notes) {
  const wanted = name || manifest.default;
  const model = manifest.models.find((m) => m.name === wanted);
  if (model) return model;
  notes.push(`There is no model "${wanted}"; showing ${manifest.default}.`);
  return manifest.models.find((m) => m.name === manifest.default);
}

/** "mnist · 28×28 grey · 2.8 MB int8": what a visitor sees of a model before downloading it
 * (the size and how the file stores the weights). */
export function describeModel(model) {
  const colours = model.channels === 3 ? 'colour' : model.channels === 1 ? 'grey' : `${model.channels} channels`;
  return `${model.name} · ${model.image_size}×${model.image_size} ${colours} · ${formatBytes(model.bytes)} ${model.precision ?? 'f16'}`;
}

/** Only an automated browser (the end-to-end tests) pays for a checksum of every frame drawn. */
const CHECKSUM_FRAMES = navigator.webdriver === true;

/** Hooks for the end-to-end tests: frames drawn, a checksum per frame (under automation), the last
 * frame (kept by reference; tests copy what they read). */
export function createDebug() {
  return (window.emergeDebug = { frames: 0, history: [], millis: [], lastFrame: null, firstFrameMs: null, errors: [] });
}

/** The main stage's canvases and outputs (the page's and the embed's). */
const stageTargets = () => ({
  samples: document.getElementById('samples'),
  prediction: document.getElementById('prediction'),
  progress: document.getElementById('progress'),
  t: document.getElementById('t'),
});

/** Draws a frame's x_t and x̂_0 grids into `targets` (the main stage unless given), moves the
 * progress bar and records the frame. */
export function showFrame(frame, debug, targets = stageTargets()) {
  drawRgba(targets.samples, frame.width, frame.height, frame.sample);
  drawRgba(targets.prediction, frame.width, frame.height, frame.prediction);
  if (targets.progress) targets.progress.value = frame.step;
  targets.t.textContent = frame.timestep;
  const stepsDone = frame.step - (debug.lastFrame?.step ?? 0);
  debug.millis.push(frame.millis / Math.max(stepsDone, 1));
  debug.frames += 1;
  if (CHECKSUM_FRAMES) debug.history.push(frameChecksum(frame.sample));
  debug.lastFrame = frame;
  debug.firstFrameMs ??= performance.now();
}

function frameChecksum(rgba) {
  let checksum = 0;
  for (let i = 0; i < rgba.length; i += 4) checksum += rgba[i] + 3 * rgba[i + 1] + 7 * rgba[i + 2];
  return checksum;
}

/** On the CPU fallback, starts with CPU_BATCH images unless the URL (`given`) names a batch, with
 * a note saying so. */
export function fitToDevice(settings, given, backend, notes) {
  if (backend !== 'cpu' || given.batch !== undefined || settings.batch <= CPU_BATCH) return;
  settings.batch = CPU_BATCH;
  notes.push(`On the CPU fallback a run starts with ${CPU_BATCH} images (Batch sets more).`);
}

/** Brings `settings` within what the engine reports for the loaded model (`limits`: T, the
 * largest batch and guidance, the classes), with a note for each value it had to change. */
export function fitToLimits(settings, limits, notes) {
  if (settings.class !== 'any' && settings.class >= limits.classes) {
    notes.push(limits.classes ? `Class ${settings.class} is out of range 0–${limits.classes - 1}; drawing every class.` : 'This model is unconditional: it takes no class.');
    settings.class = 'any';
  }
  if (settings.batch > limits.max_batch) {
    notes.push(`At most ${limits.max_batch} images at once; drawing ${limits.max_batch}.`);
    settings.batch = limits.max_batch;
  }
  if (settings.guidance > limits.max_guidance && limits.classes > 0) {
    notes.push(`Guidance goes up to ${limits.max_guidance}; using ${limits.max_guidance}.`);
    settings.guidance = limits.max_guidance;
  }
  const last = limits.timesteps - 1;
  if (settings.t > last) {
    notes.push(`This model's timesteps end at ${last}; t = ${last}.`);
    settings.t = last;
  }
  const [low, high] = settings.interval === 'all' ? [0, 0] : settings.interval.split('-').map(Number);
  if (high > last) {
    notes.push(`This model's timesteps end at ${last}; guidance interval ${Math.min(low, last)}-${last}.`);
    settings.interval = `${Math.min(low, last)}-${last}`;
  }
}
