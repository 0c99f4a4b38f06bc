// CoapContext over in-memory connections: one connection per origin,
// shared and closed once idle; one call for one answer; observations left
// by leaving the loop; timeouts, signals, proxies and the errors a user
// meets.

import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import { CoapContext, type Connector } from "./context.ts";
import { CoapServer, type Resources } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import { socketPair } from "./testing/socket_pair.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Servers by origin, and a connector that reaches them in memory. */
function network(servers: Record<string, Resources>) {
  const made: string[] = [];
  const running = new Map(
    Object.entries(servers).map((
      [origin, resources],
    ) => [origin, new CoapServer(resources, { log: quiet })]),
  );
  const connector: Connector = async (origin) => {
    made.push(origin);
    const server = running.get(origin);
    if (server === undefined) throw new Error(`nothing at ${origin}`);
    const [near, far] = socketPair();
    server.accept(far);
    const connection = attachWebSocket(near, { log: quiet });
    await connection.ready;
    return new CoapClient(connection, { log: quiet });
  };
  return { made, running, connector };
}

let value = 0;
const observers = new Set<{ addResponse(r: { payload: string }): void }>();
const device: Resources = {
  "/temp": { GET: () => ({ payload: "21.5" }) },
  "/store": {
    PUT: (request) => ({ code: "2.04", payload: request.payload }),
    POST: (request) => ({ code: "2.01", payload: request.payload }),
    DELETE: () => ({ code: "2.02" }),
  },
  "/slow": { GET: () => new Promise<never>(() => {}) },
  "/obs": {
    observable: true,
    GET: (_request, pipe, signal) =>
      new Promise<void>((resolve) => {
        observers.add(pipe);
        pipe.addResponse({ payload: String(value) });
        signal.addEventListener("abort", () => {
          observers.delete(pipe);
          resolve();
        });
      }),
  },
};

Deno.test("CoapContext: get, put, post and delete by absolute URI; one connection per origin, shared; 4.xx is a result with ok false", async () => {
  const net = network({
    "coap://10.0.0.1:5683": device,
    "coap+ws://10.0.0.2:8683": { "/": { GET: () => ({ payload: "ws" }) } },
  });
  const ctx = new CoapContext({
    connectors: { "coap:": net.connector, "coap+ws:": net.connector },
  });
  const lines: string[] = [];
  const show = (r: { code: string; ok: boolean; text(): string }) =>
    lines.push(`${r.code} ${r.ok} ${r.text()}`);
  show(await ctx.get("coap://10.0.0.1/temp"));
  show(await ctx.put("coap://10.0.0.1:5683/store", "v1"));
  show(await ctx.post("coap://10.0.0.1/store", new Uint8Array([0x68, 0x69])));
  show(await ctx.delete("coap://10.0.0.1/store"));
  show(await ctx.get("coap://10.0.0.1/missing"));
  show(await ctx.get("coap+ws://10.0.0.2:8683/"));
  const both = await Promise.all([
    ctx.get("coap://10.0.0.1/temp"),
    ctx.get("coap+ws://10.0.0.2:8683/"),
  ]);
  both.forEach(show);
  assertEquals(lines, [
    "2.05 true 21.5",
    "2.04 true v1",
    "2.01 true hi",
    "2.02 true ",
    "4.04 false Not Found: /missing",
    "2.05 true ws",
    "2.05 true 21.5",
    "2.05 true ws",
  ]);
  assertEquals(net.made, ["coap://10.0.0.1:5683", "coap+ws://10.0.0.2:8683"]);
  assertEquals(ctx.connections, 2);
  ctx.close();
  assertEquals(ctx.connections, 0);
  assertThrows(
    () => ctx.get("coap://10.0.0.1/temp"),
    TypeError,
    "the CoapContext is closed",
  );
});

