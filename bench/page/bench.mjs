// The bench page: each session is one peer in one Web Worker (our runtime also as two workers
// splitting the batch, as the real page's pool does). bench/run.mjs drives it through
// window.bench from headless Chromium; every method returns plain numbers or strings.
import { maxRelativeError } from '../js/model.mjs';

const base = new URL('../', import.meta.url).href;  // .../bench/
const urls = {
  bench: base,
  site: new URL('../site/', base).href,
  model: new URL('../work/model.safetensors', base).href,
};
const sessions = new Map();
let nextId = 0;

function spawn() {
  const worker = new Worker(new URL('peer_worker.js', import.meta.url));
  const pending = new Map();
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    pending.delete(data.id);
    if (data.error) p.reject(new Error(data.error)); else p.resolve(data.result);
  };
  worker.onerror = (e) => { for (const p of pending.values()) p.reject(new Error(e.message)); };
  const call = (msg) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    worker.postMessage({ ...msg, id });
  });
  return { worker, call };
}

// The images of each worker: contiguous parts of the batch, the first ones one larger.
function parts(batch, workers) {
  const out = [];
  for (let w = 0, first = 0; w < workers; ++w) {
    const count = Math.floor(batch / workers) + (w < batch % workers ? 1 : 0);
    out.push({ first, count });
    first += count;
  }
  return out.filter((p) => p.count > 0);
}

async function f32(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return new Float32Array(await r.arrayBuffer());
}

window.bench = {
  isolated: () => self.crossOriginIsolated === true,

  // spec: {kind, threads, workers}; returns what the first worker says it runs.
  async create(name, spec) {
    const workers = Array.from({ length: spec.workers ?? 1 }, spawn);
    const infos = await Promise.all(workers.map((w) => w.call({ op: 'init', kind: spec.kind,
                                                                   threads: spec.threads, urls })));
    sessions.set(name, { spec, workers });
    return infos[0];
  },

  // Energies and gradients of the verification batch against the reference (our runtime in
  // node): {energy, grad} max relative errors.
  async verify(name) {
    const { workers } = sessions.get(name);
    const x = await f32(new URL('../work/verify_x.f32', base).href);
    const ref = await f32(new URL('../work/verify_ref.f32', base).href);
    const n = ref.length - x.length;  // ref: n energies, then n x D gradients
    const d = x.length / n;
    const split = parts(n, workers.length);
    const outs = await Promise.all(split.map((p, w) => workers[w].call({
      op: 'run', x: x.slice(p.first * d, (p.first + p.count) * d), n: p.count })));
    const e = new Float32Array(n);
    const g = new Float32Array(n * d);
    split.forEach((p, w) => { e.set(outs[w].e, p.first); g.set(outs[w].g, p.first * d); });
    return { energy: maxRelativeError(e, ref.subarray(0, n)), grad: maxRelativeError(g, ref.subarray(n)) };
  },

  // One timing sample: ms per image-step of energy + dE/dx calls on `batch` images.
  async sample(name, batch, minMs) {
    const { workers } = sessions.get(name);
    if (workers.length === 1) return workers[0].call({ op: 'time', batch, minMs });
    const split = parts(batch, workers.length);
    const once = await Promise.all(split.map((p, w) => workers[w].call({ op: 'calls', batch: p.count, k: 1 })));
    const k = Math.max(2, Math.ceil(minMs / Math.max(...once)));
    const t0 = performance.now();
    await Promise.all(split.map((p, w) => workers[w].call({ op: 'calls', batch: p.count, k })));
    return (performance.now() - t0) / (k * batch);
  },

  // One timing sample of whole Langevin steps (our runtime only): ms per image-step; with two
  // workers, the slower worker's time over the whole batch.
  async langevin(name, batch, minMs) {
    const { workers } = sessions.get(name);
    const split = parts(batch, workers.length);
    const probe = await workers[0].call({ op: 'langevin', batch: split[0].count, steps: 1 });
    const steps = Math.max(3, Math.ceil(minMs / (probe * split[0].count)));
    const per = await Promise.all(split.map((p, w) => workers[w].call({ op: 'langevin', batch: p.count, steps })));
    return Math.max(...per.map((ms, w) => ms * split[w].count)) / batch;
  },

  heap: (name) => sessions.get(name).workers[0].call({ op: 'heap' }),
  // GFLOP/s of our module's multiply-add probe in the session's first worker.
  ceiling: (name, minMs) => sessions.get(name).workers[0].call({ op: 'ceiling', minMs }),
};
document.getElementById('log').textContent = `ready; crossOriginIsolated: ${self.crossOriginIsolated}`;
