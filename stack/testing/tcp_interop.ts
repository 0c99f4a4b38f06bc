// CoAP over TCP and TLS (RFC 8323) against libcoap, on 127.0.0.1 only
// (part of `deno task test:coap`): libcoap's coap-client against
// `coap:server --tcp-port` (GET, block-wise uploads read back, filters,
// Observe), ours against libcoap's coap-server over TCP, ours and libcoap's
// OpenSSL client over TLS with `--cert`, the proxy forwarding to a
// coap+tcp:// device, and what a hostile stream gets. Needs libcoap3-bin.

import { assert, assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { connectCoapTcp, serveCoapTcp } from "../tcp_node.ts";
import { CoapServer } from "../server.ts";
import {
  aiocoapClient,
  freePort,
  libcoapClient,
  requireLibcoap,
  requirePeer,
  startLibcoap,
  startOurProxy,
  startOurServer,
} from "./peers.ts";
import { ask, uploadBody } from "./ask.ts";
import { testCertificates } from "./certificates.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };

const table: string[] = [];

Deno.test({
  name:
    "CoAP over TCP: libcoap's coap-client against coap:server --tcp-port (GET, PUT -f with -b 16 and -b 1024 read back, a filtered /.well-known/core, Observe), and aiocoap-client (a PUT in BERT blocks, GET /big); ours against libcoap's coap-server over TCP (GET, a 100,000-byte PUT read back, Observe)",
  ...network,
  async fn() {
    await requireLibcoap();
    await requirePeer();
    const tcpPort = freePort();
    const server = await startOurServer([
      "--tcp-port",
      String(tcpPort),
      "--no-explorer",
    ]);
    const device = await startLibcoap();
    const dir = await Deno.makeTempDir();
    try {
      await server.waitFor(new RegExp(`^tcp on ${tcpPort}$`));
      const uri = `coap+tcp://127.0.0.1:${tcpPort}`;
      assertEquals(
        await libcoapClient(["-m", "get", `${uri}/`]),
        "Welcome to the demo server\n",
      );
      table.push(
        "| libcoap → ours | GET / | 2.05 Welcome to the demo server |",
      );
      const upload = uploadBody(2990);
      const file = `${dir}/body.txt`;
      await Deno.writeTextFile(file, upload);
      for (const size of ["16", "1024"]) {
        assertEquals(
          await libcoapClient([
            "-m",
            "put",
            "-f",
            file,
            "-b",
            size,
            `${uri}/echo`,
          ]),
          `${upload}\n`,
          `-b ${size}`,
        );
        table.push(
          `| libcoap → ours | PUT /echo, 2,990 B, -b ${size} | 2.04, the same bytes back |`,
        );
      }
      assertEquals(
        await libcoapClient(["-m", "get", `${uri}/.well-known/core?rt=ticks`]),
        '</time>;obs;title="Internal Clock";rt="ticks";if="clock";ct="0"\n',
      );
      table.push(
        "| libcoap → ours | GET /.well-known/core?rt=ticks | /time alone |",
      );
      // aiocoap's client over TCP: it sends BERT blocks (RFC 8323 §6) even
      // to a server that does not offer them; they are taken.
      const tcp = { AIOCOAP_CLIENT_TRANSPORT: "tcpclient" };
      const put = await aiocoapClient(
        ["-m", "PUT", "--payload", `@${file}`, `${uri}/echo`],
        undefined,
        tcp,
      );
      assertEquals([put.code, put.stdout], [0, upload], put.stderr);
      const big = await aiocoapClient([`${uri}/big`], undefined, tcp);
      assertEquals(big.stdout.trimEnd().length, 4200 - 1, big.stderr);
      table.push(
        "| aiocoap → ours | PUT /echo, 2,990 B (BERT blocks); GET /big | 2.04, the same bytes back; 4,200 bytes |",
      );
      const counter = await libcoapClient([
        "-s",
        "2",
        "-m",
        "get",
        `${uri}/counter`,
      ]);
      assert(
        /^\d+$/.test(counter.trim()) && counter.trim().length >= 5,
        counter,
      );
      table.push(
        "| libcoap → ours | Observe /counter for 2 s | notifications |",
      );

      const client = await connectCoapTcp(
        `coap+tcp://127.0.0.1:${device.port}`,
        { log: quiet },
      );
      try {
        const index = await ask(client, { method: "GET", path: "/" });
        assert(
          index[0].startsWith("2.05 This is a test server made with libcoap"),
          index[0],
        );
        const big = uploadBody(100_000);
        assertEquals(
          await ask(client, { method: "PUT", path: "/tcp", payload: big }),
          ["2.01 "],
        );
        const back = await ask(client, { method: "GET", path: "/tcp" });
        assertEquals(back[0] === `2.05 ${big}`, true, back[0].slice(0, 80));
        const times = await ask(
          client,
          { method: "GET", path: "/time", observe: true },
          2,
        );
        assertEquals(times.length, 2);
        table.push(
          "| ours → libcoap | GET /, PUT 100,000 B and GET it, Observe /time | 2.05, 2.01, the same bytes, 2 notifications |",
        );
      } finally {
        client.close();
      }
    } catch (error) {
      console.log(`the server printed:\n${server.lines.join("\n")}`);
      throw error;
    } finally {
      await server.stop();
      await device.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "CoAP over TLS (coaps+tcp://, ALPN coap): coap:server --tcp-port with --cert answers our client (trusting the test CA) and libcoap's OpenSSL client",
  ...network,
  async fn() {
    await requireLibcoap();
    const dir = await Deno.makeTempDir();
    const certs = await testCertificates(dir);
    await Deno.writeTextFile(`${dir}/server.pem`, certs.cert);
    await Deno.writeTextFile(`${dir}/server.key`, certs.key);
    const tcpPort = freePort();
    const server = await startOurServer([
      "--tcp-port",
      String(tcpPort),
      "--cert",
      `${dir}/server.pem`,
      "--key",
      `${dir}/server.key`,
      "--no-explorer",
    ]);
    try {
      await server.waitFor(new RegExp(`^tcp on ${tcpPort}$`));
      const uri = `coaps+tcp://127.0.0.1:${tcpPort}`;
      const client = await connectCoapTcp(uri, {
        log: quiet,
        caCerts: [await Deno.readTextFile(certs.ca)],
      });
      try {
        assertEquals(await ask(client, { method: "GET", path: "/" }), [
          "2.05 Welcome to the demo server",
        ]);
        const upload = uploadBody(3000);
        assertEquals(
          await ask(client, { method: "PUT", path: "/echo", payload: upload }),
          [`2.04 ${upload}`],
        );
      } finally {
        client.close();
      }
      table.push(
        "| ours → ours | coaps+tcp://: GET /, PUT 3,000 B | 2.05, 2.04 with the same bytes |",
      );
      // Without the CA, the certificate is refused.
      let refused = "";
      try {
        (await connectCoapTcp(uri, { log: quiet })).close();
      } catch (error) {
        refused = (error as Error).message;
      }
      assert(/certificate/i.test(refused), refused);
      const openssl = await new Deno.Command("coap-client-openssl", {
        args: ["-m", "get", `${uri}/`],
        stdout: "piped",
        stderr: "piped",
      }).output().catch(() => undefined);
      if (openssl === undefined) {
        console.log("  coap-client-openssl is not installed: skipped");
      } else {
        assertEquals(
          new TextDecoder().decode(openssl.stdout),
          "Welcome to the demo server\n",
          new TextDecoder().decode(openssl.stderr),
        );
        table.push(
          "| libcoap (OpenSSL) → ours | coaps+tcp:// GET / | 2.05 Welcome to the demo server |",
        );
      }
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "coap:proxy forwards to a coap+tcp:// device it was allowed (--allow coap+tcp://HOST:PORT), and not to its UDP port under a bare HOST:PORT",
  ...network,
  async fn() {
    await requireLibcoap();
    const device = await startLibcoap();
    const proxy = await startOurProxy([
      "--allow",
      `coap+tcp://127.0.0.1:${device.port}`,
      "--no-explorer",
    ]);
    const client = await CoapClient.connect(
      `coap+ws://127.0.0.1:${proxy.port}`,
      { log: quiet },
    );
    try {
      const through = (proxyUri: string) => ({
        method: "GET" as const,
        path: "/",
        proxyUri,
      });
      const index = await ask(
        client,
        through(`coap+tcp://127.0.0.1:${device.port}/`),
      );
      assert(
        index[0].startsWith("2.05 This is a test server made with libcoap"),
        index[0],
      );
      const udp = await ask(
        client,
        through(`coap://127.0.0.1:${device.port}/`),
      );
      assert(udp[0].startsWith("4.03 Forbidden"), udp[0]);
      table.push(
        "| ours → proxy → libcoap | GET coap+tcp://…/ through coap:proxy | 2.05; its coap:// URI 4.03 |",
      );
    } finally {
      client.close();
      await proxy.stop();
      await device.stop();
    }
  },
});

Deno.test({
  name:
    "CoAP over TCP, hostile streams: a length past Max-Message-Size gets an Abort with the reason and the connection closed; a token length past 8 the same; a stream cut mid-message closes only that connection; one log line a second at most; the server goes on",
  ...network,
  async fn() {
    const tcpPort = freePort();
    const server = await startOurServer([
      "--tcp-port",
      String(tcpPort),
      "--no-explorer",
    ]);
    try {
      await server.waitFor(new RegExp(`^tcp on ${tcpPort}$`));
      const from = server.lines.length;
      const exchange = async (bytes: Uint8Array, cut = false) => {
        const conn = await Deno.connect({
          hostname: "127.0.0.1",
          port: tcpPort,
        });
        await conn.write(bytes);
        if (cut) conn.closeWrite();
        const got: number[] = [];
        const buffer = new Uint8Array(4096);
        const deadline = setTimeout(() => conn.close(), 3000);
        try {
          for (;;) {
            const n = await conn.read(buffer);
            if (n === null) break;
            got.push(...buffer.subarray(0, n));
          }
        } catch { /* closed by the deadline */ }
        clearTimeout(deadline);
        try {
          conn.close();
        } catch { /* closed */ }
        return new Uint8Array(got);
      };
      const csm = new Uint8Array([0x00, 0xe1]);
      // A CSM, then a length field of 4 bytes saying 1 GB.
      const big = await exchange(
        new Uint8Array([...csm, 0xf0, 0x3b, 0x9a, 0xca, 0x00]),
      );
      const text = new TextDecoder().decode(big);
      assert(
        text.includes("exceeds Max-Message-Size 1152"),
        JSON.stringify(text),
      );
      // A CSM, then bytes that are no message (a token length of 15).
      const garbage = new TextDecoder().decode(
        await exchange(new Uint8Array([...csm, 0x0f, 0x01])),
      );
      assert(
        garbage.includes("Malformed message: token length 15 (at most 8)"),
        JSON.stringify(garbage),
      );
      // Half a message, then the end of the stream.
      await exchange(new Uint8Array([...csm, 0x51, 0x01, 0x07]), true);
      const after = await connectCoapTcp(`coap+tcp://127.0.0.1:${tcpPort}`, {
        log: quiet,
      });
      try {
        assertEquals(await ask(after, { method: "GET", path: "/" }), [
          "2.05 Welcome to the demo server",
        ]);
      } finally {
        after.close();
      }
      // One line for the first abort; the second, within the same second
      // or not, at most one more; the cut stream none.
      const lines = server.lines.slice(from);
      assert(lines.length >= 1 && lines.length <= 2, lines.join("\n"));
      assert(
        /^warn: Aborting a CoAP-over-TCP connection from "127\.0\.0\.1": Message of \d+ bytes exceeds Max-Message-Size 1152$/
          .test(lines[0]),
        lines[0],
      );
      table.push(
        "| raw TCP → ours | a 1 GB length, garbage, a cut message | Abort with the reason, that connection closed; the server answers the next |",
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name: "CoAP over TCP and TLS: the interop table",
  fn() {
    console.log(
      ["| who | what | outcome |", "| --- | --- | --- |", ...table].join("\n"),
    );
  },
});

Deno.test({
  name:
    "serveCoapTcp closes a connection that sends no CSM within handshakeTimeout, with an Abort saying so and one log line for twenty such; one that does goes on",
  ...network,
  async fn() {
    const lines: string[] = [];
    const server = new CoapServer({ "/": { GET: () => ({ payload: "hi" }) } }, {
      log: { ...quiet, warn: (line: unknown) => lines.push(String(line)) },
    });
    const serving = await serveCoapTcp(server, {
      port: 0,
      handshakeTimeout: 200,
    });
    try {
      // Twenty more that say nothing either: one log line for all of them.
      const others = await Promise.all(
        Array.from(
          { length: 20 },
          () => Deno.connect({ hostname: "127.0.0.1", port: serving.port }),
        ),
      );
      const silent = await Deno.connect({
        hostname: "127.0.0.1",
        port: serving.port,
      });
      const got: number[] = [];
      const buffer = new Uint8Array(1024);
      const started = performance.now();
      for (;;) {
        const n = await silent.read(buffer);
        if (n === null) break;
        got.push(...buffer.subarray(0, n));
      }
      const ms = performance.now() - started;
      silent.close();
      for (const other of others) other.close();
      assert(ms >= 150 && ms < 2000, `${ms} ms`);
      assertEquals(lines, [
        'Aborting a CoAP-over-TCP connection from "127.0.0.1": No CSM within 200 ms',
      ]);
      assert(
        new TextDecoder().decode(new Uint8Array(got)).includes(
          "No CSM within 200 ms",
        ),
      );
      const client = await connectCoapTcp(
        `coap+tcp://127.0.0.1:${serving.port}`,
        { log: quiet },
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      assertEquals(await ask(client, { method: "GET", path: "/" }), [
        "2.05 hi",
      ]);
      client.close();
    } finally {
      await serving.close();
    }
  },
});

Deno.test({
  name:
    "connectCoapTcp() refuses a connection that came back to itself: bound to the port it connects to, where nothing listens, TCP's simultaneous open connects it to itself, and it fails in words where it answered its own GET 4.04",
  ...network,
  async fn() {
    const port = freePort();
    let said: string;
    try {
      const client = await connectCoapTcp(`coap+tcp://127.0.0.1:${port}`, {
        log: quiet,
        bind: { hostname: "127.0.0.1", port },
        connectTimeout: 2000,
      });
      said = "no answer";
      for await (const event of client.request({ method: "GET", path: "/" })) {
        said = event.kind === "response"
          ? `answered ${event.message.code}`
          : `${event.kind}`;
        break;
      }
      client.close();
    } catch (error) {
      said = (error as Error).message;
    }
    assertEquals(
      said,
      `Cannot connect to coap+tcp://127.0.0.1:${port}: nothing listens there (the connection came back to this client's own port)`,
    );
  },
});
