// The embeddable demo, configured by URL parameters (model, sampler, steps, eta, seed, class,
// guidance, interval, batch, autoplay, backend, t, view). view=generate (the default): two
// canvases, play/pause and a new seed; view=forward|learn|draw: that view of the full page alone.
// With autoplay=0 the generate view downloads nothing heavy (engine, weights) until the reader
// presses Play, whose label says how much that is.

import { Client, formatBytes } from './client.js';
import { $, chooseModelFor, setPlaying, setState, showNotes, status, urlSettings } from './page.js';
import { settingsUrl } from './settings.js';
import { createDebug, fitToDevice, fitToLimits, showFrame } from './stage.js';
import { viewContext } from './views/context.js';
import * as forwardView from './views/forward.js';
import * as learnView from './views/learn.js';
import * as sketchView from './views/sketch.js';

const VIEWS = { forward: forwardView, learn: learnView, draw: sketchView };

// The URL's values over the model's recommended ones (filled in once the manifest is read).
const page = urlSettings();
const { settings, given, notes } = page;
const debug = createDebug();

let started = false;
// What the engine accepts for the loaded model (from its 'ready' message), and the model.
let limits = null;
let model = null;
// The mounted view other than generate (the drawing view's run draws into its own canvases).
let mounted = null;

/** Shows view `name` alone: its section replaces the reverse-process stage and its buttons. */
async function mountView(name) {
  $('generate').hidden = true;
  for (const element of document.querySelectorAll('[data-generate]')) element.hidden = true;
  $('view').hidden = false;
  const ctx = await viewContext({ client, model, limits, settings, status }, {
    cleanSketch: (image) => {
      settings.autoplay = true;
      client.start(settings, limits, { image, autoplay: true });
    },
  });
  mounted = VIEWS[name].mount($('view'), ctx) ?? {};
  setState('ready');
  status('');
}
const client = new Client({
  device({ device }) {
    $('full').title = device.backend === 'webgpu' ? `WebGPU · ${device.adapter}` : 'CPU fallback';
    document.body.dataset.backend = device.backend;
  },
  loading({ loaded, total }) {
    status(`loading weights ${Math.round((100 * loaded) / Math.max(total, 1))} %`);
  },
  ready(message) {
    limits = message.limits;
    fitToDevice(settings, given, document.body.dataset.backend, notes);
    fitToLimits(settings, limits, notes);
    showNotes(notes);
    if (settings.view !== 'generate') {
      mountView(settings.view).catch((error) => client.handlers.error({ message: error.message }));
      return;
    }
    setState('ready');
    status(settings.autoplay ? '' : 'Press Play to watch images emerge.');
    client.start(settings, limits, { autoplay: settings.autoplay });
    started = settings.autoplay;
  },
  started({ total }) {
    $('progress').max = total;
    setPlaying(settings.autoplay);
  },
  frame(frame) {
    showFrame(frame, debug, mounted?.targets);
  },
  complete() {
    setPlaying(false);
    setState('complete');
  },
  paused() {
    setPlaying(false);
  },
  fallback({ reason }) {
    status(`${reason}; using the CPU`, 'warning');
  },
  error({ message }) {
    debug.errors.push(message);
    setState('error');
    status(message, 'error');
  },
});

/** The bytes Play will download (gzip as servers send it): the engine this browser would load
 * and the model's weights; null where the build did not list its modules' sizes. */
async function downloadSize() {
  const response = await fetch('pkg/modules.json');
  if (!response.ok) return null;
  const modules = await response.json();
  const gpu = settings.backend !== 'cpu' && 'gpu' in navigator;
  return modules[gpu ? 'emerge_web' : 'emerge_cpu'].gzip_bytes + model.bytes;
}

/** Waits for Play before loading anything heavy. */
async function offerPlay() {
  setState('waiting');
  const bytes = await downloadSize().catch(() => null);
  $('play').textContent = bytes ? `Play (${formatBytes(bytes)})` : 'Play';
  $('play').title = 'Downloads the model and the engine that runs it in this browser';
  status('Press Play to watch images emerge.');
}

$('play').onclick = () => {
  if (document.body.dataset.state === 'waiting') {
    settings.autoplay = true;
    started = true;
    setState('loading');
    status('loading…');
    return client.init(settings, model);
  }
  if ($('play').getAttribute('aria-pressed') === 'true') return client.send('pause');
  if (document.body.dataset.state === 'complete' || !started) {
    started = true;
    settings.autoplay = true;
    client.start(settings, limits, { autoplay: true });
  } else client.send('play');
  setPlaying(true);
};
$('restart').onclick = () => {
  settings.seed = Math.floor(Math.random() * 2 ** 32);
  if (document.body.dataset.state === 'waiting') return $('play').onclick();
  settings.autoplay = true;
  started = true;
  client.start(settings, limits, { autoplay: true });
};

(async () => {
  try {
    const chosen = await chooseModelFor(page);
    model = chosen.model;
    $('full').href = settingsUrl(settings, new URL('index.html', location.href), chosen.defaults);
    showNotes(notes);
    if (settings.autoplay || settings.view !== 'generate') client.init(settings, model);
    else await offerPlay();
  } catch (error) {
    client.handlers.error({ message: error.message });
  }
})();
