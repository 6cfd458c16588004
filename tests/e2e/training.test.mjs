// The page's trainer modules in Node (pkg/emerge_train: Flex with autodiff; pkg/emerge_train_gpu:
// WebGPU on Dawn), held to the native CLI: the same recipe and digits give the same losses step by
// step as `emerge train`; one small batch seen over and over is learned (the loss falls tenfold);
// the model file each exports is one `emerge sample --model` draws from.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, RESULTS, SITE } from './browser.mjs';
import { SIZE, digits, trainTiny } from './training-data.mjs';
import { installWebGpu, loadDawn, withSwiftShader } from '../dawn/webgpu.mjs';

/** The `Training` class of the trainer module `name` (emerge_train: the CPU; emerge_train_gpu:
 * WebGPU). */
async function trainingClass(name = 'emerge_train') {
  const module = await import(join(SITE, `pkg/${name}.js`));
  await module.default({ module_or_path: readFileSync(join(SITE, `pkg/${name}_bg.wasm`)) });
  return module.Training;
}

/** Each of `losses` within `relative` of the native run's. */
function assertNativeLosses(losses, native, relative, where) {
  native.forEach((loss, i) => {
    const off = Math.abs(losses[i] - loss) / loss;
    assert.ok(off < relative, `step ${i + 1}: loss ${losses[i]} ${where}, ${loss} natively`);
  });
}

const root = join(RESULTS, 'training');
const data = digits(40);
const steps = 8;
let nativeRun;
/** `emerge train` on `data` for `steps` steps, once. */
const trainNatively = () => (nativeRun ??= trainTiny(root, data, steps));

test('the trainer module’s first losses are the native CLI’s, and its model file samples', { timeout: 300_000 }, async () => {
  const { recipe, losses: native } = trainNatively();
  assert.equal(native.length, steps);

  const Training = await trainingClass();
  const training = await Training.create(recipe, data.images, data.labels);
  assert.equal(training.device.backend, 'cpu');
  const first = await training.train(3);
  const rest = await training.train(steps - 3);
  const losses = [...first.losses, ...rest.losses];
  assert.equal(rest.step, steps);
  assert.equal(rest.images_seen, steps * recipe.batch_size);
  assertNativeLosses(losses, native, 1e-3, 'in the module');
  await assert.rejects(Training.create(recipe, data.images, data.labels, 'webgpu'), /WebGPU is unavailable: this module was built without WebGPU/);

  // A grid from the EMA weights as they are, as the sampling engine draws one.
  const grid = await training.sample({
    sampler: { kind: 'ddim', eta: 0 }, steps: 4, seed: 1, images: 4, classes: 'each_in_turn',
    guidance: { scale: 1.5, interval: null },
  });
  assert.equal(grid.step, 4);
  assert.equal(grid.sample.length, grid.width * grid.height * 4);
  assert.equal(grid.width, 2 * SIZE + 3, 'four 8×8 digits in a 2×2 grid with 1-pixel gaps');

  const model = join(root, 'trained.bpk');
  writeFileSync(model, await training.exportModel());
  execFileSync(CLI, ['sample', '--model', model, '--count', '2', '--steps', '4', '--out', join(root, 'trained.png')]);
  assert.ok(readFileSync(join(root, 'trained.png')).length > 0);
  training.free();
});

test('the trainer module learns one small batch: its loss falls tenfold', { timeout: 300_000 }, async () => {
  const Training = await trainingClass();
  const { recipe } = trainNatively();
  const four = digits(4);
  const training = await Training.create({
    // the recipe of the core's overfitting test (emerge-core's training::tests::tiny_recipe)
    ...recipe, batch_size: 4, steps: 300, learning_rate: 2e-3, min_learning_rate: 2e-3,
    warmup_steps: 1, ema_decay: 0.9, label_dropout: 0, min_snr_gamma: null, seed: 3,
  }, four.images, four.labels);
  const { losses } = await training.train(300);
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  const [start, end] = [losses[0], mean(losses.slice(280))];
  console.log(`trainer module, 300 steps on 4 digits: loss ${start.toFixed(4)} at the first step, ${end.toFixed(4)} over the last 20`);
  assert.ok(end * 10 < start, `loss ${start} at the first step, ${end} on average over the last 20`);
  await assert.rejects(Training.create({ ...recipe, batch_sise: 4 }, four.images, four.labels), /training recipe: unknown field `batch_sise`/);
  await assert.rejects(Training.create(recipe, four.images.slice(1), four.labels), /255 bytes are not 4 images of 8×8/);
  await assert.rejects(Training.create(recipe, four.images, four.labels, 'tpu'), /unknown backend 'tpu' \(webgpu or cpu\)/);
  training.free();
});

test('the WebGPU trainer module on Dawn: the native CLI’s first losses, a grid, a model file', { timeout: 300_000 }, async () => {
  const { recipe, losses: native } = trainNatively();
  withSwiftShader(process.env); // before Dawn starts: the Vulkan loader reads it then
  installWebGpu(await loadDawn());
  const Training = await trainingClass('emerge_train_gpu');
  const training = await Training.create(recipe, data.images, data.labels, 'webgpu');
  assert.equal(training.device.backend, 'webgpu');
  const { losses } = await training.train(steps);
  console.log(`WebGPU trainer on ${training.device.adapter}: losses ${losses.map((l) => l.toFixed(4)).join(' ')}; native ${native.map((l) => l.toFixed(4)).join(' ')}`);
  assertNativeLosses(losses, native, 1e-3, 'on WebGPU');
  const grid = await training.sample({
    sampler: { kind: 'ddim', eta: 0 }, steps: 4, seed: 1, images: 4, classes: 'each_in_turn',
    guidance: { scale: 1.5, interval: null },
  });
  assert.equal(grid.sample.length, grid.width * grid.height * 4);
  const model = join(root, 'trained-webgpu.bpk');
  writeFileSync(model, await training.exportModel());
  execFileSync(CLI, ['sample', '--model', model, '--count', '2', '--steps', '4', '--out', join(root, 'trained-webgpu.png')]);
  // Reset: the same start again, so the same first loss.
  training.reset();
  const again = await training.train(1);
  assert.equal(again.step, 1);
  assertNativeLosses(again.losses, native.slice(0, 1), 1e-3, 'on WebGPU after a reset');
  training.free();
});
