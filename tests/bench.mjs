// Benchmark of the page (not a test: it prints numbers). In one run, in the same headless
// Chromium: time from navigation to the first frame, and milliseconds per denoising step for
// batch 1 and 16 on WebGPU and on the CPU fallback; then the native CLI's Flex timing of the
// same network, and the sizes of what a visitor downloads.
//   node tests/bench.mjs            (after ./build.sh site; EMERGE_CLI = the native binary)
// Another model of the site's manifest: BENCH_MODEL=name BENCH_PRESET=ddpm-cifar10 BENCH_STEPS=3
// BENCH_BACKENDS=cpu node tests/bench.mjs (the preset names the same network for the native run).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { CLI, SITE, open, startBrowser, waitForState } from './e2e/browser.mjs';

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const size = (file) => {
  const bytes = readFileSync(join(SITE, file));
  return `${(bytes.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(bytes, { level: 9 }).length / 1e6).toFixed(2)} MB gzip`;
};

const MODEL = process.env.BENCH_MODEL ?? 'mnist';
const PRESET = process.env.BENCH_PRESET ?? 'mnist';
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'webgpu,cpu').split(',');
const STEPS = process.env.BENCH_STEPS ? Number(process.env.BENCH_STEPS) : null;

const env = await startBrowser();
const rows = [];
try {
  for (const backend of BACKENDS) {
    for (const batch of [1, 16]) {
      // guidance 1: one forward pass of `batch` images per step, comparable with the native bench
      const steps = STEPS ?? (backend === 'webgpu' && batch === 16 ? 10 : 12);
      const query = `model=${MODEL}&backend=${backend}&batch=${batch}&steps=${steps}&class=3&guidance=1&seed=1`;
      const { page } = await open(env, `index.html?${query}`);
      await waitForState(page, ['complete', 'error'], 900_000);
      const debug = await page.evaluate(() => {
        const { errors, firstFrameMs, millis } = window.emergeDebug;
        return { errors, firstFrameMs, millis };
      });
      if (debug.errors.length) throw new Error(debug.errors.join('; '));
      rows.push({ backend, batch, firstFrame: debug.firstFrameMs, first: debug.millis[0], later: median(debug.millis.slice(1)) });
      await page.close();
    }
  }
} finally {
  await env.close();
}

console.log('| device | batch | navigation → first frame (ms) | first step (ms) | later steps, median (ms) |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) {
  const name = r.backend === 'webgpu' ? 'WebGPU (SwiftShader, headless Chromium)' : 'CPU fallback (Flex in wasm, headless Chromium)';
  console.log(`| ${name} | ${r.batch} | ${r.firstFrame.toFixed(0)} | ${r.first.toFixed(0)} | ${r.later.toFixed(1)} |`);
}
if (CLI) console.log(execFileSync(CLI, ['bench', '--presets', PRESET, '--batches', '1,16', '--runs', STEPS ? '3' : '9']).toString());
console.log(`wasm module: ${size('pkg/emerge_web_bg.wasm')}`);
console.log(`weights (${MODEL}.bpk, f16): ${size(`models/${MODEL}.bpk`)}`);
// The training timeline's checkpoints, downloaded only when a visitor opens it.
const manifest = JSON.parse(readFileSync(join(SITE, 'models/manifest.json'), 'utf8'));
const checkpoints = manifest.models.find((m) => m.name === MODEL)?.checkpoints ?? [];
if (checkpoints.length) {
  const files = checkpoints.map((c) => readFileSync(join(SITE, 'models', c.file)));
  const raw = files.reduce((sum, f) => sum + f.length, 0);
  const gzip = files.reduce((sum, f) => sum + gzipSync(f, { level: 9 }).length, 0);
  console.log(`training timeline (${checkpoints.length} checkpoints, on demand): ${(raw / 1e6).toFixed(2)} MB raw, ${(gzip / 1e6).toFixed(2)} MB gzip`);
}
