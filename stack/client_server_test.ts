// The client against the server over in-memory socket pairs: every
// behaviour of both roles, with no network and no timers.

import { assertEquals, assertThrows } from "@std/assert";
import type { IterablePipe, Logger, PipeEvent } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import { CoapConnection } from "./connection.ts";
import type { CoapRequest, CoapResponse, ResponseInit } from "./exchange.ts";
import {
  type CoapMessage,
  Code,
  codeToString,
  decodeBlock,
  decodeMessage,
  encodeMessage,
  getOption,
  Option,
  text,
  uint,
  utf8,
} from "./message.ts";
import { CoapError, CoapServer, Observers, type Resources } from "./server.ts";
import { countAbortControllers } from "../testing/helpers.ts";
import { attachWebSocket } from "./websocket.ts";
import { parseLinkFormat } from "./explorer/link_format.ts";
import {
  openPair,
  type PairedSocket,
  socketPair,
} from "./testing/socket_pair.ts";
import { recorder } from "./testing/loggers.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

interface Setup {
  server: CoapServer;
  client: CoapClient;
  /** The client's socket: what it sent is in `near.sent`. */
  near: PairedSocket;
  /** The server's socket. */
  far: PairedSocket;
}

async function setup(
  resources: Resources,
  options: { maxMessageSize?: number; log?: Logger; server?: CoapServer } = {},
): Promise<Setup> {
  const server = options.server ??
    new CoapServer(resources, { log: options.log ?? quiet });
  const [near, far] = socketPair();
  server.accept(far);
  const connection = attachWebSocket(near, {
    log: options.log ?? quiet,
    maxMessageSize: options.maxMessageSize,
  });
  await connection.ready;
  return { server, client: new CoapClient(connection), near, far };
}

function describe(event: PipeEvent<CoapResponse>): string {
  if (event.kind === "response") {
    const { code, payload, observe } = event.message;
    return `${code} ${text(payload)}${
      observe === undefined ? "" : ` obs=${observe}`
    } last=${event.isLast}`;
  }
  if (event.kind === "exception") {
    return `exception ${(event.exception as Error).message}`;
  }
  return "interestEnd";
}

async function collect(
  pipe: IterablePipe<CoapRequest, CoapResponse>,
  limit = Infinity,
): Promise<string[]> {
  const trace: string[] = [];
  for await (const event of pipe) {
    trace.push(describe(event));
    if (trace.length >= limit) break;
  }
  return trace;
}

