// This module is browser compatible.

/**
 * The CoAP-over-WebSocket codec (RFC 8323 §3.2 framing, RFC 7252 §3 options):
 * pure functions from bytes to messages and back, with no I/O, no timers and
 * no globals. Malformed bytes throw a {@linkcode CoapFormatError} that names
 * what is wrong; nothing half-parsed ever comes out.
 *
 * @module
 */

/** One option: its number and its raw value. */
export interface CoapOption {
  /** The option number (RFC 7252 §5.10, RFC 8323 §5.3–5.6 for signaling). */
  readonly number: number;
  /** The option's value as sent on the wire. */
  readonly value: Uint8Array;
}

/** A CoAP message as it crosses a WebSocket: no type, no message ID. */
export interface CoapMessage {
  /** The code byte: class in the top 3 bits, detail in the low 5. */
  readonly code: number;
  /** 0 to 8 bytes that match a response to its request. */
  readonly token: Uint8Array;
  /** The options, in any order; {@linkcode encodeMessage} sorts them. */
  readonly options: readonly CoapOption[];
  /** The payload; empty when there is none. */
  readonly payload: Uint8Array;
}

/**
 * A message to encode: a {@linkcode CoapMessage} whose payload may also be
 * text, which {@linkcode encodeMessage} writes as UTF-8 straight into the
 * frame. (A payload's own bytes are a second buffer a message, and in Deno
 * every buffer costs about as much as the rest of a small exchange.)
 */
export interface OutgoingMessage extends Omit<CoapMessage, "payload"> {
  /** The payload: bytes, or text sent as UTF-8; empty when there is none. */
  readonly payload: Uint8Array | string;
}

/** Malformed bytes, or a value that cannot be encoded; `message` says which. */
export class CoapFormatError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong, in words.
   */
  constructor(message: string) {
    super(message);
    this.name = "CoapFormatError";
  }
}

/** Codes this stack uses, as code bytes. */
export const Code = {
  EMPTY: 0x00,
  GET: 0x01,
  POST: 0x02,
  PUT: 0x03,
  DELETE: 0x04,
  FETCH: 0x05,
  PATCH: 0x06,
  IPATCH: 0x07,
  CREATED: 0x41,
  DELETED: 0x42,
  VALID: 0x43,
  CHANGED: 0x44,
  CONTENT: 0x45,
  CONTINUE: 0x5f,
  BAD_REQUEST: 0x80,
  UNAUTHORIZED: 0x81,
  BAD_OPTION: 0x82,
  NOT_FOUND: 0x84,
  METHOD_NOT_ALLOWED: 0x85,
  REQUEST_ENTITY_INCOMPLETE: 0x88,
  PRECONDITION_FAILED: 0x8c,
  REQUEST_ENTITY_TOO_LARGE: 0x8d,
  INTERNAL_SERVER_ERROR: 0xa0,
  SERVICE_UNAVAILABLE: 0xa3,
  CSM: 0xe1,
  PING: 0xe2,
  PONG: 0xe3,
  RELEASE: 0xe4,
  ABORT: 0xe5,
} as const;

/** Option numbers this stack knows (RFC 7252, 7641, 7959, 7967, 8768, 9175). */
export const Option = {
  IF_MATCH: 1,
  URI_HOST: 3,
  ETAG: 4,
  IF_NONE_MATCH: 5,
  OBSERVE: 6,
  URI_PORT: 7,
  LOCATION_PATH: 8,
  OSCORE: 9,
  URI_PATH: 11,
  CONTENT_FORMAT: 12,
  MAX_AGE: 14,
  URI_QUERY: 15,
  HOP_LIMIT: 16,
  ACCEPT: 17,
  LOCATION_QUERY: 20,
  BLOCK2: 23,
  BLOCK1: 27,
  SIZE2: 28,
  PROXY_URI: 35,
  PROXY_SCHEME: 39,
  SIZE1: 60,
  ECHO: 252,
  NO_RESPONSE: 258,
  REQUEST_TAG: 292,
} as const;

/**
 * Signaling option numbers (RFC 8323 §5). Their meaning depends on the
 * signaling code: 2 is Max-Message-Size in a CSM, Custody in a Ping or Pong,
 * Alternative-Address in a Release and Bad-CSM-Option in an Abort.
 */
export const SignalingOption = {
  MAX_MESSAGE_SIZE: 2,
  BLOCK_WISE_TRANSFER: 4,
  CUSTODY: 2,
  ALTERNATIVE_ADDRESS: 2,
  HOLD_OFF: 4,
  BAD_CSM_OPTION: 2,
} as const;

