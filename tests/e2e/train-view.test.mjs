// The page's trainer in Chromium: nothing of it is downloaded until the reader opens it; Train
// gives the native CLI's losses step by step (same recipe, same digits) on the CPU and on WebGPU;
// samples are drawn as it trains; Pause and a hidden tab stop it, the tab's return resumes it; the
// model goes into the generation view and downloads as a file `emerge sample --model` reads;
// Reset starts over.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, RESULTS, SITE, lastFrame, open, startBrowser, waitForState, waitForViews } from './browser.mjs';
import { SIZE, digits, trainTiny } from './training-data.mjs';

const TOOL = new URL('../../tools/training-digits.mjs', import.meta.url).pathname;
const root = join(RESULTS, 'train-view');

/** The trainer's state as the page's debug hook has it. */
const trainer = (page) => page.evaluate(() => {
  const { state, step, losses, samples, exported, error } = window.emergeDebug.trainer;
  return { state, step, losses: [...losses], samples: samples.map((s) => ({ step: s.step, width: s.width, lit: s.sample.some((v, i) => i % 4 !== 3 && v > 0) })), exported, error };
});
const waitFor = (page, predicate, arg, timeout = 120_000) => page.waitForFunction(predicate, arg, { timeout, polling: 100 });

/** What a hidden tab (and its return) tells the page. */
const setHidden = (page, hidden) => page.evaluate((h) => {
  Object.defineProperty(document, 'hidden', { value: h, configurable: true });
  Object.defineProperty(document, 'visibilityState', { value: h ? 'hidden' : 'visible', configurable: true });
  document.dispatchEvent(new Event('visibilitychange'));
}, hidden);

