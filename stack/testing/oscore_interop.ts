// OSCORE (RFC 8613) against aiocoap's, on 127.0.0.1 only (part of `deno
// task test:coap`): our client against aiocoap's OSCORE server (GET, POST,
// Observe, inner block-wise /big) over UDP and through coap:proxy from
// WebSocket, where a relay in front of the device shows what the proxy
// sees; aiocoap's OSCORE client against `coap:server --oscore`, a request
// replayed from a capture refused, and the server restarted from its
// persisted state recovering the client by Echo (B.1.2). Needs the
// aiocoap peer with Debian's python3-cbor2, -cryptography and -filelock.

import { assert, assertEquals } from "@std/assert";
import dgram from "node:dgram";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { connectCoapUdp } from "../udp_node.ts";
import { Code, Option } from "../message.ts";
import { decodeDatagram } from "../udp.ts";
import {
  decodeOscoreOption,
  MemoryStore,
  OSCORE_OPTION,
  parseContextJson,
  SecurityContext,
} from "../oscore.ts";
import { BIG } from "../resources.ts";
import {
  aiocoapClient,
  aiocoapOscoreClient,
  freeUdpPort,
  ourServerCommand,
  PEERS,
  type Running,
  startOscorePeer,
  startOurProxy,
  startOurServer,
} from "./peers.ts";
import { ask } from "./ask.ts";
import { holds, relay } from "./udp_relay.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };

/** RFC 8613 C.1.1's client context (aiocoap's peers use it). */
async function clientContext(from = 0): Promise<SecurityContext> {
  const json = JSON.parse(
    await Deno.readTextFile(`${PEERS}/oscore-client.json`),
  );
  return SecurityContext.create({
    ...parseContextJson(json),
    store: new MemoryStore(from),
  });
}

