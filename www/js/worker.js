// The worker owns the WebAssembly module and the GPU: the page never runs the model, so it
// never freezes (the CPU fallback blocks whatever thread it runs on). Protocol:
//   page → worker  {command: 'init' | 'load' | 'start' | 'play' | 'pause' | 'step' | 'perDraw', ...}
//   worker → page  {status: 'device' | 'loading' | 'preparing' | 'ready' | 'started' | 'frame'
//                           | 'complete' | 'paused' | 'fallback' | 'error', ...}
// and requests that get one answer each (the learning view, the timeline, the schedule, GIFs):
//   page → worker  {request: 'noised' | 'lesson' | 'lossCurve' | 'schedule' | 'checkpoint' | 'sample' | 'gif', id, ...}
//   worker → page  {status: 'reply', id, result} or {status: 'reply', id, error}
// The engine's answers are plain objects (the Rust structs' fields, snake_case, pixels as
// Uint8Arrays): the worker forwards them as they are.
// The engine comes in two builds, so that a visitor downloads one backend: WebGPU, and the CPU
// (Flex) only where WebGPU is missing or fails. Each is compiled once per worker family: helpers
// get the compiled module from their parent.
import { download } from './download.js';
import { listen, messageOf, post, transferables } from './worker-protocol.js';

const MODULES = { webgpu: '../pkg/emerge_web', cpu: '../pkg/emerge_cpu' };
const compiled = {};
const engineClasses = {};
/** The `Engine` class of `backend`'s module, downloaded, compiled and instantiated once. */
function engineClass(backend) {
  engineClasses[backend] ??= (async () => {
    const glue = await import(`${MODULES[backend]}.js`);
    if (!compiled[backend]) {
      const url = new URL(`${MODULES[backend]}_bg.wasm`, import.meta.url);
      const response = await fetch(url);
      if (!response.ok) throw new Error(`the engine ${url} could not be downloaded (HTTP ${response.status})`);
      compiled[backend] = await WebAssembly.compile(await response.arrayBuffer());
    }
    await glue.default({ module_or_path: compiled[backend] });
    return glue.Engine;
  })();
  return engineClasses[backend];
}

let engine = null;
let device = null;
let modelBytes = null;

// On the CPU the run's images are split among up to MAX_WORKERS workers: this one and helpers,
// each a copy of this script with its own engine, their slices drawn as one grid. Each image is
// the one a single worker draws: its noise is its own, whatever slice it lands in.
const MAX_WORKERS = 4;
const pool = { workers: 1, helpers: [] };

/** A helper worker: a copy of this script running one slice of each run. */
class Helper {
  constructor() {
    this.worker = new Worker(new URL(import.meta.url), { type: 'module' });
    this.waiting = [];
    const failAll = (message) => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`a helper worker failed: ${message}`));
    };
    this.worker.onmessage = ({ data }) => {
      if (data.status === 'error') return failAll(data.message);
      const at = this.waiting.findIndex((waiter) => waiter.status === data.status);
      if (at >= 0) this.waiting.splice(at, 1)[0].resolve(data);
    };
    this.worker.onerror = (event) => failAll(event.message || 'it did not start');
  }

  /** Sends `command` and answers the helper's next message of `status`. */
  ask(command, fields, status) {
    const answer = new Promise((resolve, reject) => this.waiting.push({ status, resolve, reject }));
    this.worker.postMessage({ command, ...fields });
    return answer;
  }
}

/** Images 0..images split into at most `workers` contiguous slices, as even as can be. */
function slices(images, workers) {
  const count = Math.max(1, Math.min(workers, images));
  return Array.from({ length: count }, (_, k) => {
    const first = Math.floor((k * images) / count);
    return { first, count: Math.floor(((k + 1) * images) / count) - first };
  });
}

/** The helpers that `parts` slices need besides this worker, each with the model loaded. */
async function helpersFor(parts) {
  while (pool.helpers.length < parts - 1) {
    const helper = new Helper();
    await helper.ask('init', { backend: 'cpu', modelData: modelBytes.slice(), wasm: compiled.cpu }, 'ready');
    pool.helpers.push(helper);
  }
  return pool.helpers.slice(0, parts - 1);
}

function stopHelpers() {
  for (const helper of pool.helpers) helper.worker.terminate();
  pool.helpers = [];
}

/** One frame of a run from its slices' frames: each holds the run's whole grid with only its
 * own images opaque. */
