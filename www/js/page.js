// What index.html and embed.html share: the page's state on <body data-state>, the status line,
// the notes, the Play button, and the start-up: the URL's settings, then the model they name
// with its recommended request under the URL's own values.

import { loadManifest } from './client.js';
import { DEFAULTS, modelDefaults, parseSettings } from './settings.js';
import { chooseModel } from './stage.js';

export const $ = (id) => document.getElementById(id);

export const setState = (state) => (document.body.dataset.state = state);

export function status(text, kind = 'info') {
  const line = $('status-message');
  line.textContent = text;
  line.dataset.kind = kind;
}

export function showNotes(list) {
  $('notes').hidden = list.length === 0;
  $('notes').textContent = list.join(' ');
}

export function setPlaying(playing) {
  $('play').textContent = playing ? 'Pause' : 'Play';
  $('play').setAttribute('aria-pressed', String(playing));
  if (playing) setState('running');
}

/** The settings of this page's URL: `{ settings, given, notes }` (the URL's values over the
 * defaults, only the URL's values, a note for each one ignored). */
export function urlSettings() {
  const { given, notes } = parseSettings(location.search);
  return { settings: { ...DEFAULTS, ...given }, given, notes };
}

/** Reads the model list, chooses the model `settings.model` names (a note where it is missing)
 * and lays `given` over its recommended request in `settings`; returns `{ manifest, model,
 * defaults }`. */
export async function chooseModelFor({ settings, given, notes }) {
  const manifest = await loadManifest();
  const model = chooseModel(manifest, settings.model, notes);
  const defaults = modelDefaults(model);
  Object.assign(settings, defaults, given);
  return { manifest, model, defaults };
}
