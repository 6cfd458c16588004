// The page's image grids (what the engine's frames hold): square-ish tiles, 1-pixel gaps, RGBA.

/** Image `index` of an RGBA grid frame ({sample, width, batch}) as grey u8 values. */
export function tile(frame, index, size = 28) {
  const columns = Math.ceil(Math.sqrt(frame.batch ?? 1));
  const [row, col] = [Math.floor(index / columns), index % columns];
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      out[y * size + x] = frame.sample[((1 + row * (size + 1) + y) * frame.width + 1 + col * (size + 1) + x) * 4];
    }
  }
  return out;
}

/** The u8 images of an MNIST IDX3 file's bytes. */
export function idxImages(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [count, rows, cols] = [view.getUint32(4), view.getUint32(8), view.getUint32(12)];
  const size = rows * cols;
  return Array.from({ length: count }, (_, i) => bytes.subarray(16 + i * size, 16 + (i + 1) * size));
}

/** Largest per-pixel |a − b| of two equally long u8 images. */
export function maxDifference(a, b) {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let p = 0; p < a.length; p++) max = Math.max(max, Math.abs(a[p] - b[p]));
  return max;
}
