// The load probe: a greedy, a stalled and a flooding client against our
// server (and against the aiocoap peer when it is present), over raw
// sockets on 127.0.0.1, each server in its own process, reading that
// process's RSS:
//   deno task bench:load [--scale F] [--only ours|aiocoap] [--check]
//     [--scenario N] [--transport ws|deno] [--limits NAME=VALUE,...]
// 1. one connection registers 20,000 observations of /counter and reads;
// 2. 2,000 observations, then the reader stops for 30 s;
// 3. 200,000 pipelined GET / whose responses are never read, 20 s.
// Throughout, another client opens a connection and GETs / every 200 ms:
// the time from connecting to its response is what a bystander waits.
// --scale shrinks counts and durations (CI runs 0.1); --check exits 1 when
// our server misses a goal that does not depend on timing noise: every
// bystander answered, /observers back to 0 after the greedy client leaves,
// RSS growth under twice the full-scale goal (80, 40, 100 MB). The check
// catches growth without bound; the goals themselves (40, 20, 50 MB, and a
// bystander within 250 ms) are judged at full scale and printed as met or
// MISSED.
// Every loop here is bounded in count and time, and stops by itself.

import { parseArgs } from "./args.ts";
import { CSM, frames, get, RawWebSocket, read } from "./raw_ws.ts";
import {
  freePort,
  ourServerCommand,
  PEERS,
  requirePeer,
  spawn,
} from "./peers.ts";
import { rss } from "./proc.ts";
import { text } from "../message.ts";

const options = parseArgs(Deno.args, {
  scale: 1,
  only: "",
  scenario: 0,
  transport: "",
  limits: "",
  check: false,
});
const scale = options.scale;
const n = (count: number) => Math.max(10, Math.round(count * scale));
const seconds = (s: number) => Math.max(2, s * Math.min(1, scale * 2));

interface Server {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  /** What the server printed. */
  readonly lines: string[];
  stop(): Promise<void>;
}

async function startOurs(): Promise<Server> {
  const port = freePort();
  const args = await ourServerCommand();
  const limits = options.limits.split(",").filter(Boolean);
  const child = spawn(Deno.execPath(), [
    ...args,
    "--port",
    String(port),
    ...limits.flatMap((limit) => ["--limit", limit]),
    ...(options.transport === "" ? [] : ["--transport", options.transport]),
  ], port);
  await child.waitFor(/^listening on/);
  return {
    name: "our server",
    port,
    pid: child.pid,
    lines: child.lines,
    stop: child.stop,
  };
}

async function startAiocoap(): Promise<Server> {
  const port = freePort();
  const child = spawn(
    "/usr/bin/python3",
    [
      `${PEERS}/aiocoap_peer.py`,
      "--port",
      String(port),
    ],
    port,
    { PYTHONUNBUFFERED: "1" },
  );
  await child.waitFor(new RegExp(`^ready on ${port}$`));
  return {
    name: "aiocoap peer",
    port,
    pid: child.pid,
    lines: child.lines,
    stop: child.stop,
  };
}

/** Opens a connection, GETs `path`, and returns the payload and the time. */
async function bystander(
  port: number,
  path = "/",
  timeoutMs = 10_000,
): Promise<{ ms: number; payload: string | undefined }> {
  const started = performance.now();
  let socket: RawWebSocket | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const answer = new Promise<string>((resolve) => {
      RawWebSocket.connect(port, (payload) => {
        const message = read(payload);
        if (message !== undefined && message.token[0] === 0x2a) {
          resolve(text(message.payload));
        }
      }).then(async (s) => {
        socket = s;
        await s.send([CSM, get(0x2a, path)]);
      }, () => {});
    });
    const payload = await Promise.race([
      answer,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
      }),
    ]);
    return { ms: performance.now() - started, payload };
  } finally {
    clearTimeout(timer);
    socket?.close();
  }
}

/** Runs the bystander every 200 ms until stopped; collects its times. */
function watch(port: number) {
  const times: number[] = [];
  let failures = 0, stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { ms, payload } = await bystander(port, "/", 5000);
      if (payload === undefined) failures++;
      else times.push(ms);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      times.sort((a, b) => a - b);
      return {
        count: times.length,
        failures,
        p50: times[Math.floor(times.length / 2)] ?? NaN,
        max: times.at(-1) ?? NaN,
      };
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Samples a process's RSS every 250 ms for `seconds`: the highest reading
 * and the last, each less `before`.
 */
async function sampleRss(
  pid: number,
  seconds: number,
  before: number,
): Promise<{ peak: number; growth: number }> {
  let peak = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    peak = Math.max(peak, await rss(pid));
    await sleep(250);
  }
  return { peak: peak - before, growth: await rss(pid) - before };
}

/**
 * Whether the server cut the connection: it said so (ours logs each
 * abort), or the socket ended while it was read. A socket that is not read
 * cannot see its end.
 */
function wasCut(server: Server, ended: boolean): string | undefined {
  const line = server.lines.find((l) => l.includes("Aborting the CoAP"));
  if (line !== undefined) return line.replace(/^warn: /, "");
  return ended ? "the connection ended" : undefined;
}

interface Figures {
  growth: number;
  peak: number;
  p50: number;
  max: number;
  failures: number;
  extra: string;
  ok: boolean;
}

