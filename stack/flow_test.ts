// Flow control under load, over in-memory sockets that can stop draining
// and with a clock the test moves: coalesced notifications, finals never
// dropped, reading paused and resumed, limits answered the protocol's way,
// aborts with their diagnostics, work in slices, each policy told once.

import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { CoapClient } from "./client.ts";
import { CoapConnection } from "./connection.ts";
import type { ResponseInit } from "./exchange.ts";
import {
  DEFAULT_LIMITS,
  Flow,
  type FlowLimits,
  resolveLimits,
} from "./flow.ts";
import {
  type CoapMessage,
  Code,
  decodeMessage,
  encodeMessage,
  getOption,
  Option,
  readUint,
  text,
  uint,
} from "./message.ts";
import { CoapServer, Observers, type Resources } from "./server.ts";
import { attachWebSocket, webSocketTransport } from "./websocket.ts";
import { type PairedSocket, socketPair } from "./testing/socket_pair.ts";
import { recorder } from "./testing/loggers.ts";
import { ManualClock, settle } from "./testing/manual_clock.ts";

/** A resource whose notifications and end the test triggers. */
function manualObservable() {
  const pipes = new Set<
    { addResponse(r: ResponseInit, last?: boolean): void }
  >();
  let value = 0;
  return {
    get observers(): number {
      return pipes.size;
    },
    notify(): void {
      value++;
      for (const pipe of pipes) pipe.addResponse({ payload: String(value) });
    },
    /** Ends every observation with a final response. */
    end(): void {
      for (const pipe of [...pipes]) {
        pipes.delete(pipe);
        pipe.addResponse({ payload: "bye" }, true);
      }
    },
    resource: {
      observable: true,
      GET: (
        request: { observe?: number },
        pipe: { addResponse(r: ResponseInit, last?: boolean): void },
        signal: AbortSignal,
      ): Promise<void> | ResponseInit => {
        if (request.observe !== 0) return { payload: `plain ${value}` };
        pipe.addResponse({ payload: String(value) });
        pipes.add(pipe);
        return new Promise<void>((resolve) =>
          signal.addEventListener("abort", () => {
            pipes.delete(pipe);
            resolve();
          })
        );
      },
    },
  };
}

interface Rig {
  server: CoapServer;
  clock: ManualClock;
  /** The client's end: it sends the requests. */
  near: PairedSocket;
  /** The server's end: `stall()` it to stop the client reading. */
  far: PairedSocket;
  logs: string[];
  /** Sends a raw message from the client side. */
  send(message: CoapMessage): void;
  /** What the server sent after its CSM, decoded. */
  received(): string[];
}

async function rig(resources: Resources, limits: FlowLimits): Promise<Rig> {
  const logs: string[] = [];
  const clock = new ManualClock();
  const server = new CoapServer(resources, { log: recorder(logs), limits });
  const [near, far] = socketPair();
  server.accept(far, { clock });
  near.send(encodeMessage({
    code: Code.CSM,
    token: new Uint8Array(0),
    options: [],
    payload: new Uint8Array(0),
  }));
  await settle();
  return {
    server,
    clock,
    near,
    far,
    logs,
    send: (message) => near.send(encodeMessage(message)),
    received: () =>
      far.sent.slice(1).map((bytes) => {
        const m = decodeMessage(bytes as Uint8Array);
        const observe = getOption(m, Option.OBSERVE);
        return `${m.token[0] ?? "-"}:${m.code >> 5}.${
          String(m.code & 31).padStart(2, "0")
        } ${text(m.payload)}${
          observe === undefined ? "" : ` obs=${readUint(observe)}`
        }`;
      }),
  };
}

function get(token: number, path: string, observe?: number): CoapMessage {
  const options = [];
  if (observe !== undefined) {
    options.push({ number: Option.OBSERVE, value: uint(observe) });
  }
  for (const segment of path.split("/").filter(Boolean)) {
    options.push({
      number: Option.URI_PATH,
      value: new TextEncoder().encode(segment),
    });
  }
  return {
    code: Code.GET,
    token: uint(token),
    options,
    payload: new Uint8Array(0),
  };
}

