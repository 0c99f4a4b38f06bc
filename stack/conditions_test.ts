// Conditional requests and validation (RFC 7252 §5.10.6, §5.10.8, §5.9.1.3)
// and No-Response (RFC 7967) in the server, through the client's `options`:
// whole traces of codes, ETags and payloads, and of what each handler ran.

import { assertEquals, assertThrows } from "@std/assert";
import type { Logger } from "@coap/pipe";
import { CoapClient } from "./client.ts";
import type { CoapRequest } from "./exchange.ts";
import {
  type CoapOption,
  Code,
  decodeMessage,
  encodeMessage,
  getOption,
  hex,
  Option,
  text,
  uint,
  utf8,
} from "./message.ts";
import { CoapServer, type Resources } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import { socketPair } from "./testing/socket_pair.ts";
import { recorder } from "./testing/loggers.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

async function setup(resources: Resources, log: Logger = quiet) {
  const server = new CoapServer(resources, { log });
  const [near, far] = socketPair();
  server.accept(far);
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  return { server, client: new CoapClient(connection), far, near };
}

/** The one response: code, ETag in hex, payload. */
async function ask(client: CoapClient, request: CoapRequest): Promise<string> {
  for await (const event of client.request(request)) {
    if (event.kind === "response") {
      const etag = getOption(event.message, Option.ETAG);
      return `${event.message.code}${
        etag === undefined ? "" : ` etag=${hex(etag)}`
      } ${text(event.message.payload)}`.trimEnd();
    }
    return `exception ${(event.exception as Error).message}`;
  }
  return "nothing";
}

const ifMatch = (value: string | Uint8Array): CoapOption => ({
  number: Option.IF_MATCH,
  value: typeof value === "string" ? utf8(value) : value,
});
const etag = (value: string): CoapOption => ({
  number: Option.ETAG,
  value: utf8(value),
});
const IF_NONE_MATCH: CoapOption = {
  number: Option.IF_NONE_MATCH,
  value: new Uint8Array(0),
};

/** A stored value with a version as its ETag; absent until first PUT. */
function versioned(ran: string[]): Resources {
  let value: string | undefined;
  let version = 0;
  return {
    "/v": {
      etag: () => value === undefined ? undefined : `v${version}`,
      GET: () => {
        ran.push("GET");
        if (value === undefined) return { code: "4.04" };
        return { payload: value };
      },
      PUT: (request) => {
        ran.push(`PUT ${text(request.payload)}`);
        const created = value === undefined;
        value = text(request.payload);
        version++;
        return { code: created ? "2.01" : "2.04" };
      },
    },
  };
}

Deno.test("a resource's etag(): If-None-Match creates only once, If-Match updates only the version named, an empty If-Match only what exists; a GET naming the current ETag is 2.03 without running the handler", async () => {
  const ran: string[] = [];
  const { client } = await setup(versioned(ran));
  const put = (payload: string, options: CoapOption[]) =>
    ask(client, { method: "PUT", path: "/v", payload, options });
  const trace = [
    await put("a", [ifMatch(new Uint8Array(0))]),
    await put("a", [IF_NONE_MATCH]),
    await put("b", [IF_NONE_MATCH]),
    await ask(client, { method: "GET", path: "/v" }),
    await put("c", [ifMatch("v0")]),
    await put("c", [ifMatch("v0"), ifMatch("v1")]),
    await put("d", [ifMatch(new Uint8Array(0))]),
    await ask(client, { method: "GET", path: "/v", options: [etag("v3")] }),
    await ask(client, {
      method: "GET",
      path: "/v",
      options: [etag("v1"), etag("v2")],
    }),
  ];
  assertEquals(trace, [
    "4.12 Precondition Failed: If-Match, but the resource does not exist",
    "2.01",
    "4.12 Precondition Failed: If-None-Match, but the resource exists",
    "2.05 etag=7631 a",
    "4.12 Precondition Failed: If-Match names no current ETag of the resource",
    "2.04",
    "2.04",
    "2.03 etag=7633",
    "2.05 etag=7633 d",
  ]);
  assertEquals(ran, ["PUT a", "GET", "PUT c", "PUT d", "GET"]);
  client.close();
});

