// The device side from outside, over raw sockets on 127.0.0.1 only (part
// of `deno task test:coap`): amplification of every response kind to a
// source that never answers, a flood of source ports from one address and
// the lockout after it, and an unanswered observation, against
// `coap:server --udp-port` and, where the case applies, libcoap's
// coap-server on the same probes. Each case asserts our bound and prints a
// row: bytes received, bytes sent back, the factor, datagrams, how long.

import { assert, assertEquals } from "@std/assert";
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import {
  Code,
  encodeBlock,
  encodeMessage,
  Option,
  text,
  uint,
  utf8,
} from "../message.ts";
import { decodeDatagram, encodeDatagram, Type } from "../udp.ts";
import { CoapClient } from "../client.ts";
import type { Logger } from "@coap/pipe";
import {
  requireLibcoap,
  type Running,
  startLibcoap,
  startOurProxy,
  startOurServer,
} from "./peers.ts";
import { ask } from "./ask.ts";
import { requestDatagram } from "./datagrams.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
import { rss } from "./proc.ts";

const network = { sanitizeOps: false, sanitizeResources: false };
const table: string[][] = [];

/** A request datagram (`requestDatagram`), with a 2-byte token unless told. */
function request(
  messageId: number,
  path: string,
  more: Parameters<typeof requestDatagram>[2] = {},
): Uint8Array {
  return requestDatagram(messageId, path, { token: [0x5a, 0xa5], ...more });
}

