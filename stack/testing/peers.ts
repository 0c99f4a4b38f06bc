// Starting and talking to the aiocoap peer (../shared/peers, or where
// COAP_PEERS says) for the interop checks. Installs nothing: when the peer
// or Debian's python3-websockets is missing, it says which and stops.

import dgram from "node:dgram";

const here = new URL(".", import.meta.url);

/** The folder with aiocoap_peer.py and aiocoap-client. */
export const PEERS: string = Deno.env.get("COAP_PEERS") ??
  new URL("../../../shared/peers", here).pathname;
const PYTHON = Deno.env.get("COAP_PYTHON") ?? "/usr/bin/python3";

/** Throws, naming what is missing, unless the peer can run here. */
export async function requirePeer(): Promise<void> {
  try {
    await Deno.stat(`${PEERS}/aiocoap_peer.py`);
  } catch {
    throw new Error(
      `The aiocoap peer is missing: no ${PEERS}/aiocoap_peer.py (set COAP_PEERS to its folder)`,
    );
  }
  let ok = false;
  try {
    const { code } = await new Deno.Command(PYTHON, {
      args: ["-c", "import websockets"],
      stdout: "null",
      stderr: "null",
    }).output();
    ok = code === 0;
  } catch {
    throw new Error(`${PYTHON} is missing (the aiocoap peer runs on it)`);
  }
  if (!ok) {
    throw new Error(
      `python3-websockets is missing: ${PYTHON} cannot import websockets (apt-get install python3-websockets)`,
    );
  }
}

/**
 * Whether `command` with `args` runs and succeeds (its output discarded);
 * false also when it cannot be started.
 */
export async function succeeds(
  command: string,
  args: string[],
): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args,
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (bound, noted, let go). */
export function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

/**
 * The command of `deno task coap:server`, as deno.json has it, less the
 * `deno` itself, so that a check runs the server exactly as a user does
 * (its permissions and V8 flags included).
 *
 * @returns The arguments to give `Deno.execPath()`.
 */
export async function ourServerCommand(
  task = "coap:server",
): Promise<string[]> {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  );
  // The task bundles the explorer's script first; the server is the last
  // command.
  const command = (config.tasks[task] as string).split(" && ").at(-1)!;
  const [deno, ...args] = command.split(" ");
  if (deno !== "deno") throw new Error("coap:server is not a deno command");
  return args.map((arg) =>
    arg.endsWith(".ts")
      ? new URL(`../../${arg}`, import.meta.url).pathname
      : arg.startsWith("--allow-net=")
      ? `${arg},127.0.0.1`
      : arg
  );
}

/**
 * Starts `deno task coap:server` on a free port with `args`, and waits
 * until it listens.
 *
 * @param args More arguments for the server.
 * @returns The running server.
 */
export async function startOurServer(args: string[] = []): Promise<Running> {
  const port = freePort();
  const child = spawn(Deno.execPath(), [
    ...await ourServerCommand(),
    "--port",
    String(port),
    ...args,
  ], port);
  await child.waitFor(/^listening on/);
  return child;
}

/**
 * Starts `deno task coap:proxy` on a free port with `args`, and waits
 * until it listens.
 *
 * @param args More arguments for the proxy (`--allow HOST:PORT`).
 * @returns The running proxy.
 */
export async function startOurProxy(args: string[] = []): Promise<Running> {
  const port = freePort();
  const child = spawn(Deno.execPath(), [
    ...await ourServerCommand("coap:proxy"),
    "--port",
    String(port),
    ...args,
  ], port);
  await child.waitFor(/^proxy listening on/);
  return child;
}

