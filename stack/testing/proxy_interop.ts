// The cross-proxy, `deno task coap:proxy`, as a user starts it, on
// 127.0.0.1 only (part of `deno task test:coap`): our client and
// aiocoap-client through it to libcoap's coap-server over UDP, and to our
// own server over WebSocket; one upstream observation for two observers;
// and its refusals: 4.03 for a target it was not allowed, 5.05 for a
// scheme it does not speak, 5.02 for a target it cannot reach, 5.04 for
// one that does not answer. Needs libcoap3-bin and the aiocoap peer.

import { assert, assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import type { CoapRequest } from "../exchange.ts";
import {
  aiocoapClient,
  freePort,
  requirePeer,
  startLibcoap,
  startOurProxy,
  startOurServer,
} from "./peers.ts";
import { ask, uploadBody } from "./ask.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "coap:proxy: our client and aiocoap-client reach libcoap over UDP and our server over WebSocket through it; two observers share one upstream observation; it refuses with 4.03, 5.05, 5.02 and 5.04",
  ...network,
  async fn() {
    await requirePeer();
    const device = await startLibcoap();
    const ours = await startOurServer(["--no-explorer"]);
    const silent = freePort(); // allowed, but nothing answers there
    const closed = freePort(); // allowed over WebSocket, nothing listens
    const proxy = await startOurProxy([
      "--allow",
      `127.0.0.1:${device.port}`,
      "--allow",
      `coap+ws://127.0.0.1:${ours.port}`,
      "--allow",
      `127.0.0.1:${silent}`,
      "--allow",
      `coap+ws://127.0.0.1:${closed}`,
      "--timeout",
      "1500",
      "--no-explorer",
    ]);
    const via = `coap+ws://127.0.0.1:${proxy.port}`;
    const udp = `coap://127.0.0.1:${device.port}`;
    const clients: CoapClient[] = [];
    const connect = async () => {
      const client = await CoapClient.connect(via, { log: quiet });
      clients.push(client);
      return client;
    };
    const state = async (client: CoapClient) =>
      JSON.parse(
        (await ask(client, { method: "GET", path: "/proxy" }))[0].slice(5),
      );
    try {
      const a = await connect();
      const through = (proxyUri: string, extra: Partial<CoapRequest> = {}) => ({
        method: "GET" as const,
        path: "/",
        proxyUri,
        ...extra,
      });
      // To libcoap over UDP.
      const index = await ask(a, through(`${udp}/`));
      assert(
        index[0].startsWith("2.05 This is a test server made with libcoap"),
        index[0],
      );
      // libcoap's / has Max-Age 196607: asked twice more, it is answered
      // from the proxy's cache, and the device is not asked again.
      const cacheBefore = (await state(a)).cache;
      assertEquals(await ask(a, through(`${udp}/`)), index);
      assertEquals(await ask(a, through(`${udp}/`)), index);
      const cacheAfter = (await state(a)).cache;
      assertEquals(
        [
          cacheAfter.hits - cacheBefore.hits,
          cacheAfter.misses - cacheBefore.misses,
        ],
        [2, 0],
        JSON.stringify(cacheAfter),
      );
      assertEquals(
        await ask(
          a,
          through(`${udp}/made`, { method: "PUT", payload: "via proxy" }),
        ),
        ["2.01 "],
      );
      assertEquals(await ask(a, through(`${udp}/made`)), ["2.05 via proxy"]);
      const data = await ask(a, through(`${udp}/example_data`));
      assertEquals(data[0].length, "2.05 ".length + 1500, data[0]);
      // To our server over WebSocket: its /big comes reassembled and goes
      // on block-wise.
      const big = await ask(a, through(`coap+ws://127.0.0.1:${ours.port}/big`));
      assertEquals(big[0].length, "2.05 ".length + 4200);
      // Two observers of /time, one upstream observation.
      const b = await connect();
      const timeA = ask(a, through(`${udp}/time`, { observe: true }), 3);
      const timeB = ask(b, through(`${udp}/time`, { observe: true }), 2);
      const [seenA, seenB] = await Promise.all([timeA, timeB]);
      assertEquals([seenA.length, seenB.length], [3, 2]);
      for (const line of [...seenA, ...seenB]) {
        assert(/^2\.05 \w{3} \d\d \d\d:\d\d:\d\d$/.test(line), line);
      }
      const watching = await connect();
      const during = ask(
        watching,
        through(`${udp}/time`, { observe: true }),
        2,
      );
      const other = await connect();
      const also = ask(other, through(`${udp}/time`, { observe: true }), 2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const shared = await state(a);
      await Promise.all([during, also]);
      assertEquals(
        [shared.upstreamObservations, shared.observers],
        [1, 2],
        JSON.stringify(shared),
      );
      let after = await state(a);
      for (let i = 0; i < 50 && after.upstreamObservations !== 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        after = await state(a);
      }
      assertEquals([after.upstreamObservations, after.observers], [0, 0]);
      // aiocoap-client through the proxy (it names the target with
      // Proxy-Scheme and Uri-Host).
      const theirs = await aiocoapClient(["--proxy", via, `${udp}/`]);
      assert(
        theirs.stdout.startsWith("This is a test server made with libcoap"),
        JSON.stringify(theirs),
      );
      // aiocoap-client uploads block-wise through it: the proxy
      // reassembles and sends the body on in blocks to the device.
      const dir = await Deno.makeTempDir();
      try {
        const upload = uploadBody(2990);
        await Deno.writeTextFile(`${dir}/body.txt`, upload);
        const put = await aiocoapClient([
          "--proxy",
          via,
          "-m",
          "PUT",
          "--payload",
          `@${dir}/body.txt`,
          `${udp}/uploaded`,
        ]);
        assertEquals(put.code, 0, put.stderr);
        assertEquals(await ask(a, through(`${udp}/uploaded`)), [
          `2.05 ${upload}`,
        ]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
      const observed = await aiocoapClient(
        ["--proxy", via, "--observe", `${udp}/time`],
        3500,
      );
      const times = (observed.stdout + observed.stderr).match(
        /\w{3} \d\d \d\d:\d\d:\d\d/g,
      ) ?? [];
      assert(times.length >= 2, JSON.stringify(observed));
      // Refusals, each with its reason.
      assertEquals(await ask(a, through("coap://127.0.0.1:9/x")), [
        "4.03 Forbidden: this proxy does not forward to 127.0.0.1:9 (it forwards only to the targets it was started with, --allow HOST:PORT)",
      ]);
      assertEquals(await ask(a, through(`http://127.0.0.1:${device.port}/`)), [
        "5.05 Proxying Not Supported: this proxy forwards to coap://, coaps://, coap+tcp:// and coap+ws:// only, not http://",
      ]);
      const unreachable = await ask(
        a,
        through(`coap+ws://127.0.0.1:${closed}/`),
      );
      assert(
        unreachable[0].startsWith(
          `5.02 Bad Gateway: cannot reach coap+ws://127.0.0.1:${closed}`,
        ),
        unreachable[0],
      );
      assertEquals(await ask(a, through(`coap://127.0.0.1:${silent}/`)), [
        `5.04 Gateway Timeout: no response from coap://127.0.0.1:${silent} within 1500 ms`,
      ]);
      console.log(
        `  ok   [proxy] libcoap over UDP and our server over WebSocket through coap:proxy, for our client and aiocoap-client; one upstream observation for two observers; 4.03, 5.05, 5.02 and 5.04 with their reasons`,
      );
    } catch (error) {
      console.log(`the proxy printed:\n${proxy.lines.join("\n")}`);
      throw error;
    } finally {
      for (const client of clients) client.close();
      await proxy.stop();
      await ours.stop();
      await device.stop();
    }
  },
});
