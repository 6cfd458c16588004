// The demo's settings: defaults, parsing from a URL (share links, the embed's parameters) with a
// note for every value that had to be replaced, and writing them back into a URL.

// The steps slider's range for the respaced samplers, DDIM and DPM-Solver++ (a page choice; the
// engine reports the model's T and its other limits). DDPM runs all T steps.
export const STEPS = { min: 5, max: 250 };

// The batch a run starts with on the CPU fallback when the URL names none: the fallback is one
// core in wasm, where a guided 50-step run of 16 images takes about 20 s for the 16/32/64
// network and about a minute for 32/64/128 (tools/bench.mjs: 203 and 567 ms per step of 16).
export const CPU_BATCH = 4;

// Where the forward and learning views, and the drawing view, open unless the URL sets t: noise
// levels ᾱ_t, so that a model with another schedule opens at the same amount of noise. The paper's
// linear schedule reaches them at t = 300 (√ᾱ ≈ 0.63 of the digit left) and t = 600 (0.16 left).
export const OPENING_NOISE = Object.freeze({ views: 0.395, sketch: 0.0258 });

export const DEFAULTS = Object.freeze({
  model: '',
  sampler: 'ddim',
  steps: 50,
  eta: 1,
  seed: 1,
  batch: 16,
  class: 'any',
  guidance: 1.25,
  interval: 'all',
  perDraw: 1,
  autoplay: true,
  backend: 'auto',
  // Workers sharing a run on the CPU fallback; null: one per core the browser reports, at most 4.
  workers: null,
  // The timestep the forward, learning and drawing views open at; null: at OPENING_NOISE.
  t: null,
  // What embed.html shows: the reverse process (generate), or one of the other views alone.
  view: 'generate',
});

const integer = (min, max) => (text) => {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
};
const number = (min, max) => (text) => {
  const n = Number(text);
  return text.trim() !== '' && Number.isFinite(n) && n >= min && n <= max ? n : undefined;
};
const oneOf = (...values) => (text) => (values.includes(text) ? text : undefined);
/** 'all' or 'LOW-HIGH' (inclusive timesteps where guidance applies). */
function interval(text) {
  if (text === 'all') return 'all';
  const match = /^(\d+)-(\d+)$/.exec(text);
  return match && Number(match[1]) <= Number(match[2]) ? `${Number(match[1])}-${Number(match[2])}` : undefined;
}

/** Each parameter: how to read it and what a valid value looks like (for the note). */
const PARAMETERS = {
  model: { read: (t) => (/^[\w.-]+$/.test(t) ? t : undefined), expect: 'a model name from the manifest' },
  sampler: { read: oneOf('ddpm', 'ddim', 'dpmpp_2m', 'sde_dpmpp_2m'), expect: 'ddpm, ddim, dpmpp_2m or sde_dpmpp_2m' },
  steps: { read: integer(STEPS.min, STEPS.max), expect: `${STEPS.min} to ${STEPS.max} steps` },
  eta: { read: number(0, 1), expect: 'η between 0 and 1' },
  seed: { read: integer(0, 2 ** 32 - 1), expect: 'a whole number from 0 to 4294967295' },
  // Upper bounds of batch, class, guidance and interval come from the engine once the model is
  // loaded (fitToLimits in stage.js); here only the form is checked.
  batch: { read: integer(1, Number.MAX_SAFE_INTEGER), expect: 'a number of images' },
  class: { read: (t) => (t === 'any' ? 'any' : integer(0, Number.MAX_SAFE_INTEGER)(t)), expect: 'a class number, or any' },
  guidance: { read: number(0, Infinity), expect: 'a guidance scale ≥ 0' },
  interval: { read: interval, expect: 'all, or timesteps LOW-HIGH with LOW ≤ HIGH (e.g. 0-300)' },
  perDraw: { read: integer(1, 50), expect: '1 to 50 steps per draw' },
  autoplay: { read: (t) => ({ 1: true, true: true, 0: false, false: false })[t], expect: '0 or 1' },
  backend: { read: oneOf('auto', 'webgpu', 'cpu'), expect: 'auto, webgpu or cpu' },
  workers: { read: integer(1, 4), expect: '1 to 4 workers' },
  t: { read: integer(0, Number.MAX_SAFE_INTEGER), expect: 'a timestep t ≥ 0' },
  view: { read: oneOf('generate', 'forward', 'learn', 'draw'), expect: 'generate, forward, learn or draw' },
};

/** `text` read as setting `name` (undefined when it is not a valid value). */
export const readSetting = (name, text) => PARAMETERS[name].read(String(text));

/** The defaults for `model`: the page's, with the sampler, steps and guidance of the request its
 * manifest entry recommends (measured by `emerge eval`; `emerge recommend` sets it). */
export function modelDefaults(model) {
  const request = model?.recommended;
  const interval = request?.guidance?.interval;
  const recommended = {
    sampler: PARAMETERS.sampler.read(String(request?.sampler?.kind)),
    eta: request?.sampler?.kind === 'ddim' ? PARAMETERS.eta.read(String(request.sampler.eta)) : undefined,
    steps: PARAMETERS.steps.read(String(request?.steps)),
    guidance: PARAMETERS.guidance.read(String(request?.guidance?.scale)),
    interval: interval ? PARAMETERS.interval.read(interval.join('-')) : 'all',
  };
  const defaults = { ...DEFAULTS };
  for (const [name, value] of Object.entries(recommended)) if (value !== undefined) defaults[name] = value;
  return Object.freeze(defaults);
}

/** Reads settings from URL search parameters. Returns { given, notes }: only the values the URL
 * sets (valid ones), and a note for each one ignored. */
export function parseSettings(search) {
  const given = {};
  const notes = [];
  for (const [name, raw] of new URLSearchParams(search)) {
    const parameter = PARAMETERS[name];
    if (!parameter) {
      notes.push(`Unknown parameter "${name}" ignored.`);
      continue;
    }
    const value = parameter.read(raw);
    if (value === undefined) notes.push(`Ignored ${name}=${JSON.stringify(raw)}: expected ${parameter.expect}; using the default.`);
    else given[name] = value;
  }
  return { given, notes };
}

/** The URL that reproduces `settings` (only what differs from `defaults`). */
export function settingsUrl(settings, base, defaults) {
  const url = new URL(base);
  url.search = '';
  for (const [name, value] of Object.entries(settings)) {
    if (name in PARAMETERS && value !== defaults[name]) url.searchParams.set(name, value === true ? 1 : value === false ? 0 : value);
  }
  return url.toString();
}

/** The sampling request the engine takes for `settings` (emerge_core's SamplingRequest as a
 * plain object); DDPM runs all of the model's T steps. The URL's `interval=LOW-HIGH` becomes
 * the request's [low, high] here and nowhere else. */
export function samplingRequest(settings, limits) {
  const any = settings.class === 'any';
  return {
    sampler: settings.sampler === 'ddim' ? { kind: 'ddim', eta: settings.eta } : { kind: settings.sampler },
    steps: settings.sampler === 'ddpm' ? limits.timesteps : settings.steps,
    seed: settings.seed,
    images: settings.batch,
    classes: limits.classes === 0 ? 'unconditional' : any ? 'each_in_turn' : { class: settings.class },
    guidance: { scale: settings.guidance, interval: settings.interval === 'all' ? null : settings.interval.split('-').map(Number) },
  };
}
