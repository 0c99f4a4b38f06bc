import { assertEquals, assertThrows } from "@std/assert";
import { CoapClient } from "./client.ts";
import {
  CoapFormatError,
  type CoapOption,
  Code,
  codeToString,
  decodeBlock,
  decodeMessage,
  encodeBlock,
  encodeMessage,
  getOption,
  Option,
  text,
  uint,
  utf8,
} from "./message.ts";
import { CoapServer, Observers, type Resources } from "./server.ts";
import {
  CoapUdpEndpoint,
  decodeDatagram,
  encodeDatagram,
  type MessageType,
  type PeerAddress,
  servePeers,
  Type,
  type UdpOptions,
} from "./udp.ts";
import { attachWebSocket } from "./websocket.ts";
import { ManualClock, settle } from "./testing/manual_clock.ts";
import { recorder } from "./testing/loggers.ts";
import { requestDatagram as rawGet } from "./testing/datagrams.ts";

const TYPES = ["CON", "NON", "ACK", "RST"];
const SERVER: PeerAddress = { hostname: "10.0.0.1", port: 5683 };
const CLIENT: PeerAddress = { hostname: "10.0.0.2", port: 40000 };
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** One datagram, as a trace line: who, type, code, message ID, payload. */
function show(from: string, bytes: Uint8Array): string {
  try {
    const { type, messageId, message } = decodeDatagram(bytes);
    const code = message.code === Code.EMPTY
      ? "empty"
      : codeToString(message.code);
    const payload = message.payload.length > 0
      ? ` "${text(message.payload).slice(0, 20)}"`
      : "";
    return `${from} ${TYPES[type]} ${code} #${messageId}${payload}`;
  } catch (error) {
    return `${from} malformed (${(error as Error).message})`;
  }
}

/**
 * A server and a client endpoint joined by an in-memory wire that records
 * every datagram and can drop or duplicate them; a clock that moves only
 * when told, and message IDs from 1 on both sides.
 */
function setup(
  resources: Resources,
  options: { client?: UdpOptions; server?: UdpOptions } = {},
) {
  const clock = new ManualClock();
  const trace: string[] = [];
  const datagrams: Uint8Array[] = [];
  const logs: string[] = [];
  /** Decides each datagram's fate: deliver it 0, 1 or 2 times. */
  let fate: (line: string) => number = () => 1;
  const server = new CoapServer(resources, { log: quiet });
  const common = { clock, random: () => 0, log: recorder(logs) };
  const wire =
    (from: string, to: () => CoapUdpEndpoint, address: PeerAddress) =>
    (bytes: Uint8Array) => {
      const line = show(from, bytes);
      datagrams.push(bytes);
      const copies = fate(line);
      trace.push(
        copies === 1 ? line : `${line} (${copies === 0 ? "lost" : "twice"})`,
      );
      for (let i = 0; i < copies; i++) {
        queueMicrotask(() => to().receive(bytes.slice(), address));
      }
    };
  const serverEndpoint: CoapUdpEndpoint = new CoapUdpEndpoint(
    wire("s→c", () => clientEndpoint, SERVER),
    {
      ...common,
      ...options.server,
      onPeer: (socket, address) =>
        server.accept(socket, { address: address.hostname, clock }),
    },
  );
  const clientEndpoint: CoapUdpEndpoint = new CoapUdpEndpoint(
    wire("c→s", () => serverEndpoint, CLIENT),
    { ...common, ...options.client },
  );
  const connect = async () => {
    const connection = attachWebSocket(clientEndpoint.connect(SERVER), {
      log: quiet,
      clock,
    });
    await connection.ready;
    return new CoapClient(connection, { log: quiet });
  };
  return {
    clock,
    trace,
    datagrams,
    logs,
    server,
    serverEndpoint,
    clientEndpoint,
    connect,
    setFate(f: (line: string) => number) {
      fate = f;
    },
  };
}

/** Collects a request's events as lines until it ends. */
function collect(
  client: CoapClient,
  request: Parameters<CoapClient["request"]>[0],
) {
  const got: string[] = [];
  const done = (async () => {
    for await (const event of client.request(request)) {
      if (event.kind === "response") {
        got.push(`${event.message.code} ${text(event.message.payload)}`.trim());
      } else if (event.kind === "exception") {
        got.push(`exception ${(event.exception as Error).message}`);
      }
    }
  })();
  return { got, done };
}

const hello: Resources = {
  "/hello": { GET: () => ({ payload: "hi" }) },
};

Deno.test("decodeDatagram() and encodeDatagram() read and write RFC 7252's header around an RFC 8323 frame", () => {
  const frame = encodeMessage({
    code: Code.GET,
    token: new Uint8Array([0xab]),
    options: [{ number: Option.URI_PATH, value: utf8("a") }],
    payload: new Uint8Array(0),
  });
  const datagram = encodeDatagram(Type.CON, 0x1234, frame);
  assertEquals([...datagram], [0x41, 0x01, 0x12, 0x34, 0xab, 0xb1, 0x61]);
  const back = decodeDatagram(datagram);
  assertEquals([back.type, back.messageId], [Type.CON, 0x1234]);
  assertEquals(back.frame, frame);
  assertEquals(decodeMessage(back.frame), back.message);
  assertEquals([...encodeDatagram(Type.RST, 7)], [0x70, 0, 0, 7]);
  assertThrows(
    () => decodeDatagram(new Uint8Array([0x40, 1, 0])),
    CoapFormatError,
    "3 bytes, a CoAP header has 4",
  );
  assertThrows(
    () => decodeDatagram(new Uint8Array([0x80, 1, 0, 1])),
    CoapFormatError,
    "version 2",
  );
  assertThrows(
    () => decodeDatagram(new Uint8Array([0x40, 0, 0, 1, 0xff])),
    CoapFormatError,
    "an empty message has no token",
  );
  assertThrows(
    () => decodeDatagram(new Uint8Array([0x41, 1, 0, 1])),
    CoapFormatError,
    "ends inside its 1-byte token",
  );
});

Deno.test("CoAP over UDP: a response that is ready rides in the CON request's ACK", async () => {
  const t = setup(hello);
  const client = await t.connect();
  const { got, done } = collect(client, { method: "GET", path: "/hello" });
  await done;
  assertEquals(got, ["2.05 hi"]);
  assertEquals(t.trace, ["c→s CON 0.01 #1", 's→c ACK 2.05 #1 "hi"']);
  client.close();
});

Deno.test("CoAP over UDP: a slow response gets an empty ACK after emptyAckDelay, then comes as a CON of its own, which the client acknowledges", async () => {
  const t = setup({
    "/slow": {
      GET: () =>
        new Promise((resolve) =>
          t.clock.setTimeout(() => resolve({ payload: "late" }), 500)
        ),
    },
  });
  const client = await t.connect();
  const { got, done } = collect(client, { method: "GET", path: "/slow" });
  await settle();
  await t.clock.advance(99);
  assertEquals(t.trace, ["c→s CON 0.01 #1"]);
  await t.clock.advance(1);
  assertEquals(t.trace, ["c→s CON 0.01 #1", "s→c ACK empty #1"]);
  await t.clock.advance(400);
  await done;
  assertEquals(got, ["2.05 late"]);
  assertEquals(t.trace, [
    "c→s CON 0.01 #1",
    "s→c ACK empty #1",
    's→c CON 2.05 #1 "late"',
    "c→s ACK empty #1",
  ]);
  client.close();
});

Deno.test("CoAP over UDP: requests a new peer sends in one turn (a batch of a socket's receives) wait for its connection to start and are all answered in order; past 64 such datagrams the rest are dropped, counted", async () => {
  const clock = new ManualClock();
  const trace: string[] = [];
  const server = new CoapServer(hello, { log: quiet });
  const endpoint = new CoapUdpEndpoint(
    (bytes) => trace.push(show("s→c", bytes)),
    {
      clock,
      random: () => 0,
      log: quiet,
      amplificationFactor: false,
      onPeer: servePeers(server),
    },
  );
  for (let id = 1; id <= 3; id++) {
    endpoint.receive(rawGet(id, "hello", { token: [id] }), CLIENT);
  }
  await settle();
  assertEquals(trace, [
    's→c ACK 2.05 #1 "hi"',
    's→c ACK 2.05 #2 "hi"',
    's→c ACK 2.05 #3 "hi"',
  ]);
  assertEquals([endpoint.peers, endpoint.dropped], [1, 0]);
  // Another new peer, 70 requests at once: 64 wait, 6 are dropped.
  trace.length = 0;
  const other = { hostname: "10.0.0.3", port: 40000 };
  for (let id = 1; id <= 70; id++) {
    endpoint.receive(rawGet(id, "hello", { token: [id] }), other);
  }
  await settle();
  assertEquals(trace.length, 64);
  assertEquals([trace[0], trace[63]], [
    's→c ACK 2.05 #1 "hi"',
    's→c ACK 2.05 #64 "hi"',
  ]);
  assertEquals(endpoint.dropped, 6);
  endpoint.close();
});

