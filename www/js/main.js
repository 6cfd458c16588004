// The full demo page, one explanation in four live views: the forward process, how the network
// learns, the reverse process with its controls, and the visitor's own drawing. Only DOM work
// happens here; the model runs in the worker.

import { Client, formatBytes } from './client.js';
import { drawRgba, saveBlob, savePng } from './draw.js';
import { FrameHistory } from './history.js';
import { schedulePlot } from './plot.js';
import { $, chooseModelFor, setPlaying, setState, showNotes, status, urlSettings } from './page.js';
import { DEFAULTS, STEPS, modelDefaults, readSetting, settingsUrl } from './settings.js';
import { createDebug, describeModel, fitToDevice, fitToLimits, showFrame } from './stage.js';
import { viewContext } from './views/context.js';
import * as forwardView from './views/forward.js';
import * as learnView from './views/learn.js';
import * as sketchView from './views/sketch.js';
import * as trainView from './views/train.js';

// The URL's values over the model's recommended ones (filled in once the manifest is read).
const page = urlSettings();
const { settings, given, notes } = page;
let defaults = DEFAULTS;
let model = null;
// What the engine accepts for the loaded model: {timesteps, max_batch, max_guidance, classes}.
let limits = null;
// Which view the current run draws into ('generate' or 'sketch'), and the sketch view's targets.
let runOwner = 'generate';
let sketch = null;
let stagePlot = null;
// The model list, and the models the picker lists: the manifest's, then one trained in this
// page; `listModels()` refills the picker.
let manifestOf = null;
let models = [];
let listModels = () => {};
let trainMounted = false;
// The current run's frames, for scrubbing and the GIF.
const runFrames = new FrameHistory();
let runStarted = 0;
let lastFrameAt = 0;
let lastStep = 0;

const debug = createDebug();

// ---- controls ↔ settings -------------------------------------------------------------------

// The run's controls: the setting each one shows, read back through settings.js's parameter table.
const CONTROLS = { sampler: 'sampler', steps: 'steps', eta: 'eta', seed: 'seed', batch: 'batch', class: 'digit', guidance: 'guidance', interval: 'interval', perDraw: 'per-draw' };

function writeControls() {
  for (const [name, id] of Object.entries(CONTROLS)) $(id).value = String(settings[name]);
  syncLabels();
}

/** Sizes the controls to the engine's limits for the loaded model. */
function applyLimits() {
  $('batch').max = limits.max_batch;
  $('guidance').max = limits.max_guidance;
  $('steps').max = Math.min(STEPS.max, limits.timesteps - 1);
  $('ddpm-option').textContent = `DDPM, all ${limits.timesteps} steps`;
  for (const id of ['digit', 'guidance', 'interval']) $(id).disabled = limits.classes === 0;
}

function syncLabels() {
  const respaced = $('sampler').value !== 'ddpm';
  $('steps').disabled = !respaced;
  $('eta').disabled = $('sampler').value !== 'ddim';
  $('steps-out').textContent = respaced ? $('steps').value : String(limits?.timesteps ?? '');
  $('eta-out').textContent = Number($('eta').value).toFixed(2);
  $('guidance-out').textContent = Number($('guidance').value).toFixed(2);
  $('batch-out').textContent = $('batch').value;
  $('per-draw-out').textContent = $('per-draw').value;
}

/** The settings from the controls: each read as its URL parameter is (a value the table refuses
 * keeps the current setting, with a warning), then fitted to the engine's limits. */
function readControls() {
  const refused = [];
  for (const [name, id] of Object.entries(CONTROLS)) {
    const text = $(id).value.trim();
    const value = readSetting(name, text);
    if (value === undefined) refused.push(`${name} "${text}"`);
    else settings[name] = value;
  }
  if (refused.length) status(`Kept the current ${refused.join(', ')}: not a valid value.`, 'warning');
  fitToLimits(settings, limits, []);
  writeControls();
}

// ---- the worker -----------------------------------------------------------------------------

/** The device line says how WebGPU runs the steps: one recorded step replayed, or every kernel
 * launched afresh (the engine's reason in the tooltip). */
function showStepping(stepping) {
  const line = $('device');
  if (line.dataset.backend !== 'webgpu' || !stepping || line.dataset.stepping === stepping) return;
  line.dataset.stepping = stepping;
  const recorded = stepping === 'recorded';
  line.textContent = `WebGPU · ${line.dataset.adapter} · ${recorded ? 'step recorded once, replayed' : 'kernels launched every step'}`;
  line.title = recorded ? '' : stepping;
}

