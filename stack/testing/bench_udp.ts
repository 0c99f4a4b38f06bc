// CoAP over UDP, measured on 127.0.0.1 only, bounded in count and time:
//   deno task bench:udp [--seconds 5] [--rounds 2] [--sockets 8] [--window 8]
//     [--requests 300] [--only NAME,...] [--observations 100000]
//     [--observers 10000]
// 1. Requests per second and the server's CPU a request for every server
//    present under the same load generator, in alternating rounds (the
//    order reversed every other round, so that no server always runs
//    first): libcoap's `coap-server`, aiocoap's UDP server (the peer), our
//    `coap:server --udp-port` as the task runs it, and the demo resources
//    served by `serveCoapUdp` alone (stack/testing/udp_server.ts, bundled)
//    on Deno (on `node:dgram` and on `Deno.listenDatagram`), Node.js 20,
//    Node.js 24 (where NODE24 names it) and Bun (where BUN names it, on
//    `node:dgram` and on `Bun.udpSocket`). Beside each runtime, its bare
//    echo server (stack/testing/udp_echo.ts: a canned ACK 2.05 for every
//    CON, no stack) on the same socket API: the floor. The generator is a
//    process of its own on Bun (else Node.js), stack/testing/udp_load.ts:
//    `--sockets` UDP sockets, each keeping `--window` CON GETs of / in
//    flight (raw datagrams, so no client's own limits such as NSTART are
//    in the figure), for `--seconds` after a second's warm-up (0 leaves
//    this part out). Each
//    socket answers a 4.01 with Echo as libcoap's client does (RFC 9175),
//    so it is a verified client of ours, as it is of the others. The
//    server's CPU comes from /proc/PID/stat.
// 2. The cross-proxy's added latency: `--requests` sequential GETs of
//    libcoap's / from our client, directly over UDP and through
//    `coap:proxy` over WebSocket; p50 and p99 of each, and the difference.
// 3. One process's scale (stack/testing/udp_observe_server.ts, observed by
//    stack/testing/udp_observers.ts): `--observations` observations from
//    `--observers` UDP peers of our server on each runtime, its RSS per
//    observation and how long one change takes to reach them all.
// The load generator shares the two cores with the server it measures:
// compare the rows with each other, not with other machines.

import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { connectCoapUdp } from "../udp_node.ts";
import { parseArgs } from "./args.ts";
import { cpuMs } from "./proc.ts";
import {
  freeUdpPort,
  LIBCOAP_SERVER,
  type Running,
  spawn,
  startLibcoap,
  startOurProxy,
  startOurServer,
  startPeer,
  succeeds,
} from "./peers.ts";

const options = parseArgs(Deno.args, {
  seconds: 5,
  rounds: 2,
  sockets: 8,
  window: 8,
  requests: 300,
  only: "",
  observations: 100_000,
  observers: 10_000,
});
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const here = (file: string) => new URL(file, import.meta.url).pathname;

/** A server under test: how to start it, and where it listens. */
interface Contender {
  /** Its row's name. */
  name: string;
  /** The runtime and socket API, to pair it with its floor. */
  api: string;
  /** True for a bare echo server. */
  floor?: boolean;
  start(): Promise<{ running: Running; port: number }>;
}

/** Starts `command` with a UDP port as its first argument after `args`. */
async function startUdp(
  command: string,
  args: string[],
  tail: string[] = [],
): Promise<{ running: Running; port: number }> {
  const port = await freeUdpPort();
  const running = spawn(command, [...args, String(port), ...tail], port);
  try {
    await running.waitFor(new RegExp(`^udp on ${port}$`));
  } catch (error) {
    await running.stop();
    throw error;
  }
  return { running, port };
}

/** Whether `binary` is on the PATH (or is a path that exists). */
const present = (binary: string) =>
  succeeds("sh", ["-c", 'command -v "$0"', binary]);

