// Part 2, the reader's own training run: a small network learns from scratch in a worker of its
// own (train-worker.js), with Train / Pause / Reset, the loss live, a strip of samples drawn every
// few seconds with the weights so far, and the trained model put into the other views or saved.
// Nothing is downloaded for it until the reader opens the trainer.

import { Client, formatBytes } from '../client.js';
import { drawRgba, saveBlob } from '../draw.js';
import { Plot } from '../plot.js';
import { render } from './context.js';

const RECIPE = 'data/trainer.json';
const DIGITS = 'data/training-digits.json';
const MODULES = 'pkg/modules.json';
/** The loss curve's points: the steps' losses averaged in buckets beyond this many. */
const CURVE_POINTS = 600;
/** The running mean's window, in steps. */
const MEAN_OF = 50;

const TEMPLATE = `
  <h3>Train your own</h3>
  <p>Everything above uses a network trained beforehand. Here a small one learns from nothing, on your
    device: each step shows it a batch of digits buried in fresh noise, scores its guesses of the noise
    (L<sub>simple</sub>, as in the lesson above) and corrects it (AdamW). Every few seconds the weights so far
    draw one digit of each class, always from the same noise: blobs first, then digits.</p>
  <p id="train-missing" hidden></p>
  <button id="train-open" type="button" hidden></button>
  <div id="train-body" hidden>
    <p id="train-about"></p>
    <div class="buttons">
      <button id="train-toggle" type="button" aria-pressed="false" disabled>Train</button>
      <button id="train-reset" type="button" disabled>Reset</button>
      <button id="train-use" type="button" disabled>Use this model above</button>
      <button id="train-download" type="button" disabled>Download the model</button>
    </div>
    <p class="train-stats">step <output id="train-step">0</output> · <output id="train-seen">0</output> images seen ·
      <output id="train-rate">–</output> steps/s · loss <output id="train-loss">–</output> <span id="train-state"></span></p>
    <progress id="train-progress" value="0" max="1" aria-label="Trainer download"></progress>
    <canvas id="train-curve" class="plot" role="img" aria-label="The training loss over steps"></canvas>
    <div id="train-strip" class="train-strip" role="list" aria-label="Samples drawn during training, oldest first"></div>
  </div>`;

/** The JSON at `url`, or null where the site has none (the page's tests hold a site to no failed
 * request: the build writes a manifest of no digits where it has none). */
async function optionalJson(url) {
  const response = await fetch(url);
  return response.ok ? response.json() : null;
}

/** Mean of `values[from..to)`. */
const mean = (values, from, to) => values.slice(from, to).reduce((a, b) => a + b, 0) / (to - from);

/** Mounts the view into `root`; `ctx.useModel(model, bytes)` puts a model into the page's other
 * views, `ctx.status(text, kind)` reports. */
