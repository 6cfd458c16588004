// Shared set-up of the browser tests: the built site on a local server, Debian's Chromium with
// WebGPU on SwiftShader, and a page wrapper that records every request and console error.
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from '../serve.mjs';
import { idxImages } from '../grid.mjs';

export { greyPng, looksLikeADigit, tile } from '../grid.mjs';

export const SITE = process.env.EMERGE_SITE ?? new URL('../../site', import.meta.url).pathname;
export const CLI = process.env.EMERGE_CLI;
export const RESULTS = new URL('../../test-results/', import.meta.url).pathname;
mkdirSync(RESULTS, { recursive: true });

/** Serves `site` (the built site, or a temporary copy a test changes) to headless Chromium. */
export async function startBrowser({ webgpu = true, site = SITE } = {}) {
  const server = await serve(site);
  const args = [
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args });
  return { server, browser, close: async () => (await browser.close(), server.close()) };
}

/** Opens `path`; returns the page plus the requests it made and the errors it logged. */
export async function open(env, path) {
  const page = await env.browser.newPage({ viewport: { width: 1100, height: 900 } });
  const requests = [];
  const errors = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(new URL(path, env.server.url).href);
  return { page, requests, errors };
}

/** Waits until the page's `data-state` is one of `states`; returns it. */
export async function waitForState(page, states, timeout = 240_000) {
  await page.waitForFunction((wanted) => wanted.includes(document.body.dataset.state), states, { timeout, polling: 250 });
  return page.evaluate(() => document.body.dataset.state);
}

/** Every request went to the page's own origin (data: and blob: URLs are local too). */
export function foreignRequests(requests, origin) {
  return requests.filter((url) => !url.startsWith(origin) && !url.startsWith('data:') && !url.startsWith('blob:'));
}

/** The noise schedule the model in weight file `file` names (the file carries its config as
 * JSON): `{ kind, alphaBar(t), timestepAt(level) }`, ᾱ_t = ∏_{s ≤ t} (1 − β_s) computed here apart
 * from the engine, for the paper's linear β or Improved DDPM's cosine (eq. 17, β clipped at 0.999),
 * and the first t at which ᾱ_t has fallen to `level`. */
export function modelSchedule(file) {
  const config = /"schedule":(\{"num_train_timesteps":\d+,"beta_schedule":\{[^}]*\})/.exec(readFileSync(file, 'latin1'));
  const { num_train_timesteps: T, beta_schedule: schedule } = JSON.parse(`${config[1]}}`);
  const f = (i) => Math.cos((((i / T) + schedule.s) / (1 + schedule.s)) * (Math.PI / 2)) ** 2;
  const beta = {
    linear: (i) => schedule.beta_start + (i / (T - 1)) * (schedule.beta_end - schedule.beta_start),
    cosine: (i) => Math.min(1 - f(i + 1) / f(i), 0.999),
  }[schedule.kind];
  const alphasCumprod = [];
  for (let i = 0, product = 1; i < T; i++) alphasCumprod.push((product *= 1 - beta(i)));
  const reached = (level) => alphasCumprod.findIndex((value) => value <= level);
  return {
    kind: schedule.kind,
    alphaBar: (t) => alphasCumprod[t],
    timestepAt: (level) => (reached(level) < 0 ? T - 1 : reached(level)),
  };
}

/** The native CLI's samples for the same settings, as 28×28 u8 images. `sampler` (as the page
 * names it, with `eta` for DDIM) and `interval` (LOW-HIGH or all): absent, the model's recommended
 * ones, which the page takes from the manifest. */
export function nativeSamples({ seed, steps, count, digit, guidance, interval, sampler, eta }) {
  const out = join(RESULTS, `native-${sampler ?? 'default'}-${seed}-${steps}-${count}-${digit}-${guidance}-${interval ?? 'default'}.idx`);
  execFileSync(CLI, [
    'sample', '--model', join(SITE, 'models/mnist.bpk'), ...(sampler ? ['--sampler', sampler] : []),
    ...(eta === undefined ? [] : ['--eta', String(eta)]), '--steps', String(steps),
    '--count', String(count), '--seed', String(seed), '--class', String(digit), '--guidance', String(guidance), '--out', out,
    ...(interval ? ['--guidance-interval', interval] : []),
  ]);
  return idxImages(readFileSync(out));
}

/** Waits until the page has mounted its explanation views (after the model is loaded). */
export const waitForViews = (page) => page.waitForFunction(() => window.emergeDebug?.views === true, null, { timeout: 120_000 });

/** The last frame the page drew, its pixels copied out of the page. */
export function lastFrame(page) {
  return page.evaluate(() => {
    const frame = window.emergeDebug.lastFrame;
    return frame && { ...frame, sample: Array.from(frame.sample), prediction: Array.from(frame.prediction) };
  });
}
