// The demo's settings: defaults, parsing from a URL (share links, the embed's parameters) with a
// note for every value that had to be replaced, and writing them back into a URL.

export const DDIM_STEPS = { min: 10, max: 250 };
export const DDPM_STEPS = 1000;

export const DEFAULTS = Object.freeze({
  model: '',
  sampler: 'ddim',
  steps: 50,
  eta: 1,
  seed: 1,
  batch: 16,
  class: 'any',
  guidance: 1.25,
  perDraw: 1,
  autoplay: true,
  backend: 'auto',
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

/** Each parameter: how to read it and what a valid value looks like (for the note). */
const PARAMETERS = {
  model: { read: (t) => (/^[\w.-]+$/.test(t) ? t : undefined), expect: 'a model name from the manifest' },
  sampler: { read: oneOf('ddpm', 'ddim'), expect: 'ddpm or ddim' },
  steps: { read: integer(DDIM_STEPS.min, DDIM_STEPS.max), expect: `${DDIM_STEPS.min} to ${DDIM_STEPS.max} DDIM steps` },
  eta: { read: number(0, 1), expect: 'η between 0 and 1' },
  seed: { read: integer(0, 2 ** 32 - 1), expect: 'a whole number from 0 to 4294967295' },
  batch: { read: integer(1, 64), expect: '1 to 64 images' },
  class: { read: (t) => (t === 'any' ? 'any' : integer(0, 9)(t)), expect: 'a digit 0 to 9, or any' },
  guidance: { read: number(0, 10), expect: 'a guidance scale from 0 to 10' },
  perDraw: { read: integer(1, 50), expect: '1 to 50 steps per draw' },
  autoplay: { read: (t) => ({ 1: true, true: true, 0: false, false: false })[t], expect: '0 or 1' },
  backend: { read: oneOf('auto', 'webgpu', 'cpu'), expect: 'auto, webgpu or cpu' },
};

/** The defaults for `model`: the page's, with the sampler, steps and guidance its manifest entry
 * recommends (measured by `emerge eval` for a trained model). */
export function modelDefaults(model) {
  const recommended = {
    sampler: PARAMETERS.sampler.read(String(model?.default_sampler)),
    steps: PARAMETERS.steps.read(String(model?.default_steps)),
    guidance: PARAMETERS.guidance.read(String(model?.default_guidance)),
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

/** The options the wasm engine takes for a run. */
export function engineOptions(settings) {
  return {
    sampler: settings.sampler,
    steps: settings.sampler === 'ddpm' ? DDPM_STEPS : settings.steps,
    eta: settings.sampler === 'ddim' ? settings.eta : 0,
    seed: settings.seed,
    batch: settings.batch,
    class: settings.class === 'any' ? null : settings.class,
    guidance: settings.guidance,
  };
}
