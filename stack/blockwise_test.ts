// Block-wise uploads (RFC 7959 §2.5, RFC 9175 §3) and the answers kept for
// their follow-ups, both roles, over in-memory socket pairs: whole traces
// of what each side sent.

import { assertEquals, assertThrows } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import {
  type CoapMessage,
  type CoapOption,
  Code,
  codeToString,
  decodeBlock,
  decodeMessage,
  encodeBlock,
  encodeMessage,
  getOption,
  hex,
  Option,
  readUint,
  text,
  uint,
  utf8,
} from "./message.ts";
import { CoapServer, type Resources } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import { type PairedSocket, socketPair } from "./testing/socket_pair.ts";
import { ManualClock } from "./testing/manual_clock.ts";
import type { FlowLimits } from "./flow.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

async function flush(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

function sent(socket: PairedSocket): CoapMessage[] {
  return socket.sent.map((m) => decodeMessage(m as Uint8Array))
    .filter((m) => m.code !== Code.CSM);
}

function blockOf(message: CoapMessage, number: number): string {
  const value = getOption(message, number);
  if (value === undefined) return "-";
  const { num, more, szx } = decodeBlock(value);
  return `${num}/${more ? 1 : 0}/${szx === 7 ? "bert" : 16 << szx}`;
}

/** One line a message: code, Block1, Block2, Size1, payload length. */
function line(message: CoapMessage): string {
  const size1 = getOption(message, Option.SIZE1);
  const tag = getOption(message, Option.REQUEST_TAG);
  return `${codeToString(message.code)} b1=${
    blockOf(message, Option.BLOCK1)
  } b2=${blockOf(message, Option.BLOCK2)}${
    size1 === undefined ? "" : ` size1=${readUint(size1)}`
  }${tag === undefined ? "" : ` tag=${hex(tag)}`} ${message.payload.length}B`;
}

const BODY = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) % 251);

async function setup(
  resources: Resources,
  options: {
    limits?: FlowLimits;
    clock?: ManualClock;
    blockSize?: number;
    maxMessageSize?: number;
  } = {},
) {
  const server = new CoapServer(resources, {
    log: quiet,
    limits: options.limits,
    clock: options.clock,
    maxMessageSize: options.maxMessageSize,
  });
  const [near, far] = socketPair();
  server.accept(far);
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection, { blockSize: options.blockSize });
  return { server, client, near, far };
}

async function only(
  client: CoapClient,
  request: Parameters<CoapClient["request"]>[0],
): Promise<string[]> {
  const trace: string[] = [];
  for await (const event of client.request(request)) {
    trace.push(
      event.kind === "response"
        ? `${event.message.code} ${event.message.payload.length}B last=${event.isLast}`
        : `exception ${(event.exception as Error | undefined)?.message}`,
    );
  }
  return trace;
}

Deno.test("a PUT of 3,000 bytes goes up in Block1 blocks of 1024, answered 2.31 each, and its 3,000-byte echo comes back in Block2 follow-ups without a body; the handler runs once", async () => {
  const calls: number[] = [];
  const { client, near, far, server } = await setup({
    "/echo": {
      PUT: (request) => {
        calls.push(request.payload.length);
        return { code: "2.04", payload: request.payload };
      },
    },
  });
  let got: Uint8Array | undefined;
  for await (
    const event of client.request({
      method: "PUT",
      path: "/echo",
      payload: BODY,
    })
  ) {
    if (event.kind === "response") got = event.message.payload;
  }
  assertEquals(got, BODY);
  assertEquals(calls, [3000]);
  assertEquals(sent(near).map(line), [
    "0.03 b1=0/1/1024 b2=- size1=3000 1024B",
    "0.03 b1=1/1/1024 b2=- 1024B",
    "0.03 b1=2/0/1024 b2=- 952B",
    "0.03 b1=- b2=1/0/1024 0B",
    "0.03 b1=- b2=2/0/1024 0B",
  ]);
  assertEquals(sent(far).map(line), [
    "2.31 b1=0/1/1024 b2=- 0B",
    "2.31 b1=1/1/1024 b2=- 0B",
    "2.04 b1=2/0/1024 b2=0/1/1024 1024B",
    "2.04 b1=- b2=1/1/1024 1024B",
    "2.04 b1=- b2=2/0/1024 952B",
  ]);
  // The kept answer is let go once its last block went out.
  assertEquals(server.uploadBytes, 0);
  client.close();
});

