import { assertEquals, assertThrows } from "@std/assert";
import { parseCoapUri } from "./client.ts";
import { coapHandler } from "./deno_server.ts";
import { CoapServer } from "./server.ts";
import { socketPair } from "./testing/socket_pair.ts";
import { authorizeUpgrade, bearerToken, rejectUpgrade } from "./upgrade.ts";

function request(
  path: string,
  headers: Record<string, string> = {},
): Request {
  return new Request(`http://127.0.0.1:8683${path}`, { headers });
}

/** What a browser or a WebSocket library sends to open a `coap` socket. */
const upgrade = {
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  "sec-websocket-version": "13",
  "sec-websocket-protocol": "coap",
};

Deno.test("rejectUpgrade() lets through a WebSocket upgrade with the coap subprotocol at /.well-known/coap", () => {
  assertEquals(rejectUpgrade(request("/.well-known/coap", upgrade)), undefined);
  assertEquals(
    rejectUpgrade(request("/.well-known/coap", {
      ...upgrade,
      "sec-websocket-protocol": "chat, coap",
    })),
    undefined,
  );
});

Deno.test("rejectUpgrade() answers 404 elsewhere, 426 without an upgrade, 400 without coap, 403 for an origin not allowed", async () => {
  const cases: [Request, number, string][] = [
    [
      request("/", upgrade),
      404,
      "CoAP over WebSocket is served at /.well-known/coap",
    ],
    [
      request("/.well-known/coap"),
      426,
      "This endpoint speaks CoAP over WebSocket only",
    ],
    [
      request("/.well-known/coap", {
        ...upgrade,
        "sec-websocket-protocol": "",
      }),
      400,
      "The coap subprotocol is required",
    ],
    [
      request("/.well-known/coap", {
        ...upgrade,
        "sec-websocket-protocol": "mqtt",
      }),
      400,
      "The coap subprotocol is required",
    ],
  ];
  for (const [req, status, body] of cases) {
    const response = rejectUpgrade(req)!;
    assertEquals([response.status, (await response.text()).trim()], [
      status,
      body,
    ]);
  }
  const foreign = rejectUpgrade(
    request("/.well-known/coap", { ...upgrade, origin: "http://evil.example" }),
    { allowedOrigins: ["http://127.0.0.1:8000"] },
  )!;
  assertEquals(foreign.status, 403);
  assertEquals(
    (await foreign.text()).trim(),
    "Origin http://evil.example is not allowed (start the server with --origin http://evil.example, or pass it in allowedOrigins, to let that page in)",
  );
  assertEquals(
    rejectUpgrade(
      request("/.well-known/coap", {
        ...upgrade,
        origin: "http://127.0.0.1:8000",
      }),
      { allowedOrigins: ["http://127.0.0.1:8000"] },
    ),
    undefined,
  );
  // No Origin header: not a browser, allowed.
  assertEquals(
    rejectUpgrade(request("/.well-known/coap", upgrade), {
      allowedOrigins: [],
    }),
    undefined,
  );
  assertEquals(
    (rejectUpgrade(request("/.well-known/coap"))!).headers.get("upgrade"),
    "websocket",
  );
});

Deno.test("rejectUpgrade() lets in a browser only from the server's own origin unless told otherwise; clients without an Origin are unaffected", () => {
  const from = (origin: string, options = {}) =>
    rejectUpgrade(
      request("/.well-known/coap", { ...upgrade, origin }),
      options,
    )?.status;
  assertEquals(from("http://evil.example"), 403);
  assertEquals(from("null"), 403); // a sandboxed page or a file
  assertEquals(from("http://127.0.0.1:8683"), undefined); // its own
  assertEquals(from("https://127.0.0.1:8683"), 403); // another scheme
  assertEquals(from("http://127.0.0.1:8684"), 403); // another port
  assertEquals(from("http://localhost:8683"), 403); // another host name
  assertEquals(
    from("http://127.0.0.1:8080", {
      allowedOrigins: ["http://127.0.0.1:8080"],
    }),
    undefined,
  );
  assertEquals(
    from("http://127.0.0.1:8683", { allowedOrigins: ["http://x.example"] }),
    undefined,
  );
  assertEquals(
    rejectUpgrade(
      new Request("https://coap.example/.well-known/coap", {
        headers: { ...upgrade, origin: "https://coap.example" },
      }),
      { allowedHosts: ["coap.example"] },
    ),
    undefined,
  );
  assertEquals(rejectUpgrade(request("/.well-known/coap", upgrade)), undefined);
});