export async function mount(root, ctx) {
  const $ = render(root, TEMPLATE);
  const debug = (window.emergeDebug.trainer = { state: 'closed', step: 0, losses: [], samples: [], exported: 0 });
  const [digits, modules] = await Promise.all([optionalJson(DIGITS), optionalJson(MODULES)]);
  if (!digits?.count) {
    $('train-missing').hidden = false;
    $('train-missing').textContent = 'This copy of the site was built without MNIST’s training digits, so the trainer is off ' +
      '(./build.sh bundles them when EMERGE_MNIST names a directory with MNIST’s IDX files).';
    return;
  }
  // The trainer runs where the sampling engine would: WebGPU where the browser has it (and the
  // URL does not ask for the CPU), else the CPU.
  const backend = ctx.settings.backend;
  const gpu = backend !== 'cpu' && Boolean(navigator.gpu);
  const downloadBytes = (modules?.[gpu ? 'emerge_train_gpu' : 'emerge_train']?.gzip_bytes ?? 0) + digits.images.bytes + digits.labels.bytes;
  const open = $('train-open');
  open.hidden = false;
  open.textContent = `Open the trainer: ${formatBytes(downloadBytes)} to download (the trainer, and ${digits.count.toLocaleString('en')} MNIST digits)`;

  const run = { client: null, playing: false, hiddenPause: false, losses: [], step: 0, lastAt: 0, lastStep: 0, parameters: 0, recipe: null };
  const curve = new Plot($('train-curve'), { xLabel: 'step', xMax: 1 });
  const setPlaying = (playing) => {
    run.playing = playing;
    $('train-toggle').textContent = playing ? 'Pause' : 'Train';
    $('train-toggle').setAttribute('aria-pressed', String(playing));
    debug.state = playing ? 'training' : 'paused';
    $('train-state').textContent = playing ? '' : run.hiddenPause ? '· paused while this tab is hidden' : run.step ? '· paused' : '';
  };

  function drawCurve() {
    const { losses } = run;
    const bucket = Math.ceil(losses.length / CURVE_POINTS);
    const xs = [];
    const ys = [];
    for (let from = 0; from < losses.length; from += bucket) {
      const to = Math.min(from + bucket, losses.length);
      xs.push(to);
      ys.push(mean(losses, from, to));
    }
    const means = xs.map((x) => mean(losses, Math.max(0, x - MEAN_OF), x));
    curve.xMax = Math.max(losses.length, 1);
    curve.setSeries([
      { label: bucket > 1 ? `loss (mean per ${bucket} steps)` : 'loss', xs, ys, log: true },
      { label: `mean of the last ${MEAN_OF}`, xs, ys: means, log: true },
    ]);
  }

  function addSamples({ step, frame }) {
    const strip = $('train-strip');
    const atEnd = strip.scrollLeft + strip.clientWidth >= strip.scrollWidth - 4;
    const figure = document.createElement('figure');
    figure.setAttribute('role', 'listitem');
    const canvas = document.createElement('canvas');
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `Samples after ${step} training steps`);
    drawRgba(canvas, frame.width, frame.height, frame.sample);
    const caption = document.createElement('figcaption');
    caption.textContent = `step ${step.toLocaleString('en')}`;
    figure.append(canvas, caption);
    strip.append(figure);
    if (atEnd) strip.scrollLeft = strip.scrollWidth;
    debug.samples.push({ step, width: frame.width, height: frame.height, sample: frame.sample });
  }

  const handlers = {
    loading({ loaded, total }) {
      $('train-progress').value = total ? loaded / total : 0;
    },
    loaded({ digits: count, size, parameters, recipe, device }) {
      Object.assign(run, { parameters, recipe });
      const batch = recipe.batch_size;
      $('train-progress').hidden = true;
      const where = device.backend === 'webgpu' ? `on your GPU (WebGPU · ${device.adapter})` : 'on your CPU (WebAssembly, one thread)';
      const fallback = device.fallback_reason ? ` ${device.fallback_reason}: training on the CPU instead, slower.` : '';
      $('train-about').textContent = `A ${parameters.toLocaleString('en')}-parameter network, ${batch} digits per step from ` +
        `${count.toLocaleString('en')} MNIST digits (${size.join('×')}), ${where}.${fallback}`;
      debug.backend = device.backend;
      for (const id of ['train-toggle', 'train-reset', 'train-use', 'train-download']) $(id).disabled = false;
      debug.state = 'loaded';
    },
    trained({ losses, step, images_seen: seen, millis }) {
      run.losses.push(...losses);
      run.step = step;
      const now = performance.now();
      if (run.lastAt) $('train-rate').textContent = (((step - run.lastStep) * 1000) / Math.max(now - run.lastAt, 1)).toFixed(2);
      else $('train-rate').textContent = ((losses.length * 1000) / Math.max(millis, 1)).toFixed(2);
      run.lastAt = now;
      run.lastStep = step;
      $('train-step').textContent = step.toLocaleString('en');
      $('train-seen').textContent = seen.toLocaleString('en');
      $('train-loss').textContent = mean(run.losses, Math.max(0, run.losses.length - MEAN_OF), run.losses.length).toFixed(4);
      debug.step = step;
      debug.losses = run.losses;
      drawCurve();
    },
    samples: addSamples,
    /** Fresh weights: everything shown of the old ones goes. */
    reset() {
      Object.assign(run, { losses: [], step: 0, lastAt: 0, lastStep: 0 });
      $('train-strip').replaceChildren();
      debug.samples = [];
      debug.losses = run.losses;
      debug.step = 0;
      for (const id of ['train-step', 'train-seen']) $(id).textContent = '0';
      for (const id of ['train-rate', 'train-loss']) $(id).textContent = '–';
      curve.setSeries([]);
      setPlaying(false);
    },
    paused() {
      run.lastAt = 0;
      setPlaying(false);
    },
    error({ message }) {
      setPlaying(false);
      debug.error = message;
      ctx.status(`The trainer stopped: ${message}`, 'error');
    },
  };

  open.onclick = () => {
    open.hidden = true;
    $('train-body').hidden = false;
    debug.state = 'loading';
    run.client = new Client(handlers, new URL('../train-worker.js', import.meta.url));
    run.client.send('load', {
      backend,
      recipeUrl: new URL(RECIPE, location.href).href,
      imagesUrl: new URL(digits.images.file, new URL(DIGITS, location.href)).href,
      labelsUrl: new URL(digits.labels.file, new URL(DIGITS, location.href)).href,
      imagesBytes: digits.images.bytes,
    });
  };
  $('train-toggle').onclick = () => {
    if (run.playing) return run.client.send('pause');
    run.client.send('train');
    setPlaying(true);
  };
  $('train-reset').onclick = () => run.client.send('reset');

  /** The EMA weights as a model file, and what the page's model list says of them. */
  async function exported() {
    const bytes = await run.client.request('export');
    debug.exported = bytes.length;
    const { unet } = run.recipe.model;
    return {
      bytes,
      model: {
        name: 'yours',
        data: bytes,
        bytes: bytes.length,
        precision: 'f16',
        parameters: run.parameters,
        image_size: unet.sample_size,
        channels: unet.in_channels,
        source: `trained in this page for ${run.step.toLocaleString('en')} steps`,
        training_steps: run.step,
        checkpoints: [],
        recommended: { sampler: { kind: 'ddim', eta: 0 }, steps: 20, guidance: { scale: 2, interval: null } },
      },
    };
  }
  $('train-use').onclick = async () => {
    try {
      const { model } = await exported();
      ctx.useModel(model);
      ctx.status(`Using your model (step ${run.step.toLocaleString('en')}) in the views above and below.`);
    } catch (error) {
      ctx.status(`Your model could not be used: ${error.message}`, 'error');
    }
  };
  $('train-download').onclick = async () => {
    try {
      const { bytes } = await exported();
      saveBlob(new Blob([bytes], { type: 'application/octet-stream' }), `emerge-trained-step-${run.step}.bpk`);
    } catch (error) {
      ctx.status(`Your model could not be saved: ${error.message}`, 'error');
    }
  };

  // Training stops while the tab is hidden and resumes when the reader is back.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden && run.playing) {
      run.hiddenPause = true;
      run.client.send('pause');
    } else if (!document.hidden && run.hiddenPause) {
      run.hiddenPause = false;
      run.client.send('train');
      setPlaying(true);
    }
  });
}
