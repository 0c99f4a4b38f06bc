// The floor for `bench:udp`: a bare CoAP-over-UDP answerer, no stack at all.
// For every datagram that looks like a CON request it sends back an ACK
// 2.05 with the request's message ID and token and the demo server's
// welcome text: what any server must at least do per request, on one
// socket API. Runs on Deno, Node.js and Bun:
//   node|bun|deno run -A udp_echo.mjs PORT [node|deno|bun]
// `node` is `node:dgram` (every runtime has it), `deno` Deno's
// `Deno.listenDatagram` (Deno with --unstable-net), `bun` Bun's
// `Bun.udpSocket`. Prints "udp on PORT" once it listens.

import dgram from "node:dgram";

const port = Number(globalThis.Deno?.args[0] ?? process.argv[2]);
const api = (globalThis.Deno?.args[1] ?? process.argv[3]) ?? "node";
const welcome = new TextEncoder().encode("Welcome to the demo server");

/** The ACK for `request`, or undefined when it is no CON request. */
function answer(request: Uint8Array): Uint8Array | undefined {
  if (request.length < 4 || (request[0] & 0xf0) !== 0x40) return undefined;
  const tokenLength = request[0] & 0x0f;
  if (tokenLength > 8 || request.length < 4 + tokenLength) return undefined;
  const reply = new Uint8Array(4 + tokenLength + 2 + welcome.length);
  reply[0] = 0x60 | tokenLength; // version 1, ACK
  reply[1] = 0x45; // 2.05
  reply[2] = request[2];
  reply[3] = request[3];
  reply.set(request.subarray(4, 4 + tokenLength), 4);
  let at = 4 + tokenLength;
  reply[at++] = 0xc0; // Content-Format (12), length 0: text/plain
  reply[at++] = 0xff;
  reply.set(welcome, at);
  return reply;
}

declare const process: { argv: string[] };
declare const Bun: {
  udpSocket(options: {
    hostname: string;
    port: number;
    socket: {
      data(
        socket: { send(data: Uint8Array, port: number, address: string): void },
        data: Uint8Array,
        port: number,
        address: string,
      ): void;
    };
  }): Promise<unknown>;
};

if (api === "deno") {
  // deno-lint-ignore no-explicit-any
  const conn = (Deno as any).listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port,
  });
  console.log(`udp on ${port}`);
  for await (const [bytes, from] of conn) {
    const reply = answer(bytes);
    if (reply !== undefined) conn.send(reply, from).catch(() => {});
  }
} else if (api === "bun") {
  await Bun.udpSocket({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(socket, data, port, address) {
        const reply = answer(data);
        if (reply !== undefined) socket.send(reply, port, address);
      },
    },
  });
  console.log(`udp on ${port}`);
} else {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (message: Uint8Array, from) => {
    const reply = answer(message);
    if (reply !== undefined) socket.send(reply, from.port, from.address);
  });
  socket.bind(port, "127.0.0.1", () => {
    if (globalThis.Deno !== undefined && process.argv?.[4] !== "64k") {
      socket.setRecvBufferSize(1024);
    }
    console.log(`udp on ${port}`);
  });
}