const client = new Client({
  device({ device }) {
    const gpu = device.backend === 'webgpu';
    $('device').textContent = gpu ? `WebGPU · ${device.adapter}` : 'CPU fallback (WebAssembly)';
    $('device').dataset.backend = device.backend;
    $('device').dataset.adapter = device.adapter;
    $('device-reason').textContent = device.fallback_reason ? `${device.fallback_reason}. Running on the CPU: slower.` : '';
  },
  loading({ loaded, total }) {
    $('download').value = total ? loaded / total : 0;
    $('download-text').textContent = `weights ${formatBytes(loaded)} of ${formatBytes(total)}`;
  },
  ready(message) {
    limits = message.limits;
    fitToDevice(settings, given, $('device').dataset.backend, notes);
    $('download-text').textContent = `weights ${formatBytes(model.bytes)} loaded · ${model.parameters.toLocaleString('en')} parameters`;
    fitToLimits(settings, limits, notes);
    showNotes(notes);
    applyLimits();
    writeControls();
    setState('ready');
    status('Model loaded.');
    mountViews().catch((e) => status(`The explanation views could not start: ${e.message}`, 'error'));
    if (settings.autoplay || message.switched) start();
  },
  started({ total, workers }) {
    if ($('device').dataset.backend === 'cpu') $('device').textContent = `CPU fallback (WebAssembly, ${workers === 1 ? 'one worker' : `${workers} workers`})`;
    if (runOwner === 'generate') {
      runFrames.reset();
      setScrubbing(false);
      $('progress').max = total;
      $('progress').value = 0;
    }
    runStarted = performance.now();
    lastFrameAt = runStarted;
    lastStep = 0;
    setPlaying(settings.autoplay || document.body.dataset.state === 'running');
  },
  frame(frame) {
    showStepping(frame.stepping);
    if (runOwner === 'sketch') return showFrame(frame, debug, sketch.targets);
    showFrame(frame, debug);
    runFrames.add(frame);
    stagePlot?.mark(frame.timestep);
    const now = performance.now();
    const rate = ((frame.step - lastStep) * 1000) / Math.max(now - lastFrameAt, 1);
    lastFrameAt = now;
    lastStep = frame.step;
    $('step').textContent = `${frame.step} / ${frame.total}`;
    $('rate').textContent = `${rate.toFixed(1)} steps/s`;
    $('elapsed').textContent = `${((now - runStarted) / 1000).toFixed(1)} s`;
  },
  complete() {
    setPlaying(false);
    setState('complete');
    setScrubbing(runOwner === 'generate');
    status(`Done: ${settings.batch} samples in ${((performance.now() - runStarted) / 1000).toFixed(1)} s.`);
  },
  paused() {
    setPlaying(false);
    setScrubbing(runOwner === 'generate');
  },
  preparing() {
    $('download-text').textContent = `weights ${formatBytes(model.bytes)} loaded · building the GPU's kernels…`;
  },
  fallback({ reason, restarted }) {
    status(`${reason}. Switched to the CPU fallback${restarted ? ' and restarted the run' : ''}.`, 'warning');
  },
  error({ message }) {
    debug.errors.push(message);
    setPlaying(false);
    setState('error');
    status(message, 'error');
  },
});

/** Starts a run from noise, or from `image` ({pixels, timestep}: a real digit or a sketch noised
 * to that timestep); `owner` is the view that draws its frames. */
function start(image = null, owner = 'generate') {
  readControls();
  settings.autoplay = true;
  runOwner = owner;
  history.replaceState(null, '', settingsUrl(settings, location.href, defaults));
  client.start(settings, limits, { image, autoplay: true });
  status(image ? `Denoising from t = ${image.timestep}…` : 'Generating…');
}

// ---- the other views ------------------------------------------------------------------------

async function mountViews() {
  const ctx = await viewContext({ client, model, limits, settings, status }, {
    startRun: (image) => start(image),
    useModel,
    cleanSketch: (image) => start(image, 'sketch'),
  });
  stagePlot = schedulePlot($('stage-schedule'), ctx.schedule);
  forwardView.mount($('forward-view'), ctx);
  learnView.mount($('learn-view'), ctx);
  sketch = sketchView.mount($('sketch-view'), ctx);
  // The trainer keeps its run across models: it is mounted once.
  if (!trainMounted) {
    trainMounted = true;
    trainView.mount($('train-view'), ctx).catch((e) => status(`The trainer could not start: ${e.message}`, 'error'));
  }
  debug.views = true;
}

// ---- scrubbing through a paused or finished run, and its GIF ---------------------------------

function setScrubbing(enabled) {
  const frames = runFrames.frames;
  $('scrub').disabled = !enabled || frames.length < 2;
  $('save-gif').disabled = !enabled || frames.length === 0;
  $('scrub').max = Math.max(frames.length - 1, 0);
  $('scrub').value = $('scrub').max;
  $('scrub-out').textContent = frames.length ? `${frames.at(-1).step} of ${frames.at(-1).total}` : '–';
}