/** Lets queued microtasks (socket deliveries) run. */
async function flush(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

function decodedSent(socket: PairedSocket): CoapMessage[] {
  return socket.sent.map((m) => decodeMessage(m as Uint8Array));
}

/** A resource whose notifications the test sends by hand. */
function manualObservable() {
  const pipes = new Set<{ addResponse(r: ResponseInit): void }>();
  const ends: string[] = [];
  let value = 0;
  return {
    ends,
    get observers() {
      return pipes.size;
    },
    notify(): void {
      value++;
      for (const pipe of pipes) pipe.addResponse({ payload: String(value) });
    },
    resource: {
      observable: true,
      GET: async (
        request: { observe?: number },
        pipe: { addResponse(r: ResponseInit): void },
        signal: AbortSignal,
      ) => {
        if (request.observe !== 0) return { payload: String(value) };
        pipe.addResponse({ payload: String(value) });
        pipes.add(pipe);
        try {
          await new Promise((_, reject) =>
            signal.addEventListener("abort", () => reject(signal.reason))
          );
        } finally {
          pipes.delete(pipe);
          ends.push(`driver signal aborted: ${(signal.reason as Error).name}`);
        }
      },
    },
  };
}

const BIG = "0123456789abcdef".repeat(262) + "tail"; // 4196 bytes

Deno.test("CoapClient.request() yields one response and completes; the server's pipe and driver are gone", async () => {
  const { server, client } = await setup({
    "/": { GET: () => ({ payload: "Welcome", contentFormat: 0 }) },
  });
  const pipe = client.request({ method: "GET", path: "/" });
  assertEquals(client.openRequests, 1);
  assertEquals(await collect(pipe), ["2.05 Welcome last=true"]);
  await flush();
  assertEquals(
    [
      client.openRequests,
      client.connection.pending,
      server.exchanges,
      server.drivers,
    ],
    [0, 0, 0, 0],
  );
  client.close();
});

Deno.test("CoapServer calls a handler that declares fewer than three parameters with two and makes no AbortController for it; one that declares the signal gets one, aborted when the exchange ends", async () => {
  const controllers = countAbortControllers();
  try {
    const seen: string[] = [];
    let kept: AbortSignal | undefined;
    const { client } = await setup({
      "/two": {
        GET: function (_request, _pipe) {
          seen.push(`two: ${arguments.length} arguments`);
          return { payload: "two" };
        },
      },
      "/three": {
        GET: (_request, _pipe, signal) => {
          kept = signal;
          seen.push(`three: aborted ${signal.aborted}`);
          return Promise.resolve({ payload: "three" });
        },
      },
    });
    assertEquals(
      await collect(client.request({ method: "GET", path: "/two" })),
      ["2.05 two last=true"],
    );
    assertEquals(controllers.made, 0);
    assertEquals(
      await collect(client.request({ method: "GET", path: "/three" })),
      ["2.05 three last=true"],
    );
    await flush();
    assertEquals(seen, ["two: 2 arguments", "three: aborted false"]);
    assertEquals([controllers.made, kept?.aborted], [1, true]);
    client.close();
  } finally {
    controllers.restore();
  }
});

Deno.test("CoapServer answers 5.00 for a handler whose length cannot be read and whose call throws (a revoked Proxy), as an observation too; the connection goes on", async () => {
  const { proxy, revoke } = Proxy.revocable(() => ({ payload: "never" }), {});
  revoke();
  const { client } = await setup({
    "/revoked": { GET: proxy, observable: new Observers() },
    "/": { GET: () => ({ payload: "still here" }) },
  });
  assertEquals(
    await collect(client.request({ method: "GET", path: "/revoked" })),
    ["5.00 Internal Server Error last=true"],
  );
  assertEquals(
    await collect(
      client.request({ method: "GET", path: "/revoked", observe: true }),
    ),
    ["5.00 Internal Server Error last=true"],
  );
  assertEquals(
    await collect(client.request({ method: "GET", path: "/" })),
    ["2.05 still here last=true"],
  );
  client.close();
});

Deno.test("CoapClient.request() carries payload, content format, accept and query to the resource", async () => {
  const seen: unknown[] = [];
  const { client } = await setup({
    "/echo": {
      POST: (request) => {
        seen.push([
          request.method,
          request.path,
          request.query,
          request.accept,
        ]);
        return {
          code: "2.04",
          payload: request.payload,
          contentFormat: request.contentFormat,
        };
      },
    },
  });
  const pipe = client.request({
    method: "POST",
    path: "/echo",
    query: ["a=1", "b=2"],
    payload: "héllo",
    contentFormat: 50,
    accept: 50,
  });
  const events: CoapResponse[] = [];
  for await (const event of pipe) {
    if (event.kind === "response") events.push(event.message);
  }
  assertEquals(seen, [["POST", "/echo", ["a=1", "b=2"], 50]]);
  assertEquals(events.map((r) => [r.code, text(r.payload), r.contentFormat]), [
    ["2.04", "héllo", 50],
  ]);
  client.close();
});

Deno.test("CoapServer answers a thrown error with toMessage() with its response, any other error with 5.00, logged", async () => {
  const logs: string[] = [];
  const { client } = await setup({
    "/teapot": {
      GET: () => {
        throw new CoapError("4.18", "I'm a teapot");
      },
    },
    "/fail": {
      GET: () => {
        throw new Error("this resource always fails");
      },
    },
  }, { log: recorder(logs) });
  assertEquals(
    await collect(client.request({ method: "GET", path: "/teapot" })),
    [
      "4.18 I'm a teapot last=true",
    ],
  );
  assertEquals(
    await collect(client.request({ method: "GET", path: "/fail" })),
    [
      "5.00 Internal Server Error last=true",
    ],
  );
  assertEquals(logs, [
    "error An exception occurred while rendering a resource",
  ]);
  client.close();
});

Deno.test("CoapServer answers 4.04 for a missing path and 4.05 for a method the resource lacks", async () => {
  const { client } = await setup({ "/": { GET: () => ({ payload: "x" }) } });
  assertEquals(
    await collect(client.request({ method: "GET", path: "/nope" })),
    [
      "4.04 Not Found: /nope last=true",
    ],
  );
  assertEquals(await collect(client.request({ method: "DELETE", path: "/" })), [
    "4.05 Method Not Allowed last=true",
  ]);
  client.close();
});

Deno.test("CoapServer lists its resources at /.well-known/core in link format", async () => {
  const { client } = await setup({
    "/a": { GET: () => ({}), observable: true },
    "/b": { GET: () => ({}), link: { title: "Bee", rt: "x.y" } },
  });
  const events: CoapResponse[] = [];
  for await (
    const event of client.request({ method: "GET", path: "/.well-known/core" })
  ) {
    if (event.kind === "response") events.push(event.message);
  }
  assertEquals(events.map((r) => [text(r.payload), r.contentFormat]), [
    ['</a>;obs,</b>;title="Bee";rt="x.y",</.well-known/core>;ct="40"', 40],
  ]);
  client.close();
});

Deno.test("CoapServer filters /.well-known/core by the query (RFC 6690 §4.1): href, rt, if, ct and any attribute, a trailing * for a prefix, list attributes by any value, several filters all at once", async () => {
  const { client } = await setup({
    "/time": {
      GET: () => ({}),
      observable: true,
      link: { rt: "ticks clock.v2", if: "core.s", ct: "0 50", title: "Clock" },
    },
    "/other/block": { GET: () => ({}), link: { if: "core.p", ct: "0" } },
    "/other/flag": { GET: () => ({}), link: { flagged: true } },
  });
  const listing = async (query: string[]) => {
    const lines: string[] = [];
    for await (
      const event of client.request({
        method: "GET",
        path: "/.well-known/core",
        query,
      })
    ) {
      if (event.kind === "response") {
        lines.push(
          `${event.message.code} ${
            parseLinkFormat(text(event.message.payload)).map((l) => l.target)
              .join(" ")
          }`,
        );
      }
    }
    return lines[0];
  };
  const cases: [string[], string][] = [
    [[], "2.05 /time /other/block /other/flag /.well-known/core"],
    [["rt=ticks"], "2.05 /time"],
    [["rt=clock.v2"], "2.05 /time"],
    [["rt=tick"], "2.05 "],
    [["rt=tick*"], "2.05 /time"],
    [["rt=*"], "2.05 /time"],
    [["href=/other/block"], "2.05 /other/block"],
    [["href=/other*"], "2.05 /other/block /other/flag"],
    [["if=core.p"], "2.05 /other/block"],
    [["ct=0"], "2.05 /time /other/block"],
    [["ct=50"], "2.05 /time"],
    [["ct=40"], "2.05 /.well-known/core"],
    [["title=Clock"], "2.05 /time"],
    [["title=Clo"], "2.05 "],
    [["obs=*"], "2.05 /time"],
    [["flagged=*"], "2.05 /other/flag"],
    [["ct=0", "if=core.s"], "2.05 /time"],
    [["ct=0", "if=none"], "2.05 "],
    // Not name=value: no filter, as aiocoap does.
    [["rt"], "2.05 /time /other/block /other/flag /.well-known/core"],
  ];
  for (const [query, expected] of cases) {
    assertEquals(await listing(query), expected, query.join("&"));
  }
  client.close();
});

Deno.test("CoapServer quotes link parameter values, escaping quotes and backslashes, so the listing parses back", async () => {
  const title = 'say "hi", \\o/ <b>';
  const { client } = await setup({
    "/q": { GET: () => ({}), link: { title, if: "a b" } },
  });
  const events: CoapResponse[] = [];
  for await (
    const event of client.request({ method: "GET", path: "/.well-known/core" })
  ) {
    if (event.kind === "response") events.push(event.message);
  }
  const listing = text(events[0].payload);
  assertEquals(
    listing,
    '</q>;title="say \\"hi\\", \\\\o/ <b>";if="a b",</.well-known/core>;ct="40"',
  );
  const [link] = parseLinkFormat(listing);
  assertEquals([link.title, link.interfaces], [title, ["a", "b"]]);
  client.close();
});

Deno.test("CoapServer refuses paths a link cannot carry and link parameter names that are not tokens", () => {
  const cases: [Resources, string][] = [
    [
      { "/a b": {} },
      'Cannot serve "/a b": a path is percent-encoded (no whitespace, "<", ">" or quotes)',
    ],
    [
      { "/a>": {} },
      'Cannot serve "/a>": a path is percent-encoded (no whitespace, "<", ">" or quotes)',
    ],
    [
      { "/a": { link: { "ti tle": "x" } } },
      'Cannot serve /a: "ti tle" is not a link parameter name (RFC 6690 parmname)',
    ],
    [
      { "/a": { link: { "": true } } },
      'Cannot serve /a: "" is not a link parameter name (RFC 6690 parmname)',
    ],
  ];
  for (const [resources, message] of cases) {
    assertThrows(() => new CoapServer(resources), TypeError, message);
  }
  // title* is a parmname too (RFC 6690 §2).
  new CoapServer({ "/a%20b": { link: { "title*": "x" } } });
});

Deno.test("CoapClient reassembles a Block2 response sent in 1024-byte blocks under the default Max-Message-Size", async () => {
  const { client, near, far } = await setup({
    "/big": { GET: () => ({ payload: BIG, contentFormat: 0 }) },
  });
  const events: CoapResponse[] = [];
  for await (const event of client.request({ method: "GET", path: "/big" })) {
    if (event.kind === "response") events.push(event.message);
  }
  assertEquals(events.length, 1);
  assertEquals(text(events[0].payload), BIG);
  assertEquals(events[0].contentFormat, 0);
  const blocks = decodedSent(far).filter((m) => m.code === Code.CONTENT)
    .map((m) => {
      const block = decodeBlock(getOption(m, Option.BLOCK2)!);
      return [block.num, block.more, block.szx, m.payload.length];
    });
  assertEquals(blocks, [
    [0, true, 6, 1024],
    [1, true, 6, 1024],
    [2, true, 6, 1024],
    [3, true, 6, 1024],
    [4, false, 6, 100],
  ]);
  // Follow-ups ask for blocks 1 to 4 with the same options.
  const asked = decodedSent(near).filter((m) => m.code === Code.GET)
    .map((m) => getOption(m, Option.BLOCK2));
  assertEquals(asked.map((b) => b && decodeBlock(b).num), [
    undefined,
    1,
    2,
    3,
    4,
  ]);
  client.close();
});

Deno.test("CoapServer sends a large body whole to a client that accepts large messages", async () => {
  const { client, far } = await setup({
    "/big": { GET: () => ({ payload: BIG }) },
  }, { maxMessageSize: 65536 });
  assertEquals(
    (await collect(client.request({ method: "GET", path: "/big" })))[0].length >
      4000,
    true,
  );
  const responses = decodedSent(far).filter((m) => m.code === Code.CONTENT);
  assertEquals(responses.length, 1);
  assertEquals(getOption(responses[0], Option.BLOCK2), undefined);
  client.close();
});

Deno.test("CoapClient observation yields every notification until the loop is left; the server's driver then sees its signal abort", async () => {
  const counter = manualObservable();
  const { client, server, near } = await setup({
    "/counter": counter.resource,
    "/observers": { GET: () => ({ payload: String(counter.observers) }) },
  });
  const pipe = client.request({
    method: "GET",
    path: "/counter",
    observe: true,
  });
  const trace: string[] = [];
  let n = 0;
  for await (const event of pipe) {
    trace.push(describe(event));
    if (++n === 5) break;
    await flush();
    counter.notify();
  }
  assertEquals(trace, [
    "2.05 0 obs=0 last=false",
    "2.05 1 obs=1 last=false",
    "2.05 2 obs=2 last=false",
    "2.05 3 obs=3 last=false",
    "2.05 4 obs=4 last=false",
  ]);
  await flush();
  const last = decodedSent(near).at(-1)!;
  assertEquals([last.code, getOption(last, Option.OBSERVE)], [
    Code.GET,
    uint(1),
  ]);
  assertEquals(counter.ends, ["driver signal aborted: AbortError"]);
  assertEquals(
    await collect(client.request({ method: "GET", path: "/observers" })),
    [
      "2.05 0 last=true",
    ],
  );
  assertEquals([server.exchanges, client.connection.pending], [0, 0]);
  client.close();
});

for (
  const [how, leave] of [
    ["stream cancel", async (pipe: IterablePipe<CoapRequest, CoapResponse>) => {
      const reader = pipe.stream().getReader();
      await reader.read();
      await reader.cancel();
    }],
    [
      "iterator return()",
      async (pipe: IterablePipe<CoapRequest, CoapResponse>) => {
        const iterator = pipe[Symbol.asyncIterator]();
        await iterator.next();
        await iterator.return!();
      },
    ],
    ["asyncDispose", async (pipe: IterablePipe<CoapRequest, CoapResponse>) => {
      const iterator = pipe[Symbol.asyncIterator]();
      await iterator.next();
      await pipe[Symbol.asyncDispose]();
    }],
  ] as const
) {
  Deno.test(`CoapClient observation left by ${how} deregisters at the server`, async () => {
    const counter = manualObservable();
    const { client, server } = await setup({ "/counter": counter.resource });
    const pipe = client.request({
      method: "GET",
      path: "/counter",
      observe: true,
    });
    await leave(pipe);
    await flush();
    assertEquals(counter.ends, ["driver signal aborted: AbortError"]);
    assertEquals([counter.observers, server.exchanges, client.openRequests], [
      0,
      0,
      0,
    ]);
    client.close();
  });
}

Deno.test("CoapClient observation of a resource that is not observable yields one final response", async () => {
  const { client } = await setup({
    "/": { GET: () => ({ payload: "plain" }) },
  });
  assertEquals(
    await collect(client.request({ method: "GET", path: "/", observe: true })),
    [
      "2.05 plain last=true",
    ],
  );
  client.close();
});

Deno.test("CoapClient observation ends with a final error response when the resource fails later", async () => {
  let fail!: () => void;
  const { client, server } = await setup({
    "/flaky": {
      observable: true,
      GET: async (_request, pipe) => {
        pipe.addResponse({ payload: "ok" });
        await new Promise<void>((resolve) => fail = resolve);
        throw new CoapError("5.03", "gone");
      },
    },
  });
  const pipe = client.request({ method: "GET", path: "/flaky", observe: true });
  const trace: string[] = [];
  for await (const event of pipe) {
    trace.push(describe(event));
    fail();
  }
  assertEquals(trace, ["2.05 ok obs=0 last=false", "5.03 gone last=true"]);
  assertEquals(server.exchanges, 0);
  client.close();
});

Deno.test("Observers: each observation gets the GET answer as it starts and on every updated(); the table counts and hears each end; no driver is kept", async () => {
  const hooks: string[] = [];
  const observers = new Observers({
    onCount: (count) => hooks.push(`count ${count}`),
    onEnd: () => hooks.push("end"),
  });
  let value = 0;
  const seen: string[] = [];
  const { client, server } = await setup({
    "/value": {
      observable: observers,
      GET: (request, _pipe, signal) => {
        seen.push(`GET observe=${request.observe} aborted=${signal.aborted}`);
        return { payload: String(value) };
      },
    },
  });
  observers.updated(); // nobody observes: nothing rendered
  const a = client.request({ method: "GET", path: "/value", observe: true });
  const b = client.request({ method: "GET", path: "/value", observe: true });
  const ia = a[Symbol.asyncIterator](), ib = b[Symbol.asyncIterator]();
  const first = [
    describe((await ia.next()).value!),
    describe((await ib.next()).value!),
  ];
  assertEquals(first, ["2.05 0 obs=0 last=false", "2.05 0 obs=0 last=false"]);
  assertEquals(
    [observers.count, server.observations, server.exchanges, server.drivers],
    [2, 2, 2, 0],
  );
  value = 7;
  observers.updated();
  assertEquals(describe((await ia.next()).value!), "2.05 7 obs=1 last=false");
  assertEquals(describe((await ib.next()).value!), "2.05 7 obs=1 last=false");
  await ia.return!();
  await flush();
  assertEquals([observers.count, server.observations], [1, 1]);
  value = 8;
  observers.updated();
  assertEquals(describe((await ib.next()).value!), "2.05 8 obs=2 last=false");
  await ib.return!();
  await flush();
  assertEquals(hooks, [
    "count 1",
    "count 2",
    "count 1",
    "end",
    "count 0",
    "end",
  ]);
  // Two registrations, an update of both, a's deregistration (Observe 1,
  // answered as a plain GET), an update of b, and b's deregistration.
  assertEquals(seen, [
    "GET observe=0 aborted=false",
    "GET observe=0 aborted=false",
    "GET observe=0 aborted=false",
    "GET observe=0 aborted=false",
    "GET observe=1 aborted=false",
    "GET observe=0 aborted=false",
    "GET observe=1 aborted=false",
  ]);
  // A plain GET is answered by the same handler, outside the table.
  assertEquals(
    await collect(client.request({ method: "GET", path: "/value" })),
    ["2.05 8 last=true"],
  );
  assertEquals([observers.count, server.exchanges, server.drivers], [0, 0, 0]);
  client.close();
});

Deno.test("Observers: updated(response) sends that response to every observation with no handler called (aiocoap's updated_state(response)); a render under way is overtaken and its answer dropped; an error code ends them all; a bad response throws at the call, telling nobody", async () => {
  const observers = new Observers();
  let calls = 0;
  const renders: ((init: ResponseInit) => void)[] = [];
  const { client, server } = await setup({
    "/v": {
      observable: observers,
      GET: (request) => {
        calls++;
        // The second observer's renders after its first are slow.
        if (request.query.includes("slow") && calls > 2) {
          return new Promise<ResponseInit>((resolve) => renders.push(resolve));
        }
        return { payload: `render ${calls}` };
      },
    },
  });
  const a = client.request({ method: "GET", path: "/v", observe: true });
  const b = client.request({
    method: "GET",
    path: "/v",
    query: ["slow"],
    observe: true,
  });
  const ia = a[Symbol.asyncIterator](), ib = b[Symbol.asyncIterator]();
  assertEquals(
    [describe((await ia.next()).value!), describe((await ib.next()).value!)],
    ["2.05 render 1 obs=0 last=false", "2.05 render 2 obs=0 last=false"],
  );
  observers.updated({ payload: "for all" });
  assertEquals(
    [describe((await ia.next()).value!), describe((await ib.next()).value!)],
    ["2.05 for all obs=1 last=false", "2.05 for all obs=1 last=false"],
  );
  assertEquals(calls, 2);
  // b's render now runs slowly; a response for all overtakes it.
  observers.updated();
  assertEquals(
    describe((await ia.next()).value!),
    "2.05 render 3 obs=2 last=false",
  );
  assertEquals([calls, renders.length], [4, 1]);
  observers.updated({ payload: "newer" });
  renders[0]({ payload: "stale" });
  await flush();
  assertEquals(
    [describe((await ia.next()).value!), describe((await ib.next()).value!)],
    ["2.05 newer obs=3 last=false", "2.05 newer obs=2 last=false"],
  );
  // Bad: nothing is sent, and the observations go on.
  assertThrows(() => observers.updated({ code: "0.01" }), TypeError);
  assertEquals(observers.count, 2);
  observers.updated({ code: "4.04", payload: "gone" });
  assertEquals(
    [describe((await ia.next()).value!), describe((await ib.next()).value!)],
    ["4.04 gone last=true", "4.04 gone last=true"],
  );
  await flush();
  assertEquals(
    [observers.count, server.observations, server.exchanges, calls],
    [0, 0, 0, 4],
  );
  client.close();
});

Deno.test("Observers: an asynchronous render is aborted when its observation ends, and updates while it runs render once more after it", async () => {
  const observers = new Observers();
  const renders: {
    resolve: (init: ResponseInit) => void;
    signal: AbortSignal;
  }[] = [];
  const { client, server } = await setup({
    "/slow": {
      observable: observers,
      GET: (_request, _pipe, signal) =>
        new Promise<ResponseInit>((resolve) =>
          renders.push({ resolve, signal })
        ),
    },
  });
  const pipe = client.request({ method: "GET", path: "/slow", observe: true });
  const it = pipe[Symbol.asyncIterator]();
  await flush();
  assertEquals(renders.length, 1);
  observers.updated();
  observers.updated(); // both while the first render runs: one more render
  assertEquals(renders.length, 1);
  renders[0].resolve({ payload: "first" });
  assertEquals(
    describe((await it.next()).value!),
    "2.05 first obs=0 last=false",
  );
  await flush();
  assertEquals(renders.length, 2);
  renders[1].resolve({ payload: "second" });
  assertEquals(
    describe((await it.next()).value!),
    "2.05 second obs=1 last=false",
  );
  await flush();
  assertEquals(renders.length, 2);
  observers.updated();
  assertEquals(renders.length, 3);
  await it.return!();
  await flush();
  const { signal } = renders[2];
  assertEquals(
    [
      signal.aborted,
      (signal.reason as Error).name,
      (signal.reason as Error).message,
    ],
    [true, "AbortError", "Interest in the observation of /slow ended"],
  );
  renders[2].resolve({ payload: "too late" }); // dropped, nothing logged
  // The deregistration (Observe 1) is answered as a plain GET.
  assertEquals(renders.length, 4);
  renders[3].resolve({ payload: "deregistered" });
  await flush();
  assertEquals([observers.count, server.exchanges, server.drivers], [0, 0, 0]);
  client.close();
});

Deno.test("Observers: a render by a handler that declares no signal is called with two arguments and makes no AbortController; an asynchronous one whose observation ended meanwhile adds nothing", async () => {
  const controllers = countAbortControllers();
  try {
    const observers = new Observers();
    const renders: {
      resolve: (init: ResponseInit) => void;
      args: number;
    }[] = [];
    const { client, server } = await setup({
      "/slow": {
        observable: observers,
        GET: function (_request, _pipe) {
          const args = arguments.length;
          return new Promise<ResponseInit>((resolve) =>
            renders.push({ resolve, args })
          );
        },
      },
    });
    const pipe = client.request({
      method: "GET",
      path: "/slow",
      observe: true,
    });
    const it = pipe[Symbol.asyncIterator]();
    await flush();
    renders[0].resolve({ payload: "first" });
    assertEquals(
      describe((await it.next()).value!),
      "2.05 first obs=0 last=false",
    );
    observers.updated();
    assertEquals(renders.length, 2);
    await it.return!();
    await flush();
    assertEquals(observers.count, 0);
    renders[1].resolve({ payload: "too late" }); // dropped, nothing logged
    // The deregistration (Observe 1) is answered as a plain GET.
    assertEquals(renders.length, 3);
    renders[2].resolve({ payload: "deregistered" });
    await flush();
    assertEquals(renders.map((r) => r.args), [2, 2, 2]);
    assertEquals([server.exchanges, server.drivers], [0, 0]);
    assertEquals(controllers.made, 0);
    client.close();
  } finally {
    controllers.restore();
  }
});

Deno.test("Observers: a render that throws, rejects or answers an error code ends that observation with its error response; the others go on", async () => {
  const logs: string[] = [];
  const observers = new Observers();
  /** How each observation's renders fail, by pipe; in order of arrival. */
  const pipes: unknown[] = [];
  const fail = new Map<unknown, string>();
  const { client, server, far } = await setup({
    "/flaky": {
      observable: observers,
      GET: (_request, pipe) => {
        if (!pipes.includes(pipe)) pipes.push(pipe);
        const how = fail.get(pipe);
        if (how === "throw") throw new CoapError("5.03", "thrown");
        if (how === "reject") return Promise.reject(new Error("broken"));
        if (how === "code") return { code: "4.04", payload: "gone" };
        return { payload: "ok" };
      },
    },
  }, { log: recorder(logs) });
  const observe = () =>
    client.request({ method: "GET", path: "/flaky", observe: true })[
      Symbol.asyncIterator
    ]();
  const bystander = observe();
  assertEquals(
    describe((await bystander.next()).value!),
    "2.05 ok obs=0 last=false",
  );
  const trace: string[] = [];
  for (const how of ["throw", "reject", "code"]) {
    const it = observe();
    assertEquals(
      describe((await it.next()).value!),
      "2.05 ok obs=0 last=false",
    );
    fail.set(pipes.at(-1), how);
    observers.updated();
    for (let e = await it.next(); !e.done; e = await it.next()) {
      trace.push(`${how}: ${describe(e.value)}`);
    }
  }
  assertEquals(trace, [
    "throw: 5.03 thrown last=true",
    "reject: 5.00 Internal Server Error last=true",
    "code: 4.04 gone last=true",
  ]);
  // The bystander was notified each time (obs 1 to 3 went out; its client
  // keeps the latest unread one), and is still observing.
  assertEquals(
    decodedSent(far).filter((m) => m.token[0] === 1).map((m) =>
      `${text(m.payload)} obs=${getOption(m, Option.OBSERVE)?.[0] ?? 0}`
    ),
    ["ok obs=0", "ok obs=1", "ok obs=2", "ok obs=3"],
  );
  assertEquals(
    describe((await bystander.next()).value!),
    "2.05 ok obs=3 last=false",
  );
  assertEquals([observers.count, server.observations], [1, 1]);
  await bystander.return!();
  await flush();
  assertEquals([observers.count, server.exchanges], [0, 0]);
  // Only the unexpected error is logged as one.
  assertEquals(logs, [
    "error An exception occurred while rendering a resource",
  ]);
  client.close();
});

Deno.test("Observers: a render that ends its observation with a final response of its own has what it returns dropped quietly", async () => {
  const logs: string[] = [];
  const observers = new Observers();
  let last = false;
  const { client, server } = await setup({
    "/last": {
      observable: observers,
      GET: (_request, pipe) => {
        if (!last) return { payload: "on" };
        pipe.addResponse({ payload: "bye" }, true);
        return { payload: "never sent" };
      },
    },
  }, { log: recorder(logs) });
  const pipe = client.request({ method: "GET", path: "/last", observe: true });
  const trace: string[] = [];
  for await (const event of pipe) {
    trace.push(describe(event));
    last = true;
    observers.updated();
  }
  assertEquals(trace, ["2.05 on obs=0 last=false", "2.05 bye last=true"]);
  assertEquals([observers.count, server.exchanges, logs], [0, 0, []]);
  client.close();
});

Deno.test("CoapClient matches 100 concurrent requests to their own responses, answered in reverse order", async () => {
  const waiting: (() => void)[] = [];
  const { client, server } = await setup({
    "/slow": {
      GET: async (request) => {
        await new Promise<void>((resolve) => waiting.push(resolve));
        return { payload: `slept ${request.query[0].slice(3)}` };
      },
    },
  });
  const pipes = Array.from(
    { length: 100 },
    (_, i) =>
      client.request({ method: "GET", path: "/slow", query: `ms=${i}` }),
  );
  const results = Promise.all(pipes.map((pipe) => collect(pipe)));
  // The server takes up a burst in slices: what is left after one waits for
  // a later task, so this waits for tasks too, not only microtasks.
  for (let round = 0; waiting.length < 100 && round < 1000; round++) {
    await (round % 50 === 49
      ? new Promise((resolve) => setTimeout(resolve, 0))
      : flush(1));
  }
  assertEquals(server.exchanges, 100);
  for (const resolve of waiting.reverse()) resolve();
  const traces = await results;
  assertEquals(traces, pipes.map((_, i) => [`2.05 slept ${i} last=true`]));
  assertEquals(server.exchanges, 0);
  client.close();
});

Deno.test("CoapClient.close() sends a Release; the server's observations end and their drivers abort", async () => {
  const counter = manualObservable();
  const { client, server, near } = await setup({
    "/counter": counter.resource,
  });
  const pipe = client.request({
    method: "GET",
    path: "/counter",
    observe: true,
  });
  const iterator = pipe[Symbol.asyncIterator]();
  assertEquals(
    describe((await iterator.next()).value),
    "2.05 0 obs=0 last=false",
  );
  client.close();
  assertEquals(decodedSent(near).at(-1)!.code, Code.RELEASE);
  assertEquals(
    describe((await iterator.next()).value),
    "exception Connection released by this side",
  );
  assertEquals((await iterator.next()).done, true);
  await flush();
  assertEquals(counter.ends, ["driver signal aborted: AbortError"]);
  assertEquals([server.exchanges, server.connections, server.drivers], [
    0,
    0,
    0,
  ]);
});

Deno.test("CoapClient pipes end with an exception event when the server goes away, so no loop hangs", async () => {
  const counter = manualObservable();
  const { client, far } = await setup({
    "/counter": counter.resource,
    "/never": { GET: () => new Promise<never>(() => {}) },
  });
  const observing = collect(
    client.request({ method: "GET", path: "/counter", observe: true }),
  );
  const waiting = collect(client.request({ method: "GET", path: "/never" }));
  await flush();
  far.close(1001, "going away");
  assertEquals(await observing, [
    "2.05 0 obs=0 last=false",
    "exception Connection closed by the peer (1001: going away)",
  ]);
  assertEquals(await waiting, [
    "exception Connection closed by the peer (1001: going away)",
  ]);
  assertEquals(client.openRequests, 0);
});

Deno.test("CoapClient pipe poke() sends a Ping that the server answers with a Pong", async () => {
  const counter = manualObservable();
  const { client, near, far } = await setup({ "/counter": counter.resource });
  const pipe = client.request({
    method: "GET",
    path: "/counter",
    observe: true,
  });
  const iterator = pipe[Symbol.asyncIterator]();
  await iterator.next();
  pipe.poke();
  await flush();
  assertEquals(decodedSent(near).at(-1)!.code, Code.PING);
  assertEquals(decodedSent(far).at(-1)!.code, Code.PONG);
  assertEquals(typeof await client.ping(), "number");
  await iterator.return!();
  client.close();
});

Deno.test("CoapClient.request() rejects a malformed request at the call", async () => {
  const { client } = await setup({});
  const bad: [unknown, string][] = [
    [{ method: "BREW", path: "/" }, 'unknown method "BREW"'],
    [
      { method: "GET", path: "nope" },
      'path must be a string starting with "/"',
    ],
    [{ method: "GET", path: "/%zz" }, "invalid percent-encoding"],
    [
      { method: "GET", path: "/", query: 5 },
      "query must be a string or an array",
    ],
    [{ method: "GET", path: "/", observe: "yes" }, "observe must be a boolean"],
    [{ method: "POST", path: "/", payload: 5 }, "payload of type number"],
  ];
  for (const [request, message] of bad) {
    assertThrows(
      () => client.request(request as CoapRequest),
      TypeError,
      message,
    );
  }
  assertThrows(
    () => client.request({ method: "GET", path: "/", contentFormat: 70000 }),
    RangeError,
  );
  assertEquals(client.openRequests, 0);
  client.close();
});

/**
 * A raw connection to a server: sends hand-made frames from its first
 * message on (a CSM unless told otherwise), records replies.
 */
async function rawPeer(
  server: CoapServer,
  frames: number[][] = [[0x00, 0xe1]],
) {
  const [near, far] = socketPair();
  server.accept(far);
  const received: CoapMessage[] = [];
  near.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    if (data instanceof ArrayBuffer) {
      received.push(decodeMessage(new Uint8Array(data)));
    }
  });
  let closeCode: number | undefined;
  const closed = new Promise<number>((resolve) =>
    near.addEventListener("close", (e) => {
      closeCode = (e as CloseEvent).code;
      resolve(closeCode);
    })
  );
  for (const frame of frames) near.send(new Uint8Array(frame));
  await flush();
  return { near, received, closed, closeCode: () => closeCode };
}