Deno.test("without etag(), a resource exists by being there: If-None-Match on it is 4.12, on a missing path it reaches the 4.04; a 2.05 whose own ETag the request names goes as 2.03 with Max-Age, without its payload", async () => {
  let runs = 0;
  const { client, far } = await setup({
    "/plain": {
      GET: () => {
        runs++;
        return {
          payload: "body",
          maxAge: 30,
          options: [{ number: Option.ETAG, value: utf8("e1") }],
        };
      },
      PUT: () => ({ code: "2.04" }),
    },
  });
  assertEquals([
    await ask(client, {
      method: "PUT",
      path: "/plain",
      payload: "x",
      options: [IF_NONE_MATCH],
    }),
    await ask(client, {
      method: "PUT",
      path: "/nothing",
      payload: "x",
      options: [IF_NONE_MATCH],
    }),
    await ask(client, { method: "GET", path: "/plain", options: [etag("e1")] }),
    await ask(client, { method: "GET", path: "/plain", options: [etag("e2")] }),
  ], [
    "4.12 Precondition Failed: If-None-Match, but the resource exists",
    "4.04 Not Found: /nothing",
    "2.03 etag=6531",
    "2.05 etag=6531 body",
  ]);
  assertEquals(runs, 2);
  const valid = far.sent.map((m) => decodeMessage(m as Uint8Array))
    .find((m) => m.code === Code.VALID)!;
  assertEquals(valid.options.map((o) => o.number), [
    Option.ETAG,
    Option.MAX_AGE,
  ]);
  assertEquals(valid.payload.length, 0);
  client.close();
});

Deno.test("an etag() that throws or gives a value no ETag can be is the resource's bug: 5.00, logged; a resource whose etag is not a function is refused", async () => {
  const lines: string[] = [];
  const log = recorder(lines);
  const { client } = await setup({
    "/throws": {
      etag: () => {
        throw new Error("broken");
      },
      GET: () => ({ payload: "x" }),
    },
    "/long": { etag: () => "123456789", GET: () => ({ payload: "x" }) },
  }, log);
  assertEquals([
    await ask(client, { method: "GET", path: "/throws" }),
    await ask(client, { method: "GET", path: "/long" }),
  ], ["5.00", "5.00"]);
  assertEquals(lines, [
    "error Cannot tell the ETag of /throws: its etag() failed",
    "error Cannot tell the ETag of /long: its etag() failed",
  ]);
  assertThrows(
    () =>
      new CoapServer({
        "/x": { etag: "v1" as unknown as () => string },
      }),
    TypeError,
    "Cannot serve /x: its etag is not a function",
  );
  client.close();
});

Deno.test("No-Response (RFC 7967): the classes asked against are not sent; the others are; a malformed one is no option; a suppressed notification is skipped and the observation goes on", async () => {
  let value = 0;
  const pipes = new Set<{ addResponse(r: { payload: string }): void }>();
  const ran: string[] = [];
  const server = new CoapServer({
    "/ok": { POST: () => (ran.push("ok"), { code: "2.04" }) },
    "/bad": { POST: () => (ran.push("bad"), { code: "4.00" }) },
    "/obs": {
      observable: true,
      GET: (_request, pipe, signal) =>
        new Promise<void>((resolve) => {
          pipes.add(pipe);
          pipe.addResponse({ payload: String(value) });
          signal.addEventListener("abort", () => resolve());
        }),
    },
  }, { log: quiet });
  const [near, far] = socketPair();
  server.accept(far);
  const answers: string[] = [];
  near.addEventListener("message", (event) => {
    const message = decodeMessage(
      new Uint8Array((event as MessageEvent).data as ArrayBuffer),
    );
    if (message.code !== Code.CSM) {
      answers.push(
        `${message.token[0]} ${((message.code >> 5) + "." +
          String(message.code & 31).padStart(2, "0"))}`,
      );
    }
  });
  near.send(new Uint8Array([0x00, 0xe1]));
  const request = (
    token: number,
    code: number,
    path: string,
    noResponse?: number,
    extra: CoapOption[] = [],
  ) =>
    near.send(encodeMessage({
      code,
      token: new Uint8Array([token]),
      options: [
        ...extra,
        { number: Option.URI_PATH, value: utf8(path) },
        ...(noResponse === undefined
          ? []
          : [{ number: Option.NO_RESPONSE, value: uint(noResponse) }]),
      ],
      payload: new Uint8Array(0),
    }));
  const flush = async () => {
    for (let i = 0; i < 30; i++) await Promise.resolve();
  };
  request(1, Code.POST, "ok", 2);
  request(2, Code.POST, "ok", 8);
  request(3, Code.POST, "bad", 8);
  request(4, Code.POST, "bad", 26);
  request(5, Code.POST, "ok", 0);
  request(6, Code.POST, "missing", 8);
  // A No-Response of more than one byte is malformed, so absent (an
  // elective option, RFC 7252 §5.4.1): answered. The fuzzer found it.
  near.send(encodeMessage({
    code: Code.POST,
    token: new Uint8Array([9]),
    options: [
      { number: Option.URI_PATH, value: utf8("ok") },
      { number: Option.NO_RESPONSE, value: new Uint8Array([0x04, 0x61]) },
    ],
    payload: new Uint8Array(0),
  }));
  await flush();
  assertEquals(answers, ["2 2.04", "5 2.04", "9 2.04"]);
  assertEquals(ran, ["ok", "ok", "bad", "bad", "ok", "ok"]);
  assertEquals(server.exchanges, 0);
  answers.length = 0;
  request(7, Code.GET, "obs", 2, [{ number: Option.OBSERVE, value: uint(0) }]);
  request(8, Code.GET, "obs", 0, [{ number: Option.OBSERVE, value: uint(0) }]);
  await flush();
  value++;
  for (const pipe of pipes) pipe.addResponse({ payload: String(value) });
  await flush();
  assertEquals(answers, ["8 2.05", "8 2.05"]);
  assertEquals(server.observations, 2);
  near.close();
  await flush();
  assertEquals(server.observations, 0);
});