Deno.test("blockSize sets the largest block sent; a small body goes whole", async () => {
  const { client, near } = await setup({
    "/echo": {
      POST: (request) => ({ payload: String(request.payload.length) }),
    },
  }, { blockSize: 64 });
  assertEquals(
    await only(client, {
      method: "POST",
      path: "/echo",
      payload: BODY.subarray(0, 150),
    }),
    ["2.05 3B last=true"],
  );
  assertEquals(
    await only(client, { method: "POST", path: "/echo", payload: "small" }),
    ["2.05 1B last=true"],
  );
  assertEquals(sent(near).map(line), [
    "0.02 b1=0/1/64 b2=- size1=150 64B",
    "0.02 b1=1/1/64 b2=- 64B",
    "0.02 b1=2/0/64 b2=- 22B",
    "0.02 b1=- b2=- 5B",
  ]);
  assertThrows(
    () => new CoapClient(attachWebSocket(socketPair()[0]), { blockSize: 100 }),
    RangeError,
    "blockSize must be 16, 32, 64, 128, 256, 512 or 1024, got 100",
  );
  client.close();
});

/** A raw peer of a server: sends requests, reads every answer. */
async function rawClient(server: CoapServer) {
  const [near, far] = socketPair();
  server.accept(far);
  const received: CoapMessage[] = [];
  near.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    if (data instanceof ArrayBuffer) {
      const message = decodeMessage(new Uint8Array(data));
      if (message.code !== Code.CSM) received.push(message);
    }
  });
  near.send(new Uint8Array([0x00, 0xe1]));
  await flush();
  let token = 0;
  return {
    near,
    received,
    /** Sends one block of a PUT to /store and waits for its answer. */
    async put(
      num: number,
      more: boolean,
      szx: number,
      payload: Uint8Array,
      extra: CoapOption[] = [],
    ): Promise<string> {
      near.send(encodeMessage({
        code: Code.PUT,
        token: uint(++token),
        options: [
          { number: Option.URI_PATH, value: utf8("store") },
          { number: Option.BLOCK1, value: encodeBlock({ num, more, szx }) },
          ...extra,
        ],
        payload,
      }));
      await flush();
      const answer = received.at(-1)!;
      const size1 = getOption(answer, Option.SIZE1);
      return `${codeToString(answer.code)} b1=${
        blockOf(answer, Option.BLOCK1)
      }${size1 === undefined ? "" : ` size1=${readUint(size1)}`} ${
        text(answer.payload)
      }`;
    },
  };
}

function stored(log: string[]): Resources {
  return {
    "/store": {
      PUT: (request) => {
        log.push(text(request.payload));
        return { code: "2.04" };
      },
    },
  };
}

const bytes = (s: string) => utf8(s);

