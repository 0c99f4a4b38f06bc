// One process's scale for `bench:udp`: an observable /state served over
// CoAP over UDP with the limits raised for many observers, on any runtime
// (bundled for Node.js and Bun):
//   node|bun|deno run -A udp_observe_server.mjs PORT
// Prints "udp on PORT" once it listens. A POST to /change changes the state
// once (every observation is notified) and answers 2.04 at once; a GET of
// /rss answers the process's resident set in bytes and its observation
// count, after a full collection where the runtime offers one; a GET of
// /fanout the milliseconds from the last change until its last
// notification was handed to the socket, and the process's CPU time in them.

import { CoapServer, Observers } from "../server.ts";
import { serveCoapUdp } from "../udp_node.ts";

import nodeProcess from "node:process";

declare const process: {
  argv: string[];
  memoryUsage(): { rss: number };
};
const args = globalThis.Deno?.args ?? process.argv.slice(2);
const port = Number(args[0]);
// A second argument sets the endpoint's sendBurst (the stack's default
// unless given).
const sendBurst = args[1] === undefined ? undefined : Number(args[1]);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let state = 0;
let sentMs = NaN;
let cpuMs = NaN;
const observers = new Observers();
const many = 1_000_000;
const server = new CoapServer({
  "/state": {
    observable: observers,
    GET: () => ({ payload: `state ${state}` }),
  },
  "/change": {
    POST: () => {
      state++;
      const started = performance.now();
      const cpu = nodeProcess.cpuUsage();
      observers.updated();
      console.error(
        `updated() took ${(performance.now() - started).toFixed(0)} ms`,
      );
      // Until the endpoint has handed the last notification to the socket.
      sentMs = cpuMs = NaN;
      const poll = () => {
        if (serving.endpoint.queued > 0) setTimeout(poll, 0);
        else {
          sentMs = performance.now() - started;
          const { user, system } = nodeProcess.cpuUsage(cpu);
          cpuMs = (user + system) / 1000;
        }
      };
      poll();
      return { code: "2.04" };
    },
  },
  "/fanout": {
    GET: () => ({ payload: `${sentMs} ${cpuMs}` }),
  },
  "/rss": {
    GET: () => {
      const runtime = globalThis as {
        gc?: () => void;
        Bun?: { gc(force: boolean): void };
      };
      if (runtime.gc !== undefined) runtime.gc();
      else runtime.Bun?.gc(true);
      const rss = globalThis.Deno?.memoryUsage().rss ??
        process.memoryUsage().rss;
      return {
        payload:
          `${rss} ${observers.count} ${serving.endpoint.unverifiedPeers}`,
      };
    },
  },
}, {
  log: quiet,
  limits: {
    maxConnections: many,
    maxConnectionsPerAddress: many,
    maxObservations: many,
    maxObservationsPerConnection: 100,
  },
});
const serving = await serveCoapUdp(server, {
  port,
  maxPeers: many,
  maxUnverifiedPeers: many,
  sendBurst,
});
console.log(`udp on ${serving.port}`);
