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

/** A grey 8-bit PNG of `size` × `size` u8 pixels (what `emerge sample --from` reads). */
export async function greyPng(pixels, size) {
  const { crc32, deflateSync } = await import('node:zlib');
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 0, 0, 0, 0], 8); // 8 bits, grey, deflate, no filter method, no interlace
  const rows = Buffer.alloc(size * (size + 1));
  for (let y = 0; y < size; y++) Buffer.from(pixels.slice(y * size, (y + 1) * size)).copy(rows, y * (size + 1) + 1);
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

/** Whether a u8 image looks like a handwritten digit: mostly dark, with some bright strokes. */
export function looksLikeADigit(image) {
  const dark = image.filter((v) => v < 40).length / image.length;
  const bright = image.filter((v) => v > 200).length / image.length;
  return dark > 0.6 && bright > 0.03 && bright < 0.35;
}