Deno.test("CoAP over UDP: slow responses to CONs that came at different times each get their empty ACK emptyAckDelay after their own request, from the endpoint's one timer", async () => {
  const clock = new ManualClock();
  const trace: string[] = [];
  const server = new CoapServer({
    "/slow": { GET: () => new Promise(() => {}) },
  }, { log: quiet });
  const endpoint = new CoapUdpEndpoint(
    (bytes) => trace.push(`${clock.now()} ${show("s→c", bytes)}`),
    {
      clock,
      random: () => 0,
      log: quiet,
      amplificationFactor: false,
      onPeer: servePeers(server),
    },
  );
  endpoint.receive(rawGet(1, "slow", { token: [1] }), CLIENT);
  await settle();
  await clock.advance(30);
  endpoint.receive(rawGet(2, "slow", { token: [2] }), CLIENT);
  endpoint.receive(rawGet(7, "slow", { token: [7] }), {
    hostname: "10.0.0.3",
    port: 1,
  });
  await settle();
  // Timers due later within the second (the peer sweep comes later; the
  // send pacer's turn is now): the one.
  const soon = () =>
    [...clock.timers.values()].filter((t) => t.at > clock.time && t.at < 1000);
  assertEquals(soon().map((t) => t.at), [100]);
  await clock.advance(69);
  assertEquals(trace, []);
  await clock.advance(1);
  assertEquals(trace, ["100 s→c ACK empty #1"]);
  await clock.advance(30);
  assertEquals(trace, [
    "100 s→c ACK empty #1",
    "130 s→c ACK empty #2",
    "130 s→c ACK empty #7",
  ]);
  // A duplicate of an acknowledged CON gets the same empty ACK again.
  endpoint.receive(rawGet(1, "slow", { token: [1] }), CLIENT);
  assertEquals(trace.at(-1), "130 s→c ACK empty #1");
  assertEquals(soon(), []);
  endpoint.close();
});

Deno.test("CoAP over UDP: a lost request is sent again after ACK_TIMEOUT, doubling; a duplicate is answered with the same ACK and handled once", async () => {
  let handled = 0;
  const t = setup({
    "/count": { GET: () => ({ payload: String(++handled) }) },
  });
  const client = await t.connect();
  // The first request and the first answer are lost.
  const lost = new Set(["c→s CON", "s→c ACK"]);
  t.setFate((line) => {
    const kind = line.slice(0, 7);
    return lost.delete(kind) ? 0 : 1;
  });
  const { got, done } = collect(client, { method: "GET", path: "/count" });
  await settle();
  await t.clock.advance(2000); // the first retransmission
  await t.clock.advance(4000); // the second
  await done;
  assertEquals(got, ["2.05 1"]);
  assertEquals(handled, 1);
  assertEquals(t.trace, [
    "c→s CON 0.01 #1 (lost)",
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "1" (lost)',
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "1"',
  ]);
  client.close();
});

Deno.test("CoAP over UDP: a peer that never acknowledges is given up after MAX_RETRANSMIT; the exchange ends with an exception", async () => {
  const t = setup(hello, { client: { maxRetransmit: 2 } });
  const client = await t.connect();
  t.setFate(() => 0);
  const { got, done } = collect(client, { method: "GET", path: "/hello" });
  await settle();
  await t.clock.advance(2000 + 4000 + 8000);
  await done;
  assertEquals(t.trace, [
    "c→s CON 0.01 #1 (lost)",
    "c→s CON 0.01 #1 (lost)",
    "c→s CON 0.01 #1 (lost)",
  ]);
  // The whole reason, with no WebSocket close code: there is none over UDP.
  assertEquals(got, [
    "exception No answer from 10.0.0.1:5683: a request, sent 3 times, went unacknowledged for 14 s",
  ]);
  assertEquals(t.clientEndpoint.peers, 0);
});

Deno.test("CoAP over UDP: NSTART 1 holds the second request until the first is acknowledged", async () => {
  const t = setup(hello);
  const client = await t.connect();
  t.setFate((line) =>
    line.startsWith("s→c ACK") && !t.trace.some((l) => l.includes("(lost)"))
      ? 0
      : 1
  );
  const a = collect(client, { method: "GET", path: "/hello" });
  const b = collect(client, { method: "GET", path: "/hello" });
  await settle();
  assertEquals(t.trace, ["c→s CON 0.01 #1", 's→c ACK 2.05 #1 "hi" (lost)']);
  await t.clock.advance(2000);
  await Promise.all([a.done, b.done]);
  assertEquals(t.trace, [
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "hi" (lost)',
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "hi"',
    "c→s CON 0.01 #2",
    's→c ACK 2.05 #2 "hi"',
  ]);
  client.close();
});

Deno.test("CoAP over UDP: notifications go NON with every conEvery-th CON; an RST to one ends the observation at the server", async () => {
  let notify!: (n: number) => void;
  const t = setup({
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          notify = (n) => pipe.addResponse({ payload: String(n) });
          signal.addEventListener("abort", () => resolve());
          pipe.addResponse({ payload: "0" });
        }),
    },
  }, { server: { conEvery: 3 } });
  const client = await t.connect();
  const { got } = collect(client, {
    method: "GET",
    path: "/obs",
    observe: true,
  });
  await settle();
  for (let n = 1; n <= 3; n++) {
    notify(n);
    await settle();
  }
  assertEquals(got, ["2.05 0", "2.05 1", "2.05 2", "2.05 3"]);
  // The first notification to an observer whose address is not verified
  // goes CON; its ACK verifies the address, and the rest go NON with
  // every conEvery-th CON.
  assertEquals(t.trace, [
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "0"',
    's→c CON 2.05 #1 "1"',
    "c→s ACK empty #1",
    's→c NON 2.05 #2 "2"',
    's→c CON 2.05 #3 "3"',
    "c→s ACK empty #3",
  ]);
  assertEquals(t.server.observations, 1);
  // The client forgets the token (its endpoint goes), then a NON arrives.
  t.trace.length = 0;
  const raw: string[] = [];
  const stranger = new CoapUdpEndpoint(
    (bytes) => raw.push(show("x→s", bytes)),
    { clock: t.clock, random: () => 0 },
  );
  stranger.receive(
    encodeDatagram(
      Type.NON,
      9,
      encodeMessage({
        code: 0x45,
        token: new Uint8Array([1]),
        options: [{ number: Option.OBSERVE, value: uint(5) }],
        payload: new Uint8Array(0),
      }),
    ),
    SERVER,
  );
  assertEquals(raw, ["x→s RST empty #9"]);
  // An RST to the next notification ends the observation.
  t.setFate((line) => line.startsWith("s→c NON") ? 0 : 1);
  notify(4);
  await settle();
  const mid = Number(/#(\d+)/.exec(t.trace[0])![1]);
  t.serverEndpoint.receive(encodeDatagram(Type.RST, mid), CLIENT);
  await settle();
  assertEquals(t.server.observations, 0);
  client.close();
});

Deno.test("CoAP over UDP: a notification that was overtaken is dropped by its Observe number (RFC 7641 §3.4), and still acknowledged", async () => {
  const t = setup({
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => resolve());
          pipe.addResponse({ payload: "first" });
        }),
    },
  });
  const client = await t.connect();
  const { got } = collect(client, {
    method: "GET",
    path: "/obs",
    observe: true,
  });
  await settle();
  const token = decodeDatagram(t.datagrams[0]).message.token;
  const notification = (
    type: 0 | 1,
    id: number,
    observe: number,
    payload: string,
  ) =>
    encodeDatagram(
      type,
      id,
      encodeMessage({
        code: 0x45,
        token,
        options: [{ number: Option.OBSERVE, value: uint(observe) }],
        payload: utf8(payload),
      }),
    );
  t.trace.length = 0;
  // Sent 10, 11, 12; 12 arrives before 11.
  t.clientEndpoint.receive(notification(Type.NON, 100, 10, "ten"), SERVER);
  t.clientEndpoint.receive(notification(Type.NON, 102, 12, "twelve"), SERVER);
  t.clientEndpoint.receive(notification(Type.CON, 101, 11, "eleven"), SERVER);
  await settle();
  assertEquals(got, ["2.05 first", "2.05 ten", "2.05 twelve"]);
  assertEquals(t.trace, ["c→s ACK empty #101"]);
  // After 128 s without one, any number is fresh again (a restarted server).
  await t.clock.advance(129_000);
  t.clientEndpoint.receive(notification(Type.NON, 103, 1, "one"), SERVER);
  await settle();
  assertEquals(got.at(-1), "2.05 one");
  client.close();
});