Deno.test("CoapServer answers 4.02 to a request with an unknown critical option, and ignores an unknown elective one", async () => {
  const server = new CoapServer({ "/": { GET: () => ({ payload: "x" }) } }, {
    log: quiet,
  });
  const { near, received } = await rawPeer(server);
  const path = { number: Option.URI_PATH, value: utf8("") };
  near.send(
    encodeMessage({
      code: Code.GET,
      token: new Uint8Array([1]),
      options: [{ number: 13, value: new Uint8Array(0) }],
      payload: new Uint8Array(0),
    }),
  );
  near.send(
    encodeMessage({
      code: Code.GET,
      token: new Uint8Array([2]),
      options: [{ number: 10, value: new Uint8Array(0) }],
      payload: new Uint8Array(0),
    }),
  );
  near.send(
    encodeMessage({
      code: Code.GET,
      token: new Uint8Array([3]),
      options: [path, { number: Option.OBSERVE, value: new Uint8Array(4) }],
      payload: new Uint8Array(0),
    }),
  );
  await flush();
  const replies = received.filter((m) => m.code !== Code.CSM)
    .map((m) => `${m.token[0]} ${m.code.toString(16)} ${text(m.payload)}`);
  assertEquals(replies, [
    "1 82 Bad Option: the request has a critical unknown option 13",
    "2 45 x",
    // Observe (6) is elective: a malformed one is ignored.
    "3 45 x",
  ]);
  assertEquals(server.exchanges, 0);
});