function overlay([frame, ...others]) {
  for (const other of others) {
    for (const key of ['sample', 'prediction']) {
      const [target, source] = [frame[key], other[key]];
      for (let i = 3; i < source.length; i += 4) if (source[i] !== 0) target.set(source.subarray(i - 3, i + 1), i - 3);
    }
  }
  frame.millis = Math.max(frame.millis, ...others.map((other) => other.millis));
  return frame;
}
// The timeline checkpoints loaded so far, in index order (reloaded if the engine is replaced).
const checkpointBytes = [];
// The current run: its settings, whether it plays, and a token that outdated loops check.
const run = { request: null, helpers: [], perDraw: 1, playing: false, token: 0 };
// Every call into the engine goes through this queue: one at a time, in order.
let queue = Promise.resolve();
const enqueue = (job) => (queue = queue.then(job, job));


/** Creates the engine on `backend`: 'webgpu', 'cpu', or 'auto' (WebGPU where the browser has
 * it, else the CPU, with the reason); `reason`: why the CPU replaces a WebGPU engine. */
async function createEngine(backend, reason = null) {
  let created = null;
  let fallbackReason = reason;
  if (backend !== 'cpu') {
    try {
      if (!self.navigator.gpu) throw new Error('WebGPU is unavailable: this browser has no navigator.gpu');
      created = await (await engineClass('webgpu')).create('webgpu');
    } catch (error) {
      if (backend === 'webgpu') throw error;
      fallbackReason = messageOf(error);
    }
  }
  engine = created ?? (await (await engineClass('cpu')).create('cpu'));
  device = { ...engine.device, fallback_reason: fallbackReason };
  post({ status: 'device', device });
}

/** The model file, reporting progress; the size is known from the manifest. */
const downloadWeights = (url, expectedBytes, progress = (loaded, total) => post({ status: 'loading', loaded, total })) =>
  download(url, { expectedBytes, progress, what: 'the weights' });

/** Loads the model file `bytes` into the engine (in the queue: after any step in flight), builds
 * its GPU kernels for runs of `batch` images, and says so with its limits. */
async function loadModel(bytes, batch, fields = {}) {
  const config = await enqueue(() => engine.loadModel(bytes));
  modelBytes = bytes;
  checkpointBytes.length = 0;
  await enqueue(() => prepare(batch));
  post({ status: 'ready', config, limits: engine.limits, bytes: bytes.length, ...fields });
}

/** On WebGPU, compiles the kernels runs of `batch` images take before the first run needs them
 * (its first step is then a step, not a compile). A failure falls back to the CPU, as a failed
 * step does. */
async function prepare(batch) {
  if (device.backend !== 'webgpu') return;
  post({ status: 'preparing' });
  try {
    await engine.prepare(batch);
  } catch (error) {
    await fallBackToCpu(error, false);
  }
}

/** Replaces the failed WebGPU engine by a CPU one holding the same model and checkpoints; the
 * page hears why, and whether the current run starts again (`restarting`). */
async function fallBackToCpu(error, restarting) {
  const reason = `WebGPU failed (${messageOf(error).replace(/\s+/g, ' ').trim()})`;
  post({ status: 'fallback', reason, restarted: restarting });
  try {
    engine.free(); // the WebGPU engine's buffers and device go with it
  } catch {
    // a panic inside the engine left the module unusable: dropping it is all that is left
  }
  engine = null;
  await createEngine('cpu', reason);
  engine.loadModel(modelBytes);
  for (const bytes of checkpointBytes) engine.loadCheckpoint(bytes);
}

/** Starts (or restarts) the current request on the engine: the slice a helper was given, or on
 * the CPU the first slice here and the others on helpers. */
async function begin() {
  const { sampling, slice } = run.request;
  const parts = slice ? [slice] : slices(sampling.images, device.backend === 'cpu' ? pool.workers : 1);
  run.helpers = slice ? [] : await helpersFor(parts.length);
  const [own, ...others] = parts;
  const started = run.helpers.map((helper, k) => helper.ask('start', { sampling, slice: others[k], perDraw: 1, autoplay: false }, 'started'));
  const total = engine.start(sampling, own.first, own.count);
  await Promise.all(started);
  post({ status: 'started', total, workers: parts.length });
}

/** One draw: `count` denoising steps here and on the helpers, then the frame. Falls back to
 * the CPU if WebGPU fails. */
