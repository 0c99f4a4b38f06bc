// The engine connection (node-redis, set up by engine.ts) against a real
// redis-server on 127.0.0.1 (REDIS_SERVER, or redis-server on the PATH):
// what it promises the shared resources, each with the log lines it wrote.
// Part of `deno task test:coap`.

import { assert, assertEquals, assertInstanceOf } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { freePort, type Running, startRedis } from "../testing/peers.ts";
import {
  Engine,
  EngineStatus,
  EngineUnavailable,
  parseEngineUrl,
} from "./engine.ts";
import { ErrorReply } from "@redis/client";

/** A reply as text: bulk strings are bytes, INFO's is a string. */
function text(reply: unknown): string {
  return reply instanceof Uint8Array
    ? new TextDecoder().decode(reply)
    : String(reply);
}

/** A logger that keeps each line as `level: text`. */
function recording(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (...data: unknown[]) =>
    lines.push(`${level}: ${data.map(String).join(" ")}`);
  return {
    lines,
    debug: keep("debug"),
    info: keep("info"),
    warn: keep("warn"),
    error: keep("error"),
  };
}

async function until(what: string, probe: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sanitizers = { sanitizeOps: false, sanitizeResources: false };

/**
 * Runs `check` against a redis-server of its own (on a free port, its data
 * in a temporary folder, `extra` arguments), and stops and removes it
 * after, whatever the check did.
 */
async function withRedis(
  extra: string[],
  check: (redis: Running, port: number) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "coap-engine-" });
  const port = freePort();
  const redis = await startRedis(port, dir, false, extra);
  try {
    await check(redis, port);
  } finally {
    try {
      Deno.kill(redis.pid, "SIGCONT"); // in case a check paused it
    } catch { /* gone */ }
    await redis.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "Engine: while the engine is unreachable, commands and subscriptions fail at once, and two connections log one line",
  ...sanitizers,
  async fn() {
    const port = freePort(); // nothing listens there
    const log = recording();
    const address = parseEngineUrl(`redis://:hunter2@127.0.0.1:${port}`);
    const status = new EngineStatus(address, log);
    const commands = new Engine(address, { role: "commands", status });
    const subscriber = new Engine(address, { role: "subscriber", status });
    try {
      assertEquals(await commands.ready, false);
      assertEquals(await subscriber.ready, false);
      const started = performance.now();
      const failed = await commands.command("GET", "k").catch((e) => e);
      const refused = await subscriber.subscribe("ch", () => {}).catch((e) =>
        e
      );
      const took = performance.now() - started;
      assertInstanceOf(failed, EngineUnavailable);
      assertEquals(failed.message, "it is unreachable");
      assertInstanceOf(refused, EngineUnavailable);
      assert(took < 100, `took ${took} ms`);
      // Several attempts by now, two connections: one line, no password.
      await new Promise((resolve) => setTimeout(resolve, 600));
      assertEquals(log.lines, [
        `warn: The engine at redis://127.0.0.1:${port} (with a password) is unreachable (connect ECONNREFUSED 127.0.0.1:${port}); /shared answers 5.03 until it is back`,
      ]);
    } finally {
      commands.close();
      subscriber.close();
    }
  },
});

Deno.test({
  name:
    "Engine: values are bytes both ways, scripts run by digest, and an error reply is an ErrorReply, not an outage",
  ...sanitizers,
  fn: () =>
    withRedis([], async (_redis, port) => {
      const log = recording();
      const engine = new Engine(parseEngineUrl(`redis://127.0.0.1:${port}`), {
        role: "commands",
        log,
        scripts: {
          echo: { source: "return {KEYS[1], ARGV[1]}", keys: 1 },
          broken: { source: "return redis.call('NOSUCHCOMMAND')", keys: 0 },
        },
      });
      const subscriber = new Engine(
        parseEngineUrl(`redis://127.0.0.1:${port}`),
        { role: "subscriber", log },
      );
      try {
        assertEquals(await engine.ready, true);
        const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
        assertEquals(await engine.command("SET", "k", bytes), "OK");
        assertEquals(
          new Uint8Array((await engine.command("GET", "k")) as Uint8Array),
          bytes,
        );
        const [key, arg] = await engine.run("echo", ["a key"], [bytes]) as [
          Uint8Array,
          Uint8Array,
        ];
        assertEquals(new TextDecoder().decode(key), "a key");
        assertEquals(new Uint8Array(arg), bytes);
        // The script went by EVALSHA after the first EVAL fallback.
        const info = text(await engine.command("INFO", "commandstats"));
        assert(/cmdstat_evalsha:calls=1\b/.test(info), info);
        const error = await engine.run("broken", [], []).catch((e) => e);
        assertInstanceOf(error, ErrorReply);
        const got: Uint8Array[] = [];
        await subscriber.subscribe("ch", (message) => got.push(message));
        await engine.command("PUBLISH", "ch", bytes);
        await until("the message", () => got.length === 1);
        assertEquals(new Uint8Array(got[0]), bytes);
        assertEquals(log.lines, []);
      } finally {
        engine.close();
        subscriber.close();
      }
    }),
});