Deno.test("CoapServer aborts only the connection that sends malformed bytes, a text frame or an oversized message", async () => {
  const counter = manualObservable();
  const server = new CoapServer({ "/counter": counter.resource }, {
    log: quiet,
  });
  const { client } = await setup({}, { server });
  const watched = client.request({
    method: "GET",
    path: "/counter",
    observe: true,
  });
  const iterator = watched[Symbol.asyncIterator]();
  await iterator.next();
  const hostile: [Uint8Array | string, string, number][] = [
    [
      new Uint8Array([0x0f, 0x01]),
      "Malformed message: token length 15 is reserved (at most 8)",
      1000,
    ],
    ["hello", "Text frame received", 1000],
    [
      new Uint8Array(5000),
      "Message of 5000 bytes exceeds the Max-Message-Size of 1152",
      1000,
    ],
  ];
  for (const [input, diagnostic, code] of hostile) {
    const { near, received, closed } = await rawPeer(server);
    // An observation on the hostile connection, to see it end.
    near.send(encodeMessage({
      code: Code.GET,
      token: new Uint8Array([9]),
      options: [{ number: Option.OBSERVE, value: new Uint8Array(0) }, {
        number: Option.URI_PATH,
        value: utf8("counter"),
      }],
      payload: new Uint8Array(0),
    }));
    await flush();
    assertEquals(counter.observers, 2);
    near.send(input as Uint8Array);
    assertEquals(await closed, code);
    const abort = received.at(-1)!;
    assertEquals([abort.code, text(abort.payload)], [Code.ABORT, diagnostic]);
    await flush();
    assertEquals(
      counter.observers,
      1,
      "only the hostile connection's observation ended",
    );
  }
  assertEquals([server.connections, server.exchanges], [1, 1]);
  counter.notify();
  assertEquals(
    describe((await iterator.next()).value),
    "2.05 1 obs=1 last=false",
  );
  await iterator.return!();
  client.close();
  await flush();
  assertEquals([server.connections, server.exchanges, server.drivers], [
    0,
    0,
    0,
  ]);
});