/** A running process whose output lines are kept. */
export interface Running {
  readonly port: number;
  /** The process id. */
  readonly pid: number;
  readonly lines: string[];
  /** Resolves with the first line matching, within `ms`. */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Starts a command and keeps its stdout and stderr lines. */
export function spawn(
  command: string,
  args: string[],
  port: number,
  env: Record<string, string> = {},
): Running {
  const child = new Deno.Command(command, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const read = async (stream: ReadableStream<Uint8Array>) => {
    let buffer = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
      for (const wake of waiters) wake();
    }
    if (buffer) lines.push(buffer);
  };
  const done = Promise.all([read(child.stdout), read(child.stderr)]);
  let exited = false;
  let how = "";
  const status = child.status.then((s) => {
    exited = true;
    how = s.signal === null ? `code ${s.code}` : `signal ${s.signal}`;
    for (const wake of waiters) wake();
    return s;
  });
  return {
    port,
    pid: child.pid,
    lines,
    waitFor(pattern, ms = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => pattern.test(l));
          if (line !== undefined) finish(() => resolve(line));
          else if (exited) {
            finish(() =>
              reject(
                new Error(
                  `${command} exited (${how}) before printing ${pattern}:\n${
                    lines.join("\n")
                  }`,
                ),
              )
            );
          }
        };
        const timer = setTimeout(() =>
          finish(() =>
            reject(
              new Error(
                `${command} did not print ${pattern} in ${ms} ms:\n${
                  lines.join("\n")
                }`,
              ),
            )
          ), ms);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        waiters.add(check);
        check();
      });
    },
    async stop() {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
      }
      await status;
      await done;
    },
  };
}

/**
 * Starts the aiocoap peer on a free port and waits for "ready on PORT";
 * with `udpPort`, it serves CoAP over UDP there too.
 */
export async function startPeer(udpPort?: number): Promise<Running> {
  await requirePeer();
  const port = freePort();
  const peer = spawn(
    PYTHON,
    [
      `${PEERS}/aiocoap_peer.py`,
      "--port",
      String(port),
      ...(udpPort === undefined ? [] : ["--udp", String(udpPort)]),
    ],
    port,
    {
      PYTHONUNBUFFERED: "1",
    },
  );
  await peer.waitFor(new RegExp(`^ready on ${port}$`));
  return peer;
}