Deno.test("CoAP over UDP: a ping (empty CON) gets an RST; a malformed CON gets an RST, a malformed NON nothing; an unknown peer's response gets an RST", () => {
  const sent: string[] = [];
  const endpoint = new CoapUdpEndpoint(
    (bytes, to) => sent.push(`${show("→", bytes)} to ${to.port}`),
    { random: () => 0 },
  );
  endpoint.receive(encodeDatagram(Type.CON, 5), CLIENT);
  endpoint.receive(new Uint8Array([0x41, 1, 0, 6]), CLIENT); // CON, token runs out
  endpoint.receive(new Uint8Array([0x51, 1, 0, 7]), CLIENT); // NON, same
  endpoint.receive(new Uint8Array([0x40]), CLIENT); // too short for an ID
  endpoint.receive(
    encodeDatagram(
      Type.CON,
      8,
      encodeMessage({
        code: 0x45,
        token: new Uint8Array([2]),
        options: [],
        payload: new Uint8Array(0),
      }),
    ),
    CLIENT,
  );
  assertEquals(sent, [
    "→ RST empty #5 to 40000",
    "→ RST empty #6 to 40000",
    "→ RST empty #8 to 40000",
  ]);
  // Without onPeer, a request is refused with an RST and no peer is kept.
  endpoint.receive(
    encodeDatagram(
      Type.CON,
      9,
      encodeMessage({
        code: Code.GET,
        token: new Uint8Array(0),
        options: [],
        payload: new Uint8Array(0),
      }),
    ),
    CLIENT,
  );
  assertEquals(sent.at(-1), "→ RST empty #9 to 40000");
  assertEquals(endpoint.peers, 0);
});

Deno.test("CoAP over UDP: peers are bounded (maxPeers): one more is refused with an RST where every peer is verified, and peers are forgotten when idle", async () => {
  const t = setup({
    "/slow": {
      GET: () =>
        new Promise((resolve) =>
          t.clock.setTimeout(() => resolve({ payload: "late" }), 500)
        ),
    },
  }, { server: { maxPeers: 1, idleTimeout: 10_000 } });
  const client = await t.connect();
  // A separate response: the client's ACK to it verifies its address.
  const { done } = collect(client, { method: "GET", path: "/slow" });
  await settle();
  await t.clock.advance(500);
  await done;
  assertEquals(t.trace.slice(-2), [
    's→c CON 2.05 #1 "late"',
    "c→s ACK empty #1",
  ]);
  assertEquals(t.serverEndpoint.peers, 1);
  assertEquals(t.serverEndpoint.unverifiedPeers, 0);
  const other: PeerAddress = { hostname: "10.0.0.3", port: 1 };
  for (let id = 77; id < 80; id++) {
    t.serverEndpoint.receive(rawGet(id, "slow"), other);
  }
  await settle();
  // Refused with an RST (the test's wire takes every datagram the server
  // sends, whoever it is for), and said once.
  assertEquals(t.trace.slice(-3), [
    "s→c RST empty #77",
    "s→c RST empty #78",
    "s→c RST empty #79",
  ]);
  assertEquals(t.logs, [
    "warn Refused a request from 10.0.0.3:1: 1 verified peers, the limit (maxPeers)",
  ]);
  assertEquals(t.serverEndpoint.peers, 1);
  await t.clock.advance(20_000);
  assertEquals(
    t.logs.at(-1),
    "warn 2 more like it in the last second: requests refused: every peer is verified (maxPeers)",
  );
  assertEquals(t.serverEndpoint.peers, 0);
  assertEquals(t.server.connections, 0);
  client.close();
});

/**
 * A server endpoint alone, served as serveCoapUdp serves it, and a record
 * of each datagram it sends, by destination: for sources that are not a
 * client of ours (spoofed, silent, or raw).
 */
function rawServer(resources: Resources, options: UdpOptions = {}) {
  const clock = new ManualClock();
  const sent: { to: string; bytes: Uint8Array }[] = [];
  const logs: string[] = [];
  const server = new CoapServer(resources, { log: quiet });
  const endpoint = new CoapUdpEndpoint(
    (bytes, to) => sent.push({ to: `${to.hostname}:${to.port}`, bytes }),
    {
      clock,
      random: () => 0,
      log: recorder(logs),
      ...options,
      onPeer: servePeers(server),
    },
  );
  const to = (address: PeerAddress) =>
    sent.filter((d) => d.to === `${address.hostname}:${address.port}`);
  return {
    clock,
    sent,
    logs,
    server,
    endpoint,
    /** What went to `address`, as trace lines. */
    trace: (address: PeerAddress) =>
      to(address).map((d) => show("s→", d.bytes)),
    /** Bytes sent to `address`. */
    bytesTo: (address: PeerAddress) =>
      to(address).reduce((n, d) => n + d.bytes.length, 0),
  };
}

/**
 * An observable /obs whose value the test sets: 0 on registration, then
 * what `notify(n)` says, until the observation ends.
 */
function ticking(): {
  resources: Resources;
  notify: (n: number) => void;
} {
  let notify: (n: number) => void = () => {};
  return {
    resources: {
      "/obs": {
        observable: true,
        GET: (_request, pipe, signal) =>
          new Promise<void>((resolve) => {
            notify = (n) => pipe.addResponse({ payload: String(n) });
            signal.addEventListener("abort", () => resolve());
            pipe.addResponse({ payload: "0" });
          }),
      },
    },
    notify: (n) => notify(n),
  };
}

const VICTIM: PeerAddress = { hostname: "192.0.2.7", port: 5683 };
const bigText = "0123456789abcdef".repeat(64); // 1024 bytes
/** POSTs /post of `amplified` carried out, over every test. */
let posts = 0;
const amplified: Resources = {
  "/": { GET: () => ({ payload: bigText }) },
  "/big": { GET: () => ({ payload: bigText }) },
  "/hello": { GET: () => ({ payload: "hi" }) },
  "/post": {
    POST: () => {
      posts++;
      return { code: "2.04", payload: bigText.slice(0, 200) };
    },
  },
  "/fail": {
    GET: () => ({ code: "4.00", payload: "Bad Request: " + "x".repeat(100) }),
  },
};

