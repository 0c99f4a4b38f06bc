// This module is browser compatible.

/**
 * Byte helpers the security layers share (`oscore.ts`, `dtls.ts`,
 * `x509.ts`): joining byte arrays, and comparing them without an early
 * exit (a tag or a cookie is compared the same way whatever it holds).
 *
 * @module
 */

/**
 * The arrays one after another, in a new array.
 *
 * @param parts The arrays.
 * @returns Their bytes, joined.
 *
 * @example
 * ```ts
 * import { concat } from "./bytes.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals([...concat(new Uint8Array([1]), new Uint8Array([2, 3]))], [1, 2, 3]);
 * ```
 */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Whether two arrays hold the same bytes, looking at every byte whatever
 * the first difference (no early exit).
 *
 * @param a One array.
 * @param b The other.
 * @returns Whether they are equal.
 *
 * @example
 * ```ts
 * import { equalBytes } from "./bytes.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2])), true);
 * ```
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
