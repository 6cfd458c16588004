// The demo as a visitor meets it, in headless Chromium with WebGPU on SwiftShader (a CPU
// emulation: slow, so runs are short and batches small).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, RESULTS, SITE, foreignRequests, lastFrame, nativeSamples, open, startBrowser, tile, waitForState } from './browser.mjs';

const RUN = { seed: 7, steps: 10, count: 2, digit: 3, guidance: 2 };
const RUN_QUERY = `seed=${RUN.seed}&steps=${RUN.steps}&batch=${RUN.count}&class=${RUN.digit}&guidance=${RUN.guidance}`;
const TIMEOUT = { timeout: 420_000 };

let env;
before(async () => (env = await startBrowser()));
after(async () => env?.close());

/** Runs the short DDIM run on `backend`, checks frames and the native match; returns the page. */
async function shortRun(backend) {
  const visit = await open(env, `index.html?${RUN_QUERY}&backend=${backend}`);
  const { page } = visit;
  assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
  const backendShown = await page.getAttribute('#device', 'data-backend');
  assert.equal(backendShown, backend === 'cpu' ? 'cpu' : 'webgpu');

  // Frames were drawn, and they changed from step to step.
  const frame = await lastFrame(page);
  assert.equal(frame.total, RUN.steps);
  assert.equal(frame.step, RUN.steps);
  const history = await page.evaluate(() => window.emergeDebug.history);
  assert.ok(history.length >= RUN.steps - 1, `only ${history.length} frames drawn`);
  assert.ok(new Set(history).size >= history.length - 1, 'consecutive frames must differ');

  // The final images are digits, not noise: mostly dark background with some bright strokes,
  // and they equal the native CLI's samples for the same seed and settings.
  const native = nativeSamples(RUN);
  for (let i = 0; i < RUN.count; i++) {
    const mine = tile({ ...frame, batch: RUN.count }, i);
    const dark = mine.filter((v) => v < 40).length / mine.length;
    const bright = mine.filter((v) => v > 200).length / mine.length;
    assert.ok(dark > 0.6 && bright > 0.03, `image ${i} looks like noise (dark ${dark}, bright ${bright})`);
    let maxDiff = 0;
    for (let p = 0; p < mine.length; p++) maxDiff = Math.max(maxDiff, Math.abs(mine[p] - native[i][p]));
    assert.ok(maxDiff <= 6, `image ${i} differs from the native CLI by up to ${maxDiff}/255`);
  }
  assert.deepEqual(foreignRequests(visit.requests, env.server.url), []);
  return visit;
}

