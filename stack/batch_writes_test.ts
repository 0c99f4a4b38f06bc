import { assertEquals } from "@std/assert";
import { batchWrites } from "./batch_writes.ts";

/** A socket that counts corks as node:stream does, and records its writes. */
function fakeSocket(trace: string[]) {
  let corks = 0;
  let held: string[] = [];
  return {
    cork() {
      corks++;
    },
    uncork() {
      if (corks > 0) corks--;
      if (corks === 0 && held.length > 0) {
        trace.push(`writev ${held.join(" ")}`);
        held = [];
      }
    },
    write(frame: string) {
      if (corks > 0) held.push(frame);
      else trace.push(`write ${frame}`);
    },
  };
}

Deno.test("batchWrites: the frames sent in one turn leave in one write, in order, at the next turn; each turn's own; ws's cork around each frame nests inside", () => {
  const trace: string[] = [];
  const socket = fakeSocket(trace);
  // A ws WebSocket corks around each frame itself.
  const ws = {
    send(data: Uint8Array) {
      socket.cork();
      socket.write(`f${data[0]}`);
      socket.uncork();
    },
  };
  const turns: (() => void)[] = [];
  batchWrites(ws, socket, (flush) => turns.push(flush));
  for (const n of [1, 2, 3]) ws.send(new Uint8Array([n]));
  assertEquals([trace.length, turns.length], [0, 1]);
  turns.shift()!();
  ws.send(new Uint8Array([4]));
  turns.shift()!();
  assertEquals(turns, []);
  assertEquals(trace, ["writev f1 f2 f3", "writev f4"]);
});

Deno.test("batchWrites: by default the flush runs in a later macrotask, after the turn's microtasks: a frame a microtask sends joins the batch", async () => {
  const trace: string[] = [];
  const socket = fakeSocket(trace);
  const ws = {
    send(data: Uint8Array) {
      socket.write(`f${data[0]}`);
    },
  };
  batchWrites(ws, socket);
  ws.send(new Uint8Array([1]));
  await Promise.resolve();
  ws.send(new Uint8Array([2]));
  assertEquals(trace, []);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(trace, ["writev f1 f2"]);
});