Deno.test("CoapServer answers blocks out of order 4.08, a middle block of the wrong size 4.00 (a BERT one too), and a body over maxBodySize (by Size1 or as it grows) 4.13 with Size1", async () => {
  const log: string[] = [];
  const server = new CoapServer(stored(log), {
    log: quiet,
    limits: { maxBodySize: 40 },
  });
  const peer = await rawClient(server);
  const a16 = bytes("a".repeat(16));
  assertEquals([
    await peer.put(1, true, 0, a16),
    await peer.put(0, true, 0, a16),
    await peer.put(2, false, 0, bytes("x")),
    await peer.put(1, true, 0, a16),
    await peer.put(0, true, 0, bytes("short")),
    await peer.put(0, true, 7, a16),
    await peer.put(0, true, 7, bytes("b".repeat(1024))),
    await peer.put(0, true, 0, a16, [{
      number: Option.SIZE1,
      value: uint(41),
    }]),
    await peer.put(0, true, 0, a16),
    await peer.put(1, true, 0, a16),
    await peer.put(2, false, 0, bytes("123456789")),
    await peer.put(0, true, 0, a16),
    await peer.put(1, true, 0, a16),
    await peer.put(2, false, 0, bytes("12345678")),
  ], [
    "4.08 b1=- Request Entity Incomplete: block 1 does not continue the body: no upload of this request is in progress (its first block is missing, or it timed out)",
    "2.31 b1=0/1/16 ",
    "4.08 b1=- Request Entity Incomplete: block 2 does not continue the body: 16 bytes have arrived, not 32",
    "4.08 b1=- Request Entity Incomplete: block 1 does not continue the body: no upload of this request is in progress (its first block is missing, or it timed out)",
    "4.00 b1=- Bad Request: Block1 block 0 has 5 bytes, but more follow and its size is 16",
    "4.00 b1=- Bad Request: Block1 block 0 has 16 bytes, but more follow and its size is a multiple of 1024 (BERT)",
    // 1,024 bytes of BERT are over this test's maxBodySize of 40.
    "4.13 b1=- size1=40 Request Entity Too Large: at most 40 bytes (maxBodySize)",
    "4.13 b1=- size1=40 Request Entity Too Large: at most 40 bytes (maxBodySize)",
    "2.31 b1=0/1/16 ",
    "2.31 b1=1/1/16 ",
    "4.13 b1=- size1=40 Request Entity Too Large: at most 40 bytes (maxBodySize)",
    "2.31 b1=0/1/16 ",
    "2.31 b1=1/1/16 ",
    "2.04 b1=2/0/16 ",
  ]);
  assertEquals(log, ["a".repeat(32) + "12345678"]);
  assertEquals(server.uploadBytes, 0);
});

Deno.test("CoapServer keeps uploads apart by Request-Tag and by resource; one more than maxUploadsPerConnection replaces the oldest", async () => {
  const log: string[] = [];
  const server = new CoapServer(stored(log), {
    log: quiet,
    limits: { maxUploadsPerConnection: 2 },
  });
  const peer = await rawClient(server);
  const tag = (n: number) => [{ number: Option.REQUEST_TAG, value: uint(n) }];
  const part = (c: string) => bytes(c.repeat(16));
  assertEquals([
    await peer.put(0, true, 0, part("a"), tag(1)),
    await peer.put(0, true, 0, part("b"), tag(2)),
    await peer.put(1, false, 0, bytes("A"), tag(1)),
    await peer.put(0, true, 0, part("c"), tag(3)),
    await peer.put(0, true, 0, part("d"), tag(4)),
    // tag 2's upload was the oldest: the two after it replaced it.
    await peer.put(1, false, 0, bytes("B"), tag(2)),
    await peer.put(1, false, 0, bytes("D"), tag(4)),
  ], [
    "2.31 b1=0/1/16 ",
    "2.31 b1=0/1/16 ",
    "2.04 b1=1/0/16 ",
    "2.31 b1=0/1/16 ",
    "2.31 b1=0/1/16 ",
    "4.08 b1=- Request Entity Incomplete: block 1 does not continue the body: no upload of this request is in progress (its first block is missing, or it timed out)",
    "2.04 b1=1/0/16 ",
  ]);
  assertEquals(log, ["a".repeat(16) + "A", "d".repeat(16) + "D"]);
  // "c" is still held.
  assertEquals(server.uploadBytes, 16);
  peer.near.close();
  await flush();
  assertEquals(server.uploadBytes, 0);
});

