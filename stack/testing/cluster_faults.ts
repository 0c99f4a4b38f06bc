// The cluster across engine faults, as an operator meets them (part of
// `deno task test:coap`): a Redis that requires a password, reached with
// the URL in the environment; observers on both processes (our client)
// and aiocoap-client; then the engine restarted with its data, paused
// with SIGSTOP, restarted without its data, unreachable at start-up, given
// the wrong password, and reached over TLS. Each step checks what every
// observer saw, what the servers logged, and that no password appears in
// a log line, in /process or on a server's command line. Needs
// redis-server and redis-cli (Debian's redis-server and redis-tools).

import { assert, assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { text } from "../message.ts";
import {
  freePort,
  PEERS,
  requirePeer,
  type Running,
  spawn,
  startCluster,
  startRedis,
} from "./peers.ts";
import { testCertificates } from "./certificates.ts";
import { eventually, one } from "./ask.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SECRET = "Zq9-s3cret-never-logged";
const sanitizers = { sanitizeOps: false, sanitizeResources: false };

/** Runs redis-cli against the engine, with the password from the env. */
async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(
    Deno.env.get("REDIS_CLI") ?? "redis-cli",
    {
      args: ["-p", String(port), ...args],
      env: { REDISCLI_AUTH: SECRET },
      stdout: "piped",
      stderr: "null",
    },
  ).output();
  return new TextDecoder().decode(stdout).trim();
}

