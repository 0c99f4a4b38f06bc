// What the fuzzer drives: the codec, a client connection fed by a hostile
// server, and the whole server over an in-memory socket pair (no network,
// no real timers). Each target returns the defects it saw in one input,
// in words; an empty list is a pass.

import type { Logger } from "@coap/pipe";
import { CoapConnection } from "../../connection.ts";
import {
  CoapFormatError,
  type CoapMessage,
  Code,
  codeKind,
  decodeMessage,
  encodeMessage,
  hex,
  Option,
  tokenKey,
} from "../../message.ts";
import { Pipe } from "@coap/pipe";
import {
  CoapError,
  CoapServer,
  Observers,
  type Resources,
} from "../../server.ts";
import { socketPair } from "../socket_pair.ts";
import { CoapClient } from "../../client.ts";
import {
  type IncomingRequest,
  readRequest,
  type ResponseInit,
} from "../../exchange.ts";
import { CoapProxy } from "../../proxy.ts";
import { attachWebSocket } from "../../websocket.ts";
import { tcpFrame, TcpFrameSocket } from "../../tcp.ts";
import { type DeviceDatagram, mutate } from "./generators.ts";
import {
  CoapUdpEndpoint,
  decodeDatagram,
  encodeDatagram,
  servePeers,
  type UdpPeerSocket,
} from "../../udp.ts";

/** What reached the platform since `escaped` had `before` entries, as defects. */
export function escapedSince(before: number): string[] {
  return escaped.slice(before).map((e) =>
    `escaped to the platform: ${(e as Error)?.stack ?? e}`
  );
}

/** A logger that keeps nothing: the fuzzer judges behaviour, not lines. */
export const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Errors that reached the platform (uncaught, or rejections unhandled). */
export const escaped: unknown[] = [];
let watching = false;

/** Starts collecting what escapes, instead of letting it end the process. */
export function watchEscapes(): void {
  if (watching) return;
  watching = true;
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    escaped.push((event as ErrorEvent).error);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    escaped.push(event.reason);
  });
}

/**
 * The codec: any bytes decode or fail with a CoapFormatError, never
 * anything else; what decodes encodes back to bytes that decode to the
 * same message.
 */
export function codec(bytes: Uint8Array): string[] {
  let message: CoapMessage;
  try {
    message = decodeMessage(bytes);
  } catch (error) {
    return error instanceof CoapFormatError
      ? []
      : [`decodeMessage threw ${error} for ${hex(bytes)}`];
  }
  let again: CoapMessage;
  try {
    again = decodeMessage(encodeMessage(message));
  } catch (error) {
    return [`${hex(bytes)} decoded, but did not encode back: ${error}`];
  }
  const same = (a: CoapMessage, b: CoapMessage) =>
    a.code === b.code && hex(a.token) === hex(b.token) &&
    hex(a.payload) === hex(b.payload) &&
    JSON.stringify(a.options.map((o) => [o.number, hex(o.value)])) ===
      JSON.stringify(
        [...b.options].sort((x, y) => x.number - y.number).map((
          o,
        ) => [o.number, hex(o.value)]),
      );
  return same(again, message) ? [] : [`${hex(bytes)} did not round-trip`];
}

/** A clock whose timers run when the fuzzer says. */
class StepClock {
  time = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now = (): number => this.time;
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.#timers.delete(handle as number);
  };
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves time on, running what is due, at most `rounds` times. */
  async advance(ms: number, rounds = 50): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      this.time += ms;
      const due = [...this.#timers].filter(([, t]) => t.at <= this.time);
      if (due.length === 0 && i > 0) break;
      for (const [id, timer] of due) {
        this.#timers.delete(id);
        timer.fn();
      }
      await settle();
    }
  }
}

async function settle(rounds = 40): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/**
 * A client connection against a hostile server: it has three requests
 * open (one an observation) and takes whatever `frames` hold. Nothing
 * thrown; every frame it sends decodes and fits what the server
 * announced; when its transport closes, every pipe has ended.
 */
