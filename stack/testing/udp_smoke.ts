// CoAP over UDP on node:dgram, outside Deno: a server and a client in one
// process on 127.0.0.1, GET / and GET /big (block-wise), then CoapContext
// asking a port where nothing listens. Bundled and run on Node.js and Bun
// by udp_interop.ts; prints one line and exits 0 when both answers are
// right, 1 otherwise; the second line gives the server's sendBurst, the
// third how the silent port ended, the fourth what node:dgram sent to an
// address and to a name.

import { CoapServer } from "../server.ts";
import { demoResources } from "../resources.ts";
import { bindUdp, connectCoapUdp, serveCoapUdp } from "../udp_node.ts";
import { text } from "../message.ts";
import { CoapContext } from "../context_node.ts";
import dgram from "node:dgram";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const server = new CoapServer(demoResources(), { log: quiet });
// Options given as undefined, as code that passes its own optional settings
// on gives them: the runtime's defaults stand (sendBurst is 65,536 outside
// Deno; 256 had slowed a fan-out of 100,000 notifications by a third).
const serving = await serveCoapUdp(server, {
  port: 0,
  sendBurst: undefined,
  readSize: undefined,
  log: undefined,
});
const sendBurst = serving.endpoint.options.sendBurst;
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
console.log(`sendBurst ${sendBurst}`);
// A port where nothing listens: bound for a moment, then closed.
const probe = dgram.createSocket("udp4");
const closedPort = await new Promise<number>((resolve) =>
  probe.bind(0, "127.0.0.1", () => {
    const port = probe.address().port;
    probe.close(() => resolve(port));
  })
);
const ctx = new CoapContext({ timeout: 3000 });
const started = performance.now();
try {
  const response = await ctx.get(`coap://127.0.0.1:${closedPort}/`);
  console.log(`silent port: answered ${response.code}`);
} catch (error) {
  const ms = performance.now() - started;
  console.log(
    `silent port: ${(error as Error).name} after ${
      ms < 1000 ? "under 1 s" : `${Math.round(ms / 1000)} s`
    }: ${(error as Error).message.replace(/:\d+/, ":PORT")}`,
  );
}
ctx.close();
// node:dgram sends to an IP address at once (its lookup answers literals
// itself): a datagram sent just before close() still goes. A name is still
// looked up.
const arrived: string[] = [];
const receiver = await bindUdp((bytes) =>
  arrived.push(new TextDecoder().decode(bytes))
);
const quick = await bindUdp(() => {}, { api: "node" });
quick.send(new TextEncoder().encode("address"), {
  hostname: "127.0.0.1",
  port: receiver.port,
});
quick.close();
const named = await bindUdp(() => {}, { api: "node" });
named.send(new TextEncoder().encode("name"), {
  hostname: "localhost",
  port: receiver.port,
});
for (let i = 0; i < 50 && arrived.length < 2; i++) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
console.log(`sent to ${arrived.sort().join(" and ")}`);
receiver.close();
named.close();
(globalThis as { process?: { exitCode?: number } }).process!.exitCode =
  line === "/ 2.05 26, /big 2.05 4200" ? 0 : 1;
