// Hostile peers against `deno task coap:server`, from outside, as an
// attacker would: over raw TCP and WebSocket frames on 127.0.0.1, against
// the server process exactly as a user starts it. One process takes every
// case in turn; after each, a bystander on a fresh connection must still be
// answered, and the server's log must hold no more than the case allows.
// Part of `deno task test:coap`. Every loop here is bounded in count and
// time, and stops by itself.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { Code, text, utf8 } from "../message.ts";
import { CSM, frame, get, join, RawWebSocket, read } from "./raw_ws.ts";
import {
  aiocoapClient,
  ourServerCommand,
  type Running,
  startOurServer,
} from "./peers.ts";
import { rss } from "./proc.ts";
import { testCertificates } from "./certificates.ts";

const network = { sanitizeOps: false, sanitizeResources: false };

/** Frames of raw bytes, each one WebSocket message. */
const raw = (...messages: number[][]) =>
  messages.map((m) => frame(new Uint8Array(m)));

/** A raw connection that keeps what it receives, decoded. */
async function open(
  port: number,
  headers: Record<string, string> = {},
): Promise<
  { socket: RawWebSocket; got: ReturnType<typeof read>[] }
> {
  const got: ReturnType<typeof read>[] = [];
  const socket = await RawWebSocket.connect(
    port,
    (payload) => got.push(read(payload.slice())),
    headers,
  );
  return { socket, got };
}

/** Resolves once `check` holds, or fails after `ms`. */
async function until(what: string, check: () => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A bystander: a fresh connection's GET /, and how long it took. */
async function bystander(port: number): Promise<number> {
  const started = performance.now();
  const { socket, got } = await open(port);
  try {
    await socket.send([CSM, get(1, "/")]);
    await until(
      "answer to the bystander",
      () => got.some((m) => m?.code === Code.CONTENT && m.token[0] === 1),
    );
    const answer = got.find((m) => m?.token[0] === 1)!;
    assertEquals(text(answer.payload), "Welcome to the demo server");
    return performance.now() - started;
  } finally {
    socket.close();
  }
}

/**
 * Each socket sends a CSM, then announces a 60 MiB frame and sends 59 MiB
 * of it; resolves with how many were cut off while still sending (the
 * server closed them: what a refusal as the header arrives looks like).
 */
async function mostOf60MiB(sockets: RawWebSocket[]): Promise<number> {
  const header = new Uint8Array(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  new DataView(header.buffer).setBigUint64(2, BigInt(60 << 20));
  const chunk = new Uint8Array(1 << 20);
  let cut = 0;
  await Promise.all(sockets.map(async (socket) => {
    try {
      await socket.sendBytes(frame(new Uint8Array([0x00, 0xe1])));
      await socket.sendBytes(header);
      for (let i = 0; i < 59; i++) await socket.sendBytes(chunk);
    } catch {
      cut++;
    }
  }));
  return cut;
}

/** The server's log lines since `from`. */
const since = (server: Running, from: number) => server.lines.slice(from);

/** Writes raw HTTP and reads what comes back until the server closes. */
async function http(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = new TextEncoder().encode(request);
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(1 << 16);
  const timer = setTimeout(() => conn.close(), 5_000);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
      // Enough once every response is in: the last ends its body.
      const seen = new TextDecoder().decode(join(chunks));
      if (seen.endsWith("\n") && /\r\n\r\n[^\r]*\n$/.test(seen)) {
        const expected = request.split("\r\n\r\n").length - 1;
        if (seen.split("HTTP/1.1 ").length - 1 >= expected) break;
      }
    }
  } catch { /* closed */ }
  clearTimeout(timer);
  try {
    conn.close();
  } catch { /* already */ }
  return new TextDecoder().decode(join(chunks));
}