Deno.test("CoapServer keeps only the latest notification of each observation while the peer does not read, and sends it once the queue drains", async () => {
  const counter = manualObservable();
  const { server, clock, far, logs, send, received } = await rig(
    { "/obs": counter.resource },
    { highWaterMark: 1 },
  );
  send(get(1, "/obs", 0));
  send(get(2, "/obs", 0));
  await settle();
  far.stall();
  // The first notification goes out (nothing was queued yet) and fills the
  // queue; from then on each observation keeps only its latest.
  counter.notify();
  counter.notify();
  counter.notify();
  counter.notify();
  await clock.advance(50);
  assertEquals(received(), [
    "1:2.05 0 obs=0",
    "2:2.05 0 obs=0",
    "1:2.05 1 obs=1",
  ]);
  far.drain();
  await clock.advance(10);
  assertEquals(received().slice(3), ["2:2.05 4 obs=1", "1:2.05 4 obs=2"]);
  counter.notify();
  await settle();
  assertEquals(received().slice(5), ["1:2.05 5 obs=3", "2:2.05 5 obs=2"]);
  assertEquals(logs, []);
  far.close();
  await settle();
  assertEquals(logs, [
    "warn A CoAP connection closed; while it was open the server skipped 5 stale notifications while responses were not read (up to 7 bytes queued; RFC 7641 §4.5.1: the latest state went out)",
  ]);
  assertEquals(
    [
      server.connections,
      server.exchanges,
      server.observations,
      counter.observers,
    ],
    [0, 0, 0, 0],
  );
});

Deno.test("CoapServer never drops a final response: it replaces a waiting notification and goes out when the queue drains, after which the observation is gone", async () => {
  const counter = manualObservable();
  const { server, clock, far, send, received } = await rig(
    { "/obs": counter.resource },
    { highWaterMark: 1 },
  );
  send(get(1, "/obs", 0));
  await settle();
  far.stall();
  counter.notify();
  counter.notify();
  counter.notify();
  counter.end();
  counter.notify(); // no observer left
  await clock.advance(50);
  assertEquals(received(), ["1:2.05 0 obs=0", "1:2.05 1 obs=1"]);
  assertEquals([server.exchanges, server.observations], [0, 0]);
  far.drain();
  await clock.advance(10);
  assertEquals(received().slice(2), ["1:2.05 bye"]);
  await clock.advance(1000);
  assertEquals(received().length, 3);
});

Deno.test("CoapServer holds requests unread while its responses are not read, and answers them in order once the queue drains", async () => {
  const { server, clock, far, near, send, received } = await rig(
    { "/": { GET: (r) => ({ payload: `hi ${r.query[0] ?? ""}`.trim() }) } },
    { highWaterMark: 1 },
  );
  far.stall();
  send(get(1, "/"));
  send(get(2, "/"));
  send(get(3, "/"));
  await clock.advance(100);
  // The first went out into the stalled queue; the others wait unread.
  assertEquals(received(), ["1:2.05 hi"]);
  assertEquals(server.exchanges, 0);
  assertEquals(near.sent.length, 4);
  far.drain();
  await clock.advance(10);
  assertEquals(received(), ["1:2.05 hi", "2:2.05 hi", "3:2.05 hi"]);
});

/** The same value as {@linkcode manualObservable}, kept in an Observers table. */
function tableObservable() {
  const observers = new Observers();
  return {
    get observers(): number {
      return observers.count;
    },
    resource: {
      observable: observers,
      GET: (request: { observe?: number }): ResponseInit => ({
        payload: request.observe === 0 ? "0" : "plain 0",
      }),
    },
  };
}

