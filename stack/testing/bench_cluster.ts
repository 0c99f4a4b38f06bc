// The cluster's benchmark, on 127.0.0.1 only, bounded in count and time:
//   deno task bench:cluster [--observers N] [--puts N] [--requests N]
// Starts Redis (redis-server, or REDIS_SERVER) on a free port, then for
// P = 1 and 2 a `deno task coap:cluster` on a free port, and measures:
// - requests/s to a shared resource (GET /shared/bench, 100 in flight over
//   20 connections) and each server process's own CPU time per request
//   (from /proc/PID/stat);
// - the time from a PUT, made on one connection, to its notification at
//   every one of N observers (default 10,000) spread over 100 raw
//   connections and so over the processes: p50 and p99 (goal: p99 <= 100
//   ms), from the PUT's sending to the arrival of each notification's frame;
// - each process's heap and RSS growth per observation it holds.
// The load generator is this one process on the same two cores: its own
// work is in the latencies. Everything stops by itself.

import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import type { CoapRequest } from "../exchange.ts";
import { type CoapMessage, text } from "../message.ts";
import { freePort, type Running, startCluster, startRedis } from "./peers.ts";
import { cpuMs, rss } from "./proc.ts";
import { parseArgs } from "./args.ts";
import { CSM, get as rawGet, RawWebSocket, read } from "./raw_ws.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const options = parseArgs(Deno.args, {
  observers: 10_000,
  puts: 20,
  requests: 20_000,
});
const CONNECTIONS = 100, IN_FLIGHT = 100, REQUEST_CONNECTIONS = 20;

