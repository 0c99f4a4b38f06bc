// This module is browser compatible.

/**
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed hash of short inputs
 * with a 128-bit key and a 64-bit output, computed synchronously. The UDP
 * layer uses it for Echo values (RFC 9175): a MAC over a peer's address and
 * a time, keyed per process, so that an address can be checked without
 * keeping anything per peer and within the receive path, where WebCrypto's
 * asynchronous HMAC cannot be awaited.
 *
 * @module
 */

/** A little-endian 32-bit word of `bytes` at `at` (past the end: zeros). */
function word(bytes: Uint8Array, at: number, end: number): number {
  let n = 0;
  for (let i = 3; i >= 0; i--) {
    n = (n << 8) | (at + i < end ? bytes[at + i] : 0);
  }
  return n >>> 0;
}

/**
 * SipHash-2-4 of `message` under `key`.
 *
 * @param key 16 bytes.
 * @param message Any bytes.
 * @returns The 64-bit hash, as the reference writes it: 8 bytes, least
 * significant first.
 * @throws {RangeError} If the key is not 16 bytes.
 *
 * @example The reference's first test vector
 * ```ts
 * import { siphash24 } from "./siphash.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const key = Uint8Array.from({ length: 16 }, (_, i) => i);
 * assertEquals(
 *   [...siphash24(key, new Uint8Array(0))],
 *   [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72],
 * );
 * ```
 */
export function siphash24(key: Uint8Array, message: Uint8Array): Uint8Array {
  if (key.length !== 16) {
    throw new RangeError(`SipHash takes a 16-byte key, got ${key.length}`);
  }
  // Each 64-bit word as two 32-bit halves (h: high, l: low): numbers, not
  // BigInts, which cost about 14 µs a 60-byte message here.
  const k0l = word(key, 0, 16), k0h = word(key, 4, 16);
  const k1l = word(key, 8, 16), k1h = word(key, 12, 16);
  let v0l = (k0l ^ 0x70736575) >>> 0, v0h = (k0h ^ 0x736f6d65) >>> 0;
  let v1l = (k1l ^ 0x6e646f6d) >>> 0, v1h = (k1h ^ 0x646f7261) >>> 0;
  let v2l = (k0l ^ 0x6e657261) >>> 0, v2h = (k0h ^ 0x6c796765) >>> 0;
  let v3l = (k1l ^ 0x79746573) >>> 0, v3h = (k1h ^ 0x74656462) >>> 0;
  let l: number, h: number;
  const round = () => {
    // v0 += v1; v1 = rotl(v1, 13) ^ v0; v0 = rotl(v0, 32)
    l = (v0l + v1l) >>> 0;
    v0h = (v0h + v1h + (l < v0l ? 1 : 0)) >>> 0;
    v0l = l;
    h = ((v1h << 13) | (v1l >>> 19)) >>> 0;
    v1l = (((v1l << 13) | (v1h >>> 19)) ^ v0l) >>> 0;
    v1h = (h ^ v0h) >>> 0;
    l = v0l;
    v0l = v0h;
    v0h = l;
    // v2 += v3; v3 = rotl(v3, 16) ^ v2
    l = (v2l + v3l) >>> 0;
    v2h = (v2h + v3h + (l < v2l ? 1 : 0)) >>> 0;
    v2l = l;
    h = ((v3h << 16) | (v3l >>> 16)) >>> 0;
    v3l = (((v3l << 16) | (v3h >>> 16)) ^ v2l) >>> 0;
    v3h = (h ^ v2h) >>> 0;
    // v0 += v3; v3 = rotl(v3, 21) ^ v0
    l = (v0l + v3l) >>> 0;
    v0h = (v0h + v3h + (l < v0l ? 1 : 0)) >>> 0;
    v0l = l;
    h = ((v3h << 21) | (v3l >>> 11)) >>> 0;
    v3l = (((v3l << 21) | (v3h >>> 11)) ^ v0l) >>> 0;
    v3h = (h ^ v0h) >>> 0;
    // v2 += v1; v1 = rotl(v1, 17) ^ v2; v2 = rotl(v2, 32)
    l = (v2l + v1l) >>> 0;
    v2h = (v2h + v1h + (l < v2l ? 1 : 0)) >>> 0;
    v2l = l;
    h = ((v1h << 17) | (v1l >>> 15)) >>> 0;
    v1l = (((v1l << 17) | (v1h >>> 15)) ^ v2l) >>> 0;
    v1h = (h ^ v2h) >>> 0;
    l = v2l;
    v2l = v2h;
    v2h = l;
  };
  const n = message.length;
  const full = n - (n % 8);
  const block = (ml: number, mh: number) => {
    v3l = (v3l ^ ml) >>> 0;
    v3h = (v3h ^ mh) >>> 0;
    round();
    round();
    v0l = (v0l ^ ml) >>> 0;
    v0h = (v0h ^ mh) >>> 0;
  };
  for (let at = 0; at < full; at += 8) {
    block(word(message, at, n), word(message, at + 4, n));
  }
  // The last block: what is left, and the length's low byte on top.
  block(
    word(message, full, n),
    (word(message, full + 4, n) | ((n & 0xff) << 24)) >>> 0,
  );
  v2l = (v2l ^ 0xff) >>> 0;
  round();
  round();
  round();
  round();
  const outl = (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
  const outh = (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 4; i++) {
    bytes[i] = (outl >>> (8 * i)) & 0xff;
    bytes[i + 4] = (outh >>> (8 * i)) & 0xff;
  }
  return bytes;
}