Deno.test({
  name:
    "hostile peers against deno task coap:server, from outside: none ends the process, reaches it from a rebound name, floods its log or grows it without bound; a bystander is answered after each",
  ...network,
  async fn() {
    const server = await startOurServer();
    const { port, pid } = server;
    const report = (what: string, outcome: string) =>
      console.log(`  ok   [hostile -> coap:server] ${what}: ${outcome}`);
    try {
      // 1. A CSM with Max-Message-Size 0 (and one with an empty value,
      // which reads as 0), then a request: nothing fits, not even an
      // Abort; the connection is closed, with one log line.
      for (const csm of [[0x00, 0xe1, 0x21, 0x00], [0x00, 0xe1, 0x20]]) {
        const from = server.lines.length;
        const { socket, got } = await open(port);
        await socket.sendBytes(join(raw(csm, [0x00, 0x01])));
        await until("the close", () => socket.closeFrame !== undefined);
        socket.close();
        assertEquals(got.map((m) => m?.code), [Code.CSM]);
        await bystander(port);
        assertEquals(since(server, from), [
          "warn: Aborting the CoAP connection: Cannot answer: a 2.05 response of 30 bytes does not fit the peer's Max-Message-Size of 0",
        ]);
      }
      report(
        "Max-Message-Size 0, then GET (twice: 21 00 and an empty 20)",
        "connection closed without an Abort that could not fit, one log line",
      );

      // 2. Max-Message-Size 64, then a GET with an 8-byte token and an
      // unknown critical option: the 4.02 goes without its diagnostic.
      {
        const from = server.lines.length;
        const { socket, got } = await open(port);
        await socket.sendBytes(join(raw(
          [0x00, 0xe1, 0x21, 0x40],
          [0x08, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x90],
          [0x01, 0x01, 0x07],
        )));
        await until("the answers", () => got.length >= 3);
        assertEquals(
          got.map((m) => [m?.code, m?.token.length, m?.payload.length]),
          [[Code.CSM, 0, 0], [Code.BAD_OPTION, 8, 0], [Code.CONTENT, 1, 26]],
        );
        socket.close();
        await bystander(port);
        assertEquals(since(server, from), []);
        report(
          "Max-Message-Size 64, GET with an 8-byte token and option 9",
          "4.02 without its diagnostic, the connection goes on serving",
        );
      }

      // 3. DNS rebinding: a page on evil.example rebound to 127.0.0.1 sends
      // its own name as Host and its own origin: refused, logged once.
      {
        const from = server.lines.length;
        const evil = `evil.example:${port}`;
        for (let i = 0; i < 3; i++) {
          const refused = await open(port, {
            host: evil,
            origin: `http://${evil}`,
          }).then(() => "upgraded", (error) => String(error));
          assertEquals(
            refused,
            "Error: Upgrade refused: HTTP/1.1 403 Forbidden",
          );
        }
        const page = await http(
          port,
          `GET / HTTP/1.1\r\nHost: ${evil}\r\nConnection: close\r\n\r\n`,
        );
        assertMatch(page, /^HTTP\/1\.1 403 /);
        assertEquals(since(server, from), [
          `info: Refused a CoAP upgrade with 403: Host "evil.example" is not one this server answers to (start the server with --allowed-host "evil.example", or pass it in allowedHosts, to serve that name)`,
        ]);
        await bystander(port);
        report(
          "a DNS-rebinding page (Host and Origin evil.example)",
          "403, one info line",
        );
      }

      // 4. 200,000 responses with an unknown token on one connection:
      // past 1,000 within a second (maxIdleMessagesPerSecond) that
      // connection is aborted; three lines in all, and bystanders answered
      // meanwhile.
      {
        const from = server.lines.length;
        const { socket, got } = await open(port);
        const flood = join([
          frame(new Uint8Array([0x00, 0xe1])),
          ...Array.from(
            { length: 200_000 },
            () => frame(new Uint8Array([0x00, 0x45])),
          ),
        ]);
        let sent = false;
        const sending = socket.sendBytes(flood).catch(() => {})
          .finally(() => sent = true);
        const waits: number[] = [];
        const deadline = Date.now() + 10_000;
        do waits.push(await bystander(port)); while (
          !sent && Date.now() < deadline
        );
        await sending;
        await until("the Abort", () => got.at(-1)?.code === Code.ABORT);
        socket.close();
        await until(
          "the flood's count",
          () => since(server, from).some((l) => l.includes("more responses")),
        );
        const diagnostic =
          "More than 1000 messages that do no work (empty messages, responses to no request, repeated CSMs, Pings) within a second";
        assertEquals(text(got.at(-1)!.payload), diagnostic);
        assertEquals(since(server, from), [
          "warn: Ignoring a 2.05 response with unknown token (empty)",
          `warn: Aborting the CoAP connection: ${diagnostic}`,
          "warn: And 999 more responses with unknown tokens on this connection",
        ]);
        waits.push(await bystander(port));
        const most = Math.max(...waits);
        report(
          "200,000 responses with unknown tokens",
          `aborted after 1,000 within a second, 3 log lines; ${waits.length} bystanders meanwhile, the slowest answered in ${
            most.toFixed(1)
          } ms`,
        );
      }

      // 5. An Abort whose diagnostic would forge a line in colour.
      {
        const from = server.lines.length;
        const { socket } = await open(port);
        await socket.sendBytes(join([
          frame(new Uint8Array([0x00, 0xe1])),
          frame(
            new Uint8Array([
              0x00,
              0xe5,
              0xff,
              ...utf8("bye\nerror: FORGED \x1b[31mred\x1b[0m"),
            ]),
          ),
        ]));
        await until("the close", () => socket.closeFrame !== undefined);
        socket.close();
        await until(
          "the peer's Abort logged",
          () => since(server, from).length > 0,
        );
        assertEquals(since(server, from), [
          "warn: The peer aborted the CoAP connection: bye\\nerror: FORGED \\x1b[31mred\\x1b[0m",
        ]);
        await bystander(port);
        report(
          "an Abort with a newline and ANSI escapes in its diagnostic",
          "one line, escaped",
        );
      }

      // 7. An unfinished frame is not buffered whole: 4 connections each
      // announce a 60 MiB frame and send most of it. Each is closed with
      // 1009 as the header arrives (ws's maxPayload: the Max-Message-Size).
      {
        const from = server.lines.length;
        const before = await rss(pid);
        const sockets = await Promise.all(
          Array.from({ length: 4 }, () => open(port)),
        );
        const cut = await mostOf60MiB(sockets.map(({ socket }) => socket));
        await until(
          "the 1009s",
          () => sockets.every(({ socket }) => socket.closeFrame !== undefined),
        );
        const grown = (await rss(pid) - before) / 1e6;
        for (const { socket } of sockets) socket.close();
        assertEquals(
          sockets.map(({ socket }) => socket.closeFrame?.code),
          [1009, 1009, 1009, 1009],
        );
        assert(grown < 40, `RSS grew ${grown} MB`);
        assertEquals(since(server, from), []);
        await bystander(port);
        report(
          "4 connections each sending most of a 60 MiB frame",
          `closed with 1009 as the header arrived (${cut} of 4 cut off while still sending); RSS grew ${
            grown.toFixed(0)
          } MB`,
        );
      }

      // 8. Malformed upgrades: 400 with the reason, and each kind logged
      // once, never a stack, even 10,000 of them pipelined.
      {
        const from = server.lines.length;
        const noKey =
          `GET /.well-known/coap HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: coap\r\n\r\n`;
        const keepAlive =
          `GET /.well-known/coap HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: coap\r\n\r\n`;
        for (
          const [request, reason] of [
            [
              noKey,
              "A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64",
            ],
            [keepAlive, "A WebSocket upgrade needs Connection: Upgrade"],
          ]
        ) {
          const answer = await http(port, request);
          assertMatch(answer, /^HTTP\/1\.1 400 /);
          assert(answer.endsWith(`\r\n\r\n${reason}\n`), answer);
        }
        const pipelined = await http(port, keepAlive.repeat(10_000));
        const answers = pipelined.split("HTTP/1.1 400 ").length - 1;
        assertEquals(since(server, from), [
          "info: Refused a CoAP upgrade with 400: A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64",
          "info: Refused a CoAP upgrade with 400: A WebSocket upgrade needs Connection: Upgrade",
        ]);
        await bystander(port);
        report(
          "malformed upgrades (no key; Connection: keep-alive; 10,000 pipelined)",
          `400 with the reason (${answers} answers to the pipelined ones), 2 info lines, no stack`,
        );
      }

      // 6. Memory across connections: 6 connections, each 256 slow GETs
      // and then 32,000 POSTs of 1,152 bytes that it does not wait for.
      // The server holds at most maxHeldBytes (32 MiB) of them in all: the
      // connection holding most is aborted each time it is over.
      {
        const from = server.lines.length;
        const before = await rss(pid);
        const post = (token: number) =>
          frame(
            new Uint8Array([
              0x04,
              0x02,
              ...new Uint8Array(4).map((_, i) => token >> (24 - 8 * i)),
              0xb4,
              ...utf8("echo"),
              0xff,
              ...new Uint8Array(1_152 - 15),
            ]),
          );
        // 256 GETs of /slow?ms=60000, each on a token of its own.
        const slows = Array.from({ length: 256 }, (_, i) =>
          frame(
            new Uint8Array([
              0x02,
              0x01,
              i >> 8,
              i & 0xff,
              0xb4,
              ...utf8("slow"),
              0x48,
              ...utf8("ms=60000"),
            ]),
          ));
        const posts = join(
          Array.from({ length: 32_000 }, (_, i) => post(0x10000 + i)),
        );
        let peak = before;
        const sockets = await Promise.all(
          Array.from({ length: 6 }, () => open(port)),
        );
        // Each connection alone offers more than 32 MiB: once the server
        // has read it all, every one has been aborted, and has the Abort.
        const aborted = () =>
          sockets.filter(({ got }) => got.at(-1)?.code === Code.ABORT).length;
        const sampling = (async () => {
          while (aborted() < sockets.length) {
            peak = Math.max(peak, await rss(pid));
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })();
        await Promise.all(sockets.map(async ({ socket }) => {
          await socket.sendBytes(frame(new Uint8Array([0, 0xe1])));
          await socket.sendBytes(join(slows));
          await socket.sendBytes(posts).catch(() => {}); // cut off: fine
        }));
        await until("every connection aborted", () => aborted() === 6, 20_000);
        await sampling;
        await bystander(port);
        for (const { socket } of sockets) socket.close();
        const grown = (peak - before) / 1e6;
        const lines = since(server, from);
        const shed = lines.filter((l) => l.includes("maxHeldBytes"));
        report(
          "6 connections x (256 slow GETs + 32,000 POSTs of 1,149 bytes)",
          `each aborted past maxHeldBytes (32 MiB in all); RSS grew ${
            grown.toFixed(0)
          } MB at its peak`,
        );
        assertEquals(shed.length, 6, lines.join("\n"));
        // One line for the abort and one for what the flow did, each.
        assertEquals(lines.length, 12, lines.join("\n"));
        assert(grown < 150, `RSS grew ${grown} MB`);
        assertEquals(
          sockets.map(({ got }) => got.at(-1)?.code),
          Array(6).fill(Code.ABORT),
        );
      }

      // The process is still the one that started, and serves.
      await bystander(port);
      assertEquals(
        server.lines.filter((l) => /^\s+at |Uncaught|^error: /.test(l)),
        [],
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "deno task coap:server that cannot start says why in one line and exits 2: a port in use, a key that does not match its certificate, a file that is not PEM",
  ...network,
  async fn() {
    const first = await startOurServer();
    const dir = await Deno.makeTempDir({ prefix: "coap-start-" });
    try {
      const run = async (args: string[]) => {
        const { code, stderr } = await new Deno.Command(Deno.execPath(), {
          args: [...await ourServerCommand(), ...args],
          stdout: "null",
          stderr: "piped",
        }).output();
        return [code, new TextDecoder().decode(stderr).trimEnd()];
      };
      assertEquals(await run(["--port", String(first.port)]), [
        2,
        `Cannot listen on 127.0.0.1:${first.port}: the port is already in use`,
      ]);
      const openssl = (args: string[]) =>
        new Deno.Command("openssl", { args, stderr: "null", stdout: "null" })
          .output();
      for (const n of [1, 2]) {
        await openssl([
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          `${dir}/key${n}.pem`,
          "-out",
          `${dir}/cert${n}.pem`,
          "-days",
          "1",
          "-subj",
          "/CN=localhost",
        ]);
      }
      await Deno.writeTextFile(`${dir}/junk.pem`, "not a certificate\n");
      assertEquals(
        await run([
          "--port",
          "0",
          "--cert",
          `${dir}/cert1.pem`,
          "--key",
          `${dir}/key2.pem`,
        ]),
        [
          2,
          `Cannot serve TLS: the key does not match the certificate (--cert ${dir}/cert1.pem, --key ${dir}/key2.pem)`,
        ],
      );
      assertEquals(
        await run([
          "--port",
          "0",
          "--cert",
          `${dir}/junk.pem`,
          "--key",
          `${dir}/junk.pem`,
        ]),
        [
          2,
          `Cannot serve TLS: No certificates found in certificate data (--cert ${dir}/junk.pem, --key ${dir}/junk.pem must be PEM)`,
        ],
      );
      console.log(
        "  ok   [start-up] a port in use, a mismatched key, a garbage PEM: one line each, exit 2",
      );
    } finally {
      await first.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "deno task coap:server lets go of a connection ws closed for a frame over the Max-Message-Size within a second, even when the peer never answers the close: 40 such peers do not use up 20 places (found by the fuzzer)",
  ...network,
  async fn() {
    const server = await startOurServer([
      "--limit",
      "maxConnectionsPerAddress=20",
    ]);
    try {
      const header = new Uint8Array(8);
      header[0] = 0x82;
      header[1] = 0x80 | 126;
      header[2] = 2000 >> 8;
      header[3] = 2000 & 0xff;
      for (let i = 0; i < 40; i++) {
        const { socket } = await open(server.port);
        await socket.sendBytes(header).catch(() => {});
        await until("the 1009", () => socket.closeFrame !== undefined);
        assertEquals(socket.closeFrame?.code, 1009);
        socket.pause(); // it reads no more, and never answers the close
        await new Promise((resolve) => setTimeout(resolve, 60));
        socket.close();
      }
      await bystander(server.port);
      console.log(
        "  ok   [hostile -> coap:server] 40 peers each closed with 1009 and never answering: each let go within a second; a bystander admitted (limit 20 an address)",
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "deno task coap:server serves the explorer at / on its own origin, its field set to the server, to the names it answers to only; --no-explorer does not",
  ...network,
  async fn() {
    const server = await startOurServer();
    const bare = await startOurServer(["--no-explorer"]);
    try {
      const own = `coap+ws://127.0.0.1:${server.port}`;
      const root = await fetch(`http://127.0.0.1:${server.port}/`, {
        redirect: "manual",
      });
      await root.body?.cancel();
      assertEquals(
        [root.status, root.headers.get("location")],
        [302, `/?server=${encodeURIComponent(own)}`],
      );
      const page = await fetch(
        `http://127.0.0.1:${server.port}/?server=${encodeURIComponent(own)}`,
      );
      assertEquals(
        [page.status, page.headers.get("content-type")],
        [200, "text/html; charset=utf-8"],
      );
      assertMatch(
        page.headers.get("content-security-policy") ?? "",
        /^default-src 'none'; script-src 'self'/,
      );
      assertMatch(await page.text(), /<title>CoAP explorer<\/title>/);
      const rebound = await http(
        server.port,
        `GET / HTTP/1.1\r\nHost: evil.example:${server.port}\r\nConnection: close\r\n\r\n`,
      );
      assertMatch(rebound, /^HTTP\/1\.1 403 /);
      const none = await fetch(`http://127.0.0.1:${bare.port}/`);
      assertEquals(
        [none.status, (await none.text()).trim()],
        [404, "CoAP over WebSocket is served at /.well-known/coap"],
      );
      await bystander(server.port);
      console.log(
        "  ok   [explorer] coap:server: / goes to /?server=its own address, the page under its policy, 403 for a rebound name; --no-explorer: 404",
      );
    } finally {
      await server.stop();
      await bare.stop();
    }
  },
});

Deno.test({
  name:
    "deno task coap:server --cert (ws on node:https, ALPN http/1.1): over TLS a frame over the Max-Message-Size is refused as its header arrives (4 connections each sending most of 60 MiB get 1009, and go at once), and a client that offers ALPN and aiocoap-client are served",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "coap-tls-hostile-" });
    const { ca, cert, key } = await testCertificates(dir);
    await Deno.writeTextFile(`${dir}/cert.pem`, cert);
    await Deno.writeTextFile(`${dir}/key.pem`, key);
    const caPem = await Deno.readTextFile(ca);
    const server = await startOurServer([
      "--cert",
      `${dir}/cert.pem`,
      "--key",
      `${dir}/key.pem`,
      "--no-explorer",
    ]);
    try {
      const pid = server.pid;
      // A client that offers ALPN (as Deno's WebSocket and browsers do)
      // gets http/1.1 and its answer.
      const got: ReturnType<typeof read>[] = [];
      const plain = await RawWebSocket.connect(
        server.port,
        (payload) => got.push(read(payload.slice())),
        {},
        "/.well-known/coap",
        [caPem],
      );
      await plain.send([CSM, get(1, "/")]);
      await until(
        "an answer over TLS",
        () => got.some((m) => m?.token[0] === 1),
      );
      assertEquals(
        text(got.find((m) => m?.token[0] === 1)!.payload),
        "Welcome to the demo server",
      );
      plain.close();
      // aiocoap-client over TLS too (Python's ssl offers no ALPN here).
      const theirs = await aiocoapClient(
        [`coaps+ws://localhost:${server.port}/`],
        undefined,
        { SSL_CERT_FILE: ca },
      );
      assertEquals([theirs.code, theirs.stdout], [
        0,
        "Welcome to the demo server",
      ], theirs.stderr);
      const from = server.lines.length;
      const before = await rss(pid);
      const sockets = await Promise.all(
        Array.from(
          { length: 4 },
          () =>
            RawWebSocket.connect(
              server.port,
              undefined,
              {},
              "/.well-known/coap",
              [caPem],
            ),
        ),
      );
      const cut = await mostOf60MiB(sockets);
      await until(
        "the 1009s",
        () => sockets.every((socket) => socket.closeFrame !== undefined),
      );
      const grown = (await rss(pid) - before) / 1e6;
      for (const socket of sockets) socket.close();
      assertEquals(
        sockets.map((socket) => socket.closeFrame?.code),
        [1009, 1009, 1009, 1009],
      );
      // Buffered whole, the four frames were 240 MB (258 MB of growth was
      // seen before the socket went at once); TLS's own buffers take more
      // room than plain TCP's, so the bound is a little wider than there.
      assert(grown < 48, `RSS grew ${grown} MB`);
      assertEquals(since(server, from), []);
      console.log(
        `  ok   [hostile -> coap:server --cert] 4 connections each sending most of a 60 MiB frame over TLS: closed with 1009 as the header arrived (${cut} of 4 cut off while still sending); RSS grew ${
          grown.toFixed(0)
        } MB`,
      );
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
