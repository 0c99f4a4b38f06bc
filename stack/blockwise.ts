// This module is browser compatible.

/**
 * A server's side of block-wise uploads (RFC 7959 §2.5, RFC 9175 §3): the
 * blocks of a request body that come in Block1 options, reassembled per
 * peer and per request (its method and options, Request-Tag among them),
 * answered 2.31 Continue until the last, which hands the whole body on.
 * And the other half of a combined transfer (RFC 7959 §2.7, §3.2): the
 * answer to a request that is not a GET, kept while its client fetches it
 * block by block, so that a POST or PUT acts once, not once a block.
 *
 * What it holds is bounded: bodies by `maxBodySize` (4.13 with Size1 past
 * it), uploads by `maxUploadsPerConnection` (a new one replaces the
 * connection's oldest), every upload and kept answer together by
 * `maxUploadBytes` (5.03 past it), and each by `uploadTimeout`.
 *
 * @module
 */

import type { Clock } from "./connection.ts";
import type { ResponseInit } from "./exchange.ts";
import {
  type Block,
  type CoapMessage,
  type CoapOption,
  encodeBlock,
  hex,
  Option,
  type OutgoingMessage,
  uint,
} from "./message.ts";

/** The bounds of {@linkcode Uploads}, all required (see `FlowLimits`). */
export interface UploadLimits {
  /** The largest request body reassembled, in bytes. */
  readonly maxBodySize: number;
  /** Uploads in progress on one connection. */
  readonly maxUploadsPerConnection: number;
  /** Bytes held by uploads and kept answers over the server. */
  readonly maxUploadBytes: number;
  /** How long an upload or kept answer waits for its next request, in ms. */
  readonly uploadTimeout: number;
}

/** What {@linkcode Uploads.prototype.take} makes of one block. */
export type UploadStep =
  /** Answer this (2.31 Continue, or an error) and do nothing more. */
  | { readonly kind: "answer"; readonly init: ResponseInit }
  /** The body is whole: serve it; the response carries `block1`. */
  | {
    readonly kind: "complete";
    readonly payload: Uint8Array;
    readonly block1: CoapOption;
  };

/** Bytes held over one server's connections. */
export interface UploadBudget {
  /** Bytes held now. */
  held: number;
}

/** Options that do not tell one request's blocks from another's. */
const NOT_IN_KEY: ReadonlySet<number> = new Set([
  Option.BLOCK1,
  Option.BLOCK2,
  Option.SIZE1,
  Option.SIZE2,
  Option.ECHO,
  Option.NO_RESPONSE,
]);

/**
 * The key of a request's blocks: its code and every option but the
 * block-wise ones (RFC 9175 §3.3: the blocks of one body agree on all
 * others, Request-Tag included).
 *
 * @param message The request.
 * @param withTag Whether Request-Tag and Content-Format count (they do
 * for uploads; a kept answer's follow-ups may leave them out).
 * @returns The key.
 */
export function blockKey(message: CoapMessage, withTag = true): string {
  let key = String(message.code);
  for (const option of message.options) {
    if (NOT_IN_KEY.has(option.number)) continue;
    // A follow-up carries no body: nor need it say its format.
    if (
      !withTag &&
      (option.number === Option.REQUEST_TAG ||
        option.number === Option.CONTENT_FORMAT)
    ) continue;
    key += `;${option.number}=${hex(option.value)}`;
  }
  return key;
}

interface Assembly {
  readonly parts: Uint8Array[];
  size: number;
  timer: unknown;
}

interface Kept {
  readonly message: OutgoingMessage;
  readonly bytes: number;
  timer: unknown;
}

