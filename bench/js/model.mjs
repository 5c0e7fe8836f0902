// The model file as every JavaScript peer reads it: a tiny safetensors reader (8-byte little-endian
// header length, JSON header, raw little-endian F32/F16 tensors) and the `ebm.layers` list with
// batch norm folded into the preceding convolution or dense layer, as the runtime folds it
// (runtime/src/model.cpp, fold_normalization), in double precision. Runs in node and in browsers.

// F16 bits -> number (subnormals, infinities and NaN included).
function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

// bytes: Uint8Array of a whole file -> {metadata, tensors: Map(name -> {shape, data: Float32Array})}.
export function readSafetensors(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 8) throw new Error('safetensors: shorter than its 8-byte header length');
  const headerLength = Number(view.getBigUint64(0, true));
  if (8 + headerLength > bytes.byteLength) throw new Error('safetensors: header runs past the end');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const base = 8 + headerLength;
  const tensors = new Map();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = t.data_offsets;
    const count = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(count);
    if (t.dtype === 'F32') {
      if (end - begin !== 4 * count) throw new Error(`safetensors: ${name} has the wrong size`);
      for (let i = 0; i < count; ++i) data[i] = view.getFloat32(base + begin + 4 * i, true);
    } else if (t.dtype === 'F16') {
      if (end - begin !== 2 * count) throw new Error(`safetensors: ${name} has the wrong size`);
      for (let i = 0; i < count; ++i) data[i] = halfToFloat(view.getUint16(base + begin + 2 * i, true));
    } else {
      throw new Error(`safetensors: ${name} has dtype ${t.dtype}; the bench reads F32 and F16`);
    }
    tensors.set(name, { shape: t.shape, data });
  }
  return { metadata: header.__metadata__ ?? {}, tensors };
}

// Per-channel scale and shift of a batchnorm or affine layer.
function scaleShift(layer, tensor) {
  const c = layer.channels;
  const s = new Float64Array(c);
  const t = new Float64Array(c);
  if (layer.type === 'affine') {
    const scale = tensor(layer.tensors.scale);
    const shift = tensor(layer.tensors.shift);
    for (let i = 0; i < c; ++i) { s[i] = scale[i]; t[i] = shift[i]; }
  } else {
    const w = tensor(layer.tensors.weight);
    const b = tensor(layer.tensors.bias);
    const mean = tensor(layer.tensors.running_mean);
    const v = tensor(layer.tensors.running_var);
    for (let i = 0; i < c; ++i) {
      s[i] = w[i] / Math.sqrt(v[i] + Math.fround(layer.eps));
      t[i] = b[i] - mean[i] * s[i];
    }
  }
  return { s, t };
}