/** A process's command line as ps shows it to every user. */
async function commandLine(pid: number): Promise<string> {
  const { stdout } = await new Deno.Command("ps", {
    args: ["-ww", "-o", "args=", "-p", String(pid)],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(stdout);
}

/** One observer: every notification with its arrival time. */
interface Seen {
  name: string;
  events: { at: number; what: string }[];
}

function observe(client: CoapClient, name: string, path: string): Seen {
  const seen: Seen = { name, events: [] };
  (async () => {
    for await (
      const event of client.request({ method: "GET", path, observe: true })
    ) {
      seen.events.push({
        at: performance.now(),
        what: event.kind === "response"
          ? `${event.message.code} ${text(event.message.payload)}`.trim()
          : `exception ${(event.exception as Error).message}`,
      });
    }
  })();
  return seen;
}

const whats = (seen: Seen) => seen.events.map((e) => e.what);

Deno.test({
  name:
    "cluster faults: with a password from the environment, observers on two processes and aiocoap-client live through the engine restarted with its data, paused for 3 s, and restarted without it (a 4.04 within 1 s, one log line each), and restarted without it and written to at once (the new value); no password is shown",
  ...sanitizers,
  async fn() {
    await requirePeer();
    const dir = await Deno.makeTempDir({ prefix: "coap-faults-" });
    const redisPort = freePort();
    const auth = ["--requirepass", SECRET];
    let redis = await startRedis(redisPort, dir, true, auth);
    const port = freePort();
    const engine = `redis://:${SECRET}@127.0.0.1:${redisPort}/2`;
    const { cluster, pids } = await startCluster(port, 2, engine);
    const uri = `coap+ws://127.0.0.1:${port}`;
    const clients: CoapClient[] = [];
    let aiocoap: Running | undefined;
    try {
      // Our client on each process.
      const on = new Map<string, CoapClient>();
      for (let i = 0; i < 60 && on.size < 2; i++) {
        const client = await CoapClient.connect(uri, { log: quiet });
        clients.push(client);
        const who = JSON.parse(
          (await one(client, { method: "GET", path: "/process" })).payload,
        );
        if (!on.has(who.name)) on.set(who.name, client);
      }
      assertEquals(on.size, 2, "connections reached both processes");
      const writer = clients[0];
      const put = (value: string) =>
        one(writer, {
          method: "PUT",
          path: "/shared/f",
          payload: value,
          contentFormat: 0,
        });
      assertEquals((await put("v1\n")).code, "2.01");
      const ours = [...on].map(([name, client]) =>
        observe(client, name, "/shared/f")
      );
      aiocoap = spawn(
        `${PEERS}/aiocoap-client`,
        [
          "--observe",
          `${uri}/shared/f`,
        ],
        port,
        { PYTHONUNBUFFERED: "1" },
      );
      // aiocoap-client prints each value (they end in a newline), and
      // "4.04 Not Found" before the diagnostic of one.
      const theirs = () =>
        aiocoap!.lines.filter((l) => /^v\d$/.test(l) || /^4\.04\b/.test(l));
      const state = () => ({
        ours: ours.map(whats),
        theirs: aiocoap!.lines,
        cluster: cluster.lines,
      });
      await eventually(
        "every observer to have v1",
        () => ours.every((o) => o.events.length === 1) && theirs().length === 1,
        10_000,
        state,
      );

      // 1. Restarted with its data (appendonly): nothing is lost, nobody
      // is told the data went, and the next PUT reaches everyone.
      await redis.stop();
      redis = await startRedis(redisPort, dir, true, auth);
      await eventually(
        "a PUT after the restart",
        async () => (await put("v2\n")).code === "2.04",
        10_000,
        state,
      );
      await eventually(
        "every observer to have v2",
        () => ours.every((o) => o.events.length === 2) && theirs().length === 2,
        5_000,
        state,
      );
      assertEquals(
        cluster.lines.filter((l) => l.includes("lost its data")),
        [],
      );

      // 2. Paused for 3 s: 5.03 within the command bound, then everything
      // works again without a restart.
      Deno.kill(redis.pid, "SIGSTOP");
      let paused: { code: string; payload: string };
      let took: number;
      try {
        const asked = performance.now();
        paused = await one(clients[1], { method: "GET", path: "/shared/f" });
        took = performance.now() - asked;
        await new Promise((resolve) => setTimeout(resolve, 3000 - took));
      } finally {
        Deno.kill(redis.pid, "SIGCONT");
      }
      assertEquals(paused.code, "5.03");
      assertEquals(
        paused.payload,
        "Service Unavailable: the shared store cannot be used now (it did not answer within 1000 ms)",
      );
      assert(took < 1500, `5.03 after ${took} ms`);
      await eventually(
        "a PUT after the pause",
        async () => (await put("v3\n")).code === "2.04",
        5_000,
        state,
      );
      await eventually(
        "every observer to have v3",
        () => ours.every((o) => o.events.length === 3) && theirs().length === 3,
        5_000,
        state,
      );
      const afterPause = JSON.parse(
        (await one(clients[1], { method: "GET", path: "/process" })).payload,
      );
      assert(pids.includes(afterPause.pid), "no server was restarted");
      assertEquals(cluster.lines.filter((l) => l.includes("exited")), []);

      // 3. Restarted without its data: every observer is told within 1 s
      // of the engine being back (a final 4.04: there is no value), and
      // each process says once that the engine lost its data.
      await redis.stop();
      for await (const entry of Deno.readDir(dir)) {
        await Deno.remove(`${dir}/${entry.name}`, { recursive: true });
      }
      redis = await startRedis(redisPort, dir, false, auth);
      const back = performance.now();
      await eventually(
        "every observer to get a 4.04",
        () =>
          ours.every((o) => o.events.length === 4) &&
          theirs().length === 4,
        5_000,
        state,
      );
      const told = Math.max(...ours.map((o) => o.events[3].at)) - back;
      assert(
        told < 1000,
        `observers told ${told} ms after the engine came back`,
      );
      for (const seen of ours) {
        assertEquals(whats(seen), [
          "2.05 v1",
          "2.05 v2",
          "2.05 v3",
          "4.04 Not Found: the shared store lost its data",
        ], seen.name);
      }
      assertEquals(theirs(), ["v1", "v2", "v3", "4.04 Not Found"]);
      const lost = cluster.lines.filter((l) => l.includes("lost its data"));
      assertEquals(lost.length, 2, lost.join("\n"));
      for (const line of lost) {
        assert(
          /^\[[12]\] warn: The engine at redis:\/\/127\.0\.0\.1:\d+\/2 \(with a password\) lost its data \(its epoch changed\); [12] observation\(s\) of 1 name\(s\) get the current value, or a 4\.04 where there is none$/
            .test(line),
          line,
        );
      }
      // And the next PUT is a new value, served to a new observer.
      assertEquals((await put("v4\n")).code, "2.01");
      assertEquals(
        await one(clients[1], { method: "GET", path: "/shared/f" }),
        { code: "2.05", payload: "v4\n" },
      );

      // 4. Restarted without its data, and written to as soon as it is
      // back: the observers get the new value, not a 4.04.
      const again = [...on].map(([name, client]) =>
        observe(client, name, "/shared/f")
      );
      const second = spawn(
        `${PEERS}/aiocoap-client`,
        [
          "--observe",
          `${uri}/shared/f`,
        ],
        port,
        { PYTHONUNBUFFERED: "1" },
      );
      const theirsAgain = () =>
        second.lines.filter((l) => /^v\d$/.test(l) || /^4\.04\b/.test(l));
      try {
        await eventually(
          "the new observers to have v4",
          () =>
            again.every((o) => o.events.length === 1) &&
            theirsAgain().length === 1,
          10_000,
          () => ({ ours: again.map(whats), theirs: second.lines }),
        );
        await redis.stop();
        redis = await startRedis(redisPort, dir, false, auth);
        await eventually(
          "a PUT once the engine is back",
          async () => {
            try {
              return (await put("v5\n")).code === "2.01";
            } catch {
              return false;
            }
          },
          5_000,
        );
        await eventually(
          "every observer to have v5",
          () =>
            again.every((o) => o.events.length === 2) &&
            theirsAgain().length === 2,
          3_000,
          () => ({ ours: again.map(whats), theirs: second.lines }),
        );
        for (const seen of again) {
          assertEquals(whats(seen), ["2.05 v4", "2.05 v5"], seen.name);
        }
        assertEquals(theirsAgain(), ["v4", "v5"]);
      } finally {
        await second.stop();
      }

      // The password was never shown: not in a log line, not in /process,
      // not on a server's command line.
      for (const line of [...cluster.lines, ...aiocoap.lines]) {
        assert(!line.includes(SECRET), line);
      }
      assert(!JSON.stringify(afterPause).includes(SECRET));
      assertEquals(
        afterPause.engine,
        `redis://127.0.0.1:${redisPort}/2 (with a password)`,
      );
      for (const pid of pids) {
        const shown = await commandLine(pid);
        assert(shown.includes("server_cli.ts"), shown);
        assert(!shown.includes(SECRET), shown);
      }
      console.log(
        `  ok   [faults] restart with data: v2 to all; SIGSTOP: 5.03 in ${
          took.toFixed(0)
        } ms, v3 to all after; restart without data: 4.04 to our observers ${
          told.toFixed(0)
        } ms after the engine was back, one line per process; restart without data and a PUT: v5 to all`,
      );
    } catch (error) {
      console.log(`the cluster printed:\n${cluster.lines.join("\n")}`);
      throw error;
    } finally {
      for (const client of clients) client.close();
      await aiocoap?.stop();
      await cluster.stop();
      try {
        Deno.kill(redis.pid, "SIGCONT");
      } catch { /* gone */ }
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster faults: an engine unreachable at start-up (the servers start, /shared answers 5.03 at once, the rest works) then started; a wrong password (one line per process, 5.03, attempts seconds apart)",
  ...sanitizers,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "coap-faults-" });
    const redisPort = freePort();
    const port = freePort();
    const { cluster } = await startCluster(
      port,
      2,
      `redis://:${SECRET}@127.0.0.1:${redisPort}`,
    );
    let redis: Running | undefined;
    const client = await CoapClient.connect(`coap+ws://127.0.0.1:${port}`, {
      log: quiet,
    });
    try {
      const asked = performance.now();
      const away = await one(client, { method: "GET", path: "/shared/s" });
      const took = performance.now() - asked;
      assertEquals(away, {
        code: "5.03",
        payload:
          "Service Unavailable: the shared store cannot be used now (it is unreachable)",
      });
      assert(took < 200, `5.03 after ${took} ms`);
      assertEquals(
        (await one(client, { method: "GET", path: "/" })).code,
        "2.05",
      );
      // Started with another password than the servers have.
      redis = await startRedis(redisPort, dir, false, [
        "--requirepass",
        "another-password",
      ]);
      await eventually(
        "each process to say the credentials were refused",
        () =>
          cluster.lines.filter((l) => l.includes("refused the credentials"))
            .length === 2,
        5_000,
        () => cluster.lines,
      );
      const before = Number(
        /total_connections_received:(\d+)/.exec(
          await cli(redisPort, "-a", "another-password", "INFO", "stats"),
        )![1],
      );
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const after = Number(
        /total_connections_received:(\d+)/.exec(
          await cli(redisPort, "-a", "another-password", "INFO", "stats"),
        )![1],
      );
      // Four connections (two per process), each tried every 5 s, and the
      // two redis-cli connections: no storm.
      assert(after - before <= 6, `${after - before} connections in 3 s`);
      const refused = await one(client, { method: "GET", path: "/shared/s" });
      assertEquals(refused, {
        code: "5.03",
        payload:
          "Service Unavailable: the shared store cannot be used now (it refused this server's credentials or certificate)",
      });
      const lines = cluster.lines.filter((l) => /warn:|error:/.test(l));
      for (const line of lines) assert(!line.includes(SECRET), line);
      assertEquals(
        lines.map((l) =>
          l.replace(/^\[[12]\] /, "").replaceAll(`${redisPort}`, "N")
        ),
        [
          "warn: The engine at redis://127.0.0.1:N (with a password) is unreachable (connect ECONNREFUSED 127.0.0.1:N); /shared answers 5.03 until it is back",
          "warn: The engine at redis://127.0.0.1:N (with a password) is unreachable (connect ECONNREFUSED 127.0.0.1:N); /shared answers 5.03 until it is back",
          "error: The engine at redis://127.0.0.1:N (with a password) cannot be used: it refused the credentials (WRONGPASS invalid username-password pair or user is disabled.); /shared answers 5.03, and the connection is tried again every 5000 ms",
          "error: The engine at redis://127.0.0.1:N (with a password) cannot be used: it refused the credentials (WRONGPASS invalid username-password pair or user is disabled.); /shared answers 5.03, and the connection is tried again every 5000 ms",
        ],
      );
      // The operator sets the password the servers have: within the retry
      // delay they are in, without a restart.
      await cli(
        redisPort,
        "-a",
        "another-password",
        "CONFIG",
        "SET",
        "requirepass",
        SECRET,
      );
      await eventually(
        "a PUT once the password is right",
        async () =>
          (await one(client, {
            method: "PUT",
            path: "/shared/s",
            payload: "in",
          })).code === "2.01",
        8_000,
        () => cluster.lines,
      );
    } catch (error) {
      console.log(`the cluster printed:\n${cluster.lines.join("\n")}`);
      throw error;
    } finally {
      client.close();
      await cluster.stop();
      await redis?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster faults: rediss:// with --engine-ca reaches a TLS-only engine with an ACL user; without the CA the certificate is refused in one line",
  ...sanitizers,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "coap-faults-tls-" });
    const { ca } = await testCertificates(dir);
    await Deno.writeTextFile(
      `${dir}/users.acl`,
      `user default off\nuser coap on >${SECRET} ~coap:shared:* &coap:shared:* +@all\n`,
    );
    const redisPort = freePort();
    const redis = await startRedis(redisPort, dir, false, [
      "--port",
      "0",
      "--tls-port",
      String(redisPort),
      "--tls-cert-file",
      `${dir}/server.pem`,
      "--tls-key-file",
      `${dir}/server.key`,
      "--tls-ca-cert-file",
      ca,
      "--tls-auth-clients",
      "no",
      // An ACL user of its own, with the default user off.
      "--aclfile",
      `${dir}/users.acl`,
    ]);
    const engine = `rediss://coap:${SECRET}@127.0.0.1:${redisPort}`;
    const trusting = await startCluster(freePort(), 1, engine, [
      "--engine-ca",
      ca,
    ]);
    const doubting = await startCluster(freePort(), 1, engine);
    const clients: CoapClient[] = [];
    try {
      const good = await CoapClient.connect(
        `coap+ws://127.0.0.1:${trusting.cluster.port}`,
        { log: quiet },
      );
      const bad = await CoapClient.connect(
        `coap+ws://127.0.0.1:${doubting.cluster.port}`,
        { log: quiet },
      );
      clients.push(good, bad);
      await eventually(
        "a PUT over TLS",
        async () =>
          (await one(good, {
            method: "PUT",
            path: "/shared/tls",
            payload: "over TLS",
          })).code === "2.01",
        5_000,
        () => trusting.cluster.lines,
      );
      assertEquals(await one(good, { method: "GET", path: "/shared/tls" }), {
        code: "2.05",
        payload: "over TLS",
      });
      assertEquals(
        (await one(bad, { method: "GET", path: "/shared/tls" })).code,
        "5.03",
      );
      const lines = doubting.cluster.lines.filter((l) =>
        /error:|warn:/.test(l)
      );
      assertEquals(lines.length, 1, lines.join("\n"));
      assert(
        /^\[1\] error: The engine at rediss:\/\/127\.0\.0\.1:\d+ \(with a user and password\) cannot be used: its certificate was not accepted \(.+\); \/shared answers 5\.03, and the connection is tried again every 5000 ms$/
          .test(lines[0]),
        lines[0],
      );
      for (const line of [...trusting.cluster.lines, ...lines]) {
        assert(!line.includes(SECRET), line);
      }
    } finally {
      for (const client of clients) client.close();
      await trusting.cluster.stop();
      await doubting.cluster.stop();
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
