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

const MASK = 0xffff_ffff_ffff_ffffn;

function rotl(x: bigint, b: bigint): bigint {
  return ((x << b) | (x >> (64n - b))) & MASK;
}

function readLe(bytes: Uint8Array, at: number, length: number): bigint {
  let n = 0n;
  for (let i = length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[at + i]);
  return n;
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
  const k0 = readLe(key, 0, 8);
  const k1 = readLe(key, 8, 8);
  let v0 = k0 ^ 0x736f6d6570736575n;
  let v1 = k1 ^ 0x646f72616e646f6dn;
  let v2 = k0 ^ 0x6c7967656e657261n;
  let v3 = k1 ^ 0x7465646279746573n;
  const round = () => {
    v0 = (v0 + v1) & MASK;
    v1 = rotl(v1, 13n) ^ v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & MASK;
    v3 = rotl(v3, 16n) ^ v2;
    v0 = (v0 + v3) & MASK;
    v3 = rotl(v3, 21n) ^ v0;
    v2 = (v2 + v1) & MASK;
    v1 = rotl(v1, 17n) ^ v2;
    v2 = rotl(v2, 32n);
  };
  const n = message.length;
  const full = n - (n % 8);
  for (let at = 0; at < full; at += 8) {
    const m = readLe(message, at, 8);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  const last = (BigInt(n & 0xff) << 56n) | readLe(message, full, n - full);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xffn;
  round();
  round();
  round();
  round();
  let out = v0 ^ v1 ^ v2 ^ v3;
  const bytes = new Uint8Array(8);
  for (let i = 0; i < 8; i++) {
    bytes[i] = Number(out & 0xffn);
    out >>= 8n;
  }
  return bytes;
}
