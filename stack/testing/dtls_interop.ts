// CoAP over DTLS 1.2 with a pre-shared key (TLS_PSK_WITH_AES_128_CCM_8)
// against libcoap 4.3.1's OpenSSL and GnuTLS builds, on 127.0.0.1 only
// (part of `deno task test:coap`): our client against coap-server-openssl
// and coap-server-gnutls (GET, an observation, a wrong key refused with a
// clear error), their clients against `coap:server --dtls-port` (GET, POST,
// an observation, a wrong key and an unknown identity refused), and a
// flood of ClientHellos from many sources against the server: a cookie
// each, no session, flat memory, and a bystander served throughout.

import { assert, assertEquals, assertRejects } from "@std/assert";
import dgram from "node:dgram";
import type { Logger } from "@coap/pipe";
import { connectCoapDtls, serveCoapDtls } from "../dtls_node.ts";
import { CoapContext } from "../context_node.ts";
import { CoapServer, Observers } from "../server.ts";
import { DtlsEndpoint, DtlsError } from "../dtls.ts";
import { loadCertificate, loadPublicKeys } from "../dtls_node.ts";
import { pemBlocks } from "../x509.ts";
import { ask } from "./ask.ts";
import {
  freeUdpPort,
  libcoapClient,
  ourServerCommand,
  requireLibcoap,
  type Running,
  spawn,
  startOurProxy,
  startOurServer,
} from "./peers.ts";
import { rss } from "./proc.ts";
import { CoapClient } from "../client.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };
const KEY = "secretPSK";
const psk = { identity: "user", key: KEY };

