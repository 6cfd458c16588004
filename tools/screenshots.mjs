// The README's pictures of each view (not a test): the built site in headless Chromium on the CPU
// fallback, each view driven the way a visitor would, one PNG per view.
//   node tools/screenshots.mjs OUT_DIR      (after ./build.sh site)
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, startBrowser, waitForState } from '../tests/e2e/browser.mjs';

const out = process.argv[2] ?? 'screenshots';
mkdirSync(out, { recursive: true });
const env = await startBrowser({ webgpu: false });
const shoot = async (name, path, act) => {
  const { page, errors } = await open(env, path);
  await page.setViewportSize({ width: 1000, height: 800 });
  await act(page);
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
  if (errors.length) throw new Error(`${name}: ${errors.join('; ')}`);
  console.log(`wrote ${join(out, `${name}.png`)}`);
  await page.close();
};
try {
  await shoot('forward', 'embed.html?view=forward&backend=cpu&t=640', async (page) => {
    await waitForState(page, ['ready']);
    await page.waitForFunction(() => document.getElementById('forward-t').textContent === '640');
  });
  await shoot('learn', 'embed.html?view=learn&backend=cpu&t=700&seed=3', async (page) => {
    await waitForState(page, ['ready']);
    await page.waitForFunction(() => window.emergeDebug.lesson?.curve && window.emergeDebug.lesson.frame);
    await page.click('#timeline-load');
    await page.waitForFunction(() => window.emergeDebug.timeline.drawn > 0, null, { timeout: 300_000 });
    const last = await page.getAttribute('#timeline-slider', 'max');
    await page.fill('#timeline-slider', String(Math.max(Number(last) - 2, 0)));
    await page.dispatchEvent('#timeline-slider', 'input');
    await page.waitForFunction(() => window.emergeDebug.timeline.drawn > 1, null, { timeout: 300_000 });
  });
  await shoot('generate', 'index.html?backend=cpu&batch=16&seed=2', async (page) => {
    await waitForState(page, ['complete'], 600_000);
  });
  await shoot('draw', 'embed.html?view=draw&backend=cpu&class=4&batch=4&seed=9', async (page) => {
    await waitForState(page, ['ready']);
    const box = await page.locator('#sketch-pad').boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    for (const stroke of [[[0.3, 0.2], [0.28, 0.55], [0.72, 0.55]], [[0.62, 0.22], [0.6, 0.85]]]) {
      await page.mouse.move(...at(...stroke[0]));
      await page.mouse.down();
      for (const point of stroke.slice(1)) await page.mouse.move(...at(...point), { steps: 10 });
      await page.mouse.up();
    }
    await page.click('#sketch-clean');
    await waitForState(page, ['complete'], 600_000);
  });
} finally {
  await env.close();
}