for (
  const [kind, make] of [
    ["a task each", manualObservable],
    ["an Observers table", tableObservable],
  ] as const
) {
  Deno.test(`CoapServer answers a registration past the observation limits as a plain GET, without Observe (RFC 7641 §4.1), and says so once (observations served by ${kind})`, async () => {
    const counter = make();
    const logs: string[] = [];
    const server = new CoapServer({ "/obs": counter.resource }, {
      log: recorder(logs),
      limits: { maxObservationsPerConnection: 2, maxObservations: 3 },
    });
    const clients: CoapClient[] = [];
    for (let i = 0; i < 2; i++) {
      const [near, far] = socketPair();
      server.accept(far);
      const connection = attachWebSocket(near, { log: recorder(logs) });
      await connection.ready;
      clients.push(new CoapClient(connection));
    }
    const firsts: string[] = [];
    const observe = async (client: CoapClient) => {
      const pipe = client.request({
        method: "GET",
        path: "/obs",
        observe: true,
      });
      const iterator = pipe[Symbol.asyncIterator]();
      const { value } = await iterator.next();
      const event = value!;
      firsts.push(
        event.kind === "response"
          ? `${event.message.code} ${
            text(event.message.payload)
          } observe=${event.message.observe} last=${event.isLast}`
          : event.kind,
      );
      return { pipe, iterator };
    };
    const a1 = await observe(clients[0]);
    const a2 = await observe(clients[0]);
    const a3 = await observe(clients[0]); // past 2 a connection
    const b1 = await observe(clients[1]);
    const b2 = await observe(clients[1]); // past 3 a server
    assertEquals(firsts, [
      "2.05 0 observe=0 last=false",
      "2.05 0 observe=0 last=false",
      "2.05 plain 0 observe=undefined last=true",
      "2.05 0 observe=0 last=false",
      "2.05 plain 0 observe=undefined last=true",
    ]);
    assertEquals([server.observations, counter.observers], [3, 3]);
    assertEquals(await a3.iterator.next(), { value: undefined, done: true });
    assertEquals(await b2.iterator.next(), { value: undefined, done: true });
    // A place that frees up is taken by the next registration.
    await a1.iterator.return!();
    await settle();
    assertEquals(server.observations, 2);
    const b3 = await observe(clients[1]);
    assertEquals(firsts[5], "2.05 0 observe=0 last=false");
    for (const { iterator } of [a2, b1, b3]) await iterator.return!();
    clients.forEach((client) => client.close());
    await settle();
    assertEquals([server.observations, server.exchanges, server.connections], [
      0,
      0,
      0,
    ]);
    assertEquals(logs, [
      "warn A CoAP connection closed; while it was open the server answered 1 registrations without Observe (limits: 2 a connection, 3 a server)",
      "warn A CoAP connection closed; while it was open the server answered 1 registrations without Observe (limits: 2 a connection, 3 a server)",
    ]);
  });
}

Deno.test("CoapServer aborts a connection that sends more than maxHeldMessages while it holds them, and keeps nothing of it", async () => {
  let started = 0;
  const { server, clock, far, logs, send } = await rig(
    {
      "/wait": {
        GET: (_r, _p, signal) => {
          started++;
          return new Promise((_, reject) =>
            signal.addEventListener("abort", () => reject(signal.reason))
          );
        },
      },
    },
    { maxConcurrentRequests: 1, maxHeldMessages: 3 },
  );
  const closed: string[] = [];
  far.addEventListener("close", () => closed.push("closed"));
  // One is answered, one waits in hand, three are held: the sixth is one
  // too many.
  for (let token = 1; token <= 6; token++) {
    send(get(token, "/wait"));
    await settle();
  }
  await clock.advance(10);
  assertEquals(started, 1);
  assertEquals(closed, ["closed"]);
  assertEquals(logs, [
    "warn Aborting the CoAP connection: More than 3 messages arrived faster than this side takes them up (0 bytes of its own not yet read by the peer)",
    "warn A CoAP connection closed; while it was open the server paused reading 1 times (at most 3 messages held) while responses were not read, 1 were being answered, or a burst used its 4 ms slice",
  ]);
  const abort = decodeMessage(far.sent.at(-1) as Uint8Array);
  assertEquals(abort.code, Code.ABORT);
  assertStringIncludes(text(abort.payload), "More than 3 messages arrived");
  await settle();
  assertEquals(
    [server.connections, server.exchanges, server.drivers],
    [0, 0, 0],
  );
  assertEquals(clock.timers.size, 0);
});