/** Request method names and their codes. */
export const METHODS = {
  GET: Code.GET,
  POST: Code.POST,
  PUT: Code.PUT,
  DELETE: Code.DELETE,
  FETCH: Code.FETCH,
  PATCH: Code.PATCH,
  iPATCH: Code.IPATCH,
} as const;

/** A request method name. */
export type Method = keyof typeof METHODS;

const PAYLOAD_MARKER = 0xff;
const MAX_TOKEN_LENGTH = 8;
const MAX_OPTION_NUMBER = 0xffff;
const EMPTY = new Uint8Array(0);

/**
 * Formats a code byte the way CoAP writes it: `"2.05"`, `"7.01"`.
 *
 * @param code A code byte, 0 to 255.
 * @returns The class, a dot and the two-digit detail.
 *
 * @example
 * ```ts
 * import { Code, codeToString } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(codeToString(Code.CONTENT), "2.05");
 * ```
 */
export function codeToString(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, "0")}`;
}

/**
 * Parses `"c.dd"` into a code byte.
 *
 * @param text A code such as `"4.04"`.
 * @returns The code byte.
 * @throws {CoapFormatError} If `text` is not a class 0 to 7 and a detail 0
 * to 31.
 *
 * @example
 * ```ts
 * import { Code, parseCode } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(parseCode("4.04"), Code.NOT_FOUND);
 * ```
 */
export function parseCode(text: string): number {
  const match = /^([0-7])\.([0-3][0-9])$/.exec(text);
  if (match === null || Number(match[2]) > 31) {
    throw new CoapFormatError(
      `Cannot parse the code ${
        JSON.stringify(text)
      }: expected a class 0-7, a dot and a detail 00-31`,
    );
  }
  return (Number(match[1]) << 5) | Number(match[2]);
}

/** What a code byte is, by its class (RFC 7252 §12.1, RFC 8323 §5.1). */
export type CodeKind =
  | "empty"
  | "request"
  | "response"
  | "signaling"
  | "reserved";

/**
 * Tells what a code byte is: the empty message 0.00, a request (0.01-0.31),
 * a response (2.xx, 4.xx, 5.xx), a signaling message (7.xx), or a reserved
 * class (1, 3, 6).
 *
 * @param code A code byte.
 * @returns Its kind.
 *
 * @example
 * ```ts
 * import { Code, codeKind } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(codeKind(Code.GET), "request");
 * assertEquals(codeKind(Code.PING), "signaling");
 * ```
 */
export function codeKind(code: number): CodeKind {
  if (code === 0) return "empty";
  switch (code >> 5) {
    case 0:
      return "request";
    case 2:
    case 4:
    case 5:
      return "response";
    case 7:
      return "signaling";
    default:
      return "reserved";
  }
}

/**
 * Encodes a message in the WebSocket framing of RFC 8323 §3.2: a first byte
 * with length nibble 0 and the token length, the code, the token, the
 * options sorted by number (a stable sort keeps repeated options in order),
 * and the payload after a 0xFF marker when there is one.
 *
 * @param message The message.
 * @returns Its bytes.
 * @throws {CoapFormatError} If the code is not a byte, the token is longer
 * than 8 bytes, or an option number is outside 0 to 65535.
 *
 * @example Encoding a GET of /hello
 * ```ts
 * import { Code, encodeMessage, Option, utf8 } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = encodeMessage({
 *   code: Code.GET,
 *   token: new Uint8Array([0x42]),
 *   options: [{ number: Option.URI_PATH, value: utf8("hello") }],
 *   payload: new Uint8Array(0),
 * });
 * assertEquals([...bytes], [0x01, 0x01, 0x42, 0xb5, 104, 101, 108, 108, 111]);
 * ```
 */
export function encodeMessage(message: OutgoingMessage): Uint8Array {
  const { code, token, payload } = message;
  const text = typeof payload === "string";
  const payloadLength = text ? utf8Length(payload) : payload.length;
  if (!Number.isInteger(code) || code < 0 || code > 0xff) {
    throw new CoapFormatError(`Cannot encode the code ${code}: not a byte`);
  }
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new CoapFormatError(
      `Cannot encode a token of ${token.length} bytes: at most ${MAX_TOKEN_LENGTH}`,
    );
  }
  // Options go out in number order; most messages are built in order
  // already, and need no sorted copy.
  let options = message.options;
  for (let i = 1; i < options.length; i++) {
    if (options[i].number < options[i - 1].number) {
      options = [...options].sort((a, b) => a.number - b.number);
      break;
    }
  }
  let size = 2 + token.length + (payloadLength > 0 ? 1 + payloadLength : 0);
  for (const option of options) {
    const { number, value } = option;
    if (
      !Number.isInteger(number) || number < 0 || number > MAX_OPTION_NUMBER
    ) {
      throw new CoapFormatError(
        `Cannot encode the option number ${number}: outside 0-${MAX_OPTION_NUMBER}`,
      );
    }
    if (value.length > 0xffff + 269) {
      throw new CoapFormatError(
        `Cannot encode option ${number}: its value of ${value.length} bytes is too long`,
      );
    }
  }
  let previous = 0;
  for (const { number, value } of options) {
    size += 1 + extensionSize(number - previous) + extensionSize(value.length) +
      value.length;
    previous = number;
  }
  const out = new Uint8Array(size);
  out[0] = token.length;
  out[1] = code;
  let at = copy(out, 2, token);
  previous = 0;
  for (const { number, value } of options) {
    const delta = number - previous;
    previous = number;
    const head = at++;
    out[head] = (nibble(delta) << 4) | nibble(value.length);
    at = writeExtension(out, at, delta);
    at = writeExtension(out, at, value.length);
    at = copy(out, at, value);
  }
  if (payloadLength > 0) {
    out[at++] = PAYLOAD_MARKER;
    if (!text) copy(out, at, payload);
    else if (payloadLength === payload.length) {
      // ASCII: one byte a character.
      for (let i = 0; i < payloadLength; i++) {
        out[at + i] = payload.charCodeAt(i);
      }
    } else encoder.encodeInto(payload, out.subarray(at));
  }
  return out;
}

/**
 * The length of `text` in UTF-8, as `TextEncoder` writes it: a lone
 * surrogate becomes U+FFFD, three bytes.
 *
 * @param text The text.
 * @returns Its length in bytes.
 *
 * @example
 * ```ts
 * import { utf8Length } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(utf8Length("20 °C"), 6);
 * ```
 */
export function utf8Length(text: string): number {
  const n = text.length;
  let length = n;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) length += 1;
    else if (
      c >= 0xd800 && c < 0xdc00 && i + 1 < n &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      length += 2; // a surrogate pair: four bytes for two code units
      i++;
    } else length += 2;
  }
  return length;
}

/**
 * Copies `bytes` into `out` at `at`; returns where they end. A loop for the
 * few bytes of a token or an option value: `set()` costs more there.
 */
function copy(out: Uint8Array, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n > 32) out.set(bytes, at);
  else for (let i = 0; i < n; i++) out[at + i] = bytes[i];
  return at + n;
}

function nibble(n: number): number {
  return n < 13 ? n : n < 269 ? 13 : 14;
}

function extensionSize(n: number): number {
  return n < 13 ? 0 : n < 269 ? 1 : 2;
}

function writeExtension(out: Uint8Array, at: number, n: number): number {
  if (n < 13) return at;
  if (n < 269) {
    out[at] = n - 13;
    return at + 1;
  }
  out[at] = (n - 269) >> 8;
  out[at + 1] = (n - 269) & 0xff;
  return at + 2;
}

/**
 * Decodes one WebSocket message's bytes into a CoAP message (RFC 8323 §3.2).
 * The token, option values and payload are views of `bytes`, not copies: a
 * WebSocket hands over a fresh buffer per message, and a view costs half
 * of a copy. Copy the input first if its buffer will be reused, or ask for
 * copies: with `copies`, each is a new array of its own. CoAP over UDP
 * does, for the few bytes of a datagram's frame: a view of a small array
 * made a JavaScript engine move the whole array out of its heap first (in
 * Bun a fifth of a request's CPU went to `subarray`), where copying a few
 * bytes costs less.
 *
 * @param bytes One binary WebSocket message.
 * @param copies Whether the token, option values and payload are copies
 * rather than views of `bytes`.
 * @returns The message.
 * @throws {CoapFormatError} If the bytes are not one well-formed message: too
 * short, a length nibble other than 0, a reserved token length, a message
 * ending inside the token or an option, a reserved option nibble, an option
 * number past 65535, or a payload marker with no payload after it.
 *
 * @example Decoding a 2.05 response with a text payload
 * ```ts
 * import { codeToString, decodeMessage, text } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const message = decodeMessage(
 *   new Uint8Array([0x01, 0x45, 0x42, 0xc1, 0x00, 0xff, 104, 105]),
 * );
 * assertEquals(codeToString(message.code), "2.05");
 * assertEquals(message.options, [{ number: 12, value: new Uint8Array([0]) }]);
 * assertEquals(text(message.payload), "hi");
 * ```
 */
export function decodeMessage(
  bytes: Uint8Array,
  copies = false,
): CoapMessage {
  if (bytes.length < 2) {
    throw new CoapFormatError(
      `Malformed message: ${bytes.length} byte${
        bytes.length === 1 ? "" : "s"
      }, a message has at least 2`,
    );
  }
  const length = bytes[0] >> 4;
  if (length !== 0) {
    throw new CoapFormatError(
      `Malformed message: the length nibble is ${length}, over WebSocket it must be 0`,
    );
  }
  const tkl = bytes[0] & 0x0f;
  if (tkl > MAX_TOKEN_LENGTH) {
    throw new CoapFormatError(
      `Malformed message: token length ${tkl} is reserved (at most ${MAX_TOKEN_LENGTH})`,
    );
  }
  if (bytes.length < 2 + tkl) {
    throw new CoapFormatError(
      `Malformed message: it ends inside its ${tkl}-byte token`,
    );
  }
  const code = bytes[1];
  const part = copies ? copyOf : viewOf;
  const token = part(bytes, 2, 2 + tkl);
  const options: CoapOption[] = [];
  let at = 2 + tkl;
  let number = 0;
  while (at < bytes.length) {
    const head = bytes[at++];
    if (head === PAYLOAD_MARKER) {
      if (at === bytes.length) {
        throw new CoapFormatError(
          "Malformed message: a payload marker with no payload after it",
        );
      }
      return {
        code,
        token,
        options: exact(options),
        payload: part(bytes, at, bytes.length),
      };
    }
    let delta = head >> 4;
    let length = head & 0x0f;
    if (delta === 15) {
      throw new CoapFormatError(
        `Malformed message: option delta nibble 15 is reserved (after option ${number})`,
      );
    }
    if (length === 15) {
      throw new CoapFormatError(
        `Malformed message: option length nibble 15 is reserved (after option ${number})`,
      );
    }
    // Extensions read in place: a helper that returned [value, at] made two
    // arrays an option.
    if (delta >= 13) {
      delta = extension(bytes, at, delta, number);
      at += delta < 269 ? 1 : 2;
    }
    if (length >= 13) {
      length = extension(bytes, at, length, number);
      at += length < 269 ? 1 : 2;
    }
    number += delta;
    if (number > MAX_OPTION_NUMBER) {
      throw new CoapFormatError(
        `Malformed message: option number ${number} exceeds ${MAX_OPTION_NUMBER}`,
      );
    }
    if (at + length > bytes.length) {
      throw new CoapFormatError(
        `Malformed message: the value of option ${number} (${length} bytes) runs past the end`,
      );
    }
    options.push({ number, value: part(bytes, at, at + length) });
    at += length;
  }
  return { code, token, options: exact(options), payload: EMPTY };
}

/** `bytes` from `start` to `end`, as a view. */
function viewOf(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return bytes.subarray(start, end);
}

/**
 * `bytes` from `start` to `end`, as a copy of its own: a loop for a few
 * bytes, which costs less than any view or `slice()` there.
 */
export function copyOf(
  bytes: Uint8Array,
  start: number,
  end: number,
): Uint8Array {
  const n = end - start;
  const out = new Uint8Array(n);
  if (n > 32) out.set(bytes.subarray(start, end));
  else for (let i = 0; i < n; i++) out[i] = bytes[start + i];
  return out;
}

/**
 * A pushed-to array keeps room for more; a request's options live as long
 * as its exchange (an observation: for hours), so keep exactly what is used.
 */
function exact<T>(items: T[]): T[] {
  // An empty literal has no room yet: it is its own exact copy.
  return items.length === 0 ? items : items.slice();
}

/**
 * The value of an option delta or length nibble of 13 or 14, read from its
 * extension byte or bytes at `at`.
 */
function extension(
  bytes: Uint8Array,
  at: number,
  nibble: number,
  after: number,
): number {
  const size = nibble === 13 ? 1 : 2;
  if (at + size > bytes.length) {
    throw new CoapFormatError(
      `Malformed message: it ends inside an option header (after option ${after})`,
    );
  }
  if (nibble === 13) return bytes[at] + 13;
  return ((bytes[at] << 8) | bytes[at + 1]) + 269;
}

/**
 * Encodes an unsigned integer option value in as few bytes as it needs (0
 * is the empty value).
 *
 * @param n An integer from 0 to 2^32 - 1.
 * @returns Its big-endian bytes, without leading zeros.
 * @throws {CoapFormatError} If `n` is not such an integer.
 *
 * @example
 * ```ts
 * import { uint } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals([...uint(0)], []);
 * assertEquals([...uint(1152)], [0x04, 0x80]);
 * ```
 */
export function uint(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new CoapFormatError(
      `Cannot encode ${n} as an option value: not an integer from 0 to 2^32-1`,
    );
  }
  const size = n === 0
    ? 0
    : n < 0x100
    ? 1
    : n < 0x10000
    ? 2
    : n < 0x1000000
    ? 3
    : 4;
  const out = new Uint8Array(size);
  for (let i = size - 1, v = n; i >= 0; i--, v = Math.floor(v / 256)) {
    out[i] = v % 256;
  }
  return out;
}

/**
 * Decodes an unsigned integer option value of at most 4 bytes.
 *
 * @param value The option's value.
 * @returns The integer.
 * @throws {CoapFormatError} If the value is longer than 4 bytes.
 *
 * @example
 * ```ts
 * import { readUint } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(readUint(new Uint8Array([0x04, 0x80])), 1152);
 * ```
 */
export function readUint(value: Uint8Array): number {
  if (value.length > 4) {
    throw new CoapFormatError(
      `Malformed option: an integer of ${value.length} bytes (at most 4)`,
    );
  }
  let n = 0;
  for (const byte of value) n = n * 256 + byte;
  return n;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder();

/**
 * Encodes text as UTF-8.
 *
 * @param value The text.
 * @returns Its UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { utf8 } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals([...utf8("hi")], [104, 105]);
 * ```
 */
