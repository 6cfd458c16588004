// The worker owns the WebAssembly module and the GPU: the page never runs the model, so it
// never freezes (the CPU fallback blocks whatever thread it runs on). Protocol:
//   page → worker  {command: 'init' | 'start' | 'play' | 'pause' | 'step' | 'perDraw', ...}
//   worker → page  {status: 'device' | 'loading' | 'ready' | 'started' | 'frame' | 'complete'
//                           | 'paused' | 'fallback' | 'error', ...}
// and requests that get one answer each (the learning view, the timeline, the schedule, GIFs):
//   page → worker  {request: 'noised' | 'lesson' | 'lossCurve' | 'schedule' | 'checkpoint' | 'sample' | 'gif', id, ...}
//   worker → page  {status: 'reply', id, result} or {status: 'reply', id, error}
import init, { Engine } from '../pkg/emerge_web.js';

let engine = null;
let device = null;
let modelBytes = null;
// The timeline checkpoints loaded so far, in index order (reloaded if the engine is replaced).
const checkpointBytes = [];
// The current run: its settings, whether it plays, and a token that outdated loops check.
const run = { request: null, perDraw: 1, playing: false, token: 0 };
// Every call into the engine goes through this queue: one at a time, in order.
let queue = Promise.resolve();
const enqueue = (job) => (queue = queue.then(job, job));

const post = (message, transfer = []) => self.postMessage(message, transfer);
const messageOf = (error) => (error && error.message) || String(error);

async function createEngine(backend) {
  engine = await Engine.create(backend);
  device = JSON.parse(engine.deviceInfo);
  post({ status: 'device', device });
}

/** Downloads the model file, reporting progress; the size is known from the manifest. */
async function download(url, expectedBytes, progress = (loaded, total) => post({ status: 'loading', loaded, total })) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the weights ${url} could not be downloaded (HTTP ${response.status})`);
  const total = Number(response.headers.get('Content-Length')) || expectedBytes || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress(loaded, total);
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

// The fields of the engine's frames: a sampling step's (StepFrame) and a lesson's (LearnFrame).
const STEP_FRAME = ['timestep', 'step', 'total', 'width', 'height', 'alphaBar', 'snr', 'millis', 'sample', 'prediction'];
const LEARN_FRAME = ['timestep', 'width', 'height', 'noiseLoss', 'imageError', 'alphaBar', 'snr', 'millis', 'original', 'noise', 'noisy', 'predictedNoise', 'prediction'];

/** Copies an engine frame's fields out of its object (then freed) into a plain object. */
function plainFrame(frame, keys) {
  const result = Object.fromEntries(keys.map((key) => [key, frame[key]]));
  frame.free();
  return result;
}

/** The pixel arrays of a result, handed over to the page instead of copied. */
const transferables = (result) =>
  result && typeof result === 'object' ? Object.values(result).filter((v) => ArrayBuffer.isView(v)).map((v) => v.buffer) : [];

function postFrame(frame, kind) {
  const result = plainFrame(frame, STEP_FRAME);
  post({ status: kind, ...result }, transferables(result));
}

/** Starts (or restarts) the current request on the engine. */
function begin() {
  const { sampling, image } = run.request;
  const json = JSON.stringify(sampling);
  const total = image ? engine.startFromImage(image.pixels, image.t, json) : engine.start(json);
  post({ status: 'started', total });
}

/** One draw: `count` denoising steps, then the frame. Falls back to the CPU if WebGPU fails. */
async function advance(count) {
  try {
    postFrame(await engine.step(count), 'frame');
  } catch (error) {
    if (device.backend !== 'webgpu') throw error;
    const reason = `WebGPU failed (${messageOf(error)})`;
    post({ status: 'fallback', reason });
    engine.free(); // the WebGPU engine's buffers and device go with it
    engine = null;
    await createEngine('cpu');
    engine.loadModel(modelBytes);
    for (const bytes of checkpointBytes) engine.loadCheckpoint(bytes);
    begin();
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
  async init({ backend, modelUrl, modelBytes: expected }) {
    await init();
    await createEngine(backend);
    modelBytes = await download(modelUrl, expected);
    const config = JSON.parse(engine.loadModel(modelBytes));
    post({ status: 'ready', config, limits: JSON.parse(engine.limits), bytes: modelBytes.length });
  },
  async start({ sampling, image, perDraw, autoplay }) {
    run.token += 1;
    run.request = { sampling, image };
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
  async step() {
    run.playing = false;
    if (run.request && !engine.finished) await enqueue(() => advance(1));
  },
  async perDraw({ perDraw }) {
    run.perDraw = perDraw;
  },
};

/** Requests answered once, in the engine queue's order. */
const requests = {
  schedule: () => JSON.parse(engine.schedule),
  noised: async ({ pixels, t, seed }) => plainFrame(await engine.noised(pixels, t, BigInt(seed)), STEP_FRAME),
  lesson: async ({ pixels, label, t, seed, checkpoint }) =>
    plainFrame(await engine.lesson(pixels, label ?? undefined, t, BigInt(seed), checkpoint ?? undefined), LEARN_FRAME),
  lossCurve: async ({ pixels, label, seed, points, checkpoint }) =>
    JSON.parse(await engine.lossCurve(pixels, label ?? undefined, BigInt(seed), points, checkpoint ?? undefined)),
  /** Downloads a checkpoint of the loaded model's run and loads it; answers its index. */
  checkpoint: async ({ url, bytes }) => {
    const weights = await download(url, bytes, () => {});
    const index = engine.loadCheckpoint(weights);
    checkpointBytes[index] = weights;
    return index;
  },
  sample: async ({ sampling, checkpoint }) => plainFrame(await engine.sample(JSON.stringify(sampling), checkpoint ?? undefined), STEP_FRAME),
  gif: ({ frames, width, height, delay }) => engine.encodeGif(frames, width, height, delay),
};

async function answer({ request, id, ...fields }) {
  try {
    const handler = requests[request];
    if (!handler) throw new Error(`unknown request '${request}'`);
    if (!engine) throw new Error('the engine is not ready');
    const result = await enqueue(() => handler(fields));
    const transfer = ArrayBuffer.isView(result) ? [result.buffer] : transferables(result);
    post({ status: 'reply', id, result }, transfer);
  } catch (error) {
    post({ status: 'reply', id, error: messageOf(error) });
  }
}

self.onmessage = async ({ data }) => {
  if (data.request) return answer(data);
  try {
    const command = commands[data.command];
    if (!command) throw new Error(`unknown command '${data.command}'`);
    await command(data);
  } catch (error) {
    fail(data.command)(error);
  }
};
