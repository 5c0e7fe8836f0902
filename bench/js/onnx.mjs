// An ONNX model (opset 13) that outputs both the energies and their input gradients, written
// straight to protobuf bytes (no onnx package here): the forward layers of a loadEbmModel()
// network, then a hand-built backward pass.
//
//   inputs:  x [N, C, H, W] float   (N symbolic)
//   outputs: energy [N, 1], grad [N, C, H, W] = dE_i/dx_i
//
// Backward, from the top: dE/dE = 1 (as energy * 0 + 1, so N stays symbolic); dense: g_in =
// g_out x W (MatMul, W [out, in]); swish: g_z = g_a * (s + z s (1 - s)) with s = sigmoid(z) kept
// from the forward pass; leaky_relu: Where(z > 0, g, slope g); flatten: Reshape back to [-1, C,
// H, W]; conv2d: ConvTranspose with the same OIHW weight, strides and pads, and output_padding =
// (H + top + bottom - k) mod stride, which restores the input's height and width exactly.
// The U-Net's layers (format 2): a layer's gradient is the sum over the layers that read it (an
// add passes its gradient to both operands); space_to_depth and depth_to_space are each other's
// backward; upsample's is a sum over each f x f block. A denoiser energy (model.mjs) wraps the
// layers: E = |r|^2 / (2 sigma^2) with r = u - sigma_data F, so dE/dF = -sigma_data r / sigma^2
// seeds the backward pass and dE/dx = r / sigma^2 + c_in dE/dv over the image channels.

// ---- protobuf wire format -------------------------------------------------------------------

class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(b) { this.parts.push(b); this.length += b.length; }
  varint(v) {
    let n = BigInt.asUintN(64, BigInt(v));
    const out = [];
    do {
      let byte = Number(n & 0x7fn);
      n >>= 7n;
      if (n) byte |= 0x80;
      out.push(byte);
    } while (n);
    this.bytes(Uint8Array.from(out));
  }
  key(field, wire) { this.varint((field << 3) | wire); }
  int(field, v) { this.key(field, 0); this.varint(v); }
  float(field, v) {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.bytes(b);
  }
  blob(field, b) { this.key(field, 2); this.varint(b.length); this.bytes(b); }
  string(field, s) { this.blob(field, new TextEncoder().encode(s)); }
  message(field, w) { this.blob(field, w.finish()); }
  finish() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) { out.set(p, at); at += p.length; }
    return out;
  }
}

const FLOAT = 1;
const INT64 = 7;

