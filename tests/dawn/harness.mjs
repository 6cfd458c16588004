#!/usr/bin/env node
// The page's engine outside the browser: the very pkg/ module the page loads, given Dawn (Chrome's
// WebGPU implementation, as the npm package `webgpu` ships it) as its `navigator.gpu`. It runs one
// sampling request the way the page's worker does (the kernels built at load, then start, step()
// and read a frame back until done), prints the adapter, time to first frame and ms per step as
// JSON, and with --expect
// compares the final images with the native CLI's IDX output. It then checks the learning view's
// numbers: the loss curve of one lesson on Dawn against the same engine on the CPU (Flex in wasm).
//
//   node tests/dawn/harness.mjs --pkg pkg --model www/models/mnist.bpk \
//     --sampler ddim --steps 10 --batch 2 --class 3 --seed 7 --guidance 2 --expect native.idx
//
// Exit status: 0 when the run finished (and matched), 1 on a mismatch or any console error, 2 on
// bad arguments or no WebGPU adapter. Dawn needs a Vulkan driver: without a GPU, point the Vulkan
// loader at SwiftShader (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json).
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { samplingRequest } from '../../www/js/settings.js';
import { idxImages, maxDifference, tile } from '../grid.mjs';
import { installWebGpu, loadDawn } from './webgpu.mjs';

const USAGE = 'usage: harness.mjs --pkg DIR --model FILE [--dawn dawn.node] [--sampler ddim|ddpm|dpmpp_2m|sde_dpmpp_2m] [--steps N] [--eta E] [--batch N] [--class C] [--seed S] [--guidance W] [--per-draw N] [--tasks-per-submit N] [--no-record] [--no-prepare] [--expect native.idx] [--tolerance 6] [--json out.json]';

function options() {
  try {
    const { values } = parseArgs({
      options: {
        pkg: { type: 'string', default: 'pkg' },
        model: { type: 'string', default: 'www/models/mnist.bpk' },
        dawn: { type: 'string' },
        sampler: { type: 'string', default: 'ddim' },
        steps: { type: 'string', default: '10' },
        eta: { type: 'string', default: '1' },
        batch: { type: 'string', default: '2' },
        class: { type: 'string' },
        seed: { type: 'string', default: '7' },
        guidance: { type: 'string', default: '1.25' },
        'per-draw': { type: 'string', default: '1' },
        'tasks-per-submit': { type: 'string' },
        'no-record': { type: 'boolean', default: false },
        'no-prepare': { type: 'boolean', default: false },
        expect: { type: 'string' },
        tolerance: { type: 'string', default: '6' },
        json: { type: 'string' },
      },
    });
    const number = (name) => {
      const value = Number(values[name]);
      if (!Number.isFinite(value)) throw new Error(`--${name} must be a number, got '${values[name]}'`);
      return value;
    };
    return {
      pkg: resolve(values.pkg),
      model: resolve(values.model),
      dawn: values.dawn && resolve(values.dawn),
      // The page's settings, turned into a request by the page's own function once the model's
      // limits are known.
      settings: {
        sampler: values.sampler,
        steps: number('steps'),
        eta: number('eta'),
        seed: number('seed'),
        batch: number('batch'),
        class: values.class === undefined ? 'any' : number('class'),
        guidance: number('guidance'),
        interval: 'all',
      },
      perDraw: number('per-draw'),
      tasksPerSubmit: values['tasks-per-submit'] === undefined ? undefined : number('tasks-per-submit'),
      record: !values['no-record'],
      prepare: !values['no-prepare'],
      expect: values.expect,
      tolerance: number('tolerance'),
      json: values.json,
    };
  } catch (error) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
}

/** Counts console errors (wgpu's validation errors and panics arrive only there). */
function watchConsole() {
  const errors = [];
  const original = console.error;
  console.error = (...args) => {
    errors.push(args.map(String).join(' '));
    original(...args);
  };
  return errors;
}

const now = () => performance.now();

