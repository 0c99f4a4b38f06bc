import { assertEquals, assertThrows } from "@std/assert";
import { parseCoapUri } from "./client.ts";
import { coapHandler } from "./deno_server.ts";
import { CoapServer } from "./server.ts";
import { authorizeUpgrade, bearerToken, rejectUpgrade } from "./upgrade.ts";

function request(
  path: string,
  headers: Record<string, string> = {},
): Request {
  return new Request(`http://127.0.0.1:8683${path}`, { headers });
}

const upgrade = { upgrade: "websocket", "sec-websocket-protocol": "coap" };

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
      request("/.well-known/coap", { upgrade: "websocket" }),
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
    ),
    undefined,
  );
  assertEquals(rejectUpgrade(request("/.well-known/coap", upgrade)), undefined);
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
