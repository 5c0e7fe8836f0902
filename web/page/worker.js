// One sampling worker: holds the WebAssembly runtime and one model, and runs its share of a grid
// (chains firstChain .. firstChain + count - 1) in slices, returning to its event loop between
// slices so that a "stop" message acts within one slice.
//
// Messages in:  {type:'load', bytes, load}                -> {type:'loaded', card} | {type:'error'},
//                 then {type:'warmed', load, ms, error} once the warm-up walk (below) has run
//               {type:'run', job, params, seed, count, firstChain, start, guide, sliceMs}
//                 start: {kind:'uniform'} | {kind:'blend', a, b, t, strength} |
//                        {kind:'variation', image, strength} | {kind:'inpaint', image, mask}
//                 guide: null | {target, scale, sigma, onDenoised} (Sampler.setGuide with the
//                        guide classifier; target: "arch:0.5,suspension:0.5", "cable_fan", ...)
//               {type:'stop', job}
//               {type:'load-classifier', job, bytes}      -> {type:'classifier-loaded', job, card}
//               {type:'classify', job, images, n}         -> {type:'classified', job, results}
//               {type:'load-guide', job, bytes}           -> {type:'guide-loaded', job, card}
// Messages out: {type:'progress', job, steps: [{step, total, energies, sigma, level, levels, images?,
// denoised?, moves?}, ...]}, one per slice with each of its steps
// (moves: the noise-level forms, from their second step on: per chain, the RMS change of its
// denoised estimate since the step before, how far the drawing still moves)
// (images: each slice end, the chains' denoised estimates (denoised: true) once a noise-level
// form has made a step, else their states; sigma, level, levels: the annealed form's noise level, else 0)
//               {type:'done', job, step, stopped, msPerStep} | {type:'error', job, message}
/* global createEbmRuntime */
'use strict';

importScripts('ebm_runtime.js');

let runtime = null;
let model = null;
let classifier = null;  // a second model: labels finished samples with their family mix
let guide = null;  // a classifier in every worker: pulls the chains toward a type (guided sampling)
let job = null;  // {id, sampler, stopped, ...}

const ready = createEbmRuntime().then((M) => { runtime = M; });

function fail(id, error) {
  postMessage({ type: 'error', job: id, message: String(error && error.message ? error.message : error) });
}

function toHeap(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  const ptr = runtime._malloc(Math.max(bytes.length, 1));
  runtime.HEAPU8.set(bytes, ptr);
  return ptr;
}

function load(bytes, loadId) {
  if (model) { model.delete(); model = null; }
  const ptr = toHeap(new Uint8Array(bytes));
  let m;
  try {
    m = new runtime.Model(ptr, bytes.byteLength);
  } finally {
    runtime._free(ptr);
  }
  const error = m.error();
  if (error) {
    m.delete();
    postMessage({ type: 'error', job: null, message: error });
    return;
  }
  model = m;
  const card = JSON.parse(m.describe());
  postMessage({ type: 'loaded', card });
  setTimeout(() => warmUp(m, card, loadId), 0);
}

// A fresh worker's first steps run in the engine's baseline WebAssembly code until its optimizing
// compiler has the hot kernels, and then while it compiles them on the same two cores: the first
// Generate's first steps took about 200 ms longer than the rest (bench/README.md). One chain walks
// the model's own schedule in as few steps as visit each of its parts right after loading (while
// the visitor looks at the page; a Generate clicked meanwhile waits for it), so the kernels are
// compiled before the first Generate: the levels above split_sigma and three below it, down to
// sigma_min, where every layer is live (an add gated off at high noise is not) and the weaker
// network and the resampling rounds run. The worker reports how long it took and any error.
function warmUpParams(card) {
  const s = (card && card.sampler) || {};
  const levels = (s.split_levels || 0) + 3;
  if (s.form === 'annealed') return { levels, steps: levels + 1 };
  return { steps: levels };
}

