// The full demo page: controls, the live reverse process, the forward process, status.
// Only DOM work happens here; the model runs in the worker.

import { Client, formatBytes, loadManifest } from './client.js';
import { fitImage, loadDigits } from './digits.js';
import { drawGrey, drawRgba, savePng } from './draw.js';
import { DDIM_STEPS, DEFAULTS, modelDefaults, parseSettings, readSetting, settingsUrl } from './settings.js';
import { chooseModel, createDebug, describeModel, fitToLimits, showFrame } from './stage.js';

const $ = (id) => document.getElementById(id);
const { given, notes } = parseSettings(location.search);
// The URL's values over the model's recommended ones (filled in once the manifest is read).
const settings = { ...DEFAULTS, ...given };
let defaults = DEFAULTS;
let model = null;
// What the engine accepts for the loaded model: {timesteps, max_batch, max_guidance, classes}.
let limits = null;
let digits = null;
let chosenDigit = 0;
let runStarted = 0;
let lastFrameAt = 0;
let lastStep = 0;

const debug = createDebug();
const setState = (state) => (document.body.dataset.state = state);

function status(text, kind = 'info') {
  const line = $('status-message');
  line.textContent = text;
  line.dataset.kind = kind;
}

function showNotes(list) {
  $('notes').hidden = list.length === 0;
  $('notes').textContent = list.join(' ');
}

// ---- controls ↔ settings -------------------------------------------------------------------

function writeControls() {
  $('sampler').value = settings.sampler;
  $('steps').value = settings.steps;
  $('eta').value = settings.eta;
  $('seed').value = settings.seed;
  $('batch').value = settings.batch;
  $('digit').value = String(settings.class);
  $('guidance').value = settings.guidance;
  $('interval').value = settings.interval;
  $('per-draw').value = settings.perDraw;
  syncLabels();
}

/** Sizes the controls to the engine's limits for the loaded model. */
function applyLimits() {
  $('batch').max = limits.max_batch;
  $('guidance').max = limits.max_guidance;
  $('steps').max = Math.min(DDIM_STEPS.max, limits.timesteps);
  $('forward-slider').max = limits.timesteps - 1;
  $('ddpm-option').textContent = `DDPM, all ${limits.timesteps} steps`;
  for (const id of ['digit', 'guidance', 'interval']) $(id).disabled = limits.classes === 0;
}

function syncLabels() {
  const ddim = $('sampler').value === 'ddim';
  $('steps').disabled = !ddim;
  $('eta').disabled = !ddim;
  $('steps-out').textContent = ddim ? $('steps').value : String(limits?.timesteps ?? '');
  $('eta-out').textContent = Number($('eta').value).toFixed(2);
  $('guidance-out').textContent = Number($('guidance').value).toFixed(2);
  $('batch-out').textContent = $('batch').value;
  $('per-draw-out').textContent = $('per-draw').value;
}

function readControls() {
  const clampInt = (v, lo, hi, fallback) => (Number.isInteger(v) && v >= lo && v <= hi ? v : fallback);
  settings.sampler = $('sampler').value;
  settings.steps = clampInt(Number($('steps').value), DDIM_STEPS.min, DDIM_STEPS.max, 50);
  settings.eta = Number($('eta').value);
  settings.seed = clampInt(Number($('seed').value), 0, 2 ** 32 - 1, 1);
  settings.batch = clampInt(Number($('batch').value), 1, limits.max_batch, DEFAULTS.batch);
  settings.class = $('digit').value === 'any' ? 'any' : Number($('digit').value);
  settings.guidance = Number($('guidance').value);
  const interval = readSetting('interval', $('interval').value.trim());
  if (interval === undefined) status(`Guidance interval "${$('interval').value}" is not LOW-HIGH or all; kept ${settings.interval}.`, 'warning');
  else settings.interval = interval;
  fitToLimits(settings, limits, []);
  $('interval').value = settings.interval;
  settings.perDraw = clampInt(Number($('per-draw').value), 1, 50, 1);
  $('seed').value = settings.seed;
}

// ---- the worker -----------------------------------------------------------------------------

