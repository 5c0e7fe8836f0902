// The peer benchmark (issue 7): our runtime beside TensorFlow.js, onnxruntime-web, LibTorch and
// onnxruntime-node on the same weights, in node, in headless Chromium and natively. Every peer's
// energies and input gradients are checked against our runtime first; a peer that disagrees is
// reported and not timed. Then all peers are timed side by side in interleaved rounds (each
// round visits every peer at every batch size, in a rotated order), so slow drifts of the
// machine's load touch all of them alike; the table holds the medians over the rounds.
//
//   node bench/run.mjs [--model M.safetensors] [--rounds 5] [--min-ms 250] [--quick]
//                      [--work build/bench] [--only chromium,node,native]
// bench/run.sh builds what this needs first; see bench/README.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { forwardFlops, loadEbmModel, maxRelativeError, randomImages } from './js/model.mjs';
import { createOrtPeer, createOursPeer, createTfjsPeer, timeCalls } from './js/peers.mjs';
import { startServer } from './js/serve.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const require = createRequire(import.meta.url);

const { values: opt } = parseArgs({
  options: {
    model: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    'min-ms': { type: 'string', default: '250' },
    quick: { type: 'boolean', default: false },
    work: { type: 'string', default: path.join(root, 'build', 'bench') },
    only: { type: 'string', default: 'chromium,node,native' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(0, 12).join('\n'));
  process.exit(0);
}
const ROUNDS = opt.quick ? 1 : Number(opt.rounds);
const MIN_MS = opt.quick ? 150 : Number(opt['min-ms']);
const BATCHES = [1, 8, 32];
const TOLERANCE = 1e-4;  // max relative error of energies and of gradients against our runtime
const VERIFY_COUNT = 5;  // odd, so two workers split it unevenly
const only = new Set(opt.only.split(','));
const bin = (p) => path.join(root, 'build', 'release', p);
const SITE = path.join(root, 'build', 'site');
const WORK = path.resolve(opt.work);
mkdirSync(WORK, { recursive: true });

const log = (...a) => console.log(...a);
const loads = [];
const noteLoad = (when) => loads.push({ when, loadavg: os.loadavg().map((v) => +v.toFixed(2)) });
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const started = Date.now();
noteLoad('start');

// ---- the model and the verification batch --------------------------------------------------

const modelPath = path.join(WORK, 'model.safetensors');
if (opt.model) {
  copyFileSync(opt.model, modelPath);
} else {
  execFileSync(bin('tests/runtime/make_test_model'),
               [path.join(root, 'models/presets/paper.json'), modelPath, '7', 'f32']);
}
const modelBytes = new Uint8Array(readFileSync(modelPath));

const loadOurs = async () => {
  const M = await require(path.join(SITE, 'ebm_runtime.js'))({
    wasmBinary: readFileSync(path.join(SITE, 'ebm_runtime.wasm')) });
  // The Emscripten glue rethrows every uncaught error with its whole minified source; our own
  // errors are reported below.
  process.removeAllListeners('uncaughtException');
  process.removeAllListeners('unhandledRejection');
  return M;
};
const oursNode = createOursPeer(await loadOurs(), modelBytes);
// The JavaScript peers build the network from bench/js/model.mjs's reading of the file (format 1
// layer lists and format 2 graphs: a noise-conditional model is run at sigma 0.5 by every peer);
// what they cannot express is listed with the reason.
let model = null, jsRefusal = null;
try {
  model = loadEbmModel(modelBytes);
} catch (e) {
  jsRefusal = `not built for this model: ${e.message}`;
}
const { input } = oursNode.description;
const D = oursNode.model.inputSize();
// An image-step is a forward and a backward pass: 4 FLOP per multiply-add of the forward pass.
const mflop = model ? (2 * forwardFlops(model)) / 1e6 : (4 * oursNode.description.multiply_adds) / 1e6;
log(`model: ${opt.model ?? 'random-weights paper model (make_test_model, seed 7, F32)'}; input ` +
    `${input.channels}x${input.height}x${input.width}; ${mflop.toFixed(1)} MFLOP per image-step` +
    `${oursNode.description.energy ? '; noise-conditional, timed at sigma 0.5' : ''}`);
const jsModel = () => {
  if (!model) throw new Error(jsRefusal);
  return model;
};
const verifyX = randomImages(2024, VERIFY_COUNT * D);
const ref = await oursNode.run(verifyX, VERIFY_COUNT);
writeFileSync(path.join(WORK, 'verify_x.f32'), verifyX);
const refBytes = new Float32Array(VERIFY_COUNT + VERIFY_COUNT * D);
refBytes.set(ref.e);
refBytes.set(ref.g, VERIFY_COUNT);
writeFileSync(path.join(WORK, 'verify_ref.f32'), refBytes);
const f32file = (p) => { const b = readFileSync(p); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };

// ---- sessions: one peer at one thread count in one place -------------------------------------
// {id, peer, where, threads, op: 'grad'|'langevin', info, verified: {energy, grad} | null,
//  error, sample(batch) -> ms per image-step (undefined: not measured at this batch)}
const sessions = [];
function addSession(s) {
  const ok = s.verified && s.verified.energy <= TOLERANCE && s.verified.grad <= TOLERANCE;
  if (s.verified && !ok) s.error ??= 'disagrees with our runtime: not timed';
  s.ok = ok && !s.error;
  sessions.push(s);
  const v = s.verified ? `energy ${s.verified.energy.toExponential(2)}, grad ${s.verified.grad.toExponential(2)}` : '';
  log(`  ${s.ok ? 'ok  ' : 'FAIL'} ${s.where.padEnd(8)} ${s.peer}, ${s.threads} thread(s)` +
      `${s.op === 'langevin' ? ' (Langevin steps)' : ''}: ${v}${s.error ? ` -- ${s.error}` : ''}` +
      `${s.info ? `\n         ${s.info}` : ''}`);
}
const failed = (where, peer, threads, e) =>
  addSession({ where, peer, threads, op: 'grad', verified: null, error: String(e?.message ?? e).split('\n')[0] });

async function verifyPeer(peer) {
  const out = await peer.run(verifyX, VERIFY_COUNT);
  return { energy: maxRelativeError(out.e, ref.e), grad: maxRelativeError(out.g, ref.g) };
}

log(`\nverifying energies and input gradients of ${VERIFY_COUNT} uniform images against our ` +
    `runtime (wasm, node); tolerance ${TOLERANCE} max relative error (largest |a - b| over the largest |ref|)`);

// node: our wasm runtime, TF.js wasm, onnxruntime-web (wasm) and onnxruntime-node (native).
const versions = { node: process.version };
if (only.has('node')) {
  addSession({ where: 'node', peer: 'ours', threads: 1, op: 'grad', info: `${oursNode.info} (the reference)`,
               verified: { energy: 0, grad: 0 }, sample: (b) => timeCalls(oursNode, randomImages(7, b * D), b, MIN_MS) });
  addSession({ where: 'node', peer: 'ours', threads: 1, op: 'langevin', verified: { energy: 0, grad: 0 },
               sample: (b) => oursNode.langevin(b, Math.max(3, Math.ceil(MIN_MS / (8 * b)))) });
  try {
    const tf = require('@tensorflow/tfjs');
    require('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
    versions.tfjs = tf.version.tfjs;
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const peer = createTfjsPeer(tf, jsModel(), `TF.js ${tf.version.tfjs}, wasm backend, ${simd ? 'SIMD' : 'no SIMD'}, ` +
                                'single-threaded build (tfjs-backend-wasm has no threads in node)');
    addSession({ where: 'node', peer: 'tfjs', threads: 1, op: 'grad', info: peer.info,
                 verified: await verifyPeer(peer), sample: (b) => timeCalls(peer, randomImages(7, b * D), b, MIN_MS) });
  } catch (e) { failed('node', 'tfjs', 1, e); }
  try {
    const ort = await import('onnxruntime-web');
    ort.env.wasm.numThreads = 1;
    versions['onnxruntime-web'] = ort.env.versions.web;
    const peer = await createOrtPeer(ort, jsModel(), { executionProviders: ['wasm'] },
                                     `onnxruntime-web ${ort.env.versions.web}, wasm, numThreads 1`);
    addSession({ where: 'node', peer: 'ort-web', threads: 1, op: 'grad', info: peer.info,
                 verified: await verifyPeer(peer), sample: (b) => timeCalls(peer, randomImages(7, b * D), b, MIN_MS) });
  } catch (e) { failed('node', 'ort-web', 1, e); }
}
if (only.has('native')) {
  for (const threads of [1, 2]) {
    try {
      const ort = require('onnxruntime-node');
      versions['onnxruntime-node'] = ort.env.versions.node;
      const peer = await createOrtPeer(ort, jsModel(), { intraOpNumThreads: threads, interOpNumThreads: 1 },
                                       `onnxruntime-node ${ort.env.versions.node}, CPU, intraOpNumThreads ${threads}`);
      addSession({ where: 'native', peer: 'ort-node', threads, op: 'grad', info: peer.info,
                   verified: await verifyPeer(peer), sample: (b) => timeCalls(peer, randomImages(7, b * D), b, MIN_MS) });
    } catch (e) { failed('native', 'ort-node', threads, e); }
  }
}

// native: bench_peers checks LibTorch against our native runtime itself (and refuses to run
// otherwise); here both are also checked against the wasm reference. One invocation per round
// and batch times all six native sessions.
const nativeSessions = [];
if (only.has('native')) {
  const prefix = path.join(WORK, 'verify_native');
  const r = spawnSync(bin('bench/bench_peers'), ['--model', modelPath, '--verify-input', path.join(WORK, 'verify_x.f32'),
                                                 '--verify-out', prefix, '--tolerance', String(TOLERANCE),
                                                 '--benchmark_filter=^$'], { encoding: 'utf8' });
  const selfCheck = (r.stdout + r.stderr).match(/verify: .*/)?.[0] ?? '';
  const both = (file) => {
    const v = f32file(file);
    return { energy: maxRelativeError(v.subarray(0, VERIFY_COUNT), ref.e), grad: maxRelativeError(v.subarray(VERIFY_COUNT), ref.g) };
  };
  const runtimeV = r.status === 0 ? both(`${prefix}.runtime.f32`) : null;
  const torchV = r.status === 0 ? both(`${prefix}.torch.f32`) : null;
  const error = r.status === 0 ? undefined : `bench_peers: ${(r.stderr || r.stdout).trim().split('\n').pop()}`;
  versions.libtorch = '1.13.1 (Debian, OpenBLAS)';
  for (const threads of [1, 2]) {
    for (const [peer, bm, v, op, info] of [
      ['ours', 'BM_RuntimeEnergyGrad', runtimeV, 'grad', 'bridge-ebm runtime, native (-O3 -march=native), batch split over threads'],
      ['libtorch', 'BM_TorchEnergyGrad', torchV, 'grad', `LibTorch 1.13.1, torch::set_num_threads(${threads}); ${selfCheck.replace('verify: ', 'its own check: ')}`],
      ['ours', 'BM_RuntimeLangevin', runtimeV, 'langevin', undefined]]) {
      const s = { where: 'native', peer, threads, op, info, verified: v, error, bm: `${bm}/batch:BATCH/threads:${threads}/real_time` };
      addSession(s);
      nativeSessions.push(s);
    }
  }
}

// Chromium: the bench page, each peer in its own worker(s), cross-origin isolated.
let browser = null;
let server = null;
let page = null;
if (only.has('chromium')) {
  try {
    server = await startServer({ '/bench/': here, '/site/': SITE, '/work/': WORK });
    const { chromium } = await import('playwright-core');
    const profile = mkdtempSync(path.join(os.tmpdir(), 'ebm-bench-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    browser.profile = profile;
    page = await browser.newPage();
    page.on('pageerror', (e) => log(`  page error: ${e}`));
    await page.goto(`${server.url}/bench/page/index.html`);
    await page.waitForFunction(() => window.bench);
    // The user agent says 156.0.0.0 (reduced); the DevTools protocol gives the full version.
    const cdp = await page.context().newCDPSession(page);
    versions.chromium = (await cdp.send('Browser.getVersion')).product.replace(/^\D*/, '');
    const isolated = await page.evaluate(() => window.bench.isolated());
    if (!isolated) log('  the bench page is not cross-origin isolated: no wasm threads in Chromium');
    const specs = [
      ['ours', { kind: 'ours', threads: 1, workers: 1 }, 1],
      ['ours', { kind: 'ours', threads: 1, workers: 2 }, 2],
      ['tfjs', { kind: 'tfjs', threads: 1 }, 1],
      ['tfjs', { kind: 'tfjs', threads: 2 }, 2],
      ['ort-web', { kind: 'ort', threads: 1 }, 1],
      ['ort-web', { kind: 'ort', threads: 2 }, 2],
    ];
    for (const [peer, spec, threads] of specs) {
      const name = `${peer}.${threads}`;
      try {
        const init = await page.evaluate(([n, s]) => window.bench.create(n, s), [name, spec]);
        const verified = await page.evaluate((n) => window.bench.verify(n), name);
        const info = spec.workers === 2 ? `${init.info}, in each of 2 workers splitting the batch` : init.info;
        const error = init.threads !== threads && spec.workers !== 2 ? `asked for ${threads} threads, got ${init.threads}` : undefined;
        const sample = (b) => page.evaluate(([n, bb, ms]) => window.bench.sample(n, bb, ms), [name, b, MIN_MS]);
        addSession({ where: 'chromium', peer, threads, op: 'grad', info, verified, error, sample, name });
        if (peer === 'ours') {
          addSession({ where: 'chromium', peer, threads, op: 'langevin', verified, name,
                       sample: (b) => page.evaluate(([n, bb, ms]) => window.bench.langevin(n, bb, ms), [name, b, MIN_MS]) });
        }
      } catch (e) { failed('chromium', peer, threads, e); }
    }
  } catch (e) { failed('chromium', 'the bench page', 1, e); }
}

// ---- timing ----------------------------------------------------------------------------------

// Our runtime never splits one image: at batch 1 its "2 threads" would be its 1-thread run.
const measures = (s, b) => s.ok && !(s.peer === 'ours' && s.threads === 2 && b === 1);
const samples = new Map(sessions.map((s) => [s, new Map(BATCHES.map((b) => [b, []]))]));

function runNative(batch) {
  const todo = nativeSessions.filter((s) => measures(s, batch));
  if (!todo.length) return;
  const r = spawnSync(bin('bench/bench_peers'), [
    '--model', modelPath, `--benchmark_filter=(/batch:${batch}/)|(^BM_MultiplyAddCeiling)`,
    `--benchmark_min_time=${MIN_MS / 1000}`, '--benchmark_format=json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`bench_peers failed: ${r.stderr}`);
  const results = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).benchmarks;
  const ceiling = results.find((x) => x.name === 'BM_MultiplyAddCeiling/real_time');
  if (!ceiling || ceiling.error_occurred || !(ceiling.flops > 0)) {
    throw new Error(`bench_peers: no multiply-add ceiling (${ceiling?.error_message ?? 'not reported'})`);
  }
  ceilings.get('native').push(ceiling.flops / 1e9);
  for (const s of todo) {
    const name = s.bm.replace('BATCH', batch);
    const bm = results.find((x) => x.name === name);
    if (!bm) throw new Error(`bench_peers did not report ${name}`);
    if (bm.time_unit !== 'ms') throw new Error(`unexpected time unit ${bm.time_unit}`);
    samples.get(s).get(batch).push(bm.real_time / batch);
  }
}

// The arithmetic's ceiling in each place (GFLOP/s of our runtime's multiply-add probe, one
// thread), sampled every round beside the peers: natively with each batch's bench_peers run, in
// node and in a Chromium worker of our module here.
const ceilings = new Map([['chromium', []], ['node', []], ['native', []]]);
const ceilingProbes = [];
if (only.has('node')) ceilingProbes.push(['node', async () => oursNode.ceiling(MIN_MS)]);
if (page && sessions.some((s) => s.where === 'chromium' && s.peer === 'ours' && s.threads === 1 && s.ok)) {
  ceilingProbes.push(['chromium', () => page.evaluate(([n, ms]) => window.bench.ceiling(n, ms), ['ours.1', MIN_MS])]);
}

const timed = sessions.filter((s) => s.ok && s.sample);
log(`\ntiming ${timed.length + nativeSessions.filter((s) => s.ok).length} sessions at batch ${BATCHES.join(', ')}: ` +
    `${ROUNDS} round(s), each sample at least ${MIN_MS} ms (and two calls), order rotated every round`);
for (let round = 0; round < ROUNDS; ++round) {
  noteLoad(`round ${round + 1}`);
  const t0 = Date.now();
  for (const [where, probe] of ceilingProbes) ceilings.get(where).push(await probe());
  for (const b of BATCHES) {
    const items = [...timed.map((s) => async () => {
      if (measures(s, b)) samples.get(s).get(b).push(await s.sample(b));
    }), async () => runNative(b)];
    const shift = round % items.length;
    for (const item of [...items.slice(shift), ...items.slice(0, shift)]) await item();
  }
  log(`  round ${round + 1}/${ROUNDS}: ${((Date.now() - t0) / 1000).toFixed(0)} s, load average ${os.loadavg()[0].toFixed(2)}`);
}
noteLoad('end of timing');

// ---- memory ----------------------------------------------------------------------------------

const memory = {};
{
  // Fresh modules: the model and one energy-and-gradient call on 32 images; the model and one
  // Langevin step of 32 chains (the page's workers only sample).
  const fresh = createOursPeer(await loadOurs(), modelBytes);
  memory.wasm_heap_model_loaded_bytes = fresh.heapBytes();
  await fresh.run(randomImages(5, 32 * D), 32);
  memory.wasm_heap_energy_grad_batch32_bytes = fresh.heapBytes();
  const sampling = createOursPeer(await loadOurs(), modelBytes);
  sampling.langevin(32, 1);
  memory.wasm_heap_langevin_32_chains_bytes = sampling.heapBytes();
  memory.wasm_heap_node_after_bench_bytes = oursNode.heapBytes();
  if (page) {
    try { memory.wasm_heap_chromium_worker_after_bench_bytes = await page.evaluate(() => window.bench.heap('ours.1')); } catch { /* not created */ }
  }
  const rss = (cmd, args) => {
    const r = spawnSync('/usr/bin/time', ['-f', '%M', cmd, ...args], { encoding: 'utf8' });
    return r.status === 0 ? Number(r.stderr.trim().split('\n').pop()) * 1024 : null;
  };
  if (only.has('native')) {
    memory.native_ebm_sample_32_chains_peak_rss_bytes = rss(bin('runtime/ebm-sample'), [
      '--model', modelPath, '--count', '32', '--steps', '20', '--threads', '1', '--quiet',
      '--out', path.join(WORK, 'samples.png')]);
    memory.native_bench_peers_libtorch_batch32_peak_rss_bytes = rss(bin('bench/bench_peers'), [
      '--model', modelPath, '--benchmark_filter=BM_TorchEnergyGrad/batch:32/threads:1/', '--benchmark_min_time=0.05']);
  }
}

await browser?.close();
if (browser?.profile) rmSync(browser.profile, { recursive: true, force: true });
await server?.close();

// ---- report ----------------------------------------------------------------------------------

const LABEL = {
  'chromium/tfjs': 'TensorFlow.js 4.22, wasm backend, SIMD',
  'chromium/ort-web': 'onnxruntime-web 1.30, hand-built gradient graph',
  'chromium/ours': 'our wasm runtime (1 worker; 2 workers)',
  'node/tfjs': 'TensorFlow.js 4.22, wasm backend, SIMD',
  'node/ort-web': 'onnxruntime-web 1.30 (wasm), hand-built gradient graph',
  'node/ours': 'our wasm runtime',
  'native/libtorch': 'LibTorch 1.13 with Debian\'s OpenBLAS (autograd)',
  'native/ort-node': 'onnxruntime-node 1.30, hand-built gradient graph',
  'native/ours': 'our native runtime',
};
const WHERE = { chromium: 'Chromium', node: 'node 20', native: 'native' };
const med = (s, b) => (samples.get(s)?.get(b)?.length ? median(samples.get(s).get(b)) : null);
const find = (where, peer, threads, op = 'grad') =>
  sessions.find((s) => s.where === where && s.peer === peer && s.threads === threads && s.op === op);
const fmt = (v) => (v == null ? '—' : v >= 10 ? v.toFixed(1) : v.toFixed(2));

// Every (where, peer) the tables list, in their order.
const PEER_ORDER = [['chromium', 'tfjs'], ['chromium', 'ort-web'], ['chromium', 'ours'], ['node', 'tfjs'],
                    ['node', 'ort-web'], ['node', 'ours'], ['native', 'libtorch'], ['native', 'ort-node'],
                    ['native', 'ours']];

function table(op) {
  const rows = [];
  const order = op === 'grad' ? PEER_ORDER : PEER_ORDER.filter(([, peer]) => peer === 'ours');
  const head = `| ${op === 'grad' ? 'peer' : 'Langevin step'} | where | ${BATCHES.map((b) => `batch ${b}, 1 thread | batch ${b}, 2 threads`).join(' | ')} |`;
  rows.push(head, `| --- | --- | ${BATCHES.map(() => '---: | ---:').join(' | ')} |`);
  for (const [where, peer] of order) {
    const one = find(where, peer, 1, op);
    const two = find(where, peer, 2, op);
    if (!one && !two) continue;
    const cell = (s, b) => {
      if (!s) return '—';
      if (!s.ok) return 'not verified';
      return fmt(med(s, b));
    };
    rows.push(`| ${op === 'grad' ? LABEL[`${where}/${peer}`] : 'our runtime'} | ${WHERE[where]} | ${BATCHES.map((b) => `${cell(one, b)} | ${cell(two, b)}`).join(' | ')} |`);
  }
  return rows.join('\n');
}

// Peer time over our runtime's time in the same place, batch and thread count (at batch 1 with
// 2 threads, over our 1-thread time: one image is never split).
function ratios() {
  const rows = [`| peer / our runtime | where | ${BATCHES.map((b) => `batch ${b}, 1 thread | batch ${b}, 2 threads`).join(' | ')} |`,
                `| --- | --- | ${BATCHES.map(() => '---: | ---:').join(' | ')} |`];
  for (const [where, peer] of PEER_ORDER.filter(([, p]) => p !== 'ours')) {
    const cells = [];
    for (const b of BATCHES) {
      for (const t of [1, 2]) {
        const s = find(where, peer, t);
        const ours = find(where, 'ours', b === 1 ? 1 : t) ?? find(where, 'ours', 1);
        const v = s && ours && med(s, b) != null && med(ours, b) != null ? med(s, b) / med(ours, b) : null;
        cells.push(v == null ? '—' : `${v.toFixed(2)}x`);
      }
    }
    if (cells.some((c) => c !== '—')) rows.push(`| ${LABEL[`${where}/${peer}`]} | ${WHERE[where]} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

// Each place's ceiling (median GFLOP/s of the probe) and what share of it each peer's one-thread
// time reaches: the image-step's FLOP at the ceiling over the peer's time.
function ceilingReport() {
  const places = [...ceilings].filter(([, v]) => v.length);
  if (!places.length) return '';
  const ms = (where) => mflop / median(ceilings.get(where));  // MFLOP / GFLOP/s = ms
  const rows = ['| where | ceiling, GFLOP/s (one thread) | an image-step at the ceiling, ms |', '| --- | ---: | ---: |',
    ...places.map(([where, v]) => `| ${WHERE[where]} | ${median(v).toFixed(1)} (${Math.min(...v).toFixed(1)} to ${Math.max(...v).toFixed(1)}) | ${ms(where).toFixed(2)} |`)];
  const shares = [`| peer | where | ${BATCHES.map((b) => `batch ${b}, 1 thread`).join(' | ')} |`,
                  `| --- | --- | ${BATCHES.map(() => '---:').join(' | ')} |`];
  for (const [where, peer] of PEER_ORDER) {
    const s = find(where, peer, 1);
    if (!s?.ok || !ceilings.get(where).length) continue;
    const cells = BATCHES.map((b) => (med(s, b) == null ? '—' : `${((100 * ms(where)) / med(s, b)).toFixed(0)}%`));
    shares.push(`| ${LABEL[`${where}/${peer}`]} | ${WHERE[where]} | ${cells.join(' | ')} |`);
  }
  return [
    `The arithmetic's ceiling in each place: our runtime's multiply-add probe (independent chains ` +
    'a = a b + c in every lane of its GEMM\'s vectors, one thread; fused multiply-adds natively, a multiply and an add ' +
    `in WebAssembly), medians of ${ROUNDS} round(s), and the image-step's ${mflop.toFixed(1)} MFLOP at that rate: ` +
    'the least time the direct algorithm can take on one thread.', '', rows.join('\n'), '',
    'Share of that ceiling each peer reaches on one thread (the ceiling\'s time over the peer\'s; Winograd\'s forms ' +
    'do fewer multiply-adds, so a share may pass 100%):', '', shares.join('\n'), ''].join('\n');
}

const mib = (v) => (v == null ? 'n/a' : `${(v / 2 ** 20).toFixed(1)} MiB`);
const memoryLine = `wasm heap (Module.HEAPU8.length) of a fresh module: model loaded ${mib(memory.wasm_heap_model_loaded_bytes)}, ` +
  `after energy and gradient of 32 images ${mib(memory.wasm_heap_energy_grad_batch32_bytes)}, after a Langevin step of 32 chains ` +
  `${mib(memory.wasm_heap_langevin_32_chains_bytes)}; after this whole run: node ${mib(memory.wasm_heap_node_after_bench_bytes)}, ` +
  `Chromium worker ${mib(memory.wasm_heap_chromium_worker_after_bench_bytes)}. Native peak RSS: ebm-sample, 32 chains, ` +
  `one thread ${mib(memory.native_ebm_sample_32_chains_peak_rss_bytes)}; bench_peers timing LibTorch at batch 32 (the process ` +
  `also holds our runtime's network) ${mib(memory.native_bench_peers_libtorch_batch32_peak_rss_bytes)}.`;

// What ran and how well it agreed with our runtime.
const verification = ['| where | peer | threads | what ran | energies | gradients |', '| --- | --- | ---: | --- | ---: | ---: |',
  ...sessions.filter((s) => s.op === 'grad').map((s) => `| ${WHERE[s.where]} | ${s.peer} | ${s.threads} | ${s.info ?? ''}` +
    `${s.error ? ` **${s.error}**` : ''} | ${s.verified ? s.verified.energy.toExponential(1) : '—'} | ` +
    `${s.verified ? s.verified.grad.toExponential(1) : '—'} |`)].join('\n');

// The core, not only its marketing name: "AMD EPYC" under KVM was a Zen 5 in one session, a Zen 4
// (whose 512-bit multiply-adds run as two halves: half the ceiling) in the next (bench/README.md,
// "A Zen 4 core"). From /proc/cpuinfo where Linux has it.
const cpuinfo = (() => {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const field = (key) => text.match(new RegExp(`^${key}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim();
    const family = field('cpu family'), model = field('model');
    return family && model ? `, family ${family} model ${model}` : '';
  } catch {
    return '';
  }
})();
const cpu = (os.cpus()[0]?.model ?? 'unknown CPU') + cpuinfo;
const date = new Date().toISOString().slice(0, 10);
const md = [
  `${date}, ${cpu}, ${os.cpus().length} logical CPUs, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `${versions.chromium ? `Chromium ${versions.chromium}, ` : ''}node ${process.version}; load average at start ` +
  `${loads[0].loadavg.join(' ')}, at the end ${loads[loads.length - 1].loadavg.join(' ')}; ` +
  `${ROUNDS} round(s) of samples of at least ${MIN_MS} ms; medians, ms per image-step (energy + dE/dx of one image; ` +
  `${mflop.toFixed(1)} MFLOP):`,
  '', table('grad'), '',
  'Peer time over our runtime\'s in the same place (lower is faster than us):', '', ratios(), '',
  ceilingReport(),
  'Whole Langevin steps of our runtime (noise, energy and gradient, clipped update), ms per image-step:', '',
  table('langevin'), '',
  `Agreement with our runtime (wasm, in node) on ${VERIFY_COUNT} uniform images, max relative error; tolerance ${TOLERANCE}:`, '',
  verification, '', `Memory: ${memoryLine}`, '',
].join('\n');

const results = {
  date: new Date().toISOString(), machine: { cpu, logical_cpus: os.cpus().length, total_memory: os.totalmem() },
  versions, model: opt.model ?? 'random paper model (seed 7, F32)', mflop_per_image_step: mflop,
  tolerance: TOLERANCE, verify_count: VERIFY_COUNT, rounds: ROUNDS, min_ms: MIN_MS, loads, memory,
  ceiling_gflops_one_thread: Object.fromEntries([...ceilings].filter(([, v]) => v.length)
    .map(([where, v]) => [where, { median: median(v), samples: v }])),
  sessions: sessions.map((s) => ({
    where: s.where, peer: s.peer, threads: s.threads, op: s.op, info: s.info ?? null, verified: s.verified ?? null,
    ok: s.ok, error: s.error ?? null,
    ms_per_image_step: Object.fromEntries(BATCHES.map((b) => [b, { median: med(s, b), samples: samples.get(s).get(b) }])),
  })),
  seconds: (Date.now() - started) / 1000,
};
writeFileSync(path.join(WORK, 'results.json'), `${JSON.stringify(results, null, 1)}\n`);
writeFileSync(path.join(WORK, 'results.md'), md);
log(`\n${md}`);
log(`wrote ${path.join(WORK, 'results.json')} and results.md (${results.seconds.toFixed(0)} s)`);
if (sessions.some((s) => !s.ok)) process.exitCode = 1;
