// The page's engine (the built site's pkg/) on Dawn, Chrome's WebGPU implementation, outside the
// browser: SDE-DPM-Solver++(2M) (the browser test runs DDIM), with the step recorded and replayed
// and without, each compared with the native CLI, its kernels built at load. Without a GPU the
// Vulkan loader is pointed at the SwiftShader driver Debian's chromium package ships.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, RESULTS, SITE } from './browser.mjs';
import { withSwiftShader } from '../dawn/webgpu.mjs';
const RUN = { seed: 7, steps: 10, count: 2, digit: 3, guidance: 2 };

test('the page engine on Dawn draws the native CLI’s digits', { timeout: 600_000 }, () => {
  assert.ok(CLI, 'EMERGE_CLI must point at the native emerge binary');
  const native = join(RESULTS, 'dawn-native.idx');
  execFileSync(CLI, [
    'sample', '--model', join(SITE, 'models/mnist.bpk'), '--sampler', 'sde_dpmpp_2m',
    '--steps', String(RUN.steps), '--count', String(RUN.count), '--seed', String(RUN.seed),
    '--class', String(RUN.digit), '--guidance', String(RUN.guidance), '--out', native,
  ]);
  const env = withSwiftShader({ ...process.env });
  const harness = new URL('../dawn/harness.mjs', import.meta.url).pathname;
  /** The harness on this run, with the step recorded and replayed (the page's path) or not. */
  const run = (record) => {
    const report = join(RESULTS, record ? 'dawn.json' : 'dawn-plain.json');
    try {
      execFileSync(process.execPath, [
        harness, '--pkg', join(SITE, 'pkg'), '--model', join(SITE, 'models/mnist.bpk'),
        '--sampler', 'sde_dpmpp_2m', '--steps', String(RUN.steps), '--batch', String(RUN.count),
        '--class', String(RUN.digit), '--seed', String(RUN.seed), '--guidance', String(RUN.guidance),
        '--expect', native, '--json', report, ...(record ? [] : ['--no-record']),
      ], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      assert.fail(`the harness failed (status ${error.status}):\n${error.stdout}\n${error.stderr}`);
    }
    return JSON.parse(readFileSync(report, 'utf8'));
  };
  const calls = (counts) => Object.entries(counts).filter(([, n]) => n).map(([kind, n]) => `${Number(n.toFixed(1))} ${kind}`).join(', ');
  const results = {};
  for (const record of [true, false]) {
    const result = run(record);
    const path = record ? 'recorded' : 'plain';
    results[path] = result;
    assert.equal(result.backend, 'webgpu');
    assert.equal(result.stepping, record ? 'recorded' : 'plain: recording is off');
    assert.equal(result.steps, RUN.steps);
    assert.equal(result.frames, RUN.steps, 'one frame read back per step, as the page does');
    assert.ok(result.max_difference <= 6, `Dawn's images (${path} steps) differ from the native CLI by up to ${result.max_difference}/255`);
    assert.ok(result.lesson.tolerance_used <= 1, `the lesson's losses differ from the CPU's by up to ${result.lesson.max_abs_difference}`);
    assert.deepEqual(result.console_errors, []);
    // What a guided step costs the host, whatever the GPU: the WebGPU calls of each step after
    // the first frame (and what the first frame adds), and the kernels most dispatched.
    console.log(`Dawn on ${result.adapter}, ${path} steps: kernels built at load ${result.timings.prepare_ms.toFixed(0)} ms `
      + `(${result.calls_prepare.pipelines} pipelines), first frame ${result.timings.first_frame_ms.toFixed(0)} ms, `
      + `${result.timings.ms_per_step.toFixed(1)} ms per step, max |Δ| ${result.max_difference}/255`);
    console.log(`  WebGPU calls per guided step (batch ${RUN.count}): ${calls(result.calls_per_step)}`);
    console.log(`  WebGPU calls of the first frame: ${calls(result.calls_first_frame)}`);
    console.log(`  Dispatches per step by kernel: ${Object.entries(result.kernels_per_step).slice(0, 8).map(([kernel, n]) => `${kernel} ${Number(n.toFixed(1))}`).join(', ')}`);
    // The first visible step is a step, not a compile: the kernels were built at load.
    assert.deepEqual(result.kernels_built_in_first_frame, [], 'kernels the first frame compiled, missed at load');
    // A count, not a time: 437.8 before convolution kernels were stored channels-last at load.
    assert.ok(result.calls_per_step.dispatches < 437, `${result.calls_per_step.dispatches} dispatches per step: the kernels' channels-last layout is lost`);
  }
  // Counts, not times: replaying the recorded step binds nothing afresh but the few copies that
  // refresh its inputs (about one bind group per dispatch without it).
  const { recorded, plain } = results;
  assert.ok(recorded.calls_per_step.bind_groups < 10, `${recorded.calls_per_step.bind_groups} bind groups created per replayed step`);
  assert.ok(plain.calls_per_step.bind_groups > 100, `${plain.calls_per_step.bind_groups} bind groups per plain step: is it replaying?`);
});