Deno.test("CoapClient ends a request's pipe with an exception on a response with an unknown critical option, and deregisters an observation", async () => {
  const [near, far] = socketPair();
  const served: CoapMessage[] = [];
  const fake = attachWebSocket(far, {
    log: quiet,
    onRequest: (message, connection) => {
      served.push(message);
      connection.send({
        code: Code.CONTENT,
        token: message.token,
        options: [{ number: Option.OBSERVE, value: uint(1) }, {
          number: 9,
          value: new Uint8Array(0),
        }],
        payload: utf8("?"),
      });
    },
  });
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  assertEquals(
    await collect(client.request({ method: "GET", path: "/x", observe: true })),
    [
      "exception Bad Option: the response has a critical unknown option 9",
    ],
  );
  await flush();
  assertEquals(served.map((m) => getOption(m, Option.OBSERVE)), [
    uint(0),
    uint(1),
  ]);
  assertEquals([connection.state, client.openRequests], ["open", 0]);
  client.close();
  await fake.closed;
});

Deno.test("CoapClient ends a block-wise transfer whose blocks do not line up with a BlockwiseError", async () => {
  const [near, far] = socketPair();
  attachWebSocket(far, {
    log: quiet,
    onRequest: (message, connection) => {
      const asked = getOption(message, Option.BLOCK2);
      const num = asked === undefined ? 0 : decodeBlock(asked).num;
      // Always answers block 0, claiming more follow.
      connection.send({
        code: Code.CONTENT,
        token: message.token,
        options: [{ number: Option.BLOCK2, value: uint(0x0e) }],
        payload: new Uint8Array(1024).fill(num),
      });
    },
  });
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  assertEquals(
    await collect(client.request({ method: "GET", path: "/loop" })),
    [
      "exception Block-wise transfer failed: asked for block 1, got block 0",
    ],
  );
  assertEquals(connection.pending, 0);
  client.close();
});

