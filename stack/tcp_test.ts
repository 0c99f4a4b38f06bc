// CoAP over TCP's framing (RFC 8323 §3.2), in memory: every length form
// both ways, reads cut anywhere, a message over the limit, and a server and
// client joined by two frame sockets.

import { assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import { Code, decodeMessage, encodeMessage, Option, utf8 } from "./message.ts";
import { CoapServer } from "./server.ts";
import { tcpFrame, TcpFrameSocket } from "./tcp.ts";
import { attachWebSocket } from "./websocket.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A frame socket whose stream records what is written and its end. */
function recording(maxMessageSize?: number) {
  const written: Uint8Array[] = [];
  const events: string[] = [];
  let ended = false;
  const socket = new TcpFrameSocket({
    write: (bytes) => written.push(bytes),
    end: () => {
      ended = true;
    },
  }, { maxMessageSize });
  const messages: Uint8Array[] = [];
  socket.addEventListener("message", (event) => {
    messages.push((event as MessageEvent).data as Uint8Array);
  });
  socket.addEventListener("close", (event) => {
    const { code, reason } = event as CloseEvent;
    events.push(`close ${code} ${reason}`);
  });
  return {
    socket,
    written,
    messages,
    events,
    ended: () => ended,
  };
}

/** A message whose options and payload take `length` bytes after the token. */
function messageOf(length: number, token = [7, 8]): Uint8Array {
  // One Uri-Path option of 1 byte header + 1 byte, the marker, the rest payload.
  const payload = new Uint8Array(length - 3).map((_, i) => i & 0xff);
  return encodeMessage({
    code: Code.POST,
    token: new Uint8Array(token),
    options: [{ number: Option.URI_PATH, value: utf8("x") }],
    payload,
  });
}

Deno.test("tcpFrame() writes each length form (RFC 8323 §3.2: 0-12 in the nibble, 13-268 in one more byte, 269-65804 in two, past that in four), and TcpFrameSocket reads each back, byte by byte or whole", () => {
  const lengths = [4, 12, 13, 268, 269, 1000, 65804, 65805, 70000];
  const heads: number[][] = [];
  for (const length of lengths) {
    const frame = messageOf(length);
    const framed = tcpFrame(frame);
    const extension = framed.length - frame.length;
    heads.push([length, framed[0] >> 4, extension]);
    for (const chunk of [1, 7, framed.length]) {
      const t = recording(1 << 20);
      for (let at = 0; at < framed.length; at += chunk) {
        t.socket.receive(framed.subarray(at, at + chunk));
      }
      assertEquals(t.messages, [frame], `length ${length}, reads of ${chunk}`);
    }
  }
  assertEquals(heads, [
    [4, 4, 0],
    [12, 12, 0],
    [13, 13, 1],
    [268, 13, 1],
    [269, 14, 2],
    [1000, 14, 2],
    [65804, 14, 2],
    [65805, 15, 4],
    [70000, 15, 4],
  ]);
});

Deno.test("TcpFrameSocket: a message whose length field says more than maxMessageSize is not read: an Abort with the reason goes out, the stream ends, the socket closes 4000, and what follows is dropped", () => {
  const t = recording(1152);
  const big = tcpFrame(messageOf(2000));
  t.socket.receive(big.subarray(0, 4));
  t.socket.receive(tcpFrame(new Uint8Array([0x00, 0xe2])));
  assertEquals(t.messages, []);
  assertEquals(t.events, [
    "close 4000 Message of 2004 bytes exceeds Max-Message-Size 1152",
  ]);
  assertEquals(t.ended(), true);
  const abort = decodeMessage(
    (() => {
      // Back to the connection's form to decode it.
      const framed = t.written[0];
      const length = framed[0] >> 4;
      const extension = length === 13 ? 1 : 0;
      const out = new Uint8Array(framed.length - extension);
      out[0] = framed[0] & 0x0f;
      out.set(framed.subarray(1 + extension), 1);
      return out;
    })(),
  );
  assertEquals(
    [abort.code, new TextDecoder().decode(abort.payload)],
    [Code.ABORT, "Message of 2004 bytes exceeds Max-Message-Size 1152"],
  );
  // One at the limit is read.
  const fits = recording(1152);
  fits.socket.receive(tcpFrame(messageOf(1148)));
  assertEquals(fits.messages.map((m) => m.length), [1152]);
});

Deno.test("TcpFrameSocket: the stream's end closes the socket (1000, or 1006 with the error); sends after it go nowhere", () => {
  const t = recording();
  t.socket.streamClosed();
  t.socket.send(new Uint8Array([0x00, 0xe2]));
  const failed = recording();
  failed.socket.streamClosed("read ECONNRESET");
  assertEquals([t.events, failed.events, t.written.length], [
    ["close 1000 "],
    ["close 1006 read ECONNRESET"],
    0,
  ]);
});

Deno.test("a CoapServer and a CoapClient over two frame sockets: CSMs, a GET, a block-wise upload and its block-wise answer, a Release", async () => {
  const server = new CoapServer({
    "/hello": { GET: () => ({ payload: "hi" }) },
    "/echo": { PUT: (request) => ({ code: "2.04", payload: request.payload }) },
  }, { log: quiet });
  const wires: number[] = [];
  const ends: { far?: TcpFrameSocket } = {};
  const near = new TcpFrameSocket({
    write: (bytes) => {
      wires.push(bytes.length);
      queueMicrotask(() => ends.far!.receive(bytes));
    },
    end: () => queueMicrotask(() => ends.far!.streamClosed()),
  });
  const far = ends.far = new TcpFrameSocket({
    write: (bytes) => queueMicrotask(() => near.receive(bytes)),
    end: () => queueMicrotask(() => near.streamClosed()),
  });
  server.accept(far);
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  const trace: string[] = [];
  for await (const event of client.request({ method: "GET", path: "/hello" })) {
    if (event.kind === "response") {
      trace.push(
        `${event.message.code} ${
          new TextDecoder().decode(event.message.payload)
        }`,
      );
    }
  }
  const body = new Uint8Array(5000).map((_, i) => (i * 13) & 0xff);
  for await (
    const event of client.request({
      method: "PUT",
      path: "/echo",
      payload: body,
    })
  ) {
    if (event.kind === "response") {
      trace.push(
        `${event.message.code} ${event.message.payload.length} same=${
          event.message.payload.every((b, i) => b === body[i])
        }`,
      );
    }
  }
  assertEquals(trace, ["2.05 hi", "2.04 5000 same=true"]);
  assertEquals(server.connections, 1);
  client.close();
  for (let i = 0; i < 20; i++) await Promise.resolve();
  assertEquals([near.readyState, far.readyState, server.connections], [
    3,
    3,
    0,
  ]);
  // Nothing sent over the stream was larger than a block and its header.
  assertEquals(Math.max(...wires) < 1100, true);
});

Deno.test("TcpFrameSocket: a token length of 9 to 15 (reserved, RFC 8323 §3.2) is a format error at once: Abort with the reason, closed 4000, onAbort told", () => {
  const told: string[] = [];
  const written: Uint8Array[] = [];
  const events: string[] = [];
  const socket = new TcpFrameSocket({
    write: (bytes) => written.push(bytes),
    end() {},
  }, { onAbort: (reason) => told.push(reason) });
  socket.addEventListener("close", (event) => {
    events.push(
      `${(event as CloseEvent).code} ${(event as CloseEvent).reason}`,
    );
  });
  socket.receive(new Uint8Array([0x09]));
  assertEquals(told, ["Malformed message: token length 9 (at most 8)"]);
  assertEquals(events, ["4000 Malformed message: token length 9 (at most 8)"]);
  // Length 46 (the diagnostic and its marker): one extension byte, then
  // the code.
  assertEquals([written.length, written[0][0] >> 4, written[0][2]], [
    1,
    13,
    Code.ABORT,
  ]);
});
