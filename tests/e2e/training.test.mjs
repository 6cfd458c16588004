// The page's trainer module (pkg/emerge_train: Flex with autodiff) in Node, held to the native
// CLI: the same recipe and digits give the same losses step by step as `emerge train`; one small
// batch seen over and over is learned (the loss falls tenfold); the model file it exports is one
// `emerge sample --model` draws from.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CLI, RESULTS, SITE } from './browser.mjs';

const SIZE = 8; // the tiny preset's images

/** Digit d of `count`: a bright bar in row 2·(d mod 4), label d mod 10. */
function digits(count) {
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  const images = new Uint8Array(count * SIZE * SIZE);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < SIZE * SIZE; p++) {
      if (Math.floor(p / SIZE) === 2 * (labels[i] % 4)) images[i * SIZE * SIZE + p] = 255;
    }
  }
  return { images, labels };
}

/** MNIST's IDX files (gzip) for `data` in `dir`, as `emerge train --data` reads them. */
function writeIdx(dir, { images, labels }) {
  mkdirSync(dir, { recursive: true });
  const header = (magic, dims) => {
    const bytes = Buffer.alloc(4 * (dims.length + 1));
    bytes.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => bytes.writeUInt32BE(d, 4 * (i + 1)));
    return bytes;
  };
  const count = labels.length;
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(Buffer.concat([header(0x803, [count, SIZE, SIZE]), images])));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(Buffer.concat([header(0x801, [count]), labels])));
}

async function trainingClass() {
  const module = await import(join(SITE, 'pkg/emerge_train.js'));
  await module.default({ module_or_path: readFileSync(join(SITE, 'pkg/emerge_train_bg.wasm')) });
  return module.Training;
}

const root = join(RESULTS, 'training');
const data = digits(40);
const steps = 8;
let nativeRun;

/** `emerge train` on `data` for `steps` steps (once): its recipe (config.json) and losses. */
function trainNatively() {
  if (nativeRun) return nativeRun;
  assert.ok(CLI, 'EMERGE_CLI must point at the native emerge binary');
  rmSync(root, { recursive: true, force: true });
  writeIdx(join(root, 'data'), data);
  const run = join(root, 'run');
  execFileSync(CLI, [
    'train', '--data', join(root, 'data'), '--preset', 'tiny', '--schedule', 'linear', '--out', run, '--steps', String(steps),
    '--batch-size', '6', '--warmup-steps', '2', '--seed', '5', '--sample-every', '0', '--quiet',
  ]);
  nativeRun = {
    recipe: JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')),
    losses: readFileSync(join(run, 'log.csv'), 'utf8').trim().split('\n').slice(1)
      .map((line) => Number(line.split(',')[1])),
  };
  return nativeRun;
}

test('the trainer module’s first losses are the native CLI’s, and its model file samples', { timeout: 300_000 }, async () => {
  const { recipe, losses: native } = trainNatively();
  assert.equal(native.length, steps);

  const Training = await trainingClass();
  const training = Training.create(recipe, data.images, data.labels);
  const first = await training.train(3);
  const rest = await training.train(steps - 3);
  const losses = [...first.losses, ...rest.losses];
  assert.equal(rest.step, steps);
  assert.equal(rest.images_seen, steps * recipe.batch_size);
  for (let i = 0; i < steps; i++) {
    const relative = Math.abs(losses[i] - native[i]) / native[i];
    assert.ok(relative < 1e-3, `step ${i + 1}: loss ${losses[i]} here, ${native[i]} natively`);
  }

  // A grid from the EMA weights as they are, as the sampling engine draws one.
  const grid = await training.sample({
    sampler: { kind: 'ddim', eta: 0 }, steps: 4, seed: 1, images: 4, classes: 'each_in_turn',
    guidance: { scale: 1.5, interval: null },
  });
  assert.equal(grid.step, 4);
  assert.equal(grid.sample.length, grid.width * grid.height * 4);
  assert.equal(grid.width, 2 * SIZE + 3, 'four 8×8 digits in a 2×2 grid with 1-pixel gaps');

  const model = join(root, 'trained.bpk');
  writeFileSync(model, training.exportModel());
  execFileSync(CLI, ['sample', '--model', model, '--count', '2', '--steps', '4', '--out', join(root, 'trained.png')]);
  assert.ok(readFileSync(join(root, 'trained.png')).length > 0);
  training.free();
});

test('the trainer module learns one small batch: its loss falls tenfold', { timeout: 300_000 }, async () => {
  const Training = await trainingClass();
  const { recipe } = trainNatively();
  const four = digits(4);
  const training = Training.create({
    // the recipe of the core's overfitting test (emerge-core's training::tests::tiny_recipe)
    ...recipe, batch_size: 4, steps: 300, learning_rate: 2e-3, min_learning_rate: 2e-3,
    warmup_steps: 1, ema_decay: 0.9, label_dropout: 0, min_snr_gamma: null, seed: 3,
  }, four.images, four.labels);
  const { losses } = await training.train(300);
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  const [start, end] = [losses[0], mean(losses.slice(280))];
  console.log(`trainer module, 300 steps on 4 digits: loss ${start.toFixed(4)} at the first step, ${end.toFixed(4)} over the last 20`);
  assert.ok(end * 10 < start, `loss ${start} at the first step, ${end} on average over the last 20`);
  assert.throws(() => Training.create({ ...recipe, batch_sise: 4 }, four.images, four.labels), /training recipe: unknown field `batch_sise`/);
  assert.throws(() => Training.create(recipe, four.images.slice(1), four.labels), /255 bytes are not 4 images of 8×8/);
  training.free();
});