Deno.test("CoapClient caps a block-wise body at maxBodySize", async () => {
  const [near, far] = socketPair();
  attachWebSocket(far, {
    log: quiet,
    onRequest: (message, connection) => {
      const asked = getOption(message, Option.BLOCK2);
      const num = asked === undefined ? 0 : decodeBlock(asked).num;
      connection.send({
        code: Code.CONTENT,
        token: message.token,
        options: [{ number: Option.BLOCK2, value: uint(num * 16 + 0x0e) }],
        payload: new Uint8Array(1024),
      });
    },
  });
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection, { maxBodySize: 4096 });
  assertEquals(
    await collect(client.request({ method: "GET", path: "/endless" })),
    [
      "exception Block-wise transfer failed: the body exceeds 4096 bytes",
    ],
  );
  client.close();
});

Deno.test("CoapServer serves a client that asks for smaller blocks in those blocks", async () => {
  const server = new CoapServer({ "/big": { GET: () => ({ payload: BIG }) } }, {
    log: quiet,
  });
  const { near, received } = await rawPeer(server);
  near.send(
    encodeMessage({
      code: Code.GET,
      token: new Uint8Array([1]),
      options: [{ number: Option.URI_PATH, value: utf8("big") }, {
        number: Option.BLOCK2,
        value: uint(2 * 16 + 4),
      }],
      payload: new Uint8Array(0),
    }),
  );
  near.send(encodeMessage({
    code: Code.GET,
    token: new Uint8Array([2]),
    options: [{ number: Option.URI_PATH, value: utf8("big") }, {
      number: Option.BLOCK2,
      value: uint(100 * 16 + 6),
    }],
    payload: new Uint8Array(0),
  }));
  await flush();
  const [block, past] = received.filter((m) => m.code !== Code.CSM);
  assertEquals(decodeBlock(getOption(block, Option.BLOCK2)!), {
    num: 2,
    more: true,
    szx: 4,
  });
  assertEquals(text(block.payload), BIG.slice(512, 768));
  assertEquals([past.code, text(past.payload)], [
    Code.BAD_OPTION,
    "Block 100 is past the end of the resource",
  ]);
});

Deno.test("CoapConnection of a client with no resources answers the server's requests 4.04", async () => {
  const [near, far] = socketPair();
  const server = new CoapConnection({
    send: (b) => far.send(b),
    close: () => far.close(),
  }, { log: quiet });
  const replies: number[] = [];
  far.addEventListener(
    "message",
    (e) => server.receive((e as MessageEvent).data),
  );
  const client = attachWebSocket(near, { log: quiet });
  server.start();
  await client.ready;
  far.addEventListener("message", (e) => {
    const m = decodeMessage(new Uint8Array((e as MessageEvent).data));
    if (m.code !== Code.CSM) replies.push(m.code);
  });
  far.send(
    encodeMessage({
      code: Code.GET,
      token: new Uint8Array([5]),
      options: [],
      payload: new Uint8Array(0),
    }),
  );
  await flush();
  assertEquals(replies, [Code.NOT_FOUND]);
  client.release();
});

Deno.test("the server logs an expected error response at debug in one line, an observation that ends not at all, and a handler that throws anything else as an error with the error", async () => {
  const entries: unknown[][] = [];
  const log: Logger = {
    debug: (...data) => entries.push(["debug", ...data]),
    info: (...data) => entries.push(["info", ...data]),
    warn: (...data) => entries.push(["warn", ...data]),
    error: (...data) => entries.push(["error", ...data]),
  };
  const failure = new Error("sensor unplugged");
  let tick: (() => void) | undefined;
  const { client } = await setup({
    "/fail": {
      GET: () => {
        throw failure;
      },
    },
    "/obs": {
      observable: true,
      GET: (request, pipe) => {
        if (request.observe !== 0) return { payload: "0" };
        tick = () => pipe.addResponse({ payload: "1" });
        pipe.addResponse({ payload: "0" });
        return new Promise((resolve) => pipe.onInterestEnd(resolve));
      },
    },
  }, { log });
  const trace = [
    ...await collect(client.request({ method: "GET", path: "/missing" })),
  ];
  const observation = client.request({
    method: "GET",
    path: "/obs",
    observe: true,
  });
  const events = observation[Symbol.asyncIterator]();
  trace.push(describe((await events.next()).value!));
  tick!();
  trace.push(describe((await events.next()).value!));
  await events.return!();
  await flush();
  trace.push(
    ...await collect(client.request({ method: "GET", path: "/fail" })),
  );
  assertEquals(trace, [
    "4.04 Not Found: /missing last=true",
    "2.05 0 obs=0 last=false",
    "2.05 1 obs=1 last=false",
    "5.00 Internal Server Error last=true",
  ]);
  assertEquals(entries, [
    [
      "debug",
      "Render request raised a renderable error (CoapError: Not Found: /missing), responding accordingly",
    ],
    // The client's side (one logger here): the answer to its deregistration.
    ["debug", "Dropping a response on token 02: nobody wants it any more"],
    ["error", "An exception occurred while rendering a resource", failure],
  ]);
  client.close();
});

/**
 * A WebSocket class for `CoapClient.connect()` whose sockets reach `server`
 * over in-memory pairs; `sockets` keeps the server's end of each, and
 * `refuse` makes the next connections fail.
 */
