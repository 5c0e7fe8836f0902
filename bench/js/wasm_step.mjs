// The wasm runtime's energy and dE/dx in node, for one model and one or more builds of the site
// side by side: each round times every build in turn (2 s each, after a warm-up), and the
// medians over rounds are printed, so a drift of the machine's load touches all builds alike.
//
//   node bench/js/wasm_step.mjs [--model models/bridges.safetensors] [--batch 8] [--sigma 1]
//                               [--rounds 3] [SITE ...]        (default SITE: build/site)
// A SITE is a folder with ebm_runtime.js and ebm_runtime.wasm (scripts/build-wasm.sh makes
// build/site; copy it aside before a change to compare the two). --batch 1,4: each site at each
// batch size, side by side in the same rounds. Prints ms per image.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: path.join(root, 'models', 'bridges.safetensors') },
    batch: { type: 'string', default: '8' },
    sigma: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(0, 8).join('\n'));
  process.exit(0);
}
function fail(message) {
  console.error(`wasm_step: ${message}`);
  process.exit(2);
}
const batches = opt.batch.split(',').map(Number), sigma = Number(opt.sigma), rounds = Number(opt.rounds);
if (!batches.every((n) => Number.isInteger(n) && n >= 1))
  fail(`--batch must be a positive integer or a comma-separated list of them, got ${opt.batch}`);
if (!(sigma > 0)) fail(`--sigma must be > 0, got ${opt.sigma}`);
if (!Number.isInteger(rounds) || rounds < 1) fail(`--rounds must be a positive integer, got ${opt.rounds}`);
const sites = positionals.length ? positionals : [path.join(root, 'build', 'site')];
for (const s of sites)
  if (!existsSync(path.join(s, 'ebm_runtime.wasm')))
    fail(`${s} has no ebm_runtime.wasm: build the site with scripts/build-wasm.sh (it makes build/site)`);
if (!existsSync(opt.model)) fail(`no model file ${opt.model} (--model)`);
const require = createRequire(import.meta.url);
const bytes = readFileSync(opt.model);

async function load(site, n) {
  const dir = path.resolve(site);
  const create = require(path.join(dir, 'ebm_runtime.js'));
  // node 20: the module's own fetch of its .wasm breaks, so the bytes are passed in.
  const M = await create({ wasmBinary: readFileSync(path.join(dir, 'ebm_runtime.wasm')) });
  const p = M._malloc(bytes.length);
  M.HEAPU8.set(bytes, p);
  const model = new M.Model(p, bytes.length);
  if (model.error()) fail(`${opt.model}: ${model.error()}`);
  const d = model.inputSize();
  const x = M._malloc(4 * n * d), e = M._malloc(4 * n), g = M._malloc(4 * n * d);
  const xs = new Float32Array(M.HEAPF32.buffer, x, n * d);
  for (let i = 0; i < xs.length; ++i) xs[i] = Math.sin(i * 0.37);
  const step = () => {
    const err = model.energyAndGradAt(x, n, e, g, sigma);
    if (err) throw new Error(err);
  };
  for (let i = 0; i < 10; ++i) step();  // past the engine's baseline tier
  return { site, n, step, times: [] };
}

const builds = [];
for (const s of sites)
  for (const n of batches) builds.push(await load(s, n));
for (let r = 0; r < rounds; ++r)
  for (const b of builds) {
    const t0 = performance.now();
    let k = 0;
    while (performance.now() - t0 < 2000) { b.step(); ++k; }
    b.times.push((performance.now() - t0) / k / b.n);
  }
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const b of builds)
  console.log(`${b.site}: median ${median(b.times).toFixed(3)} ms per image (energy + dE/dx at sigma ` +
              `${sigma}, batch ${b.n}; rounds ${b.times.map((t) => t.toFixed(2)).join(', ')})`);