Deno.test({
  name:
    "Engine: a paused engine fails each command within the timeout and a full queue at once; after SIGCONT it answers again, with one line each way",
  ...sanitizers,
  fn: () =>
    withRedis([], async (redis, port) => {
      const log = recording();
      const engine = new Engine(parseEngineUrl(`redis://127.0.0.1:${port}`), {
        role: "commands",
        log,
        commandTimeout: 300,
        maxPending: 4,
      });
      try {
        assertEquals(await engine.ready, true);
        Deno.kill(redis.pid, "SIGSTOP");
        const started = performance.now();
        const outcomes = await Promise.all(
          Array.from({ length: 6 }, () =>
            engine.command("INCR", "n").then(
              (reply) => `reply ${reply}`,
              (e) =>
                `${e.name}: ${e.message} after ${
                  performance.now() - started < 200 ? "<200" : ">=200"
                } ms`,
            )),
        );
        const took = performance.now() - started;
        assertEquals(outcomes, [
          ...Array(4).fill(
            "EngineUnavailable: it did not answer within 300 ms after >=200 ms",
          ),
          ...Array(2).fill(
            "EngineUnavailable: 4 commands are waiting for it after <200 ms",
          ),
        ]);
        assert(took < 1000, `took ${took} ms`);
        Deno.kill(redis.pid, "SIGCONT");
        // The four that timed out still hold their places until the engine
        // answers them; then there is room again. They reached the engine (a
        // write that timed out may have been applied): the next INCR is the
        // fifth.
        let next: unknown;
        const deadline = Date.now() + 3000;
        while (next === undefined) {
          try {
            next = await engine.command("INCR", "n");
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
        assertEquals(next, 5);
        assertEquals(log.lines, [
          `warn: The engine at redis://127.0.0.1:${port} did not answer within 300 ms; /shared answers 5.03 while it does not`,
          `info: The engine at redis://127.0.0.1:${port} answers again`,
        ]);
      } finally {
        engine.close();
      }
    }),
});

Deno.test({
  name:
    "Engine: a wrong password is one error line without the password, commands fail at once, and attempts are seconds apart",
  ...sanitizers,
  fn: () =>
    withRedis(["--requirepass", "right-one"], async (_redis, port) => {
      const log = recording();
      const address = parseEngineUrl(`redis://:wrong-one@127.0.0.1:${port}/1`);
      const status = new EngineStatus(address, log, 1000);
      const engines = ["commands", "subscriber"].map((role) =>
        new Engine(address, { role, status, refusedRetryDelay: 1000 })
      );
      const admin = new Engine(
        parseEngineUrl(`redis://:right-one@127.0.0.1:${port}`),
        { role: "admin", log: recording() },
      );
      try {
        assertEquals(await engines[0].ready, false);
        assertEquals(await admin.ready, true);
        const connections = async () =>
          Number(
            /total_connections_received:(\d+)/.exec(
              text(await admin.command("INFO", "stats")),
            )![1],
          );
        const before = await connections();
        const failed = await engines[0].command("GET", "k").catch((e) => e);
        assertEquals(
          failed.message,
          "it refused this server's credentials or certificate",
        );
        await new Promise((resolve) => setTimeout(resolve, 2500));
        const attempts = await connections() - before;
        // Two connections, one attempt a second each: at most 2 × 3.
        assert(attempts <= 6, `${attempts} connection attempts in 2.5 s`);
        assertEquals(log.lines, [
          `error: The engine at redis://127.0.0.1:${port}/1 (with a password) cannot be used: it refused the credentials (WRONGPASS invalid username-password pair or user is disabled.); /shared answers 5.03, and the connection is tried again every 1000 ms`,
        ]);
        // The password fixed on the engine's side: the next attempt gets in.
        await admin.command("CONFIG", "SET", "requirepass", "wrong-one");
        await until("the connections", () => engines.every((e) => e.up), 3000);
        assertEquals(log.lines.slice(1), [
          `info: The engine at redis://127.0.0.1:${port}/1 (with a password) is back`,
        ]);
      } finally {
        for (const engine of engines) engine.close();
        admin.close();
      }
    }),
});