export function utf8(value: string): Uint8Array {
  return encoder.encode(value);
}

/**
 * Decodes UTF-8 bytes, replacing invalid sequences with U+FFFD (for
 * payloads shown to people).
 *
 * @param bytes The bytes.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { text } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(text(new Uint8Array([104, 105])), "hi");
 * ```
 */
export function text(bytes: Uint8Array): string {
  return lenient.decode(bytes);
}

/**
 * Decodes UTF-8 bytes strictly (for option values such as Uri-Path).
 *
 * @param bytes The bytes.
 * @param what Names the value in the error.
 * @returns The text.
 * @throws {CoapFormatError} If the bytes are not valid UTF-8.
 *
 * @example
 * ```ts
 * import { strictText } from "./message.ts";
 * import { assertThrows } from "@std/assert";
 *
 * assertThrows(() => strictText(new Uint8Array([0xff]), "Uri-Path"));
 * ```
 */
export function strictText(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new CoapFormatError(`Malformed option: ${what} is not valid UTF-8`);
  }
}

/** A Block1 or Block2 option's value (RFC 7959 §2.2). */
export interface Block {
  /** The block number, from 0. */
  readonly num: number;
  /** Whether more blocks follow. */
  readonly more: boolean;
  /** The size exponent: a block holds 2^(szx+4) bytes; 7 is BERT. */
  readonly szx: number;
}