Deno.test("CoapServer takes up at most maxConcurrentRequests at once; the next waits unread until one is answered", async () => {
  const order: string[] = [];
  const release: (() => void)[] = [];
  const { clock, send, received } = await rig({
    "/slow": {
      GET: (request) => {
        const name = request.query[0];
        order.push(`start ${name}`);
        return new Promise<ResponseInit>((resolve) =>
          release.push(() => resolve({ payload: name }))
        );
      },
    },
  }, { maxConcurrentRequests: 2 });
  for (const [token, name] of [[1, "a"], [2, "b"], [3, "c"]] as const) {
    const message = get(token, "/slow");
    send({
      ...message,
      options: [...message.options, {
        number: Option.URI_QUERY,
        value: new TextEncoder().encode(name),
      }],
    });
  }
  await clock.advance(100);
  assertEquals(order, ["start a", "start b"]);
  release.shift()!();
  await clock.advance(0);
  assertEquals(order, ["start a", "start b", "start c"]);
  release.splice(0).forEach((go) => go());
  await clock.advance(0);
  assertEquals(received(), ["1:2.05 a", "2:2.05 b", "3:2.05 c"]);
});

/** A clock whose every reading is 1 ms later: each look costs time. */
class TickingClock extends ManualClock {
  override now(): number {
    return this.time++;
  }
}

Deno.test("CoapServer works off a burst in slices of sliceMs: the rest of it waits for a later task, in order", async () => {
  const seen: number[] = [];
  const logs: string[] = [];
  const clock = new TickingClock();
  const server = new CoapServer({
    "/": {
      GET: (request) => {
        seen.push(Number(request.query[0]));
        return { payload: request.query[0] };
      },
    },
  }, { log: recorder(logs), limits: { sliceMs: 3 } });
  const [near, far] = socketPair();
  server.accept(far, { clock });
  near.send(encodeMessage({
    code: Code.CSM,
    token: new Uint8Array(0),
    options: [],
    payload: new Uint8Array(0),
  }));
  for (let i = 1; i <= 8; i++) {
    const message = get(i, "/");
    near.send(encodeMessage({
      ...message,
      options: [...message.options, {
        number: Option.URI_QUERY,
        value: new TextEncoder().encode(String(i)),
      }],
    }));
  }
  await settle();
  // The burst used its slice after three requests; the rest waits.
  assertEquals(seen, [1, 2, 3]);
  assertEquals(clock.timers.size, 1);
  let tasks = 0;
  while (clock.timers.size > 0 && tasks < 20) {
    await clock.advance(0);
    tasks++;
  }
  assertEquals(seen, [1, 2, 3, 4, 5, 6, 7, 8]);
  assertEquals(tasks > 1, true, `the rest took ${tasks} task(s)`);
  const answered = far.sent.slice(1).map((bytes) =>
    text(decodeMessage(bytes as Uint8Array).payload)
  );
  assertEquals(answered, ["1", "2", "3", "4", "5", "6", "7", "8"]);
  far.close();
  await settle();
  assertEquals(logs.length, 1);
  assertStringIncludes(
    logs[0],
    "paused reading 2 times (at most 4 messages held)",
  );
});

Deno.test("CoapServer aborts a connection whose queue stays above queueLimit for queueGrace, not before", async () => {
  const { server, clock, far, logs, send } = await rig(
    { "/big": { GET: () => ({ payload: "x".repeat(100) }) } },
    { highWaterMark: 10, queueLimit: 50, queueGrace: 1000 },
  );
  far.stall();
  send(get(1, "/big"));
  await settle();
  await clock.advance(990);
  assertEquals(server.connections, 1);
  await clock.advance(30);
  assertEquals(server.connections, 0);
  assertEquals(
    logs[0],
    "warn Aborting the CoAP connection: 104 bytes of responses not read for 1000 ms (limit 50 bytes)",
  );
  assertEquals(clock.timers.size, 0);
});

