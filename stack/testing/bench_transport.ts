// What the ws transport costs: `deno task coap:server` with --transport ws
// (the default) and with --transport deno, each in its own process, driven
// by our client with 100 GETs of / in flight, in alternating rounds:
//   deno task bench:transport [--rounds 7] [--requests 20000] [--tls]
// With --tls both serve coaps+ws:// with a test certificate (ws on
// node:https), and the client trusts its CA (the script runs itself again
// with Deno's --cert, which WebSocket clients read only at start-up).
// Prints each round's server CPU a request (from /proc) and requests a
// second for both, and the median of the rounds' ratios (ws / deno).
// 127.0.0.1 only; every loop is bounded and stops by itself.

import { CoapClient } from "../client.ts";
import { text } from "../message.ts";
import { parseArgs } from "./args.ts";
import { startOurServer } from "./peers.ts";
import { cpuMs } from "./proc.ts";
import { testCertificates } from "./certificates.ts";

const options = parseArgs(Deno.args, {
  rounds: 7,
  requests: 20_000,
  tls: false,
  certs: "",
});
if (options.tls && options.certs === "") {
  const dir = await Deno.makeTempDir({ prefix: "coap-bench-tls-" });
  try {
    const { ca, cert, key } = await testCertificates(dir);
    await Deno.writeTextFile(`${dir}/cert.pem`, cert);
    await Deno.writeTextFile(`${dir}/key.pem`, key);
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--cert",
        ca,
        "--allow-net=127.0.0.1",
        "--allow-run",
        "--allow-read",
        "--allow-env",
        new URL(import.meta.url).pathname,
        ...Deno.args,
        "--certs",
        dir,
      ],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    Deno.exitCode = code;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  Deno.exit();
}
const tlsArgs = options.tls
  ? ["--cert", `${options.certs}/cert.pem`, "--key", `${options.certs}/key.pem`]
  : [];
const scheme = options.tls ? "coaps+ws" : "coap+ws";
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

async function one(client: CoapClient): Promise<string> {
  for await (const event of client.request({ method: "GET", path: "/" })) {
    if (event.kind === "response") return text(event.message.payload);
    throw event.exception;
  }
  throw new Error("no response");
}

async function inFlight(client: CoapClient, total: number): Promise<void> {
  let sent = 0;
  await Promise.all(Array.from({ length: 100 }, async () => {
    while (sent < total) {
      sent++;
      await one(client);
    }
  }));
}

const servers = {
  deno: await startOurServer(["--transport", "deno", ...tlsArgs]),
  ws: await startOurServer(["--transport", "ws", ...tlsArgs]),
};
try {
  const clients = {
    deno: await CoapClient.connect(
      `${scheme}://127.0.0.1:${servers.deno.port}`,
      { log: quiet },
    ),
    ws: await CoapClient.connect(`${scheme}://127.0.0.1:${servers.ws.port}`, {
      log: quiet,
    }),
  };
  const round = async (which: "deno" | "ws") => {
    const before = await cpuMs(servers[which].pid);
    const started = performance.now();
    await inFlight(clients[which], options.requests);
    const seconds = (performance.now() - started) / 1000;
    const cpu = (await cpuMs(servers[which].pid) - before) * 1000 /
      options.requests;
    return { cpu, rate: options.requests / seconds };
  };
  // One uncounted round each: the first pays for warming up.
  await round("deno");
  await round("ws");
  const ratios: number[] = [];
  console.log("round  deno us/req  req/s   ws us/req  req/s   ws/deno");
  for (let i = 0; i < options.rounds; i++) {
    const first = i % 2 === 0 ? "deno" : "ws";
    const a = await round(first);
    const b = await round(first === "deno" ? "ws" : "deno");
    const [deno, ws] = first === "deno" ? [a, b] : [b, a];
    ratios.push(ws.cpu / deno.cpu);
    console.log(
      `${String(i + 1).padStart(5)}  ${deno.cpu.toFixed(1).padStart(11)}  ${
        Math.round(deno.rate).toString().padStart(6)
      }  ${ws.cpu.toFixed(1).padStart(10)}  ${
        Math.round(ws.rate).toString().padStart(6)
      }   ${(ws.cpu / deno.cpu).toFixed(2)}`,
    );
  }
  ratios.sort((x, y) => x - y);
  console.log(
    `median ratio of server CPU a request, ws / deno: ${
      ratios[ratios.length >> 1].toFixed(2)
    } (${options.rounds} rounds of ${options.requests} requests, 100 in flight${
      options.tls ? ", over TLS" : ""
    })`,
  );
  for (const client of Object.values(clients)) client.close();
} finally {
  await servers.deno.stop();
  await servers.ws.stop();
}
