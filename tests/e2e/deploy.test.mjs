// The deploy step that publishes the paper's network (.github/workflows/pages.yml → 
// tools/import-paper-model.sh), run offline against a local stand-in for the Hugging Face Hub
// that serves diffusers checkpoints written by diffusers itself (tools/parity).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI } from './browser.mjs';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURES = join(ROOT, 'crates/emerge/tests/fixtures/diffusers');
const SCRIPT = join(ROOT, 'tools/import-paper-model.sh');
// Hub repository → fixture checkpoint directory
const REPOS = { 'google/ddpm-cifar10-32': 'cifar10-layout', 'someone/pickled-unet': 'tiny-conditional', 'someone/empty': 'nowhere' };

let hub;
let hubUrl;
before(async () => {
  hub = createServer((request, response) => {
    const match = request.url.match(/^\/([^/]+\/[^/]+)\/resolve\/main\/([\w.]+)$/);
    const file = match && REPOS[match[1]] && join(FIXTURES, REPOS[match[1]], match[2]);
    if (!file || !existsSync(file)) return response.writeHead(404).end('Entry not found');
    response.writeHead(200, { 'Content-Type': 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise((resolve) => hub.listen(0, '127.0.0.1', resolve));
  hubUrl = `http://127.0.0.1:${hub.address().port}`;
});
after(() => hub?.close());

/** A models directory like the built site's: the shipped manifest and nothing else. */
function siteModels() {
  const dir = mkdtempSync(join(tmpdir(), 'emerge-deploy-'));
  copyFileSync(join(ROOT, 'www/models/manifest.json'), join(dir, 'manifest.json'));
  return dir;
}

const run = (repo, models) =>
  promisify(execFile)('bash', [SCRIPT, repo, models], { env: { ...process.env, EMERGE: CLI, HF_BASE_URL: hubUrl } });

describe('the deploy step for the paper model', () => {
  test('downloads a safetensors checkpoint, converts it and lists it beside the MNIST model', async () => {
    const models = siteModels();
    const { stdout } = await run('google/ddpm-cifar10-32', models);
    assert.match(stdout, /downloaded diffusion_pytorch_model\.safetensors/);
    const manifest = JSON.parse(readFileSync(join(models, 'manifest.json'), 'utf8'));
    assert.equal(manifest.default, 'mnist');
    assert.deepEqual(manifest.models.map((m) => m.name), ['mnist', 'ddpm-cifar10-32']);
    const entry = manifest.models[1];
    assert.equal(entry.bytes, statSync(join(models, entry.file)).size, 'the size the page shows before downloading');
    assert.deepEqual([entry.channels, entry.image_size, entry.classes], [3, 32, []]);
    assert.match(entry.source, /google\/ddpm-cifar10-32/);
  });

  test('falls back to the PyTorch pickle when there is no safetensors file', async () => {
    const models = siteModels();
    const { stdout } = await run('someone/pickled-unet', models);
    assert.match(stdout, /downloaded diffusion_pytorch_model\.bin/);
    assert.match(stdout, /no scheduler_config\.json/);
    assert.ok(existsSync(join(models, 'pickled-unet.bpk')));
  });

  test('a repository without a checkpoint fails with a message and leaves the site alone', async () => {
    const models = siteModels();
    const before = readFileSync(join(models, 'manifest.json'), 'utf8');
    await assert.rejects(run('someone/empty', models), (error) => /could not download .*config\.json/.test(error.stderr));
    await assert.rejects(run('not a repo', models), (error) => /is not a Hub repository name/.test(error.stderr));
    assert.equal(readFileSync(join(models, 'manifest.json'), 'utf8'), before);
  });
});
