// This module is browser compatible.

/**
 * CoAP over TCP and TLS (RFC 8323 §3, §4), without the I/O: a byte stream
 * cut into messages and messages written to it. RFC 8323 gives TCP and
 * WebSocket the same messages, signals (CSM, Ping, Pong, Release, Abort)
 * and rules; only the framing differs: over TCP a message's length leads
 * it (§3.2), where a WebSocket frame carries one message whole (§4.2).
 * {@linkcode TcpFrameSocket} turns one into the other, so a stream is
 * served and used by the same connection, server and client as a
 * WebSocket. `tcp_node.ts` joins it to `node:net` and `node:tls`.
 *
 * @module
 */

import { Code, encodeMessage, utf8 } from "./message.ts";
import type { WebSocketLike } from "./websocket.ts";
import { Listeners } from "./listeners.ts";

/** What a {@linkcode TcpFrameSocket} needs of its byte stream. */
export interface ByteStream {
  /** Writes bytes to the peer. */
  write(bytes: Uint8Array): void;
  /** Ends the stream (after what was written). */
  end(): void;
  /** Bytes written and not yet sent, if the platform says. */
  readonly bufferedAmount?: number;
}

/** Options for {@linkcode TcpFrameSocket}. */
export interface TcpFrameOptions {
  /**
   * The largest message taken from the peer, in bytes, counted as the
   * connection counts it (the message without its length field): one
   * whose length says more is not read; the connection is aborted with
   * the reason, and what the peer sends after it is dropped.
   *
   * @default {1152}
   */
  maxMessageSize?: number;
  /**
   * Told why, when this side aborts the stream for what the peer sent (a
   * message too large, a token length past 8): a server logs it.
   */
  onAbort?: (reason: string) => void;
}

/**
 * The bytes a message takes on a WebSocket (RFC 8323 §4.2: a first byte
 * with length 0 and TKL, then code, token, options and payload), written
 * as over TCP (§3.2: the length of options and payload in the first
 * byte's upper nibble, with 1, 2 or 4 more bytes past 12).
 *
 * @param frame A message as `encodeMessage` writes it.
 * @returns The same message framed for TCP.
 *
 * @example
 * ```ts
 * import { tcpFrame } from "./tcp.ts";
 * import { assertEquals } from "@std/assert";
 *
 * // A CSM with no options: code 7.01, no token.
 * assertEquals([...tcpFrame(new Uint8Array([0x00, 0xe1]))], [0x00, 0xe1]);
 * // A GET of /a with token 1: 2 bytes of options, so length 2.
 * assertEquals(
 *   [...tcpFrame(new Uint8Array([0x01, 0x01, 0x07, 0xb1, 0x61]))],
 *   [0x21, 0x01, 0x07, 0xb1, 0x61],
 * );
 * ```
 */
export function tcpFrame(frame: Uint8Array): Uint8Array {
  const tkl = frame[0] & 0x0f;
  const length = frame.length - 2 - tkl;
  let extension: number;
  let nibble: number;
  if (length < 13) [nibble, extension] = [length, 0];
  else if (length < 269) [nibble, extension] = [13, 1];
  else if (length < 65805) [nibble, extension] = [14, 2];
  else [nibble, extension] = [15, 4];
  const out = new Uint8Array(frame.length + extension);
  out[0] = (nibble << 4) | tkl;
  if (extension === 1) out[1] = length - 13;
  else if (extension === 2) {
    out[1] = (length - 269) >> 8;
    out[2] = (length - 269) & 0xff;
  } else if (extension === 4) {
    const value = length - 65805;
    out[1] = value >>> 24;
    out[2] = (value >>> 16) & 0xff;
    out[3] = (value >>> 8) & 0xff;
    out[4] = value & 0xff;
  }
  out.set(frame.subarray(1), 1 + extension);
  return out;
}

/**
 * One CoAP-over-TCP (or TLS) connection as a {@linkcode WebSocketLike}:
 * give it to `CoapServer.prototype.accept`, or to `attachWebSocket` for a
 * client. Feed it what the stream reads ({@linkcode receive}) and tell it
 * when the stream ends ({@linkcode streamClosed}); it writes what the
 * connection sends, framed for TCP. It is open from the start.
 *
 * @example Two messages in one read, and one split over two
 * ```ts
 * import { TcpFrameSocket } from "./tcp.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const socket = new TcpFrameSocket({ write() {}, end() {} });
 * const got: number[][] = [];
 * socket.addEventListener("message", (event) => {
 *   got.push([...((event as MessageEvent).data as Uint8Array)]);
 * });
 * socket.receive(new Uint8Array([0x00, 0xe1, 0x00, 0xe2, 0x21]));
 * socket.receive(new Uint8Array([0x01, 0x07, 0xb1, 0x61]));
 * assertEquals(got, [[0x00, 0xe1], [0x00, 0xe2], [0x01, 0x01, 0x07, 0xb1, 0x61]]);
 * ```
 */
export class TcpFrameSocket implements WebSocketLike {
  readonly protocol = "coap";
  binaryType = "arraybuffer";
  #readyState = 1;
  readonly #stream: ByteStream;
  readonly #maxMessageSize: number;
  readonly #onAbort: ((reason: string) => void) | undefined;
  /** The length field being read (1 to 5 bytes), and how much of it. */
  readonly #head = new Uint8Array(5);
  #headLength = 0;
  /** The message being read (as the connection takes it), and how much. */
  #frame: Uint8Array | undefined;
  #filled = 0;
  readonly #listeners = new Listeners();

