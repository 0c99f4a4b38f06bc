// A CoAP-over-UDP server of the demo resources and nothing else, to run on
// whichever runtime costs least a request (see the README's "Which runtime
// for a heavy gateway"). The same source on each:
//   deno run --allow-net examples/udp_gateway.ts [PORT] [node|deno|bun]
//   deno task bundle:gateway && node dist/udp_gateway.mjs [PORT]
//   deno task bundle:gateway && bun dist/udp_gateway.mjs [PORT]
// PORT is 5683 unless given; the socket API is node:dgram, or Bun's own on
// Bun, unless named. Prints "udp on PORT" once it listens; `bench:udp`
// measures this file on every runtime. Put your own resources where the
// demo's are.

import { demoResources } from "../stack/resources.ts";
import { CoapServer } from "../stack/server.ts";
import { serveCoapUdp } from "../stack/udp_node.ts";

declare const process: { argv: string[] };
const args = globalThis.Deno?.args ?? process.argv.slice(2);
const port = args[0] === undefined ? 5683 : Number(args[0]);
const api = args[1] as "node" | "deno" | "bun" | undefined;
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const server = new CoapServer(demoResources(), { log: quiet });
const serving = await serveCoapUdp(server, { port, api });
console.log(`udp on ${serving.port}`);