Deno.test("CoapRequest.options are sent as given; those the request's fields or the client make are refused at the call", async () => {
  const { client, near } = await setup({ "/x": { GET: () => ({}) } });
  assertEquals(
    await ask(client, {
      method: "GET",
      path: "/x",
      options: [{ number: 65000, value: utf8("z") }, etag("t")],
    }),
    "2.05",
  );
  const sent = near.sent.map((m) => decodeMessage(m as Uint8Array))
    .filter((m) => m.code === Code.GET);
  assertEquals(
    sent.map((m) => m.options.map((o) => `${o.number}=${hex(o.value)}`)),
    [["4=74", "11=78", "65000=7a"]],
  );
  assertThrows(
    () =>
      client.request({
        method: "GET",
        path: "/x",
        options: [{ number: Option.URI_PATH, value: utf8("y") }],
      }),
    TypeError,
    "option 11 is made from the request's fields or by the client, not given in options",
  );
  assertThrows(
    () =>
      client.request({
        method: "GET",
        path: "/x",
        options: [{ number: 1.5, value: utf8("y") }],
      }),
    TypeError,
    "each of options must be { number: an integer from 0 to 65535, value: a Uint8Array }",
  );
  assertThrows(
    () =>
      client.request({
        method: "GET",
        path: "/x",
        options: "If-Match" as unknown as CoapOption[],
      }),
    TypeError,
    "options must be an array of { number, value }",
  );
  client.close();
});

Deno.test("an observation of a resource with etag() gets its notifications as they are: no ETag read at registration on a later state, and no 2.03 for the ETag it named", async () => {
  let version = 1;
  let notify: (() => void) | undefined;
  const { client } = await setup({
    "/v": {
      etag: () => `v${version}`,
      observable: true,
      GET: (request, pipe, signal) => {
        if (request.observe !== 0) return { payload: `state ${version}` };
        notify = () => pipe.addResponse({ payload: `state ${version}` });
        pipe.addResponse({ payload: `state ${version}` });
        return new Promise<void>((resolve) =>
          signal.addEventListener("abort", () => resolve())
        );
      },
    },
  });
  const seen: string[] = [];
  for await (
    const event of client.request({
      method: "GET",
      path: "/v",
      observe: true,
      options: [etag("v1")],
    })
  ) {
    if (event.kind !== "response") break;
    const tag = getOption(event.message, Option.ETAG);
    seen.push(
      `${event.message.code} ${text(event.message.payload)} etag=${
        tag === undefined ? "-" : text(tag)
      }`,
    );
    if (seen.length === 2) break;
    version++;
    notify!();
  }
  assertEquals(seen, ["2.05 state 1 etag=-", "2.05 state 2 etag=-"]);
  // A plain GET still carries the current one.
  assertEquals(
    await ask(client, { method: "GET", path: "/v" }),
    [
      "2.05 etag=7632 state 2",
    ][0],
  );
  client.close();
});
