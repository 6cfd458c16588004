// The bundled real digits for the forward-process and learning views: a few MNIST test images in
// IDX format, and the row of buttons that picks one.

import { drawGrey } from './draw.js';

async function idx(url, magic) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url} is missing (HTTP ${response.status})`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const view = new DataView(bytes.buffer);
  if (bytes.length < 8 || view.getUint32(0) !== magic) throw new Error(`${url} is not an IDX file`);
  const dims = Array.from({ length: magic & 0xff }, (_, i) => view.getUint32(4 + 4 * i));
  return { dims, data: bytes.subarray(4 + 4 * dims.length) };
}

/** Loads { count, rows, cols, image(i), label(i) }. */
export async function loadDigits(base = 'data/') {
  const images = await idx(`${base}digits-images.idx`, 0x803);
  const labels = await idx(`${base}digits-labels.idx`, 0x801);
  const [count, rows, cols] = images.dims;
  return {
    count,
    rows,
    cols,
    image: (i) => images.data.subarray(i * rows * cols, (i + 1) * rows * cols),
    label: (i) => labels.data[i],
  };
}

/** A rows×cols grey image as the model's channels×size×size input: centred (padded with black or
 * cropped) and repeated over the channels. */
export function fitImage(pixels, rows, cols, channels, size) {
  const out = new Uint8Array(channels * size * size);
  const [dy, dx] = [Math.floor((size - rows) / 2), Math.floor((size - cols) / 2)];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const [sy, sx] = [y - dy, x - dx];
      const value = sy >= 0 && sy < rows && sx >= 0 && sx < cols ? pixels[sy * cols + sx] : 0;
      for (let c = 0; c < channels; c++) out[(c * size + y) * size + x] = value;
    }
  }
  return out;
}

/** A row of buttons, one per bundled digit; `onPick(i)` runs when one is chosen (the first is). */
export function digitPicker(container, digits, onPick) {
  container.replaceChildren();
  const buttons = [];
  for (let i = 0; i < digits.count; i++) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'digit';
    button.setAttribute('aria-label', `real digit ${digits.label(i)} (number ${i + 1})`);
    button.setAttribute('aria-pressed', String(i === 0));
    const canvas = document.createElement('canvas');
    drawGrey(canvas, digits.image(i), digits.rows, digits.cols);
    button.append(canvas);
    button.onclick = () => {
      buttons.forEach((b, j) => b.setAttribute('aria-pressed', String(j === i)));
      onPick(i);
    };
    buttons.push(button);
    container.append(button);
  }
  onPick(0);
}