Deno.test("CoAP over UDP, address validation: an unverified source is sent at most three times its bytes; a large GET response becomes its largest first block that fits, and the blocks after it fit each request", async () => {
  const t = rawServer(amplified);
  const request = rawGet(1, "big", { token: [1, 2] });
  t.endpoint.receive(request, VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM), ['s→ ACK 2.05 #1 "0123456789abcdef"']);
  const first = decodeDatagram(t.sent[0].bytes).message;
  const block = decodeBlock(getOption(first, Option.BLOCK2)!);
  // 10 bytes received, so at most 30 sent: a 16-byte block.
  assertEquals(request.length, 10);
  assertEquals(block, { num: 0, more: true, szx: 0 });
  assertEquals(t.bytesTo(VICTIM) <= 3 * request.length, true);
  // A client that asks for the next blocks at that size gets each within
  // three times the bytes it sent, all the way to the end.
  let received = request.length;
  let payload = text(first.payload);
  for (let num = 1; num < 64; num++) {
    const next = rawGet(num + 1, "big", {
      token: [1, 2],
      options: [{
        number: Option.BLOCK2,
        value: encodeBlock({ num, more: false, szx: 0 }),
      }],
    });
    received += next.length;
    t.endpoint.receive(next, VICTIM);
    await settle();
    payload += text(decodeDatagram(t.sent.at(-1)!.bytes).message.payload);
    assertEquals(t.bytesTo(VICTIM) <= 3 * received, true);
  }
  assertEquals(payload, bigText);
  assertEquals(
    decodeBlock(
      getOption(decodeDatagram(t.sent.at(-1)!.bytes).message, Option.BLOCK2)!,
    ),
    { num: 63, more: false, szx: 0 },
  );
  assertEquals(t.endpoint.unverifiedPeers, 1);
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: where no block fits, a GET is answered 4.01 with an Echo value, and a repeat with that value (not another, not a stale one) verifies the address and gets the whole response", async () => {
  const t = rawServer(amplified);
  // A 4-byte GET of /: 12 bytes allowed, and no 16-byte block fits in
  // that.
  t.endpoint.receive(rawGet(1, ""), VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM), ["s→ ACK 4.01 #1"]);
  const answer = decodeDatagram(t.sent[0].bytes).message;
  const echo = getOption(answer, Option.ECHO)!;
  assertEquals(echo.length, 12);
  assertEquals(answer.options.length, 1);
  assertEquals(answer.payload.length, 0);
  // Another address cannot use it, nor a changed value, nor a stale one
  // (past echoLifetime, 60 s): the source stays unverified, and gets a
  // first block within its budget, not the whole.
  const elsewhere = { ...VICTIM, port: VICTIM.port + 1 };
  const forged = echo.slice();
  forged[11] ^= 1;
  const tries: [PeerAddress, Uint8Array, number][] = [
    [elsewhere, echo, 0],
    [VICTIM, forged, 0],
    [VICTIM, echo, 61_000],
  ];
  let id = 2;
  const bytesFrom = new Map<string, number>([["192.0.2.7:5683", 4]]);
  const received = (from: PeerAddress) =>
    bytesFrom.get(`${from.hostname}:${from.port}`) ?? 0;
  for (const [from, value, wait] of tries) {
    await t.clock.advance(wait);
    const request = rawGet(id++, "", {
      options: [{ number: Option.ECHO, value }],
    });
    bytesFrom.set(
      `${from.hostname}:${from.port}`,
      received(from) + request.length,
    );
    t.endpoint.receive(request, from);
    await settle();
    const answer = decodeDatagram(t.sent.at(-1)!.bytes).message;
    assertEquals(t.sent.at(-1)!.to, `${from.hostname}:${from.port}`);
    const block = decodeBlock(getOption(answer, Option.BLOCK2)!);
    assertEquals([block.num, block.more], [0, true]);
    assertEquals(answer.payload.length, 16 << block.szx);
    assertEquals(answer.payload.length < 1024, true);
    // The first 4.01 (to VICTIM) was allowed past the budget.
    const exempt = from === VICTIM ? t.sent[0].bytes.length : 0;
    assertEquals(t.bytesTo(from) - exempt <= 3 * received(from), true);
  }
  assertEquals(t.endpoint.unverifiedPeers, 2);
  // A POST, whose answer is no block, is answered without its body: it
  // was carried out, and a 4.01 now would have it carried out again.
  const before = posts;
  t.endpoint.receive(rawGet(5, "post", { code: Code.POST }), VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM).at(-1), "s→ ACK 2.04 #5");
  assertEquals(posts - before, 1);
  // A fresh 4.01's value, from the address it was made for, verifies it.
  const fresh = t.endpoint._echo(VICTIM);
  t.endpoint.receive(
    rawGet(6, "", { options: [{ number: Option.ECHO, value: fresh }] }),
    VICTIM,
  );
  await settle();
  const full = decodeDatagram(t.sent.at(-1)!.bytes).message;
  assertEquals(t.trace(VICTIM).at(-1), 's→ ACK 2.05 #6 "0123456789abcdef0123"');
  assertEquals(full.payload.length, 1024);
  assertEquals(t.endpoint.unverifiedPeers, 1); // elsewhere
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: one small datagram (64 bytes at most) may go past the budget, once a peer: a short response no block can carry comes whole the first time, and is owed after", async () => {
  const welcome = "Welcome to the demo server";
  const t = rawServer({ "/": { GET: () => ({ payload: welcome }) } });
  // 6 bytes in: 18 allowed, and the 26-byte text in a 33-byte datagram.
  const request = rawGet(1, "", { token: [1, 2] });
  assertEquals(request.length, 6);
  t.endpoint.receive(request, VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM), ['s→ ACK 2.05 #1 "Welcome to the demo "']);
  assertEquals(t.bytesTo(VICTIM), 33);
  assertEquals(
    text(decodeDatagram(t.sent[0].bytes).message.payload),
    welcome,
  );
  // That is owed: the next time from the same peer (12 bytes in, 36
  // allowed, 33 spent), no block fits, and a 4.01 with Echo goes instead.
  t.endpoint.receive(rawGet(2, "", { token: [1, 2] }), VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM).at(-1), "s→ ACK 4.01 #2");
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: our client answers a 4.01 with Echo by repeating the request with its value, once, and gets the response", async () => {
  const t = setup(amplified);
  const client = await t.connect();
  // GET /: a 5-byte request, 15 bytes allowed: not even a 16-byte block.
  const { got, done } = collect(client, { method: "GET", path: "/" });
  await done;
  assertEquals(got, [`2.05 ${bigText}`]);
  assertEquals(t.trace.map((line) => line.slice(0, 22)).slice(0, 4), [
    "c→s CON 0.01 #1",
    "s→c ACK 4.01 #1",
    "c→s CON 0.01 #2",
    's→c ACK 2.05 #2 "01234',
  ]);
  assertEquals(t.serverEndpoint.unverifiedPeers, 0);
  // Verified: the next large response comes whole, in one datagram.
  const big = collect(client, { method: "GET", path: "/big" });
  await big.done;
  assertEquals(big.got, [`2.05 ${bigText}`]);
  assertEquals(t.trace.length, 6);
  client.close();
});

Deno.test("CoAP over UDP, address validation: an error's diagnostic payload is left out where it would not fit, and the source's small datagrams (RST, empty ACK) are not held to the budget", async () => {
  const t = rawServer(amplified);
  t.endpoint.receive(rawGet(1, "fail", { token: [9] }), VICTIM);
  await settle();
  t.endpoint.receive(
    new Uint8Array([0x40, 0, 0, 2]), // a CoAP ping
    VICTIM,
  );
  await settle();
  assertEquals(t.trace(VICTIM), ["s→ ACK 4.00 #1", "s→ RST empty #2"]);
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: an observation registered from a source that never answers costs at most three times its bytes: notifications go CON one at a time, newer ones replace the one retransmitted, and the observation ends after MAX_RETRANSMIT", async () => {
  const { resources, notify } = ticking();
  const t = rawServer(resources);
  // A query makes the registration larger (59 bytes), so that its budget
  // (177) carries a few retransmissions.
  const registration = rawGet(1, "obs", {
    token: [1, 2, 3, 4, 5, 6, 7, 8],
    options: [
      { number: Option.OBSERVE, value: uint(0) },
      { number: Option.URI_QUERY, value: utf8("q=" + "x".repeat(38)) },
    ],
  });
  assertEquals(registration.length, 59);
  t.endpoint.receive(registration, VICTIM);
  await settle();
  assertEquals(t.server.observations, 1);
  for (let n = 1; n <= 100; n++) {
    notify(n);
    await t.clock.advance(100);
  }
  await t.clock.advance(100_000);
  // The registration's answer offers an Echo value; then one CON
  // notification, its retransmissions carrying the newest value (each a
  // new message), MAX_RETRANSMIT times, and no more.
  assertEquals(t.trace(VICTIM), [
    's→ ACK 2.05 #1 "0"',
    's→ CON 2.05 #1 "1"',
    's→ CON 2.05 #2 "20"',
    's→ CON 2.05 #3 "60"',
    's→ CON 2.05 #4 "100"',
    's→ CON 2.05 #4 "100"',
  ]);
  assertEquals(
    getOption(decodeDatagram(t.sent[0].bytes).message, Option.ECHO)?.length,
    12,
  );
  assertEquals(t.bytesTo(VICTIM) <= 3 * registration.length, true);
  assertEquals(t.server.observations, 0);
  assertEquals(t.endpoint.peers, 0);
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: with a plain registration's budget, the observation ends at the first retransmission that would not fit", async () => {
  const { resources, notify } = ticking();
  const t = rawServer(resources);
  const registration = rawGet(1, "obs", {
    token: [1, 2, 3, 4, 5, 6, 7, 8],
    options: [{ number: Option.OBSERVE, value: uint(0) }],
  });
  t.endpoint.receive(registration, VICTIM);
  await settle();
  notify(1);
  await settle();
  await t.clock.advance(2000);
  assertEquals(t.trace(VICTIM), ['s→ ACK 2.05 #1 "0"', 's→ CON 2.05 #1 "1"']);
  assertEquals(t.bytesTo(VICTIM) <= 3 * registration.length, true);
  assertEquals([t.server.observations, t.endpoint.peers], [0, 0]);
  t.endpoint.close();
});