// One chain's walk of `steps` steps with these settings; '' or why it could not run.
function walkOnce(m, params, steps) {
  const s = new runtime.Sampler(m, JSON.stringify(params), 0);
  try {
    const error = s.error() || s.startUniform(1, 0);
    if (error) return error;
    return s.run(0, () => true, steps) < 0 ? s.error() : '';
  } finally {
    s.delete();
  }
}

function warmUp(m, card, loadId) {
  if (m !== model) return;  // replaced meanwhile
  const t0 = performance.now();
  const params = warmUpParams(card);
  const error = walkOnce(m, params, params.steps);
  // Refused (it should not be: the page's test says so), the model's own settings for two steps.
  if (error) walkOnce(m, {}, 2);
  postMessage({ type: 'warmed', load: loadId, ms: performance.now() - t0, error });
}

function newModel(bytes) {
  const ptr = toHeap(new Uint8Array(bytes));
  try {
    return new runtime.Model(ptr, bytes.byteLength);
  } finally {
    runtime._free(ptr);
  }
}

// The classifier in msg.bytes with its card, or null after failing msg.job with `notOne` (or the
// file's own error).
function classifierFrom(msg, notOne) {
  const m = newModel(msg.bytes);
  const error = m.error();
  const card = error ? null : JSON.parse(m.describe());
  if (error || card.kind !== 'classifier') {
    m.delete();
    fail(msg.job, error || notOne);
    return null;
  }
  return { m, card };
}

function loadClassifier(msg) {
  if (classifier) { classifier.delete(); classifier = null; }
  const loaded = classifierFrom(msg, 'this model is not a classifier');
  if (!loaded) return;
  const { m, card } = loaded;
  classifier = m;
  postMessage({ type: 'classifier-loaded', job: msg.job, card });
}

// The guide may be replaced while a job's sampler still points at the old one: that one is
// deleted when the job ends.
function loadGuide(msg) {
  const loaded = classifierFrom(msg, 'this model is not a classifier, so it cannot guide');
  if (!loaded) return;
  const { m, card } = loaded;
  if (guide && !(job && job.guide === guide)) guide.delete();
  guide = m;
  postMessage({ type: 'guide-loaded', job: msg.job, card });
}

function endJob(j) {
  j.sampler.delete();
  if (j.guide && j.guide !== guide) j.guide.delete();
  if (job === j) job = null;
}

function classify(msg) {
  if (!classifier) { fail(msg.job, 'no classifier is loaded'); return; }
  const ptr = toHeap(msg.images);
  let results;
  try {
    results = JSON.parse(classifier.classify(ptr, msg.n));
  } finally {
    runtime._free(ptr);
  }
  if (results.error) { fail(msg.job, results.error); return; }
  postMessage({ type: 'classified', job: msg.job, results });
}

function startChains(sampler, msg) {
  const s = msg.start || { kind: 'uniform' };
  if (s.kind === 'uniform') return sampler.startUniform(msg.count, msg.firstChain);
  if (s.kind === 'blend') {
    const a = toHeap(s.a), b = toHeap(s.b), t = toHeap(s.t);
    try {
      return sampler.startBlend(a, b, t, msg.count, msg.firstChain, s.strength);
    } finally {
      runtime._free(a); runtime._free(b); runtime._free(t);
    }
  }
  if (s.kind === 'variation') {
    const image = toHeap(s.image);
    try {
      return sampler.startVariation(image, msg.count, s.strength, msg.firstChain);
    } finally {
      runtime._free(image);
    }
  }
  if (s.kind === 'inpaint') {
    const image = toHeap(s.image), mask = toHeap(s.mask);
    try {
      const error = sampler.setKeep(image, mask);
      return error || sampler.startUniform(msg.count, msg.firstChain);
    } finally {
      runtime._free(image); runtime._free(mask);
    }
  }
  return `unknown start '${s.kind}'`;
}

function finish(j, stopped) {
  const msPerStep = j.stepsRun ? j.busyMs / j.stepsRun : 0;
  postMessage({ type: 'done', job: j.id, step: j.sampler.stepsDone(), stopped, msPerStep });
  endJob(j);
}

