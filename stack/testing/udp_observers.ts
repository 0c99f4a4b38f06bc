// The observers for `bench:udp`'s scale figure, in a process of their own
// (Bun or Node.js), on 127.0.0.1 only and bounded in time:
//   bun|node udp_observers.mjs PORT PEERS PER_PEER
// PEERS UDP sockets each register PER_PEER observations of /state (tokens
// 1..PER_PEER), after a first GET whose offered Echo value they carry, so
// that the server knows their addresses (RFC 9175). Registrations keep at
// most 200 in flight (what a loopback socket's
// default buffer holds) and are sent again after 2 s unanswered, 5 times at
// most. Then the server's RSS (GET /rss), then one change (POST /change),
// and the time until every observation's notification of it arrived (CON
// notifications are acknowledged), 10 s at most, and the server's own count
// of the time until it had sent the last (GET /fanout). Prints one JSON
// line.

import { text } from "../message.ts";
import { decodeDatagram } from "../udp.ts";
import { openPeerSocket, type PeerSocket } from "./udp_peer_socket.ts";

declare const process: { argv: string[] };
const [port, peers, perPeer] = (globalThis.Deno?.args ?? process.argv.slice(2))
  .map(Number);
const WINDOW = 200;

function header(bytes: Uint8Array) {
  const tkl = bytes[0] & 0x0f;
  return {
    type: (bytes[0] >> 4) & 3,
    code: bytes[1],
    id: (bytes[2] << 8) | bytes[3],
    token: bytes[4 + tkl - 1] ?? 0, // our tokens are one byte
    tkl,
  };
}

/** Option values by number, and the payload, as the stack decodes them. */
function parse(bytes: Uint8Array) {
  const { message } = decodeDatagram(bytes);
  const options = new Map<number, Uint8Array>(
    message.options.map((option) => [option.number, option.value]),
  );
  return { options, payload: text(message.payload) };
}

/** A CON request: code, message ID, a one-byte token, options in order. */
function request(
  code: number,
  id: number,
  token: number,
  options: [number, Uint8Array][],
): Uint8Array {
  const parts: number[] = [0x41, code, id >> 8, id & 0xff, token];
  let previous = 0;
  for (const [number, value] of options) {
    const delta = number - previous;
    previous = number;
    const d = delta < 13 ? delta : delta < 269 ? 13 : 14;
    const l = value.length < 13 ? value.length : 13;
    parts.push((d << 4) | l);
    if (d === 13) parts.push(delta - 13);
    if (d === 14) parts.push((delta - 269) >> 8, (delta - 269) & 0xff);
    if (l === 13) parts.push(value.length - 13);
    parts.push(...value);
  }
  return new Uint8Array(parts);
}

const OBSERVE = 6, URI_PATH = 11, ECHO = 252;
const path = (segment: string): [number, Uint8Array] => [
  URI_PATH,
  new TextEncoder().encode(segment),
];
type Socket = PeerSocket;
const open = (onMessage: (bytes: Uint8Array) => void) =>
  openPeerSocket(port, onMessage);

const target = (socket: Socket, bytes: Uint8Array) => socket.send(bytes);

/** The change's notification: a payload of "state 1", read as bytes. */
const CHANGED = new TextEncoder().encode("state 1");
function changed(message: Uint8Array): boolean {
  const at = message.length - CHANGED.length;
  if (at < 5 || message[at - 1] !== 0xff) return false;
  for (let i = 0; i < CHANGED.length; i++) {
    if (message[at + i] !== CHANGED[i]) return false;
  }
  return true;
}

interface Peer {
  socket: Socket;
  /** Also told of every message, while set (ask()). */
  extra?: (message: Uint8Array) => void;
  echo?: Uint8Array;
  nextId: number;
  waiting: Map<number, { bytes: Uint8Array; at: number; tries: number }>;
  registered: Set<number>;
}

let phase: "echo" | "register" | "change" = "echo";
let answered = 0, registered = 0, notified = 0, lost = 0;
let changeSent = 0, lastNotified = 0;
let inFlight = 0;
const all: Peer[] = [];

function send(peer: Peer, bytes: Uint8Array, id: number) {
  peer.waiting.set(id, { bytes, at: performance.now(), tries: 1 });
  inFlight++;
  target(peer.socket, bytes);
}

