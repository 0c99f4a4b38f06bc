// This module is browser compatible.

/**
 * A small CBOR (RFC 8949) reader that writes what it reads in diagnostic
 * notation (§8), so a person can see a CBOR payload: `{"t": 21.5, "u":
 * "C"}`. It decodes every well-formed item, definite and indefinite length,
 * tags and simple values, and refuses malformed input with an error saying
 * what and where.
 *
 * @module
 */

/** The error malformed CBOR raises. */
export class CborError extends Error {
  /** Where in the input the fault is (a byte offset). */
  readonly offset: number;
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   * @param offset Where.
   */
  constructor(message: string, offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = "CborError";
    this.offset = offset;
  }
}

/** Nesting deeper than this is refused rather than risking the stack. */
const MAX_DEPTH = 256;
const BREAK = Symbol("break");

/**
 * Decodes one CBOR data item and writes it in diagnostic notation.
 *
 * @param bytes Exactly one encoded data item.
 * @returns The item in diagnostic notation.
 * @throws {CborError} If `bytes` is not exactly one well-formed item (or
 * nests deeper than 256 levels).
 *
 * @example
 * ```ts
 * import { cborDiagnostic } from "./cbor.ts";
 * import { assertEquals } from "@std/assert";
 *
 * // {"t": 21.5, "on": true, "raw": h'0102'}
 * const bytes = new Uint8Array([
 *   0xa3, 0x61, 0x74, 0xf9, 0x4d, 0x60, 0x62, 0x6f, 0x6e, 0xf5,
 *   0x63, 0x72, 0x61, 0x77, 0x42, 0x01, 0x02,
 * ]);
 * assertEquals(cborDiagnostic(bytes), '{"t": 21.5, "on": true, "raw": h\'0102\'}');
 * ```
 */
export function cborDiagnostic(bytes: Uint8Array): string {
  const reader = new Reader(bytes);
  const item = reader.item(0);
  if (item === BREAK) {
    throw new CborError("Unexpected break", 0);
  }
  if (reader.at !== bytes.length) {
    throw new CborError(
      `${bytes.length - reader.at} bytes after the data item`,
      reader.at,
    );
  }
  return item;
}