Deno.test("rejectUpgrade() refuses a handshake RFC 6455 does not allow with 400 and the reason, another WebSocket version with 426", async () => {
  const without = (name: string, value?: string) => {
    const headers: Record<string, string> = { ...upgrade };
    if (value === undefined) delete headers[name];
    else headers[name] = value;
    return request("/.well-known/coap", headers);
  };
  const cases: [Request, number, string][] = [
    [
      without("connection"),
      400,
      "A WebSocket upgrade needs Connection: Upgrade",
    ],
    [
      without("connection", "keep-alive"),
      400,
      "A WebSocket upgrade needs Connection: Upgrade",
    ],
    [
      without("sec-websocket-key"),
      400,
      "A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64",
    ],
    [
      without("sec-websocket-key", "short=="),
      400,
      "A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64",
    ],
    [
      without("sec-websocket-version"),
      426,
      "This server speaks WebSocket version 13 (RFC 6455)",
    ],
    [
      without("sec-websocket-version", "8"),
      426,
      "This server speaks WebSocket version 13 (RFC 6455)",
    ],
    [
      new Request("http://127.0.0.1:8683/.well-known/coap", {
        method: "POST",
        headers: upgrade,
      }),
      400,
      'A WebSocket upgrade is a GET, not a "POST"',
    ],
  ];
  const got = [];
  for (const [req] of cases) {
    const response = rejectUpgrade(req)!;
    got.push([response.status, (await response.text()).trim()]);
  }
  assertEquals(got, cases.map(([, status, body]) => [status, body]));
  assertEquals(
    rejectUpgrade(without("sec-websocket-version", "8"))!.headers.get(
      "sec-websocket-version",
    ),
    "13",
  );
  // Header values are compared as the RFC says: case and lists.
  assertEquals(
    rejectUpgrade(without("connection", "keep-alive, UPGRADE")),
    undefined,
  );
});

Deno.test("rejectUpgrade() answers only to IP addresses, localhost names and allowedHosts, with 403 before anything else: a DNS-rebinding page is refused", async () => {
  const at = (host: string, options = {}) =>
    rejectUpgrade(
      new Request(`http://${host}/.well-known/coap`, {
        headers: { ...upgrade, host, origin: `http://${host}` },
      }),
      options,
    )?.status;
  for (
    const host of [
      "127.0.0.1:8683",
      "10.1.2.3",
      "[::1]:8683",
      "[fe80::1]",
      "localhost:8683",
      "localhost.",
      "dev.localhost:8683",
    ]
  ) {
    assertEquals(at(host), undefined, host);
  }
  assertEquals(at("evil.example:8683"), 403);
  assertEquals(at("localhost.evil.example"), 403);
  assertEquals(at("127.0.0.1.nip.io"), 403);
  assertEquals(
    at("coap.example", { allowedHosts: ["coap.example"] }),
    undefined,
  );
  assertEquals(at("a.b.example", { allowedHosts: [".b.example"] }), undefined);
  assertEquals(at("b.example", { allowedHosts: [".b.example"] }), undefined);
  assertEquals(at("ab.example", { allowedHosts: [".b.example"] }), 403);
  assertEquals(at("anything.example", { allowedHosts: true }), undefined);
  // A rebound page: its URL and Origin are its own name, and so is Host;
  // the Host header alone naming it is refused too.
  const rebound = rejectUpgrade(
    new Request("http://127.0.0.1:8683/", {
      headers: { ...upgrade, host: "evil.example:8683" },
    }),
  )!;
  assertEquals([rebound.status, (await rebound.text()).trim()], [
    403,
    'Host "evil.example" is not one this server answers to (start the server with --allowed-host "evil.example", or pass it in allowedHosts, to serve that name)',
  ]);
});

Deno.test("bearerToken() answers 401 without a token, 403 with another one, and lets in the token from the header or the access_token query", async () => {
  const authorize = bearerToken("s3cret");
  const url = "http://127.0.0.1:8683/.well-known/coap";
  const cases: [Request, number | undefined, string][] = [
    [new Request(url), 401, "A bearer token is required"],
    [new Request(`${url}?access_token=`), 401, "A bearer token is required"],
    [
      new Request(url, { headers: { authorization: "Basic czNjcmV0" } }),
      401,
      "A bearer token is required",
    ],
    [
      new Request(url, { headers: { authorization: "Bearer s3cre" } }),
      403,
      "The bearer token is not valid",
    ],
    [
      new Request(`${url}?access_token=s3cretX`),
      403,
      "The bearer token is not valid",
    ],
    [
      new Request(url, { headers: { authorization: "Bearer s3cret" } }),
      undefined,
      "",
    ],
    [
      new Request(url, { headers: { authorization: "bearer s3cret" } }),
      undefined,
      "",
    ],
    [new Request(`${url}?access_token=s3cret`), undefined, ""],
  ];
  const got = [];
  for (const [req] of cases) {
    const response = authorize(req);
    got.push([response?.status, ((await response?.text()) ?? "").trim()]);
  }
  assertEquals(got, cases.map(([, status, body]) => [status, body]));
  assertEquals(
    authorize(new Request(url))?.headers.get("www-authenticate"),
    'Bearer realm="coap"',
  );
  assertThrows(() => bearerToken(""), TypeError, "the token must not be empty");
});