// Yields to the event loop and then runs the next slice: a message to ourselves rather than
// setTimeout(0), which browsers clamp to 4 ms once nested five deep (a walk of the shipped model is
// one step per slice: 4 ms of every 250).
const nextSlice = new MessageChannel();
nextSlice.port1.onmessage = (e) => { if (job && job.id === e.data) slice(job); };

// Runs about sliceMs of steps, then yields to the event loop (where 'stop' can arrive).
function slice(j) {
  if (j !== job) return;
  if (j.stopped) { finish(j, true); return; }
  const steps = Math.max(1, Math.round(j.sliceMs / Math.max(j.msPerStep, 0.1)));
  const end = Math.min(j.sampler.totalSteps(), j.sampler.stepsDone() + steps);
  const t0 = performance.now();
  const before = j.sampler.stepsDone();
  // The slice's steps go out in one message: a message per step was hundreds per Generate with
  // fast steps, each a task on the page's main thread.
  const batch = [], transfer = [];
  const done = j.sampler.run(1, (step, total, images, energies, sigma, level, levels, denoised) => {
    const msg = { step, total, energies: energies.slice(), sigma, level, levels };
    if (denoised) {
      const n = energies.length, d = denoised.length / n;
      if (j.lastDenoised) {
        msg.moves = new Float32Array(n);
        for (let i = 0; i < n; ++i) {
          let sum = 0;
          for (let k = i * d; k < (i + 1) * d; ++k) sum += (denoised[k] - j.lastDenoised[k]) ** 2;
          msg.moves[i] = Math.sqrt(sum / d);
        }
      }
      (j.lastDenoised ||= new Float32Array(denoised.length)).set(denoised);
    }
    // While a noise-level walk refines, the denoised estimates are whole drawings from the first
    // levels on; the noisy states are not worth looking at. The last step's are the samples.
    if (step === 0 || step === end || step === total) {
      msg.images = (denoised || images).slice();
      msg.denoised = !!denoised;
    }
    transfer.push(msg.energies.buffer);
    if (msg.images) transfer.push(msg.images.buffer);
    if (msg.moves) transfer.push(msg.moves.buffer);
    batch.push(msg);
  }, steps);
  if (batch.length) postMessage({ type: 'progress', job: j.id, steps: batch }, transfer);
  if (done < 0) { fail(j.id, j.sampler.error()); endJob(j); return; }
  const ran = j.sampler.stepsDone() - before;
  if (ran > 0) {
    const ms = performance.now() - t0;
    j.busyMs += ms;
    j.stepsRun += ran;
    j.msPerStep = ms / ran;
  }
  if (j.sampler.finished()) { finish(j, false); return; }
  nextSlice.port2.postMessage(j.id);
}

function run(msg) {
  if (!model) { fail(msg.job, 'no model is loaded'); return; }
  if (job) { job.stopped = true; finish(job, true); }
  const sampler = new runtime.Sampler(model, JSON.stringify(msg.params || {}), msg.seed);
  let error = sampler.error();
  const g = msg.guide;
  if (!error && g) {
    error = guide ? sampler.setGuide(guide, g.target, g.scale, g.sigma, !!g.onDenoised)
      : 'guided sampling needs a guide classifier, and none is loaded';
  }
  if (!error) error = startChains(sampler, msg);
  if (error) { sampler.delete(); fail(msg.job, error); return; }
  job = { id: msg.job, sampler, guide: g ? guide : null, stopped: false, sliceMs: msg.sliceMs || 100,
          msPerStep: 50, busyMs: 0, stepsRun: 0 };
  slice(job);
}

onmessage = (e) => {
  const msg = e.data;
  ready.then(() => {
    try {
      if (msg.type === 'load') load(msg.bytes, msg.load);
      else if (msg.type === 'run') run(msg);
      else if (msg.type === 'stop') { if (job && (msg.job == null || job.id === msg.job)) job.stopped = true; }
      else if (msg.type === 'load-classifier') loadClassifier(msg);
      else if (msg.type === 'classify') classify(msg);
      else if (msg.type === 'load-guide') loadGuide(msg);
    } catch (err) {
      fail(msg.job ?? null, err);
    }
  }, (err) => fail(null, `the WebAssembly runtime did not start: ${err}`));
};