$('scrub').addEventListener('input', () => {
  const frame = runFrames.frames[Number($('scrub').value)];
  if (!frame) return;
  drawRgba($('samples'), frame.width, frame.height, frame.sample);
  drawRgba($('prediction'), frame.width, frame.height, frame.prediction);
  $('t').textContent = frame.timestep;
  $('scrub-out').textContent = `${frame.step} of ${frame.total}`;
  stagePlot?.mark(frame.timestep);
});

/** A GIF of the first image's trajectory, from the frames kept (the engine takes the image out
 * of its grids). */
$('save-gif').onclick = async () => {
  const { frames } = runFrames;
  const { width, height } = frames[0];
  const grids = new Uint8Array(frames.length * width * height * 4);
  frames.forEach((frame, i) => grids.set(frame.sample, i * frame.sample.length));
  try {
    const gif = await client.request('gif', { grids, width, height, delay: 80 });
    debug.gif = { bytes: gif.length, frames: frames.length };
    saveBlob(new Blob([gif], { type: 'image/gif' }), `emerge-seed-${settings.seed}.gif`);
  } catch (error) {
    status(`The GIF could not be made: ${error.message}`, 'error');
  }
};

// ---- models ---------------------------------------------------------------------------------

/** Lists every model with its size; choosing one loads it in place (its weights are downloaded
 * only then) and starts a run with it. */
function buildModelPicker(manifest) {
  models = [...manifest.models];
  const picker = $('model');
  const fill = () =>
    picker.replaceChildren(...models.map((m) => Object.assign(document.createElement('option'), { value: m.name, textContent: describeModel(m) })));
  fill();
  picker.value = model.name;
  picker.onchange = () => {
    readControls();
    switchModel(models.find((m) => m.name === picker.value));
  };
  return fill;
}

/** Shows which model is loaded. */
function describeLoaded() {
  $('model-name').textContent = `${describeModel(model)} · ${model.source}`;
  $('model').value = model.name;
}

/** Loads `chosen` in place of the current model, from its file or from the bytes the page holds
 * (`chosen.data`: a model trained here), under its recommended settings and the URL's own values;
 * a run starts with it once it is loaded. */
function switchModel(chosen) {
  model = chosen;
  defaults = modelDefaults(model);
  Object.assign(settings, defaults, given, { model: model.data || model.name === manifestOf.default ? '' : model.name });
  describeLoaded();
  setState('loading');
  status(`Loading ${model.name}…`);
  client.load(model, settings.batch);
}

/** Puts a model trained in the page into the picker (replacing an earlier one) and loads it. */
function useModel(trained) {
  models = [...models.filter((m) => m.name !== trained.name), trained];
  listModels();
  switchModel(trained);
}

// ---- wiring ---------------------------------------------------------------------------------

for (const id of ['sampler', 'steps', 'eta', 'guidance', 'batch', 'per-draw']) $(id).addEventListener('input', syncLabels);
$('per-draw').addEventListener('change', () => client.send('perDraw', { perDraw: Number($('per-draw').value) }));
$('controls').addEventListener('submit', (event) => {
  event.preventDefault();
  start();
});
$('play').onclick = () => {
  const playing = $('play').getAttribute('aria-pressed') === 'true';
  if (playing) client.send('pause');
  else if (document.body.dataset.state === 'complete') start();
  else {
    client.send('play');
    setPlaying(true);
  }
};
$('single').onclick = () => {
  setPlaying(false);
  client.send('step');
};
$('dice').onclick = () => {
  $('seed').value = Math.floor(Math.random() * 2 ** 32);
  start();
};
$('share').onclick = async () => {
  readControls();
  const url = settingsUrl(settings, location.href, defaults);
  $('share-url').value = url;
  $('share-url').hidden = false;
  try {
    await navigator.clipboard.writeText(url);
    status('Link copied: it reproduces these images.');
  } catch {
    status('Copy the link above: it reproduces these images.');
  }
};
$('save').onclick = () => savePng($('samples'), `emerge-seed-${settings.seed}.png`);

// ---- start ----------------------------------------------------------------------------------

async function main() {
  setState('loading');
  writeControls();
  try {
    const chosen = await chooseModelFor(page);
    ({ model, defaults } = chosen);
    const { manifest } = chosen;
    writeControls();
    manifestOf = manifest;
    listModels = buildModelPicker(manifest);
    describeLoaded();
    $('download-text').textContent = `downloading ${formatBytes(model.bytes)} of weights…`;
    showNotes(notes);
    if (!settings.autoplay) setPlaying(false);
    client.init(settings, model);
  } catch (error) {
    client.handlers.error({ message: error.message });
  }
}

main();