/** libcoap's server of one build, with a PSK; its coaps:// port. */
async function startLibcoapDtls(
  build: "openssl" | "gnutls",
): Promise<Running & { dtls: number }> {
  await requireLibcoap();
  // coaps:// is on the port after coap://'s; both must be free.
  let port = 0;
  for (let i = 0; i < 20; i++) {
    port = await freeUdpPort();
    if (port < 65535) break;
  }
  const server = spawn(`coap-server-${build}`, [
    "-A",
    "127.0.0.1",
    "-p",
    String(port),
    "-k",
    KEY,
    "-h",
    "hint",
    "-d",
    "10",
  ], port);
  const uri = `coaps://127.0.0.1:${port + 1}`;
  for (let i = 0; i < 40; i++) {
    try {
      const client = await connectCoapDtls(uri, {
        psk,
        log: quiet,
        dtls: { handshakeTimeout: 1000 },
      });
      client.close();
      return Object.assign(server, { dtls: port + 1 });
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  await server.stop();
  throw new Error(`coap-server-${build} did not answer DTLS on ${port + 1}`);
}

/** Runs a libcoap client build; its stdout and stderr together. */
async function libcoap(
  build: "openssl" | "gnutls",
  args: string[],
): Promise<string> {
  return (await libcoapClient(args, 20_000, `coap-client-${build}`, true))
    .trim();
}

for (const build of ["openssl", "gnutls"] as const) {
  Deno.test({
    name:
      `DTLS: our client against coap-server-${build} with a pre-shared key: GET, an observation, and a wrong key refused in words`,
    ...network,
    async fn() {
      const device = await startLibcoapDtls(build);
      const uri = `coaps://127.0.0.1:${device.dtls}`;
      const client = await connectCoapDtls(uri, { psk, log: quiet });
      try {
        const index = await ask(client, { method: "GET", path: "/" });
        assert(
          index[0].startsWith("2.05 This is a test server made with libcoap"),
          index[0],
        );
        const ticks = await ask(
          client,
          { method: "GET", path: "/time", observe: true },
          2,
        );
        assertEquals(ticks.length, 2, ticks.join());
        assert(ticks.every((t) => /^2\.05 \w{3} \d\d /.test(t)), ticks.join());
        const error = await assertRejects(
          () =>
            connectCoapDtls(uri, {
              psk: { identity: "user", key: "not the key" },
              log: quiet,
              dtls: { handshakeTimeout: 3000 },
            }),
          DtlsError,
        );
        assertEquals(
          error.message,
          "The server did not answer the Finished within 3000 ms: it could not verify it (a wrong pre-shared key, or an identity it does not know)",
        );
        // And the command line, as a user runs it (the key from a file).
        const dir = await Deno.makeTempDir();
        await Deno.writeTextFile(`${dir}/key`, `${KEY}\n`);
        const run = await new Deno.Command(Deno.execPath(), {
          args: [
            ...await ourServerCommand("coap:client"),
            "--timeout",
            "10",
            "--psk-identity",
            "user",
            "--psk-key-file",
            `${dir}/key`,
            `${uri}/`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        await Deno.remove(dir, { recursive: true });
        assert(
          new TextDecoder().decode(run.stdout).startsWith(
            "This is a test server made with libcoap",
          ),
          new TextDecoder().decode(run.stderr),
        );
      } finally {
        client.close();
        await device.stop();
      }
    },
  });
}

Deno.test({
  name:
    "DTLS: libcoap's OpenSSL and GnuTLS clients against coap:server --dtls-port: GET, POST, an observation; a wrong key and an unknown identity get nothing",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(
      `${dir}/psk`,
      "# identity:key\nuser:secretPSK\nother:anotherKey\n",
    );
    const port = await freeUdpPort();
    const server = await startOurServer([
      "--no-explorer",
      "--dtls-port",
      String(port),
      "--psk-file",
      `${dir}/psk`,
    ]);
    const uri = `coaps://127.0.0.1:${port}`;
    try {
      assertEquals(server.lines.includes(`dtls on ${port}`), true);
      for (const build of ["openssl", "gnutls"] as const) {
        assertEquals(
          await libcoap(build, ["-k", KEY, "-u", "user", "-B", "5", `${uri}/`]),
          "Welcome to the demo server",
          build,
        );
        assertEquals(
          await libcoap(build, [
            "-k",
            "anotherKey",
            "-u",
            "other",
            "-B",
            "5",
            "-m",
            "post",
            "-e",
            `from ${build}`,
            `${uri}/echo`,
          ]),
          `from ${build}`,
        );
        const counted = await libcoap(build, [
          "-k",
          KEY,
          "-u",
          "user",
          "-B",
          "3",
          "-s",
          "2",
          `${uri}/counter`,
        ]);
        assert(/^\d+(\d+)+/.test(counted), counted);
        for (
          const [identity, key] of [["user", "wrong"], ["nobody", KEY]]
        ) {
          const refused = await libcoap(build, [
            "-k",
            key,
            "-u",
            identity,
            "-B",
            "3",
            `${uri}/`,
          ]);
          assert(!refused.includes("Welcome"), `${build}: ${refused}`);
        }
      }
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "DTLS: 40,000 ClientHellos from 200 sources cost coap:server a cookie each and no session; a bystander is served throughout and a new client gets in after",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(`${dir}/psk`, "user:secretPSK\n");
    const port = await freeUdpPort();
    const server = await startOurServer([
      "--no-explorer",
      "--dtls-port",
      String(port),
      "--psk-file",
      `${dir}/psk`,
    ]);
    const uri = `coaps://127.0.0.1:${port}`;
    const sockets: dgram.Socket[] = [];
    try {
      // A real ClientHello, as our client's first datagram.
      const hello = await new Promise<Uint8Array>((resolve) => {
        const probe = new DtlsEndpoint((d) => resolve(d), () => {}, { psk });
        probe.connect({ hostname: "127.0.0.1", port }).catch(() => {});
        setTimeout(() => probe.close(), 10);
      });
      const bystander = await connectCoapDtls(uri, { psk, log: quiet });
      assertEquals(await ask(bystander, { method: "GET", path: "/" }), [
        "2.05 Welcome to the demo server",
      ]);
      const before = await rss(server.pid);
      let answers = 0;
      let answered = 0;
      for (let i = 0; i < 200; i++) {
        const socket = dgram.createSocket("udp4");
        socket.on("message", (bytes) => {
          answers++;
          answered += bytes.length;
        });
        await new Promise<void>((r) => socket.bind(0, "127.0.0.1", r));
        sockets.push(socket);
      }
      const slowest: number[] = [];
      const flood = async () => {
        for (let round = 0; round < 50; round++) {
          for (const socket of sockets) socket.send(hello, port, "127.0.0.1");
          if (round % 25 === 24) {
            const started = performance.now();
            const got = await ask(bystander, { method: "GET", path: "/" });
            slowest.push(performance.now() - started);
            assertEquals(got, ["2.05 Welcome to the demo server"]);
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      };
      // Four floods of 10,000: the first ones grow the heap to what such a
      // flood needs (garbage the collector takes back, in a heap it keeps);
      // the last one shows that nothing is kept.
      const sizes = [before];
      for (let i = 0; i < 4; i++) {
        await flood();
        sizes.push(await rss(server.pid));
      }
      const mib = (n: number) => (n / 2 ** 20).toFixed(1);
      console.log(
        `  4 × 10,000 ClientHellos of ${hello.length} bytes from 200 sources: ${answers} HelloVerifyRequests back (${answered} bytes; the rest lost in the socket's buffer), RSS ${
          sizes.map(mib).join(" -> ")
        } MiB, the bystander's GETs ${
          slowest.map((ms) => ms.toFixed(0)).join(", ")
        } ms`,
      );
      // Each answer no larger than its ClientHello: no amplification.
      assert(answered <= answers * hello.length);
      assert(answers > 0 && answers <= 40_000, `${answers} answers`);
      // RSS is reported, not judged (it moves by 20 MiB with the collector's
      // mood); dtls_test.ts measures what a ClientHello keeps, on the heap
      // after a collection: nothing.
      // Served throughout; a request lost in the flooded socket's buffer is
      // sent again by CoAP (2 to 3 s), not more.
      assert(Math.max(...slowest) < 6000, slowest.join());
      assertEquals(
        server.lines.filter((line) => /error|Error/.test(line)),
        [],
      );
      // And a new client still gets in.
      const late = await connectCoapDtls(uri, { psk, log: quiet });
      assertEquals(await ask(late, { method: "GET", path: "/" }), [
        "2.05 Welcome to the demo server",
      ]);
      late.close();
      bystander.close();
    } finally {
      for (const socket of sockets) socket.close();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "DTLS through coap:proxy from WebSocket: a client without keys reaches coap-server-openssl's coaps:// with the proxy's pre-shared key (GET, an observation); a target without credentials gets 5.02",
  ...network,
  async fn() {
    const device = await startLibcoapDtls("openssl");
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(
      `${dir}/credentials.json`,
      JSON.stringify({
        [`127.0.0.1:${device.dtls}`]: { identity: "user", key: KEY },
      }),
    );
    const keyless = await freeUdpPort();
    const proxy = await startOurProxy([
      "--allow",
      `coaps://127.0.0.1:${device.dtls}`,
      "--allow",
      `coaps://127.0.0.1:${keyless}`,
      "--psk-credentials",
      `${dir}/credentials.json`,
      "--timeout",
      "3000",
      "--no-explorer",
    ]);
    const client = await CoapClient.connect(
      `coap+ws://127.0.0.1:${proxy.port}`,
      { log: quiet },
    );
    try {
      const through = (uri: string, extra = {}) => ({
        method: "GET" as const,
        path: "/",
        proxyUri: uri,
        ...extra,
      });
      const index = await ask(
        client,
        through(`coaps://127.0.0.1:${device.dtls}/`),
      );
      assert(
        index[0].startsWith("2.05 This is a test server made with libcoap"),
        index[0],
      );
      const ticks = await ask(
        client,
        through(`coaps://127.0.0.1:${device.dtls}/time`, { observe: true }),
        2,
      );
      assertEquals(ticks.length, 2, ticks.join());
      assertEquals(
        await ask(client, through(`coaps://127.0.0.1:${keyless}/`)),
        [
          `5.02 Bad Gateway: cannot reach coaps://127.0.0.1:${keyless} (no pre-shared key for 127.0.0.1:${keyless} (--psk-identity), and no CA or raw public key to check it with (--ca, --server-key))`,
        ],
      );
      // The key never reaches the proxy's output.
      assert(!proxy.lines.some((line) => line.includes(KEY)));
    } finally {
      client.close();
      await proxy.stop();
      await device.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * A PKI made with OpenSSL in `dir`: a CA and another one, a server
 * certificate for 127.0.0.1 from each, an expired one, and a client
 * certificate; P-256 keys in SEC1 form (as libcoap takes them).
 */
async function makePki(dir: string): Promise<void> {
  const run = async (...args: string[]) => {
    const { code, stderr } = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(
        `openssl ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`,
      );
    }
  };
  const key = (name: string) =>
    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name);
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
  );
  for (const ca of ["ca", "other"]) {
    await key(`${ca}.key`);
    await run(
      "req",
      "-x509",
      "-new",
      "-key",
      `${ca}.key`,
      "-subj",
      `/CN=${ca}`,
      "-days",
      "3650",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-out",
      `${ca}.pem`,
    );
  }
  for (const name of ["server", "client"]) {
    await key(`${name}.key`);
    await run(
      "req",
      "-new",
      "-key",
      `${name}.key`,
      "-subj",
      `/CN=${name === "server" ? "127.0.0.1" : "client"}`,
      "-out",
      `${name}.csr`,
    );
  }
  const sign = (csr: string, ca: string, days: string, out: string) =>
    run(
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-days",
      days,
      "-extfile",
      "server.ext",
      "-out",
      out,
    );
  await sign("server.csr", "ca", "3650", "server.pem");
  await sign("server.csr", "other", "3650", "stranger.pem");
  await sign("server.csr", "ca", "-1", "expired.pem");
  await sign("client.csr", "ca", "3650", "client.pem");
}

for (const build of ["openssl", "gnutls"] as const) {
  Deno.test({
    name:
      `DTLS with certificates: our client against coap-server-${build} -c -j -C (a client certificate asked for and sent); an unknown CA and an expired certificate refused in words`,
    ...network,
    async fn() {
      const dir = await Deno.makeTempDir();
      const servers: Running[] = [];
      try {
        await makePki(dir);
        const read = (name: string) => Deno.readTextFileSync(`${dir}/${name}`);
        const start = async (certificate: string) => {
          const port = await freeUdpPort();
          const server = spawn(`coap-server-${build}`, [
            "-A",
            "127.0.0.1",
            "-p",
            String(port),
            "-c",
            `${dir}/${certificate}`,
            "-j",
            `${dir}/server.key`,
            "-C",
            `${dir}/ca.pem`,
          ], port);
          servers.push(server);
          await new Promise((resolve) => setTimeout(resolve, 300));
          return `coaps://127.0.0.1:${port + 1}`;
        };
        const options = {
          log: quiet,
          cas: pemBlocks(read("ca.pem"), "CERTIFICATE"),
          certificate: await loadCertificate(
            read("client.pem"),
            read("client.key"),
          ),
          dtls: { handshakeTimeout: 4000 },
        };
        const uri = await start("server.pem");
        const client = await connectCoapDtls(uri, options);
        const index = await ask(client, { method: "GET", path: "/" });
        assert(
          index[0].startsWith("2.05 This is a test server made with libcoap"),
          index[0],
        );
        client.close();
        const refusals: string[] = [];
        for (const certificate of ["stranger.pem", "expired.pem"]) {
          const other = await start(certificate);
          const error = await assertRejects(
            () => connectCoapDtls(other, options),
            DtlsError,
          );
          refusals.push(error.message.replace(/\(\d{4}.*\)/, "(…)"));
        }
        assertEquals(refusals, [
          "The server's certificate: The certificate was not issued by a CA this side trusts",
          "The server's certificate: A certificate of the chain is not valid now (…)",
        ]);
      } finally {
        for (const server of servers) await server.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name:
    "DTLS with certificates and raw public keys: libcoap's OpenSSL and GnuTLS clients against coap:server --dtls-cert (and --dtls-ca, asking for theirs), GnuTLS's with a raw public key both ways, and our client against coap-server-gnutls -M",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir();
    const running: Running[] = [];
    try {
      await makePki(dir);
      const pubkey = await new Deno.Command("openssl", {
        args: ["pkey", "-in", "client.key", "-pubout", "-out", "client.pub"],
        cwd: dir,
        stderr: "null",
      }).output();
      assertEquals(pubkey.code, 0);
      const serve = async (args: string[]) => {
        const port = await freeUdpPort();
        running.push(
          await startOurServer([
            "--no-explorer",
            "--dtls-port",
            String(port),
            ...args,
          ]),
        );
        return `coaps://127.0.0.1:${port}/`;
      };
      const plain = await serve([
        "--dtls-cert",
        `${dir}/server.pem`,
        "--dtls-key",
        `${dir}/server.key`,
      ]);
      const mutual = await serve([
        "--dtls-cert",
        `${dir}/server.pem`,
        "--dtls-key",
        `${dir}/server.key`,
        "--dtls-ca",
        `${dir}/ca.pem`,
      ]);
      // The server's own certificate (--cert, --key: its TLS one) serves
      // DTLS too when no DTLS certificate is given.
      const shared = await serve([
        "--cert",
        `${dir}/server.pem`,
        "--key",
        `${dir}/server.key`,
      ]);
      const rpk = await serve([
        "--dtls-rpk",
        `${dir}/server.key`,
        "--dtls-trust-key",
        `${dir}/client.pub`,
      ]);
      const pki = [
        "-C",
        `${dir}/ca.pem`,
        "-c",
        `${dir}/client.pem`,
        "-j",
        `${dir}/client.key`,
        "-B",
        "5",
      ];
      for (const build of ["openssl", "gnutls"] as const) {
        assertEquals(
          await libcoap(build, [...pki, plain]),
          "Welcome to the demo server",
          `${build}, server certificate`,
        );
        assertEquals(
          await libcoap(build, [...pki, mutual]),
          "Welcome to the demo server",
          `${build}, both certificates`,
        );
      }
      assertEquals(
        await libcoap("openssl", [...pki, shared]),
        "Welcome to the demo server",
        "openssl, --cert and --key for DTLS",
      );
      assertEquals(
        await libcoap("gnutls", ["-M", `${dir}/client.key`, "-B", "5", rpk]),
        "Welcome to the demo server",
      );
      // Another key than the one trusted: no session.
      const stranger = await libcoap("gnutls", [
        "-M",
        `${dir}/server.key`,
        "-B",
        "3",
        rpk,
      ]);
      assert(!stranger.includes("Welcome"), stranger);
      // Our client against libcoap's raw-public-key server.
      const port = await freeUdpPort();
      const device = spawn("coap-server-gnutls", [
        "-A",
        "127.0.0.1",
        "-p",
        String(port),
        "-M",
        `${dir}/server.key`,
      ], port);
      running.push(device);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const client = await connectCoapDtls(`coaps://127.0.0.1:${port + 1}`, {
        log: quiet,
        trustedKeys: await loadPublicKeys(
          Deno.readTextFileSync(`${dir}/server.key`),
        ),
        certificate: await loadCertificate(
          "",
          Deno.readTextFileSync(`${dir}/client.key`),
        ),
        rawPublicKey: true,
      });
      const index = await ask(client, { method: "GET", path: "/" });
      assert(index[0].startsWith("2.05 This is a test server"), index[0]);
      client.close();
    } finally {
      for (const process of running) await process.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "DTLS: a session's end ends its observations on both sides (the server closes it; the client's pipe ends, the server's observation is gone)",
  ...network,
  async fn() {
    let value = 0;
    const observers = new Observers();
    const coap = new CoapServer({
      "/counter": {
        observable: observers,
        GET: () => ({ payload: String(value) }),
      },
    }, { log: quiet });
    const serving = await serveCoapDtls(coap, {
      port: 0,
      psk: { user: KEY },
    });
    const client = await connectCoapDtls(
      `coaps://127.0.0.1:${serving.port}`,
      { psk, log: quiet },
    );
    const seen: string[] = [];
    const pipe = client.request({
      method: "GET",
      path: "/counter",
      observe: true,
    });
    const done = (async () => {
      for await (const event of pipe) {
        if (event.kind === "response") {
          seen.push(
            `${event.message.code} ${
              new TextDecoder().decode(event.message.payload)
            }`,
          );
          if (seen.length === 2) serving.dtls.close(); // the server ends the session
          else {
            value++;
            observers.updated();
          }
        } else {
          seen.push(`${event.kind} ${(event.exception as Error)?.message}`);
        }
      }
    })();
    await done;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assertEquals(seen.slice(0, 2), ["2.05 0", "2.05 1"]);
    assert(
      /^exception .*DTLS session ended: The peer closed the session \(close_notify\)/
        .test(seen[2]),
      seen[2],
    );
    assertEquals([coap.observations, observers.count, serving.dtls.sessions], [
      0,
      0,
      0,
    ]);
    client.close();
    serving.close();
  },
});

Deno.test({
  name:
    "DTLS in CoapContext: coaps:// URIs with the context's pre-shared key; an origin without credentials fails in words",
  ...network,
  async fn() {
    const coap = new CoapServer({ "/": { GET: () => ({ payload: "hi" }) } }, {
      log: quiet,
    });
    const serving = await serveCoapDtls(coap, { port: 0, psk: { user: KEY } });
    const ctx = new CoapContext({
      log: quiet,
      timeout: 5000,
      dtls: { psk: { [`127.0.0.1:${serving.port}`]: psk } },
    });
    const bare = new CoapContext({ log: quiet, timeout: 5000 });
    try {
      const response = await ctx.get(`coaps://127.0.0.1:${serving.port}/`);
      assertEquals([response.code, response.text()], ["2.05", "hi"]);
      const error = await assertRejects(() =>
        bare.get(`coaps://127.0.0.1:${serving.port}/`)
      );
      assertEquals(
        (error as Error).message,
        "Cannot connect over DTLS: give psk, or cas (or trustedKeys) to check the server with",
      );
    } finally {
      ctx.close();
      bare.close();
      serving.close();
    }
  },
});