Deno.test("CoAP over UDP, address validation: our client sends an Echo value a response offered with its next request, which verifies it without a 4.01", async () => {
  const t = setup(amplified);
  const client = await t.connect();
  const first = collect(client, { method: "GET", path: "/hello" });
  await first.done;
  assertEquals(t.serverEndpoint.unverifiedPeers, 1);
  const second = collect(client, { method: "GET", path: "/hello" });
  await second.done;
  assertEquals([first.got, second.got], [["2.05 hi"], ["2.05 hi"]]);
  assertEquals(t.trace, [
    "c→s CON 0.01 #1",
    's→c ACK 2.05 #1 "hi"',
    "c→s CON 0.01 #2",
    's→c ACK 2.05 #2 "hi"',
  ]);
  const [, offer, echoed, plain] = t.datagrams.map((d) =>
    getOption(decodeDatagram(d).message, Option.ECHO)
  );
  assertEquals(echoed, offer);
  assertEquals([offer?.length, plain], [12, undefined]);
  assertEquals(t.serverEndpoint.unverifiedPeers, 0);
  client.close();
});

Deno.test("CoAP over UDP, address validation: an observer that acknowledges its first CON notification is verified, gets a newer notification that came meanwhile, and then NONs", async () => {
  const { resources, notify } = ticking();
  const t = rawServer(resources);
  t.endpoint.receive(
    rawGet(1, "obs", { options: [{ number: Option.OBSERVE, value: uint(0) }] }),
    VICTIM,
  );
  await settle();
  notify(1);
  await settle();
  notify(2);
  await settle();
  const con = decodeDatagram(t.sent.at(-1)!.bytes);
  t.endpoint.receive(encodeDatagram(Type.ACK, con.messageId), VICTIM);
  await settle();
  notify(3);
  await settle();
  assertEquals(t.trace(VICTIM), [
    's→ ACK 2.05 #1 "0"',
    's→ CON 2.05 #1 "1"',
    's→ NON 2.05 #2 "2"',
    's→ NON 2.05 #3 "3"',
  ]);
  assertEquals(t.endpoint.unverifiedPeers, 0);
  assertEquals(t.server.observations, 1);
  t.endpoint.close();
});

Deno.test("CoAP over UDP: an ACK with code 0.00 and an option after its ID (libcoap 4.3.1 sends the Echo value a response offered there) acknowledges the CON it names and verifies the peer", async () => {
  const { resources, notify } = ticking();
  const t = rawServer(resources);
  t.endpoint.receive(
    rawGet(1, "obs", { options: [{ number: Option.OBSERVE, value: uint(0) }] }),
    VICTIM,
  );
  await settle();
  const echo = getOption(decodeDatagram(t.sent[0].bytes).message, Option.ECHO)!;
  notify(1);
  await settle();
  const { messageId } = decodeDatagram(t.sent.at(-1)!.bytes);
  // 0x60 (ACK, no token), 0.00, the ID, then option 252: delta 13 with
  // 239 in the next byte, length 12.
  t.endpoint.receive(
    Uint8Array.of(
      0x60,
      0,
      messageId >> 8,
      messageId & 0xff,
      0xdc,
      239,
      ...echo,
    ),
    VICTIM,
  );
  await settle();
  notify(2);
  await settle();
  await t.clock.advance(10_000);
  assertEquals(t.trace(VICTIM), [
    's→ ACK 2.05 #1 "0"',
    's→ CON 2.05 #1 "1"',
    's→ NON 2.05 #2 "2"',
  ]);
  assertEquals(t.endpoint.unverifiedPeers, 0);
  assertEquals(t.server.observations, 1);
  t.endpoint.close();
});

Deno.test("CoAP over UDP: while a verified observer's CON notification awaits its ACK, the NON ones go on; the next CON's turn goes to the one retransmitted, which carries the newest value", async () => {
  const { resources, notify } = ticking();
  const t = rawServer(resources, { conEvery: 4 });
  t.endpoint.receive(
    rawGet(1, "obs", { options: [{ number: Option.OBSERVE, value: uint(0) }] }),
    VICTIM,
  );
  await settle();
  notify(1);
  await settle();
  // Its ACK verifies the observer.
  t.endpoint.receive(
    encodeDatagram(Type.ACK, decodeDatagram(t.sent.at(-1)!.bytes).messageId),
    VICTIM,
  );
  for (let n = 2; n <= 11; n++) {
    notify(n);
    await settle();
  }
  // CON 4 is never acknowledged: 8 takes its place, 9 to 11 go NON.
  assertEquals(t.trace(VICTIM), [
    's→ ACK 2.05 #1 "0"',
    's→ CON 2.05 #1 "1"',
    's→ NON 2.05 #2 "2"',
    's→ NON 2.05 #3 "3"',
    's→ CON 2.05 #4 "4"',
    's→ NON 2.05 #5 "5"',
    's→ NON 2.05 #6 "6"',
    's→ NON 2.05 #7 "7"',
    's→ NON 2.05 #8 "9"',
    's→ NON 2.05 #9 "10"',
    's→ NON 2.05 #10 "11"',
  ]);
  await t.clock.advance(2000);
  assertEquals(t.trace(VICTIM).at(-1), 's→ CON 2.05 #11 "11"');
  t.endpoint.close();
});