// Node.js and Bun run the same sources, bundled.
const dist = await Deno.makeTempDir({ prefix: "coap-bench-udp-" });
const sources: Record<string, string> = {
  udp_server: new URL("../../examples/udp_gateway.ts", import.meta.url)
    .pathname,
  udp_echo: here("udp_echo.ts"),
  udp_load: here("udp_load.ts"),
  udp_observe_server: here("udp_observe_server.ts"),
  udp_observers: here("udp_observers.ts"),
};
for (const [name, source] of Object.entries(sources)) {
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=deno",
      source,
      "-o",
      `${dist}/${name}.mjs`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!built.success) {
    throw new Error(new TextDecoder().decode(built.stderr));
  }
}
const deno = Deno.execPath();
const denoRun = ["run", "--quiet", "--allow-net=127.0.0.1", "--unstable-net"];
const contenders: Contender[] = [];
if (await present(LIBCOAP_SERVER)) {
  contenders.push({
    name: "libcoap 4.3.1 coap-server (C)",
    api: "libcoap",
    async start() {
      const running = await startLibcoap();
      return { running, port: running.port };
    },
  });
}
contenders.push({
  name: "aiocoap 0.4.11 (the peer, Python)",
  api: "aiocoap",
  async start() {
    const port = await freeUdpPort();
    return { running: await startPeer(port), port };
  },
}, {
  name: "ours, `deno task coap:server --udp-port` (Deno, optimize-for-size)",
  api: "deno node:dgram",
  async start() {
    const port = await freeUdpPort();
    const running = await startOurServer([
      "--udp-port",
      String(port),
      "--no-explorer",
    ]);
    await running.waitFor(new RegExp(`^udp on ${port}$`));
    return { running, port };
  },
});
/** The V8 flag that keeps Node.js 24's young generation small. */
const SMALL_YOUNG_GENERATION = "--max-semi-space-size=2";
const runtimes: { runtime: string; binary: string; args: string[] }[] = [
  { runtime: "Deno 2", binary: deno, args: denoRun },
];
for (
  const [runtime, binary] of [
    ["Node.js 20", "node"],
    ["Node.js 24", Deno.env.get("NODE24")],
    ["Bun", Deno.env.get("BUN")],
  ] as const
) {
  if (binary !== undefined && await present(binary)) {
    runtimes.push({ runtime, binary, args: [] });
  }
}
for (const { runtime, binary, args } of runtimes) {
  const apis = runtime === "Deno 2"
    ? ["node", "deno"]
    : runtime === "Bun"
    ? ["node", "bun"]
    : ["node"];
  for (const api of apis) {
    const apiName = api === "node"
      ? "node:dgram"
      : api === "deno"
      ? "Deno.listenDatagram"
      : "Bun.udpSocket";
    const source = (name: string) =>
      runtime === "Deno 2" ? sources[name] : `${dist}/${name}.mjs`;
    contenders.push({
      name: `ours, serveCoapUdp on ${runtime} (${apiName})`,
      api: `${runtime} ${apiName}`,
      start: () => startUdp(binary, [...args, source("udp_server")], [api]),
    });
    if (runtime === "Node.js 24") {
      // Node.js 24's young generation grows to some 90 MB more RSS at
      // 100,000 observations (361 against 274 MB); capped, it costs no CPU.
      contenders.push({
        name:
          `ours, serveCoapUdp on ${runtime} (${apiName}), ${SMALL_YOUNG_GENERATION}`,
        api: `${runtime} ${apiName}`,
        start: () =>
          startUdp(binary, [
            SMALL_YOUNG_GENERATION,
            source("udp_server"),
          ], [api]),
      });
    }
    if (runtime === "Deno 2" && api === "node") {
      // The V8 flag `deno task coap:server` runs with, alone.
      contenders.push({
        name:
          `ours, serveCoapUdp on ${runtime} (${apiName}), --optimize-for-size`,
        api: `${runtime} ${apiName}`,
        start: () =>
          startUdp(binary, [
            ...args,
            "--v8-flags=--optimize-for-size",
            source("udp_server"),
          ], [api]),
      });
    }
    contenders.push({
      name: `bare echo on ${runtime} (${apiName})`,
      api: `${runtime} ${apiName}`,
      floor: true,
      start: () => startUdp(binary, [...args, source("udp_echo")], [api]),
    });
  }
}
// The generator runs on the cheapest runtime present.
const loadBinary = runtimes.find((r) => r.runtime === "Bun")?.binary ??
  "node";
const chosen = options.only === ""
  ? contenders
  : contenders.filter((c) =>
    options.only.split(",").some((part) => c.name.includes(part))
  );