for (let p = 0; p < peers; p++) {
  const peer: Peer = {
    socket: undefined as unknown as Socket,
    nextId: p * 7,
    waiting: new Map(),
    registered: new Set(),
  };
  const socket = peer.socket = await open((message: Uint8Array) => {
    peer.extra?.(message);
    const h = header(message);
    if (h.type === 0 || h.type === 1) {
      // A notification; a CON one is acknowledged.
      if (h.type === 0) {
        target(socket, new Uint8Array([0x60, 0, h.id >> 8, h.id & 0xff]));
      }
      if (phase === "change" && changed(message)) {
        notified++;
        lastNotified = performance.now();
      }
      return;
    }
    if (h.type !== 2 || h.code === 0 || !peer.waiting.delete(h.id)) return;
    inFlight--;
    const { options } = parse(message);
    if (phase === "echo") {
      peer.echo = options.get(ECHO)?.slice();
      answered++;
    } else if (options.has(OBSERVE) && !peer.registered.has(h.token)) {
      peer.registered.add(h.token);
      registered++;
    }
  });
  all.push(peer);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resends what waited 2 s; gives up after 5 tries. */
function sweep() {
  const now = performance.now();
  for (const peer of all) {
    for (const [id, entry] of peer.waiting) {
      if (now - entry.at < 2000) continue;
      if (entry.tries >= 5) {
        peer.waiting.delete(id);
        inFlight--;
        lost++;
        continue;
      }
      entry.tries++;
      entry.at = now;
      target(peer.socket, entry.bytes);
    }
  }
}

async function paced(jobs: (() => void)[], deadline: number) {
  for (const job of jobs) {
    while (inFlight >= WINDOW && performance.now() < deadline) {
      await sleep(5);
      sweep();
    }
    job();
  }
  while (inFlight > 0 && performance.now() < deadline) {
    await sleep(20);
    sweep();
  }
}

const started = performance.now();
await paced(
  all.map((peer) => () => {
    const id = peer.nextId++ & 0xffff;
    send(peer, request(1, id, 0, [path("state")]), id);
  }),
  started + 60_000,
);
phase = "register";
const jobs: (() => void)[] = [];
for (let t = 1; t <= perPeer; t++) {
  for (const peer of all) {
    jobs.push(() => {
      const id = peer.nextId++ & 0xffff;
      const options: [number, Uint8Array][] = [
        [OBSERVE, new Uint8Array()],
        path("state"),
      ];
      if (peer.echo !== undefined) options.push([ECHO, peer.echo]);
      send(peer, request(1, id, t, options), id);
    });
  }
}
await paced(jobs, performance.now() + 120_000);
const registerSeconds = (performance.now() - started) / 1000;

/** One request from the first peer; its payload. */
async function ask(code: number, segment: string): Promise<string> {
  const peer = all[0];
  const id = peer.nextId++ & 0xffff;
  const bytes = request(code, id, 200, [path(segment)]);
  let payload = "";
  const listener = (message: Uint8Array) => {
    const h = header(message);
    if (h.type === 2 && h.id === id) payload = parse(message).payload || "-";
  };
  peer.extra = listener;
  target(peer.socket, bytes);
  for (let i = 0; i < 500 && payload === ""; i++) await sleep(10);
  peer.extra = undefined;
  return payload;
}
const [rss, count, unverified] = (await ask(1, "rss")).split(" ").map(
  Number,
);
phase = "change";
const expected = registered;
changeSent = performance.now();
await ask(2, "change");
const deadline = changeSent + 10_000;
while (notified < expected && performance.now() < deadline) await sleep(5);
const fanOutMs = notified === 0 ? NaN : lastNotified - changeSent;
const [sentMs, cpuMs] = (await ask(1, "fanout")).split(" ").map(Number);
for (const peer of all) peer.socket.close();
console.log(JSON.stringify({
  peers,
  answered,
  registered,
  observations: count,
  unverified,
  lost,
  registerSeconds,
  rss,
  notified,
  fanOutMs,
  sentMs,
  cpuMs,
}));
// Nothing is left open: the process ends by itself, once its line is
// written (process.exit() could end Bun before a piped stdout was).
