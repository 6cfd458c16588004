#!/usr/bin/env node
// The page trainer's digits: the first N training images of each class from MNIST's original IDX
// files (gzip or not) in a directory you name, written as gzip IDX (MNIST's own format, which the
// page's train-worker.js unpacks with the browser's DecompressionStream). `./build.sh` runs it
// when it finds MNIST (EMERGE_MNIST, default ../shared/data/mnist); the data set itself is never
// committed.
//
//   node tools/training-digits.mjs MNIST_DIR OUT_DIR [--per-class 600]
//
// Writes OUT_DIR/training-images.idx.gz and OUT_DIR/training-labels.idx.gz, classes interleaved
// (0, 1, …, 9, 0, 1, …) so that any prefix is balanced, and OUT_DIR/training-digits.json, which
// the page reads first (how many digits, which files, their bytes).
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';

const { values, positionals } = parseArgs({ options: { 'per-class': { type: 'string', default: '600' } }, allowPositionals: true });
const [mnist, out] = positionals;
const perClass = Number(values['per-class']);
if (!mnist || !out || positionals.length !== 2) fail('usage: training-digits.mjs MNIST_DIR OUT_DIR [--per-class N]');
if (!Number.isInteger(perClass) || perClass < 1) fail(`--per-class must be a whole number ≥ 1, got '${values['per-class']}'`);

function fail(message) {
  console.error(message);
  process.exit(2);
}

/** An IDX file of MNIST's training split, as `{ dims, body }`; `name` without `.gz`. */
function readIdx(name, magic) {
  const plain = join(mnist, name);
  const path = existsSync(plain) ? plain : `${plain}.gz`;
  if (!existsSync(path)) fail(`${plain}(.gz) is missing: is ${mnist} MNIST's directory?`);
  const raw = readFileSync(path);
  const bytes = path.endsWith('.gz') ? gunzipSync(raw) : raw;
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== magic) fail(`${path} is not an IDX file of magic 0x${magic.toString(16)}`);
  const dims = Array.from({ length: magic & 0xff }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const body = bytes.subarray(4 + 4 * dims.length);
  if (body.length !== dims.reduce((a, b) => a * b, 1)) fail(`${path} is truncated`);
  return { dims, body };
}

const split = { images: readIdx('train-images-idx3-ubyte', 0x803), labels: readIdx('train-labels-idx1-ubyte', 0x801) };
const [count, rows, cols] = split.images.dims;
if (split.labels.dims[0] !== count) fail(`the training split has ${count} images but ${split.labels.dims[0]} labels`);

// Each class's first `perClass` images, in the order the split lists them.
const byClass = Array.from({ length: 10 }, () => []);
for (let i = 0; i < count; i++) if (byClass[split.labels.body[i]]?.length < perClass) byClass[split.labels.body[i]].push(i);
const short = byClass.findIndex((list) => list.length < perClass);
if (short >= 0) fail(`the training split has only ${byClass[short].length} images of digit ${short}, fewer than ${perClass}`);
const chosen = Array.from({ length: perClass * 10 }, (_, k) => byClass[k % 10][Math.floor(k / 10)]);

const header = (magic, dims) => {
  const bytes = Buffer.alloc(4 * (dims.length + 1));
  bytes.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => bytes.writeUInt32BE(d, 4 * (i + 1)));
  return bytes;
};
const pixels = rows * cols;
const imageBody = Buffer.concat(chosen.map((i) => split.images.body.subarray(i * pixels, (i + 1) * pixels)));
const labelBody = Buffer.from(chosen.map((i) => split.labels.body[i]));

/** Writes `bytes` to OUT_DIR/name through a temporary file and a rename; returns their length. */
function write(name, bytes) {
  const path = join(out, name);
  writeFileSync(`${path}.tmp`, bytes);
  renameSync(`${path}.tmp`, path);
  return bytes.length;
}

/** Writes `bytes` gzip-compressed; returns the file's manifest entry. */
const writeGzip = (file, bytes) => ({ file, bytes: write(file, gzipSync(bytes, { level: 9 })) });

mkdirSync(out, { recursive: true });
const images = writeGzip('training-images.idx.gz', Buffer.concat([header(0x803, [chosen.length, rows, cols]), imageBody]));
const labels = writeGzip('training-labels.idx.gz', Buffer.concat([header(0x801, [chosen.length]), labelBody]));
const manifest = { source: `MNIST's training split, the first ${perClass} images of each digit`, count: chosen.length, rows, cols, images, labels };
write('training-digits.json', Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
console.log(`wrote ${chosen.length} training digits (${perClass} of each class, ${rows}×${cols}) to ${out}: ${images.bytes + labels.bytes} bytes gzip`);
