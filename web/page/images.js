// Model inputs (floats in [-1, 1], one gray channel, row-major) to and from pixels, as the native
// runtime does it: v -> (v - 127.5) / 127.5 and back, rounded and clamped.

// Each gray level as one RGBA pixel word, in this platform's byte order.
const kGrayPixels = (() => {
  const bytes = new Uint8Array(4 * 256);
  for (let g = 0; g < 256; ++g) bytes.set([g, g, g, 255], 4 * g);
  return new Uint32Array(bytes.buffer);
})();

// Draws one image (width x height floats) into a canvas of exactly that size: gray level
// Math.round(v * 127.5 + 127.5) clamped to [0, 255], NaN 0. The live grid draws 16 of these per
// frame, so one pixel word per pixel into an ImageData kept with the canvas, and the rounding as
// a floor (v * 127.5 + 128 is exact in doubles, so its floor is that Math.round).
export function drawImage(canvas, floats, width, height) {
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext('2d');
  let img = canvas.ebmImage;
  if (!img || img.width !== width || img.height !== height) img = canvas.ebmImage = ctx.createImageData(width, height);
  const px = new Uint32Array(img.data.buffer);
  for (let i = 0, n = width * height; i < n; ++i) {
    const v = floats[i] * 127.5 + 128;
    px[i] = kGrayPixels[v <= 0 ? 0 : v >= 255 ? 255 : v | 0];
  }
  ctx.putImageData(img, 0, 0);
}

// Tiles images into one canvas like ebm-sample's grid: `pad` pixels between and around them.
export function gridCanvas(images, width, height, cols, pad = 2, background = 96) {
  const n = images.length;
  cols = Math.max(1, Math.min(cols, n));
  const rows = Math.ceil(n / cols);
  const canvas = document.createElement('canvas');
  canvas.width = pad + cols * (width + pad);
  canvas.height = pad + rows * (height + pad);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = `rgb(${background},${background},${background})`;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const tile = document.createElement('canvas');
  images.forEach((floats, i) => {
    if (!floats) return;
    drawImage(tile, floats, width, height);
    ctx.drawImage(tile, pad + (i % cols) * (width + pad), pad + Math.floor(i / cols) * (height + pad));
  });
  return canvas;
}

// An image file (anything the browser decodes) as model input: resized to width x height,
// alpha composited over white, luma 0.299 R + 0.587 G + 0.114 B.
export async function fileToInput(file, width, height) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, 0, 0, width, height);
  const px = ctx.getImageData(0, 0, width, height).data;
  const out = new Float32Array(width * height);
  for (let i = 0; i < out.length; ++i) {
    const luma = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
    out[i] = (luma - 127.5) / 127.5;
  }
  return out;
}

export function downloadCanvas(canvas, filename) {
  canvas.toBlob((blob) => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, 'image/png');
}
