// This module is browser compatible.

/**
 * OSCORE (RFC 8613): a CoAP message protected end to end, across proxies
 * and transports, on WebCrypto alone. Sans-I/O: a {@linkcode SecurityContext}
 * turns a plain request into the outer message that goes on the wire and
 * back, and the same for responses; the client and the server put it
 * between their exchanges and the connection.
 *
 * What is here: the context derived from a master secret (HKDF-SHA-256,
 * §3.2), AES-CCM-16-64-128 (COSE algorithm 10, the one algorithm every
 * OSCORE peer has), the COSE Encrypt0 AAD (§5.4), inner and outer options
 * (§4.1: Uri-Host, Uri-Port, Proxy-Scheme and Hop-Limit stay outside,
 * Proxy-Uri is split, Observe goes both ways, everything else inside), the
 * OSCORE option (§6.1), sender sequence numbers persisted in steps through
 * a {@linkcode SequenceStore} (Appendix B.1.1), the replay window (§7.4),
 * and the Echo recovery of a server whose window a restart lost (B.1.2).
 * Not here: group OSCORE and EDHOC.
 *
 * @module
 */

import { equalBytes as equal } from "./bytes.ts";
import { AesCcm } from "./ccm.ts";
import { pathSegments } from "./exchange.ts";
import { escapeText } from "./peer_log.ts";
import {
  type CoapMessage,
  type CoapOption,
  Code,
  codeToString,
  decodeMessage,
  encodeMessage,
  hex,
  Option,
  readUint,
  uint,
  utf8,
} from "./message.ts";

/** The OSCORE option's number (RFC 8613 §2). */
export const OSCORE_OPTION: 9 = Option.OSCORE;

/**
 * Room for what OSCORE adds to a message beyond its plain form: the OSCORE
 * option (a Partial IV, kid and their flags, up to 14 bytes), the code
 * byte, the payload marker and the 8-byte tag. Block sizes leave it free.
 */
export const OSCORE_OVERHEAD = 24;

/** COSE's number for AES-CCM-16-64-128, the algorithm used here. */
export const AES_CCM_16_64_128 = 10;

/** Sequence numbers end below 2^40 (§7.2.1). */
const MAX_SEQUENCE = 2 ** 40 - 1;
const NONCE_LENGTH = 13;
const KEY_LENGTH = 16;
const EMPTY = new Uint8Array(0);

/** Options that travel outside only (class U), never in the ciphertext. */
const OUTER_ONLY: ReadonlySet<number> = new Set([
  Option.URI_HOST,
  Option.URI_PORT,
  Option.PROXY_SCHEME,
  Option.HOP_LIMIT,
  OSCORE_OPTION,
]);

/**
 * Why a message could not be protected or unprotected. On a server, `code`
 * is the unprotected answer RFC 8613 §8.2 asks for (4.00, 4.01 or 4.02,
 * with `message` as its diagnostic payload); on a client, the request's
 * pipe ends with it.
 */
export class OscoreError extends Error {
  /** The error response's code byte (`Code.UNAUTHORIZED`, …). */
  readonly code: number;

  /**
   * Creates the error.
   *
   * @param message What went wrong; on a server, the diagnostic payload.
   * @param code The code byte of the answer (4.00 unless given).
   */
  constructor(message: string, code: number = Code.BAD_REQUEST) {
    super(message);
    this.name = "OscoreError";
    this.code = code;
  }
}

/**
 * Where a context keeps the sender sequence number it may use up to, so
 * that a restart never reuses a nonce (RFC 8613 Appendix B.1.1). Files in
 * Deno, Node.js and Bun (`@coap/stack/oscore-file`), `localStorage` in a
 * browser ({@linkcode WebStorageStore}), memory in tests
 * ({@linkcode MemoryStore}, which is not safe across restarts).
 */
export interface SequenceStore {
  /** Whether what is saved outlives the process. */
  readonly durable: boolean;
  /** The number saved last, or `undefined` if none was ever saved. */
  load(): Promise<number | undefined>;
  /** Saves a number; resolves once it is stored. */
  save(sequence: number): Promise<void>;
}

/**
 * A {@linkcode SequenceStore} in memory. **Not safe across restarts**: a
 * context started again from the same secret with a fresh MemoryStore
 * reuses nonces. For tests, and for contexts that live one process long.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const store = new MemoryStore();
 * await store.save(64);
 * assertEquals([store.durable, await store.load()], [false, 64]);
 * ```
 */
export class MemoryStore implements SequenceStore {
  /** Always `false`: memory ends with the process. */
  readonly durable = false;
  #value: number | undefined;

  /**
   * Makes the store.
   *
   * @param value What `load()` gives before anything is saved.
   */
  constructor(value?: number) {
    this.#value = value;
  }

  /**
   * The number saved last.
   *
   * @returns It, or `undefined`.
   */
  load(): Promise<number | undefined> {
    return Promise.resolve(this.#value);
  }

  /**
   * Keeps a number.
   *
   * @param sequence The number.
   */
  save(sequence: number): Promise<void> {
    this.#value = sequence;
    return Promise.resolve();
  }
}

/** The part of the Web Storage API ({@linkcode WebStorageStore}) uses. */
export interface StorageLike {
  /** Reads an item. */
  getItem(key: string): string | null;
  /** Writes an item. */
  setItem(key: string, value: string): void;
}

/**
 * A {@linkcode SequenceStore} in Web Storage: `localStorage` in a browser
 * page (IndexedDB would do as well; one number needs no more).
 *
 * @example
 * ```ts
 * import { WebStorageStore } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const items = new Map<string, string>();
 * const storage = {
 *   getItem: (key: string) => items.get(key) ?? null,
 *   setItem: (key: string, value: string) => void items.set(key, value),
 * };
 * const store = new WebStorageStore(storage, "oscore:device-1");
 * await store.save(128);
 * assertEquals(items.get("oscore:device-1"), "128");
 * assertEquals(await new WebStorageStore(storage, "oscore:device-1").load(), 128);
 * ```
 */
export class WebStorageStore implements SequenceStore {
  /** Always `true`: Web Storage outlives the page. */
  readonly durable = true;
  readonly #storage: StorageLike;
  readonly #key: string;