Deno.test("CoapServer aborts a connection that sends a Ping while its queue is above queueLimit", async () => {
  const { server, clock, far, logs, send } = await rig(
    { "/big": { GET: () => ({ payload: "x".repeat(100) }) } },
    { highWaterMark: 10, queueLimit: 50 },
  );
  far.stall();
  send(get(1, "/big"));
  await settle();
  send({
    code: Code.PING,
    token: new Uint8Array(0),
    options: [],
    payload: new Uint8Array(0),
  });
  await settle();
  assertEquals(server.connections, 0);
  assertEquals(
    logs[0],
    "warn Aborting the CoAP connection: Ping while 104 bytes were not read (limit 50)",
  );
  await clock.advance(0);
});

Deno.test("CoapClient.request() coalesces an observation read slowly to its latest notification by default; a one-shot request is never coalesced", async () => {
  const counter = manualObservable();
  const server = new CoapServer({ "/obs": counter.resource }, {
    log: recorder([]),
  });
  const [near, far] = socketPair();
  server.accept(far);
  const connection = attachWebSocket(near, { log: recorder([]) });
  await connection.ready;
  const client = new CoapClient(connection);
  const pipe = client.request({ method: "GET", path: "/obs", observe: true });
  const iterator = pipe[Symbol.asyncIterator]();
  await iterator.next();
  for (let i = 0; i < 5; i++) counter.notify();
  await settle();
  const next = await iterator.next();
  assertEquals(
    next.value?.kind === "response" ? text(next.value.message.payload) : next,
    "5",
  );
  assertEquals(pipe.dropped, 4);
  const wide = client.request({ method: "GET", path: "/obs", observe: true }, {
    maxBuffered: 3,
  });
  const wideIterator = wide[Symbol.asyncIterator]();
  await wideIterator.next();
  for (let i = 0; i < 5; i++) counter.notify();
  await settle();
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const { value } = await wideIterator.next();
    if (value?.kind === "response") got.push(text(value.message.payload));
  }
  assertEquals([got, wide.dropped], [["8", "9", "10"], 2]);
  const oneShot = client.request({ method: "GET", path: "/obs" });
  assertEquals(oneShot.desiredSize, Infinity);
  await iterator.return!();
  await wideIterator.return!();
  for await (const _ of oneShot) { /* drain */ }
  assertThrows(
    () => client.request({ method: "GET", path: "/" }, { maxBuffered: 0 }),
    RangeError,
    "Cannot make a CoAP request: maxBuffered must be a positive integer or Infinity, got 0",
  );
  assertThrows(
    () => new CoapClient(connection, { maxBufferedNotifications: 1.5 }),
    RangeError,
    "Cannot create a CoapClient: maxBufferedNotifications must be a positive integer or Infinity, got 1.5",
  );
  client.close();
  await settle();
  assertEquals([server.exchanges, server.observations], [0, 0]);
});

Deno.test("webSocketTransport() reports the socket's bufferedAmount; CoapConnection.queued is 0 where the platform has none", () => {
  const socket = {
    readyState: 1,
    protocol: "coap",
    binaryType: "arraybuffer",
    bufferedAmount: 0,
    send() {},
    close() {},
    addEventListener() {},
  };
  const transport = webSocketTransport(socket);
  socket.bufferedAmount = 1234;
  assertEquals(transport.bufferedAmount, 1234);
  assertEquals(new CoapConnection(transport).queued, 1234);
  const bare = webSocketTransport({ ...socket, bufferedAmount: undefined });
  assertEquals(bare.bufferedAmount, undefined);
  assertEquals(new CoapConnection(bare).queued, 0);
  assertEquals(
    new CoapConnection({ send() {}, close() {} }).queued,
    0,
  );
});

