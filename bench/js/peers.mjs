// The benchmark's peers behind one interface, the same code in node and in a browser worker (the
// caller loads each library and passes it in):
//
//   peer.run(x, n) -> Promise<{e: Float32Array(n), g: Float32Array(n * D)}>
//       x: n images [C, H, W] (Float32Array, model units); e: energies; g: dE_i/dx_i, NCHW.
//   peer.info: a line saying what runs (backend, SIMD, threads actually used).
//
// What a call includes, for every peer alike: the input from a JavaScript Float32Array, the
// forward pass, the backward pass with respect to the input, and energies and gradients back
// in JavaScript arrays. Model building, graph compilation and warm-up happen before timing.
import { buildGradientModel } from './onnx.mjs';

// ---- our runtime (the Emscripten module built by scripts/build-wasm.sh) ----------------------

// A noise-conditional model (the shipped U-Net) is run at one noise level, `sigma`: E(x, sigma)
// and dE/dx, as one step of its sampler needs them (bench_peers --sigma, the same default).
export function createOursPeer(M, modelBytes, sigma = 0.5) {
  const bytesPtr = M._malloc(modelBytes.length);
  M.HEAPU8.set(modelBytes, bytesPtr);
  const model = new M.Model(bytesPtr, modelBytes.length);
  M._free(bytesPtr);
  if (model.error()) throw new Error(`our runtime refused the model: ${model.error()}`);
  const D = model.inputSize();
  const description = JSON.parse(model.describe());
  const atSigma = description.energy ? sigma : 0;
  let capacity = 0;
  let xp = 0, ep = 0, gp = 0;
  const reserve = (n) => {
    if (n <= capacity) return;
    if (capacity) { M._free(xp); M._free(ep); M._free(gp); }
    xp = M._malloc(4 * n * D);
    ep = M._malloc(4 * n);
    gp = M._malloc(4 * n * D);
    capacity = n;
  };
  return {
    info: `bridge-ebm runtime, WebAssembly SIMD128, one thread${atSigma ? `, at sigma ${atSigma}` : ''}`,
    model,
    description,
    async run(x, n) {
      reserve(n);
      M.HEAPF32.set(x.subarray(0, n * D), xp >> 2);
      const err = model.energyAndGradAt(xp, n, ep, gp, atSigma);
      if (err) throw new Error(err);
      return { e: M.HEAPF32.slice(ep >> 2, (ep >> 2) + n), g: M.HEAPF32.slice(gp >> 2, (gp >> 2) + n * D) };
    },
    // Full Langevin steps (noise, energy and gradient, clipped update) with the model's sampler
    // settings: ms per image-step over `steps` steps of `batch` chains.
    langevin(batch, steps) {
      const s = new M.Sampler(model, JSON.stringify({ steps: 1000000 }), 1);
      try {
        if (s.error() || s.startUniform(batch, 0)) throw new Error(s.error());
        s.run(0, null, 1);  // workspaces
        const t0 = performance.now();
        if (s.run(0, null, steps) < 0) throw new Error(s.error());
        return (performance.now() - t0) / (steps * batch);
      } finally {
        s.delete();
      }
    },
    heapBytes: () => M.HEAPU8.length,
    // The ceiling of this module's arithmetic (multiplyAddProbe: independent multiply-add chains
    // in every lane of the GEMM's vectors), GFLOP/s over at least minMs; the probe's sum is
    // checked, so a call that skipped work would throw.
    ceiling: (minMs) => multiplyAddCeiling(M, minMs),
  };
}

export function multiplyAddCeiling(M, minMs) {
  const floats = M.multiplyAddProbeFloats();
  const probe = (rounds) => {
    const t0 = performance.now();
    const sum = M.multiplyAddProbe(rounds, 1, 1);
    const ms = performance.now() - t0;
    if (sum !== rounds * floats) throw new Error(`multiplyAddProbe(${rounds}) gave ${sum}, not ${rounds * floats}`);
    return ms;
  };
  // Calls long enough to time, then the best of three such calls: the engine's optimizing tier
  // takes over between calls (a first long call in V8's baseline tier ran at half the rate).
  let rounds = 1 << 12;
  while (probe(rounds) < minMs / 4 && rounds < 1 << 24) rounds *= 2;
  const ms = Math.min(probe(rounds), probe(rounds), probe(rounds));
  return (2 * rounds * floats) / (ms * 1e6);
}