  /**
   * Wraps an open stream.
   *
   * @param stream Where messages are written.
   * @param options The largest message taken.
   */
  constructor(stream: ByteStream, options: TcpFrameOptions = {}) {
    this.#stream = stream;
    this.#maxMessageSize = options.maxMessageSize ?? 1152;
    this.#onAbort = options.onAbort;
  }

  /** 1 while open, 3 once closed. */
  get readyState(): number {
    return this.#readyState;
  }

  /** Bytes written and not yet sent, as the stream says. */
  get bufferedAmount(): number {
    return this.#stream.bufferedAmount ?? 0;
  }

  /**
   * Takes bytes the stream read: each whole message in them is delivered
   * as a `message` event, the rest kept for the next read.
   *
   * @param bytes What was read.
   */
  receive(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length && this.#readyState === 1) {
      if (this.#frame === undefined) {
        // The length field: 1 to 5 bytes, kept until whole.
        this.#head[this.#headLength++] = bytes[at++];
        const nibble = this.#head[0] >> 4;
        const extension = nibble < 13
          ? 0
          : nibble === 13
          ? 1
          : nibble === 14
          ? 2
          : 4;
        if (this.#headLength < 1 + extension) continue;
        const head = this.#head;
        let length = nibble;
        if (extension === 1) length = head[1] + 13;
        else if (extension === 2) length = ((head[1] << 8) | head[2]) + 269;
        else if (extension === 4) {
          length = head[1] * 0x1000000 +
            ((head[2] << 16) | (head[3] << 8) | head[4]) + 65805;
        }
        this.#headLength = 0;
        const tkl = head[0] & 0x0f;
        if (tkl > 8) {
          // RFC 8323 §3.2: 9 to 15 are reserved, a message format error.
          this.abort(
            `Malformed message: token length ${tkl} (at most 8)`,
          );
          return;
        }
        // The message as the connection counts it: first byte, code,
        // token, options and payload.
        const size = 2 + tkl + length;
        if (size > this.#maxMessageSize) {
          this.abort(
            `Message of ${size} bytes exceeds Max-Message-Size ${this.#maxMessageSize}`,
          );
          return;
        }
        this.#frame = new Uint8Array(size);
        this.#frame[0] = tkl;
        this.#filled = 1;
      }
      const frame = this.#frame;
      const take = Math.min(frame.length - this.#filled, bytes.length - at);
      frame.set(bytes.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (this.#filled === frame.length) {
        this.#frame = undefined;
        this.#dispatch(new MessageEvent("message", { data: frame }));
      }
    }
  }

  /**
   * The stream ended or failed: the socket closes.
   *
   * @param reason Why, if known.
   */
  streamClosed(reason = ""): void {
    this.#close(reason === "" ? 1000 : 1006, reason);
  }

  /**
   * Writes one message (as `encodeMessage` makes it), framed for TCP.
   *
   * @param data The message.
   */
  send(data: Uint8Array): void {
    if (this.#readyState !== 1) return;
    this.#stream.write(tcpFrame(data));
  }

  /**
   * Ends the stream after what was written (a Release or Abort, sent just
   * before, goes first).
   *
   * @param code A WebSocket close code, passed on to the close event.
   * @param reason Why.
   */
  close(code = 1000, reason = ""): void {
    if (this.#readyState !== 1) return;
    this.#stream.end();
    this.#close(code, reason);
  }

  /**
   * Listens for `message` and `close` (`open` never fires: the socket is
   * open from the start).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options `once`.
   */
  addEventListener(
    type: string,
    listener: (event: Event) => void,
    options?: AddEventListenerOptions,
  ): void {
    this.#listeners.add(type, listener, options);
  }

  /**
   * Ends the stream for what the peer did (a message too large to read, a
   * token length past 8, no CSM in time): `onAbort` is told, an Abort with
   * the reason goes out, and the socket closes with code 4000.
   *
   * @param reason Why, sent to the peer.
   */
  abort(reason: string): void {
    if (this.#readyState !== 1) return;
    this.#frame = undefined;
    try {
      this.#onAbort?.(reason);
    } catch { /* a logger's failure changes nothing */ }
    try {
      this.#stream.write(tcpFrame(encodeMessage({
        code: Code.ABORT,
        token: EMPTY,
        options: [],
        payload: utf8(reason),
      })));
    } catch { /* the stream is gone: closing is all there is */ }
    this.#stream.end();
    this.#close(4000, reason);
  }

  #close(code: number, reason: string): void {
    if (this.#readyState === 3) return;
    this.#readyState = 3;
    this.#frame = undefined;
    this.#dispatch(
      Object.assign(new Event("close"), {
        code,
        reason,
        wasClean: code === 1000,
      }),
    );
  }

  #dispatch(event: Event): void {
    // A listener that throws (attachWebSocket's contain their own) must
    // not reach the stream's read, which would end the process: the
    // stream is ended instead.
    this.#listeners.dispatch(event, () => {
      if (this.#readyState === 1) this.abort("Internal error");
    });
  }
}

const EMPTY = new Uint8Array(0);