export function client(frames: Uint8Array[]): string[] {
  const defects: string[] = [];
  // The transport is called only after the connection below exists.
  const transport = {
    send(bytes: Uint8Array) {
      try {
        decodeMessage(bytes);
      } catch (error) {
        defects.push(`the client sent bytes that do not decode: ${error}`);
      }
      const limit = connection.peer.maxMessageSize;
      if (bytes.length > limit && connection.state !== "new") {
        // An Abort is cut to fit; nothing else may be over.
        defects.push(
          `the client sent ${bytes.length} bytes to a peer that accepts ${limit}`,
        );
      }
    },
    close() {},
  };
  const connection: CoapConnection = new CoapConnection(transport, {
    log: quiet,
  });
  connection.start();
  const ended: boolean[] = [];
  const open = (options: CoapMessage["options"]) => {
    const pipe = new Pipe<CoapMessage, CoapMessage>({
      code: 1,
      token: new Uint8Array(0),
      options,
      payload: new Uint8Array(0),
    }, quiet);
    const index = ended.push(false) - 1;
    pipe.onEvent((event) => {
      if (event.isLast) ended[index] = true;
      return !event.isLast;
    });
    return pipe;
  };
  const pipes = [
    open([]),
    open([{ number: 6, value: new Uint8Array(0) }]),
    open([{ number: 11, value: new TextEncoder().encode("x") }]),
  ];
  for (const bytes of frames) {
    // The first request goes out once the peer could have said its size.
    try {
      connection.receive(bytes);
    } catch (error) {
      defects.push(`receive() threw ${error}`);
    }
    if (pipes.length > 0 && connection.state === "open") {
      for (const pipe of pipes.splice(0)) connection.request(pipe);
    }
  }
  connection.transportClosed(1006);
  // Pipes never requested end here too: the test opened them.
  for (const pipe of pipes) pipe.addException(new Error("never sent"));
  if (ended.some((e) => !e)) {
    defects.push(`pipes still open after the connection closed: ${ended}`);
  }
  return defects;
}

/** The resources the fuzzed server serves: every kind of handler. */
export function fuzzResources(): Resources {
  const table = new Observers();
  let value = 0;
  return {
    "/": { GET: () => ({ payload: "hello" }) },
    "/echo": {
      POST: (request) => ({ payload: request.payload }),
      PUT: (request) => ({ code: "2.04", payload: request.payload }),
    },
    "/big": { GET: () => ({ payload: "0123456789abcdef".repeat(300) }) },
    "/obs": {
      observable: table,
      GET: () => ({ payload: String(value) }),
      PUT: () => {
        value++;
        table.updated();
        return { code: "2.04" };
      },
    },
    "/task": {
      observable: true,
      GET: async (request, pipe, signal) => {
        if (request.observe !== 0) return { payload: "once" };
        pipe.addResponse({ payload: "first" });
        await Promise.resolve();
        if (!signal.aborted) pipe.addResponse({ payload: "second" });
        // The signal may have aborted already (the first notification can
        // end the connection): then there is no abort event to wait for.
        if (!signal.aborted) {
          await new Promise((resolve) =>
            signal.addEventListener("abort", resolve, { once: true })
          );
        }
      },
    },
    "/fail": {
      GET: () => {
        throw new Error("resource failed");
      },
    },
    "/bad": { GET: () => ({ code: "9.99" }) },
    "/async": {
      GET: async () => {
        await Promise.resolve();
        throw new CoapError("4.03", "Forbidden");
      },
    },
  };
}

/**
 * The whole server over an in-memory socket pair: `frames` go to it in
 * order, with the flow's timers run between them. Nothing escapes; every
 * frame the server sends decodes and fits the peer's Max-Message-Size (an
 * Abort aside, which is cut to fit or not sent); unless the connection
 * closed, every request got an answer; once the peer goes, nothing of the
 * connection is left (exchanges, observations, drivers, held bytes).
 */