interface Tally {
  requests: number;
  seconds: number;
  cpuMs: number;
  resent: number;
}
const tallies = new Map<Contender, Tally>(
  chosen.map((c) => [c, { requests: 0, seconds: 0, cpuMs: 0, resent: 0 }]),
);
// --seconds 0 leaves the request figures out (the scale part alone).
const rounds = options.seconds > 0 ? options.rounds : 0;
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? chosen : [...chosen].reverse();
  for (const contender of order) {
    const { running, port } = await contender.start();
    try {
      const generator = spawn(loadBinary, [
        `${dist}/udp_load.mjs`,
        String(port),
        String(options.sockets),
        String(options.window),
        "1000",
        String(options.seconds * 1000),
      ], 0);
      let result: { requests: number; seconds: number; resent: number };
      let cpu: number;
      try {
        await generator.waitFor(/^measuring$/);
        const cpuBefore = await cpuMs(running.pid);
        result = JSON.parse(
          await generator.waitFor(/^\{/, options.seconds * 1000 + 5000),
        );
        cpu = await cpuMs(running.pid) - cpuBefore;
      } catch (error) {
        // The generator ended without its figures (Bun 1.4 once exited
        // silently mid-round): the round says so and counts for nothing.
        console.error(
          `round ${round + 1}: ${contender.name}: no figures (${
            (error as Error).message.split("\n").slice(0, 4).join(" / ")
          })`,
        );
        continue;
      } finally {
        await generator.stop();
      }
      if (!Number.isFinite(cpu)) {
        // The server's /proc entry could not be read (it ended, say): the
        // round says so and counts for nothing.
        console.error(
          `round ${round + 1}: ${contender.name}: no CPU figure (${
            running.lines.slice(-3).join(" / ")
          })`,
        );
        continue;
      }
      const tally = tallies.get(contender)!;
      tally.requests += result.requests;
      tally.seconds += result.seconds;
      tally.cpuMs += cpu;
      tally.resent += result.resent;
      console.error(
        `round ${round + 1}: ${contender.name}: ${
          Math.round(result.requests / result.seconds)
        }/s, ${(cpu * 1000 / result.requests).toFixed(1)} µs`,
      );
    } finally {
      await running.stop();
    }
  }
}
const perRequest = (t: Tally) => t.cpuMs * 1000 / t.requests;
const libcoapRow = [...tallies].find(([c]) => c.api === "libcoap")?.[1];
const floorOf = (c: Contender) =>
  [...tallies].find(([f]) => f.floor && f.api === c.api)?.[1];
if (rounds > 0) {
  console.log(`
CoAP over UDP on 127.0.0.1, a load generator on ${
    loadBinary === "node" ? "Node.js" : "Bun"
  }: ${options.sockets} sockets × ${options.window} CON GETs of / in flight, ${options.rounds} alternating rounds of ${options.seconds} s after 1 s of warm-up each

| server | requests/s | server CPU a request | × libcoap's | × the bare echo on the same API | requests resent after 1 s |
| --- | --- | --- | --- | --- | --- |
${
    [...tallies].map(([c, t]) => {
      const floor = c.floor ? undefined : floorOf(c);
      return `| ${c.name} | ${
        Math.round(t.requests / t.seconds).toLocaleString("en")
      } | ${perRequest(t).toFixed(1)} µs | ${
        libcoapRow === undefined
          ? "–"
          : (perRequest(t) / perRequest(libcoapRow)).toFixed(2)
      } | ${
        floor === undefined
          ? "–"
          : (perRequest(t) / perRequest(floor)).toFixed(2)
      } | ${t.resent} of ${t.requests.toLocaleString("en")} |`;
    }).join("\n")
  }`);
}

