// What the trainer's tests share: synthetic digits, written as MNIST's IDX files, and the native
// CLI's training run on them (the reference each trainer is held to).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CLI } from './browser.mjs';

export const SIZE = 8; // the tiny preset's images

/** Digit d of `count`: a bright bar in row 2·(d mod 4), label d mod 10. */
export function digits(count) {
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  const images = new Uint8Array(count * SIZE * SIZE);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < SIZE * SIZE; p++) {
      if (Math.floor(p / SIZE) === 2 * (labels[i] % 4)) images[i * SIZE * SIZE + p] = 255;
    }
  }
  return { images, labels };
}

/** MNIST's training IDX files (gzip) for `data` in `dir`, as `emerge train --data` reads them. */
export function writeMnist(dir, { images, labels }) {
  mkdirSync(dir, { recursive: true });
  const header = (magic, dims) => {
    const bytes = Buffer.alloc(4 * (dims.length + 1));
    bytes.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => bytes.writeUInt32BE(d, 4 * (i + 1)));
    return bytes;
  };
  const count = labels.length;
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(Buffer.concat([header(0x803, [count, SIZE, SIZE]), images])));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(Buffer.concat([header(0x801, [count]), labels])));
}

/** `emerge train --preset tiny` on `data` (written to `root`/data) for `steps` steps: its recipe
 * (config.json) and its losses (log.csv). */
export function trainTiny(root, data, steps) {
  assert.ok(CLI, 'EMERGE_CLI must point at the native emerge binary');
  rmSync(root, { recursive: true, force: true });
  writeMnist(join(root, 'data'), data);
  const run = join(root, 'run');
  execFileSync(CLI, [
    'train', '--data', join(root, 'data'), '--preset', 'tiny', '--schedule', 'linear', '--out', run, '--steps', String(steps),
    '--batch-size', '6', '--warmup-steps', '2', '--seed', '5', '--sample-every', '0', '--quiet',
  ]);
  return {
    recipe: JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')),
    losses: readFileSync(join(run, 'log.csv'), 'utf8').trim().split('\n').slice(1).map((line) => Number(line.split(',')[1])),
  };
}
