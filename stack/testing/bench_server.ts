// The demo server for the CoAP benchmark, in its own process like the
// aiocoap peer:
//   deno run --allow-net=127.0.0.1 --v8-flags=--expose-gc bench_server.ts PORT
// It adds /idle, observable and never notifying (/idle-task the same, served
// by a task an observation), and
// /heap, the heap in use after a full collection (with the server's counts).
// With --canned it is the bare baseline instead: no pipes, no resources, a
// canned 2.05 for every request, to show what the load generator and the
// WebSocket alone allow.

import { serveCoap } from "../deno_server.ts";
import { demoResources } from "../resources.ts";
import { CoapServer, Observers } from "../server.ts";
import type { ResponseInit } from "../exchange.ts";

import { Code, decodeMessage, encodeMessage, utf8 } from "../message.ts";

const port = Number(Deno.args[0]);
if (Deno.args[1] === "--canned") {
  const welcome = utf8("Welcome to the demo server");
  Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => console.log(`listening on ${port}`),
  }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: "coap",
    });
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      const message = decodeMessage(new Uint8Array(event.data));
      socket.send(encodeMessage({
        code: message.code === Code.CSM ? Code.CSM : Code.CONTENT,
        token: message.token,
        options: [],
        payload: message.code === Code.CSM ? new Uint8Array(0) : welcome,
      }));
    };
    return response;
  });
  await new Promise(() => {});
}
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

const server: CoapServer = new CoapServer({
  ...demoResources(),
  // Observed as the demo's observable resources are: an Observers table.
  "/idle": { observable: new Observers(), GET: () => ({ payload: "idle" }) },
  // The same, served as a task an observation (a driver waiting for the
  // end), for comparison.
  "/idle-task": {
    observable: true,
    GET: (request, pipe) => {
      if (request.observe !== 0) return { payload: "idle" };
      pipe.addResponse({ payload: "idle" });
      return new Promise((resolve) => pipe.onInterestEnd(resolve));
    },
  },
  "/heap": {
    GET: async (): Promise<ResponseInit> => {
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return {
        payload: JSON.stringify({
          heap: Deno.memoryUsage().heapUsed,
          exchanges: server.exchanges,
          drivers: server.drivers,
        }),
      };
    },
  },
}, {
  log: quiet,
  // The benchmark observes 1,000 and holds 10,000 idle observations on one
  // connection, past the defaults made for untrusted clients.
  limits: { maxObservationsPerConnection: 20_000, maxObservations: 50_000 },
});
serveCoap(server, {
  port,
  onListen: (port) => console.log(`listening on ${port}`),
});
