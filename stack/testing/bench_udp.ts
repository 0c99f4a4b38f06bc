// CoAP over UDP, measured on 127.0.0.1 only, bounded in count and time:
//   deno task bench:udp [--seconds 5] [--sockets 10] [--window 10] [--requests 300]
// 1. Requests per second and the server's CPU a request for three servers
//    under the same load generator: our `coap:server --udp-port`, aiocoap's
//    UDP server (the peer), and libcoap's `coap-server`. The generator is
//    this process: `--sockets` UDP sockets, each keeping `--window` CON
//    GETs of / in flight (raw datagrams, so no client's own limits such as
//    NSTART are in the figure), for `--seconds` after a second's warm-up.
//    Each socket answers a 4.01 with Echo as libcoap's client does (RFC
//    9175), so it is a verified client of ours, as it is of the others.
//    The server's CPU comes from /proc/PID/stat.
// 2. The cross-proxy's added latency: `--requests` sequential GETs of
//    libcoap's / from our client, directly over UDP and through
//    `coap:proxy` over WebSocket; p50 and p99 of each, and the difference.
// The load generator shares the two cores with the server it measures:
// compare the rows with each other, not with other machines.

import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { Code, encodeMessage, getOption, Option } from "../message.ts";
import { bindUdp, connectCoapUdp } from "../udp_node.ts";
import { decodeDatagram, encodeDatagram, Type } from "../udp.ts";
import { parseArgs } from "./args.ts";
import { cpuMs } from "./proc.ts";
import {
  freePort,
  startLibcoap,
  startOurProxy,
  startOurServer,
  startPeer,
} from "./peers.ts";

const options = parseArgs(Deno.args, {
  seconds: 5,
  sockets: 10,
  window: 10,
  requests: 300,
});
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

interface Load {
  requests: number;
  seconds: number;
  resent: number;
}

/** Keeps the window full of CON GETs of / against `port` for `ms`. */
async function load(port: number, ms: number): Promise<Load> {
  const target = { hostname: "127.0.0.1", port };
  let completed = 0, resent = 0;
  let running = true;
  const sockets = await Promise.all(
    Array.from({ length: options.sockets }, async (_, s) => {
      let messageId = s * 4096;
      const waiting = new Map<number, number>(); // message ID → sent at
      // As libcoap's client does: a 4.01's Echo value goes with the next
      // requests (RFC 9175), until an answer comes without one.
      let echo: Uint8Array | undefined;
      const socket = await bindUdp((bytes) => {
        let datagram;
        try {
          datagram = decodeDatagram(bytes);
        } catch {
          return;
        }
        if (datagram.type !== Type.ACK || !waiting.delete(datagram.messageId)) {
          return;
        }
        const offered = getOption(datagram.message, Option.ECHO);
        if (datagram.message.code === Code.UNAUTHORIZED && offered) {
          echo = offered.slice();
        } else if (datagram.message.code >> 5 === 2) {
          completed++;
          echo = undefined;
        }
        if (running) send();
      });
      const send = () => {
        messageId = (messageId + 1) & 0xffff;
        waiting.set(messageId, performance.now());
        socket.send(
          encodeDatagram(
            Type.CON,
            messageId,
            encodeMessage({
              code: Code.GET,
              token: new Uint8Array([s, messageId & 0xff]),
              options: echo === undefined
                ? []
                : [{ number: Option.ECHO, value: echo }],
              payload: new Uint8Array(0),
            }),
          ),
          target,
        );
      };
      for (let i = 0; i < options.window; i++) send();
      // A request lost under load (a full queue) is sent afresh after 1 s.
      const sweep = setInterval(() => {
        const now = performance.now();
        for (const [id, at] of waiting) {
          if (now - at > 1000) {
            waiting.delete(id);
            resent++;
            if (running) send();
          }
        }
      }, 250);
      return { socket, sweep };
    }),
  );
  const started = performance.now();
  const before = completed;
  await new Promise((resolve) => setTimeout(resolve, ms));
  const seconds = (performance.now() - started) / 1000;
  const requests = completed - before;
  running = false;
  for (const { socket, sweep } of sockets) {
    clearInterval(sweep);
    socket.close();
  }
  return { requests, seconds, resent };
}

/** Warms a server up for a second, then measures it. */
async function measure(name: string, port: number, pid: number) {
  await load(port, 1000);
  const cpuBefore = await cpuMs(pid);
  const result = await load(port, options.seconds * 1000);
  const cpu = await cpuMs(pid) - cpuBefore;
  return {
    name,
    rate: result.requests / result.seconds,
    cpuPerRequest: cpu * 1000 / result.requests,
    resent: result.resent,
    requests: result.requests,
  };
}

const rows: Awaited<ReturnType<typeof measure>>[] = [];
const udpPort = freePort();
const ours = await startOurServer([
  "--udp-port",
  String(udpPort),
  "--no-explorer",
]);
try {
  await ours.waitFor(new RegExp(`^udp on ${udpPort}$`));
  rows.push(await measure("ours (coap:server --udp-port)", udpPort, ours.pid));
} finally {
  await ours.stop();
}
const aiocoapPort = freePort();
const aiocoap = await startPeer(aiocoapPort);
try {
  rows.push(
    await measure("aiocoap 0.4.11 (the peer)", aiocoapPort, aiocoap.pid),
  );
} finally {
  await aiocoap.stop();
}
const libcoap = await startLibcoap();
try {
  rows.push(
    await measure("libcoap 4.3.1 coap-server", libcoap.port, libcoap.pid),
  );

  // The proxy's added latency, against the same libcoap.
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
    console.log(`
CoAP over UDP on 127.0.0.1: ${options.sockets} sockets × ${options.window} CON GETs of / in flight, ${options.seconds} s after 1 s of warm-up

| server | requests/s | server CPU a request | requests resent after 1 s |
| --- | --- | --- | --- |
${
      rows.map((row) =>
        `| ${row.name} | ${Math.round(row.rate).toLocaleString("en")} | ${
          row.cpuPerRequest.toFixed(1)
        } µs | ${row.resent} of ${row.requests.toLocaleString("en")} |`
      ).join("\n")
    }

The proxy's added latency: ${options.requests} sequential GETs of libcoap's /

| path | p50 | p99 |
| --- | --- | --- |
| our client → libcoap, UDP | ${format(percentile(directTimes, 0.5))} ms | ${
      format(percentile(directTimes, 0.99))
    } ms |
| our client → coap:proxy (WebSocket) → libcoap (UDP) | ${
      format(percentile(proxyTimes, 0.5))
    } ms | ${format(percentile(proxyTimes, 0.99))} ms |
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