/** Counts the WebGPU calls that cost time per step: shader compilation, bind groups, submits,
 * buffer creation, writes and readbacks (wrapping Dawn's prototypes, which the wasm module
 * calls). Dispatches are counted by kernel, in `countKernels`. */
function countCalls(globals) {
  const counts = {};
  const wrap = (type, method, name = method) => {
    const proto = globals[type]?.prototype;
    const original = proto?.[method];
    if (typeof original !== 'function') return;
    counts[name] = 0;
    proto[method] = function counted(...args) {
      counts[name] += 1;
      return original.apply(this, args);
    };
  };
  wrap('GPUDevice', 'createShaderModule', 'shader_modules');
  wrap('GPUDevice', 'createComputePipeline', 'pipelines');
  wrap('GPUDevice', 'createComputePipelineAsync', 'pipelines_async');
  wrap('GPUDevice', 'createBindGroup', 'bind_groups');
  wrap('GPUDevice', 'createBuffer', 'buffers');
  wrap('GPUQueue', 'submit', 'submits');
  wrap('GPUQueue', 'writeBuffer', 'buffer_writes');
  wrap('GPUBuffer', 'mapAsync', 'readbacks');
  return counts;
}

/** Counts dispatches by kernel (the compute pipeline's label: cubecl's kernel name), so that a
 * step's dispatches can be told apart. */
function countKernels(globals) {
  const counts = {};
  // the kernels' pipelines in the order they are built (not a count: `dispatches` skips it)
  Object.defineProperty(counts, 'built', { value: [], enumerable: false });
  const names = new WeakMap();
  const encoder = globals.GPUComputePassEncoder?.prototype;
  const device = globals.GPUDevice?.prototype;
  if (!encoder || !device) return counts;
  const { createComputePipeline, createComputePipelineAsync } = device;
  device.createComputePipeline = function named(descriptor) {
    const pipeline = createComputePipeline.call(this, descriptor);
    names.set(pipeline, descriptor?.label || 'unnamed');
    counts.built.push(names.get(pipeline));
    return pipeline;
  };
  if (createComputePipelineAsync) {
    device.createComputePipelineAsync = async function named(descriptor) {
      const pipeline = await createComputePipelineAsync.call(this, descriptor);
      names.set(pipeline, descriptor?.label || 'unnamed');
      return pipeline;
    };
  }
  const current = new WeakMap();
  const { setPipeline, dispatchWorkgroups, dispatchWorkgroupsIndirect } = encoder;
  encoder.setPipeline = function remembered(pipeline) {
    current.set(this, names.get(pipeline) ?? 'unnamed');
    return setPipeline.call(this, pipeline);
  };
  const tally = (pass) => {
    const name = current.get(pass) ?? 'unnamed';
    counts[name] = (counts[name] ?? 0) + 1;
  };
  encoder.dispatchWorkgroups = function counted(...args) {
    tally(this);
    return dispatchWorkgroups.apply(this, args);
  };
  encoder.dispatchWorkgroupsIndirect = function counted(...args) {
    tally(this);
    return dispatchWorkgroupsIndirect.apply(this, args);
  };
  return counts;
}

/** Kernels by dispatches per step between two snapshots of `countKernels`, most first, with the
 * kernel names' numeric suffixes (cubecl's per-variant hashes) folded into one family. */
function kernelsPerStep(before, after, steps) {
  const families = {};
  for (const [name, count] of Object.entries(after)) {
    const family = name.replace(/_?[0-9a-f]{6,}$/i, '').replace(/_\d+$/, '');
    families[family] = (families[family] ?? 0) + (count - (before[name] ?? 0)) / steps;
  }
  return Object.fromEntries(Object.entries(families).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]));
}

/** The dispatches of all kernels together. */
const dispatches = (perKernel) => Object.values(perKernel).reduce((sum, n) => sum + n, 0);

/** `after − before` per `steps`, for each counter. */
function perStep(before, after, steps) {
  return Object.fromEntries(Object.keys(after).map((k) => [k, steps > 0 ? (after[k] - before[k]) / steps : null]));
}