/** What aiocoap-client printed and how it exited. */
export interface ClientRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs aiocoap's command line client, optionally stopped with SIGINT after `ms`. */
export async function aiocoapClient(
  args: string[],
  interruptAfter?: number,
  env: Record<string, string> = {},
  script = "aiocoap-client",
): Promise<ClientRun> {
  const child = new Deno.Command(`${PEERS}/${script}`, {
    args,
    env: { PYTHONUNBUFFERED: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (interruptAfter !== undefined) {
    timer = setTimeout(() => {
      try {
        child.kill("SIGINT");
      } catch { /* gone */ }
    }, interruptAfter);
  }
  const output = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs the aiocoap library load script (100 concurrent requests). */
export async function aiocoapLoad(
  uri: string,
  count: number,
): Promise<ClientRun> {
  const output = await new Deno.Command(PYTHON, {
    args: [new URL("aiocoap_load.py", here).pathname, uri, String(count)],
    env: { PYTHONPATH: PEERS, PYTHONUNBUFFERED: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The Redis server the cluster's checks and benchmark start. */
export const REDIS: string = Deno.env.get("REDIS_SERVER") ?? "redis-server";

/**
 * Starts Redis on 127.0.0.1:`port` with its data in `dir` (appended to a
 * file with `appendonly`, so that a restart keeps it) and waits until it
 * accepts connections.
 */
export async function startRedis(
  port: number,
  dir: string,
  appendonly = false,
  extra: string[] = [],
): Promise<Running> {
  const redis = spawn(REDIS, [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--appendonly",
    appendonly ? "yes" : "no",
    "--save",
    "",
    ...extra,
  ], port);
  await redis.waitFor(/Ready to accept connections/);
  return redis;
}

/**
 * Starts `deno task coap:cluster` with `processes` servers on `port`,
 * sharing through `engine`, and waits until each one listens.
 *
 * @returns The cluster command, and each server's pid.
 */
export async function startCluster(
  port: number,
  processes: number,
  engine: string,
  extra: string[] = [],
): Promise<{ cluster: Running; pids: number[] }> {
  const cluster = spawn(
    Deno.execPath(),
    [
      "run",
      "--allow-run",
      "--allow-read",
      "--allow-env=COAP_ENGINE_URL",
      new URL("../cluster/cluster_cli.ts", import.meta.url).pathname,
      "--port",
      String(port),
      "--processes",
      String(processes),
      ...extra,
    ],
    port,
    // In the environment, as an operator with a password would pass it.
    { COAP_ENGINE_URL: engine },
  );
  const pids: number[] = [];
  try {
    for (let n = 1; n <= processes; n++) {
      const line = await cluster.waitFor(new RegExp(`^\\[${n}\\] listening`));
      pids.push(Number(line.match(/pid (\d+)/)![1]));
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return { cluster, pids };
}

/** libcoap's example server and client (Debian's libcoap3-bin). */
export const LIBCOAP_SERVER: string = Deno.env.get("LIBCOAP_SERVER") ??
  "coap-server-notls";
/** libcoap's command line client. */
export const LIBCOAP_CLIENT: string = Deno.env.get("LIBCOAP_CLIENT") ??
  "coap-client-notls";

/** Fails naming what is missing and how to get it, if libcoap is. */
export async function requireLibcoap(): Promise<void> {
  for (const tool of [LIBCOAP_SERVER, LIBCOAP_CLIENT]) {
    try {
      await new Deno.Command(tool, {
        args: ["-?"],
        stdout: "null",
        stderr: "null",
      }).output();
    } catch {
      throw new Error(
        `${tool} is missing: apt-get install -y libcoap3-bin (or set LIBCOAP_SERVER and LIBCOAP_CLIENT)`,
      );
    }
  }
}

/**
 * Runs libcoap's client (`command`: another build, `coap-client-openssl`),
 * killed after `ms`.
 *
 * @returns What it printed on stdout (and stderr, with `withStderr`).
 */
export async function libcoapClient(
  args: string[],
  ms = 15_000,
  command = LIBCOAP_CLIENT,
  withStderr = false,
): Promise<string> {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, ms);
  const output = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return decoder.decode(output.stdout) +
    (withStderr ? decoder.decode(output.stderr) : "");
}

/**
 * Starts libcoap's coap-server on a free port (its TCP one too, as it binds
 * both), resources creatable by PUT, and waits until it answers: it prints
 * nothing when ready.
 */
export async function startLibcoap(): Promise<Running> {
  await requireLibcoap();
  const port = freePort();
  const server = spawn(LIBCOAP_SERVER, [
    "-A",
    "127.0.0.1",
    "-p",
    String(port),
    "-d",
    "10",
  ], port);
  for (let i = 0; i < 50; i++) {
    const out = await libcoapClient([
      "-B",
      "1",
      "-m",
      "get",
      `coap://127.0.0.1:${port}/`,
    ], 3000);
    if (out.includes("libcoap")) return server;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await server.stop();
  throw new Error(`${LIBCOAP_SERVER} did not answer on ${port}`);
}

/** Throws, naming what is missing, unless aiocoap's OSCORE peer can run. */
export async function requireOscorePeer(): Promise<void> {
  await requirePeer();
  const { code } = await new Deno.Command(PYTHON, {
    args: ["-c", "import cbor2, cryptography, filelock"],
    stdout: "null",
    stderr: "null",
  }).output();
  if (code !== 0) {
    throw new Error(
      `aiocoap's OSCORE needs Debian packages: ${PYTHON} cannot import cbor2, cryptography and filelock (apt-get install python3-cbor2 python3-cryptography python3-filelock)`,
    );
  }
}

/**
 * Starts aiocoap's OSCORE server (RFC 8613 C.1.2's context) over UDP on a
 * free port and waits for "ready on PORT".
 */
export async function startOscorePeer(): Promise<Running> {
  await requireOscorePeer();
  const port = await freeUdpPort();
  const peer = spawn(
    PYTHON,
    [`${PEERS}/aiocoap_oscore_peer.py`, "--udp", String(port)],
    port,
    { PYTHONUNBUFFERED: "1" },
  );
  await peer.waitFor(new RegExp(`^ready on ${port}$`));
  return peer;
}

/** A free UDP port on 127.0.0.1 (bound, noted, let go). */
export async function freeUdpPort(): Promise<number> {
  const probe = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => probe.bind(0, "127.0.0.1", resolve));
  const port = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * Runs aiocoap's command line client with OSCORE (the peers'
 * aiocoap-oscore-client), stopped with SIGINT after `interruptAfter` ms
 * if given. `--credentials` defaults to RFC 8613 C.1.1's client context;
 * its sequence number is kept between runs by aiocoap itself.
 */
export function aiocoapOscoreClient(
  args: string[],
  interruptAfter?: number,
): Promise<ClientRun> {
  return aiocoapClient(args, interruptAfter, {}, "aiocoap-oscore-client");
}