// The proxy's added latency, against libcoap.
if (await present(LIBCOAP_SERVER) && options.requests > 0) {
  const libcoap = await startLibcoap();
  try {
    const percentile = (sorted: number[], p: number) =>
      sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
    const timed = async (client: CoapClient, proxyUri?: string) => {
      const times: number[] = [];
      for (let i = 0; i < options.requests + 20; i++) {
        const started = performance.now();
        for await (
          const event of client.request(
            proxyUri === undefined
              ? { method: "GET", path: "/" }
              : { method: "GET", path: "/", proxyUri },
          )
        ) {
          if (event.kind !== "response") throw new Error("no response");
          break;
        }
        if (i >= 20) times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b);
    };
    const direct = await connectCoapUdp(`coap://127.0.0.1:${libcoap.port}`, {
      log: quiet,
    });
    const directTimes = await timed(direct);
    direct.close();
    const proxy = await startOurProxy([
      "--allow",
      `127.0.0.1:${libcoap.port}`,
      "--no-explorer",
    ]);
    try {
      const through = await CoapClient.connect(
        `coap+ws://127.0.0.1:${proxy.port}`,
        { log: quiet },
      );
      const proxyTimes = await timed(
        through,
        `coap://127.0.0.1:${libcoap.port}/`,
      );
      through.close();
      const format = (n: number) => n.toFixed(2);
      const row = (name: string, times: number[]) =>
        `| ${name} | ${format(percentile(times, 0.5))} ms | ${
          format(percentile(times, 0.99))
        } ms |`;
      console.log(`
The proxy's added latency: ${options.requests} sequential GETs of libcoap's /

| path | p50 | p99 |
| --- | --- | --- |
${row("our client → libcoap, UDP", directTimes)}
${row("our client → coap:proxy (WebSocket) → libcoap (UDP)", proxyTimes)}
| added by the proxy | ${
        format(percentile(proxyTimes, 0.5) - percentile(directTimes, 0.5))
      } ms | ${
        format(percentile(proxyTimes, 0.99) - percentile(directTimes, 0.99))
      } ms |`);
    } finally {
      await proxy.stop();
    }
  } finally {
    await libcoap.stop();
  }
}

// One process's scale: observations from many UDP peers.
if (options.observations > 0) {
  const perPeer = Math.max(
    1,
    Math.round(options.observations / options.observers),
  );
  const rows: string[] = [];
  const servers: { runtime: string; command: string[] }[] = [];
  for (const { runtime, binary, args } of runtimes) {
    if (runtime === "Deno 2") {
      for (const flags of ["--expose-gc", "--expose-gc,--optimize-for-size"]) {
        servers.push({
          runtime: flags.includes("size")
            ? `${runtime}, --optimize-for-size`
            : runtime,
          command: [
            binary,
            ...args,
            `--v8-flags=${flags}`,
            sources.udp_observe_server,
          ],
        });
      }
    } else {
      for (
        const flags of runtime === "Node.js 24"
          ? [[], [SMALL_YOUNG_GENERATION]]
          : [[]]
      ) {
        servers.push({
          runtime: [runtime, ...flags].join(", "),
          command: [
            binary,
            ...(runtime === "Bun" ? [] : ["--expose-gc"]),
            ...flags,
            `${dist}/udp_observe_server.mjs`,
          ],
        });
      }
    }
  }
  for (const { runtime, command } of servers) {
    if (
      options.only !== "" &&
      !options.only.split(",").some((part) => runtime.includes(part))
    ) continue;
    const { running, port } = await startUdp(command[0], command.slice(1));
    try {
      const observers = spawn(loadBinary, [
        `${dist}/udp_observers.mjs`,
        String(port),
        String(options.observers),
        String(perPeer),
      ], 0);
      try {
        const result = JSON.parse(await observers.waitFor(/^\{/, 300_000));
        rows.push(
          `| ${runtime} | ${result.registered.toLocaleString("en")} of ${
            (options.observers * perPeer).toLocaleString("en")
          } from ${
            result.peers.toLocaleString("en")
          } peers (${result.lost} lost) | ${
            (result.rss / 2 ** 20).toFixed(0)
          } MB | ${(result.rss / result.registered / 1024).toFixed(2)} KB | ${
            result.notified.toLocaleString("en")
          } in ${result.fanOutMs.toFixed(0)} ms | ${
            result.sentMs.toFixed(0)
          } ms, ${result.cpuMs.toFixed(0)} ms of CPU |`,
        );
      } finally {
        await observers.stop();
      }
    } finally {
      await running.stop();
    }
  }
  console.log(`
One process's scale: ${
    options.observers.toLocaleString("en")
  } UDP peers, ${perPeer} observations of /state each, then one change

| server runtime | observations | RSS after a full collection | RSS an observation | notifications of the change, and the time until the last arrived | until the server had sent the last, and its CPU in that time |
| --- | --- | --- | --- | --- | --- |
${rows.join("\n")}`);
}
await Deno.remove(dist, { recursive: true });
