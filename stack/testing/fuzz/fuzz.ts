// The CoAP stack's fuzzer: structure-aware sessions (generators.ts) and
// byte-level mutations, driven by fast-check against the codec, a client
// connection fed by a hostile server, the whole server over an in-memory
// socket pair, and a shorter pass over loopback against the server process
// as `deno task coap:server` runs it:
//
//   deno task fuzz [--seed N] [--runs N] [--seconds S] [--loopback N]
//     [--only codec|client|server|tcp|udp|proxy|oscore|dtls|loopback]
//
// --runs bounds the inputs of each in-process target and --seconds its
// time (whichever comes first; CI runs a fixed seed with both set); a
// failure prints the seed, the path to replay it and the shrunk frames.
// Every defect it has found is a regression test with its frames
// (connection_test.ts, client_server_test.ts, testing/hostile.ts).
// Exits 1 on a defect. Every loop here is bounded and stops by itself.

import fc from "fast-check";
import { parseArgs } from "../args.ts";
import { hex } from "../../message.ts";
import { frame as wsFrame, join, RawWebSocket, read } from "../raw_ws.ts";
import { startOurServer } from "../peers.ts";
import { rss } from "../proc.ts";
import { deviceSession, frame, session, udpSession } from "./generators.ts";
import { oscore, oscoreSession } from "./oscore_target.ts";
import { dtls, dtlsSession } from "./dtls_target.ts";
import {
  client,
  codec,
  proxy,
  server,
  tcp,
  udp,
  watchEscapes,
} from "./targets.ts";

const options = parseArgs(Deno.args, {
  seed: Math.floor(Math.random() * 2 ** 31),
  runs: 1_000_000,
  seconds: 60,
  loopback: 300,
  only: "",
});
watchEscapes();

const show = (frames: unknown[]) =>
  frames.map((f) =>
    f instanceof Uint8Array
      ? hex(f)
      : (f as { bytes?: unknown }).bytes instanceof Uint8Array
      ? `${(f as { from: number }).from}: ${
        hex((f as { bytes: Uint8Array }).bytes)
      }`
      : JSON.stringify(
        f,
        (_, v) => v instanceof Uint8Array ? hex(v) : v,
      )
  ).join(" | ");
let failed = false;

/** Runs one target; prints inputs, frames and their rates. */
async function target<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (input: T) => string[] | Promise<string[]>,
  frames: (input: T) => number,
): Promise<void> {
  if (options.only !== "" && options.only !== name) return;
  let inputs = 0, sent = 0;
  const started = performance.now();
  const property = fc.asyncProperty(arbitrary, async (input) => {
    inputs++;
    sent += frames(input);
    const defects = await check(input);
    if (defects.length > 0) throw new Error(defects.join("\n"));
  });
  const result = await fc.check(property, {
    seed: options.seed,
    numRuns: options.runs,
    interruptAfterTimeLimit: options.seconds * 1000,
    markInterruptAsFailure: false,
  });
  const seconds = (performance.now() - started) / 1000;
  const line = `${name}: ${inputs} inputs (${sent} frames) in ${
    seconds.toFixed(1)
  } s, ${Math.round(inputs / seconds)} inputs/s, ${
    Math.round(sent / seconds)
  } frames/s`;
  if (result.failed) {
    failed = true;
    const example = result.counterexample?.[0] as unknown;
    console.log(`FAILED ${line}`);
    console.log(`  seed ${result.seed}, path ${result.counterexamplePath}`);
    console.log(
      `  frames: ${
        Array.isArray(example) ? show(example) : hex(example as Uint8Array)
      }`,
    );
    console.log(
      `  ${String(result.errorInstance ?? "").split("\n").join("\n  ")}`,
    );
  } else console.log(`ok   ${line}`);
}

console.log(`fuzzing with seed ${options.seed}`);
await target(
  "codec",
  fc.oneof(frame, fc.uint8Array({ maxLength: 300 })),
  codec,
  () => 1,
);
await target("client", session, client, (frames) => frames.length);
await target("server", session, server, (frames) => frames.length);
await target("tcp", session, tcp, (frames) => frames.length);
await target("udp", udpSession, udp, (datagrams) => datagrams.length);
await target("proxy", deviceSession, proxy, (datagrams) => datagrams.length);
await target("oscore", oscoreSession, oscore, (frames) => frames.length);
await target("dtls", dtlsSession, dtls, (datagrams) => datagrams.length);

// Loopback: sessions over real sockets to the server process, with a
// bystander every so often; the process must serve to the end, log no
// stack, and keep its memory.
if (options.only === "" || options.only === "loopback") {
  const process = await startOurServer();
  const started = performance.now();
  const before = await rss(process.pid);
  let sent = 0;
  const sessions = fc.sample(session, {
    seed: options.seed,
    numRuns: options.loopback,
  });
  const bystander = async () => {
    const got: number[] = [];
    const socket = await RawWebSocket.connect(
      process.port,
      (payload) => got.push(read(payload.slice())?.code ?? -1),
    );
    await socket.sendBytes(
      join([
        wsFrame(new Uint8Array([0, 0xe1])),
        wsFrame(new Uint8Array([0x01, 0x01, 0x07])),
      ]),
    );
    const deadline = Date.now() + 5_000;
    while (!got.includes(0x45) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    socket.close();
    return got.includes(0x45);
  };
  try {
    for (const [i, frames] of sessions.entries()) {
      const socket = await RawWebSocket.connect(process.port);
      sent += frames.length;
      await socket.sendBytes(join(frames.map(wsFrame))).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 2));
      socket.close();
      if (i % 50 === 49 && !await bystander()) {
        throw new Error(
          `no answer to a bystander after session ${i}: ${show(frames)}`,
        );
      }
    }
    if (!await bystander()) throw new Error("no answer to the last bystander");
    // A stack is for the unexpected: /fail's deliberate error has one, and
    // nothing else may.
    const unexpected = process.lines.filter((l) =>
      /Uncaught/.test(l) ||
      /^error: /.test(l) &&
        !l.startsWith("error: An exception occurred while rendering a resource")
    );
    if (unexpected.length > 0) {
      throw new Error(`the server logged:\n${unexpected.join("\n")}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const grown = ((await rss(process.pid)) - before) / 1e6;
    console.log(
      `ok   loopback: ${sessions.length} sessions (${sent} frames) in ${
        seconds.toFixed(1)
      } s against deno task coap:server, ${process.lines.length} log lines, RSS ${
        grown >= 0 ? "+" : ""
      }${grown.toFixed(0)} MB; a bystander answered every 50 sessions`,
    );
  } catch (error) {
    failed = true;
    console.log(`FAILED loopback: ${(error as Error).message}`);
  } finally {
    await process.stop();
  }
}

if (failed) {
  console.log(`fuzz: defects found (seed ${options.seed})`);
  Deno.exit(1);
}
console.log(`fuzz: no defect found (seed ${options.seed})`);
