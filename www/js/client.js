// The page's side of a worker: start it, send commands, route its messages to handlers.

import { samplingRequest } from './settings.js';

export class Client {
  /** `handlers` maps worker statuses ('frame', 'error', …) to functions; `script`: the worker
   * (the sampling engine's, or the trainer's). */
  constructor(handlers, script = new URL('./worker.js', import.meta.url)) {
    this.handlers = handlers;
    this.pending = new Map();
    this.nextId = 0;
    this.worker = new Worker(script, { type: 'module' });
    this.worker.onmessage = ({ data }) => (data.status === 'reply' ? this.settle(data) : this.handlers[data.status]?.(data));
    this.worker.onerror = (event) =>
      this.handlers.error?.({ message: `the worker failed to start: ${event.message || 'unknown error'}` });
  }

  send(command, fields = {}, transfer = []) {
    this.worker.postMessage({ command, ...fields }, transfer);
  }

  /** Asks the engine for one answer (see worker.js's `requests`); rejects with its error. */
  request(request, fields = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ request, id, ...fields });
    });
  }

  settle({ id, result, error }) {
    const pending = this.pending.get(id);
    this.pending.delete(id);
    if (error === undefined) pending?.resolve(result);
    else pending?.reject(new Error(error));
  }

  /** Loads `model` on the device `settings.backend` names (and on the CPU, `settings.workers`),
   * its GPU kernels built for runs of `settings.batch` images. */
  init(settings, model) {
    const { backend, workers, batch } = settings;
    this.send('init', { backend, workers: workers ?? undefined, batch, modelUrl: new URL(model.file, model.baseUrl).href, modelBytes: model.bytes });
  }

  /** Loads `model` in place of the current one: its file, or its bytes where the page holds them
   * (`model.data`: a model trained in the page); its GPU kernels built for runs of `batch` images. */
  load(model, batch) {
    const source = model.data ? { modelData: model.data.slice() } : { modelUrl: new URL(model.file, model.baseUrl).href, modelBytes: model.bytes };
    this.send('load', { ...source, batch });
  }

  /** Starts a run, from noise or from `image` ({pixels, timestep}: the request's start image);
   * `limits` are the engine's for the loaded model (from its 'ready' message). */
  start(settings, limits, { image = null, autoplay = true } = {}) {
    const sampling = { ...samplingRequest(settings, limits), ...(image && { start: image }) };
    this.send('start', { sampling, perDraw: settings.perDraw, autoplay });
  }
}

/** The manifest's model list, with file URLs resolved against it. */
export async function loadManifest(url = 'models/manifest.json') {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the model list ${url} is missing (HTTP ${response.status})`);
  const manifest = await response.json();
  for (const model of manifest.models) model.baseUrl = new URL(url, location.href).href;
  return manifest;
}

/** Human-readable bytes. */
export const formatBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`);
