// The WebAssembly runtime in node against the native runtime on the same model (the paper
// architecture, random F16 weights) and inputs; reference numbers come from wasm_reference.
//
// Tolerances: energies agree within 1e-4 relative; each input-gradient element within 1e-4 of
// the largest gradient magnitude. (The native GEMM fuses multiply-adds, the wasm one cannot,
// so sums differ in the last bits.) The noise and the starting images are bit-identical; after
// 10 Langevin steps samples agree within 2e-3.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';

import { floatsAt, loadModel, loadRuntime, toHeap } from './wasm_module.mjs';

const site = process.env.EBM_SITE;
const work = process.env.EBM_WORK;
assert.ok(site && work, 'EBM_SITE and EBM_WORK must be set (the CTest wasm test sets them)');

const f32 = (name) => {
  const b = readFileSync(path.join(work, name));
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const ref = JSON.parse(readFileSync(path.join(work, 'reference.json'), 'utf8'));
const modelBytes = new Uint8Array(readFileSync(path.join(work, 'model.safetensors')));

let M;
let model;
before(async () => {
  M = await loadRuntime(site);
  model = loadModel(M, modelBytes);
  assert.equal(model.error(), '');
});

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function bitsEqual(a, b) {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
                        Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

// Runs a sampler of `net` (guided by `guide`, setGuide's arguments after the classifier, where
// given) to the end; returns its final images and energies.
function sample({ params, seed, count, firstChain = 0, slice = 1 << 30, net = model, guide = null }) {
  const s = new M.Sampler(net, JSON.stringify(params), seed);
  try {
    assert.equal(s.error(), '');
    assert.equal(s.guided(), false);
    if (guide) {
      assert.equal(s.setGuide(...guide), '');
      assert.equal(s.guided(), true);
    }
    assert.equal(s.startUniform(count, firstChain), '');
    let last = null;
    const keep = (step, total, images, energies) => {
      last = { step, images: images.slice(), energies: energies.slice() };
      return true;
    };
    while (!s.finished()) assert.ok(s.run(1000, keep, slice) >= 0, s.error());
    return last;
  } finally {
    s.delete();
  }
}

// The starting images of chains from noise (the first callback, before any step).
function startImages({ params, seed, count, firstChain = 0 }) {
  const s = new M.Sampler(model, JSON.stringify(params), seed);
  try {
    assert.equal(s.startUniform(count, firstChain), '');
    let start = null;
    s.run(1, (step, total, images) => { start = images.slice(); return false; }, 1);
    return start;
  } finally {
    s.delete();
  }
}

test('the noise generator reproduces the native pinned sequence bit for bit', () => {
  const ptr = M._malloc(4000);
  assert.equal(M.fillNormals(1, 0, 1000, ptr), '');
  const bytes = M.HEAPU8.slice(ptr, ptr + 4000);
  M._free(ptr);
  let hash = 2166136261;  // FNV-1a over the float bits, as tests/runtime/test_rng.cpp
  for (const b of bytes) hash = Math.imul(hash ^ b, 16777619) >>> 0;
  assert.equal(hash, 2819730062);
});

test('the card and input shape are read from the file', () => {
  const card = JSON.parse(model.describe());
  assert.deepEqual(card.input, { channels: 1, height: 48, width: 192 });
  assert.equal(card.kind, 'energy');
  assert.equal(card.parameters, 832257);
  assert.equal(card.card.name, 'random paper');
  assert.equal(model.inputSize(), 48 * 192);
});

test('an invalid model file gives a message, not an abort', () => {
  for (const [bytes, fragment] of [
    [new TextEncoder().encode('definitely not a model'), 'header length'],
    [modelBytes.slice(0, 5000), ''],
    [modelBytes.slice(0, 8), ''],
  ]) {
    const bad = loadModel(M, bytes);
    assert.notEqual(bad.error(), '');
    assert.ok(bad.error().includes(fragment), bad.error());
    const s = new M.Sampler(bad, '', 1);
    assert.match(s.error(), /did not load/);
    s.delete();
    bad.delete();
  }
  // The module still works afterwards.
  assert.equal(JSON.parse(model.describe()).kind, 'energy');
});

test('bad sampler settings are refused with the name of the setting', () => {
  for (const [params, fragment] of [['{"steps":-1}', 'steps'], ['{"nosie":1}', 'nosie'],
                                    ['{"form":"magic"}', 'magic'], ['{not json', 'parse'],
                                    ['{"start_cell":0}', 'start_cell']]) {
    const s = new M.Sampler(model, params, 1);
    assert.ok(s.error().includes(fragment), `${params}: ${s.error()}`);
    s.delete();
  }
  const s = new M.Sampler(model, '', 1.5);
  assert.match(s.error(), /seed/);
  s.delete();
});

test('energies and input gradients equal the native runtime within tolerance', () => {
  const x = f32('inputs.f32');
  const n = ref.count, d = ref.input_size;
  const xp = toHeap(M, x), ep = M._malloc(4 * n), gp = M._malloc(4 * n * d);
  assert.equal(model.energyAndGrad(xp, n, ep, gp), '');
  const e = floatsAt(M, ep, n), g = floatsAt(M, gp, n * d);
  assert.equal(model.energy(xp, n, ep), '');
  const eOnly = floatsAt(M, ep, n);
  M._free(xp); M._free(ep); M._free(gp);

  const eRef = f32('energies.f32'), gRef = f32('grads.f32');
  let gScale = 0;
  for (const v of gRef) gScale = Math.max(gScale, Math.abs(v));
  assert.ok(gScale > 0, 'reference gradients are all zero');
  const eErr = Math.max(...Array.from(e, (v, i) => Math.abs(v - eRef[i]) / (1 + Math.abs(eRef[i]))));
  const gErr = maxAbsDiff(g, gRef) / gScale;
  console.log(`# energies ${Array.from(e).map((v) => v.toFixed(6))} (native ` +
              `${Array.from(eRef).map((v) => v.toFixed(6))}); max relative energy error ` +
              `${eErr.toExponential(2)}, max gradient error ${gErr.toExponential(2)} of max |g| ` +
              `${gScale.toExponential(2)}`);
  assert.ok(eErr <= 1e-4, `energy error ${eErr}`);
  assert.ok(gErr <= 1e-4, `gradient error ${gErr}`);
  assert.ok(maxAbsDiff(e, eOnly) <= 1e-6 * (1 + Math.abs(eRef[0])), 'energy() != energyAndGrad()');
});

test('the GEMM\'s two-step depth loop (the browser\'s default) gives one step\'s bits', () => {
  const x = f32('inputs.f32');
  const n = ref.count, d = ref.input_size;
  const xp = toHeap(M, x), ep = M._malloc(4 * n), gp = M._malloc(4 * n * d);
  const run = (steps) => {
    assert.equal(M.setGemmDepthSteps(steps), '');
    assert.equal(model.energyAndGrad(xp, n, ep, gp), '');
    return { e: floatsAt(M, ep, n), g: floatsAt(M, gp, n * d) };
  };
  const one = run(1), two = run(2), byDefault = run(0);
  M._free(xp); M._free(ep); M._free(gp);
  assert.ok(bitsEqual(one.e, two.e) && bitsEqual(one.g, two.g), 'two steps changed the bits');
  assert.ok(bitsEqual(one.e, byDefault.e) && bitsEqual(one.g, byDefault.g), 'the default changed the bits');
  assert.ok(maxAbsDiff(one.g, new Float32Array(n * d)) > 0, 'the gradients are all zero');
  assert.match(M.setGemmDepthSteps(3), /GEMM depth steps must be 0 \(the default\), 1 or 2, got 3/);
  assert.equal(M.setGemmDepthSteps(0), '');
});

for (const form of ['paper', 'textbook']) {
  test(`${form} form: the same seed gives the same sample, natively and in wasm`, () => {
    const params = { form, steps: ref.steps };
    const first = sample({ params, seed: ref.seed, count: ref.chains });
    const again = sample({ params, seed: ref.seed, count: ref.chains });
    assert.ok(bitsEqual(first.images, again.images), 'two runs with one seed differ');
    assert.equal(first.step, ref.steps);

    // A grid split between workers is the same grid: chains 0-1 and 2-3 run apart.
    const d = ref.input_size;
    const lo = sample({ params, seed: ref.seed, count: 2, firstChain: 0 });
    const hi = sample({ params, seed: ref.seed, count: 2, firstChain: 2 });
    assert.ok(bitsEqual(lo.images, first.images.subarray(0, 2 * d)), 'chains 0-1 differ when split');
    assert.ok(bitsEqual(hi.images, first.images.subarray(2 * d)), 'chains 2-3 differ when split');

    // Slices of 3 steps (how the page's workers run) give exactly the single-call result.
    const sliced = sample({ params, seed: ref.seed, count: ref.chains, slice: 3 });
    assert.ok(bitsEqual(sliced.images, first.images), 'sliced run differs');

    const other = sample({ params, seed: ref.seed + 1, count: ref.chains });
    assert.ok(maxAbsDiff(other.images, first.images) > 0.1, 'another seed gave the same sample');

    // Against native: the starting noise is bit-identical, the sample agrees closely.
    const start = startImages({ params, seed: ref.seed, count: ref.chains });
    assert.ok(bitsEqual(start, f32(`start_${form}.f32`)), 'starting noise differs from native');
    const err = maxAbsDiff(first.images, f32(`sample_${form}.f32`));
    const eErr = maxAbsDiff(first.energies, f32(`sample_energies_${form}.f32`));
    console.log(`# ${form}: after ${ref.steps} steps max |wasm - native| pixel ` +
                `${err.toExponential(2)}, energy ${eErr.toExponential(2)}`);
    assert.ok(err <= 2e-3, `sample differs from native by ${err}`);
  });
}

test('smoothed starting noise (start_cell) is bit-identical to native', () => {
  const start = startImages({ params: { start_cell: 7 }, seed: 42, count: 3, firstChain: 5 });
  const native = f32('start_cell7.f32');
  assert.ok(bitsEqual(start, native), 'smoothed starting noise differs from native');
  assert.ok(!bitsEqual(start, f32('start_paper.f32').subarray(0, start.length)), 'not smoothed');
});

test('the callback comes every N steps with live views, and returning false stops', () => {
  const s = new M.Sampler(model, '{"steps":7}', 3);
  assert.equal(s.startUniform(2, 0), '');
  const seen = [];
  const done = s.run(3, (step, total, images, energies) => {
    assert.equal(total, 7);
    assert.equal(images.length, 2 * ref.input_size);
    assert.equal(energies.length, 2);
    assert.ok(Number.isFinite(energies[0]));
    seen.push(step);
  }, 1000);
  assert.equal(done, 7);
  assert.deepEqual(seen, [0, 3, 6, 7]);
  assert.ok(s.finished());
  s.delete();

  const t = new M.Sampler(model, '{"steps":50}', 3);
  t.startUniform(1, 0);
  assert.equal(t.run(1, (step) => step < 4, 1000), 4);
  assert.equal(t.stepsDone(), 4);
  assert.ok(!t.finished());
  t.delete();
});

test('requestStop from inside the loop stops after the current step', () => {
  const s = new M.Sampler(model, '{"steps":50}', 3);
  s.startUniform(1, 0);
  const done = s.run(1, (step) => { if (step === 2) s.requestStop(); }, 1000);
  assert.equal(done, 2);
  assert.equal(s.stepsDone(), 2);
  s.delete();
});

test('a chain can start from a blend of two images', () => {
  const d = ref.input_size;
  const x = f32('inputs.f32');
  const a = x.subarray(0, d), b = x.subarray(d, 2 * d);
  const ap = toHeap(M, a), bp = toHeap(M, b), tp = toHeap(M, new Float32Array([0, 0.25, 1]));
  const s = new M.Sampler(model, '{"steps":2}', 9);
  assert.equal(s.startBlend(ap, bp, tp, 3, 0, 0.5), '');  // the paper form: strength unused
  let start = null;
  s.run(1, (step, total, images) => { if (step === 0) start = images.slice(); }, 1000);
  M._free(ap); M._free(bp); M._free(tp);
  assert.ok(bitsEqual(start.subarray(0, d), a));
  assert.ok(bitsEqual(start.subarray(2 * d), b));
  for (let k = 0; k < d; k += 97) assert.ok(Math.abs(start[d + k] - (0.75 * a[k] + 0.25 * b[k])) < 1e-6);
  assert.equal(s.stepsDone(), 2);
  s.delete();
});

// A noise-conditional model (the unet preset, random weights): energies and input gradients at a
// noise level, and both noise-level forms, against the native runtime; in wasm the same seed gives
// the same samples bit for bit whether the chains run together, in slices or split in two.
test('a noise-conditional model: energies, gradients and both noise-level samplers match native', () => {
  assert.ok(ref.denoiser, 'the reference has no denoiser numbers');
  const den = loadModel(M, new Uint8Array(readFileSync(path.join(work, 'denoiser.safetensors'))));
  assert.equal(den.error(), '');
  try {
    const card = JSON.parse(den.describe());
    assert.deepEqual(card.input, { channels: 1, height: 48, width: 192 });
    assert.equal(card.energy.form, 'denoiser');
    const x = f32('inputs.f32');
    const n = ref.count, d = ref.input_size;
    const xp = toHeap(M, x), ep = M._malloc(4 * n), gp = M._malloc(4 * n * d);
    assert.match(den.energy(xp, n, ep), /sigma > 0/);  // a noise level is required
    assert.equal(den.energyAndGradAt(xp, n, ep, gp, 0.3), '');
    const e = floatsAt(M, ep, n), g = floatsAt(M, gp, n * d);
    M._free(xp); M._free(ep); M._free(gp);
    const eRef = f32('denoiser_energies.f32'), gRef = f32('denoiser_grads.f32');
    for (let i = 0; i < n; ++i) assert.ok(Math.abs(e[i] - eRef[i]) <= 1e-4 * Math.abs(eRef[i]), `${e[i]} vs ${eRef[i]}`);
    let gScale = 0;
    for (const v of gRef) gScale = Math.max(gScale, Math.abs(v));
    assert.ok(maxAbsDiff(g, gRef) <= 1e-4 * gScale, `gradient differs by ${maxAbsDiff(g, gRef)} of ${gScale}`);

    for (const form of ['annealed', 'ddim']) {
      const params = { form, steps: 6, levels: 3, eta: 0.5 };
      const run = (firstChain, count, slice) =>
        sample({ params, seed: 42, count, firstChain, slice, net: den }).images;
      const whole = run(0, 4, 1 << 30);
      assert.ok(bitsEqual(whole, run(0, 4, 1)), `${form}: slices differ`);
      const halves = new Float32Array(4 * d);
      halves.set(run(0, 2, 1 << 30), 0);
      halves.set(run(2, 2, 1 << 30), 2 * d);
      assert.ok(bitsEqual(whole, halves), `${form}: split chains differ`);
      const native = f32(`denoiser_sample_${form}.f32`);
      assert.ok(maxAbsDiff(whole, native) < 2e-3, `${form}: ${maxAbsDiff(whole, native)} from native`);
    }
  } finally {
    den.delete();
  }
});

// Autoguidance in wasm: a format-3 file loads with its weaker network, its own settings (w 2 up to
// sigma 5) give the native samples, split chains give the same bits, and w = 1 is another walk.
test('an autoguided model samples as natively, whatever the split, and w 1 is the model alone', () => {
  const ag = loadModel(M, new Uint8Array(readFileSync(path.join(work, 'autoguided.safetensors'))));
  assert.equal(ag.error(), '');
  try {
    const card = JSON.parse(ag.describe());
    assert.ok(card.autoguide.parameters > 0, JSON.stringify(card.autoguide));
    assert.equal(card.sampler.autoguide, 2);
    const d = ref.input_size;
    const params = { form: 'ddim', steps: 6 };
    const run = (firstChain, count, extra = {}) =>
      sample({ params: { ...params, ...extra }, seed: 42, count, firstChain, net: ag }).images;
    const whole = run(0, 4);
    const halves = new Float32Array(4 * d);
    halves.set(run(0, 2), 0);
    halves.set(run(2, 2), 2 * d);
    assert.ok(bitsEqual(whole, halves), 'split chains differ');
    const native = f32('autoguided_sample.f32');
    assert.ok(maxAbsDiff(whole, native) < 2e-3, `${maxAbsDiff(whole, native)} from native`);
    assert.ok(maxAbsDiff(whole, run(0, 4, { autoguide: 1 })) > 1e-2, 'w 1 walks the same way');
    const s = new M.Sampler(ag, JSON.stringify({ form: 'paper', autoguide: 2 }), 1);
    try {
      assert.match(s.error(), /autoguidance needs a noise-level sampler form/);
    } finally {
      s.delete();
    }
  } finally {
    ag.delete();
  }
});

// Inpainting, variations and blends in wasm (issue 15): the kept pixels end bit for bit on the
// kept image, and the same seed gives the same samples whether the chains run together or split
// in two (as the page's workers split a grid). Under a noise-level form a blend restarts part way,
// as a variation does.
test('inpainting keeps its pixels exactly, variations and blends restart part way, whatever the split', () => {
  const den = loadModel(M, new Uint8Array(readFileSync(path.join(work, 'denoiser.safetensors'))));
  assert.equal(den.error(), '');
  try {
    const d = ref.input_size;
    const image = f32('inputs.f32').subarray(0, d).map((v) => Math.max(-1, Math.min(1, v)));
    const other = f32('inputs.f32').subarray(d, 2 * d).map((v) => Math.max(-1, Math.min(1, v)));
    const mask = new Float32Array(d);
    for (let k = 0; k < d; ++k) mask[k] = (k % 192) < 96 ? 1 : 0;  // keep the left half
    const params = JSON.stringify({ form: 'ddim', steps: 6, eta: 0.5, resample: 2 });
    const run = (kind, first, count) => {
      const s = new M.Sampler(den, params, 42);
      const ip = toHeap(M, image), mp = toHeap(M, mask), op = toHeap(M, other);
      // Blend weights by chain index, so that a chain's start does not depend on the split.
      const tp = toHeap(M, Float32Array.from({ length: count }, (_, i) => (first + i) / 3));
      try {
        let steps = [];
        if (kind === 'inpaint') {
          assert.equal(s.setKeep(ip, mp), '');
          assert.equal(s.startUniform(count, first), '');
        } else if (kind === 'blend') {
          assert.match(s.startBlend(ip, op, tp, count, first, 1.5), /blend strength 1\.5\d* is outside \[0, 1\]/);
          assert.equal(s.startBlend(ip, op, tp, count, first, 0.5), '');
        } else {
          assert.equal(s.startVariation(ip, count, 0.5, first), '');
        }
        let last = null;
        assert.ok(s.run(1, (step, total, images) => { steps.push(step); last = images.slice(); }, 1000) >= 0, s.error());
        return { last, steps };
      } finally {
        M._free(ip); M._free(mp); M._free(op); M._free(tp);
        s.delete();
      }
    };
    for (const kind of ['inpaint', 'variation', 'blend']) {
      const whole = run(kind, 0, 4);
      const halves = new Float32Array(4 * d);
      halves.set(run(kind, 0, 2).last, 0);
      halves.set(run(kind, 2, 2).last, 2 * d);
      assert.ok(bitsEqual(whole.last, halves), `${kind}: split chains differ`);
      if (kind === 'inpaint') {
        for (let i = 0; i < 4; ++i)
          for (let k = 0; k < d; ++k)
            if (mask[k]) assert.equal(whole.last[i * d + k], image[k], `chain ${i} pixel ${k}`);
        assert.deepEqual(whole.steps, [0, 1, 2, 3, 4, 5, 6]);
      } else {
        // Strength 0.5 of 6 levels: from level round(0.5 * 5) = 3 (rounded half up), steps 3..6.
        assert.deepEqual(whole.steps, [3, 4, 5, 6]);
      }
    }
  } finally {
    den.delete();
  }
});

// Guided sampling in wasm (issue 15): a classifier's pull added to every step. The same seed gives
// the same samples bit for bit whether the chains run together, in slices or split in two (as the
// page's workers split a grid), the same as the native sampler within the unguided tolerance, and
// not the unguided samples; bad targets are refused with the names that would do.
test('guided sampling: split chains bit for bit, equal to native, and refused targets named', () => {
  assert.ok(ref.guide, 'the reference has no guided samples');
  const cls = loadModel(M, new Uint8Array(readFileSync(path.join(work, 'classifier.safetensors'))));
  const den = loadModel(M, new Uint8Array(readFileSync(path.join(work, 'denoiser.safetensors'))));
  assert.equal(cls.error(), '');
  assert.equal(den.error(), '');
  const d = ref.input_size;
  try {
    const cases = [
      { name: 'paper', net: model, params: { form: 'paper', steps: 10 },
        guide: ['cable_fan', 3000, 1, false], native: 'guided_paper.f32', unguided: 'sample_paper.f32' },
      { name: 'ddim on the denoised estimate', net: den, params: { form: 'ddim', steps: 6, eta: 0.5 },
        guide: ['arch:0.5,cable:0.5', 30000, 80, true], native: 'guided_ddim.f32' },
    ];
    for (const c of cases) {
      const run = (firstChain, count, slice, guide = c.guide) =>
        sample({ params: c.params, seed: 42, count, firstChain, slice, net: c.net,
                 guide: guide && [cls, ...guide] }).images;
      const whole = run(0, 4, 1 << 30);
      assert.ok(bitsEqual(whole, run(0, 4, 2)), `${c.name}: slices differ`);
      const halves = new Float32Array(4 * d);
      halves.set(run(0, 1, 1 << 30), 0);
      halves.set(run(1, 3, 1 << 30), d);
      assert.ok(bitsEqual(whole, halves), `${c.name}: split chains differ`);
      const err = maxAbsDiff(whole, f32(c.native));
      console.log(`# guided ${c.name}: max |wasm - native| pixel ${err.toExponential(2)}`);
      assert.ok(err <= 2e-3, `${c.name}: guided sample differs from native by ${err}`);
      // The guide changes the samples (a guide ignored would leave them as unguided).
      const unguided = run(0, 4, 1 << 30, null);
      console.log(`# guided ${c.name}: max |guided - unguided| ${maxAbsDiff(whole, unguided).toExponential(2)}`);
      // (The random classifier's pull is weak on the denoiser: 7e-2 there, 2 in the paper form,
      // against 1e-5 between wasm and native.)
      assert.ok(maxAbsDiff(whole, unguided) > 1e-2, `${c.name}: the guide did not change the samples`);
      if (c.unguided) assert.ok(maxAbsDiff(unguided, f32(c.unguided)) <= 2e-3);
      // Per-label weights: one-hot on cable_fan (index 4 of the 8 labels) is the mix 'cable_fan'.
      if (c.name === 'paper') {
        const weights = JSON.stringify([0, 0, 0, 0, 2, 0, 0, 0]);
        assert.ok(bitsEqual(whole, run(0, 4, 1 << 30, [weights, 3000, 1, false])), 'weights differ from the mix');
      }
    }

    // Refusals name the bad input and what would do.
    const s = new M.Sampler(model, JSON.stringify({ form: 'paper', steps: 3 }), 1);
    for (const [args, fragment] of [
      [['bridge_truss', 3000, 1, false], /unknown guide target 'bridge_truss' \(families arch, beam, cable, suspension; subtypes arch_deck/],
      [['arch:0', 3000, 1, false], /the share must be a number > 0/],
      [['cable_fan', -1, 1, false], /guide scale must be a finite number >= 0/],
      [['cable_fan', 3000, 0, false], /noise level must be > 0/],
      [['cable_fan', 3000, 1, true], /denoised estimate needs a noise-level sampler form .* this one is paper/],
      [['[1, 2]', 3000, 1, false], /one weight per label, 8 in all/],
      [['[0,0,0,0,0,0,0,0]', 3000, 1, false], /all zero/],
      [['[0,0,0,0,-1,0,0,1]', 3000, 1, false], /weight for cable_fan must be a number >= 0/],
    ]) {
      assert.match(s.setGuide(cls, ...args), fragment);
      assert.equal(s.guided(), false, `${args[0]}: a refused guide was set`);
    }
    assert.match(s.setGuide(model, 'cable_fan', 3000, 1, false), /must be a classifier/);
    assert.equal(s.setGuide(cls, 'cable_fan', 3000, 1, false), '');
    s.clearGuide();
    assert.equal(s.guided(), false);
    s.delete();
  } finally {
    cls.delete();
    den.delete();
  }
});