  /**
   * Makes the store.
   *
   * @param storage `localStorage`, or anything with its two methods.
   * @param key The item's key; one per security context.
   */
  constructor(storage: StorageLike, key: string) {
    this.#storage = storage;
    this.#key = key;
  }

  /**
   * The number saved last.
   *
   * @returns It, or `undefined`.
   * @throws {Error} If the item holds something else than such a number.
   */
  load(): Promise<number | undefined> {
    const text = this.#storage.getItem(this.#key);
    if (text === null) return Promise.resolve(undefined);
    return Promise.resolve(checkStored(Number(text), this.#key));
  }

  /**
   * Writes the number.
   *
   * @param sequence The number.
   */
  save(sequence: number): Promise<void> {
    this.#storage.setItem(this.#key, String(sequence));
    return Promise.resolve();
  }
}

/**
 * Checks a stored sequence number.
 *
 * @param value What was read.
 * @param where Where it was read, for the error.
 * @returns The number.
 * @throws {Error} If it is not an integer from 0 to 2^40.
 */
export function checkStored(value: unknown, where: string): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < 0 ||
    value > MAX_SEQUENCE + 1
  ) {
    throw new Error(
      `Cannot load an OSCORE sequence number from ${where}: not an integer from 0 to 2^40`,
    );
  }
  return value;
}

/** What a security context is derived from (RFC 8613 §3.1). */
export interface SecurityContextInit {
  /** The Master Secret. */
  masterSecret: Uint8Array;
  /** The Master Salt; empty when left out. */
  masterSalt?: Uint8Array;
  /** This endpoint's Sender ID (the peer's Recipient ID), 0 to 7 bytes. */
  senderId: Uint8Array;
  /** The peer's Sender ID, 0 to 7 bytes. */
  recipientId: Uint8Array;
  /** The ID Context, if the context has one. */
  idContext?: Uint8Array;
  /**
   * The AEAD algorithm; only AES-CCM-16-64-128 (10) is implemented.
   *
   * @default {10}
   */
  algorithm?: number;
  /**
   * The replay window's size in sequence numbers (§7.4).
   *
   * @default {32}
   */
  replayWindow?: number;
  /**
   * Where the sender sequence number is persisted. A store that held a
   * number means a restart: sequence numbers go on from it, and the replay
   * window is lost, so a server asks the client for an Echo (B.1.2) before
   * it serves a request.
   *
   * @default {new MemoryStore()} — not safe across restarts.
   */
  store?: SequenceStore;
  /**
   * How many sequence numbers one save reserves (K in B.1.1): after a
   * restart, up to this many are skipped; the store is written once every
   * this many messages.
   *
   * @default {64}
   */
  persistStep?: number;
  /**
   * Whether requests carry the ID Context in the OSCORE option (the 'h'
   * bit; needed when the server tells contexts apart by it).
   *
   * @default {false}
   */
  sendIdContext?: boolean;
}

/**
 * What binds responses to their request (RFC 8613 §7.1): the request's
 * kid and Partial IV (in the AAD of every response) and its nonce (reused
 * by the first response). Made by protecting or unprotecting a request;
 * kept until its exchange ends.
 */
export interface RequestBinding {
  /** The context the request was protected with. */
  readonly context: SecurityContext;
  /** The request's kid: the Sender ID of the requester. */
  readonly kid: Uint8Array;
  /** The request's Partial IV. */
  readonly piv: Uint8Array;
  /** The request's nonce. */
  readonly nonce: Uint8Array;
  /** Whether the request went as FETCH (it observes): responses are 2.05. */
  readonly fetch: boolean;
  /**
   * Server: whether the next response may reuse the request's nonce (the
   * first may, unless the request came while the window was lost).
   * Client: whether a response without Partial IV may still come.
   */
  reuse: boolean;
  /** Client: the highest Partial IV of a notification accepted so far. */
  lastPiv: number;
}

/** The fields of an OSCORE option value (§6.1). */
export interface OscoreOptionValue {
  /** The Partial IV, if any (1 to 5 bytes). */
  readonly piv?: Uint8Array;
  /** The kid context, if any. */
  readonly kidContext?: Uint8Array;
  /** The kid, if any (may be empty, and still present). */
  readonly kid?: Uint8Array;
}

/**
 * Encodes the OSCORE option's value (§6.1): a flag byte, the Partial IV,
 * the kid context with its length, the kid; empty when there is nothing.
 *
 * @param value The fields.
 * @returns The option's value.
 *
 * @example The option of RFC 8613 C.4's request and C.7's response
 * ```ts
 * import { encodeOscoreOption } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const c4 = encodeOscoreOption({ piv: new Uint8Array([0x14]), kid: new Uint8Array(0) });
 * assertEquals([...c4], [0x09, 0x14]);
 * assertEquals([...encodeOscoreOption({})], []);
 * ```
 */
export function encodeOscoreOption(value: OscoreOptionValue): Uint8Array {
  const piv = value.piv ?? EMPTY;
  const { kidContext, kid } = value;
  const flags = piv.length | (kid !== undefined ? 0x08 : 0) |
    (kidContext !== undefined ? 0x10 : 0);
  if (flags === 0) return EMPTY;
  const out = new Uint8Array(
    1 + piv.length + (kidContext !== undefined ? 1 + kidContext.length : 0) +
      (kid?.length ?? 0),
  );
  out[0] = flags;
  out.set(piv, 1);
  let at = 1 + piv.length;
  if (kidContext !== undefined) {
    out[at++] = kidContext.length;
    out.set(kidContext, at);
    at += kidContext.length;
  }
  if (kid !== undefined) out.set(kid, at);
  return out;
}

/**
 * Decodes the OSCORE option's value (§6.1).
 *
 * @param bytes The option's value.
 * @returns The fields.
 * @throws {OscoreError} With code 4.02 if reserved bits are set, the
 * Partial IV length is 6 or 7, or a field runs past the end.
 *
 * @example
 * ```ts
 * import { decodeOscoreOption } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const { piv, kid, kidContext } = decodeOscoreOption(new Uint8Array([0x19, 0x14, 0x02, 0xaa, 0xbb, 0x01]));
 * assertEquals([[...piv!], [...kidContext!], [...kid!]], [[0x14], [0xaa, 0xbb], [0x01]]);
 * ```
 */
export function decodeOscoreOption(bytes: Uint8Array): OscoreOptionValue {
  if (bytes.length === 0) return {};
  const flags = bytes[0];
  const bad = (why: string) =>
    new OscoreError(`Malformed OSCORE option: ${why}`, Code.BAD_OPTION);
  if ((flags & 0xe0) !== 0) throw bad("reserved bits are set");
  const n = flags & 0x07;
  if (n > 5) throw bad(`Partial IV length ${n} is reserved`);
  let at = 1;
  if (at + n > bytes.length) throw bad("the Partial IV runs past the end");
  const piv = n > 0 ? bytes.subarray(at, at + n) : undefined;
  at += n;
  let kidContext: Uint8Array | undefined;
  if (flags & 0x10) {
    if (at >= bytes.length) throw bad("the kid context's length is missing");
    const s = bytes[at++];
    if (at + s > bytes.length) throw bad("the kid context runs past the end");
    kidContext = bytes.subarray(at, at + s);
    at += s;
  }
  let kid: Uint8Array | undefined;
  if (flags & 0x08) kid = bytes.subarray(at);
  else if (at !== bytes.length) throw bad("bytes after its last field");
  return { piv, kidContext, kid };
}

// A little CBOR (RFC 8949), what the info and AAD structures need.

function cborHead(major: number, n: number): number[] {
  if (n < 24) return [(major << 5) | n];
  if (n < 0x100) return [(major << 5) | 24, n];
  return [(major << 5) | 25, n >> 8, n & 0xff];
}

type Cbor = number | string | Uint8Array | null | readonly Cbor[];

function cbor(value: Cbor, out: number[] = []): number[] {
  if (value === null) out.push(0xf6);
  else if (typeof value === "number") out.push(...cborHead(0, value));
  else if (typeof value === "string") {
    const bytes = utf8(value);
    out.push(...cborHead(3, bytes.length), ...bytes);
  } else if (value instanceof Uint8Array) {
    out.push(...cborHead(2, value.length));
    for (const byte of value) out.push(byte);
  } else {
    out.push(...cborHead(4, value.length));
    for (const item of value) cbor(item, out);
  }
  return out;
}

/** HKDF-SHA-256 (RFC 5869) through WebCrypto. */
async function hkdf(
  secret: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    secret.slice(),
    "HKDF",
    false,
    ["deriveBits"],
  );
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: salt.slice(), info: info.slice() },
      key,
      length * 8,
    ),
  );
}

