// The packed lists of wit/0.2/types.wit and text codecs, shared by records
// and outputs (see ../weir.js).

/** `forward` without changes. */
export const NO_CHANGES = Object.freeze({});

// The packed lists of wit/0.2/types.wit, read and written as 32-bit words
// (wasm is little-endian, as the layout; indexing a Uint32Array costs the
// interpreter far less than DataView calls): entry sizes in words, the
// packed `none`, and the high word of "keep the source's timestamp" (-2^63).
export const RECORD = 10;
export const HEADER = 4;
export const NONE = 0xffffffff;
export const KEEP_HIGH = 0x80000000;

/** The 64-bit signed integer in words `at`, `at + 1` as a number (exact to 2^53). */
export function i64At(words, at) {
  return (words[at + 1] | 0) * 4294967296 + words[at];
}

/** `bytes` as 32-bit words, copied first if they are not 4-byte aligned. */
export function wordsOf(bytes) {
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  return new Uint32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
}

export function asBytes(words, n) {
  return new Uint8Array(words.buffer, words.byteOffset, n * 4);
}

export const encoder = new TextEncoder();
export const lossyDecoder = new TextDecoder('utf-8');
export const strictDecoder = new TextDecoder('utf-8', { fatal: true });