Deno.test("CoAP over UDP: one change notified to many observers goes out sendBurst datagrams a turn of the event loop, in order (RFC 7641 §4.5.1); past maxQueued waiting, a datagram is dropped and counted; close() sends what waits", async () => {
  let state = 0;
  const observers = new Observers();
  const t = rawServer({
    "/state": {
      observable: observers,
      GET: () => ({ payload: `state ${state}` }),
    },
  }, { amplificationFactor: false, sendBurst: 4, maxQueued: 6 });
  const peers = Array.from({ length: 12 }, (_, i) => ({
    hostname: "10.2.0.1",
    port: 100 + i,
  }));
  for (const peer of peers) {
    t.endpoint.receive(
      rawGet(1, "state", {
        token: [1],
        options: [{ number: Option.OBSERVE, value: new Uint8Array(0) }],
      }),
      peer,
    );
    await settle();
    await t.clock.advance(1);
  }
  assertEquals(observers.count, 12);
  t.sent.length = 0;
  const logged = t.logs.length;
  state++;
  observers.updated();
  await settle();
  // 4 now, 6 wait, 2 dropped.
  const ports = () => t.sent.map((d) => Number(d.to.split(":")[1]) - 100);
  assertEquals(ports(), [0, 1, 2, 3]);
  assertEquals([t.endpoint.queued, t.endpoint.dropped], [6, 2]);
  assertEquals(t.logs.length, logged + 1);
  assertEquals(
    t.logs.at(-1),
    "warn Dropped a datagram to 10.2.0.1:110: 6 wait to be sent already (maxQueued)",
  );
  // One turn: the pacer's timer, and only it.
  const timers = [...t.clock.timers].filter(([, timer]) =>
    timer.at === t.clock.time
  );
  assertEquals(timers.length, 1);
  t.clock.timers.delete(timers[0][0]);
  timers[0][1].fn();
  assertEquals(ports(), [0, 1, 2, 3, 4, 5, 6, 7]);
  assertEquals(
    t.sent.map((d) => show("", d.bytes).split(" ").slice(1, 3).join(" ")),
    // CON: to an address not verified, every notification is.
    Array(8).fill("CON 2.05"),
  );
  // close() sends the rest at once.
  t.endpoint.close();
  assertEquals(ports(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assertEquals(t.endpoint.queued, 0);
});

Deno.test("CoAP over UDP: a message ID is remembered for exchangeLifetime and at most maxRemembered of a peer's: a duplicate within it gets the same answer and is not handled again; past either bound the ID is new", async () => {
  let handled = 0;
  const t = rawServer({
    "/count": { GET: () => ({ payload: `n${++handled}` }) },
  }, {
    amplificationFactor: false,
    exchangeLifetime: 1000,
    maxRemembered: 3,
  });
  const peer = { hostname: "10.3.0.1", port: 7 };
  const ask = async (id: number) => {
    t.endpoint.receive(rawGet(id, "count", { token: [id] }), peer);
    await settle();
    return t.trace(peer).at(-1);
  };
  assertEquals(await ask(1), 's→ ACK 2.05 #1 "n1"');
  await t.clock.advance(999);
  assertEquals(await ask(1), 's→ ACK 2.05 #1 "n1"'); // a duplicate
  await t.clock.advance(1);
  assertEquals(await ask(1), 's→ ACK 2.05 #1 "n2"'); // past its lifetime
  assertEquals(await ask(2), 's→ ACK 2.05 #2 "n3"');
  assertEquals(await ask(3), 's→ ACK 2.05 #3 "n4"');
  assertEquals(await ask(2), 's→ ACK 2.05 #2 "n3"'); // remembered
  assertEquals(await ask(4), 's→ ACK 2.05 #4 "n5"'); // 1 is let go for it
  assertEquals(await ask(1), 's→ ACK 2.05 #1 "n6"');
  assertEquals(handled, 6);
  t.endpoint.close();
  // A full table of 32 lets its oldest 2 go at once for the 33rd.
  handled = 0;
  const u = rawServer({
    "/count": { GET: () => ({ payload: `n${++handled}` }) },
  }, { amplificationFactor: false, maxRemembered: 32 });
  const other = { hostname: "10.3.0.2", port: 7 };
  const again = async (id: number) => {
    u.endpoint.receive(rawGet(id, "count", { token: [id] }), other);
    await settle();
    return u.trace(other).at(-1);
  };
  for (let id = 1; id <= 33; id++) await again(id);
  assertEquals(handled, 33);
  assertEquals(await again(3), 's→ ACK 2.05 #3 "n3"'); // still remembered
  assertEquals(await again(2), 's→ ACK 2.05 #2 "n34"'); // let go
  assertEquals(await again(1), 's→ ACK 2.05 #1 "n35"');
  u.endpoint.close();
});

Deno.test("CoAP over UDP: a flood of 2,000 new source ports from one address evicts the unverified peers heard from least recently, never a verified one; every request is answered, a newcomer from that address too, and nothing is logged", async () => {
  // 2,000 answers within one millisecond of the manual clock: not paced.
  const t = rawServer(amplified, { maxUnverifiedPeers: 64, sendBurst: 10_000 });
  // One verified peer from the flooded address (it repeated an Echo).
  const verified = { hostname: "10.1.1.1", port: 1000 };
  t.endpoint.receive(rawGet(1, ""), verified);
  await settle();
  const echo = getOption(
    decodeDatagram(t.sent.at(-1)!.bytes).message,
    Option.ECHO,
  )!;
  t.endpoint.receive(
    rawGet(2, "", { options: [{ number: Option.ECHO, value: echo }] }),
    verified,
  );
  await settle();
  assertEquals(t.endpoint.unverifiedPeers, 0);
  for (let port = 2000; port < 4000; port++) {
    t.endpoint.receive(rawGet(port, "hello"), { hostname: "10.1.1.1", port });
    await settle();
  }
  assertEquals(t.endpoint.peers, 65);
  assertEquals(t.endpoint.unverifiedPeers, 64);
  assertEquals(t.server.connections, 65);
  const answered = t.sent.filter((d) => show("", d.bytes).includes("2.05"));
  assertEquals(answered.length, 2000 + 1);
  // A newcomer from the same address is served; the verified peer too.
  const newcomer = { hostname: "10.1.1.1", port: 9999 };
  t.endpoint.receive(rawGet(7, "hello"), newcomer);
  t.endpoint.receive(rawGet(3, "hello"), verified);
  await settle();
  assertEquals(t.trace(newcomer), ['s→ ACK 2.05 #7 "hi"']);
  assertEquals(t.trace(verified).at(-1), 's→ ACK 2.05 #3 "hi"');
  assertEquals(t.logs, []);
  t.endpoint.close();
});

Deno.test("CoAP over UDP: where the server's limit for one address is reached, that address's oldest unverified peer makes room; where only verified peers hold it, the newcomer is refused and the refusals are said once a second with their count", async () => {
  const clock = new ManualClock();
  const server = new CoapServer(amplified, {
    log: quiet,
    limits: { maxConnectionsPerAddress: 2 },
  });
  const logs: string[] = [];
  const sent: string[] = [];
  const endpoint = new CoapUdpEndpoint(
    (bytes, to) => sent.push(`${show("s→", bytes)} to ${to.port}`),
    { clock, random: () => 0, log: recorder(logs), onPeer: servePeers(server) },
  );
  const from = (port: number) => ({ hostname: "10.2.2.2", port });
  for (let port = 1; port <= 5; port++) {
    endpoint.receive(rawGet(port, "hello"), from(port));
    await settle();
  }
  // Each newcomer took the place of the oldest unverified peer.
  assertEquals(
    sent,
    [1, 2, 3, 4, 5].map((n) => `s→ ACK 2.05 #${n} "hi" to ${n}`),
  );
  assertEquals([endpoint.peers, server.connections], [2, 2]);
  // Ports 4 and 5 repeat a request with an Echo value made for them:
  // verified, they hold the address's two places.
  for (const port of [4, 5]) {
    const echo = endpoint._echo(from(port));
    endpoint.receive(
      rawGet(20 + port, "post", {
        code: Code.POST,
        options: [{ number: Option.ECHO, value: echo }],
      }),
      from(port),
    );
    await settle();
  }
  assertEquals(endpoint.unverifiedPeers, 0);
  sent.length = 0;
  for (let port = 6; port <= 8; port++) {
    endpoint.receive(rawGet(port, "hello"), from(port));
    await settle();
  }
  assertEquals(sent, [
    "s→ RST empty #6 to 6",
    "s→ RST empty #7 to 7",
    "s→ RST empty #8 to 8",
  ]);
  assertEquals(logs, [
    "warn Refusing CoAP over UDP from 10.2.2.2:6: 10.2.2.2 has 2 connections open, the limit for one address (maxConnectionsPerAddress)",
  ]);
  await clock.advance(1000);
  assertEquals(logs.slice(1), [
    "warn 2 more like it in the last second: CoAP over UDP refused by the server's connection limits",
  ]);
  endpoint.close();
  assertEquals(clock.timers.size, 0);
});

Deno.test("CoAP over UDP: the endpoint's options are checked at construction", () => {
  assertThrows(
    () => new CoapUdpEndpoint(() => {}, { ackTimeout: -1 }),
    RangeError,
    "ackTimeout must be a number from 0, got -1",
  );
  assertThrows(
    () => new CoapUdpEndpoint(() => {}, { nstart: 0 }),
    RangeError,
    "nstart, ackRandomFactor and sendBurst must be at least 1",
  );
});

Deno.test("CoAP over UDP: 20,000 random and mutated datagrams from many peers never throw out of receive(); the server answers a well-formed GET afterwards, and every peer is let go when idle", async () => {
  let state = 20261202;
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const pick = <T>(items: readonly T[]) =>
    items[Math.floor(random() * items.length)];
  // No observable resource: an observation a fuzzed peer makes would keep
  // its peer until a CON notification went unanswered (see the README).
  const t = setup(hello, { server: { maxPeers: 64, idleTimeout: 5000 } });
  // Well-formed requests to start from.
  const seeds = [
    ["hello"],
    ["nothing"],
    [".well-known", "core"],
  ].map((path, i) =>
    encodeDatagram(
      Type.CON,
      i,
      encodeMessage({
        code: Code.GET,
        token: new Uint8Array([i, 1, 2]),
        options: [
          ...path.map((segment) => ({
            number: Option.URI_PATH,
            value: utf8(segment),
          })),
          ...(path[0] === "obs"
            ? [{ number: Option.OBSERVE, value: uint(0) }]
            : []),
        ],
        payload: new Uint8Array(0),
      }),
    )
  );
  let thrown = 0;
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    const roll = random();
    if (roll < 0.2) {
      bytes = Uint8Array.from(
        { length: Math.floor(random() * 40) },
        () => random() * 256,
      );
    } else {
      bytes = pick(seeds).slice();
      // The type, the message ID, then a few bytes flipped, cut or added.
      bytes[0] = (bytes[0] & 0xcf) | (Math.floor(random() * 4) << 4);
      bytes[2] = random() * 256;
      bytes[3] = random() * 256;
      for (let n = Math.floor(random() * 3); n > 0; n--) {
        bytes[Math.floor(random() * bytes.length)] ^= 1 <<
          Math.floor(random() * 8);
      }
      if (random() < 0.2) {
        bytes = bytes.subarray(0, Math.floor(random() * bytes.length));
      }
      if (random() < 0.1) {
        bytes = Uint8Array.from([...bytes, ...[0xff, 0x41, 0x42]]);
      }
    }
    const from = {
      hostname: `10.9.${Math.floor(random() * 4)}.${
        Math.floor(random() * 200)
      }`,
      port: 5000 + Math.floor(random() * 3),
    };
    try {
      t.serverEndpoint.receive(bytes, from);
      t.clientEndpoint.receive(bytes, from);
    } catch {
      thrown++;
    }
    if (i % 500 === 0) await t.clock.advance(100);
  }
  await t.clock.advance(1000);
  assertEquals(thrown, 0);
  assertEquals(
    t.serverEndpoint.peers <= 64,
    true,
    `${t.serverEndpoint.peers} peers`,
  );
  // The fuzzed peers never acknowledge: their separate responses are given
  // up after MAX_RETRANSMIT (2 + 4 + 8 + 16 + 32 s), and the idle peers are
  // forgotten.
  await t.clock.advance(70_000);
  assertEquals(t.serverEndpoint.peers, 0);
  assertEquals(t.server.connections, 0);
  // A well-formed client still gets its answer.
  t.trace.length = 0;
  const client = await t.connect();
  const { got, done } = collect(client, { method: "GET", path: "/hello" });
  await done;
  assertEquals(got, ["2.05 hi"], t.trace.join("\n"));
  client.close();
  // Nothing stays: retransmissions to the fuzzed peers give up, and idle
  // peers are forgotten.
  await t.clock.advance(300_000);
  assertEquals(t.serverEndpoint.peers, 0);
  assertEquals(t.server.connections, 0);
  assertEquals(t.logs.filter((line) => line.startsWith("error")), []);
});

Deno.test("CoAP over UDP: a silent observer gets a CoAP ping after keepAlive; a live one answers with an RST and keeps its observation, a gone one is given up and its observation ends", async () => {
  const t = setup({
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => resolve());
          pipe.addResponse({ payload: "still" });
        }),
    },
  }, { server: { keepAlive: 10_000, maxRetransmit: 2 } });
  const client = await t.connect();
  const { got } = collect(client, {
    method: "GET",
    path: "/obs",
    observe: true,
  });
  await settle();
  assertEquals(got, ["2.05 still"]);
  t.trace.length = 0;
  // Alive: the ping is answered and the observation stays.
  await t.clock.advance(12_000);
  assertEquals(t.trace, ["s→c CON empty #1", "c→s RST empty #1"]);
  assertEquals(t.server.observations, 1);
  // Gone: nothing comes back any more.
  t.setFate(() => 0);
  t.trace.length = 0;
  await t.clock.advance(12_000 + 2000 + 4000 + 8000);
  assertEquals(t.trace, [
    "s→c CON empty #2 (lost)",
    "s→c CON empty #2 (lost)",
    "s→c CON empty #2 (lost)",
  ]);
  assertEquals(t.server.observations, 0);
  assertEquals(t.serverEndpoint.peers, 0);
  client.close();
});