/** The Partial IV of a sequence number: big-endian, no leading zeros. */
function pivOf(sequence: number): Uint8Array {
  if (sequence === 0) return new Uint8Array(1);
  const bytes: number[] = [];
  for (let n = sequence; n > 0; n = Math.floor(n / 256)) {
    bytes.unshift(n % 256);
  }
  return new Uint8Array(bytes);
}

function pivValue(piv: Uint8Array): number {
  let n = 0;
  for (const byte of piv) n = n * 256 + byte;
  return n;
}

/**
 * The replay window of a recipient context (RFC 8613 §7.4): the highest
 * sequence number seen and which of the `size` below it were seen.
 * `lost` after a restart: nothing is known, every request needs an Echo.
 *
 * @example
 * ```ts
 * import { ReplayWindow } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const window = new ReplayWindow(32);
 * window.accept(5);
 * assertEquals([window.valid(5), window.valid(3), window.valid(6)], [false, true, true]);
 * window.accept(40);
 * assertEquals([window.valid(8), window.valid(9)], [false, true]);
 * ```
 */
export class ReplayWindow {
  /** The window's size. */
  readonly size: number;
  #highest = -1;
  /** Bit `n % size` is set when `n` (within the window) was seen. */
  readonly #seen: Uint32Array;
  #lost: boolean;

  /**
   * Makes an empty window.
   *
   * @param size Sequence numbers below the highest that are remembered.
   * @param lost Whether it starts lost (after a restart).
   * @throws {RangeError} If `size` is not an integer from 1 to 4096.
   */
  constructor(size: number, lost = false) {
    if (!Number.isInteger(size) || size < 1 || size > 4096) {
      throw new RangeError(
        `Cannot create a replay window: its size must be an integer from 1 to 4096, got ${
          String(size)
        }`,
      );
    }
    this.size = size;
    this.#seen = new Uint32Array(Math.ceil(size / 32));
    this.#lost = lost;
  }

