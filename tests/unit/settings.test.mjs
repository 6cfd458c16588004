// Unit tests of the page's settings (www/js/settings.js: pure functions, no browser needed):
// what a URL's parameters become, the notes for the ones ignored, the share link, and the
// sampling request the engine receives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS, STEPS, modelDefaults, parseSettings, readSetting, samplingRequest, settingsUrl } from '../../www/js/settings.js';

const LIMITS = { timesteps: 1000, max_batch: 64, max_guidance: 10, classes: 10 };

test('valid parameters are read with their types; invalid and unknown ones get a note each', () => {
  const { given, notes } = parseSettings('?steps=20&seed=7&guidance=1.5&autoplay=0&class=any&interval=0-300&workers=2');
  assert.deepEqual(given, { steps: 20, seed: 7, guidance: 1.5, autoplay: false, class: 'any', interval: '0-300', workers: 2 });
  assert.deepEqual(notes, []);
  const bad = parseSettings(`?steps=${STEPS.max + 1}&sampler=euler&eta=2&interval=300-0&workers=5&colour=red`);
  assert.deepEqual(bad.given, {});
  assert.equal(bad.notes.length, 6);
  assert.match(bad.notes.join(' '), /steps="251": expected 5 to 250 steps/);
  assert.match(bad.notes.join(' '), /sampler="euler": expected ddpm, ddim, dpmpp_2m or sde_dpmpp_2m/);
  assert.match(bad.notes.join(' '), /Unknown parameter "colour" ignored/);
});

test('numbers are read whole: no hex, exponents or blanks where an integer is expected', () => {
  for (const text of ['0x10', '1e2', ' 5', '5.0', '-1', '']) assert.equal(readSetting('seed', text), undefined, text);
  assert.equal(readSetting('seed', '4294967295'), 2 ** 32 - 1);
  assert.equal(readSetting('guidance', '0'), 0);
  assert.equal(readSetting('guidance', ''), undefined);
});

test("a model's recommended request sets the defaults; values it does not allow are left out", () => {
  const recommended = { sampler: { kind: 'sde_dpmpp_2m' }, steps: 20, guidance: { scale: 1.25, interval: [0, 560] } };
  const defaults = modelDefaults({ recommended });
  assert.equal(defaults.sampler, 'sde_dpmpp_2m');
  assert.equal(defaults.steps, 20);
  assert.equal(defaults.guidance, 1.25);
  assert.equal(defaults.interval, '0-560');
  assert.equal(defaults.seed, DEFAULTS.seed);
  const odd = modelDefaults({ recommended: { sampler: { kind: 'euler' }, steps: 9999 } });
  assert.equal(odd.sampler, DEFAULTS.sampler);
  assert.equal(odd.steps, DEFAULTS.steps);
  assert.deepEqual(modelDefaults(undefined), { ...DEFAULTS });
});

test('the share link holds only what differs from the defaults, and reads back to the same settings', () => {
  const settings = { ...DEFAULTS, steps: 30, autoplay: false, class: 3 };
  const url = settingsUrl(settings, 'https://example.org/emerge/index.html?old=1', DEFAULTS);
  assert.equal(url, 'https://example.org/emerge/index.html?steps=30&class=3&autoplay=0');
  assert.deepEqual({ ...DEFAULTS, ...parseSettings(new URL(url).search).given }, settings);
});

test('the sampling request is what the engine takes: DDPM runs all T steps, classes and intervals in its terms', () => {
  const settings = { ...DEFAULTS, sampler: 'ddim', eta: 0.5, steps: 25, batch: 9, class: 'any', guidance: 2, interval: '100-400' };
  assert.deepEqual(samplingRequest(settings, LIMITS), {
    sampler: { kind: 'ddim', eta: 0.5 },
    steps: 25,
    seed: DEFAULTS.seed,
    images: 9,
    classes: 'each_in_turn',
    guidance: { scale: 2, interval: [100, 400] },
  });
  const ddpm = samplingRequest({ ...settings, sampler: 'ddpm', class: 7, interval: 'all' }, LIMITS);
  assert.deepEqual([ddpm.sampler, ddpm.steps, ddpm.classes, ddpm.guidance.interval], [{ kind: 'ddpm' }, 1000, { class: 7 }, null]);
  assert.equal(samplingRequest(settings, { ...LIMITS, classes: 0 }).classes, 'unconditional');
});
