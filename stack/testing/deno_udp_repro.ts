// Two costs of Deno 2.9's UDP, reduced to a few lines each, for an upstream
// report (no report of either was found: the nearest are denoland/deno
// #12822, lost datagrams, and #13625, a receive buffer size for
// Deno.listenDatagram). On 127.0.0.1 only, bounded:
//   deno run --allow-net=127.0.0.1 --allow-run --allow-read --unstable-net stack/testing/deno_udp_repro.ts
// 1. node:dgram reads every datagram into a fresh, zeroed buffer of 64 KiB
//    (its `recvBufferSize`, which setRecvBufferSize() changes without
//    touching the kernel's): an echo server's CPU a datagram with the
//    default and with setRecvBufferSize(1024).
// 2. Datagrams sent within one turn of the event loop go out after it, all
//    at once: 20,000 sent in one turn to 2,000 sockets of a Node.js
//    process (10 each, far below any socket's buffer) against the same
//    sent 256 a turn; how many arrive.

import dgram from "node:dgram";
import { cpuMs } from "./proc.ts";

const payload = new Uint8Array(40);

async function echoCost(small: boolean): Promise<number> {
  const server = dgram.createSocket("udp4");
  server.on("message", (message, from) => {
    server.send(message, from.port, from.address);
  });
  await new Promise<void>((resolve) => server.bind(0, "127.0.0.1", resolve));
  if (small) server.setRecvBufferSize(1024);
  const port = server.address().port;
  // The client: a Node.js process, so that its CPU is not Deno's.
  const client = new Deno.Command("node", {
    args: [
      "-e",
      `
      const s = require("node:dgram").createSocket("udp4");
      let n = 0;
      s.on("message", () => { if (++n < 100000) s.send(Buffer.alloc(40), ${port}, "127.0.0.1"); else process.exit(0); });
      s.bind(0, "127.0.0.1", () => { for (let i = 0; i < 16; i++) s.send(Buffer.alloc(40), ${port}, "127.0.0.1"); });
    `,
    ],
  }).spawn();
  const before = await cpuMs(Deno.pid);
  await client.status;
  const cost = (await cpuMs(Deno.pid) - before) * 1000 / 100_000;
  server.close();
  return cost;
}

async function burst(perTurn: number): Promise<number> {
  const receivers = new Deno.Command("node", {
    args: [
      "-e",
      `
      const dgram = require("node:dgram");
      let got = 0; const ports = [];
      (async () => {
        for (let i = 0; i < 2000; i++) {
          const s = dgram.createSocket("udp4");
          s.on("message", () => got++);
          await new Promise((r) => s.bind(0, "127.0.0.1", r));
          ports.push(s.address().port);
        }
        console.log(JSON.stringify(ports));
        setTimeout(() => { console.log(got); process.exit(0); }, 4000);
      })();
    `,
    ],
    stdout: "piped",
  }).spawn();
  const reader = receivers.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  let text = "";
  while (!text.includes("\n")) text += (await reader.read()).value ?? "";
  const ports: number[] = JSON.parse(text.slice(0, text.indexOf("\n")));
  const sender = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => sender.bind(0, "127.0.0.1", resolve));
  const all = ports.flatMap((port) => Array(10).fill(port));
  for (let i = 0; i < all.length;) {
    const end = Math.min(all.length, i + perTurn);
    for (; i < end; i++) sender.send(payload, all[i], "127.0.0.1");
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  text = text.slice(text.indexOf("\n") + 1);
  while (!text.trim()) text += (await reader.read()).value ?? "";
  await receivers.status;
  sender.close();
  return Number(text.trim());
}

console.log(
  `1. node:dgram echo, CPU a datagram: ${
    (await echoCost(false)).toFixed(1)
  } µs with the 64 KiB default, ${
    (await echoCost(true)).toFixed(1)
  } µs after setRecvBufferSize(1024)`,
);
console.log(
  `2. 20,000 datagrams to 2,000 sockets: ${await burst(
    20_000,
  )} arrived sent in one turn, ${await burst(256)} sent 256 a turn`,
);
