// Watch it learn: the weights saved during the model's training run (listed in the manifest), a
// slider over training steps, and the same seed's samples drawn with each; each checkpoint is
// downloaded when the slider first reaches it. The learning view above follows the slider too.

import { formatBytes } from '../client.js';
import { drawRgba } from '../draw.js';
import { samplingRequest } from '../settings.js';
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
  load.textContent = `Show the training timeline: ${steps.length - 1} checkpoints, ${formatBytes(bytes)}, each downloaded when the slider reaches it`;
  // The engine's index of each position's checkpoint once downloaded (the last is the model).
  const indices = new Map([[steps.length - 1, null]]);
  const slider = $('timeline-slider');
  let busy = false;

  /** The checkpoint of `position`, downloaded on first use. */
  async function checkpointAt(position) {
    if (!indices.has(position)) {
      const step = steps[position];
      $('timeline-step').textContent = `${step.label} (downloading ${formatBytes(step.bytes)}…)`;
      indices.set(position, await ctx.client.request('checkpoint', { url: new URL(step.file, ctx.model.baseUrl).href, bytes: step.bytes }));
    }
    return indices.get(position);
  }

  async function draw(position) {
    const checkpoint = await checkpointAt(position);
    $('timeline-step').textContent = steps[position].label;
    $('timeline-seed').textContent = ctx.settings.seed;
    onCheckpoint(checkpoint);
    const sampling = samplingRequest({ ...ctx.settings, ...TIMELINE_RUN, batch: Math.min(TIMELINE_RUN.batch, ctx.limits.max_batch) }, ctx.limits);
    const frame = await ctx.client.request('sample', { sampling, checkpoint });
    drawRgba($('timeline-samples'), frame.width, frame.height, frame.sample);
    debug.step = steps[position].step;
    debug.frame = { width: frame.width, height: frame.height, sample: frame.sample, batch: sampling.images };
    debug.drawn += 1;
  }

  /** Draws where the slider is; positions it passed over while busy are neither downloaded nor drawn. */
  async function follow() {
    if (busy) return;
    busy = true;
    let drawn = null;
    try {
      while (drawn !== Number(slider.value)) {
        drawn = Number(slider.value);
        await draw(drawn);
      }
    } catch (error) {
      $('timeline-step').textContent = steps[Number(slider.value)].label;
      ctx.status(`The training timeline could not be drawn: ${error.message} (move the slider to try again)`, 'error');
    } finally {
      busy = false;
    }
  }

  load.onclick = () => {
    load.hidden = true;
    $('timeline-body').hidden = false;
    slider.max = steps.length - 1;
    slider.value = 0;
    slider.addEventListener('input', follow);
    follow();
  };
}