/**
 * Encodes a Block1 or Block2 option value.
 *
 * @param block The block number, more flag and size exponent.
 * @returns The option value.
 * @throws {CoapFormatError} If `num` is past 2^20 - 1 or `szx` past 7.
 *
 * @example
 * ```ts
 * import { encodeBlock } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals([...encodeBlock({ num: 1, more: true, szx: 6 })], [0x1e]);
 * ```
 */
export function encodeBlock(block: Block): Uint8Array {
  const { num, more, szx } = block;
  if (!Number.isInteger(num) || num < 0 || num > 0xfffff) {
    throw new CoapFormatError(`Cannot encode block number ${num}`);
  }
  if (!Number.isInteger(szx) || szx < 0 || szx > 7) {
    throw new CoapFormatError(`Cannot encode block size exponent ${szx}`);
  }
  return uint(num * 16 + (more ? 8 : 0) + szx);
}

/**
 * Decodes a Block1 or Block2 option value.
 *
 * @param value The option value, at most 3 bytes.
 * @returns The block.
 * @throws {CoapFormatError} If the value is longer than 3 bytes.
 *
 * @example
 * ```ts
 * import { decodeBlock } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(decodeBlock(new Uint8Array([0x1e])), { num: 1, more: true, szx: 6 });
 * ```
 */
