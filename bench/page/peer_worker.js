// One benchmark peer in a Web Worker (classic, so the UMD builds of TensorFlow.js and our
// Emscripten module load with importScripts; the shared ES modules come in with import()).
// Messages in: {id, op, ...}; out: {id, result} or {id, error}.
//   init {kind: 'ours'|'tfjs'|'ort', threads, urls}   -> {info, isolated, threads}
//   run {x, n}                  -> {e, g}        (the agreement check)
//   time {batch, minMs}         -> ms per image-step, calls timed inside the worker
//   calls {batch, k}            -> ms for k calls (the page times two workers side by side)
//   langevin {batch, steps}     -> ms per image-step of whole Langevin steps (ours only)
//   heap                        -> bytes of the wasm heap (ours only)
//   ceiling {minMs}             -> GFLOP/s of the module's multiply-add probe (ours only)
/* global createEbmRuntime, tf */
'use strict';

let peer = null;
let lib = null;  // bench/js/peers.mjs
let images = null;
let D = 0;

function batchImages(batch) {
  if (!images || images.length < batch * D) images = lib.randomImages(7, batch * D);
  return images;
}

async function init({ kind, threads, urls }) {
  lib = { ...(await import(urls.bench + 'js/peers.mjs')), ...(await import(urls.bench + 'js/model.mjs')) };
  const bytes = new Uint8Array(await (await fetch(urls.model)).arrayBuffer());
  const isolated = self.crossOriginIsolated === true;
  const nm = urls.bench + 'node_modules/';
  if (kind === 'ours') {
    importScripts(urls.site + 'ebm_runtime.js');
    const M = await createEbmRuntime({ locateFile: (p) => urls.site + p });
    peer = lib.createOursPeer(M, bytes);
    D = peer.model.inputSize();
    return { info: peer.info, isolated, threads: 1 };
  }
  // The peers below build the network from bench/js/model.mjs's reading of the file (a
  // noise-conditional model at sigma 0.5, as ours), which refuses what they cannot express,
  // with the reason.
  const model = lib.loadEbmModel(bytes);
  D = model.input.c * model.input.h * model.input.w;
  if (kind === 'tfjs') {
    // tfjs-backend-wasm caps its thread pool at navigator.hardwareConcurrency / 2 (it assumes two
    // hyperthreads per core), so on a 2-vCPU machine it never uses more than one thread. To
    // measure it with `threads` threads, this worker presents 2 x threads logical cores to it.
    let presented = '';
    if (threads > 1 && 2 * threads > navigator.hardwareConcurrency) {
      Object.defineProperty(WorkerNavigator.prototype, 'hardwareConcurrency', { get: () => 2 * threads });
      presented = `, navigator.hardwareConcurrency presented as ${2 * threads}`;
    }
    importScripts(nm + '@tensorflow/tfjs/dist/tf.min.js',
                  nm + '@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js');
    tf.wasm.setWasmPaths(nm + '@tensorflow/tfjs-backend-wasm/dist/');
    tf.wasm.setThreadsCount(threads);
    if (!(await tf.setBackend('wasm'))) throw new Error('TF.js: the wasm backend did not start');
    await tf.ready();
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const mt = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    const actual = tf.wasm.getThreadsCount();
    const info = `TF.js ${tf.version.tfjs}, wasm backend, ${simd ? 'SIMD' : 'no SIMD'}, ` +
                 `${mt ? 'threaded build' : 'single-threaded build'}, ${actual} thread(s)${presented}`;
    peer = lib.createTfjsPeer(tf, model, info);
    return { info, isolated, threads: actual };
  }
  if (kind === 'ort') {
    const ort = await import(nm + 'onnxruntime-web/dist/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = nm + 'onnxruntime-web/dist/';
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.proxy = false;
    const info = `onnxruntime-web ${ort.env.versions.web}, wasm (SIMD, threaded build), ` +
                 `numThreads ${threads}`;
    peer = await lib.createOrtPeer(ort, model, { executionProviders: ['wasm'] }, info);
    return { info, isolated, threads: ort.env.wasm.numThreads };
  }
  throw new Error(`unknown peer kind ${kind}`);
}

async function handle(msg) {
  switch (msg.op) {
    case 'init': return init(msg);
    case 'run': {
      const { e, g } = await peer.run(msg.x, msg.n);
      return { e: Float32Array.from(e), g: Float32Array.from(g) };
    }
    case 'time': return lib.timeCalls(peer, batchImages(msg.batch), msg.batch, msg.minMs);
    case 'calls': {
      const x = batchImages(msg.batch);
      peer.warm ??= new Set();
      if (!peer.warm.has(msg.batch)) {
        await peer.run(x, msg.batch);
        await peer.run(x, msg.batch);
        peer.warm.add(msg.batch);
      }
      const t0 = performance.now();
      for (let i = 0; i < msg.k; ++i) await peer.run(x, msg.batch);
      return performance.now() - t0;
    }
    case 'langevin': return peer.langevin(msg.batch, msg.steps);
    case 'heap': return peer.heapBytes();
    case 'ceiling': return peer.ceiling(msg.minMs);
    default: throw new Error(`unknown op ${msg.op}`);
  }
}

self.onmessage = async ({ data }) => {
  try {
    postMessage({ id: data.id, result: await handle(data) });
  } catch (e) {
    postMessage({ id: data.id, error: String(e && e.stack ? e.stack : e) });
  }
};
