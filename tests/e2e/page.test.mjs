// The demo as a visitor meets it, in headless Chromium with WebGPU on SwiftShader (a CPU
// emulation: slow, so runs are short and batches small).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, RESULTS, SITE, foreignRequests, lastFrame, looksLikeADigit, modelSchedule, nativeSamples, open, startBrowser, tile, waitForState, waitForViews } from './browser.mjs';

const RUN = { sampler: 'ddim', eta: 1, seed: 7, steps: 10, count: 2, digit: 3, guidance: 2 };
const RUN_QUERY = `sampler=${RUN.sampler}&eta=${RUN.eta}&seed=${RUN.seed}&steps=${RUN.steps}&batch=${RUN.count}&class=${RUN.digit}&guidance=${RUN.guidance}`;
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
  if (backendShown === 'webgpu') {
    // WebGPU replays the step the run recorded on its first frame, and the device line says so.
    assert.equal(await page.getAttribute('#device', 'data-stepping'), 'recorded', await page.getAttribute('#device', 'title'));
    assert.match(await page.textContent('#device'), /step recorded once, replayed/);
  }

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
    assert.ok(looksLikeADigit(mine), `image ${i} looks like noise`);
    let maxDiff = 0;
    for (let p = 0; p < mine.length; p++) maxDiff = Math.max(maxDiff, Math.abs(mine[p] - native[i][p]));
    assert.ok(maxDiff <= 6, `image ${i} differs from the native CLI by up to ${maxDiff}/255`);
  }
  assert.deepEqual(foreignRequests(visit.requests, env.server.url), []);
  return visit;
}

/** A browser context in which the page's engine module `glue` (in pkg/) has `patch` appended:
 * how a test makes the engine or its GPU fail. */
async function patchedEngine(glue, patch) {
  const context = await env.browser.newContext();
  await context.route(`**/pkg/${glue}`, async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: (await response.text()) + patch });
  });
  return context;
}

/** A patch for the WebGPU engine's glue: the GPUDevice it asks for is destroyed as its `method`
 * is called for the `call`-th time. */
const destroyingDevice = (method, call) => `
  const realRequestDevice = GPUAdapter.prototype.requestDevice;
  let gpuDevice = null;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    gpuDevice = await realRequestDevice.apply(this, args);
    return gpuDevice;
  };
  const realMethod = Engine.prototype.${method};
  let calls = 0;
  Engine.prototype.${method} = function (...args) {
    calls += 1;
    if (calls === ${call}) gpuDevice.destroy();
    return realMethod.apply(this, args);
  };`;

/** A run of 6 steps of one digit on the engine patched by `patch` (which loses the GPU device):
 * it finishes on the CPU fallback, and the device line says why. Its context, last frame and
 * the number of frames drawn (a run restarted on the CPU draws its first steps twice). */