export function decodeBlock(value: Uint8Array): Block {
  if (value.length > 3) {
    throw new CoapFormatError(
      `Malformed option: a block option of ${value.length} bytes (at most 3)`,
    );
  }
  const n = readUint(value);
  return { num: n >> 4, more: (n & 8) !== 0, szx: n & 7 };
}

/**
 * The first option with `number`, or `undefined`.
 *
 * @param message Anything with options.
 * @param number The option number.
 * @returns The option's value, or `undefined`.
 *
 * @example
 * ```ts
 * import { getOption, Option } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const options = [{ number: Option.OBSERVE, value: new Uint8Array([7]) }];
 * assertEquals(getOption({ options }, Option.OBSERVE), new Uint8Array([7]));
 * ```
 */
export function getOption(
  message: { readonly options: readonly CoapOption[] },
  number: number,
): Uint8Array | undefined {
  // Indexed: a request looks up four options, and `for…of` made an
  // iterator for each look.
  const options = message.options;
  for (let i = 0; i < options.length; i++) {
    if (options[i].number === number) return options[i].value;
  }
  return undefined;
}

/**
 * Whether an option number is critical (RFC 7252 §5.4.1): odd numbers are.
 * A recipient that does not know a critical option must reject the message.
 *
 * @param number The option number.
 * @returns Whether it is critical.
 *
 * @example
 * ```ts
 * import { isCritical, Option } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(isCritical(Option.URI_PATH), true);
 * assertEquals(isCritical(Option.CONTENT_FORMAT), false);
 * ```
 */
