// Drawing the engine's RGBA grids onto canvases (scaled up by CSS, pixelated).

export function drawRgba(canvas, width, height, rgba) {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba.buffer ?? rgba), width, height), 0, 0);
}

/** Draws one greyscale u8 image (rows × cols) at `scale`. */
export function drawGrey(canvas, pixels, rows, cols) {
  const rgba = new Uint8ClampedArray(rows * cols * 4);
  for (let i = 0; i < rows * cols; i++) rgba.set([pixels[i], pixels[i], pixels[i], 255], i * 4);
  drawRgba(canvas, cols, rows, rgba);
}

/** Saves a canvas as a PNG download, upscaled so the file is useful. */
export function savePng(canvas, name, scale = 8) {
  const big = document.createElement('canvas');
  big.width = canvas.width * scale;
  big.height = canvas.height * scale;
  const ctx = big.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(canvas, 0, 0, big.width, big.height);
  big.toBlob((blob) => saveBlob(blob, name), 'image/png');
}

/** Offers `blob` as a download named `name`. */
export function saveBlob(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
