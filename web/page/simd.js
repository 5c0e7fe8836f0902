// Does this browser run WebAssembly SIMD? Validates a tiny module whose one function returns a
// v128.const: a browser without SIMD refuses it.
const SIMD_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,  // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b,        // type: () -> v128
  0x03, 0x02, 0x01, 0x00,                          // one function of that type
  0x0a, 0x16, 0x01, 0x14, 0x00,                    // code: one body of 20 bytes, no locals
  0xfd, 0x0c, ...new Array(16).fill(0),            // v128.const 0
  0x0b,                                            // end
]);

export function hasWebAssembly() {
  return typeof WebAssembly === 'object' && typeof WebAssembly.validate === 'function';
}

export function hasWasmSimd() {
  try {
    return hasWebAssembly() && WebAssembly.validate(SIMD_MODULE);
  } catch {
    return false;
  }
}
