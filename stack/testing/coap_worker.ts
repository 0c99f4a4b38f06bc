// The demo server as a workerd (Cloudflare Workers) module: bundled into
// dist/coap_worker.mjs by the interop checks and served by workerd. GET
// /stats answers the server's counters as JSON; everything else goes to
// the CoAP-over-WebSocket adapter.

import { demoResources, printingHooks } from "../resources.ts";
import { CoapServer } from "../server.ts";
import { coapFetch } from "../workerd_server.ts";

const server = new CoapServer(
  demoResources(printingHooks(console.log)),
  {
    log: {
      debug() {},
      info() {},
      warn: (...data: unknown[]) => console.log("warn:", ...data),
      error: (...data: unknown[]) => console.log("error:", String(data[0])),
    },
  },
);

export default {
  fetch(request: Request): Response | Promise<Response> {
    if (new URL(request.url).pathname === "/stats") {
      return Response.json({
        connections: server.connections,
        exchanges: server.exchanges,
        drivers: server.drivers,
      });
    }
    return coapFetch(request, server);
  },
};