export async function server(frames: Uint8Array[]): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const clock = new StepClock();
  const coap = new CoapServer(fuzzResources(), { log: quiet });
  const [near, far] = socketPair();
  const send = far.send.bind(far);
  const connection = coap.accept(far, { clock });
  far.send = (data: Uint8Array | string) => {
    if (typeof data === "string") {
      defects.push("the server sent a text frame");
    } else {
      let message: CoapMessage | undefined;
      try {
        message = decodeMessage(data);
      } catch (error) {
        defects.push(`the server sent bytes that do not decode: ${error}`);
      }
      const limit = connection.peer.maxMessageSize;
      if (data.length > limit && message?.code !== 0xe1) {
        defects.push(
          `the server sent a ${
            message?.code.toString(16)
          } of ${data.length} bytes to a peer that accepts ${limit}`,
        );
      }
    }
    send(data);
  };
  const unanswered = new Set<number | string>();
  near.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    if (!(data instanceof ArrayBuffer)) return;
    try {
      const message = decodeMessage(new Uint8Array(data));
      if (codeKind(message.code) === "response") {
        unanswered.delete(tokenKey(message.token));
      }
    } catch { /* reported by the sender's check */ }
  });
  for (const bytes of frames) {
    try {
      const message = decodeMessage(bytes);
      if (codeKind(message.code) === "request" && !asksNoResponse(message)) {
        unanswered.add(tokenKey(message.token));
      }
    } catch { /* malformed: the server aborts */ }
    if (near.readyState !== 1) break;
    near.send(bytes);
    await settle();
    await clock.advance(5, 5);
  }
  await clock.advance(10);
  if (connection.state !== "closed" && unanswered.size > 0) {
    defects.push(
      `requests on tokens ${
        [...unanswered].join(", ")
      } were not answered and the connection is open`,
    );
  }
  near.close();
  await settle();
  await clock.advance(10);
  const left = [
    coap.connections,
    coap.exchanges,
    coap.observations,
    coap.drivers,
    coap.heldBytes,
  ];
  if (left.some((n) => n !== 0)) {
    defects.push(
      `left after the peer went (connections, exchanges, observations, drivers, held bytes): ${left}`,
    );
  }
  defects.push(...escapedSince(before));
  return defects;
}

/**
 * Whether a request asks not to be answered for some class (a well-formed
 * No-Response, RFC 7967, the first of them): it may go unanswered.
 */
/**
 * Whether a request asks not to be answered for some classes (No-Response,
 * RFC 7967): whether it is owed an answer is then not the fuzzer's to say.
 */
export function asksNoResponse(message: CoapMessage): boolean {
  const option = message.options.find((o) => o.number === Option.NO_RESPONSE);
  return option !== undefined && option.value.length === 1 &&
    option.value[0] !== 0;
}

/** One datagram of the UDP target: from which source, and its bytes. */
export interface UdpInput {
  /** Index of the source address (a few hosts, a few ports each). */
  from: number;
  bytes: Uint8Array;
  /** Milliseconds the clock moves on after it. */
  wait: number;
}

/**
 * The whole server over CoAP over UDP in memory: datagrams from several
 * sources (some spoofed, none answering) go to one endpoint serving the
 * fuzzing resources as serveCoapUdp does, with a stepped clock. Nothing
 * escapes or reaches the endpoint's last guard; every datagram it sends
 * decodes and fits maxMessageSize; to a source it never verified it sends
 * at most three times what that source sent, one small datagram and the
 * 4.01s with Echo aside; once the sources fall silent and time passes,
 * nothing is left (peers, connections, observations, timers).
 */
