// Watch it learn: the weights saved during the model's training run (listed in the manifest,
// downloaded only when asked), a slider over training steps, and the same seed's samples drawn
// with each. The learning view above follows the slider too.

import { formatBytes } from '../client.js';
import { drawRgba } from '../draw.js';
import { engineOptions } from '../settings.js';
import { render } from './context.js';

/** The timeline's sampler: quick, and the same for every checkpoint. */
const TIMELINE_RUN = { sampler: 'ddim', steps: 20, eta: 1, batch: 10, class: 'any' };

/** The run's checkpoints, then the model itself (its last step). */
function stepsOf(model) {
  const steps = (model.checkpoints ?? []).map((c) => ({ ...c, label: c.step.toLocaleString('en') }));
  if (steps.length) steps.push({ step: model.training_steps, label: `${model.training_steps?.toLocaleString('en') ?? 'the last'} (this model)` });
  return steps;
}

/** Mounts the timeline into `root`; `onCheckpoint(index | null)` is told which weights to use. */
export function mountTimeline(root, ctx, onCheckpoint) {
  const steps = stepsOf(ctx.model);
  const bytes = steps.reduce((sum, c) => sum + (c.bytes ?? 0), 0);
  const $ = render(root, `
    <h3>Watch it learn</h3>
    <p>The same lesson, and the same seed's samples, with the weights saved while this model was trained:
      noise at step 0, then blobs, then digits.</p>
    <p id="timeline-none" hidden>This model's training run kept no checkpoints.</p>
    <button id="timeline-load" type="button" hidden></button>
    <div id="timeline-body" hidden>
      <label>Training step: <output id="timeline-step"></output>
        <input id="timeline-slider" type="range" min="0" step="1" aria-describedby="timeline-step">
      </label>
      <figure><canvas id="timeline-samples" width="1" height="1" role="img" aria-label="Samples drawn with the weights of this training step"></canvas>
        <figcaption>seed <output id="timeline-seed"></output>, DDIM ${TIMELINE_RUN.steps} steps${ctx.limits.classes ? ', one of each class in turn' : ''}</figcaption></figure>
    </div>`);
  const debug = (window.emergeDebug.timeline = { step: null, frame: null, drawn: 0 });
  if (!steps.length) {
    $('timeline-none').hidden = false;
    return;
  }
  const load = $('timeline-load');
  load.hidden = false;
  load.textContent = `Load the training timeline: ${steps.length - 1} checkpoints, ${formatBytes(bytes)}`;
  const indices = [];

  async function show(position) {
    const step = steps[position];
    const checkpoint = position < indices.length ? indices[position] : null;
    $('timeline-step').textContent = step.label;
    $('timeline-seed').textContent = ctx.settings.seed;
    onCheckpoint(checkpoint);
    try {
      const options = engineOptions({ ...ctx.settings, ...TIMELINE_RUN, batch: Math.min(TIMELINE_RUN.batch, ctx.limits.max_batch) }, ctx.limits);
      const frame = await ctx.client.request('sample', { options, checkpoint });
      drawRgba($('timeline-samples'), frame.width, frame.height, frame.sample);
      debug.step = step.step;
      debug.frame = { width: frame.width, height: frame.height, sample: frame.sample, batch: options.batch };
      debug.drawn += 1;
    } catch (error) {
      ctx.status(error.message, 'error');
    }
  }

  load.onclick = async () => {
    load.disabled = true;
    indices.length = 0;
    try {
      for (const [i, step] of steps.slice(0, -1).entries()) {
        load.textContent = `Loading checkpoint ${i + 1} of ${steps.length - 1}…`;
        indices.push(await ctx.client.request('checkpoint', { url: new URL(step.file, ctx.model.baseUrl).href, bytes: step.bytes }));
      }
    } catch (error) {
      ctx.status(`The training timeline could not be loaded: ${error.message}`, 'error');
      load.disabled = false;
      load.textContent = 'Retry loading the training timeline';
      return;
    }
    load.hidden = true;
    $('timeline-body').hidden = false;
    const slider = $('timeline-slider');
    slider.max = steps.length - 1;
    slider.value = 0;
    slider.addEventListener('input', () => show(Number(slider.value)));
    show(0);
  };
}
