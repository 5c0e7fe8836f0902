// Loads the site's ebm_runtime.js / .wasm in node (for the wasm test and the benchmark), with the
// wasm bytes passed in: under node 20 the module's own fetch path does not work.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export async function loadRuntime(site) {
  const require = createRequire(import.meta.url);
  const create = require(path.resolve(site, 'ebm_runtime.js'));
  return create({ wasmBinary: readFileSync(path.join(site, 'ebm_runtime.wasm')) });
}

// Copies bytes (or floats) into the wasm heap; the caller frees the returned pointer.
export function toHeap(M, typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  const ptr = M._malloc(Math.max(bytes.length, 1));
  M.HEAPU8.set(bytes, ptr);
  return ptr;
}

export function loadModel(M, bytes) {
  const ptr = toHeap(M, bytes);
  try {
    return new M.Model(ptr, bytes.length);
  } finally {
    M._free(ptr);
  }
}

export function floatsAt(M, ptr, n) {
  return new Float32Array(M.HEAPF32.buffer, ptr, n).slice();
}
