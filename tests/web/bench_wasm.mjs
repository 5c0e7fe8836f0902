// Milliseconds per Langevin image-step (forward + input gradient + update) of the WebAssembly
// runtime in node, for batches of 1, 8 and 32; the native numbers are in bench/README.md.
//   node tests/web/bench_wasm.mjs build/site MODEL.safetensors
import { readFileSync } from 'node:fs';

import { loadModel, loadRuntime } from './wasm_module.mjs';

const [site, modelPath] = process.argv.slice(2);
if (!site || !modelPath) {
  console.error('usage: node tests/web/bench_wasm.mjs SITE_DIR MODEL.safetensors');
  process.exit(2);
}
const M = await loadRuntime(site);
const model = loadModel(M, new Uint8Array(readFileSync(modelPath)));
if (model.error()) {
  console.error(`bench_wasm: ${model.error()}`);
  process.exit(1);
}
const card = JSON.parse(model.describe());
console.log(`model: ${card.card?.name ?? modelPath}, ${card.parameters} parameters, input ` +
            `${card.input.channels}x${card.input.height}x${card.input.width}`);
console.log('batch\tms per image-step');
for (const batch of [1, 8, 32]) {
  const steps = Math.max(5, Math.round(400 / batch));
  const s = new M.Sampler(model, JSON.stringify({ steps: steps + 3 }), 1);
  s.startUniform(batch, 0);
  s.run(0, null, 3);  // warm-up: workspaces and tier-up
  const t0 = performance.now();
  s.run(0, null, steps);
  const ms = (performance.now() - t0) / (steps * batch);
  console.log(`${batch}\t${ms.toFixed(2)}`);
  s.delete();
}