/**
 * Our client against a device this test plays by hand: what the client
 * sends, decoded, and a way to answer as the device.
 */
async function rawDevice(options: UdpOptions = {}) {
  const clock = new ManualClock();
  const sent: Uint8Array[] = [];
  const logs: string[] = [];
  const endpoint = new CoapUdpEndpoint((bytes) => sent.push(bytes), {
    clock,
    random: () => 0,
    log: recorder(logs),
    ...options,
  });
  const connection = attachWebSocket(endpoint.connect(SERVER), {
    log: quiet,
    clock,
  });
  await connection.ready;
  const client = new CoapClient(connection, { log: quiet });
  return {
    clock,
    sent,
    logs,
    endpoint,
    client,
    /** The last datagram the client sent. */
    last: () => decodeDatagram(sent.at(-1)!),
    /** A datagram from the device. */
    answer(
      type: MessageType,
      messageId: number,
      message?: {
        code: number;
        token: Uint8Array;
        options?: CoapOption[];
        payload?: Uint8Array;
      },
    ) {
      endpoint.receive(
        encodeDatagram(
          type,
          messageId,
          message === undefined ? undefined : encodeMessage({
            options: [],
            payload: new Uint8Array(0),
            ...message,
          }),
        ),
        SERVER,
      );
    },
  };
}

Deno.test("CoAP over UDP, the device side: an ACK that does not answer its request (signalling such as a 7.01 with Max-Message-Size 5, a request code, another token) is dropped and counted, ends nothing and narrows nothing; the valid answer after it is taken", async () => {
  const d = await rawDevice();
  const { got, done } = collect(d.client, { method: "GET", path: "/x" });
  await settle();
  const request = d.last();
  const token = request.message.token;
  d.answer(Type.ACK, request.messageId, {
    code: Code.CSM,
    token: new Uint8Array(0),
    options: [{ number: 2, value: uint(5) }],
  });
  d.answer(Type.ACK, request.messageId, { code: Code.GET, token });
  d.answer(Type.ACK, request.messageId, {
    code: Code.CONTENT,
    token: new Uint8Array([0xee]),
    payload: utf8("wrong token"),
  });
  await settle();
  assertEquals(d.endpoint.dropped, 3);
  assertEquals(got, []);
  d.answer(Type.ACK, request.messageId, {
    code: Code.CONTENT,
    token,
    payload: utf8("right"),
  });
  await done;
  assertEquals(got, ["2.05 right"]);
  // Nothing narrowed what goes to the device: 500 bytes go in one datagram.
  const big = collect(d.client, {
    method: "PUT",
    path: "/x",
    payload: "p".repeat(500),
  });
  await settle();
  assertEquals(d.last().message.payload.length, 500);
  d.answer(Type.ACK, d.last().messageId, {
    code: Code.CHANGED,
    token: d.last().message.token,
  });
  await big.done;
  assertEquals(big.got, ["2.04"]);
  assertEquals(d.logs, [
    "warn Dropped a 7.01 from 10.0.0.1:5683: no such code belongs on UDP",
    "warn Dropped an ACK from 10.0.0.1:5683 with code 0.01 that does not answer the request it names",
  ]);
  d.client.close();
});

Deno.test("CoAP over UDP, the device side: an RST to a request, or an answer over maxMessageSize, ends that request with a 5.02 saying why; the peer and its other exchanges go on", async () => {
  const d = await rawDevice();
  const first = collect(d.client, { method: "GET", path: "/a" });
  await settle();
  d.answer(Type.RST, d.last().messageId);
  await first.done;
  assertEquals(first.got, [
    "5.02 Bad Gateway: 10.0.0.1:5683 reset the request (RST)",
  ]);
  const second = collect(d.client, { method: "GET", path: "/b" });
  await settle();
  d.answer(Type.ACK, d.last().messageId, {
    code: Code.CONTENT,
    token: d.last().message.token,
    payload: new Uint8Array(1200),
  });
  await second.done;
  assertEquals(second.got, [
    "5.02 Bad Gateway: 10.0.0.1:5683 answered with 1206 bytes, over the 1152 this side takes (maxMessageSize)",
  ]);
  const third = collect(d.client, { method: "GET", path: "/c" });
  await settle();
  d.answer(Type.ACK, d.last().messageId, {
    code: Code.CONTENT,
    token: d.last().message.token,
    payload: utf8("fine"),
  });
  await third.done;
  assertEquals(third.got, ["2.05 fine"]);
  assertEquals(d.endpoint.peers, 1);
  d.client.close();
});