Deno.test("resolveLimits() fills in the defaults and refuses unknown names and values that are not positive", () => {
  assertEquals(resolveLimits(), DEFAULT_LIMITS);
  assertEquals(DEFAULT_LIMITS, {
    highWaterMark: 65_536,
    queueLimit: 1_048_576,
    queueGrace: 5_000,
    maxConcurrentRequests: 256,
    maxHeldMessages: 32_768,
    maxObservationsPerConnection: 100,
    maxObservations: 20_000,
    sliceMs: 4,
    maxHeldBytes: 33_554_432,
    maxConnections: 4_096,
    maxConnectionsPerAddress: 256,
    maxBodySize: 1_048_576,
    maxUploadsPerConnection: 4,
    maxUploadBytes: 16_777_216,
    uploadTimeout: 60_000,
  });
  assertEquals(resolveLimits({ sliceMs: 0.5 }).sliceMs, 0.5);
  assertEquals(resolveLimits({ uploadTimeout: 0.5 }).uploadTimeout, 0.5);
  assertEquals(
    resolveLimits({ maxObservations: Infinity }).maxObservations,
    Infinity,
  );
  assertThrows(
    () => resolveLimits({ maxObservation: 3 } as FlowLimits),
    TypeError,
    "Cannot use limits: unknown limit maxObservation",
  );
  for (const bad of [0, -1, NaN, 1.5, "3"]) {
    assertThrows(
      () => resolveLimits({ highWaterMark: bad as number }),
      RangeError,
      `Cannot use limits: highWaterMark must be a positive integer, got ${bad}`,
    );
  }
  assertThrows(
    () => new CoapServer({}, { limits: { queueGrace: -5 } }),
    RangeError,
    "Cannot use limits: queueGrace must be a positive number, got -5",
  );
});

Deno.test("Flow reads the transport's queue only when what was queued at the last read plus what was written since could reach the high-water mark", () => {
  let queued = 0, written = 0, reads = 0;
  const link = {
    get queued() {
      reads++;
      return queued;
    },
    get written() {
      return written;
    },
    closed: false,
    mostHeld: 0,
    abort() {},
    fault() {},
    process() {},
    pause() {},
    resume() {},
  };
  const clock = { now: () => 0, setTimeout: () => 0, clearTimeout() {} };
  const flow = new Flow(link, resolveLimits({ highWaterMark: 100 }), clock);
  const look = () => [flow.congested, reads, flow.report.mostQueued];
  assertEquals(look(), [false, 0, 0]);
  written = 99; // at most 99 queued: not read
  assertEquals(look(), [false, 0, 0]);
  written = 130;
  queued = 120; // could have reached the mark: read, and it has
  assertEquals(look(), [true, 1, 120]);
  assertEquals(look(), [true, 2, 120]); // still at the mark: read each time
  queued = 10; // drained
  assertEquals(look(), [false, 3, 120]);
  written = 219; // 10 + 89 written since: not read
  assertEquals(look(), [false, 3, 120]);
  written = 220;
  queued = 0;
  assertEquals(look(), [false, 4, 120]);
  // A link that cannot say what it wrote is read at every check.
  const { written: _, ...unwritten } = Object.getOwnPropertyDescriptors(link);
  const bare = Object.defineProperties({}, unwritten) as typeof link;
  const plain = new Flow(bare, resolveLimits({ highWaterMark: 100 }), clock);
  reads = 0;
  assertEquals([plain.congested, plain.congested, reads], [false, false, 2]);
});

Deno.test("Flow contains an error thrown by work it does on a timer: the link's fault() gets it, and the flow goes on no further", () => {
  const faults: unknown[] = [];
  const processed: string[] = [];
  const bug = new Error("process failed");
  const timers: (() => void)[] = [];
  const clock = {
    now: () => 0,
    setTimeout: (fn: () => void) => timers.push(fn),
    clearTimeout() {},
  };
  let closed = false;
  const link = {
    queued: 0,
    get closed() {
      return closed;
    },
    mostHeld: 0,
    abort() {},
    fault(error: unknown) {
      faults.push(error);
      closed = true;
    },
    process(message: CoapMessage) {
      processed.push(text(message.payload));
      if (processed.length === 2) throw bug;
    },
    pause() {},
    resume() {},
  };
  const flow = new Flow(
    link,
    resolveLimits({ maxConcurrentRequests: 1 }),
    clock,
  );
  const message = (payload: string): CoapMessage => ({
    ...get(1, "x"),
    payload: new TextEncoder().encode(payload),
  });
  flow.request(message("first"));
  flow.started();
  flow.request(message("second")); // held: one is being answered
  flow.finished();
  assertEquals([processed, timers.length], [["first"], 1]);
  timers.shift()!(); // the flow's timer: must not throw
  assertEquals([processed, faults], [["first", "second"], [bug]]);
});
