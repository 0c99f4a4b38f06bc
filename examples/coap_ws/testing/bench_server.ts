// The demo server for the CoAP benchmark, in its own process like the
// aiocoap peer:
//   deno run --allow-net=127.0.0.1 --v8-flags=--expose-gc bench_server.ts PORT
// It adds two resources: /idle, observable and never notifying, and
// /heap, the heap in use after a full collection (with the server's counts).

import { serveCoap } from "../deno_server.ts";
import { demoResources } from "../resources.ts";
import { CoapServer } from "../server.ts";

const port = Number(Deno.args[0]);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

const server = new CoapServer({
  ...demoResources(),
  "/idle": {
    observable: true,
    GET: (request, pipe, signal) => {
      if (request.observe !== 0) return { payload: "idle" };
      pipe.addResponse({ payload: "idle" });
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => reject(signal.reason))
      );
    },
  },
  "/heap": {
    GET: async () => {
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
}, { log: quiet });
serveCoap(server, {
  port,
  onListen: (port) => console.log(`listening on ${port}`),
});