test('the trainer: opened on demand, the CLI’s losses, samples, pause, hidden tab, use, download, reset', { timeout: 600_000 }, async () => {
  // A copy of the site whose trainer has `emerge train --preset tiny`'s recipe and its digits,
  // bundled by the same tool as real MNIST (4 of each class: all 40, in the same order).
  const data = digits(40);
  const native = trainTiny(join(root, 'native'), data, 8);
  const site = join(root, 'site');
  rmSync(site, { recursive: true, force: true });
  cpSync(SITE, site, { recursive: true });
  writeFileSync(join(site, 'data/trainer.json'), JSON.stringify(native.recipe));
  execFileSync('node', [TOOL, join(root, 'native/data'), join(site, 'data'), '--per-class', '4']);

  const env = await startBrowser({ site });
  try {
    const { page, requests, errors } = await open(env, 'index.html?autoplay=0&backend=cpu&steps=4&batch=2');
    await waitForState(page, ['ready']);
    await waitForViews(page);
    await waitFor(page, () => !document.querySelector('#train-open')?.hidden);
    const offer = await page.textContent('#train-open');
    assert.match(offer, /Open the trainer: .*(kB|MB) to download \(the trainer, and 40 MNIST digits\)/);
    assert.deepEqual(requests.filter((url) => /emerge_train|training-(images|labels)/.test(url)), [], 'the trainer is fetched only when opened');

    await page.click('#train-open');
    await waitFor(page, () => window.emergeDebug.trainer.samples.length === 1);
    let state = await trainer(page);
    assert.equal(state.samples[0].step, 0, 'the untrained network draws first');
    assert.equal(state.samples[0].width, 4 * SIZE + 5, 'ten 8×8 digits in a 4-wide grid with 1-pixel gaps');
    assert.match(await page.textContent('#train-about'), /-parameter network, 6 digits per step from 40 MNIST digits \(8×8\)/);

    // Train: the first steps' losses are the native CLI's.
    await page.click('#train-toggle');
    await waitFor(page, () => window.emergeDebug.trainer.step >= 40);
    state = await trainer(page);
    native.losses.forEach((loss, i) => {
      const relative = Math.abs(state.losses[i] - loss) / loss;
      assert.ok(relative < 1e-3, `step ${i + 1}: loss ${state.losses[i]} in the page, ${loss} natively`);
    });
    assert.ok(state.losses.every(Number.isFinite));
    assert.match(await page.textContent('#train-rate'), /^\d+\.\d\d$/);
    // A grid every five seconds of training.
    await waitFor(page, () => window.emergeDebug.trainer.samples.length >= 2, null, 60_000);
    state = await trainer(page);
    assert.ok(state.samples[1].step > 0 && state.samples[1].lit, 'a later grid, drawn');
    assert.equal(await page.locator('#train-strip figure').count(), state.samples.length);

    // Pause: no step after the pause is heard.
    await page.click('#train-toggle');
    await waitFor(page, () => window.emergeDebug.trainer.state === 'paused');
    const paused = (await trainer(page)).step;
    await page.waitForTimeout(1500);
    assert.equal((await trainer(page)).step, paused, 'no training while paused');

    // A hidden tab pauses, its return resumes.
    await page.click('#train-toggle');
    await waitFor(page, (step) => window.emergeDebug.trainer.step > step, paused);
    await setHidden(page, true);
    await waitFor(page, () => window.emergeDebug.trainer.state === 'paused');
    assert.match(await page.textContent('#train-state'), /paused while this tab is hidden/);
    const hidden = (await trainer(page)).step;
    await page.waitForTimeout(1500);
    assert.equal((await trainer(page)).step, hidden, 'no training while the tab is hidden');
    await setHidden(page, false);
    await waitFor(page, (step) => window.emergeDebug.trainer.step > step, hidden);
    await page.click('#train-toggle');
    await waitFor(page, () => window.emergeDebug.trainer.state === 'paused');

    // Download: a model file the native CLI samples from.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
    const file = join(root, 'downloaded.bpk');
    await download.saveAs(file);
    assert.match(download.suggestedFilename(), /^emerge-trained-step-\d+\.bpk$/);
    execFileSync(CLI, ['sample', '--model', file, '--count', '2', '--steps', '4', '--out', join(root, 'downloaded.png')]);

    // Use this model: it is the page's model now, and a run starts with it.
    const framesBefore = await page.evaluate(() => window.emergeDebug.frames);
    await page.click('#train-use');
    await waitFor(page, (n) => window.emergeDebug.frames > n && document.body.dataset.state === 'complete', framesBefore);
    assert.equal(await page.inputValue('#model'), 'yours');
    assert.match(await page.textContent('#model-name'), /^yours · 8×8 grey · .* f16 · trained in this page for \d+ steps$/);
    const frame = await lastFrame(page);
    assert.equal(frame.width, 2 * SIZE + 3, 'two 8×8 digits from the model trained here');
    // The shipped model comes back from the list, in place.
    await page.selectOption('#model', 'mnist');
    await waitFor(page, () => document.body.dataset.state === 'complete' && window.emergeDebug.lastFrame.width === 2 * 28 + 3);

    // Reset: fresh weights, the strip and the curve start over.
    await page.click('#train-reset');
    await waitFor(page, () => window.emergeDebug.trainer.step === 0 && window.emergeDebug.trainer.samples.length === 1);
    assert.equal(await page.locator('#train-strip figure').count(), 1);
    assert.equal(await page.textContent('#train-step'), '0');
    assert.deepEqual(errors, []);
    await page.close();

    // On WebGPU (SwiftShader here): the same first losses, within the device check's tolerance.
    const gpu = await open(env, 'index.html?autoplay=0&backend=webgpu');
    await waitForViews(gpu.page);
    await waitFor(gpu.page, () => !document.querySelector('#train-open')?.hidden);
    await gpu.page.click('#train-open');
    await waitFor(gpu.page, () => window.emergeDebug.trainer.samples.length === 1, null, 240_000);
    assert.equal(await gpu.page.evaluate(() => window.emergeDebug.trainer.backend), 'webgpu');
    assert.match(await gpu.page.textContent('#train-about'), /on your GPU \(WebGPU · /);
    await gpu.page.click('#train-toggle');
    await waitFor(gpu.page, (n) => window.emergeDebug.trainer.step >= n, native.losses.length, 240_000);
    await gpu.page.click('#train-toggle');
    const onGpu = (await trainer(gpu.page)).losses;
    native.losses.forEach((loss, i) => {
      const relative = Math.abs(onGpu[i] - loss) / loss;
      assert.ok(relative < 1e-3, `step ${i + 1}: loss ${onGpu[i]} on WebGPU in the page, ${loss} natively`);
    });
    assert.deepEqual(gpu.errors, []);
    await gpu.page.close();

    // A site built without MNIST's digits (./build.sh writes a manifest of none): the trainer says
    // so, and nothing fails to load.
    writeFileSync(join(site, 'data/training-digits.json'), '{ "count": 0 }\n');
    const bare = await open(env, 'index.html?autoplay=0&backend=cpu');
    await waitForViews(bare.page);
    await waitFor(bare.page, () => !document.querySelector('#train-missing')?.hidden);
    assert.match(await bare.page.textContent('#train-missing'), /built without MNIST’s training digits/);
    assert.ok(await bare.page.locator('#train-open').isHidden());
    assert.deepEqual(bare.errors, []);
  } finally {
    await env.close();
  }
});
