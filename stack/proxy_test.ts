import { assertEquals, assertRejects } from "@std/assert";
import { Pipe } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import {
  type IncomingRequest,
  readRequest,
  type ResponseInit,
} from "./exchange.ts";
import {
  type CoapOption,
  Code,
  decodeMessage,
  getOption,
  hex,
  Option,
  readUint,
  text,
  uint,
  utf8,
} from "./message.ts";
import { CoapProxy, type ProxyOptions } from "./proxy.ts";
import { CoapError, CoapServer, Observers } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import { type PairedSocket, socketPair } from "./testing/socket_pair.ts";
import { ManualClock } from "./testing/manual_clock.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A proxy whose upstreams are in-memory servers; it records each origin. */
function setup(options: Partial<ProxyOptions> = {}) {
  const origins: string[] = [];
  const clients: CoapClient[] = [];
  const sockets: PairedSocket[] = [];
  let grows = 0;
  let version = 1;
  const ran: string[] = [];
  const upstream = new CoapServer({
    // A resource with an ETag per version, fresh for 2 s.
    "/tagged": {
      etag: () => `v${version}`,
      GET: () => {
        ran.push(`GET v${version}`);
        return { payload: `body v${version}`, maxAge: 2 };
      },
      PUT: () => {
        ran.push("PUT");
        version++;
        return { code: "2.04" };
      },
    },
    "/x": {
      GET: (request) => ({
        payload: `x from upstream ${request.query.join("&")}`.trim(),
      }),
    },
    "/big": { GET: () => ({ payload: "b".repeat(3000) }) },
    // A device that answers with options no response carries, and ETags
    // that are none.
    "/odd": {
      GET: () => ({
        payload: "odd",
        options: [
          { number: Option.IF_MATCH, value: utf8("m") },
          { number: Option.URI_HOST, value: utf8("h") },
          { number: Option.ETAG, value: new Uint8Array(0) },
          { number: Option.ETAG, value: new Uint8Array(9) },
          { number: Option.ETAG, value: new Uint8Array([1, 2]) },
          { number: Option.LOCATION_PATH, value: utf8("here") },
          { number: Option.URI_QUERY, value: utf8("q") },
          { number: Option.ACCEPT, value: uint(0) },
          { number: Option.PROXY_URI, value: utf8("coap://x/") },
          { number: Option.ECHO, value: new Uint8Array(4) },
          { number: 65000, value: utf8("elective, unknown") },
        ],
      }),
    },
    // A device whose body is never done: each block request finds it
    // longer, so every block says more follow.
    "/endless": { GET: () => ({ payload: "e".repeat(2048 + 1024 * grows++) }) },
  }, { log: quiet });
  const proxy = new CoapProxy({
    allow: ["127.0.0.1:5683", "coap+ws://10.0.0.9:8683"],
    log: quiet,
    ...options,
    connect: async (origin, budget) => {
      origins.push(origin);
      const [near, far] = socketPair();
      sockets.push(near);
      upstream.accept(far);
      const connection = attachWebSocket(near, { log: quiet });
      await connection.ready;
      const client = new CoapClient(connection, {
        log: quiet,
        reassemblyBudget: budget,
      });
      clients.push(client);
      return client;
    },
  });
  /** Asks the proxy's resource as the server would; its whole answer. */
  const answer = async (
    options: CoapOption[],
    method: "GET" | "PUT" = "GET",
  ): Promise<ResponseInit> => {
    const request: IncomingRequest = readRequest({
      code: method === "GET" ? Code.GET : Code.PUT,
      token: new Uint8Array([1]),
      options,
      payload: new Uint8Array(0),
    }, true);
    const pipe = new Pipe<IncomingRequest, ResponseInit>(request, quiet);
    pipe.onEvent(() => true);
    return await proxy.resource[method]!(
      request,
      pipe,
      new AbortController().signal,
    ) as ResponseInit;
  };
  /** Asks the proxy's resource as the server would, with these options. */
  const ask = async (options: CoapOption[]): Promise<string> => {
    try {
      const init = await answer(options);
      return `${init.code} ${text(init.payload as Uint8Array)}`;
    } catch (error) {
      if (!(error instanceof CoapError)) throw error;
      return `${error.code} ${error.message}`;
    }
  };
  const close = () => {
    proxy.close();
    for (const client of clients) client.close();
  };
  return { origins, ask, answer, close, proxy, sockets, ran };
}