/**
 * The uploads and kept answers of one connection (for UDP, one peer).
 *
 * @example Two blocks of 16 bytes and a last one of 3
 * ```ts
 * import { Uploads } from "./blockwise.ts";
 * import { systemClock } from "./connection.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const uploads = new Uploads({ held: 0 }, {
 *   maxBodySize: 1024, maxUploadsPerConnection: 2, maxUploadBytes: 4096,
 *   uploadTimeout: 1000,
 * }, systemClock);
 * const bytes = new Uint8Array(35).fill(7);
 * const steps = [0, 1, 2].map((num) =>
 *   uploads.take("PUT /x", { num, more: num < 2, szx: 0 },
 *     bytes.subarray(num * 16, num * 16 + 16))
 * );
 * assertEquals(steps.map((step) => step.kind), ["answer", "answer", "complete"]);
 * assertEquals(steps[2].kind === "complete" && steps[2].payload, bytes);
 * uploads.close();
 * ```
 */
export class Uploads {
  readonly #assemblies = new Map<string, Assembly>();
  readonly #kept = new Map<string, Kept>();
  readonly #budget: UploadBudget;
  readonly #limits: UploadLimits;
  readonly #clock: Clock;

  /**
   * Creates the table of one connection.
   *
   * @param budget The server's count of bytes held, shared.
   * @param limits The bounds.
   * @param clock The timers.
   */
  constructor(budget: UploadBudget, limits: UploadLimits, clock: Clock) {
    this.#budget = budget;
    this.#limits = limits;
    this.#clock = clock;
  }

  /** Uploads in progress. */
  get uploads(): number {
    return this.#assemblies.size;
  }

  /** Answers kept for their follow-ups. */
  get answers(): number {
    return this.#kept.size;
  }