/** Sends one datagram from a socket of its own; resolves with the answer. */
async function sendOnce(
  bytes: Uint8Array,
  port: number,
): Promise<Uint8Array | undefined> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 3000);
      socket.on("message", (answer) => {
        const decoded = decodeDatagram(new Uint8Array(answer));
        if (decoded.message.code === Code.EMPTY) return; // an empty ACK first
        clearTimeout(timer);
        resolve(new Uint8Array(answer));
      });
      socket.send(bytes, port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

/** Our server with `--oscore` (a fresh copy of C.1.2's context) over UDP. */
async function startOscoreServer(
  dir: string,
  udpPort: number,
): Promise<Running> {
  return await startOurServer([
    "--no-explorer",
    "--udp-port",
    String(udpPort),
    "--oscore",
    `${dir}/server.json`,
  ]);
}

Deno.test({
  name:
    "OSCORE: our client against aiocoap's OSCORE server over UDP: GET, POST, an observation and /big block-wise inside; a plain GET gets 4.01; coap:client --oscore does the same",
  ...network,
  async fn() {
    const peer = await startOscorePeer();
    const uri = `coap://127.0.0.1:${peer.port}`;
    // Past the numbers coap:client takes first (0 to 63): one context,
    // one server, one replay window.
    const client = await connectCoapUdp(uri, {
      log: quiet,
      oscore: await clientContext(1000),
    });
    const plain = await connectCoapUdp(uri, { log: quiet });
    const dir = await Deno.makeTempDir();
    try {
      // The command line, as a user runs it.
      await Deno.copyFile(`${PEERS}/oscore-client.json`, `${dir}/client.json`);
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          ...await ourServerCommand("coap:client"),
          "--timeout",
          "10",
          "--oscore",
          `${dir}/client.json`,
          "-m",
          "POST",
          "--payload",
          "from the command line",
          `${uri}/echo`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(
        [run.code, new TextDecoder().decode(run.stdout)],
        [0, "from the command line\n"],
        new TextDecoder().decode(run.stderr),
      );
      // Its sequence number is kept beside the context, a step ahead.
      assertEquals(
        (await Deno.readTextFile(`${dir}/client.json.seq`)).trim(),
        "64",
      );
      assertEquals(await ask(client, { method: "GET", path: "/" }), [
        "2.05 Welcome to the OSCORE demo server",
      ]);
      assertEquals(
        await ask(client, { method: "POST", path: "/echo", payload: "hello" }),
        ["2.04 hello"],
      );
      assertEquals(await ask(client, { method: "GET", path: "/big" }), [
        `2.05 ${BIG}`,
      ]);
      const counts = await ask(
        client,
        { method: "GET", path: "/counter", observe: true },
        3,
      );
      const numbers = counts.map((line) => Number(line.slice(5)));
      assertEquals(counts.map((line) => line.slice(0, 5)), [
        "2.05 ",
        "2.05 ",
        "2.05 ",
      ]);
      assert(numbers[0] < numbers[1] && numbers[1] < numbers[2], counts.join());
      assertEquals(await ask(plain, { method: "GET", path: "/" }), [
        "4.01 OSCORE required",
      ]);
    } finally {
      client.close();
      plain.close();
      await peer.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "OSCORE: aiocoap's OSCORE client against coap:server --oscore over UDP: GET, POST, /big, an observation; a plain aiocoap-client gets 4.01; a captured request sent again is refused; restarted from its state, the server answers a captured request with an Echo challenge and recovers the client by Echo",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir();
    await Deno.copyFile(`${PEERS}/oscore-server.json`, `${dir}/server.json`);
    const udpPort = await freeUdpPort();
    let server = await startOscoreServer(dir, udpPort);
    const tap = await relay(udpPort);
    const at = `coap://127.0.0.1:${tap.port}`;
    try {
      const get = await aiocoapOscoreClient([`${at}/`]);
      assertEquals(get.stdout, "Welcome to the demo server", get.stderr);
      const post = await aiocoapOscoreClient([
        "-m",
        "POST",
        "--payload",
        "hi there",
        `${at}/echo`,
      ]);
      assertEquals(post.stdout, "hi there", post.stderr);
      const big = await aiocoapOscoreClient([`${at}/big`]);
      assertEquals(big.stdout, BIG, big.stderr);
      const observed = await aiocoapOscoreClient([
        "--observe",
        "--observe-exec",
        "cat; echo",
        `${at}/counter`,
      ], 2500);
      const lines = observed.stdout.trim().split("\n").filter((l) => l !== "");
      assert(lines.length >= 3, observed.stdout + observed.stderr);
      const plain = await aiocoapClient([`${at}/`], undefined, {
        AIOCOAP_CLIENT_TRANSPORT: "udp6",
      });
      // aiocoap-client says an error code on standard error, and exits 1.
      assertEquals(
        [plain.code, /4\.01 Unauthorized/.test(plain.stderr + plain.stdout)],
        [1, true],
      );
      // What aiocoap sent under OSCORE: outer POSTs (FETCH to observe),
      // never a Uri-Path, never the payload.
      const requests = tap.up.map((d) => ({ bytes: d, ...decodeDatagram(d) }))
        .filter((d) =>
          d.message.options.some((o) => o.number === OSCORE_OPTION)
        );
      assert(requests.length > 0);
      for (const { message } of requests) {
        assert(message.code === Code.POST || message.code === Code.FETCH);
        assert(!message.options.some((o) => o.number === Option.URI_PATH));
      }
      assert(!holds(tap.up, "hi there") && !holds(tap.down, "hi there"));
      // The POST /echo as it was captured, sent again: refused, unserved.
      const captured = requests.find((d) => d.message.code === Code.POST)!
        .bytes;
      const replayed = decodeDatagram((await sendOnce(captured, udpPort))!);
      assertEquals(
        [
          replayed.message.code,
          new TextDecoder().decode(replayed.message.payload),
          replayed.message.options.some((o) => o.number === OSCORE_OPTION),
        ],
        // Unprotected (the UDP layer may offer its Echo for the address).
        [Code.UNAUTHORIZED, "Replay detected", false],
      );
      // Restarted: its state says the context was in use, so the replay
      // window is lost. The captured request gets a challenge, protected
      // with a Partial IV of the server's own, and is not served.
      await server.stop();
      server = await startOscoreServer(dir, udpPort);
      const challenge = decodeDatagram((await sendOnce(captured, udpPort))!);
      const option = challenge.message.options.find((o) =>
        o.number === OSCORE_OPTION
      );
      assertEquals(challenge.message.code, Code.CHANGED);
      assert(
        option !== undefined &&
          decodeOscoreOption(option.value).piv !== undefined,
        "the challenge has the server's own Partial IV",
      );
      // aiocoap's client answers the Echo by itself: served once.
      const recovered = await aiocoapOscoreClient([
        "-m",
        "POST",
        "--payload",
        "after the restart",
        `${at}/echo`,
      ]);
      assertEquals(recovered.stdout, "after the restart", recovered.stderr);
    } finally {
      tap.close();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "OSCORE through coap:proxy from WebSocket: our client reaches aiocoap's OSCORE server (GET, POST, an observation, /big) and coap:server --oscore end to end; what the proxy sends and gets holds none of the plaintext",
  ...network,
  async fn() {
    const peer = await startOscorePeer();
    const tap = await relay(peer.port);
    const dir = await Deno.makeTempDir();
    await Deno.copyFile(`${PEERS}/oscore-server.json`, `${dir}/server.json`);
    const ourUdp = await freeUdpPort();
    const ours = await startOscoreServer(dir, ourUdp);
    const proxy = await startOurProxy([
      "--allow",
      `127.0.0.1:${tap.port}`,
      "--allow",
      `127.0.0.1:${ourUdp}`,
      "--no-explorer",
    ]);
    const client = await CoapClient.connect(
      `coap+ws://127.0.0.1:${proxy.port}`,
      { log: quiet, oscore: await clientContext() },
    );
    const device = `coap://127.0.0.1:${tap.port}`;
    const through = (path: string, extra = {}) => ({
      method: "GET" as const,
      path: "/",
      proxyUri: `${device}${path}`,
      ...extra,
    });
    try {
      assertEquals(await ask(client, through("/")), [
        "2.05 Welcome to the OSCORE demo server",
      ]);
      assertEquals(
        await ask(
          client,
          through("/echo", { method: "POST", payload: "a secret command" }),
        ),
        ["2.04 a secret command"],
      );
      assertEquals(await ask(client, through("/big")), [`2.05 ${BIG}`]);
      const counts = await ask(
        client,
        through("/counter", { observe: true }),
        3,
      );
      assertEquals(counts.length, 3, counts.join());
      assert(counts.every((line) => line.startsWith("2.05 ")), counts.join());
      // The proxy's view: outer POST and FETCH with the OSCORE option, to
      // no path, and ciphertext; none of what was asked or answered.
      for (
        const secret of [
          "Welcome",
          "a secret command",
          "line 0000",
          "echo",
          "counter",
          "big",
        ]
      ) {
        assert(!holds(tap.up, secret) && !holds(tap.down, secret), secret);
      }
      const codes = new Set(
        tap.up.map((d) => decodeDatagram(d).message.code).filter((c) => c > 0),
      );
      assertEquals([...codes].sort(), [Code.POST, Code.FETCH].sort());
      // Our own OSCORE server behind the same proxy (the same C.1 pair).
      const fresh = await CoapClient.connect(
        `coap+ws://127.0.0.1:${proxy.port}`,
        { log: quiet, oscore: await clientContext() },
      );
      assertEquals(
        await ask(fresh, {
          method: "GET",
          path: "/",
          proxyUri: `coap://127.0.0.1:${ourUdp}/`,
        }),
        ["2.05 Welcome to the demo server"],
      );
      fresh.close();
    } finally {
      client.close();
      tap.close();
      await proxy.stop();
      await ours.stop();
      await peer.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