const proxyUri = (
  uri: string,
) => [{ number: Option.PROXY_URI, value: utf8(uri) }];

Deno.test("CoapProxy forwards a Proxy-Uri to the allowed target, by the URI's scheme and port (5683 when none is given)", async () => {
  const t = setup();
  try {
    assertEquals(
      await t.ask(proxyUri("coap://127.0.0.1/x?a=1")),
      "2.05 x from upstream a=1",
    );
    assertEquals(
      await t.ask(proxyUri("coap+ws://10.0.0.9:8683/x")),
      "2.05 x from upstream",
    );
    assertEquals(t.origins, [
      "coap://127.0.0.1:5683",
      "coap+ws://10.0.0.9:8683",
    ]);
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy refuses what it was not allowed (4.03, a WebSocket scheme to a bare HOST:PORT among it), a scheme it does not speak (5.05) and a URI it cannot read (4.00, a malformed percent-encoding among it), with the reason", async () => {
  const t = setup();
  try {
    assertEquals(
      await t.ask(proxyUri("coap://127.0.0.2:5683/x")),
      "4.03 Forbidden: this proxy does not forward to 127.0.0.2:5683 (it forwards only to the targets it was started with, --allow HOST:PORT)",
    );
    assertEquals(
      await t.ask(proxyUri("coap://10.0.0.9:8683/x")),
      "4.03 Forbidden: this proxy does not forward to coap://10.0.0.9:8683 (it forwards only to the targets it was started with, --allow HOST:PORT)",
    );
    assertEquals(
      await t.ask(proxyUri("http://127.0.0.1:5683/x")),
      "5.05 Proxying Not Supported: this proxy forwards to coap://, coaps://, coap+tcp:// and coap+ws:// only, not http://",
    );
    assertEquals(
      await t.ask(proxyUri("not a uri")),
      "4.00 Bad Request: Proxy-Uri is not an absolute URI",
    );
    assertEquals(
      await t.ask(proxyUri("coap://user:pw@127.0.0.1:5683/x")),
      "4.00 Bad Request: a CoAP URI has no user information (RFC 7252 §6.1)",
    );
    // A bare HOST:PORT is a device's: no WebSocket, plain or TLS, to it.
    assertEquals(
      await t.ask(proxyUri("coap+ws://127.0.0.1:5683/x")),
      "4.03 Forbidden: this proxy does not forward to coap+ws://127.0.0.1:5683 (it forwards only to the targets it was started with, --allow HOST:PORT)",
    );
    assertEquals(
      await t.ask(proxyUri("coaps+ws://127.0.0.1:5683/x")),
      "4.03 Forbidden: this proxy does not forward to coaps+ws://127.0.0.1:5683 (it forwards only to the targets it was started with, --allow HOST:PORT)",
    );
    assertEquals(
      await t.ask(proxyUri("coap://127.0.0.1:5683/x?a=%zz")),
      "4.00 Bad Request: Proxy-Uri has a malformed percent-encoding in its query",
    );
    assertEquals(t.origins, []);
    // A path segment over 255 bytes cannot be an Uri-Path option upstream.
    assertEquals(
      await t.ask(proxyUri(`coap://127.0.0.1:5683/${"a".repeat(300)}`)),
      "4.00 Bad Request: the target cannot be asked for (Cannot send a request: option 11 is longer than 255 bytes)",
    );
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy takes Proxy-Scheme with Uri-Host, and aiocoap 0.4.11's form of it: its own scheme (coap+ws) and no Uri-Port for a coap:// device", async () => {
  const t = setup();
  try {
    const path = [{ number: Option.URI_PATH, value: utf8("x") }];
    // As aiocoap-client --proxy coap+ws://… sends coap://127.0.0.1/x.
    assertEquals(
      await t.ask([
        { number: Option.URI_HOST, value: utf8("127.0.0.1") },
        ...path,
        { number: Option.PROXY_SCHEME, value: utf8("coap+ws") },
      ]),
      "2.05 x from upstream",
    );
    // With a port, and the scheme its allow entry names.
    assertEquals(
      await t.ask([
        { number: Option.URI_HOST, value: utf8("10.0.0.9") },
        { number: Option.URI_PORT, value: uint(8683) },
        ...path,
        { number: Option.PROXY_SCHEME, value: utf8("coap") },
      ]),
      "2.05 x from upstream",
    );
    assertEquals(t.origins, [
      "coap://127.0.0.1:5683",
      "coap+ws://10.0.0.9:8683",
    ]);
    // Proxy-Scheme without Uri-Host names no server.
    await assertRejects(
      () =>
        t.ask([...path, { number: Option.PROXY_SCHEME, value: utf8("coap") }]),
      Error,
      "Proxy-Scheme needs Uri-Host",
    );
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy checks its allow list at construction", () => {
  for (const entry of ["127.0.0.1", "http://127.0.0.1:80", "host:99999"]) {
    try {
      new CoapProxy({ allow: [entry] });
      throw new Error(`accepted ${entry}`);
    } catch (error) {
      assertEquals(
        (error as Error).message,
        `Cannot allow ${
          JSON.stringify(entry)
        }: expected HOST:PORT or SCHEME://HOST:PORT, such as 127.0.0.1:5683 or coap+ws://127.0.0.1:8683`,
      );
    }
  }
});

Deno.test("CoapProxy bounds what block-wise transfers hold across requesters (maxReassemblyBytes): a device whose blocks never end gets 5.03 and gives its bytes back; a body that fits still comes, and is kept for its later blocks within the same budget", async () => {
  const t = setup({ maxReassemblyBytes: 8192 });
  try {
    const endless = await Promise.all(
      [1, 2, 3].map(() => t.ask(proxyUri("coap://127.0.0.1:5683/endless"))),
    );
    for (const answer of endless) {
      assertEquals(
        /^5\.03 Service Unavailable: \d+ bytes of block-wise responses are held already, the proxy's limit \(maxReassemblyBytes 8192\)$/
          .test(answer),
        true,
        answer,
      );
    }
    assertEquals(t.proxy.reassemblyBytes, 0);
    const big = await t.ask(proxyUri("coap://127.0.0.1:5683/big"));
    assertEquals(big, `2.05 ${"b".repeat(3000)}`);
    // Kept for its later blocks: 3,000 bytes of the budget.
    assertEquals(t.proxy.reassemblyBytes, 3000);
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy passes a device's response on without the options no response carries (If-Match, Uri-Host, Uri-Query, Accept, Proxy-Uri, Echo) and without ETags that are none (0 or 9 bytes); a valid ETag, Location-Path and an unknown elective option go on", async () => {
  const t = setup();
  try {
    const init = await t.answer(proxyUri("coap://127.0.0.1:5683/odd"));
    assertEquals(text(init.payload as Uint8Array), "odd");
    assertEquals(init.options, [
      { number: Option.ETAG, value: new Uint8Array([1, 2]) },
      { number: Option.LOCATION_PATH, value: utf8("here") },
      { number: 65000, value: utf8("elective, unknown") },
    ]);
  } finally {
    t.close();
  }
});

/** A response as a line: code, Max-Age, ETag, payload. */
function line(init: ResponseInit): string {
  const etag = init.options?.find((o) => o.number === Option.ETAG);
  return `${init.code ?? "2.05"} max-age=${init.maxAge ?? "-"}${
    etag === undefined ? "" : ` etag=${text(etag.value)}`
  } ${init.payload === undefined ? "" : text(init.payload as Uint8Array)}`
    .trimEnd();
}

Deno.test("CoapProxy caches a GET's 2.05 while its Max-Age lasts (counting it down), revalidates it with its ETag once stale, and drops it when a PUT changes the target", async () => {
  const clock = new ManualClock();
  const t = setup({ clock });
  const tagged = proxyUri("coap://127.0.0.1/tagged");
  try {
    const trace: string[] = [];
    trace.push(line(await t.answer(tagged)));
    await clock.advance(1000);
    trace.push(line(await t.answer(tagged)));
    await clock.advance(1500);
    trace.push(line(await t.answer(tagged)));
    await clock.advance(30_000);
    trace.push(line(await t.answer(tagged)));
    trace.push(line(await t.answer(tagged, "PUT")));
    trace.push(line(await t.answer(tagged)));
    assertEquals(trace, [
      "2.05 max-age=2 etag=v1 body v1",
      "2.05 max-age=1 etag=v1 body v1",
      // Stale: asked again with its ETag; the device's 2.03 makes it fresh
      // for 60 s (a 2.03 without Max-Age).
      "2.05 max-age=60 etag=v1 body v1",
      "2.05 max-age=30 etag=v1 body v1",
      "2.04 max-age=-",
      "2.05 max-age=2 etag=v2 body v2",
    ]);
    // The device ran its GET twice: once per version.
    assertEquals(t.ran, ["GET v1", "PUT", "GET v2"]);
    assertEquals(t.proxy.cache, {
      entries: 1,
      bytes: t.proxy.cache.bytes,
      hits: 2,
      revalidated: 1,
      misses: 2,
    });
    // What went upstream: the revalidation carried the ETag.
    const asked = t.sockets.flatMap((socket) =>
      socket.sent.map((m) => decodeMessage(m as Uint8Array))
    ).filter((m) => m.code === Code.GET || m.code === Code.PUT)
      .map((m) => {
        const etag = getOption(m, Option.ETAG);
        return `${m.code === Code.GET ? "GET" : "PUT"}${
          etag === undefined ? "" : ` etag=${text(etag)}`
        }`;
      });
    assertEquals(asked, ["GET", "GET etag=v1", "PUT", "GET"]);
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy keeps its cache within cacheBytes and maxCacheEntries, least recently used out first; cacheBytes 0 caches nothing", async () => {
  const clock = new ManualClock();
  const t = setup({ clock, maxCacheEntries: 2 });
  try {
    for (const q of ["a=1", "a=2", "a=1", "a=3"]) {
      await t.answer(proxyUri(`coap://127.0.0.1/x?${q}`));
    }
    // a=2 was the least recently used when a=3 came.
    assertEquals([t.proxy.cache.entries, t.proxy.cache.hits], [2, 1]);
    await t.answer(proxyUri("coap://127.0.0.1/x?a=1"));
    await t.answer(proxyUri("coap://127.0.0.1/x?a=2"));
    assertEquals([t.proxy.cache.hits, t.proxy.cache.misses], [2, 4]);
  } finally {
    t.close();
  }
  const off = setup({ clock, cacheBytes: 0 });
  try {
    await off.answer(proxyUri("coap://127.0.0.1/tagged"));
    await off.answer(proxyUri("coap://127.0.0.1/tagged"));
    assertEquals(off.ran, ["GET v1", "GET v1"]);
    assertEquals(off.proxy.cache, {
      entries: 0,
      bytes: 0,
      hits: 0,
      revalidated: 0,
      misses: 0,
    });
  } finally {
    off.close();
  }
});

Deno.test("CoapProxy adds Hop-Limit 16 to what it forwards and takes one off a given one (RFC 8768); Hop-Limit 1 is 5.08 and 0 is 4.00; If-Match and unknown safe-to-forward options go on, hop-by-hop ones do not", async () => {
  const t = setup({ cacheBytes: 0 });
  const hop = (n: number) => ({ number: Option.HOP_LIMIT, value: uint(n) });
  try {
    const trace = [
      await t.ask([...proxyUri("coap://127.0.0.1/x"), hop(1)]),
      await t.ask([...proxyUri("coap://127.0.0.1/x"), {
        number: Option.HOP_LIMIT,
        value: new Uint8Array([0]),
      }]),
      await t.ask([...proxyUri("coap://127.0.0.1/x"), hop(5)]),
      await t.ask([
        ...proxyUri("coap://127.0.0.1/x"),
        { number: Option.IF_MATCH, value: utf8("m") },
        { number: 65000, value: utf8("safe") },
        { number: 65002, value: utf8("unsafe to forward") },
        { number: Option.NO_RESPONSE, value: uint(0) },
      ]),
    ];
    assertEquals(trace, [
      "5.08 Hop Limit Reached: not forwarded to coap://127.0.0.1:5683",
      "4.00 Bad Request: Hop-Limit 0",
      "2.05 x from upstream",
      // If-Match went on: the device judged it.
      "4.12 Precondition Failed: If-Match names no current ETag of the resource",
    ]);
    const sent = t.sockets.flatMap((socket) =>
      socket.sent.map((m) => decodeMessage(m as Uint8Array))
    ).filter((m) => m.code === Code.GET).map((m) =>
      m.options.filter((o) => o.number !== Option.URI_PATH).map((o) =>
        `${o.number}=${
          o.number === Option.HOP_LIMIT ? readUint(o.value) : hex(o.value)
        }`
      ).join(" ")
    );
    assertEquals(sent, ["16=4", "1=6d 16=16 65000=73616665"]);
  } finally {
    t.close();
  }
});

Deno.test("CoapProxy answers observers' deregistrations (GET with Observe 1) from the shared observation's latest notification, even when all leave at once; the device sees one registration and one deregistration", async () => {
  const seen: string[] = [];
  let value = 0;
  const table = new Observers();
  const device = new CoapServer({
    "/obs": {
      observable: table,
      GET: (request) => {
        seen.push(`GET observe=${request.observe}`);
        return { payload: `v${value}` };
      },
    },
  }, { log: quiet });
  const proxy = new CoapProxy({
    allow: ["127.0.0.1:5683"],
    log: quiet,
    cacheBytes: 0,
    connect: async () => {
      const [near, far] = socketPair();
      device.accept(far);
      const connection = attachWebSocket(near, { log: quiet });
      await connection.ready;
      return new CoapClient(connection, { log: quiet });
    },
  });
  const front = new CoapServer({}, { proxy: proxy.resource, log: quiet });
  const observe = async () => {
    const [near, far] = socketPair();
    front.accept(far);
    const connection = attachWebSocket(near, { log: quiet });
    await connection.ready;
    return new CoapClient(connection, { log: quiet });
  };
  const clients = await Promise.all([observe(), observe(), observe()]);
  const request = {
    method: "GET" as const,
    path: "/",
    proxyUri: "coap://127.0.0.1/obs",
    observe: true,
  };
  const got = await Promise.all(clients.map(async (client) => {
    const lines: string[] = [];
    for await (const event of client.request(request)) {
      if (event.kind === "response") lines.push(text(event.message.payload));
      if (lines.length === 1) {
        // Wait until every observer has its first, then one more value.
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (value === 0) {
          value = 1;
          table.updated();
        }
      }
      if (lines.length === 2) break;
    }
    return lines;
  }));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(got, [["v0", "v1"], ["v0", "v1"], ["v0", "v1"]]);
  // One registration (and its one notification), one deregistration: the
  // three observers' own deregistrations went no further than the proxy.
  assertEquals(seen, ["GET observe=0", "GET observe=0", "GET observe=1"]);
  assertEquals(proxy.upstreamObservations, 0);
  for (const client of clients) client.close();
  proxy.close();
});
