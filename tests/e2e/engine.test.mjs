// The engine's boundary as the worker meets it: the page's CPU module (pkg/emerge_cpu) loaded in
// Node, no browser. Requests go in and answers come out as plain objects (snake_case fields,
// pixels as Uint8Arrays) that survive postMessage's structured clone; bad requests are refused
// with the problem named.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SITE } from './browser.mjs';

const MODEL = join(SITE, 'models/mnist.bpk');
const REQUEST = { sampler: { kind: 'ddim', eta: 1 }, steps: 3, seed: 7, images: 2, classes: 'each_in_turn', guidance: { scale: 1.25, interval: null } };

let engine;
before(async () => {
  const glue = await import(join(SITE, 'pkg/emerge_cpu.js'));
  await glue.default({ module_or_path: readFileSync(join(SITE, 'pkg/emerge_cpu_bg.wasm')) });
  engine = await glue.Engine.create('cpu');
});

/** Whether `value` is plain data: what postMessage copies (no wasm object, no class instance). */
const isPlain = (value) => {
  assert.deepEqual(structuredClone(value), value);
  return Object.getPrototypeOf(value) === Object.prototype;
};

describe("the engine's boundary", () => {
  test('the device, the model, its limits and its schedule are plain objects', () => {
    assert.deepEqual(engine.device, { backend: 'cpu', adapter: 'Flex (WebAssembly, CPU)' });
    const config = engine.loadModel(readFileSync(MODEL));
    assert.ok(isPlain(config));
    assert.equal(config.unet.sample_size, 28);
    assert.deepEqual(engine.limits, { timesteps: config.schedule.num_train_timesteps, max_batch: 64, max_guidance: 10, classes: 10 });
    const schedule = engine.schedule;
    assert.ok(isPlain(schedule));
    assert.deepEqual(Object.keys(schedule), ['beta_schedule', 'betas', 'alphas_cumprod', 'log_snr']);
    assert.equal(schedule.alphas_cumprod.length, config.schedule.num_train_timesteps);
    assert.equal(schedule.beta_schedule.kind, config.schedule.beta_schedule.kind);
  });

  test('a run answers plain frames with Uint8Array pixels', async () => {
    assert.equal(engine.start(REQUEST), 3);
    const frame = await engine.step(3);
    assert.ok(isPlain(frame));
    assert.deepEqual(Object.keys(frame).sort(), ['alpha_bar', 'height', 'millis', 'prediction', 'sample', 'snr', 'step', 'timestep', 'total', 'width']);
    assert.ok(frame.sample instanceof Uint8Array && frame.prediction instanceof Uint8Array);
    assert.equal(frame.sample.length, frame.width * frame.height * 4);
    assert.equal(frame.step, 3);
    assert.ok(engine.finished);
    assert.ok(frame.alpha_bar > 0.9 && frame.millis >= 0);
  });

  test("a start image rides in the request: the run's steps count from its timestep", async () => {
    const pixels = new Uint8Array(28 * 28).fill(255);
    assert.equal(engine.start({ ...REQUEST, steps: 500 }), 500);
    const total = engine.start({ ...REQUEST, steps: 500, start: { pixels, timestep: 100 } });
    assert.ok(total > 0 && total <= 101, `${total} steps from t = 100`);
    const frame = await engine.step(1);
    assert.ok(frame.timestep <= 100, `the first step starts from t = ${frame.timestep}`);
  });

  test('a lesson and its loss curve are plain objects', async () => {
    const pixels = new Uint8Array(28 * 28).fill(128);
    const lesson = await engine.lesson(pixels, 3, 400, 5n, undefined);
    assert.ok(isPlain(lesson));
    for (const key of ['original', 'noise', 'noisy', 'predicted_noise', 'prediction']) assert.ok(lesson[key] instanceof Uint8Array, key);
    assert.ok(lesson.noise_loss > 0 && Number.isFinite(lesson.image_error));
    const curve = await engine.lossCurve(pixels, 3, 5n, 4, undefined);
    assert.ok(isPlain(curve));
    assert.equal(curve.timesteps.length, 4);
    assert.equal(curve.noise_loss.length, 4);
  });

  test('every spelling of a valid request is taken: absent fields as null or undefined, classes as a name or an object', () => {
    for (const request of [{ ...REQUEST, start: null }, { ...REQUEST, start: undefined }, { ...REQUEST, classes: { class: 3 } }, { ...REQUEST, classes: { labels: [1, 2] } }, { ...REQUEST, classes: 'unconditional', guidance: { scale: 1, interval: [0, 300] } }]) {
      assert.equal(engine.start(request), 3, JSON.stringify(request));
    }
  });

  test('bad requests are refused with the problem named', () => {
    assert.throws(() => engine.start({ ...REQUEST, colour: 1 }), /sampling request: unknown field `colour`/);
    assert.throws(() => engine.start({ ...REQUEST, guidance: { scale: 1, intervall: [0, 300] } }), /sampling request: unknown field `guidance.intervall`/);
    assert.equal(engine.start({ ...REQUEST, start: undefined }), 3);
    assert.throws(() => engine.start({ ...REQUEST, images: 65 }), /images must be 1 to 64/);
    assert.throws(() => engine.start({ ...REQUEST, steps: 'many' }), /sampling request: .*string "many"/);
    assert.throws(() => engine.start({ ...REQUEST, sampler: { kind: 'euler' } }), /sampling request: .*euler/);
    assert.throws(() => engine.start('{"steps": 3}'), /sampling request/);
    assert.throws(() => engine.start({ ...REQUEST, start: { pixels: new Uint8Array(5), timestep: 100 } }), /the start image has 5 values; this model takes 1×28×28 = 784/);
  });
});
