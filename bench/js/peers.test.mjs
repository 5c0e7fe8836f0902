// The benchmark's verification step as a test: the JavaScript peers' networks, built from a model
// file by bench/js (the ONNX gradient graph written by onnx.mjs, run by onnxruntime-web's wasm
// build; the TF.js network with its layout conversions), give the energies and input gradients
// of our wasm runtime on the same file: the paper architecture, and a small network with what
// the paper's lacks (3 input channels, non-square kernels and strides, asymmetric padding that
// needs ConvTranspose's output_padding, leaky ReLU, F16 weights), and the U-Net presets' graphs
// around a denoiser energy (format 2, at one noise level).
// Tolerance: max relative error 1e-4 (largest |a - b| over the largest |ours|), as bench/run.mjs.
//
// Run by CTest (bench/CMakeLists.txt) as `node peers.test.mjs` with EBM_SITE, EBM_WORK and
// EBM_MAKE_MODEL; exits 77 (skipped) when bench/node_modules is not installed (bench/run.sh or
// `npm ci --ignore-scripts` in bench/ installs it).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { loadEbmModel, maxRelativeError, randomImages, readSafetensors } from './model.mjs';
import { createOrtPeer, createOursPeer, createTfjsPeer, multiplyAddCeiling } from './peers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const { EBM_SITE: site, EBM_WORK: work, EBM_MAKE_MODEL: makeModel } = process.env;
assert.ok(site && work && makeModel, 'EBM_SITE, EBM_WORK and EBM_MAKE_MODEL must be set');
if (!existsSync(path.join(here, '..', 'node_modules', 'onnxruntime-web'))) {
  console.log('bench/node_modules is not installed (npm ci --ignore-scripts in bench/): skipped');
  process.exit(77);
}
const require = createRequire(import.meta.url);
const TOLERANCE = 1e-4;

const odd = {
  name: 'odd',
  input: { channels: 3, height: 13, width: 17 },
  layers: [
    { type: 'conv2d', out_channels: 4, kernel: 3, stride: 2, padding: [1, 0, 2, 1] },
    { type: 'batchnorm', eps: 0.001 },
    { type: 'leaky_relu', slope: 0.2 },
    { type: 'conv2d', out_channels: 5, kernel: [2, 3], stride: [1, 2], padding: [0, 1, 1, 0] },
    { type: 'swish' },
    { type: 'flatten' },
    { type: 'dense', out_features: 6 },
    { type: 'swish' },
    { type: 'dense', out_features: 1 },
  ],
  sampler: { form: 'paper', steps: 10, step_size: 10, noise: 0.005, grad_clip: 0.03 },
};

let M;
let tf;
let ort;
before(async () => {
  mkdirSync(work, { recursive: true });
  M = await require(path.resolve(site, 'ebm_runtime.js'))({
    wasmBinary: readFileSync(path.join(site, 'ebm_runtime.wasm')) });
  tf = require('@tensorflow/tfjs');
  require('@tensorflow/tfjs-backend-wasm');
  assert.ok(await tf.setBackend('wasm'));
  ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
});

// extra: make_test_model's further arguments ('', 'autoguide': a format-3 file).
function modelFile(name, preset, dtype, ...extra) {
  const presetPath = typeof preset === 'string' ? preset : path.join(work, `${name}.json`);
  if (typeof preset !== 'string') writeFileSync(presetPath, JSON.stringify(preset));
  const out = path.join(work, `${name}.safetensors`);
  execFileSync(makeModel, [presetPath, out, '3', dtype, ...extra]);
  return new Uint8Array(readFileSync(out));
}

async function checkPeers(bytes, n) {
  const model = loadEbmModel(bytes);
  const d = model.input.c * model.input.h * model.input.w;
  const x = randomImages(11, n * d);
  const ref = await createOursPeer(M, bytes).run(x, n);
  const peers = {
    onnx: await createOrtPeer(ort, model, { executionProviders: ['wasm'] }, 'ort-web'),
    tfjs: createTfjsPeer(tf, model, 'tfjs'),
  };
  for (const [name, peer] of Object.entries(peers)) {
    const out = await peer.run(x, n);
    const errE = maxRelativeError(out.e, ref.e);
    const errG = maxRelativeError(out.g, ref.g);
    assert.ok(errE <= TOLERANCE && errG <= TOLERANCE,
              `${name}: energies max relative error ${errE}, gradients ${errG} (tolerance ${TOLERANCE})`);
  }
}

test('the ONNX gradient graph and the TF.js network give our energies and input gradients (paper, F32)',
     () => checkPeers(modelFile('paper', path.join(here, '../../models/presets/paper.json'), 'f32'), 3));

