import { assertEquals, assertThrows } from "@std/assert";
import { parseCoapUri } from "./client.ts";
import { rejectUpgrade } from "./upgrade.ts";

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