// ---- TensorFlow.js (tfjs-core + tfjs-backend-wasm, set up by the caller) ---------------------

// NHWC throughout (the layout tfjs kernels support everywhere): filters OIHW -> HWIO; the first
// dense layer after a flatten gets its columns permuted from (C, H, W) order to (H, W, C) order,
// so the flatten of an NHWC activation meets the same weights. The U-Net's layers: space_to_depth
// and depth_to_space as reshapes and a 5-D transpose that keep PyTorch's channel order
// (c f^2 + dy f + dx); nearest upsampling as concatenated copies (differentiable in every
// backend); add reads an earlier output. A denoiser's energy is built around the layers at the
// model's noise level (model.mjs) and differentiated by tf.valueAndGrad like any other.
export function createTfjsPeer(tf, model, info) {
  const { c, h, w } = model.input;
  const D = c * h * w;
  const ops = [];  // ops[i](input of layer i, outputs so far) -> output of layer i
  let flattenedFrom = null;
  for (const l of model.layers) {
    if (l.type === 'conv2d') {
      const [O, I] = [l.out[0], l.in[0]];
      const [kh, kw] = l.kernel;
      const hwio = new Float32Array(l.weight.length);
      for (let o = 0; o < O; ++o)
        for (let i = 0; i < I; ++i)
          for (let y = 0; y < kh; ++y)
            for (let x = 0; x < kw; ++x)
              hwio[((y * kw + x) * I + i) * O + o] = l.weight[((o * I + i) * kh + y) * kw + x];
      const filter = tf.tensor4d(hwio, [kh, kw, I, O]);
      const bias = tf.tensor1d(l.bias);
      const pad = [[0, 0], [l.pad[0], l.pad[2]], [l.pad[1], l.pad[3]], [0, 0]];
      ops.push((a) => tf.add(tf.conv2d(a, filter, l.stride, pad, 'NHWC'), bias));
    } else if (l.type === 'dense') {
      const wt = new Float32Array(l.weight.length);  // [in, out], rows in the activation's order
      for (let o = 0; o < l.out; ++o)
        for (let k = 0; k < l.in; ++k) {
          let row = k;
          if (flattenedFrom) {  // k indexes (C, H, W); the NHWC flatten is (H, W, C)
            const [C, H, W] = flattenedFrom;
            const ch = Math.floor(k / (H * W)), yx = k % (H * W);
            row = yx * C + ch;
          }
          wt[row * l.out + o] = l.weight[o * l.in + k];
        }
      flattenedFrom = null;
      const W = tf.tensor2d(wt, [l.in, l.out]);
      const bias = tf.tensor1d(l.bias);
      ops.push((a) => tf.add(tf.matMul(a, W), bias));
    } else if (l.type === 'swish') {
      ops.push((a) => tf.mul(a, tf.sigmoid(a)));
    } else if (l.type === 'leaky_relu') {
      ops.push((a) => tf.leakyRelu(a, l.slope));
    } else if (l.type === 'flatten') {
      flattenedFrom = l.in;
      ops.push((a) => tf.reshape(a, [a.shape[0], -1]));
    } else if (l.type === 'space_to_depth') {
      const f = l.factor;
      const [C, H, W] = l.in;
      // [n, H, W, C] -> [n H/f, f(dy), W/f, f(dx), C] -> [n H/f, W/f, C, dy, dx] -> [n, H/f, W/f, C f^2]
      ops.push((a) => tf.reshape(tf.transpose(tf.reshape(a, [-1, f, W / f, f, C]), [0, 2, 4, 1, 3]),
                                 [-1, H / f, W / f, C * f * f]));
    } else if (l.type === 'depth_to_space') {
      const f = l.factor;
      const [Cf, H, W] = l.in;
      const C = Cf / (f * f);
      // [n, H, W, C f^2] -> [n H, W, C, dy, dx] -> [n H, dy, W, dx, C] -> [n, H f, W f, C]
      ops.push((a) => tf.reshape(tf.transpose(tf.reshape(a, [-1, W, C, f, f]), [0, 3, 1, 4, 2]),
                                 [-1, H * f, W * f, C]));
    } else if (l.type === 'upsample') {
      const f = l.factor;
      const [C, H, W] = l.in;
      ops.push((a) => {
        const rows = tf.reshape(a, [-1, 1, W * C]);  // each row f times
        const tall = tf.reshape(tf.concat(Array(f).fill(rows), 1), [-1, 1, C]);  // each pixel f times
        return tf.reshape(tf.concat(Array(f).fill(tall), 1), [-1, H * f, W * f, C]);
      });
    } else if (l.type === 'add') {
      ops.push((a, outs) => tf.add(a, outs[l.skip]));
    }
  }
  const layers = (x) => {
    const outs = [];
    for (let i = 0; i < ops.length; ++i) {
      const from = model.layers[i].from;
      outs.push(ops[i](from < 0 ? x : outs[from], outs));
    }
    return outs[outs.length - 1];
  };
  const toNhwc = (t, n, ch) => (ch === 1 ? tf.reshape(t, [n, h, w, 1]) : tf.transpose(t, [0, 2, 3, 1]));
  const den = model.energy;
  let energies = (x) => tf.reshape(layers(x), [-1]);
  if (den) {
    const mean = toNhwc(tf.tensor4d(den.mean, [1, c, h, w]), 1, c);
    const cIn = 1 / Math.sqrt(den.sigma * den.sigma + den.sigmaData * den.sigmaData);
    const plane = Math.log(den.sigma) / 4;
    energies = (x) => {
      const u = tf.sub(x, mean);
      let v = tf.mul(u, cIn);
      if (den.noisePlane) v = tf.concat([v, tf.add(tf.mul(tf.slice(u, [0, 0, 0, 0], [-1, h, w, 1]), 0), plane)], 3);
      const r = tf.sub(u, tf.mul(layers(v), den.sigmaData));
      return tf.mul(tf.sum(tf.square(r), [1, 2, 3]), 0.5 / (den.sigma * den.sigma));
    };
  }
  const valueAndGrad = tf.valueAndGrad(energies);
  return {
    info,
    async run(x, n) {
      const out = tf.tidy(() => {
        const xt = toNhwc(tf.tensor4d(x.subarray(0, n * D), [n, c, h, w]), n, c);
        const { value, grad } = valueAndGrad(xt, tf.ones([n]));
        return { value, grad: c === 1 ? grad : tf.transpose(grad, [0, 3, 1, 2]) };
      });
      const e = out.value.dataSync();
      const g = out.grad.dataSync();
      out.value.dispose();
      out.grad.dispose();
      return { e, g };
    },
  };
}

// ---- onnxruntime (web or node, passed in as `ort`) -------------------------------------------

export async function createOrtPeer(ort, model, sessionOptions, info) {
  const { c, h, w } = model.input;
  const D = c * h * w;
  const session = await ort.InferenceSession.create(buildGradientModel(model), {
    graphOptimizationLevel: 'all', executionMode: 'sequential', ...sessionOptions,
  });
  return {
    info,
    async run(x, n) {
      const input = new ort.Tensor('float32', x.subarray(0, n * D), [n, c, h, w]);
      const out = await session.run({ x: input });
      return { e: out.energy.data, g: out.grad.data };
    },
  };
}

// ---- timing ---------------------------------------------------------------------------------

// One sample: calls on `batch` images, repeated until at least minMs have passed (and at least
// twice); ms per image-step. The first two calls at a new batch size are warm-up.
export async function timeCalls(peer, x, batch, minMs) {
  peer.warm ??= new Set();
  if (!peer.warm.has(batch)) {
    await peer.run(x, batch);
    await peer.run(x, batch);
    peer.warm.add(batch);
  }
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  while (calls < 2 || t - t0 < minMs) {
    await peer.run(x, batch);
    ++calls;
    t = performance.now();
  }
  return (t - t0) / (calls * batch);
}
