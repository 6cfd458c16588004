#!/usr/bin/env node
// The page's trainer modules in Node (pkg/emerge_train: Flex with autodiff, one thread;
// pkg/emerge_train_gpu with --backend webgpu: WebGPU on Dawn, as the npm package `webgpu` or
// --dawn dawn.node gives it): steps per second and images per second of a recipe on MNIST digits,
// and how long a number of steps would take at that speed.
//
//   node tools/trainer-bench.mjs --pkg site/pkg --recipe runs/x/config.json --data path/to/mnist \
//     [--backend cpu|webgpu] [--dawn dawn.node] [--digits 5000] [--steps 20] [--target 600] [--report-every N]
//
// --data: MNIST's directory (train-images-idx3-ubyte, gzip or not) or the site's data/ (the
// page's training-images.idx.gz).
// The recipe is a run's config.json (`emerge train` writes it; --steps etc. there do not matter:
// this runs --steps of them), or the page's www/data/trainer.json. The first step is timed apart
// (it includes setting up). --report-every N: a soak; every N steps a line with the process's
// resident memory and the module's linear memory, which stay flat if nothing leaks.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

const { values } = parseArgs({
  options: {
    pkg: { type: 'string', default: 'site/pkg' },
    backend: { type: 'string', default: 'cpu' },
    dawn: { type: 'string' },
    recipe: { type: 'string' },
    data: { type: 'string' },
    digits: { type: 'string', default: '5000' },
    steps: { type: 'string', default: '20' },
    target: { type: 'string', default: '600' },
    'report-every': { type: 'string', default: '0' },
  },
});
if (!values.recipe || !values.data || !['cpu', 'webgpu'].includes(values.backend)) {
  console.error('usage: trainer-bench.mjs --pkg DIR --recipe config.json --data MNIST_DIR [--backend cpu|webgpu] [--dawn dawn.node] [--digits N] [--steps N] [--target N] [--report-every N]');
  process.exit(2);
}
const [digits, steps, target, reportEvery] = ['digits', 'steps', 'target', 'report-every'].map((name) => {
  const value = Number(values[name]);
  if (!Number.isInteger(value) || value < (name === 'report-every' ? 0 : 1)) {
    console.error(`--${name} must be a whole number ≥ ${name === 'report-every' ? 0 : 1}, got '${values[name]}'`);
    process.exit(2);
  }
  return value;
});

/** The first `count` records of the first IDX file of `names` in --data (gzip or not), after its
 * header of `dims` sizes. */
function idxBody(names, dims, count, recordBytes) {
  const path = names.map((name) => join(values.data, name)).find(existsSync);
  if (!path) {
    console.error(`${values.data} has none of ${names.join(', ')}`);
    process.exit(2);
  }
  const bytes = path.endsWith('.gz') ? gunzipSync(readFileSync(path)) : readFileSync(path);
  return bytes.subarray(4 + 4 * dims, 4 + 4 * dims + count * recordBytes);
}

const recipe = JSON.parse(readFileSync(resolve(values.recipe), 'utf8'));
const size = recipe.model.unet.sample_size;
const candidates = (mnist, page) => [mnist, `${mnist}.gz`, page];
const images = idxBody(candidates('train-images-idx3-ubyte', 'training-images.idx.gz'), 3, digits, size * size);
const labels = idxBody(candidates('train-labels-idx1-ubyte', 'training-labels.idx.gz'), 1, digits, 1);

if (values.backend === 'webgpu') {
  const { installWebGpu, loadDawn } = await import('../tests/dawn/webgpu.mjs');
  installWebGpu(await loadDawn(values.dawn && resolve(values.dawn)));
}
const pkg = resolve(values.pkg);
const name = values.backend === 'webgpu' ? 'emerge_train_gpu' : 'emerge_train';
const module = await import(pathToFileURL(join(pkg, `${name}.js`)).href);
const wasm = await module.default({ module_or_path: readFileSync(join(pkg, `${name}_bg.wasm`)) });
const training = await module.Training.create(recipe, images, labels, values.backend);

const megabytes = (bytes) => Number((bytes / 2 ** 20).toFixed(1));
let started = performance.now();
const first = await training.train(1);
const firstMs = performance.now() - started;
started = performance.now();
let rest = { losses: [] };
for (let done = 0; done < steps;) {
  const count = reportEvery ? Math.min(reportEvery, steps - done) : steps;
  rest = await training.train(count);
  done += count;
  if (reportEvery) {
    const mean = rest.losses.reduce((a, b) => a + b, 0) / rest.losses.length;
    console.log(JSON.stringify({ step: rest.step, rss_mb: megabytes(process.memoryUsage().rss), wasm_memory_mb: megabytes(wasm.memory.buffer.byteLength), mean_loss: Number(mean.toFixed(4)) }));
  }
}
const seconds = (performance.now() - started) / 1000;
const perSecond = steps / seconds;
const network = recipe.model.unet.block_out_channels.join('/');
const { backend, adapter } = training.device;
console.log(JSON.stringify({
  backend,
  adapter,
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
process.exit(0); // Dawn's device would keep Node running
