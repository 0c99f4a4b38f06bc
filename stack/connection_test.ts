import { assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { type Logger, Pipe } from "@coap/pipe";
import {
  type Clock,
  CoapConnection,
  ConnectionError,
  type ConnectionOptions,
} from "./connection.ts";
import {
  type CoapMessage,
  Code,
  decodeMessage,
  encodeMessage,
  getOption,
  hex,
  Option,
  readUint,
  text,
  uint,
  utf8,
} from "./message.ts";

const bytes = (...values: number[]) => new Uint8Array(values);
const csm = (size?: number, blockWise = false): CoapMessage => ({
  code: Code.CSM,
  token: bytes(),
  options: [
    ...(size === undefined ? [] : [{ number: 2, value: uint(size) }]),
    ...(blockWise ? [{ number: 4, value: bytes() }] : []),
  ],
  payload: bytes(),
});

class FakeClock implements Clock {
  time = 0;
  timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  advance(ms: number): void {
    this.time += ms;
    for (const [id, timer] of [...this.timers]) {
      if (timer.at <= this.time) {
        this.timers.delete(id);
        timer.fn();
      }
    }
  }
}

interface Harness {
  connection: CoapConnection;
  /** Messages the connection sent, decoded. */
  sent: CoapMessage[];
  closes: [number, string][];
  logs: string[];
  clock: FakeClock;
  feed(message: CoapMessage): void;
}

function logger(logs: string[]): Logger {
  return {
    debug: (...data) => logs.push(`debug ${data[0]}`),
    info: (...data) => logs.push(`info ${data[0]}`),
    warn: (...data) => logs.push(`warn ${data[0]}`),
    error: (...data) => logs.push(`error ${data[0]}`),
  };
}

/** A started connection that has received the peer's CSM (unless told not to). */
function harness(
  options: ConnectionOptions & { peerCsm?: CoapMessage | null } = {},
): Harness {
  const sent: CoapMessage[] = [];
  const closes: [number, string][] = [];
  const logs: string[] = [];
  const clock = new FakeClock();
  const connection = new CoapConnection({
    send: (b) => sent.push(decodeMessage(b)),
    close: (code, reason) => closes.push([code, reason]),
  }, { log: logger(logs), clock, ...options });
  connection.start();
  const feed = (message: CoapMessage) =>
    connection.receive(encodeMessage(message));
  if (options.peerCsm !== null) feed(options.peerCsm ?? csm());
  return { connection, sent, closes, logs, clock, feed };
}

/** A requester's pipe with a trace of its events. */
function tracedPipe(request: CoapMessage) {
  const trace: string[] = [];
  const pipe = new Pipe<CoapMessage, CoapMessage>(request, logger([]));
  const stop = pipe.onEvent((event) => {
    if (event.kind === "response") {
      trace.push(
        `${event.message.code.toString(16)} ${
          text(event.message.payload)
        } last=${event.isLast}`,
      );
    } else if (event.kind === "exception") {
      trace.push(`exception ${(event.exception as Error).message}`);
    }
    return true;
  });
  return { pipe, trace, stop };
}

const get = (path: string, observe?: number): CoapMessage => ({
  code: Code.GET,
  token: bytes(),
  options: [
    { number: Option.URI_PATH, value: utf8(path) },
    ...(observe === undefined
      ? []
      : [{ number: Option.OBSERVE, value: uint(observe) }]),
  ],
  payload: bytes(),
});

const response = (
  token: Uint8Array,
  payload: string,
  observe?: number,
  code: number = Code.CONTENT,
): CoapMessage => ({
  code,
  token,
  options: observe === undefined
    ? []
    : [{ number: Option.OBSERVE, value: uint(observe) }],
  payload: utf8(payload),
});

Deno.test("CoapConnection.start() sends a CSM with Max-Message-Size (and Block-Wise-Transfer when asked) first", () => {
  const plain = harness({ peerCsm: null });
  assertEquals(plain.sent, [csm(1152)]);
  assertEquals(plain.connection.state, "opening");
  const big = harness({
    peerCsm: null,
    maxMessageSize: 65536,
    blockWise: true,
  });
  assertEquals(big.sent, [csm(65536, true)]);
});

Deno.test("CoapConnection is open once the peer's CSM arrives, and takes its settings", async () => {
  const { connection, feed } = harness({ peerCsm: null });
  feed(csm(4000, true));
  assertEquals(connection.state, "open");
  assertEquals(await connection.ready, {
    maxMessageSize: 4000,
    blockWise: true,
  });
  // A later CSM updates the settings (RFC 8323 §5.3).
  feed(csm(2000));
  assertEquals(connection.peer, { maxMessageSize: 2000, blockWise: true });
});

Deno.test("CoapConnection aborts when the first message is not a CSM", async () => {
  const { connection, sent, closes, feed } = harness({ peerCsm: null });
  feed(get("x"));
  assertEquals(sent.slice(1).map((m) => [m.code, text(m.payload)]), [
    [Code.ABORT, "Expected a CSM as the first message, got 0.01"],
  ]);
  assertEquals(closes, [[
    1002,
    "Connection aborted by this side: Expected a CSM as the first message, got 0.01",
  ]]);
  assertEquals(connection.state, "closed");
  await assertRejects(() => connection.ready, ConnectionError);
});

Deno.test("CoapConnection aborts on an unknown critical CSM option, naming it in Bad-CSM-Option", () => {
  const { sent, closes, feed } = harness({ peerCsm: null });
  feed({ ...csm(), options: [{ number: 5, value: bytes() }] });
  const abort = sent[1];
  assertEquals(abort.code, Code.ABORT);
  assertEquals(text(abort.payload), "Unsupported critical CSM option 5");
  assertEquals(abort.options, [{ number: 2, value: uint(5) }]);
  assertEquals(closes.length, 1);
});

Deno.test("CoapConnection ignores elective CSM options and empty messages", () => {
  const { connection, sent, feed } = harness({ peerCsm: null });
  feed({ ...csm(), options: [{ number: 6, value: bytes(1) }] });
  feed({ code: Code.EMPTY, token: bytes(), options: [], payload: bytes() });
  assertEquals(connection.state, "open");
  assertEquals(sent.length, 1);
});

Deno.test("CoapConnection answers a Ping with a Pong on the same token", () => {
  const { sent, feed } = harness();
  feed({ code: Code.PING, token: bytes(7, 8), options: [], payload: bytes() });
  assertEquals(sent.at(-1), {
    code: Code.PONG,
    token: bytes(7, 8),
    options: [],
    payload: bytes(),
  });
});

Deno.test("CoapConnection.ping() resolves with the round-trip time when the Pong arrives", async () => {
  const { connection, sent, feed, clock } = harness();
  const rtt = connection.ping();
  const ping = sent.at(-1)!;
  assertEquals(ping.code, Code.PING);
  clock.advance(12);
  feed({ code: Code.PONG, token: ping.token, options: [], payload: bytes() });
  assertEquals(await rtt, 12);
  assertEquals(clock.timers.size, 0);
});

Deno.test("CoapConnection.ping() without a Pong in time aborts and ends every open pipe with an exception", async () => {
  const { connection, sent, closes, clock } = harness({ pingTimeout: 1000 });
  const { pipe, trace } = tracedPipe(get("obs", 0));
  connection.request(pipe);
  const rtt = connection.ping();
  clock.advance(999);
  assertEquals(connection.state, "open");
  clock.advance(1);
  await assertRejects(() => rtt, ConnectionError, "No Pong within 1000 ms");
  assertEquals(text(sent.at(-1)!.payload), "No Pong within 1000 ms");
  assertEquals(closes.length, 1);
  assertEquals(trace, [
    "exception Connection aborted by this side: No Pong within 1000 ms",
  ]);
  assertEquals(pipe.ended, true);
});

Deno.test("CoapConnection.request() sends with a fresh token and delivers the response as the final event", () => {
  const { connection, sent, feed } = harness();
  const a = tracedPipe(get("a")), b = tracedPipe(get("b"));
  connection.request(a.pipe);
  connection.request(b.pipe);
  const [ra, rb] = sent.slice(-2);
  assertEquals(hex(ra.token) !== hex(rb.token), true);
  assertEquals(ra.options, get("a").options);
  assertEquals(connection.pending, 2);
  feed(response(rb.token, "B"));
  feed(response(ra.token, "A"));
  assertEquals([a.trace, b.trace], [["45 A last=true"], ["45 B last=true"]]);
  assertEquals(connection.pending, 0);
  assertEquals([a.pipe.ended, b.pipe.ended], [true, true]);
});

Deno.test("CoapConnection delivers notifications of an observation as non-final events, the one without Observe as final", () => {
  const { connection, sent, feed } = harness();
  const { pipe, trace } = tracedPipe(get("counter", 0));
  connection.request(pipe);
  const token = sent.at(-1)!.token;
  feed(response(token, "1", 1));
  feed(response(token, "2", 2));
  feed(response(token, "bye"));
  assertEquals(trace, [
    "45 1 last=false",
    "45 2 last=false",
    "45 bye last=true",
  ]);
  assertEquals(connection.pending, 0);
});

Deno.test("CoapConnection deregisters an observation with GET Observe 1 on the same token when interest ends", () => {
  const { connection, sent, feed, logs } = harness();
  const { pipe, trace, stop } = tracedPipe(get("counter", 0));
  connection.request(pipe);
  const request = sent.at(-1)!;
  feed(response(request.token, "1", 1));
  stop();
  const deregister = sent.at(-1)!;
  assertEquals(deregister.token, request.token);
  assertEquals(deregister.code, Code.GET);
  assertEquals(readUint(getOption(deregister, Option.OBSERVE)!), 1);
  assertEquals(getOption(deregister, Option.URI_PATH), utf8("counter"));
  // The token stays reserved until the final response, which is dropped.
  assertEquals(connection.pending, 1);
  feed(response(request.token, "2", 2));
  feed(response(request.token, "3"));
  assertEquals(connection.pending, 0);
  assertEquals(trace, ["45 1 last=false"]);
  assertEquals(logs.filter((l) => l.startsWith("warn")), []);
});

Deno.test("CoapConnection logs and ignores a response with an unknown token", () => {
  const { connection, feed, logs } = harness();
  const { pipe, trace } = tracedPipe(get("a"));
  connection.request(pipe);
  feed(response(bytes(0xde, 0xad), "stray"));
  assertEquals(logs, ["warn Ignoring a 2.05 response with unknown token dead"]);
  assertEquals([trace, connection.state, connection.pending], [[], "open", 1]);
});

Deno.test("CoapConnection logs the first response with an unknown token and counts the rest, telling the count as it closes", () => {
  const { connection, feed, logs, clock } = harness();
  // 1,000 a second: the most maxIdleMessagesPerSecond lets through.
  for (let i = 0; i < 3000; i++) {
    if (i % 1000 === 0) clock.advance(1000);
    feed(response(uint(i + 1), "stray"));
  }
  assertEquals(logs, ["warn Ignoring a 2.05 response with unknown token 01"]);
  connection.release();
  assertEquals(logs, [
    "warn Ignoring a 2.05 response with unknown token 01",
    "warn And 2999 more responses with unknown tokens on this connection",
  ]);
});

Deno.test("CoapConnection aborts a peer that sends more than maxIdleMessagesPerSecond messages that do no work within a second: empty messages, stray responses and Pongs, repeated CSMs, Pings", () => {
  const { connection, feed, sent, logs, clock } = harness({
    maxIdleMessagesPerSecond: 5,
  });
  const signal = (code: number): CoapMessage => ({
    code,
    token: bytes(),
    options: [],
    payload: bytes(),
  });
  feed(signal(Code.EMPTY));
  feed(response(bytes(7), "stray"));
  feed(signal(Code.PONG));
  feed(csm(2000));
  feed(signal(Code.PING));
  assertEquals(connection.state, "open");
  clock.advance(1000); // a new second
  for (let i = 0; i < 5; i++) feed(signal(Code.EMPTY));
  assertEquals(connection.state, "open");
  feed(signal(Code.PING));
  const diagnostic =
    "More than 5 messages that do no work (empty messages, responses to no request, repeated CSMs, Pings) within a second";
  assertEquals(connection.state, "closed");
  assertEquals(
    sent.slice(1).map((m) => [m.code, text(m.payload)]),
    [[Code.PONG, ""], [Code.ABORT, diagnostic]],
  );
  assertEquals(logs, [
    "warn Ignoring a 2.05 response with unknown token 07",
    `warn Aborting the CoAP connection: ${diagnostic}`,
  ]);
  assertEquals(connection.peer.maxMessageSize, 2000);
});

Deno.test("CoapConnection logs a peer's Abort diagnostic escaped and cut, never as lines of its own", () => {
  const { connection, feed, logs } = harness();
  const head = "bye\nerror: FORGED \x1b[31mred\x1b[0m\u202e";
  const forged = head + "x".repeat(400);
  feed({
    code: Code.ABORT,
    token: bytes(),
    options: [],
    payload: utf8(forged),
  });
  // The line is cut at 300 characters, then escaped.
  const prefix = "The peer aborted the CoAP connection: ";
  const xs = 300 - prefix.length - head.length;
  assertEquals(logs, [
    `warn ${prefix}bye\\nerror: FORGED \\x1b[31mred\\x1b[0m\\u202e${
      "x".repeat(xs)
    }… (${400 - xs} more characters)`,
  ]);
  assertEquals(connection.state, "closed");
});

Deno.test("CoapConnection logs through a budget of lines a minute (logLinesPerMinute), and says how many it left out", () => {
  const { connection, logs, clock } = harness({ logLinesPerMinute: 3 });
  for (let i = 0; i < 10; i++) connection.log.warn(`line ${i}`);
  assertEquals(logs, ["warn line 0", "warn line 1", "warn line 2"]);
  clock.advance(60_000);
  connection.log.info("a new minute");
  assertEquals(logs.slice(3), [
    "warn Left out 7 more log lines of this connection (at most 3 a minute)",
    "info a new minute",
  ]);
  for (let i = 0; i < 5; i++) connection.log.warn("more");
  connection.release();
  assertEquals(logs.slice(5), [
    "warn more",
    "warn more",
    "warn Left out 3 more log lines of this connection (at most 3 a minute)",
  ]);
});

Deno.test("CoapConnection contains an error thrown while it handles a message: one log line with the error, an Abort, this connection closed", () => {
  const logs: unknown[][] = [];
  const sent: CoapMessage[] = [];
  const closes: [number, string][] = [];
  const bug = new Error("handler bug");
  const connection = new CoapConnection({
    send: (b) => sent.push(decodeMessage(b)),
    close: (code, reason) => closes.push([code, reason]),
  }, {
    log: {
      debug: (...data) => logs.push(["debug", ...data]),
      info: (...data) => logs.push(["info", ...data]),
      warn: (...data) => logs.push(["warn", ...data]),
      error: (...data) => logs.push(["error", ...data]),
    },
    onRequest: () => {
      throw bug;
    },
  });
  connection.start();
  const { pipe, trace } = tracedPipe(get("a"));
  connection.receive(encodeMessage(csm()));
  connection.request(pipe);
  connection.receive(encodeMessage({ ...get("b"), token: bytes(9) }));
  assertEquals(logs, [
    ["error", "Aborting a CoAP connection: handling what it sent failed", bug],
    ["warn", "Aborting the CoAP connection: Internal error"],
  ]);
  assertEquals(sent.map((m) => [m.code, text(m.payload)]).slice(-1), [
    [Code.ABORT, "Internal error"],
  ]);
  assertEquals(closes, [[
    1011,
    "Connection aborted by this side: Internal error",
  ]]);
  assertEquals(trace, [
    "exception Connection aborted by this side: Internal error",
  ]);
  // Whatever arrives afterwards is dropped without a word.
  connection.receive(encodeMessage(get("c")));
  assertEquals(logs.length, 2);
});

Deno.test("CoapConnection.reply() sends an error response without its diagnostic when the whole does not fit the peer", () => {
  const { connection, sent, feed, closes } = harness({ peerCsm: csm(64) });
  const diagnostic = "Bad Option: the request has a critical unknown option 9";
  const token = bytes(0, 0, 0, 0, 0, 0, 0, 0);
  assertEquals(
    connection.reply({
      code: Code.BAD_OPTION,
      token,
      options: [],
      payload: diagnostic,
    }),
    true,
  );
  // 2 + 8 + 1 + 56 = 67 bytes would not fit 64: sent bare.
  assertEquals(
    sent.slice(1).map((m) => [m.code, hex(m.token), m.payload.length]),
    [
      [Code.BAD_OPTION, "0000000000000000", 0],
    ],
  );
  // A success response that does not fit becomes a bare 5.00.
  assertEquals(
    connection.reply({
      code: Code.CONTENT,
      token,
      options: [],
      payload: "x".repeat(100),
    }),
    true,
  );
  assertEquals(sent.slice(2).map((m) => [m.code, m.payload.length]), [[
    Code.INTERNAL_SERVER_ERROR,
    0,
  ]]);
  // So does one that cannot be encoded at all.
  assertEquals(
    connection.reply({
      code: Code.CONTENT,
      token,
      options: [{ number: 12, value: new Uint8Array(70_000) }],
      payload: "",
    }),
    true,
  );
  assertEquals(sent.slice(3).map((m) => m.code), [Code.INTERNAL_SERVER_ERROR]);
  assertEquals([connection.state, closes], ["open", []]);
  feed(response(bytes(1), "-")); // still serving
  assertEquals(connection.state, "open");
});

Deno.test("CoapConnection.reply() aborts the connection when not even a bare response fits the peer, and sends no Abort that does not fit either", () => {
  // A CSM whose Max-Message-Size option is empty: 0 (RFC 7252 §3.2).
  const { connection, sent, closes, logs } = harness({
    peerCsm: {
      code: Code.CSM,
      token: bytes(),
      options: [{ number: 2, value: bytes() }],
      payload: bytes(),
    },
  });
  assertEquals(connection.peer.maxMessageSize, 0);
  assertEquals(
    connection.reply({
      code: Code.CONTENT,
      token: bytes(),
      options: [],
      payload: "hi",
    }),
    false,
  );
  const diagnostic =
    "Cannot answer: a 2.05 response of 5 bytes does not fit the peer's Max-Message-Size of 0";
  assertEquals(sent.length, 1, "only the CSM went out");
  assertEquals(closes, [[
    1002,
    `Connection aborted by this side: ${diagnostic}`,
  ]]);
  assertEquals(logs, [`warn Aborting the CoAP connection: ${diagnostic}`]);
  assertEquals(
    connection.reply({
      code: Code.CONTENT,
      token: bytes(),
      options: [],
      payload: "",
    }),
    false,
  );
});

Deno.test("CoapConnection.abort() cuts its diagnostic to what the peer accepts, on a character boundary", () => {
  const { connection, sent, closes } = harness({ peerCsm: csm(10) });
  connection.abort("é".repeat(20));
  // An Abort is 2 bytes, the payload marker 1: 7 bytes of room, 3 whole é.
  assertEquals(sent.slice(1).map((m) => [m.code, text(m.payload)]), [
    [Code.ABORT, "ééé"],
  ]);
  assertEquals(closes.length, 1);
});

Deno.test("CoapConnection.request() ends the pipe with an exception when the request exceeds the peer's Max-Message-Size", () => {
  const { connection, sent, feed } = harness();
  feed(csm(100));
  const { pipe, trace } = tracedPipe({
    ...get("a"),
    payload: new Uint8Array(200),
  });
  connection.request(pipe);
  assertEquals(trace, [
    "exception Cannot send a message of 206 bytes: the peer accepts at most 100",
  ]);
  assertEquals([sent.length, connection.pending], [1, 0]);
});

Deno.test("CoapConnection.request() on a closed connection ends the pipe with the close reason", () => {
  const { connection } = harness();
  connection.transportClosed(1006);
  const { pipe, trace } = tracedPipe(get("a"));
  connection.request(pipe);
  assertEquals(trace, ["exception Connection closed by the peer (1006)"]);
});

Deno.test("CoapConnection.transportClosed() before start says the connection never opened", async () => {
  const connection = new CoapConnection({ send() {}, close() {} }, {
    log: logger([]),
  });
  const { pipe, trace } = tracedPipe(get("a"));
  connection.transportClosed(1006, "");
  connection.request(pipe);
  assertEquals(trace, ["exception Connection failed before it opened (1006)"]);
  assertEquals(
    (await connection.closed).message,
    "Connection failed before it opened (1006)",
  );
  await assertRejects(
    () => connection.ready,
    ConnectionError,
    "Connection failed before it opened (1006)",
  );
});

Deno.test("CoapConnection sends an Abort with a diagnostic and closes on a text frame, malformed bytes or an oversized message", () => {
  const cases: [Uint8Array | string, string, number][] = [
    ["hello", "Text frame received", 1003],
    [
      bytes(0x0f, 0x01),
      "Malformed message: token length 15 is reserved (at most 8)",
      1007,
    ],
    [
      new Uint8Array(1153),
      "Message of 1153 bytes exceeds the Max-Message-Size of 1152",
      1009,
    ],
    [bytes(0x00, 0x20), "Reserved code 1.00 received", 1002],
    [bytes(0x00, 0xe9), "Unknown signaling code 7.09", 1002],
  ];
  for (const [input, diagnostic, closeCode] of cases) {
    const { connection, sent, closes } = harness();
    const { pipe, trace } = tracedPipe(get("a"));
    connection.request(pipe);
    connection.receive(input);
    const abort = sent.at(-1)!;
    assertEquals([abort.code, text(abort.payload)], [Code.ABORT, diagnostic]);
    assertEquals(closes.length, 1);
    assertEquals(closes[0][0], closeCode);
    assertStringIncludes(closes[0][1], diagnostic);
    assertEquals(trace, [
      `exception Connection aborted by this side: ${diagnostic}`,
    ]);
    assertEquals([connection.state, connection.pending], ["closed", 0]);
  }
});

Deno.test("CoapConnection closes on Release and on Abort from the peer, ending open pipes", () => {
  for (
    const [code, payload, reason] of [
      [Code.RELEASE, "", "Connection released by the peer"],
      [Code.ABORT, "too bad", "Connection aborted by the peer: too bad"],
    ] as const
  ) {
    const { connection, feed, closes, sent } = harness();
    const { pipe, trace } = tracedPipe(get("a"));
    connection.request(pipe);
    const before = sent.length;
    feed({ code, token: bytes(), options: [], payload: utf8(payload) });
    assertEquals(trace, [`exception ${reason}`]);
    assertEquals(closes, [[1000, reason]]);
    assertEquals(sent.length, before, "nothing is sent back");
  }
});

Deno.test("CoapConnection aborts on an unknown critical option in a Ping", () => {
  const { sent, feed } = harness();
  feed({
    code: Code.PING,
    token: bytes(),
    options: [{ number: 9, value: bytes() }],
    payload: bytes(),
  });
  assertEquals(text(sent.at(-1)!.payload), "Unknown critical option 9 in 7.02");
});

Deno.test("CoapConnection.release() sends a Release, closes with 1000, and ends open pipes", async () => {
  const { connection, sent, closes } = harness();
  const { pipe, trace } = tracedPipe(get("a"));
  connection.request(pipe);
  connection.release();
  assertEquals(sent.at(-1)!.code, Code.RELEASE);
  assertEquals(closes, [[1000, "Connection released by this side"]]);
  assertEquals(trace, ["exception Connection released by this side"]);
  assertEquals(
    (await connection.closed).message,
    "Connection released by this side",
  );
  connection.release();
  assertEquals(closes.length, 1, "a second release does nothing");
});

Deno.test("CoapConnection ends a pipe whose own callback closed the connection once that delivery is over", async () => {
  const { connection, sent, feed } = harness();
  const trace: string[] = [];
  const pipe = new Pipe<CoapMessage, CoapMessage>(get("obs", 0), logger([]));
  pipe.onEvent((event) => {
    trace.push(event.kind);
    if (event.kind === "response") connection.release();
    return true;
  });
  connection.request(pipe);
  feed(response(sent.at(-1)!.token, "1", 1));
  assertEquals(trace, ["response"]);
  await Promise.resolve();
  assertEquals(trace, ["response", "exception"]);
  assertEquals(pipe.ended, true);
});

Deno.test("CoapConnection answers requests with 4.04 when nothing serves them", () => {
  const { sent, feed } = harness();
  feed({ ...get("x"), token: bytes(1) });
  assertEquals([sent.at(-1)!.code, hex(sent.at(-1)!.token)], [
    Code.NOT_FOUND,
    "01",
  ]);
});

Deno.test("CoapConnection hands requests to onRequest", () => {
  const got: string[] = [];
  const { feed } = harness({
    onRequest: (message) =>
      got.push(text(getOption(message, Option.URI_PATH)!)),
  });
  feed(get("hello"));
  assertEquals(got, ["hello"]);
});

Deno.test("CoapConnection poke on a request's pipe sends a Ping", () => {
  const { connection, sent } = harness();
  const { pipe } = tracedPipe(get("a"));
  connection.request(pipe);
  pipe.poke();
  assertEquals(sent.at(-1)!.code, Code.PING);
});

Deno.test("CoapConnection pokes share the Ping in flight, and onPong reports each Pong's round-trip time", async () => {
  const rtts: number[] = [];
  const { connection, sent, feed, clock } = harness({
    onPong: (rtt) => rtts.push(rtt),
  });
  const a = tracedPipe(get("obs", 0));
  const b = tracedPipe(get("other", 0));
  connection.request(a.pipe);
  connection.request(b.pipe);
  const before = sent.length;
  a.pipe.poke();
  b.pipe.poke();
  a.pipe.poke();
  const pings = sent.slice(before);
  assertEquals(pings.map((m) => m.code), [Code.PING]);
  clock.advance(7);
  feed({
    code: Code.PONG,
    token: pings[0].token,
    options: [],
    payload: bytes(),
  });
  await Promise.resolve();
  await Promise.resolve();
  // Answered: the next poke sends a new Ping; an explicit ping() reports too.
  b.pipe.poke();
  const rtt = connection.ping();
  const next = sent.slice(before + 1);
  assertEquals(next.map((m) => m.code), [Code.PING, Code.PING]);
  clock.advance(3);
  feed({
    code: Code.PONG,
    token: next[1].token,
    options: [],
    payload: bytes(),
  });
  feed({
    code: Code.PONG,
    token: next[0].token,
    options: [],
    payload: bytes(),
  });
  assertEquals(await rtt, 3);
  assertEquals(rtts, [7, 3, 3]);
  assertEquals([a.trace, b.trace], [[], []]);
});

Deno.test("CoapConnection logs an onPong handler that throws and goes on", async () => {
  const { connection, sent, feed, logs } = harness({
    onPong: () => {
      throw new Error("boom");
    },
  });
  const rtt = connection.ping();
  feed({
    code: Code.PONG,
    token: sent.at(-1)!.token,
    options: [],
    payload: bytes(),
  });
  assertEquals(await rtt, 0);
  assertEquals(logs, ["error A connection's pong handler failed"]);
  assertEquals(connection.state, "open");
});

Deno.test("CoapConnection rejects bad options at construction", () => {
  const transport = { send() {}, close() {} };
  for (
    const options of [
      { maxMessageSize: 10 },
      { maxMessageSize: 1.5 },
      { pingTimeout: 0 },
      { maxHeldMessages: 0 },
      { maxIdleMessagesPerSecond: 0 },
      { maxIdleMessagesPerSecond: 2.5 },
      { logLinesPerMinute: 0 },
    ]
  ) {
    let error: unknown;
    try {
      new CoapConnection(transport, options);
    } catch (e) {
      error = e;
    }
    assertEquals(error instanceof RangeError, true, JSON.stringify(options));
  }
});
