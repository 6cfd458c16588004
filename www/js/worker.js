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

function postFrame(frame, kind) {
  const sample = frame.sample;
  const prediction = frame.prediction;
  post(
    {
      status: kind,
      timestep: frame.timestep,
      step: frame.step,
      total: frame.total,
      width: frame.width,
      height: frame.height,
      alphaBar: frame.alphaBar,
      snr: frame.snr,
      millis: frame.millis,
      sample,
      prediction,
    },
    [sample.buffer, prediction.buffer],
  );
  frame.free();
}

/** Starts (or restarts) the current request on the engine. */
function begin() {
  const { options, image } = run.request;
  const json = JSON.stringify(options);
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
  async start({ options, image, perDraw, autoplay }) {
    run.token += 1;
    run.request = { options, image };
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

/** Copies a frame's pixels out of the engine's object (then freed) into transferable arrays. */
function lessonResult(frame) {
  const result = {};
  for (const key of ['timestep', 'width', 'height', 'noiseLoss', 'imageError', 'alphaBar', 'snr', 'millis', 'original', 'noise', 'noisy', 'predictedNoise', 'prediction']) {
    result[key] = frame[key];
  }
  frame.free();
  return result;
}

function frameResult(frame) {
  const result = { timestep: frame.timestep, step: frame.step, total: frame.total, width: frame.width, height: frame.height, alphaBar: frame.alphaBar, snr: frame.snr, millis: frame.millis, sample: frame.sample, prediction: frame.prediction };
  frame.free();
  return result;
}

/** Requests answered once, in the engine queue's order. */
const requests = {
  schedule: () => JSON.parse(engine.schedule),
  noised: async ({ pixels, t, seed }) => frameResult(await engine.noised(pixels, t, BigInt(seed))),
  lesson: async ({ pixels, label, t, seed, checkpoint }) =>
    lessonResult(await engine.lesson(pixels, label ?? undefined, t, BigInt(seed), checkpoint ?? undefined)),
  lossCurve: async ({ pixels, label, seed, points, checkpoint }) =>
    JSON.parse(await engine.lossCurve(pixels, label ?? undefined, BigInt(seed), points, checkpoint ?? undefined)),
  /** Downloads a checkpoint of the loaded model's run and loads it; answers its index. */
  checkpoint: async ({ url, bytes }) => {
    const weights = await download(url, bytes, () => {});
    const index = engine.loadCheckpoint(weights);
    checkpointBytes[index] = weights;
    return index;
  },
  sample: async ({ options, checkpoint }) => frameResult(await engine.sample(JSON.stringify(options), checkpoint ?? undefined)),
  gif: ({ frames, width, height, delay }) => engine.encodeGif(frames, width, height, delay),
};

const transferables = (result) =>
  result && typeof result === 'object' ? Object.values(result).filter((v) => ArrayBuffer.isView(v)).map((v) => v.buffer) : [];

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