export async function udp(inputs: UdpInput[]): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const clock = new StepClock();
  const coap = new CoapServer(fuzzResources(), { log: quiet });
  const guard: string[] = [];
  const log: Logger = {
    ...quiet,
    warn: (line: unknown) => {
      if (
        /forgot that peer|internal error/.test(String(line))
      ) {
        guard.push(String(line));
      }
    },
    error: (line: unknown) => guard.push(String(line)),
  };
  const received = new Map<string, number>();
  const sent = new Map<string, number>();
  const echoes = new Map<string, number>();
  const sockets = new Map<string, UdpPeerSocket[]>();
  const accept = servePeers(coap);
  const endpoint = new CoapUdpEndpoint((bytes, to) => {
    const key = `${to.hostname}:${to.port}`;
    let datagram;
    try {
      datagram = decodeDatagram(bytes);
    } catch (error) {
      defects.push(
        `the endpoint sent a datagram that does not decode: ${error}`,
      );
    }
    if (bytes.length > endpoint.options.maxMessageSize) {
      defects.push(`the endpoint sent ${bytes.length} bytes to ${key}`);
    }
    if (datagram?.message.code === 0x81) {
      echoes.set(key, (echoes.get(key) ?? 0) + bytes.length);
    }
    if (bytes.length > 4) sent.set(key, (sent.get(key) ?? 0) + bytes.length);
  }, {
    clock,
    random: () => 0.5,
    log,
    maxUnverifiedPeers: 4,
    maxPeers: 8,
    onPeer: (socket, address) => {
      const key = `${address.hostname}:${address.port}`;
      sockets.set(key, [...(sockets.get(key) ?? []), socket]);
      accept(socket, address);
    },
  });
  for (const { from, bytes, wait } of inputs) {
    const address = { hostname: `10.7.0.${from % 3}`, port: 5000 + from };
    const key = `${address.hostname}:${address.port}`;
    received.set(key, (received.get(key) ?? 0) + bytes.length);
    endpoint.receive(bytes, address);
    await settle();
    await clock.advance(wait, 3);
  }
  for (const [key, bytes] of sent) {
    if (sockets.get(key)?.some((s) => s.verified)) continue;
    const allowed = 3 * (received.get(key) ?? 0) + 64 + (echoes.get(key) ?? 0);
    if (bytes > allowed) {
      defects.push(
        `${bytes} bytes went to ${key}, which never answered, for ${
          received.get(key)
        } received`,
      );
    }
  }
  // The sources fall silent: everything they opened ends by itself.
  for (let i = 0; i < 40; i++) await clock.advance(10_000, 2);
  const left = [
    endpoint.peers,
    coap.connections,
    coap.observations,
    coap.exchanges,
  ];
  if (left.some((n) => n !== 0)) {
    defects.push(
      `left once the sources fell silent (peers, connections, observations, exchanges): ${left}`,
    );
  }
  endpoint.close();
  await settle();
  if (clock.pending !== 0) {
    defects.push(`${clock.pending} timers left after the endpoint closed`);
  }
  if (guard.length > 0) defects.push(...guard.map((l) => `logged: ${l}`));
  defects.push(...escapedSince(before));
  return defects;
}

/**
 * The proxy with a hostile device behind it: three requesters ask for
 * resources of one UDP device through a {@linkcode CoapProxy} (one a large
 * body, one an observation), and the device answers with what `datagrams`
 * hold, meeting the message IDs and tokens the proxy sent, with a stepped
 * clock. Nothing escapes; every requester ends with one final answer
 * within the proxy's timeout, a response code, and none of the options no
 * response carries; what the proxy holds of block-wise bodies stays within
 * its budget; once the requesters are answered and the proxy closed, no
 * timer is left.
 */