Deno.test("CoAP over UDP, the server side: a request over maxMessageSize is answered 4.13 with Size1 (and again for its duplicate), reaches no resource and forgets nobody; a CON with a signalling code gets an RST", async () => {
  let handled = 0;
  const t = rawServer({
    "/echo": {
      PUT: () => {
        handled++;
        return { code: "2.04" };
      },
    },
  });
  const put = encodeDatagram(
    Type.CON,
    5,
    encodeMessage({
      code: Code.PUT,
      token: new Uint8Array([7]),
      options: [{ number: Option.URI_PATH, value: utf8("echo") }],
      payload: new Uint8Array(1200),
    }),
  );
  t.endpoint.receive(put, VICTIM);
  await settle();
  t.endpoint.receive(put, VICTIM);
  await settle();
  assertEquals(t.trace(VICTIM), ["s→ ACK 4.13 #5", "s→ ACK 4.13 #5"]);
  const answer = decodeDatagram(t.sent[0].bytes).message;
  assertEquals(answer.options, [{ number: Option.SIZE1, value: uint(1152) }]);
  assertEquals(handled, 0);
  t.endpoint.receive(
    encodeDatagram(
      Type.CON,
      6,
      encodeMessage({
        code: Code.CSM,
        token: new Uint8Array(0),
        options: [],
        payload: new Uint8Array(0),
      }),
    ),
    VICTIM,
  );
  await settle();
  assertEquals(t.trace(VICTIM).at(-1), "s→ RST empty #6");
  assertEquals(t.endpoint.peers, 1);
  assertEquals(t.endpoint.dropped, 2);
  assertEquals(t.logs, [
    "warn Refused a request of 1211 bytes from 192.0.2.7:5683 with 4.13: over 1152 (maxMessageSize)",
    "warn Dropped a 7.01 from 192.0.2.7:5683: no such code belongs on UDP",
  ]);
  t.endpoint.close();
});

Deno.test("CoAP over UDP: a registration answered with an error (Observe 0 and a Block2 number past the end, found by a fuzzer) is not an observation: one 4.02, nothing on later changes, and the server counts none", async () => {
  let notify!: () => void;
  let aborted = 0;
  const t = rawServer({
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          notify = () => pipe.addResponse({ payload: "changed" });
          signal.addEventListener("abort", () => {
            aborted++;
            resolve();
          });
          pipe.addResponse({ payload: "value" });
        }),
    },
  }, { amplificationFactor: false });
  t.endpoint.receive(
    rawGet(1, "obs", {
      type: Type.NON,
      options: [
        { number: Option.OBSERVE, value: uint(0) },
        {
          number: Option.BLOCK2,
          value: encodeBlock({ num: 9, more: false, szx: 0 }),
        },
      ],
    }),
    VICTIM,
  );
  await settle();
  assertEquals(t.trace(VICTIM), [
    's→ NON 4.02 #1 "Block 9 is past the "',
  ]);
  assertEquals(
    getOption(decodeDatagram(t.sent[0].bytes).message, Option.OBSERVE),
    undefined,
  );
  assertEquals([t.server.observations, aborted], [0, 1]);
  notify();
  await t.clock.advance(1000);
  assertEquals(t.trace(VICTIM).length, 1);
  t.endpoint.close();
});

Deno.test("CoAP over UDP, the device side: a device that never answers holds NSTART only while its requester waits; when the requester leaves, its request stops being retransmitted and the next one goes at once, and a late answer to it gets an RST", async () => {
  const d = await rawDevice();
  const first = d.client.request({ method: "GET", path: "/a" })
    [Symbol.asyncIterator]();
  const pending = first.next();
  const second = collect(d.client, { method: "GET", path: "/b" });
  await settle();
  const lines = () =>
    d.sent.map((bytes) => {
      const { type, messageId, message } = decodeDatagram(bytes);
      const path = message.options.filter((o) => o.number === Option.URI_PATH)
        .map((o) => text(o.value)).join("/");
      return `${TYPES[type]} #${messageId} ${path}`.trim();
    });
  await d.clock.advance(2000);
  assertEquals(lines(), ["CON #1 a", "CON #1 a"]);
  const late = d.last();
  // The first requester gives up: /b goes at once, /a is sent no more.
  await first.return!();
  await pending;
  await settle();
  assertEquals(lines(), ["CON #1 a", "CON #1 a", "CON #2 b"]);
  d.answer(Type.ACK, 2, {
    code: Code.CONTENT,
    token: d.last().message.token,
    payload: utf8("b"),
  });
  await second.done;
  assertEquals(second.got, ["2.05 b"]);
  await d.clock.advance(60_000);
  assertEquals(lines().length, 3);
  // The device's separate answer to /a, late: nobody wants it.
  d.answer(Type.CON, 900, {
    code: Code.CONTENT,
    token: late.message.token,
    payload: utf8("a"),
  });
  assertEquals(lines().at(-1), "RST #900");
  d.client.close();
});

Deno.test("CoAP over UDP: an Observe registration whose 0 is written as one zero byte (found by the fuzzer) is an observation here as at the server: a silent observer of a resource that never changes is pinged after keepAlive and given up, and nothing is left", async () => {
  const t = rawServer({
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => resolve());
          pipe.addResponse({ payload: "still" });
        }),
    },
  }, { random: () => 0.5 });
  t.endpoint.receive(
    rawGet(1, "obs", {
      options: [{ number: Option.OBSERVE, value: Uint8Array.of(0) }],
    }),
    VICTIM,
  );
  await settle();
  assertEquals(t.server.observations, 1);
  await t.clock.advance(400_000);
  assertEquals(t.trace(VICTIM), [
    's→ ACK 2.05 #1 "still"',
    ...Array(5).fill("s→ CON empty #1"),
  ]);
  assertEquals([t.server.observations, t.endpoint.peers], [0, 0]);
  t.endpoint.close();
  assertEquals(t.clock.timers.size, 0);
});

Deno.test("CoAP over UDP, the device side: a separate response that comes before its request's ACK acknowledges the request (RFC 7252 §5.2.2): it is sent no more, and the next request goes at once (found by the proxy fuzzer)", async () => {
  const d = await rawDevice();
  const first = collect(d.client, { method: "GET", path: "/a" });
  const second = collect(d.client, { method: "GET", path: "/b" });
  await settle();
  const request = d.last();
  assertEquals(d.sent.length, 1);
  d.answer(Type.CON, 500, {
    code: Code.CONTENT,
    token: request.message.token,
    payload: utf8("a"),
  });
  await first.done;
  assertEquals(first.got, ["2.05 a"]);
  const types = d.sent.map((bytes) => TYPES[decodeDatagram(bytes).type]);
  // Its ACK, then /b at once.
  assertEquals(types, ["CON", "ACK", "CON"]);
  await d.clock.advance(10_000);
  assertEquals(
    d.sent.filter((bytes) =>
      decodeDatagram(bytes).messageId === request.messageId
    )
      .length,
    1,
  );
  d.answer(Type.ACK, d.last().messageId, {
    code: Code.CONTENT,
    token: d.last().message.token,
    payload: utf8("b"),
  });
  await second.done;
  assertEquals(second.got, ["2.05 b"]);
  d.client.close();
});

Deno.test("CoAP over UDP, No-Response (RFC 7967): a CON whose answer is not wanted gets an empty ACK at once, and its retransmission the same; a NON gets nothing; an answer of a class still wanted rides in the ACK", async () => {
  const ran: string[] = [];
  const t = rawServer({
    "/ok": { POST: () => (ran.push("ok"), { code: "2.04", payload: "done" }) },
    "/bad": { POST: () => (ran.push("bad"), { code: "4.00" }) },
  }, { amplificationFactor: false, idleTimeout: 5000 });
  const post = (
    id: number,
    path: string,
    mask: number,
    type: MessageType = Type.CON,
  ) =>
    rawGet(id, path, {
      code: Code.POST,
      type,
      token: [id],
      options: [{ number: Option.NO_RESPONSE, value: uint(mask) }],
    });
  t.endpoint.receive(post(1, "ok", 2), VICTIM);
  await settle();
  t.endpoint.receive(post(1, "ok", 2), VICTIM);
  await settle();
  t.endpoint.receive(post(2, "ok", 26, Type.NON), VICTIM);
  await settle();
  t.endpoint.receive(post(3, "bad", 2), VICTIM);
  await settle();
  await t.clock.advance(1000);
  assertEquals(t.trace(VICTIM), [
    "s→ ACK empty #1",
    "s→ ACK empty #1",
    "s→ ACK 4.00 #3",
  ]);
  assertEquals(ran, ["ok", "ok", "bad"]);
  assertEquals(t.server.exchanges, 0);
  // Nothing is left open: a peer whose last request went unanswered is
  // let go once idle (the fuzzer found one kept for ever).
  const quietPeer = { hostname: "192.0.2.8", port: 5683 };
  t.endpoint.receive(post(9, "ok", 2), quietPeer);
  await settle();
  assertEquals(t.trace(quietPeer), ["s→ ACK empty #9"]);
  await t.clock.advance(10_000);
  assertEquals([t.endpoint.peers, t.server.connections], [0, 0]);
  t.endpoint.close();
});