async function advance(count) {
  try {
    const theirs = run.helpers.map((helper) => helper.ask('step', { count }, 'frame'));
    const own = await engine.step(count);
    const frame = overlay([own, ...(await Promise.all(theirs)).map(({ status, ...fields }) => fields)]);
    post({ status: 'frame', ...frame, stepping: engine.stepping }, transferables(frame));
  } catch (error) {
    if (device.backend !== 'webgpu') throw error;
    await fallBackToCpu(error, true);
    await begin();
  }
  if (engine.finished) {
    run.playing = false;
    post({ status: 'complete' });
  }
}

async function playLoop(token) {
  while (run.playing && token === run.token && !engine.finished) {
    await enqueue(() => (run.playing && token === run.token && !engine.finished ? advance(run.perDraw) : null));
    // Let 'pause', 'step' and requests in between draws.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** Reports an error of `command` to the page and stops playing. */
const fail = (command) => (error) => {
  run.playing = false;
  post({ status: 'error', message: messageOf(error), command });
};

/** Plays in the background (messages keep arriving); an error stops it and reaches the page. */
function play(token) {
  playLoop(token).catch(fail('play'));
}

const commands = {
  /** `modelData` and `wasm`: the model's bytes and the compiled engine (a helper gets them from
   * its parent), else downloaded from `modelUrl` and pkg/. `workers`: how many workers share a
   * run on the CPU (default: the cores the browser reports, at most MAX_WORKERS). `batch`: the
   * page's number of images, whose GPU kernels are built at load. */
  async init({ backend, modelUrl, modelBytes: expected, modelData, wasm, workers, batch }) {
    stopHelpers();
    if (wasm) compiled[backend] = wasm;
    pool.workers = workers ?? Math.min(MAX_WORKERS, self.navigator.hardwareConcurrency || 1);
    // the weights download while the engine downloads and compiles and the GPU opens
    const [, bytes] = await Promise.all([createEngine(backend), modelData ?? downloadWeights(modelUrl, expected)]);
    await loadModel(bytes, batch);
  },
  /** Replaces the loaded model (a file from `modelUrl`, or `modelData`: a model the page holds,
   * one trained in it), its GPU kernels built for runs of `batch` images: the run stops, the
   * timeline's checkpoints go, the helpers get it anew. */
  async load({ modelUrl, modelBytes: expected, modelData, batch }) {
    run.playing = false;
    run.token += 1;
    run.request = null;
    stopHelpers();
    await loadModel(modelData ?? (await downloadWeights(modelUrl, expected)), batch, { switched: true });
  },
  async start({ sampling, slice, perDraw, autoplay }) {
    run.token += 1;
    run.request = { sampling, slice };
    run.perDraw = perDraw;
    await enqueue(begin);
    run.playing = autoplay;
    if (autoplay) play(run.token);
  },
  async play() {
    if (!run.request || engine.finished) return;
    run.playing = true;
    play(run.token);
  },
  async pause() {
    run.playing = false;
    post({ status: 'paused' });
  },
  async step({ count = 1 }) {
    run.playing = false;
    if (run.request && !engine.finished) await enqueue(() => advance(count));
  },
  async perDraw({ perDraw }) {
    run.perDraw = perDraw;
  },
};

/** Requests answered once, in the engine queue's order. */
const requests = {
  schedule: () => engine.schedule,
  noised: ({ pixels, t, seed }) => engine.noised(pixels, t, BigInt(seed)),
  lesson: ({ pixels, label, t, seed, checkpoint }) => engine.lesson(pixels, label ?? undefined, t, BigInt(seed), checkpoint ?? undefined),
  lossCurve: ({ pixels, label, seed, points, checkpoint }) => engine.lossCurve(pixels, label ?? undefined, BigInt(seed), points, checkpoint ?? undefined),
  /** Downloads a checkpoint of the loaded model's run and loads it; answers its index. */
  checkpoint: async ({ url, bytes }) => {
    const weights = await downloadWeights(url, bytes, () => {});
    const index = engine.loadCheckpoint(weights);
    checkpointBytes[index] = weights;
    return index;
  },
  sample: ({ sampling, checkpoint }) => engine.sample(sampling, checkpoint ?? undefined),
  gif: ({ grids, width, height, delay }) => engine.encodeGif(grids, width, height, delay),
};

listen({ commands, requests, enqueue, ready: () => engine !== null, notReady: 'the engine is not ready', fail });
