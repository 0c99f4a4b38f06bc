/**
 * Writes the frames a WebSocket sends in one turn of the event loop
 * together: for a `ws` WebSocket on a `node:net` socket, where each frame
 * was a system call of its own (a `writev` a response, in Deno's
 * `node:net`). Used by `node_ws.ts`.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** What {@linkcode batchWrites} uses of the socket under the WebSocket. */
export interface Corkable {
  /** Holds what is written in the socket's buffer. */
  cork(): void;
  /** Writes what was held, at once. */
  uncork(): void;
}

/** What {@linkcode batchWrites} wraps: a WebSocket's `send`. */
export interface FrameSender {
  send(data: Uint8Array): void;
}

/**
 * Makes `ws.send` hold its frames in `socket`'s buffer (`cork()`) from the
 * first frame of a turn, and write them together in the next turn's check
 * phase (`setImmediate`): one `writev` for the responses to the messages
 * delivered meanwhile. The frames go in order, a turn later at most; the
 * WebSocket's own cork around each frame nests inside.
 *
 * @param ws The WebSocket; its `send` is replaced.
 * @param socket The socket it writes to.
 * @param later What runs the flush in the next turn (a test passes its own).
 *
 * @example Three frames, one write
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { batchWrites } from "./batch_writes.ts";
 *
 * const trace: string[] = [];
 * const socket = {
 *   cork: () => trace.push("cork"),
 *   uncork: () => trace.push("uncork"),
 * };
 * const ws = { send: (data: Uint8Array) => trace.push(`send ${data[0]}`) };
 * const turns: (() => void)[] = [];
 * batchWrites(ws, socket, (flush) => turns.push(flush));
 * for (const byte of [1, 2, 3]) ws.send(new Uint8Array([byte]));
 * turns.shift()!();
 * assertEquals(trace, ["cork", "send 1", "send 2", "send 3", "uncork"]);
 * ```
 */
export function batchWrites(
  ws: FrameSender,
  socket: Corkable,
  later: (flush: () => void) => unknown = setImmediate,
): void {
  const send = ws.send.bind(ws);
  let corked = false;
  const flush = () => {
    corked = false;
    socket.uncork();
  };
  ws.send = (data: Uint8Array) => {
    if (!corked) {
      corked = true;
      socket.cork();
      later(flush);
    }
    send(data);
  };
}
