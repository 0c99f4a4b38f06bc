// Several ordinary CoAP servers on one port, sharing /shared/{name} through
// Redis:
//   deno task coap:cluster [--port 8683] [--processes 2]
//     [--engine URL [--engine-ca FILE]] [--hostname H] [-- server options]
// Starts P copies of `deno task coap:server --reuse-port`, each given the
// engine's URL in its environment (COAP_ENGINE_URL), never on its command
// line, where ps would show a password: the kernel spreads connections
// between them (Linux SO_REUSEPORT), and Redis carries the shared values
// and their changes. The URL comes from --engine, or from COAP_ENGINE_URL
// when --engine is not given. Each process's lines are
// prefixed with its number. A process that exits is started again after a
// second; five exits within a minute stop the cluster. Ctrl-C stops them
// all.

import { describeEngine, parseEngineUrl } from "./engine_url.ts";

const usage =
  "usage: deno task coap:cluster [--port N] [--processes P] [--engine URL [--engine-ca FILE]] [--hostname H] [-- coap:server options ...]";
let port = 8683;
let processes = 2;
let engine: string | undefined;
let engineCa: string | undefined;
let hostname = "127.0.0.1";
const passThrough: string[] = [];
const args = [...Deno.args];
if (args.includes("-h") || args.includes("--help")) {
  console.log(`${usage}

Runs P CoAP-over-WebSocket servers on one port (Linux SO_REUSEPORT), each
with the demo resources and /shared/{name} kept in Redis, so that a value
PUT through one process is read and observed through every other.
  --port N          the port they share (default 8683)
  --processes P     how many (default 2)
  --engine URL      the Redis to share through (default: COAP_ENGINE_URL
                    from the environment, else redis://127.0.0.1:6379):
                    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or
                    rediss://… for TLS. Prefer COAP_ENGINE_URL for a URL
                    with a password: a flag is shown by ps
  --engine-ca FILE  trust the CA certificates in FILE (PEM) for rediss://
  --hostname H      the address to listen on (default 127.0.0.1; 0.0.0.0
                    for other machines)
  -- ...            further options for each coap:server (--origin, --limit)

On several machines, run the same command on each with one engine URL. A
process manager can run the servers instead: P instances of
  COAP_ENGINE_URL=URL deno run --config=stack/ws/deno.json \\
    --unstable-net --allow-net --allow-read \\
    --allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE,COAP_ENGINE_URL,REDIS_DEBUG_MAINTENANCE \\
    stack/server_cli.ts --reuse-port --port N`);
  Deno.exit(0);
}
while (args.length > 0) {
  const arg = args.shift()!;
  if (arg === "--port" && /^\d+$/.test(args[0] ?? "")) {
    port = Number(args.shift());
  } else if (arg === "--processes" && /^[1-9]\d*$/.test(args[0] ?? "")) {
    processes = Number(args.shift());
  } else if (arg === "--engine" && args[0]) {
    engine = args.shift()!;
  } else if (arg === "--engine-ca" && args[0]) {
    engineCa = args.shift()!;
  } else if (arg === "--hostname" && args[0]) {
    hostname = args.shift()!;
  } else if (arg === "--") {
    passThrough.push(...args.splice(0));
  } else {
    console.error(usage);
    Deno.exit(2);
  }
}
const engineUrl: string = engine ?? fromEnvironment();
function fromEnvironment(): string {
  const allowed = Deno.permissions.querySync({
    name: "env",
    variable: "COAP_ENGINE_URL",
  }).state === "granted";
  return (allowed ? Deno.env.get("COAP_ENGINE_URL") : undefined) ||
    "redis://127.0.0.1:6379";
}
let engineHost: string;
let engineName: string;
try {
  const address = parseEngineUrl(engineUrl);
  engineHost = `${
    address.host.includes(":") ? `[${address.host}]` : address.host
  }:${address.port}`;
  engineName = describeEngine(address);
} catch (error) {
  // The message does not repeat the URL, which may hold a password.
  console.error(`--engine: ${(error as Error).message}\n${usage}`);
  Deno.exit(2);
}

const server = new URL("../server_cli.ts", import.meta.url).pathname;
/** The configuration coap:server runs with: its ws transport's lock file. */
const config = new URL("../ws/deno.json", import.meta.url).pathname;
const children = new Map<number, Deno.ChildProcess>();
const exits: number[] = [];
let stopping = false;

async function pipeLines(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  write: (line: string) => void,
): Promise<void> {
  const lines = stream.pipeThrough(new TextDecoderStream());
  let rest = "";
  for await (const chunk of lines) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const line of parts) write(`${prefix}${line}`);
  }
  if (rest !== "") write(`${prefix}${rest}`);
}

function start(n: number): void {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      // --quiet: Deno would warn at each start that this configuration is
      // not a member of the workspace, which is what it is for.
      "--quiet",
      `--config=${config}`,
      "--unstable-net",
      `--allow-net=${hostname},127.0.0.1,${engineHost}`,
      "--allow-read",
      "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE,COAP_ENGINE_URL,REDIS_DEBUG_MAINTENANCE",
      "--v8-flags=--optimize-for-size",
      server,
      "--port",
      String(port),
      "--hostname",
      hostname,
      "--reuse-port",
      ...(engineCa === undefined ? [] : ["--engine-ca", engineCa]),
      "--name",
      `process ${n}`,
      ...passThrough,
    ],
    // The URL, with any password, in the environment only.
    env: { COAP_ENGINE_URL: engineUrl },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.set(n, child);
  pipeLines(child.stdout, `[${n}] `, console.log);
  pipeLines(child.stderr, `[${n}] `, console.error);
  child.status.then((status) => {
    children.delete(n);
    if (stopping) return;
    const now = Date.now();
    exits.push(now);
    while (exits.length > 0 && now - exits[0] > 60_000) exits.shift();
    if (exits.length >= 5) {
      console.error(
        `five server exits within a minute (the last: code ${status.code}); stopping the cluster`,
      );
      stop(1);
      return;
    }
    console.error(
      `[${n}] exited (code ${status.code}${
        status.signal ? `, ${status.signal}` : ""
      }); starting it again in 1 s`,
    );
    setTimeout(() => {
      if (!stopping) start(n);
    }, 1000);
  });
}

function stop(code: number): void {
  stopping = true;
  for (const child of children.values()) {
    try {
      child.kill("SIGTERM");
    } catch { /* gone already */ }
  }
  Promise.all([...children.values()].map((c) => c.status)).then(() =>
    Deno.exit(code)
  );
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => stop(0));
}
console.log(
  `cluster of ${processes} on ${hostname}:${port}, sharing through ${engineName}`,
);
for (let n = 1; n <= processes; n++) start(n);