test('... and on a 3-channel network with odd sizes, asymmetric padding and leaky ReLU (F16)',
     () => checkPeers(modelFile('odd', odd, 'f16'), 4));

// Noise-conditional models (format 2): the U-Net presets' graphs (space_to_depth, skips, nearest
// upsampling, depth_to_space, a noise plane) around the denoiser energy, at sigma 0.5 in every
// peer, the level bench_peers gives LibTorch; and our peer's sigma is the one it says it uses.
test('format-2 U-Nets: the ONNX graph and TF.js give our E(x, 0.5) and dE/dx (unet32 F32, unet-global F16)',
     async () => {
  await checkPeers(modelFile('unet32', path.join(here, '../../models/presets/unet32.json'), 'f32'), 3);
  await checkPeers(modelFile('unet-global', path.join(here, '../../models/presets/unet-global.json'), 'f16'), 2);
});

// A format-3 file (the shipped model's kind) carries a weaker network for autoguidance: the peers
// compute the model's own energy, as our runtime's energy calls do.
test('format 3: the peers give our E(x, 0.5) and dE/dx of the model itself (unet32 with a weaker one)',
     async () => {
  const bytes = modelFile('unet32-autoguided', path.join(here, '../../models/presets/unet32.json'), 'f32',
                          '', 'autoguide');
  assert.equal(readSafetensors(bytes).metadata['ebm.format'], '3');
  await checkPeers(bytes, 2);
});

// The shipped preset's refinement is summed on by an add gated at sigma 5: open at 0.5, where the
// peers compute it; above its level the peers refuse rather than compute another energy.
test('a gated refinement (unet-wide-fine): the peers give our E(x, 0.5) and dE/dx, and refuse above its level',
     async () => {
  const bytes = modelFile('unet-wide-fine', path.join(here, '../../models/presets/unet-wide-fine.json'), 'f16');
  await checkPeers(bytes, 1);
  assert.throws(() => loadEbmModel(bytes, { sigma: 10 }), /gated at sigma 5: .*this run: 10/);
});

test('our peer runs a format-2 model at sigma 0.5, and sigma matters', async () => {
  const bytes = modelFile('unet32', path.join(here, '../../models/presets/unet32.json'), 'f32');
  assert.equal(loadEbmModel(bytes).energy.sigma, 0.5);
  const ours = createOursPeer(M, bytes);
  assert.match(ours.info, /at sigma 0\.5$/);
  const d = ours.model.inputSize();
  const x = randomImages(5, 2 * d);
  const out = await ours.run(x, 2);
  // The same call straight on the module at sigma 0.5, and a different answer at sigma 1.
  const at = (sigma) => {
    const xp = M._malloc(4 * 2 * d), ep = M._malloc(8), gp = M._malloc(4 * 2 * d);
    try {
      M.HEAPF32.set(x.subarray(0, 2 * d), xp >> 2);
      assert.equal(ours.model.energyAndGradAt(xp, 2, ep, gp, sigma), '');
      return { e: M.HEAPF32.slice(ep >> 2, (ep >> 2) + 2), g: M.HEAPF32.slice(gp >> 2, (gp >> 2) + 2 * d) };
    } finally {
      M._free(xp); M._free(ep); M._free(gp);
    }
  };
  assert.deepEqual(out.e, at(0.5).e);
  assert.deepEqual(out.g, at(0.5).g);
  assert.ok(maxRelativeError(at(1).e, out.e) > 1e-3);
  // The JS peers follow the model's noise level too: built at sigma 1, they disagree with 0.5.
  const tf1 = await createTfjsPeer(tf, loadEbmModel(bytes, { sigma: 1 }), 'tfjs').run(x, 2);
  assert.ok(maxRelativeError(tf1.e, at(1).e) < TOLERANCE);
  assert.ok(maxRelativeError(tf1.e, out.e) > 1e-3);
});

// The ceiling bench/run.mjs states: the module's probe does every multiply-add it is asked for
// (WebAssembly SIMD128: 12 chains of 4 lanes), and multiplyAddCeiling refuses a probe whose sum
// is wrong instead of reporting a rate for work that was not done.
test('the multiply-add probe runs every round and the ceiling checks it', () => {
  assert.equal(M.multiplyAddProbeFloats(), 48);
  assert.equal(M.multiplyAddProbe(3, 2, 1), 7 * 48);
  assert.equal(M.multiplyAddProbe(1000, 1, 1), 1000 * 48);
  assert.ok(multiplyAddCeiling(M, 5) > 0);
  const lying = { multiplyAddProbeFloats: () => 48, multiplyAddProbe: (rounds) => rounds * 47 };
  assert.throws(() => multiplyAddCeiling(lying, 5), /gave .*, not /);
});
