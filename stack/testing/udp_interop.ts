// CoAP over UDP against peers nobody here wrote, on 127.0.0.1 only (part
// of `deno task test:coap`): our client against libcoap's coap-server and
// aiocoap's UDP server; libcoap's coap-client and aiocoap-client against
// `coap:server --udp-port`; then loss: our client and server through a
// shim that drops, duplicates and reorders datagrams. Each case is a row of
// the interop table printed at the end (peer, operation, direction,
// outcome). Needs libcoap3-bin (coap-server-notls, coap-client-notls, or
// LIBCOAP_SERVER / LIBCOAP_CLIENT) and the aiocoap peer.

import { assert, assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { text, utf8 } from "../message.ts";
import { connectCoapDtls } from "../dtls_node.ts";
import { CoapServer } from "../server.ts";
import {
  bindUdp,
  type BoundUdp,
  connectCoapUdp,
  serveCoapUdp,
} from "../udp_node.ts";
import type { PeerAddress } from "../udp.ts";
import {
  aiocoapClient,
  freePort,
  libcoapClient,
  ourServerCommand,
  requireLibcoap,
  requirePeer,
  startLibcoap,
  startOurServer,
  startPeer,
} from "./peers.ts";
import { ask, uploadBody } from "./ask.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };

/** The interop table: peer, operation, direction, outcome. */
const table: string[][] = [];
function row(
  peer: string,
  operation: string,
  direction: string,
  outcome: string,
) {
  table.push([peer, operation, direction, outcome]);
}

/** The consecutive integers whose digits, back to back, are `digits`. */
function consecutive(digits: string): number[] | undefined {
  for (let length = 1; length <= 6; length++) {
    const numbers = [Number(digits.slice(0, length))];
    let at = length;
    while (at < digits.length) {
      const next = String(numbers.at(-1)! + 1);
      if (!digits.startsWith(next, at)) break;
      numbers.push(Number(next));
      at += next.length;
    }
    if (at === digits.length) return numbers;
  }
  return undefined;
}

Deno.test({
  name:
    "CoAP over UDP: our client against libcoap's coap-server: GET, PUT, DELETE, Observe, Block2, CON and NON",
  ...network,
  async fn() {
    await requireLibcoap();
    const server = await startLibcoap();
    const uri = `coap://127.0.0.1:${server.port}`;
    const con = await connectCoapUdp(uri, { log: quiet });
    const non = await connectCoapUdp(uri, {
      log: quiet,
      udp: { nonConfirmable: true },
    });
    try {
      const index = await ask(con, { method: "GET", path: "/" });
      assert(
        index[0].startsWith("2.05 This is a test server made with libcoap"),
      );
      row("libcoap", "GET /", "ours → theirs, CON", "2.05, its text");
      const nonIndex = await ask(non, { method: "GET", path: "/" });
      assertEquals(nonIndex, index);
      row("libcoap", "GET /", "ours → theirs, NON", "2.05, its text");
      assertEquals(
        await ask(con, { method: "PUT", path: "/made", payload: "by us" }),
        ["2.01 "],
      );
      assertEquals(await ask(con, { method: "GET", path: "/made" }), [
        "2.05 by us",
      ]);
      row(
        "libcoap",
        "PUT /made, GET it",
        "ours → theirs, CON",
        "2.01, then 2.05 by us",
      );
      assertEquals(await ask(con, { method: "DELETE", path: "/made" }), [
        "2.02 ",
      ]);
      assertEquals(await ask(con, { method: "GET", path: "/made" }), [
        "4.04 Not Found",
      ]);
      row("libcoap", "DELETE /made", "ours → theirs, CON", "2.02, then 4.04");
      assertEquals(
        await ask(con, {
          method: "GET",
          path: "/.well-known/core",
          query: "rt=ticks",
        }),
        ['2.05 </time>;if="clock";rt="ticks";title="Internal Clock";ct=0;obs'],
      );
      row(
        "libcoap",
        "GET /.well-known/core?rt=ticks",
        "ours → theirs, CON",
        "2.05, /time alone",
      );
      const big = await ask(con, { method: "GET", path: "/example_data" });
      assertEquals(big[0].length, "2.05 ".length + 1500);
      row(
        "libcoap",
        "GET /example_data (Block2, 1500 B)",
        "ours → theirs, CON",
        "2.05, 1500 bytes in two blocks",
      );
      const times = await ask(
        con,
        { method: "GET", path: "/time", observe: true },
        3,
      );
      assertEquals(times.length, 3);
      for (const line of times) {
        assert(/^2\.05 \w{3} \d\d \d\d:\d\d:\d\d$/.test(line), line);
      }
      assertEquals(new Set(times).size, 3, "a new time each second");
      row(
        "libcoap",
        "Observe /time",
        "ours → theirs, CON",
        "3 notifications, a second apart",
      );
    } finally {
      con.close();
      non.close();
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "CoAP over UDP: our client against aiocoap's UDP server: GET, POST, PUT, Observe, Block2, a separate response, CON and NON",
  ...network,
  async fn() {
    await requirePeer();
    const udpPort = freePort();
    const peer = await startPeer(udpPort);
    const uri = `coap://127.0.0.1:${udpPort}`;
    const con = await connectCoapUdp(uri, { log: quiet });
    const non = await connectCoapUdp(uri, {
      log: quiet,
      udp: { nonConfirmable: true },
    });
    try {
      assertEquals(await ask(con, { method: "GET", path: "/" }), [
        "2.05 Welcome to the demo server",
      ]);
      assertEquals(await ask(non, { method: "GET", path: "/" }), [
        "2.05 Welcome to the demo server",
      ]);
      row(
        "aiocoap",
        "GET /",
        "ours → theirs, CON and NON",
        "2.05 Welcome to the demo server",
      );
      assertEquals(
        await ask(con, { method: "POST", path: "/echo", payload: "posted" }),
        ["2.04 posted"],
      );
      assertEquals(
        await ask(con, { method: "PUT", path: "/echo", payload: "put" }),
        ["2.04 put"],
      );
      row(
        "aiocoap",
        "POST and PUT /echo",
        "ours → theirs, CON",
        "2.04 with the payload",
      );
      const big = await ask(con, { method: "GET", path: "/big" });
      assertEquals(big[0].length, "2.05 ".length + 4200);
      assert(big[0].endsWith("line 0139 of a large resource\n"));
      row(
        "aiocoap",
        "GET /big (Block2, 4200 B)",
        "ours → theirs, CON",
        "2.05, 4200 bytes in five blocks",
      );
      const separate = await ask(con, {
        method: "GET",
        path: "/other/separate",
      });
      assert(separate[0].startsWith("2.05 Three rings"), separate[0]);
      row(
        "aiocoap",
        "GET /other/separate (3 s)",
        "ours → theirs, CON",
        "empty ACK, then 2.05 as a CON",
      );
      const counts = await ask(
        con,
        { method: "GET", path: "/counter", observe: true },
        5,
      );
      const numbers = counts.map((line) => Number(line.slice(5)));
      assertEquals(numbers.length, 5);
      for (let i = 1; i < 5; i++) {
        assert(numbers[i] > numbers[i - 1], counts.join());
      }
      row(
        "aiocoap",
        "Observe /counter",
        "ours → theirs, CON",
        "5 notifications, increasing",
      );
      await peer.waitFor(/^observers: 0$/, 5000);
      row(
        "aiocoap",
        "leave an observation",
        "ours → theirs",
        "its count back to 0",
      );
    } finally {
      con.close();
      non.close();
      await peer.stop();
    }
  },
});

Deno.test({
  name:
    "CoAP over UDP: libcoap's coap-client and aiocoap-client against coap:server --udp-port: GET, POST, PUT, Observe, Block2, CON and NON",
  ...network,
  async fn() {
    await requireLibcoap();
    await requirePeer();
    const udpPort = freePort();
    const server = await startOurServer([
      "--udp-port",
      String(udpPort),
      "--no-explorer",
    ]);
    const uri = `coap://127.0.0.1:${udpPort}`;
    try {
      await server.waitFor(new RegExp(`^udp on ${udpPort}$`));
      assertEquals(
        await libcoapClient(["-m", "get", `${uri}/`]),
        "Welcome to the demo server\n",
      );
      assertEquals(
        await libcoapClient(["-N", "-m", "get", `${uri}/`]),
        "Welcome to the demo server\n",
      );
      row(
        "libcoap",
        "GET /",
        "theirs → ours, CON and NON",
        "2.05 Welcome to the demo server",
      );
      assertEquals(
        await libcoapClient(["-m", "post", "-e", "posted", `${uri}/echo`]),
        "posted\n",
      );
      assertEquals(
        await libcoapClient(["-m", "put", "-e", "put", `${uri}/echo`]),
        "put\n",
      );
      row(
        "libcoap",
        "POST and PUT /echo",
        "theirs → ours, CON",
        "2.04 with the payload",
      );
      assertEquals(
        await libcoapClient([
          "-m",
          "get",
          `${uri}/.well-known/core?rt=ticks`,
        ]),
        '</time>;obs;title="Internal Clock";rt="ticks";if="clock";ct="0"\n',
      );
      assertEquals(
        await libcoapClient([
          "-m",
          "get",
          `${uri}/.well-known/core?href=/other*`,
        ]),
        '</other/separate>;title="A large resource",</other/block>;title="A resource to PUT a body to";if="core.p"\n',
      );
      row(
        "libcoap",
        "GET /.well-known/core?rt=ticks, ?href=/other*",
        "theirs → ours, CON",
        "2.05, only the links that match",
      );
      const big = await libcoapClient(["-m", "get", `${uri}/big`]);
      assertEquals(big.length, 4201, big.slice(-80));
      row("libcoap", "GET /big (Block2)", "theirs → ours, CON", "4200 bytes");
      const counter = await libcoapClient([
        "-s",
        "2",
        "-m",
        "get",
        `${uri}/counter`,
      ]);
      // libcoap prints the payloads back to back ("101112…"): they must be
      // consecutive integers from some first one.
      const numbers = consecutive(counter.trim());
      assert(numbers !== undefined && numbers.length >= 5, counter);
      row(
        "libcoap",
        "Observe /counter for 2 s",
        "theirs → ours, CON",
        `${numbers.length} notifications, increasing`,
      );
      await server.waitFor(/^observers: 0$/, 10_000);
      const udp = { AIOCOAP_CLIENT_TRANSPORT: "udp6" };
      const index = await aiocoapClient([`${uri}/`], undefined, udp);
      assertEquals([index.code, index.stdout.trimEnd()], [
        0,
        "Welcome to the demo server",
      ]);
      const posted = await aiocoapClient(
        ["-m", "POST", "--payload", "from aiocoap", `${uri}/echo`],
        undefined,
        udp,
      );
      assertEquals(posted.stdout.trimEnd(), "from aiocoap");
      const large = await aiocoapClient([`${uri}/big`], undefined, udp);
      assertEquals(
        large.stdout.trimEnd().length,
        4200 - 1,
        `${large.code}: ${large.stderr}`,
      );
      row(
        "aiocoap",
        "GET /, POST /echo, GET /big (Block2)",
        "theirs → ours, CON",
        "2.05, 2.04, 4200 bytes",
      );
      const observed = await aiocoapClient(
        ["--observe", `${uri}/counter`],
        2000,
        udp,
      );
      // The first value on stdout, the notifications on stderr, back to
      // back: consecutive integers.
      const seen = consecutive(
        (observed.stdout + observed.stderr).replace(/[^0-9]/g, ""),
      ) ?? [];
      assert(seen.length >= 5, JSON.stringify(observed));
      row(
        "aiocoap",
        "Observe /counter for 2 s",
        "theirs → ours, CON",
        `${seen.length} values`,
      );
    } catch (error) {
      console.log(`the server printed:\n${server.lines.join("\n")}`);
      throw error;
    } finally {
      await server.stop();
    }
  },
});

Deno.test({
  name:
    "CoAP over UDP, block-wise uploads (Block1): libcoap's coap-client -f with -b 16 and -b 1024 and aiocoap-client to coap:server --udp-port read back the same bytes; our client uploads to libcoap's coap-server and to aiocoap's",
  ...network,
  async fn() {
    await requireLibcoap();
    await requirePeer();
    const udpPort = freePort();
    const server = await startOurServer([
      "--udp-port",
      String(udpPort),
      "--no-explorer",
    ]);
    const uri = `coap://127.0.0.1:${udpPort}`;
    const dir = await Deno.makeTempDir();
    const file = `${dir}/body.txt`;
    const upload = uploadBody(2990);
    await Deno.writeTextFile(file, upload);
    const device = await startLibcoap();
    const aiocoapPort = freePort();
    const peer = await startPeer(aiocoapPort);
    try {
      await server.waitFor(new RegExp(`^udp on ${udpPort}$`));
      for (const size of ["16", "1024"]) {
        const echoed = await libcoapClient(
          ["-m", "put", "-f", file, "-b", size, `${uri}/echo`],
        );
        assertEquals(echoed, `${upload}\n`, `-b ${size}`);
        row(
          "libcoap",
          `PUT /echo, 2,990 B, -b ${size}`,
          "theirs → ours, CON",
          "2.04, the same 2,990 bytes back (Block1 up, Block2 down)",
        );
      }
      const udp = { AIOCOAP_CLIENT_TRANSPORT: "udp6" };
      const put = await aiocoapClient(
        ["-m", "PUT", "--payload", `@${file}`, `${uri}/echo`],
        undefined,
        udp,
      );
      assertEquals(
        [put.code, put.stdout.trimEnd()],
        [0, upload],
        put.stderr,
      );
      row(
        "aiocoap",
        "PUT /echo, 2,990 B",
        "theirs → ours, CON",
        "2.04, the same 2,990 bytes back",
      );
      const toLibcoap = await connectCoapUdp(
        `coap://127.0.0.1:${device.port}`,
        { log: quiet },
      );
      try {
        const big = uploadBody(100_000);
        assertEquals(
          await ask(toLibcoap, {
            method: "PUT",
            path: "/upload",
            payload: big,
          }),
          ["2.01 "],
        );
        const back = await ask(toLibcoap, { method: "GET", path: "/upload" });
        assertEquals(back[0] === `2.05 ${big}`, true, back[0].slice(0, 80));
        row(
          "libcoap",
          "PUT /upload, 100,000 B, then GET it",
          "ours → theirs, CON",
          "2.01, then the same 100,000 bytes",
        );
      } finally {
        toLibcoap.close();
      }
      const toAiocoap = await connectCoapUdp(
        `coap://127.0.0.1:${aiocoapPort}`,
        { log: quiet, blockSize: 64 },
      );
      try {
        assertEquals(
          await ask(toAiocoap, {
            method: "PUT",
            path: "/echo",
            payload: upload,
          }),
          [`2.04 ${upload}`],
        );
        row(
          "aiocoap",
          "PUT /echo, 2,990 B in 64-byte blocks",
          "ours → theirs, CON",
          "2.04, the same bytes back",
        );
      } finally {
        toAiocoap.close();
      }
    } catch (error) {
      console.log(`the server printed:\n${server.lines.join("\n")}`);
      throw error;
    } finally {
      await server.stop();
      await device.stop();
      await peer.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "coap:client over UDP: an observation interrupted with Ctrl-C (SIGINT) is deregistered before the client exits (the server's observers go back to 0 at once); --timeout 3 against a port where nothing listens ends in about 3 s with the reason",
  ...network,
  async fn() {
    const udpPort = freePort();
    const server = await startOurServer([
      "--udp-port",
      String(udpPort),
      "--no-explorer",
    ]);
    const command = await ourServerCommand("coap:client");
    try {
      await server.waitFor(new RegExp(`^udp on ${udpPort}$`));
      const child = new Deno.Command(Deno.execPath(), {
        args: [...command, "--observe", `coap://127.0.0.1:${udpPort}/counter`],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await server.waitFor(/^observers: 1$/);
      // Two notifications on its way, then Ctrl-C.
      await new Promise((resolve) => setTimeout(resolve, 250));
      const from = server.lines.length;
      child.kill("SIGINT");
      const output = await child.output();
      const printed = new TextDecoder().decode(output.stdout).trim().split(
        "\n",
      );
      assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
      assert(printed.length >= 2, printed.join(","));
      // Deregistered before it exited: no wait for the server to give up.
      await server.waitFor(/^observers: 0$/, 1000);
      assert(server.lines.slice(from).includes("observers: 0"));
      row(
        "ours (coap:client)",
        "Observe /counter, then Ctrl-C",
        "ours → ours",
        `${printed.length} notifications, then observers: 0 before it exited`,
      );
      const silent = freePort();
      const started = performance.now();
      const timed = await new Deno.Command(Deno.execPath(), {
        args: [...command, "--timeout", "3", `coap://127.0.0.1:${silent}/`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const seconds = (performance.now() - started) / 1000;
      assertEquals(
        [timed.code, new TextDecoder().decode(timed.stderr).trim()],
        [1, `No response from coap://127.0.0.1:${silent}/ within 3 s`],
      );
      assert(seconds >= 3 && seconds < 6, `${seconds} s`);
      row(
        "ours (coap:client)",
        "--timeout 3 to a port where nothing listens",
        "ours → nothing",
        `exit 1 after ${seconds.toFixed(1)} s, "No response from … within 3 s"`,
      );
    } finally {
      await server.stop();
    }
  },
});

/**
 * A shim between a client and a server on 127.0.0.1 that loses, doubles
 * and reorders datagrams, from a seeded generator.
 */
async function lossyShim(
  target: PeerAddress,
  seed: number,
  rates = { drop: 0.2, duplicate: 0.05, delay: 0.1 },
) {
  let state = seed >>> 0;
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const counts = { passed: 0, dropped: 0, duplicated: 0, delayed: 0 };
  let client: PeerAddress | undefined;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const socket: { shim?: BoundUdp } = {};
  const forward = (bytes: Uint8Array, to: PeerAddress) => {
    const roll = random();
    if (roll < rates.drop) {
      counts.dropped++;
      return;
    }
    counts.passed++;
    const copies = random() < rates.duplicate ? 2 : 1;
    if (copies === 2) counts.duplicated++;
    for (let i = 0; i < copies; i++) {
      if (random() < rates.delay) {
        // Held back 5 to 50 ms: later datagrams overtake it.
        counts.delayed++;
        const timer = setTimeout(() => {
          timers.delete(timer);
          socket.shim?.send(bytes, to);
        }, 5 + random() * 45);
        timers.add(timer);
      } else socket.shim?.send(bytes, to);
    }
  };
  const shim = socket.shim = await bindUdp((bytes, from) => {
    if (from.port === target.port && from.hostname === target.hostname) {
      if (client !== undefined) forward(bytes, client);
    } else {
      client = from;
      forward(bytes, target);
    }
  });
  return {
    port: shim.port,
    counts,
    close() {
      for (const timer of timers) clearTimeout(timer);
      shim.close();
    },
  };
}

Deno.test({
  name:
    "CoAP over UDP through loss (20% dropped, 5% doubled, 10% held back): every exchange completes by retransmission, none is handled twice, and an observation goes on",
  ...network,
  async fn() {
    let handled = 0;
    let notify!: () => void;
    let notifications = 0;
    const server = new CoapServer({
      "/count": {
        POST: () => ({ code: "2.04", payload: String(++handled) }),
      },
      "/ticks": {
        observable: true,
        GET: (_request, pipe, signal) =>
          new Promise<void>((resolve) => {
            notify = () => pipe.addResponse({ payload: String(notifications) });
            signal.addEventListener("abort", () => resolve());
            pipe.addResponse({ payload: "0" });
          }),
      },
    }, { log: quiet });
    // Short timeouts, so that the check takes seconds, not minutes; the
    // retransmission rules are RFC 7252's.
    const timing = { ackTimeout: 100, maxRetransmit: 8 };
    const serving = await serveCoapUdp(server, { port: 0, ...timing });
    const shim = await lossyShim(
      { hostname: "127.0.0.1", port: serving.port },
      20261202,
    );
    const client = await connectCoapUdp(`coap://127.0.0.1:${shim.port}`, {
      log: quiet,
      udp: timing,
    });
    try {
      const answers: string[] = [];
      for (let i = 1; i <= 40; i++) {
        answers.push(...await ask(client, { method: "POST", path: "/count" }));
      }
      assertEquals(
        answers,
        Array.from({ length: 40 }, (_, i) => `2.04 ${i + 1}`),
      );
      assertEquals(handled, 40, "no request handled twice");
      // An observation through the same loss: notifications keep coming
      // (some NON ones are lost, as RFC 7641 allows; the CON ones are
      // retransmitted), in order, and the last one arrives.
      const got: number[] = [];
      const observation = client.request({
        method: "GET",
        path: "/ticks",
        observe: true,
      })[Symbol.asyncIterator]();
      const watching = (async () => {
        for (;;) {
          const next = await observation.next();
          if (next.done || next.value.kind !== "response") break;
          got.push(Number(text(next.value.message.payload)));
          if (got.at(-1)! >= 60) break;
        }
      })();
      const started = Date.now();
      while (got.length === 0 && Date.now() - started < 5000) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      for (notifications = 1; notifications <= 60; notifications++) {
        notify();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // The last value again until it gets through: NON ones may be lost
      // too, every 16th goes CON and is retransmitted.
      notifications = 60;
      const deadline = Date.now() + 15_000;
      while (got.at(-1) !== 60 && Date.now() < deadline) {
        notify();
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // Past the deadline the observation is left, so that the check fails
      // rather than waits.
      await observation.return?.();
      await watching;
      assertEquals(got.at(-1), 60);
      for (let i = 1; i < got.length; i++) {
        assert(got[i] > got[i - 1], got.join());
      }
      assert(
        got.length >= 30,
        `${got.length} of 61 notifications: ${got.join()}`,
      );
      console.log(
        `  ok   [loss] 40 POSTs, each handled once; ${got.length} of 61 notifications in order, the last among them; the shim passed ${shim.counts.passed}, dropped ${shim.counts.dropped}, doubled ${shim.counts.duplicated}, held back ${shim.counts.delayed}`,
      );
      row(
        "ours",
        "40 POSTs and an observation through loss",
        "ours → ours, CON",
        "all answered, each handled once; notifications in order",
      );
    } finally {
      client.close();
      serving.close();
      shim.close();
    }
  },
});

Deno.test({
  name:
    "CoAP over UDP on node:dgram outside Deno: the same server and client, bundled, answer GET / and GET /big on Node.js (and on Node.js 24 and Bun, where NODE24 and BUN name them), with sendBurst 65,536 where its options were given as undefined, and node:dgram sending to an address at once (a datagram sent just before close() still goes) and to a name",
  ...network,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "coap-udp-smoke-" });
    try {
      const bundle = `${dir}/udp_smoke.mjs`;
      const built = await new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--quiet",
          "--platform=deno",
          new URL("udp_smoke.ts", import.meta.url).pathname,
          "-o",
          bundle,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert(built.success, new TextDecoder().decode(built.stderr));
      const runtimes: [string, string][] = [["node", "node"]];
      for (const [name, variable] of [["node24", "NODE24"], ["bun", "BUN"]]) {
        const binary = Deno.env.get(variable);
        if (binary !== undefined) runtimes.push([name, binary]);
      }
      for (const [name, binary] of runtimes) {
        const run = await new Deno.Command(binary, {
          args: [bundle],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const [printed, burst, silent, lookedUp] = new TextDecoder().decode(
          run.stdout,
        ).trim().split("\n");
        assertEquals(burst, "sendBurst 65536", name);
        assertEquals(lookedUp, "sent to address and name", name);
        assertEquals(
          [run.code, printed],
          [0, "/ 2.05 26, /big 2.05 4200"],
          `${name}: ${new TextDecoder().decode(run.stderr)}`,
        );
        row("ours", "GET / and /big over node:dgram", `on ${name}`, printed);
        // Node.js reports the ICMP port unreachable on a connected socket:
        // the request fails at once. Elsewhere the timeout ends it.
        const refused =
          "silent port: ConnectionError after under 1 s: Nothing listens at 127.0.0.1:PORT (the port is unreachable, says ICMP)";
        if (name.startsWith("node")) assertEquals(silent, refused, name);
        else {
          assert(
            silent === refused ||
              silent ===
                "silent port: TimeoutError after 3 s: No response within 3000 ms",
            `${name}: ${silent}`,
          );
        }
        row(
          "ours (CoapContext)",
          "GET of a UDP port where nothing listens",
          `on ${name}`,
          silent.replace("silent port: ", ""),
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "CoAP over UDP: the interop table",
  fn() {
    console.log(
      [
        "| peer | operation | direction | outcome |",
        "| --- | --- | --- | --- |",
      ]
        .concat(table.map((r) => `| ${r.join(" | ")} |`))
        .join("\n"),
    );
  },
});

Deno.test({
  name:
    "bindUdp() on Deno's node:dgram with readSize: a datagram within it arrives whole, one past it cut where Deno cuts it (twice readSize on Linux); without readSize a 60,000-byte one arrives whole; our server refuses a request cut so with 4.13",
  ...network,
  async fn() {
    const gotSmall: number[] = [];
    const gotLarge: number[] = [];
    const small = await bindUdp((bytes) => gotSmall.push(bytes.length), {
      readSize: 1024,
    });
    const large = await bindUdp((bytes) => gotLarge.push(bytes.length));
    const sender = await bindUdp(() => {});
    const wait = async (done: () => boolean) => {
      for (let i = 0; i < 50 && !done(); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    try {
      const to = (bound: BoundUdp) => ({
        hostname: "127.0.0.1",
        port: bound.port,
      });
      // The read under way as the size is set still has 64 KiB: the first
      // datagram goes there.
      sender.send(new Uint8Array(10), to(small));
      await wait(() => gotSmall.length === 1);
      sender.send(new Uint8Array(1500), to(small));
      await wait(() => gotSmall.length === 2);
      sender.send(new Uint8Array(5000), to(small));
      sender.send(new Uint8Array(60_000), to(large));
      await wait(() => gotSmall.length === 3 && gotLarge.length === 1);
      assertEquals([gotSmall, gotLarge], [[10, 1500, 2048], [60_000]]);
    } finally {
      small.close();
      large.close();
      sender.close();
    }
    // The server reads twice its maxMessageSize: a 5,000-byte request is
    // over 1152 cut or not, and is answered 4.13.
    const server = new CoapServer({ "/": { POST: () => ({}) } }, {
      log: quiet,
    });
    const serving = await serveCoapUdp(server, { port: 0 });
    const answers: string[] = [];
    const client = await bindUdp((bytes) =>
      answers.push(`${bytes[1] >> 5}.${String(bytes[1] & 31).padStart(2, "0")}`)
    );
    try {
      const request = new Uint8Array(5000);
      request.set([0x40, 0x02, 0x12, 0x34, 0xff]);
      client.send(request, { hostname: "127.0.0.1", port: serving.port });
      for (let i = 0; i < 50 && answers.length < 1; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assertEquals(answers, ["4.13"]);
    } finally {
      client.close();
      serving.close();
    }
  },
});

Deno.test({
  name:
    "connectCoapUdp() and connectCoapDtls() never make a client that talks to itself: a socket bound to the server's own address and port is refused in words, where it answered its own GET 4.04 and took that for the answer",
  ...network,
  async fn() {
    const port = freePort();
    const uri = `127.0.0.1:${port}`;
    const said: string[] = [];
    for (
      const connect of [
        () => connectCoapUdp(`coap://${uri}`, { log: quiet, bind: { port } }),
        () =>
          connectCoapDtls(`coaps://${uri}`, {
            log: quiet,
            psk: { identity: "me", key: utf8("secret") },
            bind: { port },
          }),
      ]
    ) {
      try {
        const client = await connect();
        client.close();
        said.push("connected");
      } catch (error) {
        said.push((error as Error).message);
      }
    }
    const refused =
      `Cannot bind the client's socket to 127.0.0.1:${port}: it talks to ${uri}, and would hear its own requests`;
    assertEquals(said, [refused, refused]);
    row(
      "ours",
      "a client bound to the server's own address and port",
      "ours → itself",
      "refused in words",
    );
  },
});