async function main() {
  const o = options();
  const errors = watchConsole();
  const dawn = await loadDawn(o.dawn);
  const kernels = countKernels(dawn.globals);
  const calls = countCalls(dawn.globals);
  const gpu = installWebGpu(dawn);
  const adapter = await gpu.requestAdapter();
  if (!adapter) {
    console.error('Dawn found no WebGPU adapter (no Vulkan driver? try VK_ICD_FILENAMES)');
    process.exit(2);
  }

  const timings = {};
  let t = now();
  const Engine = await engineClass(o.pkg, 'emerge_web');
  timings.wasm_load_ms = now() - t;

  t = now();
  const engine = await Engine.create('webgpu', o.tasksPerSubmit, o.record);
  const device = engine.device;
  timings.device_ms = now() - t;

  t = now();
  const config = engine.loadModel(readFileSync(o.model));
  timings.model_load_ms = now() - t;

  // As the worker does after loading: the kernels built before the first run.
  const atLoad = { ...calls };
  const kernelsAtLoad = { ...kernels };
  timings.prepare_ms = o.prepare ? await engine.prepare(o.settings.batch) : null;
  const atPrepared = { ...calls };
  const kernelsAtPrepared = { ...kernels };

  // As the page's worker: start, then step() and read a frame back until the run is done.
  t = now();
  const atStart = { ...calls };
  const kernelsAtStart = { ...kernels };
  const builtAtStart = kernels.built.length;
  const request = samplingRequest(o.settings, engine.limits);
  const total = engine.start(request);
  let frame = await engine.step(o.perDraw);
  timings.first_frame_ms = now() - t;
  const afterFirst = now();
  const atFirstFrame = { ...calls };
  const kernelsAtFirstFrame = { ...kernels };
  const builtInFirstFrame = kernels.built.slice(builtAtStart);
  let frames = 1;
  while (!engine.finished) {
    frame = await engine.step(o.perDraw);
    frames += 1;
  }
  const rest = frame.step - Math.min(o.perDraw, total);
  timings.ms_per_step = rest > 0 ? (now() - afterFirst) / rest : null;
  timings.total_ms = now() - t;

  const size = config.unet.sample_size;
  const channels = config.unet.in_channels;
  const result = {
    adapter: device.adapter,
    backend: device.backend,
    tasks_per_submit: o.tasksPerSubmit ?? 'engine default',
    stepping: engine.stepping,
    request,
    steps: frame.step,
    frames,
    timings,
  };
  // Dispatches by kernel in the first frame and per step after it, and every call counted.
  result.kernels_first_frame = kernelsPerStep(kernelsAtStart, kernelsAtFirstFrame, 1);
  result.kernels_per_step = rest > 0 ? kernelsPerStep(kernelsAtFirstFrame, kernels, rest) : null;
  result.kernels_prepare = kernelsPerStep(kernelsAtLoad, kernelsAtPrepared, 1);
  result.calls_prepare = { ...perStep(atLoad, atPrepared, 1), dispatches: dispatches(result.kernels_prepare) };
  result.calls_first_frame = { ...perStep(atStart, atFirstFrame, 1), dispatches: dispatches(result.kernels_first_frame) };
  result.kernels_built_in_first_frame = builtInFirstFrame;
  result.calls_per_step = { ...perStep(atFirstFrame, calls, rest), dispatches: rest > 0 ? dispatches(result.kernels_per_step) : null };
  if (frame.step !== total) errors.push(`the run stopped at step ${frame.step} of ${total}`);
  if (o.expect) {
    if (channels !== 1) throw new Error('--expect compares grey (one-channel) models only');
    const grid = { sample: frame.sample, width: frame.width, batch: request.images };
    const native = idxImages(readFileSync(o.expect));
    const mine = Array.from({ length: request.images }, (_, i) => tile(grid, i, size));
    result.max_difference = Math.max(...mine.map((image, i) => maxDifference(image, native[i] ?? [])));
    result.tolerance = o.tolerance;
  }
  timings.round_trip_ms = await roundTrip(engine, config);
  result.lesson = await compareLessons(engine, readFileSync(o.model), config, await engineClass(o.pkg, 'emerge_cpu'));
  if (!(result.lesson.tolerance_used <= 1)) errors.push(`the lesson's losses on WebGPU differ from the CPU's by up to ${result.lesson.max_abs_difference} (${result.lesson.tolerance_used}× the tolerance)`);
  result.console_errors = errors;
  const json = JSON.stringify(result, null, 2);
  console.log(json);
  if (o.json) writeFileSync(o.json, json);
  engine.free();
  const mismatch = result.max_difference !== undefined && !(result.max_difference <= o.tolerance);
  process.exit(errors.length > 0 || mismatch ? 1 : 0);
}