const client = new Client({
  device({ device }) {
    const gpu = device.backend === 'webgpu';
    $('device').textContent = gpu ? `WebGPU · ${device.adapter}` : 'CPU fallback (WebAssembly)';
    $('device').dataset.backend = device.backend;
    $('device-reason').textContent = device.fallback_reason ? `WebGPU unavailable: ${device.fallback_reason}. Running on the CPU: slower.` : '';
  },
  loading({ loaded, total }) {
    $('download').value = total ? loaded / total : 0;
    $('download-text').textContent = `weights ${formatBytes(loaded)} of ${formatBytes(total)}`;
  },
  ready(message) {
    limits = message.limits;
    $('download-text').textContent = `weights ${formatBytes(model.bytes)} loaded · ${model.parameters.toLocaleString('en')} parameters`;
    fitToLimits(settings, limits, notes);
    showNotes(notes);
    applyLimits();
    writeControls();
    setState('ready');
    status('Model loaded.');
    loadDigits()
      .then((d) => {
        digits = d;
        buildDigitPicker();
      })
      .catch((e) => status(`The bundled digits could not be loaded: ${e.message}`, 'error'));
    if (settings.autoplay) start();
  },
  started({ total }) {
    runStarted = performance.now();
    lastFrameAt = runStarted;
    lastStep = 0;
    $('progress').max = total;
    $('progress').value = 0;
    setPlaying(settings.autoplay || document.body.dataset.state === 'running');
  },
  frame(frame) {
    showFrame(frame, debug);
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
    status(`Done: ${settings.batch} samples in ${((performance.now() - runStarted) / 1000).toFixed(1)} s.`);
  },
  paused() {
    setPlaying(false);
  },
  noised(frame) {
    drawRgba($('forward'), frame.width, frame.height, frame.sample);
    $('alpha-bar').textContent = frame.alphaBar.toPrecision(4);
    $('snr').textContent = frame.snr >= 100 ? frame.snr.toExponential(2) : frame.snr.toFixed(3);
    $('forward-t').textContent = frame.timestep;
  },
  fallback({ reason }) {
    status(`${reason}. Switched to the CPU fallback and restarted the run.`, 'warning');
  },
  error({ message }) {
    debug.errors.push(message);
    setPlaying(false);
    setState('error');
    status(message, 'error');
  },
});

function setPlaying(playing) {
  $('play').textContent = playing ? 'Pause' : 'Play';
  $('play').setAttribute('aria-pressed', String(playing));
  if (playing) setState('running');
}

function start(image = null) {
  readControls();
  settings.autoplay = true;
  history.replaceState(null, '', settingsUrl(settings, location.href, defaults));
  client.start(settings, limits, { image, autoplay: true });
  status(image ? `Denoising from t = ${image.t}…` : 'Generating…');
}

// ---- forward process ------------------------------------------------------------------------

function buildDigitPicker() {
  const picker = $('digit-picker');
  picker.replaceChildren();
  for (let i = 0; i < digits.count; i++) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'digit';
    button.setAttribute('aria-label', `real digit ${digits.label(i)} (number ${i + 1})`);
    const canvas = document.createElement('canvas');
    drawGrey(canvas, digits.image(i), digits.rows, digits.cols);
    button.append(canvas);
    button.onclick = () => {
      chosenDigit = i;
      picker.querySelectorAll('.digit').forEach((b, j) => b.setAttribute('aria-pressed', String(j === i)));
      showNoised();
    };
    picker.append(button);
  }
  picker.querySelector('.digit')?.setAttribute('aria-pressed', 'true');
  showNoised();
}

/** The chosen real digit in the model's image shape (padded, grey repeated over colour channels). */
const chosenImage = () => fitImage(digits.image(chosenDigit), digits.rows, digits.cols, model.channels, model.image_size);

function showNoised() {
  if (!digits) return;
  client.send('noised', { pixels: chosenImage(), t: Number($('forward-slider').value), seed: settings.seed });
}

// ---- models ---------------------------------------------------------------------------------

/** Lists every model with its size; choosing one reloads the page with it (its weights are
 * downloaded only then). */
function buildModelPicker(manifest) {
  const picker = $('model');
  picker.replaceChildren(
    ...manifest.models.map((m) => Object.assign(document.createElement('option'), { value: m.name, textContent: describeModel(m) })),
  );
  picker.value = model.name;
  picker.onchange = () => {
    readControls();
    location.href = settingsUrl({ ...settings, model: picker.value === manifest.default ? '' : picker.value }, location.href, defaults);
  };
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
$('forward-slider').addEventListener('input', showNoised);
$('denoise-here').onclick = () => {
  if (!digits) return;
  start({ pixels: chosenImage(), t: Number($('forward-slider').value) });
};

// ---- start ----------------------------------------------------------------------------------

async function main() {
  setState('loading');
  writeControls();
  try {
    const manifest = await loadManifest();
    model = chooseModel(manifest, settings.model, notes);
    defaults = modelDefaults(model);
    Object.assign(settings, defaults, given);
    writeControls();
    buildModelPicker(manifest);
    $('model-name').textContent = `${describeModel(model)} · ${model.source}`;
    $('download-text').textContent = `downloading ${formatBytes(model.bytes)} of weights…`;
    showNotes(notes);
    if (!settings.autoplay) setPlaying(false);
    client.init(settings.backend, model);
  } catch (error) {
    client.handlers.error({ message: error.message });
  }
}

main();