// A model file -> {input: {c, h, w}, kind, layers, energy}, each layer one of
//   {type: 'conv2d', in: [c,h,w], out: [c,h,w], kernel: [kh,kw], stride: [sh,sw],
//    pad: [top,left,bottom,right], weight: Float32Array OIHW, bias: Float32Array}
//   {type: 'dense', in: n, out: m, weight: Float32Array [out, in], bias}
//   {type: 'swish'} | {type: 'leaky_relu', slope} | {type: 'flatten', in: [c,h,w]}
//   {type: 'space_to_depth' | 'depth_to_space' | 'upsample', factor, in: [c,h,w]}
//   {type: 'add', skip: index of the layer whose output is added} (a gated add, "sigma_max", only
//    where sigma is at most its level: there it adds)
// every layer with `from`: the index of the layer it reads (-1: the network's input), and shapes
// tracked through the graph. A format-2 denoiser (SPEC 1b, runtime/include/ebm/architecture.h)
// has energy = {sigma, sigmaData, noisePlane, mean: Float32Array [c*h*w]}: the peers compute
//   E(x, sigma) = |u - sigmaData F(v)|^2 / (2 sigma^2),  u = x - mean,
//   v = [u / sqrt(sigma^2 + sigmaData^2), the plane log(sigma) / 4 when noisePlane]
// at the one noise level `sigma` (bench_peers --sigma, the same default); otherwise energy is null
// and the layers output E(x). Other layer types and forms are refused with a message.
export function loadEbmModel(bytes, { sigma = 0.5 } = {}) {
  const { metadata, tensors } = readSafetensors(bytes);
  // Format 3 is a denoiser that carries a weaker one for autoguidance (tensors "autoguide.*"):
  // the peers compute the model's own energy, as the runtime's energy calls do.
  const format = metadata['ebm.format'];
  if (format !== '1' && format !== '2' && format !== '3')
    throw new Error(`not an ebm model file (ebm.format is ${JSON.stringify(format)}, not "1", "2" or "3")`);
  const kind = metadata['ebm.kind'];
  if (kind !== 'energy') throw new Error(`the bench needs an energy model; this is "${kind}"`);
  const inp = JSON.parse(metadata['ebm.input']);
  const spec = JSON.parse(metadata['ebm.layers']);
  const form = metadata['ebm.energy'] ? JSON.parse(metadata['ebm.energy']) : { form: 'scalar' };
  const tensor = (name) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`tensor ${name} is missing`);
    return t.data;
  };
  const image = [inp.channels, inp.height, inp.width];
  let energy = null;
  if (form.form === 'denoiser') {
    if (!(sigma > 0)) throw new Error(`a denoiser energy needs a noise level > 0, not ${sigma}`);
    energy = { sigma, sigmaData: form.sigma_data, noisePlane: form.noise_plane !== false,
               mean: Float32Array.from(tensor('energy.mean')) };
  } else if (form.form !== 'scalar' || form.noise_plane) {
    throw new Error(`the bench peers compute scalar energies and denoiser energies, not ${JSON.stringify(form)}`);
  }
  const ids = new Map([['input', -1]]);  // "id" -> index in `layers`
  const shapes = [];                     // output shape of each layer in `layers`
  const shapeOf = (index) => (index < 0 ? [image[0] + (energy?.noisePlane ? 1 : 0), ...image.slice(1)] : shapes[index]);
  const indexOf = (name, i) => {
    if (!ids.has(name)) throw new Error(`layer ${i}: refers to "${name}", which no earlier layer is`);
    return ids.get(name);
  };
  const layers = [];
  for (let i = 0; i < spec.length; ++i) {
    const l = spec[i];
    const next = spec[i + 1];
    const from = l.from !== undefined ? indexOf(l.from, i) : layers.length - 1;
    const shape = shapeOf(from);
    const foldNext = next && (next.type === 'batchnorm' || next.type === 'affine') && next.from === undefined;
    let layer;
    let out = shape;
    if (l.type === 'conv2d' || l.type === 'dense') {
      const weight = Float32Array.from(tensor(l.tensors.weight));
      const outs = l.type === 'conv2d' ? l.out_channels : l.out_features;
      const b0 = l.bias ? tensor(l.tensors.bias) : new Float32Array(outs);
      const bias = Float32Array.from(b0);
      let idNext;
      if (foldNext) {
        const { s, t } = scaleShift(next, tensor);
        const row = weight.length / outs;
        for (let o = 0; o < outs; ++o) {
          for (let k = 0; k < row; ++k) weight[o * row + k] = weight[o * row + k] * s[o];
          bias[o] = s[o] * b0[o] + t[o];
        }
        idNext = next.id;
        ++i;
      }
      if (l.type === 'conv2d') {
        const [c, h, w] = shape;
        if (l.in_channels !== c) throw new Error(`layer ${i}: conv2d expects ${l.in_channels} channels, gets ${c}`);
        const [kh, kw] = l.kernel;
        const [sh, sw] = l.stride;
        const [pt, pl, pb, pr] = l.padding;
        out = [outs, Math.floor((h + pt + pb - kh) / sh) + 1, Math.floor((w + pl + pr - kw) / sw) + 1];
        layer = { type: 'conv2d', in: shape, out, kernel: [kh, kw], stride: [sh, sw],
                  pad: [pt, pl, pb, pr], weight, bias };
      } else {
        if (shape.length !== 1 || shape[0] !== l.in_features)
          throw new Error(`layer ${i}: dense expects ${l.in_features} features, gets [${shape}]`);
        out = [outs];
        layer = { type: 'dense', in: l.in_features, out: outs, weight, bias };
      }
      if (idNext !== undefined) ids.set(idNext, layers.length);
    } else if (l.type === 'swish') {
      layer = { type: 'swish' };
    } else if (l.type === 'leaky_relu') {
      layer = { type: 'leaky_relu', slope: l.slope };
    } else if (l.type === 'flatten') {
      layer = { type: 'flatten', in: shape };
      out = [shape.reduce((a, b) => a * b, 1)];
    } else if (l.type === 'space_to_depth' || l.type === 'depth_to_space' || l.type === 'upsample') {
      const f = l.factor;
      const [c, h, w] = shape;
      out = l.type === 'space_to_depth' ? [c * f * f, h / f, w / f]
          : l.type === 'depth_to_space' ? [c / (f * f), h * f, w * f] : [c, h * f, w * f];
      layer = { type: l.type, factor: f, in: shape };
    } else if (l.type === 'add') {
      const skip = indexOf(l.skip, i);
      if (shapeOf(skip).join() !== shape.join())
        throw new Error(`layer ${i}: add of [${shape}] and [${shapeOf(skip)}]`);
      // A gated add (LayerSpec::sigma_max) adds at noise levels up to its own, where the peers run.
      if (l.sigma_max !== undefined && !(energy && sigma <= l.sigma_max))
        throw new Error(`layer ${i}: an add gated at sigma ${l.sigma_max}: the peers run it only at ` +
                        `a noise level up to that, where it adds (this run: ${energy ? sigma : 'none'})`);
      layer = { type: 'add', skip };
    } else {
      throw new Error(`layer ${i}: the bench peers do not implement "${l.type}" (conv2d, ` +
                      'batchnorm/affine after conv2d or dense, swish, leaky_relu, flatten, dense, ' +
                      'space_to_depth, depth_to_space, upsample, add)');
    }
    layer.from = from;
    if (l.id !== undefined) ids.set(l.id, layers.length);
    layers.push(layer);
    shapes.push(out);
  }
  const out = shapeOf(layers.length - 1);
  if (energy ? out.join() !== image.join() : out.length !== 1 || out[0] !== 1)
    throw new Error(`the network's output is [${out}], not ${energy ? `the image's [${image}]` : 'one energy'}`);
  return { input: { c: inp.channels, h: inp.height, w: inp.width }, kind, layers, energy };
}

// FLOPs of one forward pass (2 per multiply-add); the input gradient costs the same again, so an
// image-step (energy and dE/dx) is twice this: 115.9 MFLOP for the paper architecture.
export function forwardFlops(model) {
  let flops = 0;
  for (const l of model.layers) {
    if (l.type === 'conv2d') flops += 2 * l.out[0] * l.out[1] * l.out[2] * l.in[0] * l.kernel[0] * l.kernel[1];
    if (l.type === 'dense') flops += 2 * l.in * l.out;
  }
  return flops;
}

// Deterministic uniform images in [-1, 1] (mulberry32), the same in node and browsers.
export function randomImages(seed, count) {
  const out = new Float32Array(count);
  let a = seed >>> 0;
  for (let i = 0; i < count; ++i) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

// The project's agreement measure (trainer/lib/export.h): largest |a - b| over the largest |b|.
export function maxRelativeError(a, b) {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; ++i) {
    const d = Math.abs(a[i] - b[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}