/** The `Engine` class of the page's module `name` in `pkg` (emerge_web: WebGPU, emerge_cpu: the
 * CPU), instantiated. */
async function engineClass(pkg, name) {
  const module = await import(pathToFileURL(join(pkg, `${name}.js`)).href);
  await module.default({ module_or_path: readFileSync(join(pkg, `${name}_bg.wasm`)) });
  return module.Engine;
}

/** What reading a frame back costs at the least, which a frame drawn from the GPU straight onto a
 * canvas would save: the median of 9 round trips of one small launch (an image noised, as the
 * learning view asks) and its frame read back and converted, with the GPU otherwise idle (ms). */
async function roundTrip(engine, config) {
  const { sample_size: size, in_channels: channels } = config.unet;
  const pixels = new Uint8Array(channels * size * size);
  const times = [];
  for (let i = 0; i < 9; i += 1) {
    const t = now();
    await engine.noised(pixels, 500, BigInt(i));
    times.push(now() - t);
  }
  return times.sort((a, b) => a - b)[4];
}

/** The learning view's loss curve (21 timesteps, one batched forward pass) of a vertical bar
 * on `engine` and on a CPU engine with the same model: the largest difference, and the largest
 * fraction of its tolerance used. */
async function compareLessons(engine, modelBytes, config, CpuEngine) {
  const { sample_size: size, in_channels: channels } = config.unet;
  const pixels = Uint8Array.from({ length: channels * size * size }, (_, i) => {
    const x = i % size;
    return Math.abs(x - size / 2) < size / 10 ? 255 : 0;
  });
  const label = config.unet.num_class_embeds ? 1 : undefined;
  const curve = (e) => e.lossCurve(pixels, label, 5n, 21, undefined);
  const t = now();
  const gpu = await curve(engine);
  const ms = now() - t;
  const cpu = CpuEngine.create('cpu').then(async (e) => (e.loadModel(modelBytes), curve(e)));
  const reference = await cpu;
  // Each L_simple within 1e-4 + 1e-3 × its CPU value (float rounding of a mean over the pixels);
  // each ‖x_0 − x̂_0‖² within 1e-4 + 1e-2 × its value: x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t magnifies
  // ε̂'s rounding by up to 1/√ᾱ_999 ≈ 160 at high t.
  const used = (a, b, relative) => Math.abs(a - b) / (1e-4 + relative * Math.abs(b));
  const noise = gpu.noise_loss.map((v, i) => used(v, reference.noise_loss[i], 1e-3));
  const image = gpu.image_error.map((v, i) => used(v, reference.image_error[i], 1e-2));
  const excess = Math.max(...noise, ...image);
  const largest = Math.max(...gpu.noise_loss.map((v, i) => Math.abs(v - reference.noise_loss[i])), ...gpu.image_error.map((v, i) => Math.abs(v - reference.image_error[i])));
  return { curve_ms: ms, points: gpu.timesteps.length, max_abs_difference: largest, tolerance_used: excess };
}

main().catch((error) => {
  console.error(error?.stack ?? String(error));
  process.exit(1);
});