function inMemoryWebSocket(server: CoapServer) {
  const sockets: PairedSocket[] = [];
  const state = { refuse: 0 };
  class InMemory {
    constructor() {
      const pair = socketPair(false);
      const [near, far] = pair;
      if (state.refuse > 0) {
        state.refuse--;
        queueMicrotask(() => {
          near.readyState = 3;
          near.dispatchEvent(new Event("error"));
          near.dispatchEvent(new CloseEvent("close", { code: 1006 }));
        });
        return near;
      }
      server.accept(far);
      sockets.push(far);
      queueMicrotask(() => openPair(pair));
      return near;
    }
  }
  return { WebSocket: InMemory as never, sockets, state };
}

Deno.test("CoapClient with reconnect registers its observations again on a new connection when the server goes away; one-shot requests in flight end with an exception", async () => {
  let value = 0;
  const notify = new Set<() => void>();
  const server = new CoapServer({
    "/v": {
      observable: true,
      GET: (request, pipe) => {
        if (request.observe !== 0) return { payload: String(value) };
        const tell = () => pipe.addResponse({ payload: String(value) });
        tell();
        notify.add(tell);
        return new Promise((resolve) =>
          pipe.onInterestEnd(() => {
            notify.delete(tell);
            resolve();
          })
        );
      },
    },
    "/never": { GET: () => new Promise(() => {}) },
  }, { log: quiet });
  const net = inMemoryWebSocket(server);
  const reconnected: number[] = [];
  const client = await CoapClient.connect("coap+ws://server", {
    log: quiet,
    WebSocket: net.WebSocket,
    reconnect: {
      delay: 1,
      onReconnect: (attempt) => reconnected.push(attempt),
    },
  });
  const observation = client.request({
    method: "GET",
    path: "/v",
    observe: true,
  });
  const events = observation[Symbol.asyncIterator]();
  const trace: string[] = [describe((await events.next()).value!)];
  const pending = collect(client.request({ method: "GET", path: "/never" }));
  await flush();
  // The server's end goes away twice: one refused attempt, then back.
  net.state.refuse = 1;
  net.sockets[0].close(1006);
  value = 1;
  trace.push(describe((await events.next()).value!));
  value = 2;
  for (const tell of notify) tell();
  trace.push(describe((await events.next()).value!));
  assertEquals(trace, [
    "2.05 0 obs=0 last=false",
    "2.05 1 obs=0 last=false", // registered again: the current value first
    "2.05 2 obs=1 last=false",
  ]);
  assertEquals(await pending, [
    "exception Connection closed by the peer (1006)",
  ]);
  assertEquals(reconnected, [2]);
  assertEquals(net.sockets.length, 2);
  await events.return!();
  client.close();
  assertEquals((await client.closed).message.length > 0, true);
});

Deno.test("CoapClient with reconnect gives up after maxAttempts: observations end with an exception and the client is closed; requests while reconnecting fail at once", async () => {
  const server = new CoapServer({
    "/v": {
      observable: true,
      GET: (_request, pipe) => {
        pipe.addResponse({ payload: "0" });
        return new Promise((resolve) => pipe.onInterestEnd(resolve));
      },
    },
  }, { log: quiet });
  const net = inMemoryWebSocket(server);
  const client = await CoapClient.connect("coap+ws://server", {
    log: quiet,
    WebSocket: net.WebSocket,
    reconnect: { delay: 1, maxAttempts: 2 },
  });
  const observation = client.request({
    method: "GET",
    path: "/v",
    observe: true,
  });
  const events = observation[Symbol.asyncIterator]();
  await events.next();
  net.state.refuse = 10;
  net.sockets[0].close(1006);
  await flush();
  const during = await collect(client.request({ method: "GET", path: "/v" }));
  assertEquals(during, ["exception Not connected: the client is reconnecting"]);
  const last = await events.next();
  assertEquals(
    describe(last.value!),
    "exception Connection closed by the peer (1006)",
  );
  const reason = await client.closed;
  assertEquals(
    reason.message.startsWith(
      "Cannot reconnect to coap+ws://server after 2 attempts",
    ),
    true,
    reason.message,
  );
});

Deno.test("CoapServer survives a peer whose CSM says Max-Message-Size 0 (or is empty): that connection is aborted with one log line, without an Abort that would not fit, and others go on", async () => {
  for (const csm of [[0x00, 0xe1, 0x21, 0x00], [0x00, 0xe1, 0x20]]) {
    const logs: string[] = [];
    const server = new CoapServer({
      "/": { GET: () => ({ payload: "Welcome" }) },
    }, { log: recorder(logs) });
    const hostile = await rawPeer(server, [csm, [0x00, 0x01]]);
    assertEquals(
      hostile.received.map((m) => codeToString(m.code)),
      ["7.01"], // the server's CSM, and no Abort: it would not fit in 0 bytes
    );
    assertEquals(hostile.closeCode(), 1000); // 1002 is not a code a script may send
    const diagnostic =
      "Cannot answer: a 2.05 response of 10 bytes does not fit the peer's Max-Message-Size of 0";
    assertEquals(logs, [`warn Aborting the CoAP connection: ${diagnostic}`]);
    const { client } = await setup({}, { server });
    const events = await collect(client.request({ method: "GET", path: "/" }));
    assertEquals(events, ["2.05 Welcome last=true"]);
    assertEquals([server.connections, server.exchanges], [1, 0]);
    client.close();
  }
});

Deno.test("CoapServer answers a 4.02 without its diagnostic when the peer's Max-Message-Size is too small for it, and goes on serving that peer", async () => {
  const server = new CoapServer({
    "/": { GET: () => ({ payload: "Welcome" }) },
  }, { log: quiet });
  // Max-Message-Size 64; a GET with an 8-byte token and critical option 9.
  const peer = await rawPeer(server, [[0x00, 0xe1, 0x21, 0x40], [
    0x08,
    0x01,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0x90,
  ], [0x01, 0x01, 0x07]]);
  assertEquals(
    peer.received.map((m) => [codeToString(m.code), text(m.payload)]),
    [["7.01", ""], ["4.02", ""], ["2.05", "Welcome"]],
  );
  assertEquals(peer.closeCode(), undefined);
  peer.near.close();
});

Deno.test("CoapServer answers 5.00 when a resource's answer does not fit the peer even block-wise, and when it is not a response at all", async () => {
  const logs: string[] = [];
  const server = new CoapServer({
    "/wide": {
      GET: () => ({
        payload: "x".repeat(100),
        options: [{ number: 2049, value: new Uint8Array(60) }],
      }),
    },
    "/broken": { GET: () => ({ code: "9.99" }) },
  }, { log: recorder(logs) });
  const peer = await rawPeer(server, [[0x00, 0xe1, 0x21, 0x40], [
    0x01,
    0x01,
    0x01,
    0xb4,
    ...utf8("wide"),
  ], [0x01, 0x01, 0x02, 0xb6, ...utf8("broken")]]);
  assertEquals(
    peer.received.map((m) => [codeToString(m.code), m.token[0]]),
    [["7.01", undefined], ["5.00", 1], ["5.00", 2]],
  );
  assertEquals(logs, ["error Cannot send the response to /broken"]);
  assertEquals(peer.closeCode(), undefined);
  peer.near.close();
});

