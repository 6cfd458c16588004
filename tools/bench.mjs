// Benchmark of the page (not a test: it prints numbers). In one run, in the same headless
// Chromium: time from navigation to the first frame, and milliseconds per denoising step for
// batch 1 and 16 on WebGPU and on the CPU fallback; the bytes the page fetched before its first
// picture on each; then the native CLI's Flex timing of the same network, and the sizes of what
// a visitor downloads.
//   node tools/bench.mjs            (after ./build.sh site; EMERGE_CLI = the native binary)
// Another model of the site's manifest: BENCH_MODEL=name BENCH_PRESET=ddpm-cifar10 BENCH_STEPS=3
// BENCH_BACKENDS=cpu node tools/bench.mjs (the preset names the same network for the native run).
// Where the site has the trainer's digits, also the page's trainer: its steps per second on each
// backend over BENCH_TRAIN_SECONDS (default 60) of training, grids included.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { CLI, SITE, open, startBrowser, waitForState } from '../tests/e2e/browser.mjs';

/** The files behind `urls` (the site's own), their bytes raw and gzip -9 (GitHub Pages sends
 * them compressed). */
function wireBytes(urls) {
  const files = [...new Set(urls.map((url) => decodeURIComponent(new URL(url).pathname)))].map((path) => readFileSync(join(SITE, path)));
  return {
    files: files.length,
    raw: files.reduce((sum, bytes) => sum + bytes.length, 0),
    gzip: files.reduce((sum, bytes) => sum + gzipSync(bytes, { level: 9 }).length, 0),
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const size = (file) => {
  const bytes = readFileSync(join(SITE, file));
  return `${(bytes.length / 1e6).toFixed(2)} MB raw, ${(gzipSync(bytes, { level: 9 }).length / 1e6).toFixed(2)} MB gzip`;
};

const MODEL = process.env.BENCH_MODEL ?? 'mnist';
const PRESET = process.env.BENCH_PRESET ?? 'mnist';
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'webgpu,cpu').split(',');
const STEPS = process.env.BENCH_STEPS ? Number(process.env.BENCH_STEPS) : null;
const TRAIN_SECONDS = Number(process.env.BENCH_TRAIN_SECONDS ?? 60);

/** The page's trainer on `backend`: steps per second over TRAIN_SECONDS of training. */
async function trainerSpeed(env, backend) {
  const { page } = await open(env, `index.html?autoplay=0&backend=${backend}`);
  await page.waitForFunction(() => document.querySelector('#train-open') && !document.querySelector('#train-open').hidden, null, { timeout: 300_000 });
  await page.click('#train-open');
  await page.waitForFunction(() => window.emergeDebug.trainer.samples.length > 0 || window.emergeDebug.trainer.error, null, { timeout: 900_000 });
  const about = await page.textContent('#train-about');
  await page.click('#train-toggle');
  const started = Date.now();
  await page.waitForTimeout(TRAIN_SECONDS * 1000);
  const { step, samples, error } = await page.evaluate(() => window.emergeDebug.trainer);
  if (error) throw new Error(error);
  const seconds = (Date.now() - started) / 1000;
  await page.close();
  return { backend, about, step, grids: samples.length, seconds };
}

/** Milliseconds from the first frame to the end of the run at `query` (a fresh page). */
async function runAfterFirstFrame(env, query) {
  const { page } = await open(env, `index.html?${query}`);
  await page.waitForFunction(() => window.emergeDebug.frames > 0, null, { timeout: 900_000, polling: 20 });
  const started = Date.now();
  if ((await waitForState(page, ['complete', 'error'], 900_000)) !== 'complete') throw new Error(await page.textContent('#status-message'));
  const ms = Date.now() - started;
  await page.close();
  return ms;
}

const env = await startBrowser();
const rows = [];
const wire = [];
const pool = [];
const trainers = [];
try {
  for (const backend of BACKENDS) {
    // on the CPU, batch 16 with one worker and with the pool (one per core, at most 4)
    for (const [batch, workers] of backend === 'cpu' ? [[1, 1], [16, 1], [16, null]] : [[1, null], [16, null]]) {
      // guidance 1: one forward pass of `batch` images per step, comparable with the native bench
      const steps = STEPS ?? (backend === 'webgpu' && batch === 16 ? 10 : 12);
      const query = `model=${MODEL}&backend=${backend}&batch=${batch}&steps=${steps}&class=3&guidance=1&seed=1${workers ? `&workers=${workers}` : ''}`;
      const { page, requests } = await open(env, `index.html?${query}`);
      if (batch === 1) {
        // What a visitor's browser fetched before the first picture (a fresh page, no cache).
        await page.waitForFunction(() => window.emergeDebug.frames > 0 || document.body.dataset.state === 'error', null, { timeout: 900_000, polling: 20 });
        wire.push({ backend, ...wireBytes([...requests]) });
      }
      await waitForState(page, ['complete', 'error'], 900_000);
      const debug = await page.evaluate(() => {
        const { errors, firstFrameMs, millis } = window.emergeDebug;
        return { errors, firstFrameMs, millis };
      });
      if (debug.errors.length) throw new Error(debug.errors.join('; '));
      const shown = await page.textContent('#device');
      rows.push({ backend, batch, shown, firstFrame: debug.firstFrameMs, first: debug.millis[0], later: median(debug.millis.slice(1)) });
      await page.close();
    }
  }
  if (BACKENDS.includes('cpu') && !STEPS) {
    // The page's run on the CPU fallback (DDIM 50, η = 1, 4 digits, guidance 1.25), by one
    // worker and by the pool.
    for (const workers of [1, 2, 4]) {
      const ms = await runAfterFirstFrame(env, `model=${MODEL}&backend=cpu&sampler=ddim&eta=1&steps=50&batch=4&class=any&guidance=1.25&seed=1&workers=${workers}`);
      pool.push({ workers, ms });
    }
  }
  if (!STEPS && existsSync(join(SITE, 'data/training-digits.json'))) {
    for (const backend of BACKENDS) trainers.push(await trainerSpeed(env, backend));
  }
} finally {
  await env.close();
}

console.log('| device | batch | navigation → first frame (ms) | first step (ms) | later steps, median (ms) |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) {
  const name = r.backend === 'webgpu' ? 'WebGPU (SwiftShader, headless Chromium)' : `${r.shown}, headless Chromium`;
  console.log(`| ${name} | ${r.batch} | ${r.firstFrame.toFixed(0)} | ${r.first.toFixed(0)} | ${r.later.toFixed(1)} |`);
}
if (pool.length) {
  console.log(`\nCPU fallback, DDIM 50 steps of 4 digits (guidance 1.25), after the first frame (navigator.hardwareConcurrency = ${os.availableParallelism()} here):`);
  console.log('| workers | run (s) | speed-up over one worker |');
  console.log('| --- | --- | --- |');
  for (const p of pool) console.log(`| ${p.workers} | ${(p.ms / 1000).toFixed(1)} | ${(pool[0].ms / p.ms).toFixed(2)}× |`);
}
for (const t of trainers) {
  console.log(`\nthe page's trainer (${t.about}): ${t.step} steps in ${t.seconds.toFixed(0)} s of training, ${(t.step / t.seconds).toFixed(2)} steps/s, ${t.grids} grids drawn`);
}
console.log('\n| device | files fetched before the first picture | raw (MB) | gzip, as Pages sends them (MB) |');
console.log('| --- | --- | --- | --- |');
for (const w of wire) console.log(`| ${w.backend === 'webgpu' ? 'WebGPU' : 'CPU fallback'} | ${w.files} | ${(w.raw / 1e6).toFixed(2)} | ${(w.gzip / 1e6).toFixed(2)} |`);
if (CLI) console.log(execFileSync(CLI, ['bench', '--presets', PRESET, '--batches', '1,16', '--runs', STEPS ? '3' : '9']).toString());
console.log(`wasm module, WebGPU: ${size('pkg/emerge_web_bg.wasm')}`);
console.log(`wasm module, CPU: ${size('pkg/emerge_cpu_bg.wasm')}`);
const entry = JSON.parse(readFileSync(join(SITE, 'models/manifest.json'), 'utf8')).models.find((m) => m.name === MODEL);
console.log(`weights (${MODEL}.bpk, ${entry?.precision ?? 'f16'}): ${size(`models/${MODEL}.bpk`)}`);
// The training timeline's checkpoints, downloaded only when a visitor opens it.
const checkpoints = entry?.checkpoints ?? [];
if (checkpoints.length) {
  const files = checkpoints.map((c) => readFileSync(join(SITE, 'models', c.file)));
  const raw = files.reduce((sum, f) => sum + f.length, 0);
  const gzip = files.reduce((sum, f) => sum + gzipSync(f, { level: 9 }).length, 0);
  console.log(`training timeline (${checkpoints.length} checkpoints, on demand): ${(raw / 1e6).toFixed(2)} MB raw, ${(gzip / 1e6).toFixed(2)} MB gzip`);
}
