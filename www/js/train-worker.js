// The trainer's worker: it owns a trainer module (pkg/emerge_train_gpu on WebGPU, else
// pkg/emerge_train on the CPU; fetched only by a reader who opens the trainer) and trains while
// the page draws. Protocol:
//   page → worker  {command: 'load' | 'train' | 'pause' | 'reset', ...}
//   worker → page  {status: 'loading' | 'loaded' | 'trained' | 'samples' | 'paused' | 'reset' | 'error', ...}
// and one request, answered once:
//   page → worker  {request: 'export', id}  →  {status: 'reply', id, result | error}
// Training runs in calls of a few steps each (about a quarter of a second), so that Pause is
// heard within one call; every few seconds of training the EMA weights draw one sample per digit.
import { download, gunzip } from './download.js';
import { listen, messageOf, post } from './worker-protocol.js';

const MODULES = { webgpu: '../pkg/emerge_train_gpu.js', cpu: '../pkg/emerge_train.js' };

/** A call to the trainer lasts about this long, whatever the device's speed. */
const CALL_MS = 250;
/** A grid of samples after at least this much training time, and at least this many times the
 * time the last grid took (so that drawing never takes more than a fifth of the time). */
const SAMPLE_EVERY_MS = 5000;
const SAMPLE_SHARE = 5;
/** The grid: one DDIM run (Song et al. 2021, η = 0) of a few steps, ten images (one of each class
 * for a class-conditional recipe, guided), the same seed every time so that the strip shows the
 * weights change, not the noise. */
const SAMPLES = { sampler: { kind: 'ddim', eta: 0 }, steps: 10, seed: 0, images: 10, guidance: { scale: 2, interval: null } };


const state = {
  data: null, // { recipe, images, labels }
  training: null,
  step: 0, // optimisation steps done
  playing: false,
  token: 0, // outdated loops stop when it changes
  stepMs: null, // the last call's time per step
  trainedMs: 0, // training time since the last grid
  sampleMs: 0, // what the last grid took
};
// Every call into the trainer goes through this queue: one at a time, in order.
let queue = Promise.resolve();
const enqueue = (job) => (queue = queue.then(job, job));

/** An IDX file's records after its header, checked against its magic number. */
function idxBody(bytes, magic, what) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 || view.getUint32(0) !== magic) throw new Error(`${what} is not an IDX file`);
  const dims = Array.from({ length: magic & 0xff }, (_, i) => view.getUint32(4 + 4 * i));
  return { dims, body: bytes.subarray(4 + 4 * dims.length) };
}

/** The recipe and the digits (gzip IDX, MNIST's format), downloaded with progress. */
async function loadData({ recipeUrl, imagesUrl, labelsUrl, imagesBytes }) {
  const response = await fetch(recipeUrl);
  if (!response.ok) throw new Error(`the training recipe ${recipeUrl} is missing (HTTP ${response.status})`);
  const recipe = await response.json();
  const progress = (loaded, total) => post({ status: 'loading', loaded, total });
  const what = 'the training digits';
  const images = idxBody(await gunzip(await download(imagesUrl, { expectedBytes: imagesBytes, progress, what }), imagesUrl), 0x803, imagesUrl);
  const labels = idxBody(await gunzip(await download(labelsUrl, { what }), labelsUrl), 0x801, labelsUrl);
  if (labels.dims[0] !== images.dims[0]) throw new Error(`${images.dims[0]} training images but ${labels.dims[0]} labels`);
  return { recipe, images: images.body, labels: labels.body, count: images.dims[0], size: images.dims.slice(1) };
}

/** A network to train on `backend` ('webgpu' or 'cpu'), its weights drawn from the recipe's seed. */
async function trainingOn(backend) {
  const glue = await import(MODULES[backend]);
  await glue.default();
  const { recipe, images, labels } = state.data;
  return glue.Training.create(recipe, images, labels, backend);
}

/** A network on `backend`: 'webgpu', 'cpu', or 'auto' (WebGPU where the browser has it, else
 * the CPU, with the reason). */
async function create(backend) {
  let reason = null;
  if (backend !== 'cpu') {
    try {
      if (!self.navigator.gpu) throw new Error('WebGPU is unavailable: this browser has no navigator.gpu');
      return { training: await trainingOn('webgpu'), reason };
    } catch (error) {
      if (backend === 'webgpu') throw error;
      reason = messageOf(error);
    }
  }
  return { training: await trainingOn('cpu'), reason };
}

/** One grid from the EMA weights, posted with the step it shows. */
async function sample() {
  const started = performance.now();
  const conditional = state.data.recipe.model.unet.num_class_embeds != null;
  const frame = await state.training.sample({ ...SAMPLES, classes: conditional ? 'each_in_turn' : 'unconditional' });
  state.sampleMs = performance.now() - started;
  state.trainedMs = 0;
  post({ status: 'samples', step: state.step, frame }, [frame.sample.buffer, frame.prediction.buffer]);
}

/** Trains while playing: calls of about CALL_MS, each followed by its losses, and a grid when
 * enough training time has passed. */
async function loop(token) {
  while (state.playing && token === state.token) {
    await enqueue(async () => {
      if (!state.playing || token !== state.token) return;
      const count = state.stepMs ? Math.max(1, Math.min(64, Math.round(CALL_MS / state.stepMs))) : 1;
      const started = performance.now();
      const trained = await state.training.train(count);
      const millis = performance.now() - started;
      state.stepMs = millis / count;
      state.trainedMs += millis;
      state.step = trained.step;
      post({ status: 'trained', ...trained, millis });
      if (state.trainedMs >= Math.max(SAMPLE_EVERY_MS, SAMPLE_SHARE * state.sampleMs)) await sample();
    });
    // Let 'pause' and requests in between calls.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

const commands = {
  /** Downloads the recipe and the digits, then the trainer module for `backend` (see
   * `create`); creates the network and draws its first (untrained) grid. */
  async load({ backend, ...urls }) {
    const { recipe, images, labels, count, size } = await loadData(urls);
    state.data = { recipe, images, labels };
    await enqueue(async () => {
      const { training, reason } = await create(backend);
      state.training = training;
      const device = { ...training.device, fallback_reason: reason };
      post({ status: 'loaded', digits: count, size, parameters: training.parameters, recipe, device });
      await sample();
    });
  },
  async train() {
    if (!state.training || state.playing) return;
    state.playing = true;
    state.token += 1;
    loop(state.token).catch(fail('train'));
  },
  async pause() {
    state.playing = false;
    post({ status: 'paused' });
  },
  /** Starts over from freshly drawn weights (the recipe's seed: the same start as before). */
  async reset() {
    state.playing = false;
    state.token += 1;
    post({ status: 'paused' });
    await enqueue(async () => {
      state.training.reset();
      Object.assign(state, { step: 0, trainedMs: 0 });
      post({ status: 'reset' });
      await sample();
    });
  },
};

const requests = {
  /** A model file (f16) of the EMA weights. */
  export: () => state.training.exportModel(),
};

/** Reports an error of `command` to the page and stops training. */
const fail = (command) => (error) => {
  state.playing = false;
  post({ status: 'error', message: messageOf(error), command });
};

listen({ commands, requests, enqueue, ready: () => state.training !== null, notReady: 'the trainer is not ready', fail });