  /** Whether the window is lost: requests are checked by Echo instead. */
  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Whether a sequence number is new to the window.
   *
   * @param sequence The number.
   * @returns `false` if it was seen, is too old to tell, or the window is
   * lost.
   */
  valid(sequence: number): boolean {
    if (this.#lost) return false;
    if (sequence > this.#highest) return true;
    if (sequence <= this.#highest - this.size) return false;
    const bit = sequence % this.size;
    return (this.#seen[bit >> 5] & (1 << (bit & 31))) === 0;
  }

  /**
   * Marks a number as seen; a lost window starts again from it.
   *
   * @param sequence The number, verified and new (or Echo-checked).
   */
  accept(sequence: number): void {
    if (this.#lost) {
      this.#lost = false;
      this.#seen.fill(0);
      this.#highest = sequence;
    } else if (sequence > this.#highest) {
      const ahead = sequence - this.#highest;
      if (ahead >= this.size) this.#seen.fill(0);
      else {
        for (let n = this.#highest + 1; n < sequence; n++) this.#clear(n);
      }
      this.#highest = sequence;
    }
    const bit = sequence % this.size;
    this.#seen[bit >> 5] |= 1 << (bit & 31);
  }

  #clear(n: number): void {
    const bit = n % this.size;
    this.#seen[bit >> 5] &= ~(1 << (bit & 31));
  }
}

/** The keys and common IV of a context (RFC 8613 §3.2). */
export interface DerivedKeys {
  /** The Sender Key. */
  readonly senderKey: Uint8Array;
  /** The Recipient Key. */
  readonly recipientKey: Uint8Array;
  /** The Common IV. */
  readonly commonIv: Uint8Array;
}

/**
 * Derives the keys and common IV of a context with HKDF-SHA-256 (RFC 8613
 * §3.2.1): what {@linkcode SecurityContext.create} does first, here on its
 * own to compare with a peer's.
 *
 * @param init The master secret and salt, IDs and ID Context.
 * @returns The keys and the IV.
 *
 * @example RFC 8613 C.1.1
 * ```ts
 * import { deriveKeys } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
 * const keys = await deriveKeys({
 *   masterSecret: hex("0102030405060708090a0b0c0d0e0f10"),
 *   masterSalt: hex("9e7ca92223786340"),
 *   senderId: new Uint8Array(0),
 *   recipientId: hex("01"),
 * });
 * assertEquals(keys.commonIv, hex("4622d4dd6d944168eefb54987c"));
 * ```
 */
export async function deriveKeys(
  init: SecurityContextInit,
): Promise<DerivedKeys> {
  const algorithm = init.algorithm ?? AES_CCM_16_64_128;
  const salt = init.masterSalt ?? EMPTY;
  const idContext = init.idContext === undefined ? null : init.idContext;
  const derive = (id: Uint8Array, type: string, length: number) =>
    hkdf(
      init.masterSecret,
      salt,
      new Uint8Array(cbor([id, idContext, algorithm, type, length])),
      length,
    );
  const [senderKey, recipientKey, commonIv] = await Promise.all([
    derive(init.senderId, "Key", KEY_LENGTH),
    derive(init.recipientId, "Key", KEY_LENGTH),
    derive(EMPTY, "IV", NONCE_LENGTH),
  ]);
  return { senderKey, recipientKey, commonIv };
}

/** A protected request and what binds its responses to it. */
export interface ProtectedRequest {
  /** The outer message, for the wire (the token is the plain one's). */
  readonly message: CoapMessage;
  /** Keep it to unprotect the responses. */
  readonly binding: RequestBinding;
}

/** An unprotected request, as the server reads it, and its binding. */
export interface UnprotectedRequest {
  /** The inner request: code, inner options and payload, with the outer
   * token and class U options. */
  readonly message: CoapMessage;
  /** Keep it to protect the responses. */
  readonly binding: RequestBinding;
}

/**
 * One OSCORE security context (RFC 8613 §3): the common, sender and
 * recipient parts, derived from a master secret. One per peer: a client
 * holds one for each server (origin), a server one for each client (by
 * kid). Its sender sequence number grows with every request, every
 * notification, and every response that cannot reuse its request's nonce.
 *
 * @example RFC 8613 C.4: the client's request, byte for byte
 * ```ts
 * import { SecurityContext } from "./oscore.ts";
 * import { Code, Option, utf8 } from "./message.ts";
 * import { MemoryStore } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
 * const client = await SecurityContext.create({
 *   masterSecret: hex("0102030405060708090a0b0c0d0e0f10"),
 *   masterSalt: hex("9e7ca92223786340"),
 *   senderId: new Uint8Array(0),
 *   recipientId: hex("01"),
 *   store: new MemoryStore(20), // C.4 starts at sequence number 20
 *   persistStep: 1,
 * });
 * const { message } = await client.protectRequest({
 *   code: Code.GET,
 *   token: hex("00003974"),
 *   options: [{ number: Option.URI_HOST, value: utf8("localhost") }, { number: Option.URI_PATH, value: utf8("tv1") }],
 *   payload: new Uint8Array(0),
 * });
 * assertEquals(message.code, Code.POST);
 * assertEquals(message.options.map((o) => o.number), [Option.URI_HOST, 9]);
 * assertEquals(message.payload, hex("612f1092f1776f1c1668b3825e"));
 * ```
 */
export class SecurityContext {
  /** This endpoint's Sender ID. */
  readonly senderId: Uint8Array;
  /** The peer's Sender ID. */
  readonly recipientId: Uint8Array;
  /** The ID Context, if any. */
  readonly idContext: Uint8Array | undefined;
  /** The recipient's replay window. */
  readonly replay: ReplayWindow;
  /** The Echo value this context asks for while its window is lost. */
  readonly #echo: Uint8Array;
  readonly #sender: AesCcm;
  readonly #recipient: AesCcm;
  readonly #commonIv: Uint8Array;
  readonly #store: SequenceStore;
  readonly #step: number;
  readonly #sendIdContext: boolean;
  #sequence: number;
  /** Sequence numbers below this one are reserved in the store. */
  #reserved: number;
  /** A save under way, if any. */
  #saving: Promise<void> | undefined;

  private constructor(
    init: SecurityContextInit,
    keys: { sender: AesCcm; recipient: AesCcm; commonIv: Uint8Array },
    store: SequenceStore,
    stored: number | undefined,
  ) {
    this.senderId = init.senderId.slice();
    this.recipientId = init.recipientId.slice();
    this.idContext = init.idContext?.slice();
    this.#sender = keys.sender;
    this.#recipient = keys.recipient;
    this.#commonIv = keys.commonIv;
    this.#store = store;
    this.#step = init.persistStep ?? 64;
    this.#sendIdContext = init.sendIdContext ?? false;
    this.#sequence = stored ?? 0;
    this.#reserved = stored ?? 0;
    this.replay = new ReplayWindow(
      init.replayWindow ?? 32,
      stored !== undefined,
    );
    this.#echo = crypto.getRandomValues(new Uint8Array(8));
  }

  /**
   * Derives a context (RFC 8613 §3.2) and loads its sequence number.
   *
   * @param init The master secret and salt, the IDs, and the options.
   * @returns The context.
   * @throws {TypeError} If a secret or ID is not a `Uint8Array`.
   * @throws {RangeError} If an ID is longer than 7 bytes, the algorithm is
   * not AES-CCM-16-64-128 (10), or `persistStep` or `replayWindow` is out
   * of range.
   */
  static async create(init: SecurityContextInit): Promise<SecurityContext> {
    for (const field of ["masterSecret", "senderId", "recipientId"] as const) {
      if (!(init[field] instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot create an OSCORE context: ${field} must be a Uint8Array`,
        );
      }
    }
    for (const field of ["masterSalt", "idContext"] as const) {
      if (init[field] !== undefined && !(init[field] instanceof Uint8Array)) {
        throw new TypeError(
          `Cannot create an OSCORE context: ${field} must be a Uint8Array if given`,
        );
      }
    }
    for (const field of ["senderId", "recipientId"] as const) {
      if (init[field].length > NONCE_LENGTH - 6) {
        throw new RangeError(
          `Cannot create an OSCORE context: ${field} must be at most ${
            NONCE_LENGTH - 6
          } bytes, got ${init[field].length}`,
        );
      }
    }
    const algorithm = init.algorithm ?? AES_CCM_16_64_128;
    if (algorithm !== AES_CCM_16_64_128) {
      throw new RangeError(
        `Cannot create an OSCORE context: only algorithm 10 (AES-CCM-16-64-128) is implemented, got ${
          String(algorithm)
        }`,
      );
    }
    const step = init.persistStep ?? 64;
    if (!Number.isInteger(step) || step < 1) {
      throw new RangeError(
        `Cannot create an OSCORE context: persistStep must be a positive integer, got ${
          String(step)
        }`,
      );
    }
    new ReplayWindow(init.replayWindow ?? 32); // checks the size
    const keys = await deriveKeys(init);
    const [sender, recipient] = await Promise.all([
      AesCcm.create(keys.senderKey),
      AesCcm.create(keys.recipientKey),
    ]);
    const store = init.store ?? new MemoryStore();
    const stored = await store.load();
    if (stored !== undefined) checkStored(stored, "the store");
    // A context used once is marked so: started again, it knows its replay
    // window is lost (B.1.2), even if it never sent a number of its own.
    else await store.save(0);
    return new SecurityContext(
      init,
      { sender, recipient, commonIv: keys.commonIv },
      store,
      stored,
    );
  }

  /** The next sender sequence number. */
  get sequence(): number {
    return this.#sequence;
  }

  /** Whether the sequence number is kept across restarts. */
  get durable(): boolean {
    return this.#store.durable;
  }

  /**
   * The nonce of a Partial IV made by the endpoint with Sender ID `id`
   * (RFC 8613 §5.2).
   *
   * @param id The Sender ID of whoever made the Partial IV.
   * @param piv The Partial IV.
   * @returns The 13-byte nonce.
   */
  nonce(id: Uint8Array, piv: Uint8Array): Uint8Array {
    const nonce = new Uint8Array(NONCE_LENGTH);
    nonce[0] = id.length;
    nonce.set(id, NONCE_LENGTH - 5 - id.length);
    nonce.set(piv, NONCE_LENGTH - piv.length);
    for (let i = 0; i < NONCE_LENGTH; i++) nonce[i] ^= this.#commonIv[i];
    return nonce;
  }

  /**
   * Takes the next sender sequence number, saving a new reservation to the
   * store first when the last one is used up.
   */
  async #take(): Promise<number> {
    while (this.#sequence >= this.#reserved) {
      this.#saving ??= this.#reserve().finally(() => this.#saving = undefined);
      await this.#saving;
    }
    if (this.#sequence > MAX_SEQUENCE) {
      throw new OscoreError(
        "Cannot protect a message: the OSCORE context's sequence numbers are used up",
        Code.INTERNAL_SERVER_ERROR,
      );
    }
    return this.#sequence++;
  }

  /**
   * Reserves the next `persistStep` numbers in the store. What the store
   * holds is read again first: another process that shares it (which it
   * should not) has its reservation skipped, not reused.
   */
  async #reserve(): Promise<void> {
    const stored = await this.#store.load();
    const from = Math.max(this.#sequence, stored ?? 0);
    const next = Math.min(from + this.#step, MAX_SEQUENCE + 1);
    await this.#store.save(next);
    this.#sequence = Math.max(this.#sequence, from);
    this.#reserved = Math.max(this.#reserved, next);
  }

  /** The AAD of a message bound to a request (§5.4). */
  #aad(kid: Uint8Array, piv: Uint8Array): Uint8Array {
    const external = new Uint8Array(
      cbor([1, [AES_CCM_16_64_128], kid, piv, EMPTY]),
    );
    return new Uint8Array(cbor(["Encrypt0", EMPTY, external]));
  }

  /**
   * Protects a request (RFC 8613 §8.1): the outer message goes as POST
   * (FETCH when it observes) with the OSCORE option, Uri-Host, Uri-Port,
   * Proxy-Scheme and Hop-Limit; a Proxy-Uri is split into those and inner
   * Uri-Path and Uri-Query.
   *
   * @param message The plain request.
   * @returns The outer message and the binding for its responses.
   * @throws {OscoreError} If the sequence numbers are used up.
   * @throws {TypeError} If a Proxy-Uri is not an absolute URI.
   */
  async protectRequest(message: CoapMessage): Promise<ProtectedRequest> {
    const outer: CoapOption[] = [];
    const inner: CoapOption[] = [];
    let observe = false;
    for (const option of message.options) {
      const number = option.number;
      if (number === Option.PROXY_URI) {
        splitProxyUri(option.value, outer, inner);
      } else if (OUTER_ONLY.has(number)) {
        if (number !== OSCORE_OPTION) outer.push(option);
      } else {
        inner.push(option);
        if (number === Option.OBSERVE) {
          outer.push(option);
          observe = true;
        } else if (number === Option.NO_RESPONSE) outer.push(option);
      }
    }
    const sequence = await this.#take();
    const piv = pivOf(sequence);
    const nonce = this.nonce(this.senderId, piv);
    const value = encodeOscoreOption({
      piv,
      kid: this.senderId,
      kidContext: this.#sendIdContext ? this.idContext : undefined,
    });
    outer.push({ number: OSCORE_OPTION, value });
    const plaintext = plain(message.code, inner, message.payload);
    const ciphertext = await this.#sender.encrypt(
      nonce,
      plaintext,
      this.#aad(this.senderId, piv),
    );
    const fetch = observe;
    return {
      message: {
        code: fetch ? Code.FETCH : Code.POST,
        token: message.token,
        options: outer.sort((a, b) => a.number - b.number),
        payload: ciphertext,
      },
      binding: {
        context: this,
        kid: this.senderId,
        piv,
        nonce,
        fetch,
        reuse: true,
        lastPiv: -1,
      },
    };
  }

  /**
   * Unprotects a response to a request protected with this context (§8.4):
   * verified against the request's kid and Partial IV. A notification
   * carries a Partial IV of its own, which must be higher than the last
   * one of the same request.
   *
   * @param message The outer response.
   * @param binding The request's binding.
   * @returns The inner response, with the outer token and, for a
   * notification, the outer Observe.
   * @throws {OscoreError} If the response is not protected, is malformed,
   * fails verification, or replays an earlier one.
   */
  async unprotectResponse(
    message: CoapMessage,
    binding: RequestBinding,
  ): Promise<CoapMessage> {
    const option = message.options.find((o) => o.number === OSCORE_OPTION);
    if (option === undefined) {
      throw new OscoreError(
        `The response is not protected (${codeToString(message.code)}${
          message.payload.length > 0 ? `: ${diagnostic(message.payload)}` : ""
        })`,
        message.code,
      );
    }
    const fields = decodeOscoreOption(option.value);
    if (fields.kid !== undefined && !equal(fields.kid, this.recipientId)) {
      throw new OscoreError("The response's kid is not the server's");
    }
    let nonce: Uint8Array;
    let sequence = -1;
    if (fields.piv !== undefined) {
      sequence = pivValue(fields.piv);
      if (sequence <= binding.lastPiv) {
        throw new OscoreError(
          `Replayed or reordered notification (Partial IV ${sequence} after ${binding.lastPiv})`,
        );
      }
      nonce = this.nonce(this.recipientId, fields.piv);
    } else {
      if (!binding.reuse) {
        throw new OscoreError(
          "A second response without a Partial IV: a replay, or a reused nonce",
        );
      }
      nonce = binding.nonce;
    }
    const plaintext = await this.#recipient.decrypt(
      nonce,
      message.payload,
      this.#aad(binding.kid, binding.piv),
    );
    if (plaintext === undefined || plaintext.length === 0) {
      throw new OscoreError("The response failed OSCORE verification");
    }
    if (sequence >= 0) binding.lastPiv = sequence;
    else binding.reuse = false;
    const inner = readPlain(plaintext, message.token);
    const observe = message.options.find((o) => o.number === Option.OBSERVE);
    if (observe === undefined) return inner;
    // A notification's number is the outer one (aiocoap's inner one is 0
    // in every notification); its order was checked by the Partial IV.
    return {
      ...inner,
      options: [
        ...inner.options.filter((o) => o.number !== Option.OBSERVE),
        observe,
      ],
    };
  }

  /**
   * Unprotects a request to this context (§8.2): verified, checked against
   * the replay window (or, while the window is lost, by Echo: a request
   * that does not carry this context's Echo value is answered 4.01 with
   * it, protected, and not served).
   *
   * @param message The outer request.
   * @param fields Its OSCORE option, decoded.
   * @returns The inner request and its binding; `echo` set when the
   * answer must be {@linkcode SecurityContext.prototype.echoChallenge}.
   * @throws {OscoreError} With the code to answer: 4.00 when there is no
   * Partial IV or verification fails, 4.01 on a replay.
   */
  async unprotectRequest(
    message: CoapMessage,
    fields: OscoreOptionValue,
  ): Promise<UnprotectedRequest & { echo: boolean }> {
    const piv = fields.piv;
    if (piv === undefined) {
      throw new OscoreError("The request has no Partial IV");
    }
    const sequence = pivValue(piv);
    const lost = this.replay.lost;
    if (!lost && !this.replay.valid(sequence)) {
      throw new OscoreError("Replay detected", Code.UNAUTHORIZED);
    }
    const kid = this.recipientId;
    const nonce = this.nonce(kid, piv);
    const plaintext = await this.#recipient.decrypt(
      nonce,
      message.payload,
      this.#aad(kid, piv),
    );
    if (plaintext === undefined || plaintext.length === 0) {
      throw new OscoreError("Decryption failed");
    }
    let inner: CoapMessage;
    try {
      inner = readPlain(plaintext, message.token);
    } catch {
      throw new OscoreError("The decrypted request is malformed");
    }
    let echo = false;
    if (this.replay.lost) {
      const given = inner.options.find((o) => o.number === Option.ECHO);
      if (given !== undefined && equal(given.value, this.#echo)) {
        this.replay.accept(sequence);
      } else echo = true;
    } else if (!this.replay.valid(sequence)) {
      // Another request with the number was verified meanwhile.
      throw new OscoreError("Replay detected", Code.UNAUTHORIZED);
    } else this.replay.accept(sequence);
    // Class U options from outside; an inner Observe counts only where the
    // outer one registers (aiocoap does the same).
    const outerObserve = message.options.find((o) =>
      o.number === Option.OBSERVE
    );
    const options = inner.options.filter((o) =>
      !OUTER_ONLY.has(o.number) && o.number !== Option.PROXY_URI &&
      (o.number !== Option.OBSERVE ||
        (outerObserve !== undefined && readUint(outerObserve.value) === 0))
    );
    for (const option of message.options) {
      if (OUTER_ONLY.has(option.number) && option.number !== OSCORE_OPTION) {
        options.push(option);
      }
    }
    return {
      message: { ...inner, options },
      binding: {
        context: this,
        kid,
        piv: piv.slice(),
        nonce,
        fetch: message.code === Code.FETCH,
        reuse: !lost,
        lastPiv: -1,
      },
      echo,
    };
  }

  /**
   * The answer to a request that came while the replay window was lost
   * (B.1.2): 4.01 with this context's Echo value, protected with a Partial
   * IV of the server's own.
   *
   * @param token The request's token.
   * @param binding The request's binding.
   * @returns The outer response.
   */
  echoChallenge(
    token: Uint8Array,
    binding: RequestBinding,
  ): Promise<CoapMessage> {
    return this.protectResponse({
      code: Code.UNAUTHORIZED,
      token,
      options: [{ number: Option.ECHO, value: this.#echo }],
      payload: EMPTY,
    }, binding);
  }

  /**
   * Protects a response (§8.3): outer 2.04 (2.05 to a FETCH), with the
   * Observe of a notification outside as well. The first response reuses
   * the request's nonce; later ones (notifications) and any after a lost
   * window take a Partial IV of their own.
   *
   * @param message The plain response.
   * @param binding The request's binding.
   * @returns The outer response.
   * @throws {OscoreError} If the sequence numbers are used up.
   */
  async protectResponse(
    message: CoapMessage,
    binding: RequestBinding,
  ): Promise<CoapMessage> {
    const outer: CoapOption[] = [];
    const inner: CoapOption[] = [];
    for (const option of message.options) {
      if (OUTER_ONLY.has(option.number)) continue;
      inner.push(option);
      if (option.number === Option.OBSERVE) outer.push(option);
    }
    let nonce: Uint8Array;
    let value: Uint8Array;
    if (binding.reuse) {
      binding.reuse = false;
      nonce = binding.nonce;
      value = EMPTY;
    } else {
      const piv = pivOf(await this.#take());
      nonce = this.nonce(this.senderId, piv);
      value = encodeOscoreOption({ piv });
    }
    outer.push({ number: OSCORE_OPTION, value });
    const ciphertext = await this.#sender.encrypt(
      nonce,
      plain(message.code, inner, message.payload),
      this.#aad(binding.kid, binding.piv),
    );
    return {
      code: binding.fetch ? Code.CONTENT : Code.CHANGED,
      token: message.token,
      options: outer,
      payload: ciphertext,
    };
  }
}

/** The plaintext: the code, the inner options and the payload (§5.3). */
function plain(
  code: number,
  options: readonly CoapOption[],
  payload: Uint8Array,
): Uint8Array {
  // A WebSocket frame without token is a zero byte and then exactly this.
  return encodeMessage({ code, token: EMPTY, options, payload }).subarray(1);
}

function readPlain(plaintext: Uint8Array, token: Uint8Array): CoapMessage {
  const framed = new Uint8Array(plaintext.length + 1);
  framed.set(plaintext, 1);
  const inner = decodeMessage(framed);
  return { ...inner, token };
}

/** Splits a Proxy-Uri (§4.1.3.3): scheme, host and port outside, the rest in. */
function splitProxyUri(
  value: Uint8Array,
  outer: CoapOption[],
  inner: CoapOption[],
): void {
  const text = new TextDecoder().decode(value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(
      `Cannot protect a request: its Proxy-Uri ${
        JSON.stringify(text)
      } is not an absolute URI`,
    );
  }
  outer.push({
    number: Option.PROXY_SCHEME,
    value: utf8(url.protocol.slice(0, -1)),
  });
  const host = url.hostname.startsWith("[")
    ? url.hostname.slice(1, -1)
    : url.hostname;
  outer.push({ number: Option.URI_HOST, value: utf8(host) });
  if (url.port !== "") {
    outer.push({ number: Option.URI_PORT, value: uint(Number(url.port)) });
  }
  for (const segment of pathSegments(url.pathname)) {
    inner.push({ number: Option.URI_PATH, value: utf8(segment) });
  }
  if (url.search.length > 1) {
    for (const part of url.search.slice(1).split("&")) {
      inner.push({
        number: Option.URI_QUERY,
        value: utf8(decodeURIComponent(part)),
      });
    }
  }
}

/** A peer's diagnostic payload, escaped and cut (`escapeText`), quoted. */
function diagnostic(payload: Uint8Array): string {
  return `"${escapeText(new TextDecoder().decode(payload), 200)}"`;
}

/**
 * The contexts of a server, found by the kid (and kid context) of a
 * request's OSCORE option: RFC 8613 §8.2's first step.
 *
 * @example
 * ```ts
 * import { OscoreContexts, SecurityContext } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const context = await SecurityContext.create({
 *   masterSecret: new Uint8Array(16),
 *   senderId: new Uint8Array([1]),
 *   recipientId: new Uint8Array(0),
 * });
 * const contexts = new OscoreContexts([context]);
 * assertEquals(contexts.find({ kid: new Uint8Array(0) }), context);
 * assertEquals(contexts.find({ kid: new Uint8Array([7]) }), undefined);
 * ```
 */
export class OscoreContexts {
  readonly #byKid = new Map<string, SecurityContext[]>();

  /**
   * Indexes the contexts.
   *
   * @param contexts One per client; two may share a Recipient ID only if
   * their ID Contexts differ.
   * @throws {RangeError} If two have the same Recipient ID and ID Context.
   */
  constructor(contexts: readonly SecurityContext[]) {
    for (const context of contexts) {
      const key = hex(context.recipientId);
      const list = this.#byKid.get(key) ?? [];
      if (
        list.some((c) =>
          (c.idContext === undefined) === (context.idContext === undefined) &&
          (c.idContext === undefined || equal(c.idContext, context.idContext!))
        )
      ) {
        throw new RangeError(
          `Cannot serve OSCORE: two contexts have the Recipient ID ${
            hex(context.recipientId) || "(empty)"
          } and the same ID Context`,
        );
      }
      list.push(context);
      this.#byKid.set(key, list);
    }
  }

  /** How many contexts there are. */
  get size(): number {
    let n = 0;
    for (const list of this.#byKid.values()) n += list.length;
    return n;
  }

  /**
   * The context for a request's OSCORE option.
   *
   * @param fields The option, decoded.
   * @returns The context, or `undefined` if none has that kid (and kid
   * context, when the request names one).
   */
  find(fields: OscoreOptionValue): SecurityContext | undefined {
    if (fields.kid === undefined) return undefined;
    const list = this.#byKid.get(hex(fields.kid));
    if (list === undefined) return undefined;
    const wanted = fields.kidContext;
    if (wanted === undefined) return list.length === 1 ? list[0] : undefined;
    return list.find((c) =>
      c.idContext !== undefined && equal(c.idContext, wanted)
    );
  }
}

function fromHex(text: unknown, field: string): Uint8Array {
  if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    throw new TypeError(
      `Cannot read an OSCORE context: ${field} must be a string of hex digits`,
    );
  }
  return new Uint8Array((text.match(/../g) ?? []).map((b) => parseInt(b, 16)));
}

/**
 * Reads a security context in aiocoap's `settings.json` form (what
 * `aiocoap-client` and the peers' `oscore-*.json` files hold):
 * `secret_hex`, `salt_hex`, `sender-id_hex`, `recipient-id_hex`,
 * `id-context_hex`, `algorithm` (`"AES-CCM-16-64-128"` or 10),
 * `kdf-hashfun` (`"sha256"`) and `window`. The store and the step are
 * options of their own: a file's context does not say where it persists.
 *
 * @param json The parsed JSON.
 * @returns The init for {@linkcode SecurityContext.create}.
 * @throws {TypeError} If a field is missing or not of its form, or one
 * is there that aiocoap's format does not have.
 * @throws {RangeError} If the algorithm or hash function is another.
 *
 * @example
 * ```ts
 * import { parseContextJson } from "./oscore.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const init = parseContextJson({
 *   "secret_hex": "0102030405060708090a0b0c0d0e0f10", "salt_hex": "9e7ca92223786340",
 *   "sender-id_hex": "", "recipient-id_hex": "01", "algorithm": "AES-CCM-16-64-128",
 * });
 * assertEquals([init.senderId.length, [...init.recipientId]], [0, [1]]);
 * ```
 */
export function parseContextJson(json: unknown): SecurityContextInit {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("Cannot read an OSCORE context: not a JSON object");
  }
  const fields = json as Record<string, unknown>;
  const known = new Set([
    "secret_hex",
    "salt_hex",
    "sender-id_hex",
    "recipient-id_hex",
    "id-context_hex",
    "algorithm",
    "kdf-hashfun",
    "window",
  ]);
  for (const key of Object.keys(fields)) {
    if (!known.has(key)) {
      throw new TypeError(
        `Cannot read an OSCORE context: unknown field ${JSON.stringify(key)}`,
      );
    }
  }
  for (const key of ["secret_hex", "sender-id_hex", "recipient-id_hex"]) {
    if (!(key in fields)) {
      throw new TypeError(
        `Cannot read an OSCORE context: ${key} is missing`,
      );
    }
  }
  const algorithm = fields.algorithm ?? AES_CCM_16_64_128;
  if (algorithm !== AES_CCM_16_64_128 && algorithm !== "AES-CCM-16-64-128") {
    throw new RangeError(
      `Cannot read an OSCORE context: only algorithm AES-CCM-16-64-128 (10) is implemented, got ${
        JSON.stringify(algorithm)
      }`,
    );
  }
  const hash = fields["kdf-hashfun"] ?? "sha256";
  if (hash !== "sha256") {
    throw new RangeError(
      `Cannot read an OSCORE context: only kdf-hashfun "sha256" is implemented, got ${
        JSON.stringify(hash)
      }`,
    );
  }
  const window = fields.window ?? 32;
  if (typeof window !== "number") {
    throw new TypeError(
      "Cannot read an OSCORE context: window must be a number",
    );
  }
  return {
    masterSecret: fromHex(fields.secret_hex, "secret_hex"),
    masterSalt: fields.salt_hex === undefined
      ? undefined
      : fromHex(fields.salt_hex, "salt_hex"),
    senderId: fromHex(fields["sender-id_hex"], "sender-id_hex"),
    recipientId: fromHex(fields["recipient-id_hex"], "recipient-id_hex"),
    idContext: fields["id-context_hex"] === undefined
      ? undefined
      : fromHex(fields["id-context_hex"], "id-context_hex"),
    replayWindow: window,
  };
}
