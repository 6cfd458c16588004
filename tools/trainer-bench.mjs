#!/usr/bin/env node
// The page's trainer module (pkg/emerge_train: Flex with autodiff, one thread) in Node: steps per
// second and images per second of a recipe on MNIST digits, and how long a number of steps would
// take at that speed.
//
//   node tools/trainer-bench.mjs --pkg site/pkg --recipe runs/x/config.json --data path/to/mnist \
//     [--digits 5000] [--steps 20] [--target 600]
//
// The recipe is a run's config.json (`emerge train` writes it; --steps etc. there do not matter:
// this runs --steps of them). The first step is timed apart (it includes setting up).
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

const { values } = parseArgs({
  options: {
    pkg: { type: 'string', default: 'site/pkg' },
    recipe: { type: 'string' },
    data: { type: 'string' },
    digits: { type: 'string', default: '5000' },
    steps: { type: 'string', default: '20' },
    target: { type: 'string', default: '600' },
  },
});
if (!values.recipe || !values.data) {
  console.error('usage: trainer-bench.mjs --pkg DIR --recipe config.json --data MNIST_DIR [--digits N] [--steps N] [--target N]');
  process.exit(2);
}
const [digits, steps, target] = ['digits', 'steps', 'target'].map((name) => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} must be a whole number ≥ 1, got '${values[name]}'`);
    process.exit(2);
  }
  return value;
});

/** The first `count` records of an IDX file (gzip or not) after its header of `dims` sizes. */
function idxBody(path, dims, count, recordBytes) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch {
    bytes = gunzipSync(readFileSync(`${path}.gz`));
  }
  return bytes.subarray(4 + 4 * dims, 4 + 4 * dims + count * recordBytes);
}

const recipe = JSON.parse(readFileSync(resolve(values.recipe), 'utf8'));
const size = recipe.model.unet.sample_size;
const images = idxBody(join(values.data, 'train-images-idx3-ubyte'), 3, digits, size * size);
const labels = idxBody(join(values.data, 'train-labels-idx1-ubyte'), 1, digits, 1);

const pkg = resolve(values.pkg);
const module = await import(pathToFileURL(join(pkg, 'emerge_train.js')).href);
await module.default({ module_or_path: readFileSync(join(pkg, 'emerge_train_bg.wasm')) });
const training = module.Training.create(recipe, images, labels);

let started = performance.now();
const first = await training.train(1);
const firstMs = performance.now() - started;
started = performance.now();
const rest = await training.train(steps);
const seconds = (performance.now() - started) / 1000;
const perSecond = steps / seconds;
const network = recipe.model.unet.block_out_channels.join('/');
console.log(JSON.stringify({
  network,
  batch: recipe.batch_size,
  digits: labels.length,
  first_step_ms: Math.round(firstMs),
  steps_per_second: Number(perSecond.toFixed(2)),
  images_per_second: Number((perSecond * recipe.batch_size).toFixed(1)),
  [`minutes_for_${target}_steps`]: Number((target / perSecond / 60).toFixed(1)),
  losses: [first.losses[0], rest.losses.at(-1)].map((l) => Number(l.toFixed(4))),
}, null, 2));
training.free();
