// The cluster checked end to end on 127.0.0.1 (part of `deno task
// test:coap`): Redis started on a free port with its data in a temporary
// folder, `deno task coap:cluster` with two server processes on one port,
// our client on each process and aiocoap-client observing /shared/t, PUTs
// through a connection of their own reaching every observer, one process
// killed (its client reconnects and registers again; the others notice
// nothing), and the engine stopped (5.03 at once) and started again
// (service resumes, observers get the current value). Needs redis-server
// (or REDIS_SERVER); interop.ts names it when it is missing.

import { assertEquals } from "@std/assert";
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
import { eventually, one } from "./ask.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

Deno.test({
  name:
    "cluster: two processes on one port share /shared through Redis; a PUT reaches our observers on both and aiocoap-client's; a killed process's client reconnects and registers again; the engine away is 5.03 at once, and back, service resumes",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Named up front, as interop.ts names its tools, rather than a NotFound
    // from deep inside the check.
    await requirePeer();
    const dir = await Deno.makeTempDir({ prefix: "coap-cluster-" });
    const redisPort = freePort();
    let redis = await startRedis(redisPort, dir, true);
    const port = freePort();
    const engine = `redis://127.0.0.1:${redisPort}`;
    const { cluster } = await startCluster(port, 2, engine);
    const uri = `coap+ws://127.0.0.1:${port}`;
    const clients: CoapClient[] = [];
    let aiocoap: Running | undefined;
    try {
      // Our client on each process: connect until both have one.
      const on = new Map<string, { client: CoapClient; pid: number }>();
      for (let i = 0; i < 60 && on.size < 2; i++) {
        const client = await CoapClient.connect(uri, {
          log: quiet,
          reconnect: { delay: 50 },
        });
        clients.push(client);
        const who = JSON.parse(
          (await one(client, { method: "GET", path: "/process" })).payload,
        );
        if (!on.has(who.name)) on.set(who.name, { client, pid: who.pid });
      }
      assertEquals(on.size, 2, "connections reached both processes");
      // The writer may be on the process that gets killed: it reconnects,
      // and a PUT is tried again while it does (bounded by eventually()).
      const writer = await CoapClient.connect(uri, {
        log: quiet,
        reconnect: { delay: 50 },
      });
      clients.push(writer);
      const put = async (value: string) => {
        let answer: { code: string; payload: string } | undefined;
        await eventually("a PUT to get through", async () => {
          try {
            answer = await one(writer, {
              method: "PUT",
              path: "/shared/t",
              payload: value,
              contentFormat: 0,
            });
            return true;
          } catch {
            return false; // reconnecting
          }
        });
        return answer!;
      };
      assertEquals((await put("v1\n")).code, "2.01");
      assertEquals((await put("v1\n")).code, "2.04");

      const seen = new Map<string, string[]>();
      const loops = [...on].map(async ([name, { client }]) => {
        const got: string[] = [];
        seen.set(name, got);
        for await (
          const event of client.request({
            method: "GET",
            path: "/shared/t",
            observe: true,
          })
        ) {
          if (event.kind !== "response") {
            got.push(`exception ${(event.exception as Error).message}`);
            break;
          }
          got.push(`${event.message.code} ${text(event.message.payload)}`);
        }
      });
      aiocoap = spawn(
        `${PEERS}/aiocoap-client`,
        [
          "--observe",
          `${uri}/shared/t`,
        ],
        port,
        { PYTHONUNBUFFERED: "1" },
      );
      // aiocoap-client without a terminal: the first response on stdout,
      // each notification on stderr; the payloads end in a newline.
      const theirs = () => aiocoap!.lines.filter((l) => /^v\d$/.test(l));
      await eventually(
        "every observer to have v1",
        () =>
          [...seen.values()].every((got) => got.length === 1) &&
          theirs().length === 1,
      );
      // Which process aiocoap-client observes through: the one that holds
      // two shared observations.
      const counts = new Map<string, number>();
      for (const [name, { client }] of on) {
        const state = JSON.parse(
          (await one(client, { method: "GET", path: "/process" })).payload,
        );
        counts.set(name, state.sharedObservations);
        // One engine subscription per process per observed name.
        assertEquals(state.subscriptions, 1);
      }
      const theirsOn = [...counts].find(([, n]) => n === 2)?.[0];
      const other = [...on.keys()].find((name) => name !== theirsOn)!;
      assertEquals(
        [...counts.values()].sort(),
        [1, 2],
        "aiocoap-client and one of ours share a process",
      );

      // A PUT through a third connection reaches all of them.
      await put("v2\n");
      await eventually(
        "every observer to have v2",
        () =>
          [...seen.values()].every((got) => got.length === 2) &&
          theirs().length === 2,
      );

      // The process aiocoap-client is not on dies.
      Deno.kill(on.get(other)!.pid, "SIGKILL");
      // Its client reconnects (to the other process, or the restarted one)
      // and registers again: the current value first.
      await eventually(
        "the reconnected observer",
        () => seen.get(other)!.length === 3,
      );
      await put("v3\n");
      await eventually(
        "every observer to have v3",
        () =>
          seen.get(other)!.length === 4 &&
          seen.get(theirsOn!)!.length === 3 && theirs().length === 3,
      );

      // The engine goes away: a shared resource answers 5.03 at once.
      await redis.stop();
      const reader = on.get(theirsOn!)!.client; // its process is alive
      const asked = performance.now();
      const away = await one(reader, { method: "GET", path: "/shared/t" });
      const took = performance.now() - asked;
      assertEquals(away.code, "5.03");
      assertEquals(took < 1000, true, `5.03 took ${took} ms`);
      // And back: without restarting any server, service resumes.
      redis = await startRedis(redisPort, dir, true);
      await eventually(
        "the engine to be back",
        async () => (await put("v4\n")).code === "2.04",
      );
      await eventually(
        "every observer to have v4",
        () =>
          seen.get(other)!.at(-1) === "2.05 v4\n" &&
          seen.get(theirsOn!)!.at(-1) === "2.05 v4\n" &&
          theirs().at(-1) === "v4",
        10_000,
        () => ({
          ours: [...seen],
          theirs: aiocoap!.lines,
          cluster: cluster.lines,
        }),
      );
      assertEquals(seen.get(theirsOn!), [
        "2.05 v1\n",
        "2.05 v2\n",
        "2.05 v3\n",
        "2.05 v4\n",
      ]);
      assertEquals(seen.get(other), [
        "2.05 v1\n",
        "2.05 v2\n",
        "2.05 v2\n", // registered again after the reconnection
        "2.05 v3\n",
        "2.05 v4\n",
      ]);
      assertEquals(theirs(), ["v1", "v2", "v3", "v4"]);
      console.log(
        `  ok   [cluster] 2 processes; aiocoap-client on ${theirsOn}; ${other} killed and its client back; 5.03 in ${
          took.toFixed(0)
        } ms while the engine was away; v4 reached everyone after it came back`,
      );
      for (const client of clients) client.close();
      await Promise.all(loops);
    } catch (error) {
      console.log(`the cluster printed:\n${cluster.lines.join("\n")}`);
      throw error;
    } finally {
      for (const client of clients) client.close();
      await aiocoap?.stop();
      await cluster.stop();
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