Deno.test("CoapServer aborts the connection holding the most unread bytes when all of them together hold more than maxHeldBytes", async () => {
  const logs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  // (The held messages are taken up on the flow's timers once the GETs are
  // answered; flow_test.ts shows that with a clock it moves.)
  const server = new CoapServer({
    "/slow": { GET: () => gate.then(() => ({ payload: "late" })) },
    "/echo": { POST: (request) => ({ payload: request.payload }) },
  }, {
    log: recorder(logs),
    limits: { maxConcurrentRequests: 1, maxHeldBytes: 4_000 },
  });
  const slowGet = (token: number) => [0x01, 0x01, token, 0xb4, ...utf8("slow")];
  const post = (token: number, size: number) => [
    0x01,
    0x02,
    token,
    0xb4,
    ...utf8("echo"),
    0xff,
    ...new Uint8Array(size),
  ];
  const csm = [0x00, 0xe1];
  // Each has a GET being answered and a POST in hand; what comes after is
  // held. The first holds 2 POSTs of 509 bytes; the second's third POST of
  // 1,009 bytes takes the total past 4,000, and the second (the most) goes.
  const small = await rawPeer(server, [
    csm,
    slowGet(1),
    ...[2, 3, 4].map((t) => post(t, 500)),
  ]);
  assertEquals(server.heldBytes, 2 * 509);
  const large = await rawPeer(server, [
    csm,
    slowGet(1),
    ...[2, 3, 4, 5, 6].map((t) => post(t, 1000)),
  ]);
  assertEquals(large.closeCode(), 1000);
  assertEquals(large.received.at(-1)?.code, Code.ABORT);
  assertEquals(
    text(large.received.at(-1)!.payload),
    "Holding 3027 bytes of messages not yet taken up, the most of any connection, while the server held 4045 (limit 4000, maxHeldBytes)",
  );
  assertEquals(server.heldBytes, 2 * 509);
  assertEquals([small.closeCode(), server.connections], [undefined, 1]);
  assertEquals(logs, [
    "warn Aborting the CoAP connection: Holding 3027 bytes of messages not yet taken up, the most of any connection, while the server held 4045 (limit 4000, maxHeldBytes)",
    "warn A CoAP connection closed; while it was open the server paused reading 1 times (at most 3 messages held) while responses were not read, 1 were being answered, or a burst used its 4 ms slice",
  ]);
  // What a connection holds is let go when it closes.
  small.near.close();
  await flush();
  assertEquals([server.heldBytes, server.connections], [0, 0]);
  release();
});

Deno.test("CoapServer.admit() refuses a connection past maxConnections, and past maxConnectionsPerAddress for one address, until one closes", async () => {
  const server = new CoapServer({}, {
    log: quiet,
    limits: { maxConnections: 3, maxConnectionsPerAddress: 2 },
  });
  const open = (address: string) => {
    const [near, far] = socketPair();
    server.accept(far, { address });
    return near;
  };
  assertEquals(server.admit("10.0.0.1"), undefined);
  const a1 = open("10.0.0.1");
  open("10.0.0.1");
  assertEquals(
    server.admit("10.0.0.1"),
    "10.0.0.1 has 2 connections open, the limit for one address (maxConnectionsPerAddress)",
  );
  assertEquals(server.admit("10.0.0.2"), undefined);
  open("10.0.0.2");
  assertEquals(
    server.admit("10.0.0.3"),
    "The server has 3 connections open, its limit (maxConnections)",
  );
  a1.close();
  await flush();
  assertEquals([server.connections, server.admit("10.0.0.1")], [2, undefined]);
});

Deno.test("CoapClient against a server whose CSM says Max-Message-Size 0: the request ends with an exception event naming the limit; nothing is thrown and the connection stays usable for what fits", async () => {
  const [near, far] = socketPair();
  // The hostile server: its CSM, then nothing else.
  far.send(new Uint8Array([0x00, 0xe1, 0x21, 0x00]));
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  const client = new CoapClient(connection);
  const events = await collect(client.request({ method: "GET", path: "/" }));
  // A GET with a 1-byte token: 3 bytes.
  assertEquals(events, [
    "exception Cannot send a message of 3 bytes: the peer accepts at most 0",
  ]);
  assertEquals([connection.state, client.openRequests], ["open", 0]);
  client.close();
});

Deno.test("CoapClient.request() with timeout ends in a TimeoutError exception event when no response comes (an observation: no first notification), and with signal in the signal's reason; an observation so ended is deregistered at the server", async () => {
  let notify: (() => void) | undefined;
  const { client, server } = await setup({
    "/never": { GET: () => new Promise<never>(() => {}) },
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          notify = () => pipe.addResponse({ payload: "n" });
          signal.addEventListener("abort", () => resolve());
        }),
    },
  });
  const trace = async (pipe: IterablePipe<CoapRequest, CoapResponse>) => {
    const lines: string[] = [];
    for await (const event of pipe) {
      lines.push(
        event.kind === "exception"
          ? `exception ${(event.exception as Error).name}: ${
            (event.exception as Error).message
          }`
          : describe(event),
      );
      if (lines.length === 1 && event.kind === "response") {
        // The first notification cleared the timeout: abort by hand.
        setTimeout(() => controller.abort(new Error("left")), 30);
      }
    }
    return lines;
  };
  const controller = new AbortController();
  assertEquals(
    await trace(
      client.request({ method: "GET", path: "/never" }, { timeout: 20 }),
    ),
    ["exception TimeoutError: No response within 20 ms"],
  );
  assertEquals(
    await trace(client.request({ method: "GET", path: "/obs", observe: true }, {
      timeout: 20,
    })),
    ["exception TimeoutError: No first response within 20 ms"],
  );
  await flush();
  assertEquals(server.observations, 0);
  const observation = trace(
    client.request({ method: "GET", path: "/obs", observe: true }, {
      timeout: 20,
      signal: controller.signal,
    }),
  );
  await flush();
  notify!();
  assertEquals(await observation, [
    "2.05 n obs=0 last=false",
    "exception Error: left",
  ]);
  await flush();
  assertEquals(server.observations, 0);
  const aborted = new AbortController();
  aborted.abort(new Error("before"));
  assertEquals(
    await trace(
      client.request({ method: "GET", path: "/never" }, {
        signal: aborted.signal,
      }),
    ),
    ["exception Error: before"],
  );
  assertThrows(
    () => client.request({ method: "GET", path: "/" }, { timeout: 0 }),
    RangeError,
    "timeout must be a positive number of milliseconds, got 0",
  );
  assertThrows(
    () =>
      client.request({ method: "GET", path: "/" }, {
        signal: {} as AbortSignal,
      }),
    TypeError,
    "signal must be an AbortSignal",
  );
  assertEquals(client.openRequests, 0);
  client.close();
});

Deno.test("CoapServer without a proxy answers Proxy-Uri and Proxy-Scheme 4.02 naming the option and why", async () => {
  const { client } = await setup({ "/": { GET: () => ({ payload: "hi" }) } });
  const lines: string[] = [];
  for (
    const request of [
      { method: "GET" as const, path: "/", proxyUri: "coap://10.0.0.1/x" },
      {
        method: "GET" as const,
        path: "/",
        options: [
          { number: Option.URI_HOST, value: utf8("10.0.0.1") },
          { number: Option.PROXY_SCHEME, value: utf8("coap") },
        ],
      },
    ]
  ) {
    for await (const event of client.request(request)) {
      if (event.kind === "response") lines.push(describe(event));
    }
  }
  assertEquals(lines, [
    "4.02 Bad Option: the request has a critical unknown option 35 (Proxy-Uri: this server is not a forward proxy) last=true",
    "4.02 Bad Option: the request has a critical unknown option 39 (Proxy-Scheme: this server is not a forward proxy) last=true",
  ]);
  client.close();
});

Deno.test("CoapServer.accept(): an option given as undefined leaves the server's own setting (maxMessageSize here), as one left out does", () => {
  const server = new CoapServer({}, { log: quiet, maxMessageSize: 4096 });
  const advertised = [{}, { maxMessageSize: undefined, log: undefined }].map(
    (options) => {
      const [near, far] = socketPair();
      const connection = server.accept(far, options);
      const size = connection.local.maxMessageSize;
      connection.abort("done");
      near.close();
      return size;
    },
  );
  assertEquals(advertised, [4096, 4096]);
});