describe('the demo page', () => {
  test('loads and reports a WebGPU device, with no console errors', TIMEOUT, async () => {
    const { page, errors, requests } = await open(env, 'index.html?autoplay=0');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready', await page.textContent('#status-message'));
    assert.equal(await page.getAttribute('#device', 'data-backend'), 'webgpu');
    assert.match(await page.textContent('#device'), /WebGPU/);
    assert.match(await page.textContent('#download-text'), /loaded/);
    assert.deepEqual(errors, []);
    assert.deepEqual(foreignRequests(requests, env.server.url), []);
    await page.close();
  });

  test('a short DDIM run on WebGPU draws changing frames and matches the native CLI', TIMEOUT, async () => {
    assert.ok(CLI, 'EMERGE_CLI must point at the native emerge binary');
    const { page, errors } = await shortRun('auto');
    await page.screenshot({ path: join(RESULTS, 'page-after-run.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the CPU fallback generates the same images', TIMEOUT, async () => {
    const { page, errors } = await shortRun('cpu');
    assert.match(await page.textContent('#device'), /CPU fallback/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the forward process view noises a real digit and shows ᾱ_t', TIMEOUT, async () => {
    const { page } = await open(env, 'index.html?autoplay=0&backend=cpu');
    await waitForState(page, ['ready']);
    await page.waitForSelector('#digit-picker .digit');
    await page.fill('#forward-slider', '999');
    await page.dispatchEvent('#forward-slider', 'input');
    await page.waitForFunction(() => document.getElementById('forward-t').textContent === '999');
    const alphaBar = Number(await page.textContent('#alpha-bar'));
    assert.ok(Math.abs(alphaBar - 4.04e-5) < 1e-5, `ᾱ_999 shown as ${alphaBar}`);
    await page.close();
  });

  test("opens with the model's recommended sampler settings; the URL's own values win", TIMEOUT, async () => {
    const context = await env.browser.newContext();
    await context.route('**/models/manifest.json', async (route) => {
      const response = await route.fetch();
      const manifest = await response.json();
      const mnist = manifest.models.find((m) => m.name === 'mnist');
      Object.assign(mnist, { default_sampler: 'ddim', default_steps: 20, default_guidance: 1.5 });
      await route.fulfill({ response, json: manifest });
    });
    const page = await context.newPage();
    const controls = () => page.evaluate(() => ['sampler', 'steps', 'guidance'].map((id) => document.getElementById(id).value));
    await page.goto(new URL('index.html?autoplay=0&backend=cpu', env.server.url).href);
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    assert.deepEqual(await controls(), ['ddim', '20', '1.5']);

    await page.goto(new URL('index.html?autoplay=0&backend=cpu&guidance=3', env.server.url).href);
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    assert.deepEqual(await controls(), ['ddim', '20', '3']);
    // The share link keeps what differs from the model's defaults, and only that.
    await page.click('#share');
    const shared = new URL(await page.inputValue('#share-url')).searchParams;
    assert.equal(shared.get('guidance'), '3');
    assert.equal(shared.get('steps'), null);
    await context.close();
  });

  test('a step that fails while the run plays shows its error', TIMEOUT, async () => {
    // The engine the worker loads, with its third step made to fail.
    const context = await env.browser.newContext();
    await context.route('**/pkg/emerge_web.js', async (route) => {
      const response = await route.fetch();
      const failing = `
        const realStep = Engine.prototype.step;
        let stepCalls = 0;
        Engine.prototype.step = function (count) {
          stepCalls += 1;
          return stepCalls === 3 ? Promise.reject(new Error('injected step failure')) : realStep.call(this, count);
        };`;
      await route.fulfill({ response, body: (await response.text()) + failing });
    });
    const page = await context.newPage();
    await page.goto(new URL('index.html?steps=10&batch=1&backend=cpu', env.server.url).href);
    assert.equal(await waitForState(page, ['complete', 'error'], 60_000), 'error');
    assert.match(await page.textContent('#status-message'), /injected step failure/);
    await context.close();
  });

  test('corrupt weights show an error message, not a blank page', TIMEOUT, async () => {
    const context = await env.browser.newContext();
    await context.route('**/models/mnist.bpk', async (route) => {
      const response = await route.fetch();
      const body = await response.body();
      await route.fulfill({ response, body: body.subarray(0, body.length >> 1) });
    });
    const page = await context.newPage();
    await page.goto(new URL('index.html', env.server.url).href);
    assert.equal(await waitForState(page, ['ready', 'error', 'complete']), 'error');
    assert.match(await page.textContent('#status-message'), /bad weight file.*truncated/i);
    await context.close();
  });
});

describe('the embed page', () => {
  test('honours its parameters and notes invalid ones', TIMEOUT, async () => {
    const { page, errors } = await open(env, 'embed.html?steps=10&batch=1&seed=3&class=5&autoplay=0&sampler=euler');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    assert.match(await page.textContent('#notes'), /sampler="euler"/);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await page.evaluate(() => window.emergeDebug.frames), 0, 'autoplay=0 must not start a run');
    await page.click('#play');
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete');
    const frame = await lastFrame(page);
    assert.equal(frame.total, 10);
    // One 28×28 image in a 1-pixel frame.
    assert.equal(frame.width, 30);
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('a colour model converted from a diffusers checkpoint', () => {
  // The DDPM CIFAR-10 layout (3×32×32) with random weights, written by diffusers itself
  // (tools/parity), imported by the CLI into the served site as a second model.
  const NAME = 'cifar10-layout-random';
  const COLOUR_RUN = `model=${NAME}&steps=10&batch=2&seed=5`;
  before(() => {
    const checkpoint = new URL('../../crates/emerge/tests/fixtures/diffusers/cifar10-layout', import.meta.url).pathname;
    execFileSync(CLI, ['import', checkpoint, '--out', join(SITE, 'models'), '--name', NAME, '--source', 'random weights (diffusers test fixture)']);
  });

  test('the model list shows each model and its size before downloading it', TIMEOUT, async () => {
    const { page, requests } = await open(env, 'index.html?autoplay=0');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    const options = await page.$$eval('#model option', (list) => list.map((o) => o.textContent));
    assert.ok(options.some((o) => /^mnist · 28×28 grey · [\d.]+ MB$/.test(o)), options.join(' | '));
    assert.ok(options.some((o) => new RegExp(`^${NAME} · 32×32 colour · [\\d.]+ MB$`).test(o)), options.join(' | '));
    assert.ok(!requests.some((url) => url.endsWith(`${NAME}.bpk`)), 'the colour model must not be downloaded unless chosen');
    await page.close();
  });

  test('draws colour images on the CPU fallback and on WebGPU alike', TIMEOUT, async () => {
    const frames = [];
    for (const backend of ['cpu', 'auto']) {
      const { page, errors } = await open(env, `index.html?${COLOUR_RUN}&backend=${backend}`);
      assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
      const frame = await lastFrame(page);
      // two 32×32 images side by side in 1-pixel frames
      assert.deepEqual([frame.width, frame.height], [2 * 32 + 3, 32 + 2]);
      const colourful = frame.sample.filter((_, i) => i % 4 === 0 && (frame.sample[i] !== frame.sample[i + 1] || frame.sample[i + 1] !== frame.sample[i + 2]));
      assert.ok(colourful.length > 0.5 * 2 * 32 * 32, `only ${colourful.length} coloured pixels`);
      assert.deepEqual(errors, []);
      if (backend === 'cpu') {
        // the forward-process view fits the real digit into the model's 3×32×32 input
        await page.waitForSelector('#digit-picker .digit');
        await page.waitForFunction(() => document.getElementById('forward').width === 34);
        await page.screenshot({ path: join(RESULTS, 'page-colour-model.png'), fullPage: true });
      }
      frames.push(frame);
      await page.close();
    }
    let maxDiff = 0;
    for (let i = 0; i < frames[0].sample.length; i++) maxDiff = Math.max(maxDiff, Math.abs(frames[0].sample[i] - frames[1].sample[i]));
    assert.ok(maxDiff <= 6, `WebGPU and the CPU fallback differ by up to ${maxDiff}/255`);
  });
});