Deno.test("CoapContext: observe() yields every notification until the loop is left, which deregisters; request() gives .response and .observation as aiocoap's does", async () => {
  const net = network({ "coap://10.0.0.1:5683": device });
  const ctx = new CoapContext({ connectors: { "coap:": net.connector } });
  const server = net.running.get("coap://10.0.0.1:5683")!;
  const seen: string[] = [];
  for await (const notification of ctx.observe("coap://10.0.0.1/obs")) {
    seen.push(`${notification.observe} ${notification.text()}`);
    if (seen.length === 3) break;
    value++;
    for (const pipe of observers) pipe.addResponse({ payload: String(value) });
  }
  await new Promise((resolve) => setTimeout(resolve, 5));
  assertEquals(seen, ["0 0", "1 1", "2 2"]);
  assertEquals(server.observations, 0);
  const pending = ctx.request({ uri: "coap://10.0.0.1/obs", observe: true });
  const first = await pending.response;
  const later: string[] = [];
  value++;
  for (const pipe of observers) pipe.addResponse({ payload: String(value) });
  for await (const notification of pending.observation) {
    later.push(notification.text());
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 5));
  assertEquals([first.text(), later, server.observations], ["2", ["3"], 0]);
  ctx.close();
});

Deno.test("CoapContext: timeout rejects with a TimeoutError, signal with its reason; the connection then idles out after idleTimeout, and a later request opens a new one", async () => {
  const net = network({ "coap://10.0.0.1:5683": device });
  const ctx = new CoapContext({
    connectors: { "coap:": net.connector },
    idleTimeout: 20,
    timeout: 30,
  });
  const timedOut = await assertRejects(() => ctx.get("coap://10.0.0.1/slow"));
  assertEquals(
    [(timedOut as Error).name, (timedOut as Error).message],
    ["TimeoutError", "No response within 30 ms"],
  );
  const controller = new AbortController();
  const asked = ctx.get("coap://10.0.0.1/slow", {
    signal: controller.signal,
    timeout: 10_000,
  });
  controller.abort(new Error("changed my mind"));
  await assertRejects(() => asked, Error, "changed my mind");
  assertEquals(ctx.connections, 1);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assertEquals(ctx.connections, 0);
  assertEquals((await ctx.get("coap://10.0.0.1/temp")).text(), "21.5");
  assertEquals(net.made.length, 2);
  ctx.close();
});

Deno.test("CoapContext in a browser's entry point: coap:// and coap+tcp:// say what would reach them; with a proxy they go through it as Proxy-Uri; a URI that is not one is refused at the call", async () => {
  const ctx = new CoapContext();
  assertThrows(
    () => ctx.get("coap://10.0.0.1/temp"),
    TypeError,
    "coap:// needs UDP sockets, which a browser does not have: in Deno, Node.js and Bun use CoapContext from @coap/stack/context; in a browser, give the context a proxy",
  );
  assertThrows(
    () => ctx.get("coap+tcp://10.0.0.1/temp"),
    TypeError,
    "coap+tcp:// needs TCP sockets",
  );
  assertThrows(
    () => ctx.get("/temp"),
    TypeError,
    'Cannot request "/temp": not an absolute URI',
  );
  assertThrows(
    () => ctx.get("http://10.0.0.1/"),
    TypeError,
    "a CoAP URI has a host, and a scheme of coap://",
  );
  assertThrows(
    () => new CoapContext({ timeout: 0 }),
    RangeError,
    "timeout must be a positive number of milliseconds, got 0",
  );
  const asked: string[] = [];
  const net = network({
    "coap+ws://10.0.0.9:8684": {
      "/": {
        GET: (request) => {
          asked.push(`${request.path} ${request.proxyUri}`);
          return { payload: "via proxy" };
        },
      },
    },
  });
  // A server that is a proxy: its resource answers Proxy-Uri requests.
  net.running.set(
    "coap+ws://10.0.0.9:8684",
    new CoapServer({}, {
      log: quiet,
      proxy: {
        GET: (request) => {
          asked.push(`proxy ${request.proxyUri}`);
          return { payload: "via proxy" };
        },
      },
    }),
  );
  const proxied = new CoapContext({
    proxy: "coap+ws://10.0.0.9:8684",
    connectors: { "coap+ws:": net.connector },
  });
  assertEquals(
    (await proxied.get("coap://10.0.0.1/temp?unit=C")).text(),
    "via proxy",
  );
  assertEquals(asked, ["proxy coap://10.0.0.1/temp?unit=C"]);
  proxied.close();
});
