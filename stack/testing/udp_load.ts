// `bench:udp`'s load generator, in a process of its own so that it runs on
// the cheapest runtime present (Bun on Bun.udpSocket, else Node.js on
// node:dgram) and the harness's own work is not in its way:
//   bun|node udp_load.mjs PORT SOCKETS WINDOW WARM_MS MS
// Each of SOCKETS sockets keeps WINDOW CON GETs of / in flight against
// 127.0.0.1:PORT, as raw datagrams (so no client's own limits such as
// NSTART are in the figure): WARM_MS of warm-up, then it prints
// "measuring", then MS of measurement, then one JSON line
// {"requests","seconds","resent"} and exits. A socket answers a 4.01 with
// Echo as libcoap's client does (RFC 9175): the next requests carry the
// Echo value until an answer comes without one. A request unanswered
// after 1 s is sent afresh and counted as resent.

import { openPeerSocket } from "./udp_peer_socket.ts";

declare const process: { argv: string[] };
const [port, sockets, window, warmMs, ms] = (globalThis.Deno?.args ??
  process.argv.slice(2)).map(Number);

let completed = 0, resent = 0, running = true;

/** Parses an answer; returns its message ID, code and Echo, if any. */
function read(
  bytes: Uint8Array,
): { id: number; code: number; echo?: Uint8Array } | undefined {
  if (bytes.length < 4 || (bytes[0] & 0xf0) !== 0x60) return undefined; // ACK
  const id = (bytes[2] << 8) | bytes[3];
  const code = bytes[1];
  let at = 4 + (bytes[0] & 0x0f);
  let number = 0;
  while (at < bytes.length && bytes[at] !== 0xff) {
    let delta = bytes[at] >> 4, length = bytes[at] & 0x0f;
    at++;
    if (delta === 13) delta = 13 + bytes[at++];
    else if (delta === 14) {
      delta = 269 + ((bytes[at] << 8) | bytes[at + 1]);
      at += 2;
    }
    if (length === 13) length = 13 + bytes[at++];
    else if (length === 14) {
      length = 269 + ((bytes[at] << 8) | bytes[at + 1]);
      at += 2;
    }
    number += delta;
    if (number === 252) return { id, code, echo: bytes.slice(at, at + length) };
    at += length;
  }
  return { id, code };
}

/** A CON GET of / with `id`, token [s, id & 0xff], and `echo`. */
function request(s: number, id: number, echo?: Uint8Array): Uint8Array {
  const echoSize = echo === undefined
    ? 0
    : echo.length < 13
    ? 2 + echo.length
    : 3 + echo.length;
  const bytes = new Uint8Array(6 + echoSize);
  bytes[0] = 0x42; // version 1, CON, token of 2
  bytes[1] = 0x01; // GET
  bytes[2] = id >> 8;
  bytes[3] = id & 0xff;
  bytes[4] = s;
  bytes[5] = id & 0xff;
  if (echo !== undefined) {
    // Echo is option 252: delta 13 + 239.
    if (echo.length < 13) {
      bytes[6] = 0xd0 | echo.length;
      bytes[7] = 239;
      bytes.set(echo, 8);
    } else {
      bytes[6] = 0xdd;
      bytes[7] = 239;
      bytes[8] = echo.length - 13;
      bytes.set(echo, 9);
    }
  }
  return bytes;
}

const open = (onAnswer: (bytes: Uint8Array) => void) =>
  openPeerSocket(port, onAnswer);

const opened = await Promise.all(
  Array.from({ length: sockets }, async (_, s) => {
    let id = s * 4096;
    let echo: Uint8Array | undefined;
    const waiting = new Map<number, number>(); // message ID → sent at
    const send = () => {
      id = (id + 1) & 0xffff;
      waiting.set(id, performance.now());
      socket.send(request(s, id, echo));
    };
    const socket = await open((bytes) => {
      const answer = read(bytes);
      if (answer === undefined || !waiting.delete(answer.id)) return;
      if (answer.code === 0x81 && answer.echo !== undefined) {
        echo = answer.echo;
      } else if (answer.code >> 5 === 2) {
        completed++;
        echo = undefined;
      }
      if (running) send();
    });
    for (let i = 0; i < window; i++) send();
    const sweep = setInterval(() => {
      const now = performance.now();
      for (const [lost, at] of waiting) {
        if (now - at > 1000) {
          waiting.delete(lost);
          resent++;
          if (running) send();
        }
      }
    }, 250);
    return { socket, sweep };
  }),
);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
await sleep(warmMs);
console.log("measuring");
const before = completed, resentBefore = resent, started = performance.now();
await sleep(ms);
const seconds = (performance.now() - started) / 1000;
const requests = completed - before;
running = false;
for (const { socket, sweep } of opened) {
  clearInterval(sweep);
  socket.close();
}
console.log(
  JSON.stringify({ requests, seconds, resent: resent - resentBefore }),
);
// Nothing is left open: the process ends by itself, once its line is
// written (process.exit() could end Bun before a piped stdout was).