/** A socket on 127.0.0.1 that records what comes to it. */
async function socket(): Promise<{
  port: number;
  got: Uint8Array[];
  send(bytes: Uint8Array, port: number): void;
  close(): void;
}> {
  const s = dgram.createSocket("udp4");
  const got: Uint8Array[] = [];
  s.on("message", (m: Uint8Array) => got.push(new Uint8Array(m)));
  s.on("error", () => {});
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  return {
    port: s.address().port,
    got,
    send(bytes, port) {
      s.send(Buffer.from(bytes), port, "127.0.0.1");
    },
    close() {
      try {
        s.close();
      } catch { /* closed */ }
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sum = (list: Uint8Array[]) => list.reduce((n, d) => n + d.length, 0);

/**
 * Sends `datagrams` from a fresh socket that never answers, listens for
 * `ms` (ending early once nothing came for `quiet` ms after something did),
 * and says what came back.
 */
async function silent(
  port: number,
  datagrams: Uint8Array[],
  ms: number,
  quiet = ms,
): Promise<{ sent: number; back: number; count: number; lastAt: number }> {
  const s = await socket();
  const started = Date.now();
  let lastAt = 0;
  for (const d of datagrams) s.send(d, port);
  let seen = 0;
  while (Date.now() - started < ms) {
    await sleep(50);
    if (s.got.length !== seen) {
      seen = s.got.length;
      lastAt = Date.now() - started;
    } else if (seen > 0 && Date.now() - started - lastAt > quiet) break;
  }
  s.close();
  return {
    sent: sum(datagrams),
    back: sum(s.got),
    count: s.got.length,
    lastAt,
  };
}

function row(
  server: string,
  what: string,
  r: { sent: number; back: number; count: number; lastAt: number },
) {
  table.push([
    server,
    what,
    String(r.sent),
    String(r.back),
    `x${(r.back / r.sent).toFixed(1)}`,
    String(r.count),
    `${(r.lastAt / 1000).toFixed(1)} s`,
  ]);
}

/** Our bound: three times what came, and one datagram of 64 bytes. */
function withinBound(r: { sent: number; back: number }, what: string) {
  assert(
    r.back <= 3 * r.sent + 64,
    `${what}: ${r.back} bytes for ${r.sent}, over three times plus 64`,
  );
}

let ours: Running | undefined;
let udpPort = 0;

async function ourServer(): Promise<number> {
  if (ours === undefined) {
    const free = dgram.createSocket("udp4");
    await new Promise<void>((resolve) => free.bind(0, "127.0.0.1", resolve));
    udpPort = free.address().port;
    free.close();
    ours = await startOurServer(["--udp-port", String(udpPort)]);
    await ours.waitFor(/^udp on/);
  }
  return udpPort;
}

Deno.test({
  name:
    "UDP from outside: to a source that never answers, every response kind of coap:server --udp-port is within three times the request's bytes (one datagram of 64 bytes excepted), beside libcoap's",
  ...network,
  async fn() {
    const port = await ourServer();
    const cases: [string, Uint8Array[], number][] = [
      ["GET / (26 B text)", [request(1, "")], 1000],
      ["GET /big, no Block2 (4,200 B)", [request(2, "big")], 1000],
      ["GET /.well-known/core", [request(3, ".well-known/core")], 1000],
      [
        "GET /big, Block2 num 1 szx 6",
        [request(4, "big", {
          options: [{
            number: Option.BLOCK2,
            value: encodeBlock({ num: 1, more: false, szx: 6 }),
          }],
        })],
        1000,
      ],
      ["GET /fail (a 5.00 with a diagnostic)", [request(5, "fail")], 1000],
      ["GET /slow?ms=300 (a separate response)", [
        request(6, "slow", {
          options: [{ number: Option.URI_QUERY, value: utf8("ms=300") }],
        }),
      ], 60_000],
    ];
    for (const [what, datagrams, ms] of cases) {
      const r = await silent(port, datagrams, ms, 5000);
      row("ours", what, r);
      withinBound(r, what);
    }
    await requireLibcoap();
    const libcoap = await startLibcoap();
    try {
      for (
        const [what, datagrams] of [
          ["GET / (its index)", [request(1, "")]],
          ["GET /.well-known/core", [request(3, ".well-known/core")]],
        ] as const
      ) {
        row("libcoap", what, await silent(libcoap.port, [...datagrams], 1000));
      }
    } finally {
      await libcoap.stop();
    }
  },
});

Deno.test({
  name:
    "UDP from outside: an Observe registration from a source that never answers costs at most three times its bytes and ends, and the server's observer count goes back to 0; libcoap's beside it",
  ...network,
  async fn() {
    const port = await ourServer();
    const observe = (path: string) =>
      request(7, path, {
        token: [1, 2, 3, 4],
        options: [{ number: Option.OBSERVE, value: uint(0) }],
      });
    const r = await silent(port, [observe("counter")], 120_000, 10_000);
    row("ours", "Observe /counter, never acknowledged", r);
    withinBound(r, "Observe /counter");
    const count = await silent(port, [request(8, "observers")], 1000);
    assertEquals(count.count, 1);
    const probe = await socket();
    probe.send(request(9, "observers"), port);
    while (probe.got.length === 0) await sleep(20);
    probe.close();
    assertEquals(text(decodeDatagram(probe.got[0]).message.payload), "0");
    const libcoap = await startLibcoap();
    try {
      row(
        "libcoap",
        "Observe /time, never acknowledged",
        await silent(libcoap.port, [observe("time")], 120_000, 10_000),
      );
    } finally {
      await libcoap.stop();
    }
  },
});

Deno.test({
  name:
    "UDP from outside: 2,000 CON GETs from one address, each from a new source port, lock nobody out: a new client from that address is answered at once, a handful of log lines, memory bounded; libcoap's beside it",
  ...network,
  async fn() {
    const port = await ourServer();
    const flood = async (target: number) => {
      let answered = 0;
      for (let batch = 0; batch < 20; batch++) {
        const sockets = await Promise.all(
          Array.from({ length: 100 }, () => socket()),
        );
        sockets.forEach((s, i) => s.send(request(batch * 100 + i, ""), target));
        // Each answered, or two seconds: a loaded machine (CI's) answers a
        // batch of new peers in more than the few ms it takes here.
        const deadline = Date.now() + 2000;
        while (
          Date.now() < deadline && sockets.some((s) => s.got.length === 0)
        ) {
          await sleep(10);
        }
        for (const s of sockets) {
          answered += s.got.some((d) => decodeDatagram(d).message.code === 0x45)
            ? 1
            : 0;
          s.close();
        }
      }
      return answered;
    };
    const newcomer = async (target: number) => {
      const s = await socket();
      const started = Date.now();
      s.send(request(1, ""), target);
      while (s.got.length === 0 && Date.now() - started < 5000) await sleep(5);
      s.close();
      const answer = s.got[0] === undefined
        ? "nothing"
        : decodeDatagram(s.got[0]).message.code === 0x45
        ? "2.05"
        : "other";
      return { answer, ms: Date.now() - started };
    };
    // Warmed up first with as many requests from one port (the code
    // compiled, the heap grown to its working size), so that what the flood
    // adds is what the flood holds.
    const warmUp = async (target: number) => {
      const s = await socket();
      for (let i = 0; i < 2000; i++) {
        s.send(request(i, ""), target);
        if (i % 100 === 99) await sleep(60);
      }
      s.close();
    };
    await warmUp(port);
    await sleep(500);
    const linesBefore = ours!.lines.length;
    const rssBefore = await rss(ours!.pid);
    const answered = await flood(port);
    const after = await newcomer(port);
    await sleep(500);
    const rssAfter = await rss(ours!.pid);
    const logLines = ours!.lines.length - linesBefore;
    table.push([
      "ours",
      "2,000 GETs from new ports, then a new client",
      "",
      `${answered} answered`,
      "",
      `new client: ${after.answer} in ${after.ms} ms`,
      `${logLines} log lines, RSS ${
        ((rssAfter - rssBefore) / 2 ** 20).toFixed(1)
      } MB more`,
    ]);
    assertEquals(after.answer, "2.05");
    assert(answered >= 1990, `${answered} of 2,000 answered`);
    // The goal is 10 MB; the bound leaves room for a noisy machine.
    assert(
      rssAfter - rssBefore < 16 * 2 ** 20,
      `RSS grew ${rssAfter - rssBefore} bytes`,
    );
    assert(
      logLines <= 10,
      ours!.lines.slice(linesBefore, linesBefore + 20).join("\n"),
    );
    const libcoap = await startLibcoap();
    try {
      await warmUp(libcoap.port);
      await sleep(500);
      const before = await rss(libcoap.pid);
      const theirs = await flood(libcoap.port);
      const next = await newcomer(libcoap.port);
      await sleep(500);
      const grew = await rss(libcoap.pid) - before;
      table.push([
        "libcoap",
        "2,000 GETs from new ports, then a new client",
        "",
        `${theirs} answered`,
        "",
        `new client: ${next.answer} in ${next.ms} ms`,
        `RSS ${(grew / 2 ** 20).toFixed(1)} MB more`,
      ]);
    } finally {
      await libcoap.stop();
    }
  },
});

/**
 * A device played by a socket in this process: `answer` decides what goes
 * back for each datagram that comes; it records the message IDs of the
 * requests it saw.
 */
async function device(
  answer: (request: Uint8Array, reply: (bytes: Uint8Array) => void) => void,
) {
  const s = dgram.createSocket("udp4");
  const requests = new Set<number>();
  s.on("error", () => {});
  s.on("message", (m: Uint8Array, from) => {
    const bytes = new Uint8Array(m);
    if (bytes.length >= 4 && bytes[1] !== 0) {
      requests.add((bytes[2] << 8) | bytes[3]);
    }
    answer(
      bytes,
      (reply) => s.send(Buffer.from(reply), from.port, from.address),
    );
  });
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  return {
    port: s.address().port,
    requests,
    close: () => s.close(),
  };
}

Deno.test({
  name:
    "The proxy against its devices, from outside: a silent device holds its route only for the request waiting on it; a device's malformed and mismatched answers end nothing and its valid answer gets through; a device whose blocks never end costs the reassembly budget and gets 5.03",
  ...network,
  async fn() {
    const silent = await device(() => {});
    const malformed = await device((bytes, reply) => {
      const decoded = decodeDatagram(bytes);
      if (decoded.type !== Type.CON) return;
      const id = decoded.messageId;
      const token = decoded.message.token;
      const ack = (code: number, t: Uint8Array, options = [] as {
        number: number;
        value: Uint8Array;
      }[]) =>
        encodeDatagram(
          Type.ACK,
          id,
          encodeMessage({ code, token: t, options, payload: utf8("x") }),
        );
      // Ten that are not its answer, then the answer.
      reply(ack(Code.CSM, new Uint8Array(0), [{ number: 2, value: uint(5) }]));
      reply(ack(Code.GET, token));
      reply(ack(0x45, new Uint8Array([0xde, 0xad])));
      reply(Uint8Array.of(0x60 | 9, 0x45, id >> 8, id & 0xff)); // TKL 9
      reply(Uint8Array.of(0x70, 0x45, id >> 8, id & 0xff)); // RST, a code
      reply(Uint8Array.of(0xe0, 0x45, id >> 8, id & 0xff)); // version 3
      reply(new Uint8Array(2));
      // Its token length says one byte more than there is.
      reply(
        Uint8Array.of(
          0x60 | (token.length + 1),
          0x45,
          id >> 8,
          id & 0xff,
          ...token,
        ),
      );
      // A payload marker with no payload after it.
      reply(
        Uint8Array.of(
          0x60 | token.length,
          0x45,
          id >> 8,
          id & 0xff,
          ...token,
          0xff,
        ),
      );
      reply(ack(0x25, token)); // class 1, reserved
      reply(
        encodeDatagram(
          Type.ACK,
          id,
          encodeMessage({
            code: 0x45,
            token,
            options: [],
            payload: utf8("valid at last"),
          }),
        ),
      );
    });
    const endless = await device((bytes, reply) => {
      const { type, messageId, message } = decodeDatagram(bytes);
      if (type !== Type.CON) return;
      const asked = message.options.find((o) => o.number === Option.BLOCK2);
      const num = asked === undefined
        ? 0
        : asked.value.length === 0
        ? 0
        : Number(
          asked.value.reduce((n, b) => n * 256 + b, 0) >> 4,
        );
      reply(encodeDatagram(
        Type.ACK,
        messageId,
        encodeMessage({
          code: 0x45,
          token: message.token,
          options: [{
            number: Option.BLOCK2,
            value: encodeBlock({ num, more: true, szx: 6 }),
          }],
          payload: new Uint8Array(1024).fill(0x65),
        }),
      ));
    });
    const proxy = await startOurProxy([
      "--allow",
      `127.0.0.1:${silent.port}`,
      "--allow",
      `127.0.0.1:${malformed.port}`,
      "--allow",
      `127.0.0.1:${endless.port}`,
      "--timeout",
      "1500",
      "--max-reassembly",
      "262144",
      "--no-explorer",
    ]);
    const client = await CoapClient.connect(
      `coap+ws://127.0.0.1:${proxy.port}`,
      { log: quiet },
    );
    const through = (port: number, path: string) => ({
      method: "GET" as const,
      path: "/",
      proxyUri: `coap://127.0.0.1:${port}/${path}`,
    });
    try {
      // One after another to the silent device: each is sent, each 5.04.
      const started = Date.now();
      for (let i = 0; i < 4; i++) {
        const [answer] = await ask(client, through(silent.port, `s${i}`));
        assert(answer.startsWith("5.04 Gateway Timeout"), answer);
      }
      const each = (Date.now() - started) / 4;
      table.push([
        "proxy",
        "4 GETs one after another to a silent device (--timeout 1500)",
        "",
        `${silent.requests.size} reached it`,
        "",
        `each 5.04 after ${(each / 1000).toFixed(1)} s`,
        "",
      ]);
      assertEquals(silent.requests.size, 4);
      const t0 = Date.now();
      const [valid] = await ask(client, through(malformed.port, "m"));
      table.push([
        "proxy",
        "a device answering 10 malformed or mismatched datagrams, then 2.05",
        "",
        valid,
        "",
        `after ${Date.now() - t0} ms`,
        "",
      ]);
      assertEquals(valid, "2.05 valid at last");
      const before = await rss(proxy.pid);
      const answers = await Promise.all(
        Array.from(
          { length: 8 },
          (_, i) => ask(client, through(endless.port, `e${i}`)),
        ),
      );
      const grew = await rss(proxy.pid) - before;
      const codes = answers.map(([line]) => line.slice(0, 4));
      table.push([
        "proxy",
        "8 GETs to a device whose blocks never end",
        "",
        [...new Set(codes)].join(", "),
        "",
        `RSS ${(grew / 2 ** 20).toFixed(1)} MB more`,
        "",
      ]);
      for (const [line] of answers) {
        assert(/^5\.0[34] /.test(line), line);
      }
      assert(codes.includes("5.03"), codes.join());
      assert(grew < 32 * 2 ** 20, `RSS grew ${grew} bytes`);
    } finally {
      client.close();
      await proxy.stop();
      silent.close();
      malformed.close();
      endless.close();
    }
  },
});

Deno.test({
  name: "UDP from outside: the table",
  ...network,
  async fn() {
    await ours?.stop();
    console.log(
      [
        "| server | case | bytes in | bytes back | factor | datagrams | last one after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        ...table.map((r) => `| ${r.join(" | ")} |`),
      ].join("\n"),
    );
  },
});