async function greedyObserver(server: Server): Promise<Figures> {
  const count = n(20_000), duration = seconds(10);
  const messages = [CSM];
  for (let i = 1; i <= count; i++) messages.push(get(i, "/counter", true));
  const flood = frames(messages);
  await bystander(server.port);
  const before = await rss(server.pid);
  const watcher = watch(server.port);
  const socket = await RawWebSocket.connect(server.port);
  await socket.sendBytes(flood);
  const { peak, growth } = await sampleRss(server.pid, duration, before);
  const bystanders = await watcher.stop();
  const received = socket.received;
  socket.close();
  // The observations end with the connection: /observers back to 0.
  const closed = performance.now();
  let observers: string | undefined, backToZero = NaN;
  while (performance.now() - closed < 10_000) {
    observers = (await bystander(server.port, "/observers")).payload;
    if (observers === "0") {
      backToZero = performance.now() - closed;
      break;
    }
    await sleep(100);
  }
  return {
    growth,
    peak,
    ...bystanders,
    extra: `${received} messages read in ${duration} s; /observers ${
      observers === "0"
        ? `0 after ${Math.round(backToZero)} ms`
        : `still ${observers} after 10 s`
    }`,
    ok: observers === "0" && bystanders.failures === 0 && growth < 2 * 40e6,
  };
}

async function stalledReader(server: Server): Promise<Figures> {
  const count = n(2_000), duration = seconds(30);
  const messages = [CSM];
  for (let i = 1; i <= count; i++) messages.push(get(i, "/counter", true));
  const registrations = frames(messages);
  await bystander(server.port);
  const before = await rss(server.pid);
  const socket = await RawWebSocket.connect(server.port);
  await socket.sendBytes(registrations);
  // Read until every registration was answered, then stop reading.
  const deadline = performance.now() + 10_000;
  while (socket.received < count + 1 && performance.now() < deadline) {
    await sleep(20);
  }
  socket.pause();
  const watcher = watch(server.port);
  let cut = false;
  socket.ended.then(() => cut = true);
  const { peak, growth } = await sampleRss(server.pid, duration, before);
  const bystanders = await watcher.stop();
  const cutBy = wasCut(server, cut);
  socket.close();
  return {
    growth,
    peak,
    ...bystanders,
    extra: cutBy === undefined
      ? "the server kept the stalled connection"
      : `the server cut the stalled connection: ${cutBy}`,
    ok: bystanders.failures === 0 && growth < 2 * 20e6,
  };
}

async function pipelinedFlood(server: Server): Promise<Figures> {
  const count = n(200_000), duration = seconds(20);
  const messages = [CSM];
  for (let i = 1; i <= count; i++) messages.push(get(i, "/"));
  const flood = frames(messages);
  await bystander(server.port);
  const before = await rss(server.pid);
  const watcher = watch(server.port);
  const socket = await RawWebSocket.connect(server.port);
  socket.pause();
  let cut = false;
  socket.ended.then(() => cut = true);
  // The server may stop reading (or cut the connection) before all is sent.
  const sending = socket.sendBytes(flood).catch(() => {});
  const { peak, growth } = await sampleRss(server.pid, duration, before);
  const bystanders = await watcher.stop();
  const cutBy = wasCut(server, cut);
  socket.close();
  await sending;
  await sleep(3000);
  const after = await rss(server.pid) - before;
  return {
    growth,
    peak,
    ...bystanders,
    extra: `${
      cutBy === undefined
        ? "the server kept the flooding connection"
        : `the server cut it: ${cutBy}`
    }; ${mb(after)} MB above the start 3 s after it closed`,
    ok: bystanders.failures === 0 && growth < 2 * 50e6,
  };
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const ms = (t: number) => Number.isNaN(t) ? "-" : `${Math.round(t)}`;

const scenarios = [
  [`${n(20_000)} observations on one connection`, greedyObserver, 40],
  [
    `${n(2_000)} observations, reader stops ${seconds(30)} s`,
    stalledReader,
    20,
  ],
  [`${n(200_000)} pipelined GETs never read`, pipelinedFlood, 50],
] as const;

const servers: [string, () => Promise<Server>][] = [];
if (options.only !== "aiocoap") servers.push(["ours", startOurs]);
if (options.only !== "ours") {
  try {
    await requirePeer();
    servers.push(["aiocoap", startAiocoap]);
  } catch (error) {
    console.log(`(aiocoap peer left out: ${(error as Error).message})`);
  }
}

console.log(
  `scale ${scale}; the bystander connects and GETs / every 200 ms (goal: within 250 ms)`,
);
console.log(
  "scenario                                      server         RSS growth  peak    bystander p50/max ms  failed",
);
let missed = 0;
for (const [index, [label, run, goal]] of scenarios.entries()) {
  if (options.scenario !== 0 && options.scenario !== index + 1) continue;
  for (const [which, start] of servers) {
    const server = await start();
    try {
      const figures = await run(server);
      console.log(
        `${label.padEnd(46)}${server.name.padEnd(15)}${
          mb(figures.growth).padStart(7)
        } MB${mb(figures.peak).padStart(7)} MB   ${
          `${ms(figures.p50)}/${ms(figures.max)}`.padStart(12)
        }${String(figures.failures).padStart(14)}`,
      );
      console.log(
        `${"".padEnd(46)}${figures.extra}${
          which === "ours"
            ? `; goal < ${goal} MB growth, bystander < 250 ms: ${
              figures.growth < goal * 1e6 && figures.max < 250
                ? "met"
                : "MISSED"
            }`
            : ""
        }`,
      );
      if (which === "ours" && !figures.ok) missed++;
    } finally {
      await server.stop();
    }
  }
}
if (options.check && missed > 0) {
  console.error(`our server failed ${missed} load check(s)`);
  Deno.exit(1);
}
