// Two connected in-memory WebSockets, for tests that need no network: what
// one end sends arrives at the other as a binary (or text) message event in
// a later microtask, and closing either end closes both. An end can stop
// draining (`stall()`): what it sends then waits, counted in its
// `bufferedAmount` as a WebSocket's queue is, until `drain()`.

import type { WebSocketLike } from "../websocket.ts";

const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;

/** One end of a {@linkcode socketPair}; it records what it sent. */
export class PairedSocket extends EventTarget implements WebSocketLike {
  readyState: number = OPEN;
  readonly protocol: string = "coap";
  binaryType = "blob";
  /** Every message this end sent. */
  readonly sent: (Uint8Array | string)[] = [];
  peer!: PairedSocket;
  /** Bytes sent that have not been delivered (while stalled). */
  bufferedAmount = 0;
  #stalled = false;
  #backlog: (Uint8Array | string)[] = [];

  /** Stops delivering what this end sends: it waits in `bufferedAmount`. */
  stall(): void {
    this.#stalled = true;
  }

  /**
   * Delivers what waits, or its first `count` messages, and keeps
   * delivering from then on unless a count was given.
   *
   * @param count How many waiting messages to deliver.
   */
  drain(count = Infinity): void {
    if (count === Infinity) this.#stalled = false;
    while (count-- > 0 && this.#backlog.length > 0) {
      const data = this.#backlog.shift()!;
      this.bufferedAmount -= data.length;
      this.#deliver(data);
    }
  }

  /**
   * Sends bytes (copied, as a wire would) or text.
   *
   * @param data The message.
   */
  send(data: Uint8Array | string): void {
    if (this.readyState !== OPEN) {
      throw new Error("Cannot send on a socket that is not open");
    }
    const copy = typeof data === "string" ? data : data.slice();
    this.sent.push(copy);
    if (this.#stalled) {
      this.#backlog.push(copy);
      this.bufferedAmount += copy.length;
      return;
    }
    this.#deliver(copy);
  }

  #deliver(copy: Uint8Array | string): void {
    const peer = this.peer;
    queueMicrotask(() => {
      if (peer.readyState !== OPEN) return;
      const payload = typeof copy === "string" ? copy : copy.buffer;
      peer.dispatchEvent(new MessageEvent("message", { data: payload }));
    });
  }

  /**
   * Closes both ends; each gets one close event.
   *
   * @param code The close code.
   * @param reason The reason.
   */
  close(code = 1005, reason = ""): void {
    if (this.readyState >= CLOSING) return;
    // Messages already sent still arrive: the ends close after them.
    this.readyState = CLOSING;
    for (const end of [this, this.peer]) {
      queueMicrotask(() => {
        if (end.readyState === CLOSED) return;
        end.readyState = CLOSED;
        end.dispatchEvent(new CloseEvent("close", { code, reason }));
      });
    }
  }
}

/**
 * Makes two connected sockets, both open (or both connecting, to be opened
 * with {@linkcode openPair}).
 *
 * @param open Whether the sockets start open.
 * @returns The two ends.
 */
export function socketPair(open = true): [PairedSocket, PairedSocket] {
  const a = new PairedSocket(), b = new PairedSocket();
  a.peer = b;
  b.peer = a;
  if (!open) a.readyState = b.readyState = CONNECTING;
  return [a, b];
}

/**
 * Opens a pair made with `socketPair(false)`: both get an open event.
 *
 * @param pair The two ends.
 */
export function openPair(pair: [PairedSocket, PairedSocket]): void {
  for (const end of pair) {
    end.readyState = OPEN;
    end.dispatchEvent(new Event("open"));
  }
}