Deno.test("CoapServer lets an upload go after uploadTimeout, and answers 5.03 with Max-Age past maxUploadBytes over all connections", async () => {
  const clock = new ManualClock();
  const log: string[] = [];
  const server = new CoapServer(stored(log), {
    log: quiet,
    clock,
    limits: { maxUploadBytes: 32, uploadTimeout: 1000 },
  });
  const one = await rawClient(server);
  const two = await rawClient(server);
  const part = bytes("x".repeat(16));
  assertEquals([
    await one.put(0, true, 0, part),
    await two.put(0, true, 0, part),
    await one.put(1, true, 0, part),
  ], [
    "2.31 b1=0/1/16 ",
    "2.31 b1=0/1/16 ",
    "5.03 b1=- Service Unavailable: uploads hold 32 bytes, the server's limit is 32 (maxUploadBytes)",
  ]);
  const maxAge = getOption(one.received.at(-1)!, Option.MAX_AGE);
  assertEquals(maxAge && readUint(maxAge), 1);
  assertEquals(server.uploadBytes, 16);
  await clock.advance(999);
  assertEquals(await two.put(1, true, 0, part), "2.31 b1=1/1/16 ");
  await clock.advance(999);
  assertEquals(server.uploadBytes, 32);
  await clock.advance(1);
  assertEquals(server.uploadBytes, 0);
  assertEquals(clock.timers.size, 0);
  assertEquals(
    await two.put(2, false, 0, part),
    "4.08 b1=- Request Entity Incomplete: block 2 does not continue the body: no upload of this request is in progress (its first block is missing, or it timed out)",
  );
  assertEquals(log, []);
});

Deno.test("CoapClient takes the smaller block size a server asks for in 2.31 or in a 4.13 to the first block, and tells two uploads to one resource apart with Request-Tag", async () => {
  const [near, far] = socketPair();
  const asked: string[] = [];
  const bodies = new Map<string, number>();
  // A server by hand: it wants 256-byte blocks from the second block on,
  // and refuses a first block over 512 bytes.
  far.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data as ArrayBuffer;
    const message = decodeMessage(new Uint8Array(data));
    if (message.code === Code.CSM) return;
    asked.push(line(message));
    if (getOption(message, Option.BLOCK1) === undefined) return;
    const block = decodeBlock(getOption(message, Option.BLOCK1)!);
    const tag = hex(getOption(message, Option.REQUEST_TAG) ?? new Uint8Array());
    let code: number = Code.CONTINUE;
    let szx = Math.min(block.szx, 4);
    if (block.num === 0 && block.szx > 5) {
      code = Code.REQUEST_ENTITY_TOO_LARGE;
      szx = 5;
    } else if (!block.more) code = Code.CHANGED;
    if (code !== Code.REQUEST_ENTITY_TOO_LARGE) {
      bodies.set(tag, (bodies.get(tag) ?? 0) + message.payload.length);
    }
    far.send(encodeMessage({
      code,
      token: message.token,
      options: [{
        number: Option.BLOCK1,
        value: encodeBlock({ num: block.num, more: block.more, szx }),
      }],
      payload: new Uint8Array(0),
    }));
  });
  far.send(new Uint8Array([0x00, 0xe1]));
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  const body = BODY.subarray(0, 1100);
  const results = await Promise.all([
    only(client, { method: "PUT", path: "/x", payload: body }),
    only(client, { method: "PUT", path: "/x", payload: body }),
  ]);
  assertEquals(results, [["2.04 0B last=true"], ["2.04 0B last=true"]]);
  assertEquals(asked, [
    "0.03 b1=0/1/1024 b2=- size1=1100 1024B",
    "0.03 b1=0/1/1024 b2=- size1=1100 tag=01 1024B",
    "0.03 b1=0/1/512 b2=- size1=1100 512B",
    "0.03 b1=0/1/512 b2=- size1=1100 tag=01 512B",
    "0.03 b1=2/1/256 b2=- 256B",
    "0.03 b1=2/1/256 b2=- tag=01 256B",
    "0.03 b1=3/1/256 b2=- 256B",
    "0.03 b1=3/1/256 b2=- tag=01 256B",
    "0.03 b1=4/0/256 b2=- 76B",
    "0.03 b1=4/0/256 b2=- tag=01 76B",
  ]);
  assertEquals([...bodies], [["", 1100], ["01", 1100]]);
  client.close();
});