async function runAfterLosingTheDevice(patch) {
  const context = await patchedEngine('emerge_web.js', patch);
  const page = await context.newPage();
  await page.goto(new URL('index.html?steps=6&batch=1&backend=auto', env.server.url).href);
  assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
  assert.equal(await page.getAttribute('#device', 'data-backend'), 'cpu');
  assert.match(await page.textContent('#device-reason'), /^WebGPU failed \(.*destroyed.*\)\. Running on the CPU/i);
  const frame = await lastFrame(page);
  assert.equal(frame.step, 6);
  return { context, frame, drawn: await page.evaluate(() => window.emergeDebug.frames) };
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

  test('the forward process view noises a real digit, shows ᾱ_t and names the schedule', TIMEOUT, async () => {
    const { page } = await open(env, 'index.html?autoplay=0&backend=cpu');
    await waitForState(page, ['ready']);
    await waitForViews(page);
    await page.fill('#forward-slider', '999');
    await page.dispatchEvent('#forward-slider', 'input');
    await page.waitForFunction(() => document.getElementById('forward-t').textContent === '999');
    const shown = Number(await page.textContent('#alpha-bar'));
    const schedule = modelSchedule(join(SITE, 'models/mnist.bpk'));
    const expected = schedule.alphaBar(999);
    assert.ok(Math.abs(shown / expected - 1) < 1e-3, `ᾱ_999 shown as ${shown}, the model's schedule has ${expected}`);
    assert.match(await page.textContent('#schedule-name'), new RegExp(`${schedule.kind}.*T = 1000`, 's'));
    await page.close();
  });

  test("opens with the model's recommended sampler settings; the URL's own values win", TIMEOUT, async () => {
    const context = await env.browser.newContext();
    await context.route('**/models/manifest.json', async (route) => {
      const response = await route.fetch();
      const manifest = await response.json();
      const mnist = manifest.models.find((m) => m.name === 'mnist');
      mnist.recommended = { ...mnist.recommended, sampler: { kind: 'ddim', eta: 1 }, steps: 20, guidance: { scale: 1.5, interval: null } };
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

  test("the controls come from the engine's limits; values beyond them are fitted with a note", TIMEOUT, async () => {
    const { page, errors } = await open(env, 'index.html?autoplay=0&backend=cpu&guidance=8&batch=100');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    const control = (id, attribute) => page.getAttribute(`#${id}`, attribute);
    // w = 8 is within the engine's 0–10: kept (the slider used to stop at 6).
    assert.equal(await page.inputValue('#guidance'), '8');
    assert.equal(await control('guidance', 'max'), '10');
    // 100 images are more than the engine's 64: drawn as 64, and the page says so.
    assert.equal(await page.inputValue('#batch'), '64');
    assert.equal(await control('batch', 'max'), '64');
    assert.match(await page.textContent('#notes'), /At most 64 images at once/);
    // T comes from the loaded model: the DDPM choice and the forward view's t.
    await waitForViews(page);
    assert.match(await page.textContent('#ddpm-option'), /all 1000 steps/);
    assert.equal(await control('forward-slider', 'max'), '999');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('on the CPU fallback a run starts with 4 images unless the URL names a batch; on WebGPU with 16', TIMEOUT, async () => {
    const batchOf = async (query, selector = '#batch') => {
      const { page, errors } = await open(env, query);
      assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
      const result = { batch: selector && (await page.inputValue(selector)), notes: await page.textContent('#notes') };
      assert.deepEqual(errors, []);
      await page.close();
      return result;
    };
    const cpu = await batchOf('index.html?autoplay=0&backend=cpu');
    assert.equal(cpu.batch, '4');
    assert.match(cpu.notes, /On the CPU fallback a run starts with 4 images/);
    const asked = await batchOf('index.html?autoplay=0&backend=cpu&batch=9');
    assert.equal(asked.batch, '9');
    assert.doesNotMatch(asked.notes, /CPU fallback/);
    assert.equal((await batchOf('index.html?autoplay=0&backend=webgpu')).batch, '16');
  });

  test('guidance in an interval draws what the CLI draws with --guidance-interval', TIMEOUT, async () => {
    const run = { seed: 4, steps: 10, count: 2, digit: 1, guidance: 3, interval: '80-580' };
    const query = `seed=${run.seed}&steps=${run.steps}&batch=${run.count}&class=${run.digit}&guidance=${run.guidance}&interval=${run.interval}`;
    const { page, errors } = await open(env, `embed.html?${query}&backend=cpu`);
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
    const frame = await lastFrame(page);
    const native = nativeSamples(run);
    const everywhere = nativeSamples({ ...run, interval: 'all' });
    let maxDiff = 0;
    let fromEverywhere = 0;
    for (let i = 0; i < run.count; i++) {
      const mine = tile({ ...frame, batch: run.count }, i);
      for (let p = 0; p < mine.length; p++) {
        maxDiff = Math.max(maxDiff, Math.abs(mine[p] - native[i][p]));
        fromEverywhere = Math.max(fromEverywhere, Math.abs(mine[p] - everywhere[i][p]));
      }
    }
    assert.ok(maxDiff <= 6, `the page differs from the CLI by up to ${maxDiff}/255`);
    // Guidance w = 3 at every step draws other pixels (natively up to 38/255 apart): the page
    // must be nearer the banded CLI run than twice the tolerance allows of the unbanded one.
    assert.ok(fromEverywhere > 12, `the interval must change the images (max ${fromEverywhere}/255 from guidance at every step)`);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a step that fails while the run plays shows its error', TIMEOUT, async () => {
    // The engine the worker loads, with its third step made to fail.
    const context = await patchedEngine('emerge_cpu.js', `
      const realStep = Engine.prototype.step;
      let stepCalls = 0;
      Engine.prototype.step = function (count) {
        stepCalls += 1;
        return stepCalls === 3 ? Promise.reject(new Error('injected step failure')) : realStep.call(this, count);
      };`);
    const page = await context.newPage();
    await page.goto(new URL('index.html?steps=10&batch=1&backend=cpu', env.server.url).href);
    assert.equal(await waitForState(page, ['complete', 'error'], 60_000), 'error');
    assert.match(await page.textContent('#status-message'), /injected step failure/);
    await context.close();
  });

  test('a GPU device lost mid-run: the CPU fallback finishes the run and the device line says why', TIMEOUT, async () => {
    // The WebGPU engine, with the GPUDevice it asks for destroyed before its third step.
    const { context, frame, drawn } = await runAfterLosingTheDevice(destroyingDevice('step', 3));
    assert.equal(drawn, 2 + 6, 'two steps on WebGPU, then the whole run again on the CPU');
    assert.ok(looksLikeADigit(tile({ ...frame, batch: 1 }, 0)), 'the finished image looks like noise');
    await context.close();
  });

  test('a GPU device lost while the kernels are built at load: the CPU runs instead and says why', TIMEOUT, async () => {
    const { context, drawn } = await runAfterLosingTheDevice(destroyingDevice('prepare', 1));
    assert.equal(drawn, 6, 'the whole run on the CPU, none of it on the lost device');
    await context.close();
  });

  test('on the CPU a run shared by two workers draws the pixels one worker draws', TIMEOUT, async () => {
    const query = 'sampler=sde_dpmpp_2m&seed=5&steps=6&batch=5&class=any&guidance=1.5&backend=cpu&perDraw=2';
    const run = async (workers) => {
      const { page, errors } = await open(env, `index.html?${query}&workers=${workers}`);
      assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
      const shown = await page.textContent('#device');
      const frame = await lastFrame(page);
      assert.deepEqual(errors, []);
      await page.close();
      return { shown, frame };
    };
    const [one, two] = [await run(1), await run(2)];
    assert.match(one.shown, /one worker/);
    assert.match(two.shown, /2 workers/);
    assert.equal(two.frame.sample.length, one.frame.sample.length);
    const differing = (key) => one.frame[key].filter((v, i) => v !== two.frame[key][i]).length;
    assert.equal(differing('sample'), 0, 'x_0 must not depend on the split');
    assert.equal(differing('prediction'), 0, 'x̂_0 must not depend on the split');
  });

  test('an image is the same at batch 1 and 7, as the CLI draws it (η = 1, per-image noise)', TIMEOUT, async () => {
    const run = { sampler: 'ddim', eta: 1, seed: 11, steps: 5, digit: 4, guidance: 1.25, interval: 'all' };
    const query = `sampler=ddim&eta=1&seed=${run.seed}&steps=${run.steps}&class=${run.digit}&guidance=${run.guidance}&backend=cpu`;
    const images = async (batch) => {
      const { page } = await open(env, `index.html?${query}&batch=${batch}`);
      assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
      const frame = await lastFrame(page);
      await page.close();
      return Array.from({ length: batch }, (_, i) => tile({ ...frame, batch }, i));
    };
    const [seven, one] = [await images(7), await images(1)];
    const native = nativeSamples({ ...run, count: 7 });
    const largest = (a, b) => Math.max(...a.map((v, p) => Math.abs(v - b[p])));
    assert.ok(largest(seven[0], one[0]) <= 1, `image 0 at batch 7 and alone differ by ${largest(seven[0], one[0])}/255`);
    for (let i = 0; i < 7; i++) assert.ok(largest(seven[i], native[i]) <= 6, `image ${i} differs from the CLI's`);
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
  test('honours its parameters and notes invalid ones; with autoplay=0 it downloads nothing heavy before Play', TIMEOUT, async () => {
    const { page, requests, errors } = await open(env, 'embed.html?steps=10&seed=3&class=5&autoplay=0&sampler=euler&backend=cpu');
    assert.equal(await waitForState(page, ['waiting', 'error']), 'waiting');
    assert.match(await page.textContent('#notes'), /sampler="euler"/);
    // The button says what Play downloads: the CPU engine and the weights, gzip as served.
    const modules = JSON.parse(readFileSync(join(SITE, 'pkg/modules.json'), 'utf8'));
    const manifest = JSON.parse(readFileSync(join(SITE, 'models/manifest.json'), 'utf8'));
    const expected = (modules.emerge_cpu.gzip_bytes + manifest.models[0].bytes) / 1e6;
    await page.waitForFunction(() => /MB/.test(document.getElementById('play').textContent));
    assert.equal(await page.textContent('#play'), `Play (${expected.toFixed(1)} MB)`);
    await new Promise((r) => setTimeout(r, 1500));
    const heavy = () => requests.filter((url) => /\.(wasm|bpk)$/.test(url));
    assert.deepEqual(heavy(), [], 'nothing heavy before Play');
    assert.equal(await page.evaluate(() => window.emergeDebug.frames), 0, 'autoplay=0 must not start a run');
    await page.click('#play');
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete');
    assert.deepEqual(heavy().map((url) => url.split('/').pop()).sort(), ['emerge_cpu_bg.wasm', 'mnist.bpk']);
    assert.match(await page.textContent('#notes'), /starts with 4 images/, 'the CPU note comes with the engine');
    const frame = await lastFrame(page);
    assert.equal(frame.total, 10);
    // Four 28×28 images, two a row, with 1-pixel gaps.
    assert.equal(frame.width, 2 * 28 + 3);
    assert.deepEqual(errors, []);
    await page.close();
  });
});

describe('models converted from diffusers checkpoints', () => {
  // The DDPM CIFAR-10 layout (3×32×32) with random weights, written by diffusers itself
  // (tools/parity), imported by the CLI into a temporary copy of the site (the built site stays
  // as built), once as it is and once with a 500-step schedule.
  const NAME = 'cifar10-layout-random';
  const T500 = 'cifar10-layout-t500';
  const COLOUR_RUN = `model=${NAME}&steps=10&batch=2&seed=5`;
  let copy;
  let site;
  before(async () => {
    site = mkdtempSync(join(tmpdir(), 'emerge-site-'));
    cpSync(SITE, site, { recursive: true });
    const fixture = new URL('../../crates/emerge/tests/fixtures/diffusers/cifar10-layout', import.meta.url).pathname;
    const models = join(site, 'models');
    execFileSync(CLI, ['import', fixture, '--out', models, '--name', NAME, '--source', 'random weights (diffusers test fixture)']);
    const short = join(site, 'checkpoint-t500');
    cpSync(fixture, short, { recursive: true });
    const scheduler = JSON.parse(readFileSync(join(short, 'scheduler_config.json'), 'utf8'));
    writeFileSync(join(short, 'scheduler_config.json'), JSON.stringify({ ...scheduler, num_train_timesteps: 500 }));
    execFileSync(CLI, ['import', short, '--out', models, '--name', T500, '--source', 'random weights, T = 500']);
    copy = await startBrowser({ site });
  });
  after(async () => {
    await copy?.close();
    rmSync(site, { recursive: true, force: true });
  });

  test('the model list shows each model and its size before downloading it', TIMEOUT, async () => {
    const { page, requests } = await open(copy, 'index.html?autoplay=0');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    const options = await page.$$eval('#model option', (list) => list.map((o) => o.textContent));
    assert.ok(options.some((o) => /^mnist · 28×28 grey · [\d.]+ MB (int8|q4)$/.test(o)), options.join(' | '));
    assert.ok(options.some((o) => new RegExp(`^${NAME} · 32×32 colour · [\\d.]+ MB f16$`).test(o)), options.join(' | '));
    assert.ok(!requests.some((url) => url.endsWith(`${NAME}.bpk`)), 'the colour model must not be downloaded unless chosen');
    await page.close();
  });

  test('draws colour images on the CPU fallback and on WebGPU alike', TIMEOUT, async () => {
    const frames = [];
    for (const backend of ['cpu', 'auto']) {
      const { page, errors } = await open(copy, `index.html?${COLOUR_RUN}&backend=${backend}`);
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

  test('a model trained with T = 500 runs all its 500 DDPM steps, and its t stops at 499', TIMEOUT, async () => {
    const { page, errors } = await open(copy, `index.html?model=${T500}&sampler=ddpm&batch=1&seed=2&backend=cpu`);
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
    const frame = await lastFrame(page);
    assert.equal(frame.total, 500);
    assert.equal(frame.step, 500);
    assert.match(await page.textContent('#ddpm-option'), /all 500 steps/);
    await waitForViews(page);
    assert.equal(await page.getAttribute('#forward-slider', 'max'), '499');
    assert.equal(await page.textContent('#steps-out'), '500');
    assert.deepEqual(errors, []);
    await page.close();
  });
});