Deno.test("coapHandler() refuses before upgrading: a foreign Origin 403, a missing token 401, a failing authorize hook 500; no connection is made", async () => {
  const server = new CoapServer({});
  const errors: unknown[] = [];
  const realError = console.error;
  console.error = (...data: unknown[]) => errors.push(data[0]);
  try {
    const url = "http://127.0.0.1:8683/.well-known/coap";
    const evil = coapHandler(server);
    assertEquals(
      (await evil(
        new Request(url, {
          headers: { ...upgrade, origin: "http://evil.example" },
        }),
      )).status,
      403,
    );
    const guarded = coapHandler(server, { authorize: bearerToken("t") });
    const refused = await guarded(new Request(url, { headers: upgrade }));
    assertEquals([refused.status, (await refused.text()).trim()], [
      401,
      "A bearer token is required",
    ]);
    const broken = coapHandler(server, {
      authorize: () => {
        throw new Error("token store down");
      },
    });
    const failed = await broken(new Request(url, { headers: upgrade }));
    assertEquals([failed.status, (await failed.text()).trim()], [
      500,
      "Authorization failed",
    ]);
    const odd = await authorizeUpgrade(new Request(url), {
      authorize: () => "yes" as unknown as Response,
    });
    assertEquals(odd?.status, 500);
    assertEquals(await authorizeUpgrade(new Request(url)), undefined);
  } finally {
    console.error = realError;
  }
  assertEquals(errors, [
    "The CoAP upgrade's authorize hook failed:",
    "The CoAP upgrade's authorize hook failed:",
  ]);
  assertEquals([server.connections, server.exchanges], [0, 0]);
});

Deno.test("parseCoapUri() maps coap+ws and coaps+ws to ws and wss at /.well-known/coap, and rejects the rest", () => {
  assertEquals(parseCoapUri("coaps+ws://example.com/a/b?x=1&y"), {
    url: "wss://example.com/.well-known/coap",
    path: "/a/b",
    query: ["x=1", "y"],
  });
  assertEquals(
    parseCoapUri("coap+ws://[::1]:8683").url,
    "ws://[::1]:8683/.well-known/coap",
  );
  for (
    const bad of [
      "coap://127.0.0.1/",
      "ws://127.0.0.1/",
      "not a uri",
      "coap+ws:///x",
    ]
  ) {
    assertThrows(() => parseCoapUri(bad), TypeError, "Cannot connect to");
  }
});

Deno.test("coapHandler() logs each kind of refused upgrade once at info, escaped, and answers 503 past the server's connection limits", async () => {
  const lines: string[] = [];
  const server = new CoapServer({}, {
    log: {
      debug() {},
      info: (line: string) => lines.push(line),
      warn() {},
      error() {},
    },
    limits: { maxConnections: 1 },
  });
  const handler = coapHandler(server);
  const url = "http://127.0.0.1:8683/.well-known/coap";
  for (let i = 0; i < 3; i++) {
    await handler(
      new Request(url, {
        headers: { ...upgrade, origin: "http://evil.example\x1b[2J" },
      }),
    );
    await handler(new Request("http://127.0.0.1:8683/favicon.ico"));
  }
  assertEquals(lines, [
    "Refused a CoAP upgrade with 403: Origin http://evil.example\\x1b[2J is not allowed (start the server with --origin http://evil.example\\x1b[2J, or pass it in allowedOrigins, to let that page in)",
    "Refused a CoAP upgrade with 404: CoAP over WebSocket is served at /.well-known/coap",
  ]);
  const [, far] = socketPair();
  server.accept(far);
  const full = await handler(new Request(url, { headers: upgrade }));
  assertEquals(
    [full.status, full.headers.get("retry-after"), (await full.text()).trim()],
    [
      503,
      "10",
      "The server has 1 connections open, its limit (maxConnections); try again later",
    ],
  );
  far.close();
});
