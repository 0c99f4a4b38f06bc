// This module is browser compatible.

/**
 * The thin edge between a standard `WebSocket` (browser, Deno, workerd) and
 * a {@linkcode CoapConnection}: binary messages in, binary messages out, the
 * close event passed on.
 *
 * @module
 */

import {
  CoapConnection,
  type ConnectionOptions,
  type Transport,
} from "./connection.ts";
import type { CoapMessage, OutgoingMessage } from "./message.ts";

/** The parts of a standard `WebSocket` this stack uses. */
export interface WebSocketLike {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number;
  /** The negotiated subprotocol. */
  readonly protocol: string;
  /** How binary messages arrive; set to `"arraybuffer"`. */
  binaryType: string;
  /** Sends one message. */
  send(data: Uint8Array): void;
  /**
   * Sends one message whose decoded form the caller has (`message`, what
   * `data` encodes): a socket that reads what it sends (CoAP over UDP's
   * peer socket) takes it instead of decoding `data` again. A WebSocket
   * has no such method.
   */
  sendMessage?(data: Uint8Array, message: OutgoingMessage): void;
  /**
   * Hands every message to `receive`, decoded where the socket decoded it
   * anyway, instead of as `message` events (CoAP over UDP's peer socket
   * has this method; a WebSocket does not).
   */
  deliverTo?(
    receive: (data: Uint8Array, message?: CoapMessage) => void,
  ): void;
  /** Closes the socket. */
  close(code?: number, reason?: string): void;
  /**
   * Bytes queued by `send` and not yet handed to the network; browsers and
   * Deno have it, workerd does not.
   */
  readonly bufferedAmount?: number;
  /**
   * The requester of the request on `token` lost interest before its final
   * response (see `Transport.abandon`); a WebSocket has no such method,
   * CoAP over UDP's peer socket does.
   */
  abandon?(token: Uint8Array): void;
  /**
   * The peer's request on `token` gets no response (see
   * `Transport.withhold`); CoAP over UDP's peer socket has this method.
   */
  withhold?(token: Uint8Array): void;
  /**
   * The peer's request on `token` proved itself (see `Transport.vouch`);
   * CoAP over UDP's peer socket has this method.
   */
  vouch?(token: Uint8Array): void;
  /** Listens for `open`, `message`, `close` and `error`. */
  addEventListener(
    type: string,
    listener: (event: Event) => void,
    options?: AddEventListenerOptions,
  ): void;
}

const OPEN = 1;

/** Close reasons are limited to 123 bytes of UTF-8 (RFC 6455 §5.5). */
function shortReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= 123) return reason;
  return new TextDecoder().decode(bytes.slice(0, 120)).replace(/\uFFFD$/, "") +
    "...";
}

/**
 * Wraps a WebSocket as a {@linkcode Transport}. Scripts may close a socket
 * only with code 1000 or 3000-4999, so other codes are sent as 1000 with the
 * diagnostic as the reason.
 *
 * @param socket The socket.
 * @returns The transport.
 *
 * @example
 * ```ts
 * import { webSocketTransport } from "./websocket.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const closed: unknown[] = [];
 * const transport = webSocketTransport({
 *   readyState: 1, protocol: "coap", binaryType: "arraybuffer",
 *   send() {}, addEventListener() {},
 *   close(code, reason) { closed.push(code, reason); },
 * });
 * transport.close(1007, "bad bytes");
 * assertEquals(closed, [1000, "bad bytes"]);
 * ```
 */
export function webSocketTransport(socket: WebSocketLike): Transport {
  return new WebSocketTransport(socket);
}

/**
 * The transport of {@linkcode webSocketTransport}: a class, not an object
 * literal with a getter and arrows, which was a dictionary of 448 bytes and
 * six closures a connection (a UDP server has one connection a peer).
 */
class WebSocketTransport implements Transport {
  readonly #socket: WebSocketLike;

  constructor(socket: WebSocketLike) {
    this.#socket = socket;
  }

  send(bytes: Uint8Array, message?: OutgoingMessage): void {
    const socket = this.#socket;
    if (socket.readyState !== OPEN) return;
    if (message !== undefined && socket.sendMessage !== undefined) {
      socket.sendMessage(bytes, message);
    } else socket.send(bytes);
  }

  get bufferedAmount(): number | undefined {
    return this.#socket.bufferedAmount;
  }

  abandon(token: Uint8Array): void {
    this.#socket.abandon?.(token);
  }

  withhold(token: Uint8Array): void {
    this.#socket.withhold?.(token);
  }

  vouch(token: Uint8Array): void {
    this.#socket.vouch?.(token);
  }

  close(code: number, reason: string): void {
    const allowed = code === 1000 || (code >= 3000 && code <= 4999);
    try {
      this.#socket.close(allowed ? code : 1000, shortReason(reason));
    } catch {
      this.#socket.close();
    }
  }
}

/**
 * Runs a {@linkcode CoapConnection} over a WebSocket: starts it (sending the
 * CSM) once the socket is open, feeds it every message, and tells it when
 * the socket closes. Its listeners are the last safety net: whatever
 * escapes the connection's own handling is contained there
 * ({@linkcode CoapConnection.prototype.fault}), never passed to the
 * platform, where it would end the process.
 *
 * @param socket An open or opening WebSocket with the `coap` subprotocol.
 * @param options The connection's options.
 * @returns The connection.
 *
 * @example A connection over a socket that is already open
 * ```ts
 * import { attachWebSocket } from "./websocket.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const sent: Uint8Array[] = [];
 * const connection = attachWebSocket({
 *   readyState: 1, protocol: "coap", binaryType: "blob",
 *   send: (bytes) => sent.push(bytes), close() {}, addEventListener() {},
 * });
 * assertEquals(connection.state, "opening");
 * assertEquals(sent[0][1], 0xe1); // the CSM, 7.01
 * ```
 */
export function attachWebSocket(
  socket: WebSocketLike,
  options: ConnectionOptions = {},
): CoapConnection {
  try {
    socket.binaryType = "arraybuffer";
  } catch { /* a platform that only has ArrayBuffers */ }
  const connection = new CoapConnection(webSocketTransport(socket), options);
  if (socket.deliverTo !== undefined) {
    socket.deliverTo((data, message) => {
      try {
        connection.receive(data, message);
      } catch (error) {
        connection.fault(error);
      }
    });
  } else {
    socket.addEventListener("message", (event) => {
      try {
        const data = (event as MessageEvent).data;
        if (typeof data === "string" || data instanceof ArrayBuffer) {
          connection.receive(data);
        } else if (ArrayBuffer.isView(data)) {
          connection.receive(
            new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
          );
        } else {
          connection.abort("Unsupported WebSocket message type");
        }
      } catch (error) {
        connection.fault(error);
      }
    });
  }
  socket.addEventListener("close", (event) => {
    try {
      const { code, reason } = event as CloseEvent;
      connection.transportClosed(
        code,
        reason,
        (event as { plain?: boolean }).plain === true,
      );
    } catch (error) {
      connection.fault(error);
    }
  });
  const start = () => {
    try {
      connection.start();
    } catch (error) {
      connection.fault(error);
    }
  };
  if (socket.readyState === OPEN) start();
  else socket.addEventListener("open", start, { once: true });
  return connection;
}
