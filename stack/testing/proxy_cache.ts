// What the proxy's cache saves a device (part of `deno task test:coap`):
// a sensor over UDP on 127.0.0.1 whose reading changes every 2 s (Max-Age
// 2), asked through the proxy once a second by ten pollers, with and
// without ten observers of it too, for 6 s; each case run with the cache
// and without it (cacheBytes 0), all at once. The device counts the
// requests that reach it; the table is printed.

import { assert, assertEquals } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "../client.ts";
import { CoapProxy } from "../proxy.ts";
import { CoapServer, Observers } from "../server.ts";
import { serveCoapUdp } from "../udp_node.ts";
import { attachWebSocket } from "../websocket.ts";
import { socketPair } from "./socket_pair.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SECONDS = 6;

interface Counted {
  polls: number;
  gets: number;
  registrations: number;
  pollerAnswers: number;
  notifications: number;
}

async function run(cache: boolean, observers: number): Promise<Counted> {
  const counted: Counted = {
    polls: 0,
    gets: 0,
    registrations: 0,
    pollerAnswers: 0,
    notifications: 0,
  };
  let reading = 0;
  let observing = 0;
  const table = new Observers({
    onCount: (count) => {
      if (count > observing) counted.registrations += count - observing;
      observing = count;
    },
  });
  const device = new CoapServer({
    "/reading": {
      observable: table,
      GET: (request) => {
        // Renders for an observation's notifications are not requests.
        if (request.observe === undefined) counted.gets++;
        return { payload: String(reading), maxAge: 2 };
      },
    },
  }, { log: quiet });
  const ticker = setInterval(() => {
    reading++;
    table.updated();
  }, 2000);
  const udp = await serveCoapUdp(device, { hostname: "127.0.0.1", port: 0 });
  const proxy = new CoapProxy({
    allow: [`127.0.0.1:${udp.port}`],
    log: quiet,
    ...(cache ? {} : { cacheBytes: 0 }),
  });
  const front = new CoapServer({}, { proxy: proxy.resource, log: quiet });
  const clients: CoapClient[] = [];
  const connect = async () => {
    const [near, far] = socketPair();
    front.accept(far);
    const connection = attachWebSocket(near, { log: quiet });
    await connection.ready;
    const client = new CoapClient(connection, { log: quiet });
    clients.push(client);
    return client;
  };
  const target = `coap://127.0.0.1:${udp.port}/reading`;
  const request = { method: "GET" as const, path: "/", proxyUri: target };
  const stop = Date.now() + SECONDS * 1000;
  try {
    const watching = Promise.all(
      Array.from({ length: observers }, async () => {
        const client = await connect();
        for await (
          const event of client.request({ ...request, observe: true })
        ) {
          if (event.kind === "response") counted.notifications++;
          if (Date.now() >= stop) break;
        }
      }),
    );
    const polling = Array.from({ length: 10 }, async (_, i) => {
      const client = await connect();
      // Spread over the second, as independent pollers would be.
      await new Promise((resolve) => setTimeout(resolve, i * 100));
      while (Date.now() < stop) {
        counted.polls++;
        for await (const event of client.request(request)) {
          if (event.kind === "response" && event.message.code === "2.05") {
            counted.pollerAnswers++;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    });
    await Promise.all([...polling, watching]);
  } finally {
    clearInterval(ticker);
    for (const client of clients) client.close();
    proxy.close();
    udp.close();
  }
  return counted;
}

Deno.test({
  name:
    "coap:proxy's cache: ten pollers once a second, with and without ten observers, of a device whose reading has Max-Age 2: counted at the device with the cache and without it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const cases = [
      ["10 pollers", 0],
      ["10 pollers and 10 observers", 10],
    ] as const;
    const results = await Promise.all(
      cases.flatMap(([, observers]) => [
        run(false, observers),
        run(true, observers),
      ]),
    );
    const rows: string[] = [];
    cases.forEach(([name], i) => {
      const [without, withCache] = [results[2 * i], results[2 * i + 1]];
      for (const [label, r] of [["no cache", without], ["cache", withCache]]) {
        const c = r as Counted;
        rows.push(
          `| ${name} | ${label} | ${c.pollerAnswers} | ${c.gets} | ${c.registrations} |`,
        );
      }
      const seen = JSON.stringify({ without, withCache });
      // Every poll is answered either way.
      assertEquals(withCache.pollerAnswers, withCache.polls, seen);
      assertEquals(without.pollerAnswers, without.polls, seen);
      // Without a cache every poll reaches the device.
      assertEquals(without.gets, without.pollerAnswers, seen);
      // With it, at most one GET per Max-Age (2 s), plus the first.
      assert(
        withCache.gets <= SECONDS / 2 + 1,
        `${withCache.gets} GETs reached the device`,
      );
    });
    // With observers, the one upstream observation keeps the cache fresh.
    assertEquals(results[3].registrations, 1);
    assert(results[3].gets <= 1, `${results[3].gets} GETs with observers`);
    console.log(
      [
        `| case (${SECONDS} s) | proxy | 2.05s to the pollers | GETs at the device | registrations at the device |`,
        "| --- | --- | --- | --- | --- |",
        ...rows,
      ].join("\n"),
    );
  },
});
