// CoAP over UDP on node:dgram, outside Deno: a server and a client in one
// process on 127.0.0.1, GET / and GET /big (block-wise). Bundled and run on
// Node.js and Bun by udp_interop.ts; prints one line and exits 0 when both
// answers are right, 1 otherwise.

import { CoapServer } from "../server.ts";
import { demoResources } from "../resources.ts";
import { connectCoapUdp, serveCoapUdp } from "../udp_node.ts";
import { text } from "../message.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const server = new CoapServer(demoResources(), { log: quiet });
const serving = await serveCoapUdp(server, { port: 0 });
const client = await connectCoapUdp(`coap://127.0.0.1:${serving.port}`, {
  log: quiet,
});
const got: string[] = [];
for (const path of ["/", "/big"]) {
  for await (const event of client.request({ method: "GET", path })) {
    got.push(
      event.kind === "response"
        ? `${path} ${event.message.code} ${text(event.message.payload).length}`
        : `${path} ${event.kind}`,
    );
    break;
  }
}
client.close();
serving.close();
const line = got.join(", ");
console.log(line);
(globalThis as { process?: { exitCode?: number } }).process!.exitCode =
  line === "/ 2.05 26, /big 2.05 4200" ? 0 : 1;