export function isCritical(number: number): boolean {
  return (number & 1) === 1;
}

/**
 * A map key for a token: a number for tokens of up to 4 bytes (the
 * length is part of it, so `00 01` and `01` differ), a string for longer
 * ones. Cheaper than hex strings on the path every message takes. A token
 * of up to 3 bytes is a small integer (value × 4 + length), which V8 keeps
 * unboxed in a field or a table; one of 4 bytes is 2^32 and more.
 *
 * @param token The token.
 * @returns Its key.
 *
 * @example
 * ```ts
 * import { tokenKey } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(tokenKey(new Uint8Array([1])) === tokenKey(new Uint8Array([0, 1])), false);
 * ```
 */
export function tokenKey(token: Uint8Array): number | string {
  const length = token.length;
  if (length > 4) return hex(token);
  // An indexed loop: `for…of` made an iterator a call, twice a request.
  let n = 0;
  for (let i = 0; i < length; i++) n = n * 256 + token[i];
  return length < 4 ? n * 4 + length : n + 0x100000000;
}

/**
 * The token a {@linkcode tokenKey} was made from: a request can keep the key
 * (a number, or hex for long tokens) rather than a view of its message,
 * which costs a typed array and keeps the whole frame alive.
 *
 * @param key A key from {@linkcode tokenKey}.
 * @returns A new copy of the token.
 *
 * @example
 * ```ts
 * import { keyToken, tokenKey } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const token = new Uint8Array([0, 1, 0xff]);
 * assertEquals(keyToken(tokenKey(token)), token);
 * assertEquals(keyToken(tokenKey(new Uint8Array(8).fill(9))), new Uint8Array(8).fill(9));
 * ```
 */
export function keyToken(key: number | string): Uint8Array {
  if (typeof key === "string") {
    const token = new Uint8Array(key.length / 2);
    for (let i = 0; i < token.length; i++) {
      token[i] = parseInt(key.slice(2 * i, 2 * i + 2), 16);
    }
    return token;
  }
  const length = key >= 0x100000000 ? 4 : key % 4;
  const token = new Uint8Array(length);
  const n = length === 4 ? key - 0x100000000 : (key - length) / 4;
  for (let i = 0; i < length; i++) {
    token[i] = n >>> ((length - 1 - i) * 8);
  }
  return token;
}

/**
 * Formats bytes as lowercase hex, for tokens in logs.
 *
 * @param bytes The bytes.
 * @returns Two hex digits a byte.
 *
 * @example
 * ```ts
 * import { hex } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(hex(new Uint8Array([1, 0xab])), "01ab");
 * ```
 */
export function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}
