// The explanation views as a visitor meets them: how the network learns, the training timeline,
// a drawing of their own cleaned, the schedule plots, scrubbing a run and its GIF, and each view
// embedded alone. On the CPU fallback: SwiftShader's WebGPU is too slow for whole timeline runs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, RESULTS, SITE, greyPng, lastFrame, looksLikeADigit, modelSchedule, open, startBrowser, tile, waitForState, waitForViews } from './browser.mjs';
import { idxImages, maxDifference } from '../grid.mjs';
import { OPENING_NOISE } from '../../www/js/settings.js';

const TIMEOUT = { timeout: 420_000 };
const manifest = JSON.parse(readFileSync(join(SITE, 'models/manifest.json'), 'utf8'));
// Where the views open without a t in the URL: the same noise level ᾱ_t whatever the schedule.
const schedule = modelSchedule(join(SITE, 'models/mnist.bpk'));
// The model whose training run shipped its timeline (the default one when it has it).
const TIMELINE_MODEL = [manifest.models.find((m) => m.name === manifest.default), ...manifest.models].find((m) => m?.checkpoints?.length);

let env;
before(async () => (env = await startBrowser()));
after(async () => env?.close());

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
const marker = (page, id) => page.getAttribute(`#${id}`, 'data-marker');

describe('the explanation views', () => {
  test('how it learns: the lesson of one digit, its losses over t, and the schedule marker', TIMEOUT, async () => {
    const { page, errors } = await open(env, 'index.html?autoplay=0&backend=cpu&seed=3');
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    await waitForViews(page);
    await page.waitForFunction(() => window.emergeDebug.lesson.curve && window.emergeDebug.lesson.frame);
    const { curve, frame } = await page.evaluate(() => window.emergeDebug.lesson);
    assert.equal(frame.timestep, schedule.timestepAt(OPENING_NOISE.views));
    assert.ok(Number.isFinite(frame.noise_loss) && frame.noise_loss > 0, `L_simple = ${frame.noise_loss}`);
    assert.equal(Number(await page.textContent('#learn-loss')).toPrecision(2), frame.noise_loss.toPrecision(2));
    // Over t, for this digit and this noise: the clean image implied by the guess gets worse as
    // the noise grows, while the noise itself gets easier to name (at t = T, x_t is almost ε).
    const half = Math.floor(curve.timesteps.length / 2);
    assert.ok(curve.noise_loss.every((v) => Number.isFinite(v) && v >= 0));
    assert.ok(mean(curve.image_error.slice(half)) > 3 * mean(curve.image_error.slice(0, half)), `x̂_0 error over t: ${curve.image_error}`);
    assert.ok(curve.image_error.at(-1) > curve.image_error[0]);
    assert.ok(mean(curve.noise_loss.slice(0, half)) > mean(curve.noise_loss.slice(half)), `L_simple over t: ${curve.noise_loss}`);

    // Dragging t redraws the lesson and moves the markers on both plots.
    await page.fill('#learn-slider', '900');
    await page.dispatchEvent('#learn-slider', 'input');
    await page.waitForFunction(() => document.getElementById('learn-t').textContent === '900');
    assert.equal(await marker(page, 'learn-schedule'), '900');
    assert.equal(await marker(page, 'learn-curve'), '900');
    const at900 = await page.evaluate(() => window.emergeDebug.lesson.frame);
    assert.ok(at900.image_error > frame.image_error);
    // New noise: a different ε, a different loss (waiting for the lesson of the new seed: page.fill
    // and the dispatched event each asked for a lesson at 900, and either may land last).
    await page.click('#learn-noise');
    await page.waitForFunction((seed) => window.emergeDebug.lesson.frame.seed !== seed, at900.seed);
    assert.notEqual((await page.evaluate(() => window.emergeDebug.lesson.frame)).noise_loss, at900.noise_loss);
    // A fast drag (30 positions at once): the markers follow at once, and the lessons do not queue
    // up behind it: the one running finishes, then one runs for where the slider ended.
    const before = await page.evaluate(() => window.emergeDebug.lesson.frames);
    await page.evaluate(() => {
      const slider = document.getElementById('learn-slider');
      for (let t = 100; t <= 680; t += 20) {
        slider.value = String(t);
        slider.dispatchEvent(new Event('input'));
      }
    });
    assert.equal(await marker(page, 'learn-curve'), '680');
    await page.waitForFunction(() => window.emergeDebug.lesson.frame.timestep === 680);
    await page.waitForTimeout(500);
    const dragged = await page.evaluate(() => window.emergeDebug.lesson);
    assert.equal(dragged.frame.timestep, 680, 'no stale lesson lands after the last one');
    assert.ok(dragged.frames - before <= 3, `${dragged.frames - before} lessons for one drag over 30 positions`);

    // The forward view's schedule marker follows its t too.
    await page.fill('#forward-slider', '999');
    await page.dispatchEvent('#forward-slider', 'input');
    assert.equal(await marker(page, 'forward-schedule'), '999');
    await page.screenshot({ path: join(RESULTS, 'view-learn.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('the lesson and its loss curve on WebGPU equal the CPU fallback\'s', TIMEOUT, async () => {
    const lessons = {};
    for (const backend of ['auto', 'cpu']) {
      const { page, errors } = await open(env, `index.html?autoplay=0&backend=${backend}&seed=3&t=600`);
      assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
      await waitForViews(page);
      await page.waitForFunction(() => window.emergeDebug.lesson.curve && window.emergeDebug.lesson.frame, null, { timeout: 300_000 });
      lessons[backend] = await page.evaluate(() => window.emergeDebug.lesson);
      assert.equal(await page.getAttribute('#device', 'data-backend'), backend === 'cpu' ? 'cpu' : 'webgpu');
      assert.deepEqual(errors, []);
      await page.close();
    }
    // As tests/dawn/harness.mjs: L_simple within 1e-4 + 1e-3 × the CPU's value, ‖x_0 − x̂_0‖² within
    // 1e-4 + 1e-2 × (dividing by √ᾱ_t magnifies ε̂'s rounding up to 160× at high t).
    const close = (a, b, relative = 1e-3) => Math.abs(a - b) <= 1e-4 + relative * Math.abs(b);
    const [gpu, cpu] = [lessons.auto, lessons.cpu];
    assert.ok(close(gpu.frame.noise_loss, cpu.frame.noise_loss), `L_simple ${gpu.frame.noise_loss} vs ${cpu.frame.noise_loss}`);
    assert.ok(close(gpu.frame.image_error, cpu.frame.image_error, 1e-2));
    cpu.curve.timesteps.forEach((t, i) => {
      assert.ok(close(gpu.curve.noise_loss[i], cpu.curve.noise_loss[i]), `t = ${t}: L_simple ${gpu.curve.noise_loss[i]} vs ${cpu.curve.noise_loss[i]}`);
      assert.ok(close(gpu.curve.image_error[i], cpu.curve.image_error[i], 1e-2), `t = ${t}: ${gpu.curve.image_error[i]} vs ${cpu.curve.image_error[i]}`);
    });
  });

  test('the training timeline: noise at step 0, digits at the end, each checkpoint downloaded when reached', TIMEOUT, async () => {
    assert.ok(TIMELINE_MODEL, 'a shipped model must list its training checkpoints');
    const { page, errors, requests } = await open(env, `index.html?autoplay=0&backend=cpu&model=${TIMELINE_MODEL.name}&seed=5`);
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    await waitForViews(page);
    const bytes = TIMELINE_MODEL.checkpoints.reduce((sum, c) => sum + c.bytes, 0);
    assert.match(await page.textContent('#timeline-load'), new RegExp(`${TIMELINE_MODEL.checkpoints.length} checkpoints, ${(bytes / 1e6).toFixed(1)} MB`));
    assert.ok(!requests.some((url) => url.includes('-timeline/')), 'checkpoints are downloaded only when asked');
    await page.click('#timeline-load');
    const drawn = async (position) => {
      const before = await page.evaluate(() => window.emergeDebug.timeline.drawn);
      if (position !== null) {
        await page.fill('#timeline-slider', String(position));
        await page.dispatchEvent('#timeline-slider', 'input');
      }
      await page.waitForFunction((n) => window.emergeDebug.timeline.drawn > n, before, { timeout: 300_000 });
      const { step, frame } = await page.evaluate(() => ({ ...window.emergeDebug.timeline, frame: { ...window.emergeDebug.timeline.frame, sample: Array.from(window.emergeDebug.timeline.frame.sample) } }));
      const digits = Array.from({ length: frame.batch }, (_, i) => tile(frame, i)).filter(looksLikeADigit).length;
      return { step, digits, batch: frame.batch };
    };
    const downloaded = () => requests.filter((url) => url.includes('-timeline/')).map((url) => url.split('/').pop());
    const first = await drawn(null);
    assert.equal(first.step, 0);
    assert.deepEqual(downloaded(), ['step-0000000.bpk']);
    assert.ok(first.digits <= 2, `the untrained network drew ${first.digits} digit-like images`);
    // The learning view follows the timeline: at step 0 the lesson uses the untrained network.
    await page.waitForFunction(() => window.emergeDebug.lesson.frame?.checkpoint === 0);
    const last = await drawn(TIMELINE_MODEL.checkpoints.length);
    assert.equal(last.step, TIMELINE_MODEL.training_steps);
    assert.equal(downloaded().length, 1, 'the last position is the model itself: nothing more to download');
    assert.ok(last.digits >= last.batch - 2, `only ${last.digits} of ${last.batch} final samples look like digits`);
    assert.match(await page.textContent('#timeline-step'), /this model/);
    await page.screenshot({ path: join(RESULTS, 'view-timeline.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('a sketch drawn with the pointer is cleaned into the same pixels as the CLI --from', TIMEOUT, async () => {
    assert.ok(CLI, 'EMERGE_CLI must point at the native emerge binary');
    const run = { seed: 11, steps: 20, batch: 2, digit: 7, t: 600 };
    const { page, errors } = await open(env, `index.html?autoplay=0&backend=cpu&sampler=ddim&eta=1&seed=${run.seed}&steps=${run.steps}&batch=${run.batch}&class=${run.digit}`);
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    await waitForViews(page);
    // A "7" in three pointer strokes' worth of moves: top bar, then the diagonal.
    await page.locator('#sketch-pad').scrollIntoViewIfNeeded();
    const box = await page.locator('#sketch-pad').boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    await page.mouse.move(...at(0.25, 0.25));
    await page.mouse.down();
    await page.mouse.move(...at(0.72, 0.25), { steps: 8 });
    await page.mouse.move(...at(0.45, 0.8), { steps: 8 });
    await page.mouse.up();
    assert.equal(Number(await page.inputValue('#sketch-t')), schedule.timestepAt(OPENING_NOISE.sketch));
    await page.fill('#sketch-t', String(run.t));
    await page.dispatchEvent('#sketch-t', 'input');
    await page.click('#sketch-clean');
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
    const sketch = await page.evaluate(() => window.emergeDebug.sketch);
    assert.equal(sketch.t, run.t);
    assert.ok(sketch.pixels.filter((v) => v > 128).length > 20, 'the strokes reached the pad');
    const frame = await lastFrame(page);
    assert.equal(frame.step, frame.total);
    assert.equal(await page.textContent('#sketch-step-t'), String(frame.timestep));

    const png = join(RESULTS, 'sketch.png');
    writeFileSync(png, await greyPng(sketch.pixels, 28));
    const out = join(RESULTS, 'sketch-cleaned.idx');
    execFileSync(CLI, [
      'sample', '--model', join(SITE, 'models/mnist.bpk'), '--from', png, '--t', String(run.t), '--seed', String(run.seed),
      '--sampler', 'ddim', '--steps', String(run.steps), '--eta', '1', '--class', String(run.digit), '--count', String(run.batch), '--out', out,
    ]);
    const native = idxImages(readFileSync(out));
    for (let i = 0; i < run.batch; i++) {
      const difference = maxDifference(tile({ ...frame, batch: run.batch }, i), native[i]);
      assert.ok(difference <= 6, `cleaned sketch ${i} differs from the CLI's by up to ${difference}/255`);
    }
    await page.screenshot({ path: join(RESULTS, 'view-draw.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('after a run: the schedule marker sits at its last t, the run can be scrubbed, and saved as a GIF', TIMEOUT, async () => {
    const { page, errors } = await open(env, 'index.html?backend=cpu&sampler=ddim&eta=1&seed=7&steps=10&batch=2&class=3');
    assert.equal(await waitForState(page, ['complete', 'error']), 'complete');
    await waitForViews(page);
    const frame = await lastFrame(page);
    assert.equal(await marker(page, 'stage-schedule'), String(frame.timestep));
    assert.equal(await page.isDisabled('#scrub'), false);
    await page.fill('#scrub', '0');
    await page.dispatchEvent('#scrub', 'input');
    assert.equal(await page.textContent('#scrub-out'), '1 of 10');
    assert.equal(await page.textContent('#t'), '900');
    assert.equal(await marker(page, 'stage-schedule'), '900');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-gif')]);
    const gif = readFileSync(await download.path());
    assert.equal(gif.subarray(0, 6).toString('latin1'), 'GIF89a');
    assert.equal(gif.readUInt16LE(6), 28, 'the GIF is one 28-pixel image wide');
    assert.equal((await page.evaluate(() => window.emergeDebug.gif)).frames, 10, 'every step of a short run is kept');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('at 360 px wide every view fits the screen', TIMEOUT, async () => {
    const { page, errors } = await open(env, 'index.html?autoplay=0&backend=cpu');
    await page.setViewportSize({ width: 360, height: 800 });
    assert.equal(await waitForState(page, ['ready', 'error']), 'ready');
    await waitForViews(page);
    await page.waitForFunction(() => window.emergeDebug.lesson.curve);
    const wider = await page.evaluate(() =>
      [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 361).map((e) => e.id || e.tagName),
    );
    assert.deepEqual(wider, []);
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 360);
    assert.deepEqual(errors, []);
    await page.close();
  });

  for (const [view, element] of [['forward', '#forward'], ['learn', '#learn-x0'], ['draw', '#sketch-pad']]) {
    test(`embed.html?view=${view} shows that view alone`, TIMEOUT, async () => {
      const { page, errors } = await open(env, `embed.html?view=${view}&backend=cpu&t=450&batch=2`);
      assert.equal(await waitForState(page, ['ready', 'error']), 'ready', await page.textContent('#status-message'));
      assert.equal(await page.isVisible(element), true);
      assert.equal(await page.isVisible('#samples'), false);
      assert.equal(await page.isVisible('#play'), false);
      if (view === 'forward') await page.waitForFunction(() => document.getElementById('forward-t').textContent === '450');
      if (view === 'learn') await page.waitForFunction(() => window.emergeDebug.lesson.frame?.timestep === 450);
      if (view === 'draw') {
        assert.equal(await page.inputValue('#sketch-t'), '450');
        // Without a pointer: the keyboard starts from a real digit and cleans it.
        await page.focus('#sketch-digit');
        await page.keyboard.press('Enter');
        await page.focus('#sketch-clean');
        await page.keyboard.press('Enter');
        assert.equal(await waitForState(page, ['complete', 'error']), 'complete', await page.textContent('#status-message'));
        const sketch = await page.evaluate(() => window.emergeDebug.sketch);
        assert.ok(sketch.pixels.filter((v) => v > 128).length > 40, 'the real digit became the sketch');
        assert.ok(looksLikeADigit(tile({ ...(await lastFrame(page)), batch: 2 }, 0)));
      }
      await page.screenshot({ path: join(RESULTS, `embed-${view}.png`) });
      assert.deepEqual(errors, []);
      await page.close();
    });
  }
});