export async function proxy(datagrams: DeviceDatagram[]): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const clock = new StepClock();
  const device = { hostname: "10.9.9.9", port: 5683 };
  const sent: { id: number; token?: Uint8Array }[] = [];
  let endpoint: CoapUdpEndpoint | undefined;
  const budgetMax = 64 * 1024;
  const coapProxy = new CoapProxy({
    allow: ["10.9.9.9:5683"],
    timeout: 3000,
    maxReassemblyBytes: budgetMax,
    clock,
    log: quiet,
    connect: async (_origin, budget) => {
      const udp = endpoint = new CoapUdpEndpoint((bytes) => {
        try {
          const { messageId, message } = decodeDatagram(bytes);
          sent.push({
            id: messageId,
            ...(message.code === 0 ? {} : { token: message.token }),
          });
        } catch (error) {
          defects.push(
            `the proxy sent a datagram that does not decode: ${error}`,
          );
        }
      }, { clock, random: () => 0.5, log: quiet });
      const connection = attachWebSocket(udp.connect(device), {
        log: quiet,
        clock,
      });
      await connection.ready;
      return new CoapClient(connection, {
        log: quiet,
        reassemblyBudget: budget,
      });
    },
  });
  type Outcome = { code?: string; options?: string; threw?: string };
  const outcomes: (Outcome | undefined)[] = [];
  const ask = (path: string, observe: boolean) => {
    const request = readRequest({
      code: Code.GET,
      token: new Uint8Array([outcomes.length]),
      options: [
        ...(observe
          ? [{ number: Option.OBSERVE, value: new Uint8Array(0) }]
          : []),
        {
          number: Option.PROXY_URI,
          value: new TextEncoder().encode(`coap://10.9.9.9:5683/${path}`),
        },
      ],
      payload: new Uint8Array(0),
    }, true);
    const pipe = new Pipe<IncomingRequest, ResponseInit>(request, quiet);
    const index = outcomes.push(undefined) - 1;
    const check = (init: ResponseInit) => {
      const options = (init.options ?? []).filter((o) =>
        [1, 3, 5, 7, 11, 15, 17, 35, 39, 252].includes(o.number) ||
        (o.number === Option.ETAG && (o.value.length < 1 || o.value.length > 8))
      );
      if (options.length > 0) {
        defects.push(
          `the proxy passed on options no response carries: ${
            options.map((o) => o.number)
          }`,
        );
      }
      if (!/^[245]\.\d\d$/.test(init.code ?? "2.05")) {
        defects.push(`the proxy answered with code ${init.code}`);
      }
    };
    const off = pipe.onEvent((event) => {
      if (event.kind === "response") {
        check(event.message);
        if (event.isLast) outcomes[index] = { code: event.message.code };
      }
      return !event.isLast;
    });
    const controller = new AbortController();
    Promise.resolve(coapProxy.resource.GET!(request, pipe, controller.signal))
      .then((init) => {
        if (init !== undefined) {
          check(init as ResponseInit);
          outcomes[index] = { code: (init as ResponseInit).code ?? "2.05" };
        }
      }, (error) => {
        if (error instanceof CoapError) outcomes[index] = { code: error.code };
        else {
          outcomes[index] = { threw: String(error) };
          defects.push(`the proxy's handler threw ${error}`);
        }
      });
    return { off, controller, index };
  };
  const one = ask("a", false);
  const big = ask("big", false);
  const watch = ask("obs", true);
  await settle();
  for (const d of datagrams) {
    if (endpoint === undefined) break;
    const mid = "sent" in d.mid
      ? sent[d.mid.sent % Math.max(1, sent.length)]?.id ?? 0
      : d.mid.own;
    const withTokens = sent.filter((s) => s.token !== undefined);
    const tokenBytes = "sent" in d.token
      ? withTokens[d.token.sent % Math.max(1, withTokens.length)]?.token ??
        new Uint8Array(0)
      : d.token.own;
    let bytes: Uint8Array;
    try {
      bytes = encodeDatagram(
        d.type as 0 | 1 | 2 | 3,
        mid,
        d.code === 0 ? undefined : encodeMessage({
          code: d.code,
          token: tokenBytes,
          options: d.options,
          payload: new Uint8Array(d.payload).fill(0x61),
        }),
      );
    } catch {
      continue; // not encodable: an option out of range
    }
    bytes = d.mutations.reduce(mutate, bytes);
    endpoint.receive(bytes, device);
    await settle();
    await clock.advance(d.wait, 3);
  }
  // Past the timeout: every one-shot requester has its answer.
  for (let t = 0; t < 4000; t += 250) await clock.advance(250, 1);
  for (const { index } of [one, big]) {
    if (outcomes[index] === undefined) {
      defects.push(`requester ${index} had no answer past the proxy's timeout`);
    }
  }
  if (coapProxy.reassemblyBytes > budgetMax) {
    defects.push(`the proxy holds ${coapProxy.reassemblyBytes} bytes`);
  }
  // The observer leaves; the proxy closes; nothing is left running.
  watch.off();
  watch.controller.abort();
  await settle();
  coapProxy.close();
  await settle();
  await clock.advance(1000, 8);
  endpoint?.close();
  await settle();
  await clock.advance(300_000, 4);
  if (clock.pending !== 0) {
    defects.push(`${clock.pending} timers left after the proxy closed`);
  }
  defects.push(...escapedSince(before));
  return defects;
}

