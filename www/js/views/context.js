// What every view needs once the model is loaded: the worker, the model and its limits, the
// settings, the schedule's curves and the bundled real digits.

import { loadDigits } from '../digits.js';

/** Resolves to the views' shared context; `extra` adds the page's own hooks (startRun, …). */
export async function viewContext({ client, model, limits, settings, status }, extra = {}) {
  const [schedule, digits] = await Promise.all([client.request('schedule'), loadDigits()]);
  return { client, model, limits, settings, status, schedule, digits, ...extra };
}