async function one(client: CoapClient, request: CoapRequest) {
  for await (const event of client.request(request)) {
    if (event.kind !== "response") throw event.exception;
    return { code: event.message.code, payload: text(event.message.payload) };
  }
  throw new Error("no response");
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

interface ProcessState {
  name: string;
  pid: number;
  sharedObservations: number;
  heapUsed: number;
}

/** Asks connections until every process has answered /process. */
async function processes(
  clients: CoapClient[],
  count: number,
): Promise<Map<string, ProcessState>> {
  const found = new Map<string, ProcessState>();
  for (const client of clients) {
    const state = JSON.parse(
      (await one(client, { method: "GET", path: "/process" })).payload,
    ) as ProcessState;
    found.set(state.name, state);
    if (found.size === count) break;
  }
  return found;
}

async function run(p: number, engine: string) {
  const port = freePort();
  const { cluster, pids } = await startCluster(port, p, engine);
  const uri = `coap+ws://127.0.0.1:${port}`;
  const clients: CoapClient[] = [];
  try {
    const writer = await CoapClient.connect(uri, { log: quiet });
    clients.push(writer);
    await one(writer, {
      method: "PUT",
      path: "/shared/bench",
      payload: "x".repeat(16),
    });
    // Requests per second, and each process's CPU per request.
    const requesters = await Promise.all(
      Array.from(
        { length: REQUEST_CONNECTIONS },
        () => CoapClient.connect(uri, { log: quiet }),
      ),
    );
    clients.push(...requesters);
    const get = { method: "GET", path: "/shared/bench" } as const;
    for (let i = 0; i < 500; i++) await one(requesters[i % 20], get); // warm
    const cpuBefore = await Promise.all(pids.map(cpuMs));
    let sent = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, async (_, k) => {
      const client = requesters[k % REQUEST_CONNECTIONS];
      while (sent < options.requests) {
        sent++;
        await one(client, get);
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    const cpuAfter = await Promise.all(pids.map(cpuMs));
    const cpu = cpuAfter.map((after, i) => after - cpuBefore[i]);
    const cpuPerRequest = cpu.reduce((a, b) => a + b, 0) * 1000 /
      options.requests;

    // Fan-out: N observers over 100 raw connections, which only note when
    // each notification's frame arrives (a full client in this process
    // would put its own decoding into the figure).
    const latencies: number[] = [];
    const putAt: number[] = [];
    let arrived = 0, registered = 0;
    const onMessage = (frame: Uint8Array) => {
      const message = read(frame);
      if (message === undefined || message.code >> 5 !== 2) return;
      const n = Number(text(message.payload));
      if (n < 0) registered++;
      else {
        latencies.push(performance.now() - putAt[n]);
        arrived++;
      }
    };
    await one(writer, { method: "PUT", path: "/shared/fan", payload: "-1" });
    const raw = await Promise.all(
      Array.from(
        { length: CONNECTIONS },
        () => RawWebSocket.connect(port, onMessage),
      ),
    );
    // The processes, through clients that stay (for /process).
    const probes = await Promise.all(
      Array.from(
        { length: 10 * p },
        () => CoapClient.connect(uri, { log: quiet }),
      ),
    );
    clients.push(...probes);
    const before = await processes(probes, p);
    const rssBefore = new Map(
      await Promise.all(
        [...before.values()].map(async (s) =>
          [s.name, await rss(s.pid)] as const
        ),
      ),
    );
    const perConnection = Math.ceil(options.observers / CONNECTIONS);
    await Promise.all(raw.map((socket, c) => {
      const messages: CoapMessage[] = [CSM];
      for (let i = 0; i < perConnection; i++) {
        if (c * perConnection + i >= options.observers) break;
        messages.push(rawGet(i + 1, "/shared/fan", true));
      }
      return socket.send(messages);
    }));
    const deadline = Date.now() + 60_000;
    while (registered < options.observers && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const held = registered;
    const after = await processes(probes, p);
    const perProcess = await Promise.all([...after.values()].map(async (s) => {
      const b = before.get(s.name)!;
      const grew = (await rss(s.pid)) - rssBefore.get(s.name)!;
      return {
        name: s.name,
        observations: s.sharedObservations,
        heapPer: (s.heapUsed - b.heapUsed) / Math.max(1, s.sharedObservations),
        rssPer: grew / Math.max(1, s.sharedObservations),
      };
    }));
    for (let n = 0; n < options.puts; n++) {
      putAt[n] = performance.now();
      await one(writer, {
        method: "PUT",
        path: "/shared/fan",
        payload: String(n),
      });
      // Let each fan-out finish before the next change (bounded wait).
      const expected = (n + 1) * options.observers;
      const until = Date.now() + 5000;
      while (arrived < expected && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    latencies.sort((a, b) => a - b);
    for (const socket of raw) socket.close();
    return {
      p,
      rate: options.requests / seconds,
      cpuPerRequest,
      cpuShare: cpu.map((c) => (100 * c / cpu.reduce((a, b) => a + b, 0)))
        .map((x) => x.toFixed(0) + "%").join("/"),
      held,
      delivered: latencies.length,
      expected: options.observers * options.puts,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      perProcess,
      raw,
    };
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
}

const dir = await Deno.makeTempDir({ prefix: "coap-bench-cluster-" });
const redisPort = freePort();
let redis: Running | undefined;
try {
  redis = await startRedis(redisPort, dir);
  const engine = `redis://127.0.0.1:${redisPort}`;
  const rows = [];
  for (const p of [1, 2]) rows.push(await run(p, engine));
  const f = (n: number, digits = 0) =>
    n.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  console.log(
    `cluster on 127.0.0.1, Redis ${redisPort}; ${options.requests} GETs of a shared value (${IN_FLIGHT} in flight over ${REQUEST_CONNECTIONS} connections); ${options.observers} observers over ${CONNECTIONS} connections, ${options.puts} PUTs`,
  );
  for (const row of rows) {
    console.log(
      `P=${row.p}: ${f(row.rate)} requests/s; server CPU ${
        f(row.cpuPerRequest, 1)
      } µs a request (all processes; shares ${row.cpuShare}); PUT to notification p50 ${
        f(row.p50, 1)
      } ms, p99 ${f(row.p99, 1)} ms (goal <= 100: ${
        row.p99 <= 100 ? "met" : "MISSED"
      }) over ${row.delivered} of ${row.expected} notifications`,
    );
    for (const s of row.perProcess) {
      console.log(
        `  ${s.name}: ${s.observations} observations, heap ${
          f(s.heapPer)
        } B and RSS ${
          f(s.rssPer)
        } B each (growth over holding them; heap without a forced collection)`,
      );
    }
  }
} finally {
  await redis?.stop();
  await Deno.remove(dir, { recursive: true });
}
Deno.exit(0);