Deno.test("CoapServer runs a POST whose answer goes block-wise once, and serves its later blocks from the kept answer; a GET is rendered for each block as before", async () => {
  let posts = 0;
  let gets = 0;
  const big = "p".repeat(2500);
  const { client, server, far } = await setup({
    "/act": {
      POST: () => ({ payload: `${++posts}`.padEnd(2500, "p") }),
      GET: () => ({ payload: `${++gets}`.padEnd(2500, "g") }),
    },
  });
  assertEquals(await only(client, { method: "POST", path: "/act" }), [
    "2.05 2500B last=true",
  ]);
  assertEquals(await only(client, { method: "GET", path: "/act" }), [
    "2.05 2500B last=true",
  ]);
  assertEquals([posts, gets], [1, 3]);
  assertEquals(sent(far).map(line), [
    "2.05 b1=- b2=0/1/1024 1024B",
    "2.05 b1=- b2=1/1/1024 1024B",
    "2.05 b1=- b2=2/0/1024 452B",
    "2.05 b1=- b2=0/1/1024 1024B",
    "2.05 b1=- b2=1/1/1024 1024B",
    "2.05 b1=- b2=2/0/1024 452B",
  ]);
  assertEquals(server.uploadBytes, 0);
  assertEquals(big.length, 2500);
  client.close();
});

Deno.test("CoapServer takes BERT blocks (RFC 8323 §6: SZX 7, any number of 1024-byte units, numbered in 1024s), as aiocoap 0.4.11 sends them over TCP", async () => {
  const log: string[] = [];
  const server = new CoapServer(stored(log), {
    log: quiet,
    maxMessageSize: 4096,
  });
  const peer = await rawClient(server);
  assertEquals([
    await peer.put(0, true, 7, bytes("a".repeat(2048))),
    await peer.put(2, true, 7, bytes("b".repeat(1024))),
    await peer.put(3, false, 7, bytes("c".repeat(10))),
  ], ["2.31 b1=0/1/bert ", "2.31 b1=2/1/bert ", "2.04 b1=3/0/bert "]);
  assertEquals(log, ["a".repeat(2048) + "b".repeat(1024) + "c".repeat(10)]);
});

Deno.test("CoapServer serves a kept answer's later blocks to follow-ups that leave out the body's Content-Format and Request-Tag", async () => {
  let runs = 0;
  const server = new CoapServer({
    "/act": { POST: () => ({ payload: `${++runs}`.padEnd(2000, "x") }) },
  }, { log: quiet });
  const peer = await rawClient(server);
  const post = (token: number, options: CoapOption[], payload: string) =>
    peer.near.send(encodeMessage({
      code: Code.POST,
      token: uint(token),
      options: [{ number: Option.URI_PATH, value: utf8("act") }, ...options],
      payload: utf8(payload),
    }));
  post(1, [
    { number: Option.CONTENT_FORMAT, value: uint(0) },
    { number: Option.REQUEST_TAG, value: uint(5) },
  ], "go");
  await flush();
  post(2, [{
    number: Option.BLOCK2,
    value: encodeBlock({ num: 1, more: false, szx: 6 }),
  }], "");
  await flush();
  assertEquals(
    peer.received.map((m) =>
      `${codeToString(m.code)} b2=${blockOf(m, Option.BLOCK2)} ${
        text(m.payload).slice(0, 2)
      } ${m.payload.length}`
    ),
    ["2.05 b2=0/1/1024 1x 1024", "2.05 b2=1/0/1024 xx 976"],
  );
  assertEquals([runs, server.uploadBytes], [1, 0]);
});

Deno.test("CoapClient ends an upload whose last block is answered 2.31 Continue (a device that asks for more than there is) with a BlockwiseError, not with a 2.31 as its answer", async () => {
  const [near, far] = socketPair();
  far.addEventListener("message", (event) => {
    const message = decodeMessage(
      new Uint8Array((event as MessageEvent).data as ArrayBuffer),
    );
    if (message.code === Code.CSM) return;
    far.send(encodeMessage({
      code: Code.CONTINUE,
      token: message.token,
      options: [],
      payload: new Uint8Array(0),
    }));
  });
  far.send(new Uint8Array([0x00, 0xe1]));
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  assertEquals(
    await only(client, { method: "PUT", path: "/x", payload: BODY }),
    [
      "exception Block-wise upload failed: the server answered the last block (2) 2.31 Continue",
    ],
  );
  client.close();
});