class Reader {
  at = 0;
  readonly #bytes: Uint8Array;
  readonly #view: DataView;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  #need(count: number, start: number): void {
    if (this.at + count > this.#bytes.length) {
      throw new CborError("Truncated data item", start);
    }
  }

  /** The argument of a head (§3): a number, or a bigint past 2^53. */
  #argument(info: number, start: number): number | bigint {
    if (info < 24) return info;
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : 8;
    if (info > 27) {
      throw new CborError(`Reserved additional information ${info}`, start);
    }
    this.#need(size, start);
    const view = this.#view;
    const at = this.at;
    this.at += size;
    if (size === 1) return view.getUint8(at);
    if (size === 2) return view.getUint16(at);
    if (size === 4) return view.getUint32(at);
    const big = view.getBigUint64(at);
    return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }

  item(depth: number): string | typeof BREAK {
    if (depth > MAX_DEPTH) {
      throw new CborError(`Nested deeper than ${MAX_DEPTH} levels`, this.at);
    }
    const start = this.at;
    this.#need(1, start);
    const initial = this.#bytes[this.at++];
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (info === 31) {
      if (major === 7) return BREAK;
      if (major === 0 || major === 1 || major === 6) {
        throw new CborError(
          `Major type ${major} cannot have an indefinite length`,
          start,
        );
      }
      return this.#indefinite(major, depth, start);
    }
    if (major === 7) return this.#simple(info, start);
    const argument = this.#argument(info, start);
    switch (major) {
      case 0:
        return String(argument);
      case 1:
        return typeof argument === "bigint"
          ? String(-1n - argument)
          : argument >= Number.MAX_SAFE_INTEGER
          ? String(-1n - BigInt(argument))
          : String(-1 - argument);
      case 2:
        return `h'${hexOf(this.#take(argument, start))}'`;
      case 3:
        return JSON.stringify(this.#text(this.#take(argument, start), start));
      case 4: {
        const count = this.#count(argument, start);
        const items: string[] = [];
        for (let i = 0; i < count; i++) items.push(this.#inner(depth));
        return `[${items.join(", ")}]`;
      }
      case 5: {
        const count = this.#count(argument, start);
        const pairs: string[] = [];
        for (let i = 0; i < count; i++) {
          const key = this.#inner(depth);
          pairs.push(`${key}: ${this.#inner(depth)}`);
        }
        return `{${pairs.join(", ")}}`;
      }
      default:
        return `${argument}(${this.#inner(depth)})`;
    }
  }

  /** A nested item, which may not be a break. */
  #inner(depth: number): string {
    const item = this.item(depth + 1);
    if (item === BREAK) {
      throw new CborError("Unexpected break", this.at - 1);
    }
    return item;
  }

  /** An array or map length, bounded by what the input can hold. */
  #count(argument: number | bigint, start: number): number {
    if (
      typeof argument === "bigint" ||
      argument > this.#bytes.length - this.at
    ) {
      throw new CborError("Truncated data item", start);
    }
    return argument;
  }

  #take(length: number | bigint, start: number): Uint8Array {
    if (typeof length === "bigint") {
      throw new CborError("Truncated data item", start);
    }
    this.#need(length, start);
    const bytes = this.#bytes.subarray(this.at, this.at + length);
    this.at += length;
    return bytes;
  }

  #text(bytes: Uint8Array, start: number): string {
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
        .decode(bytes);
    } catch {
      throw new CborError("Text string is not valid UTF-8", start);
    }
  }

  #indefinite(major: number, depth: number, start: number): string {
    const parts: string[] = [];
    if (major === 2 || major === 3) {
      for (;;) {
        const chunkStart = this.at;
        this.#need(1, chunkStart);
        const initial = this.#bytes[this.at];
        if (initial === 0xff) {
          this.at++;
          break;
        }
        if (initial >> 5 !== major || (initial & 0x1f) === 31) {
          throw new CborError(
            "A chunk of an indefinite-length string must be a definite string of the same type",
            chunkStart,
          );
        }
        parts.push(this.item(depth + 1) as string);
      }
      return parts.length === 0
        ? (major === 2 ? "''_" : '""_')
        : `(_ ${parts.join(", ")})`;
    }
    for (;;) {
      const item = this.item(depth + 1);
      if (item === BREAK) break;
      if (major === 5) {
        const value = this.item(depth + 1);
        if (value === BREAK) {
          throw new CborError("A map ends between a key and its value", start);
        }
        parts.push(`${item}: ${value}`);
      } else {
        parts.push(item);
      }
    }
    return major === 4 ? `[_ ${parts.join(", ")}]` : `{_ ${parts.join(", ")}}`;
  }

  #simple(info: number, start: number): string {
    if (info < 20) return `simple(${info})`;
    switch (info) {
      case 20:
        return "false";
      case 21:
        return "true";
      case 22:
        return "null";
      case 23:
        return "undefined";
      case 24: {
        this.#need(1, start);
        const value = this.#bytes[this.at++];
        if (value < 32) {
          throw new CborError(
            `Simple value ${value} must be encoded in the initial byte`,
            start,
          );
        }
        return `simple(${value})`;
      }
      case 25:
        this.#need(2, start);
        this.at += 2;
        return formatFloat(halfToNumber(this.#view.getUint16(this.at - 2)));
      case 26:
        this.#need(4, start);
        this.at += 4;
        return formatFloat(this.#view.getFloat32(this.at - 4));
      case 27:
        this.#need(8, start);
        this.at += 8;
        return formatFloat(this.#view.getFloat64(this.at - 8));
      default:
        throw new CborError(`Reserved additional information ${info}`, start);
    }
  }
}

function halfToNumber(half: number): number {
  const exponent = (half >> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  const sign = half & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function formatFloat(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  if (Object.is(value, -0)) return "-0.0";
  const text = String(value);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}