  /**
   * Takes one block of an upload.
   *
   * @param key The request's {@linkcode blockKey}.
   * @param block Its Block1 option.
   * @param payload Its payload.
   * @param size1 Its Size1 option (the whole body's size), if any.
   * @returns What to answer, or the whole body.
   */
  take(
    key: string,
    block: Block,
    payload: Uint8Array,
    size1?: number,
  ): UploadStep {
    const { maxBodySize, maxUploadBytes } = this.#limits;
    // BERT (RFC 8323 §6, SZX 7): blocks of any number of 1024-byte units,
    // numbered in 1024s. Taken wherever it comes, though this server does
    // not offer it: aiocoap 0.4.11 sends it over TCP regardless.
    const bert = block.szx === 7;
    const size = bert ? 1024 : 16 << block.szx;
    if (
      block.more &&
      (bert
        ? payload.length === 0 || payload.length % size !== 0
        : payload.length !== size)
    ) {
      return answer(
        "4.00",
        `Bad Request: Block1 block ${block.num} has ${payload.length} bytes, but more follow and its size is ${
          bert ? "a multiple of 1024 (BERT)" : size
        }`,
      );
    }
    if (!bert && payload.length > size) {
      return answer(
        "4.00",
        `Bad Request: Block1 block ${block.num} has ${payload.length} bytes, more than its size ${size}`,
      );
    }
    const offset = block.num * size;
    if ((size1 ?? 0) > maxBodySize || offset + payload.length > maxBodySize) {
      this.#drop(key);
      return {
        kind: "answer",
        init: {
          code: "4.13",
          payload:
            `Request Entity Too Large: at most ${maxBodySize} bytes (maxBodySize)`,
          options: [{ number: Option.SIZE1, value: uint(maxBodySize) }],
        },
      };
    }
    let assembly = this.#assemblies.get(key);
    if (block.num === 0) {
      if (assembly !== undefined) this.#drop(key);
      if (!block.more) {
        return {
          kind: "complete",
          payload,
          block1: block1Option(block),
        };
      }
      if (this.#assemblies.size >= this.#limits.maxUploadsPerConnection) {
        // The connection's oldest upload gives way: its next block gets 4.08.
        this.#drop(this.#assemblies.keys().next().value!);
      }
      assembly = { parts: [], size: 0, timer: undefined };
      this.#assemblies.set(key, assembly);
    } else if (assembly === undefined || assembly.size !== offset) {
      const why = assembly === undefined
        ? "no upload of this request is in progress (its first block is missing, or it timed out)"
        : `${assembly.size} bytes have arrived, not ${offset}`;
      this.#drop(key);
      return answer(
        "4.08",
        `Request Entity Incomplete: block ${block.num} does not continue the body: ${why}`,
      );
    } else {
      // Most recently used last: the oldest is the first in the map.
      this.#assemblies.delete(key);
      this.#assemblies.set(key, assembly);
    }
    const held = this.#budget.held;
    if (block.more && held + payload.length > maxUploadBytes) {
      this.#drop(key);
      return {
        kind: "answer",
        init: {
          code: "5.03",
          payload:
            `Service Unavailable: uploads hold ${held} bytes, the server's limit is ${maxUploadBytes} (maxUploadBytes)`,
          maxAge: Math.max(1, Math.ceil(this.#limits.uploadTimeout / 1000)),
        },
      };
    }
    if (!block.more) {
      const whole = new Uint8Array(assembly.size + payload.length);
      let at = 0;
      for (const part of assembly.parts) {
        whole.set(part, at);
        at += part.length;
      }
      whole.set(payload, at);
      this.#drop(key);
      return { kind: "complete", payload: whole, block1: block1Option(block) };
    }
    // A copy: the payload is a view of the datagram or frame.
    assembly.parts.push(payload.slice());
    assembly.size += payload.length;
    this.#budget.held += payload.length;
    this.#clock.clearTimeout(assembly.timer);
    assembly.timer = this.#clock.setTimeout(
      () => this.#drop(key),
      this.#limits.uploadTimeout,
    );
    return {
      kind: "answer",
      init: { code: "2.31", options: [block1Option(block)] },
    };
  }

  /**
   * Keeps a whole answer for the block-wise follow-ups of the request it
   * answers, if the budget has room; a newer answer to the same request
   * replaces it.
   *
   * @param key The request's {@linkcode blockKey} without Request-Tag.
   * @param message The whole answer.
   * @param bytes The size of its payload.
   * @returns Whether it was kept.
   */
  keep(key: string, message: OutgoingMessage, bytes: number): boolean {
    this.forget(key);
    if (this.#budget.held + bytes > this.#limits.maxUploadBytes) return false;
    const kept: Kept = { message, bytes, timer: undefined };
    kept.timer = this.#clock.setTimeout(
      () => this.forget(key),
      this.#limits.uploadTimeout,
    );
    this.#budget.held += bytes;
    this.#kept.set(key, kept);
    return true;
  }

  /**
   * The answer kept for `key`, if any; its timeout starts again.
   *
   * @param key The follow-up's {@linkcode blockKey} without Request-Tag.
   * @returns The whole answer.
   */
  keptAnswer(key: string): OutgoingMessage | undefined {
    const kept = this.#kept.get(key);
    if (kept === undefined) return undefined;
    this.#clock.clearTimeout(kept.timer);
    kept.timer = this.#clock.setTimeout(
      () => this.forget(key),
      this.#limits.uploadTimeout,
    );
    return kept.message;
  }

  /**
   * Lets go of the answer kept for `key` (its last block went out).
   *
   * @param key Its {@linkcode blockKey} without Request-Tag.
   */
  forget(key: string): void {
    const kept = this.#kept.get(key);
    if (kept === undefined) return;
    this.#clock.clearTimeout(kept.timer);
    this.#budget.held -= kept.bytes;
    this.#kept.delete(key);
  }

  /** Lets go of everything: the connection closed. */
  close(): void {
    for (const key of [...this.#assemblies.keys()]) this.#drop(key);
    for (const key of [...this.#kept.keys()]) this.forget(key);
  }

  #drop(key: string): void {
    const assembly = this.#assemblies.get(key);
    if (assembly === undefined) return;
    this.#clock.clearTimeout(assembly.timer);
    this.#budget.held -= assembly.size;
    this.#assemblies.delete(key);
  }
}

function answer(code: string, payload: string): UploadStep {
  return { kind: "answer", init: { code, payload } };
}

function block1Option(block: Block): CoapOption {
  return { number: Option.BLOCK1, value: encodeBlock(block) };
}