// TensorProto: dims 1, data_type 2, name 8, raw_data 9.
function tensorProto(name, dims, dataType, typed) {
  const w = new Writer();
  for (const d of dims) w.int(1, d);
  w.int(2, dataType);
  w.string(8, name);
  w.blob(9, new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  return w;
}

// AttributeProto: name 1, f 2, i 3, t 5, ints 8, type 20 (FLOAT 1, INT 2, TENSOR 4, INTS 7).
function attribute(name, value) {
  const w = new Writer();
  w.string(1, name);
  if (Array.isArray(value)) {
    for (const v of value) w.int(8, v);
    w.int(20, 7);
  } else if (value instanceof Writer) {
    w.message(5, value);
    w.int(20, 4);
  } else if (Number.isInteger(value.int)) {
    w.int(3, value.int);
    w.int(20, 2);
  } else {
    w.float(2, value.float);
    w.int(20, 1);
  }
  return w;
}

// ValueInfoProto for a float tensor: name 1, type 2 -> TypeProto.tensor_type 1 -> elem_type 1,
// shape 2 -> dim 1 -> dim_value 1 | dim_param 2.
function valueInfo(name, dims) {
  const shape = new Writer();
  for (const d of dims) {
    const dim = new Writer();
    if (typeof d === 'string') dim.string(2, d); else dim.int(1, d);
    shape.message(1, dim);
  }
  const tensorType = new Writer();
  tensorType.int(1, FLOAT);
  tensorType.message(2, shape);
  const type = new Writer();
  type.message(1, tensorType);
  const w = new Writer();
  w.string(1, name);
  w.message(2, type);
  return w;
}

// PyTorch's pixel_unshuffle (down) or pixel_shuffle (up) by factor f of `x` shaped [N, C, H, W]
// = shape: the Transpose of a 6-D view; the caller Reshapes the result (returned as its inputs).
function pixelShuffle(g, int64s, x, down, f, [C, H, W]) {
  if (down) {
    // [N, C, H/f, dy, W/f, dx] -> [N, C, dy, dx, H/f, W/f] -> [N, C f^2, H/f, W/f]
    const v = g.op('Reshape', [x, int64s(-1, C, H / f, f, W / f, f)]);
    return [g.op('Transpose', [v], { perm: [0, 1, 3, 5, 2, 4] }), int64s(-1, C * f * f, H / f, W / f)];
  }
  // [N, C, dy, dx, H, W] -> [N, C, H, dy, W, dx] -> [N, C, H f, W f]
  const c = C / (f * f);
  const v = g.op('Reshape', [x, int64s(-1, c, f, f, H, W)]);
  return [g.op('Transpose', [v], { perm: [0, 1, 4, 2, 5, 3] }), int64s(-1, c, H * f, W * f)];
}

// ---- graph building -------------------------------------------------------------------------

class Graph {
  constructor() { this.nodes = []; this.initializers = []; this.count = 0; }
  name(hint) { return `${hint}_${this.count++}`; }
  // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
  op(type, inputs, attrs = {}, hint = type.toLowerCase(), output = this.name(hint)) {
    const out = output;
    const w = new Writer();
    for (const i of inputs) w.string(1, i);
    w.string(2, out);
    w.string(3, out);
    w.string(4, type);
    for (const [k, v] of Object.entries(attrs)) w.message(5, attribute(k, v));
    this.nodes.push(w);
    return out;
  }
  constant(hint, dims, typed, dataType = FLOAT) {
    const name = this.name(hint);
    this.initializers.push(tensorProto(name, dims, dataType, typed));
    return name;
  }
  scalar(v) { return this.constant('c', [], Float32Array.of(v)); }
}

// model: from loadEbmModel(). Returns the serialized ModelProto (Uint8Array).
export function buildGradientModel(model) {
  const g = new Graph();
  const { c, h, w } = model.input;
  const int64s = (...v) => g.constant('shape', [v.length], BigInt64Array.from(v.map(BigInt)), INT64);
  const one = g.scalar(1);
  const den = model.energy;
  // A denoiser: v = [c_in u, plane], u = x - mean (model.mjs); the plane is u's first channel
  // times 0 plus log(sigma) / 4, so the batch size stays symbolic.
  let u = null;
  let input = 'x';
  if (den) {
    u = g.op('Sub', ['x', g.constant('mean', [1, c, h, w], den.mean)], {}, 'u');
    const cIn = 1 / Math.sqrt(den.sigma * den.sigma + den.sigmaData * den.sigmaData);
    input = g.op('Mul', [u, g.scalar(cIn)], {}, 'v');
    if (den.noisePlane) {
      const first = g.op('Slice', [u, int64s(0), int64s(1), int64s(1)]);
      const plane = g.op('Add', [g.op('Mul', [first, g.scalar(0)]), g.scalar(Math.log(den.sigma) / 4)]);
      input = g.op('Concat', [input, plane], { axis: { int: 1 } }, 'v');
    }
  }
  const outs = [];   // output name of each layer
  const saved = [];  // what each layer's backward needs
  const inputOf = (l) => (l.from < 0 ? input : outs[l.from]);
  for (const l of model.layers) {
    const cur = inputOf(l);
    let out;
    if (l.type === 'conv2d') {
      const W = g.constant('w', [l.out[0], l.in[0], ...l.kernel], l.weight);
      const B = g.constant('b', [l.out[0]], l.bias);
      const attrs = { kernel_shape: l.kernel, strides: l.stride,
                      pads: [l.pad[0], l.pad[1], l.pad[2], l.pad[3]] };
      saved.push({ l, W });
      out = g.op('Conv', [cur, W, B], attrs);
    } else if (l.type === 'dense') {
      const W = g.constant('w', [l.out, l.in], l.weight);
      const B = g.constant('b', [l.out], l.bias);
      saved.push({ l, W });
      out = g.op('Gemm', [cur, W, B], { transB: { int: 1 } });
    } else if (l.type === 'swish') {
      const s = g.op('Sigmoid', [cur]);
      saved.push({ l, z: cur, s });
      out = g.op('Mul', [cur, s], {}, 'swish');
    } else if (l.type === 'leaky_relu') {
      saved.push({ l, z: cur });
      out = g.op('LeakyRelu', [cur], { alpha: { float: l.slope } });
    } else if (l.type === 'flatten') {
      saved.push({ l });
      out = g.op('Flatten', [cur], { axis: { int: 1 } });
    } else if (l.type === 'space_to_depth' || l.type === 'depth_to_space') {
      // PyTorch's pixel_unshuffle and pixel_shuffle as Reshape, Transpose, Reshape (ONNX's own
      // SpaceToDepth orders channels as (dy, dx, c)).
      saved.push({ l });
      out = g.op('Reshape', pixelShuffle(g, int64s, cur, l.type === 'space_to_depth', l.factor, l.in), {}, l.type);
    } else if (l.type === 'upsample') {
      const f = l.factor;
      const [C, H, W] = l.in;
      saved.push({ l });
      const tall = g.op('Reshape', [cur, int64s(-1, C, H, 1, W, 1)]);
      const copies = g.op('Mul', [tall, g.constant('ones', [1, 1, 1, f, 1, f], new Float32Array(f * f).fill(1))]);
      out = g.op('Reshape', [copies, int64s(-1, C, H * f, W * f)], {}, 'upsample');
    } else if (l.type === 'add') {
      saved.push({ l });
      out = g.op('Add', [cur, outs[l.skip]], {}, 'add');
    }
    outs.push(out);
  }
  const top = outs[outs.length - 1];
  // The energy, and the gradient with respect to the last layer's output.
  let seed;
  let r = null;
  if (den) {
    r = g.op('Sub', [u, g.op('Mul', [top, g.scalar(den.sigmaData)])], {}, 'r');
    const half = g.scalar(0.5 / (den.sigma * den.sigma));
    const e = g.op('Mul', [g.op('ReduceSumSquare', [r], { axes: [1, 2, 3], keepdims: { int: 0 } }), half]);
    g.op('Reshape', [e, int64s(-1, 1)], {}, '', 'energy');
    seed = g.op('Mul', [r, g.scalar(-den.sigmaData / (den.sigma * den.sigma))], {}, 'seed');
  } else {
    g.op('Identity', [top], {}, '', 'energy');
    seed = g.op('Add', [g.op('Mul', [top, g.scalar(0)]), one], {}, 'seed');
  }

  // Backward through the graph: each layer's gradient is the sum over the layers that read it.
  const grads = new Array(model.layers.length).fill(null);
  let inputGrad = null;
  const accumulate = (index, gr) => {
    if (index < 0) inputGrad = inputGrad ? g.op('Add', [inputGrad, gr]) : gr;
    else grads[index] = grads[index] ? g.op('Add', [grads[index], gr]) : gr;
  };
  grads[grads.length - 1] = seed;
  for (let i = saved.length - 1; i >= 0; --i) {
    const { l, W, z, s } = saved[i];
    let grad = grads[i];
    if (!grad) continue;
    if (l.type === 'dense') {
      grad = g.op('MatMul', [grad, W], {}, 'dense_grad');
    } else if (l.type === 'swish') {
      // s + z s (1 - s) = s (1 + z (1 - s))
      const d = g.op('Mul', [s, g.op('Add', [g.op('Mul', [z, g.op('Sub', [one, s])]), one])]);
      grad = g.op('Mul', [grad, d], {}, 'swish_grad');
    } else if (l.type === 'leaky_relu') {
      const pos = g.op('Greater', [z, g.scalar(0)]);
      grad = g.op('Where', [pos, grad, g.op('Mul', [grad, g.scalar(l.slope)])], {}, 'leaky_grad');
    } else if (l.type === 'flatten') {
      grad = g.op('Reshape', [grad, int64s(-1, ...l.in)], {}, 'unflatten');
    } else if (l.type === 'conv2d') {
      const outputPadding = [0, 1].map((d) =>
        (l.in[1 + d] + l.pad[d] + l.pad[d + 2] - l.kernel[d]) % l.stride[d]);
      grad = g.op('ConvTranspose', [grad, W], {
        kernel_shape: l.kernel, strides: l.stride, pads: l.pad, output_padding: outputPadding,
      }, 'conv_grad');
    } else if (l.type === 'space_to_depth' || l.type === 'depth_to_space') {
      // The inverse permutation: the other one of the pair, from the output's shape.
      const f = l.factor;
      const [C, H, W2] = l.in;
      const outShape = l.type === 'space_to_depth' ? [C * f * f, H / f, W2 / f] : [C / (f * f), H * f, W2 * f];
      grad = g.op('Reshape', pixelShuffle(g, int64s, grad, l.type !== 'space_to_depth', f, outShape), {}, 'unshuffle');
    } else if (l.type === 'upsample') {
      // Each input pixel's gradient is the sum over its f x f copies.
      const f = l.factor;
      const [C, H, W2] = l.in;
      const blocks = g.op('Reshape', [grad, int64s(-1, C, H, f, W2, f)]);
      grad = g.op('ReduceSum', [blocks, int64s(3, 5)], { keepdims: { int: 0 } }, 'upsample_grad');
    } else if (l.type === 'add') {
      accumulate(l.skip, grad);
    }
    accumulate(l.from, grad);
  }
  let grad = inputGrad;
  if (den) {
    // dE/dx = r / sigma^2 + c_in (dE/dv over the image channels).
    const cIn = 1 / Math.sqrt(den.sigma * den.sigma + den.sigmaData * den.sigmaData);
    if (den.noisePlane) grad = g.op('Slice', [grad, int64s(0), int64s(c), int64s(1)]);
    grad = g.op('Add', [g.op('Mul', [r, g.scalar(1 / (den.sigma * den.sigma))]),
                        g.op('Mul', [grad, g.scalar(cIn)])], {}, 'x_grad');
  }

  g.op('Identity', [grad], {}, '', 'grad');

  const graph = new Writer();
  for (const n of g.nodes) graph.message(1, n);
  graph.string(2, 'ebm_energy_and_input_grad');
  for (const t of g.initializers) graph.message(5, t);
  graph.message(11, valueInfo('x', ['N', c, h, w]));
  graph.message(12, valueInfo('energy', ['N', 1]));
  graph.message(12, valueInfo('grad', ['N', c, h, w]));

  // ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 (domain 1, version 2).
  const opset = new Writer();
  opset.string(1, '');
  opset.int(2, 13);
  const m = new Writer();
  m.int(1, 7);
  m.string(2, 'bridge-ebm bench/js/onnx.mjs');
  m.message(7, graph);
  m.message(8, opset);
  return m.finish();
}