/**
 * The whole server over CoAP over TCP's framing (RFC 8323 §3.2): the
 * session's frames written to one stream as TCP frames (one that is too
 * short to be a message goes raw, as garbage), cut into reads of 1 to 97
 * bytes, fed to a `TcpFrameSocket` the server accepted. Nothing escapes;
 * what the server writes is a stream of well-framed messages that decode
 * and fit the peer's Max-Message-Size (an Abort aside); once the stream
 * ends, nothing of the connection is left.
 */
export async function tcp(frames: Uint8Array[]): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const coap = new CoapServer(fuzzResources(), { log: quiet });
  // What the server writes, read back as a peer would, as it is written.
  const reader = new TcpFrameSocket({ write() {}, end() {} }, {
    maxMessageSize: 1 << 20,
    onAbort: (reason) =>
      defects.push(`the server wrote a stream that does not frame: ${reason}`),
  });
  const socket = new TcpFrameSocket({
    write: (bytes) => reader.receive(bytes),
    end() {},
  }, { maxMessageSize: coap.maxMessageSize });
  const connection = coap.accept(socket);
  reader.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data as Uint8Array;
    try {
      const message = decodeMessage(data);
      const limit = connection.peer.maxMessageSize;
      if (
        message.code !== Code.CSM && message.code !== Code.ABORT &&
        data.length > limit
      ) {
        defects.push(
          `the server wrote a ${
            message.code.toString(16)
          } of ${data.length} bytes to a peer that accepts ${limit}`,
        );
      }
    } catch (error) {
      defects.push(`the server wrote a message that does not decode: ${error}`);
    }
  });
  const parts = frames.map((frame) =>
    frame.length >= 2 + (frame[0] & 0x0f) ? tcpFrame(frame) : frame
  );
  const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    stream.set(part, offset);
    offset += part.length;
  }
  let at = 0;
  for (let i = 0; at < stream.length && socket.readyState === 1; i++) {
    const size = 1 + ((frames[i % frames.length]?.length ?? 1) * 31 + i) % 97;
    socket.receive(stream.subarray(at, at + size));
    at += size;
    await settle();
  }
  socket.streamClosed();
  await settle();
  defects.push(...leftOf(coap, "the stream ended"), ...escapedSince(before));
  return defects;
}

/**
 * What a server still holds once its peer went (connections, exchanges,
 * observations, drivers, held and upload bytes), as a defect, or none.
 */
export function leftOf(coap: CoapServer, after: string): string[] {
  const left = [
    coap.connections,
    coap.exchanges,
    coap.observations,
    coap.drivers,
    coap.heldBytes,
    coap.uploadBytes,
  ];
  return left.some((n) => n !== 0)
    ? [
      `left after ${after} (connections, exchanges, observations, drivers, held bytes, upload bytes): ${left}`,
    ]
    : [];
}
