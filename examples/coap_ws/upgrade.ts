// This module is browser compatible.

/**
 * The HTTP side of accepting CoAP over WebSocket (RFC 8323 §4): which
 * requests may become a `coap` WebSocket, and the answer to the others.
 * The Deno and workerd adapters share it.
 *
 * @module
 */

/** The path of CoAP-over-WebSocket endpoints (RFC 8323 §8.2). */
export const COAP_WS_PATH = "/.well-known/coap";

/** Options for accepting upgrades. */
export interface UpgradeOptions {
  /**
   * Origins allowed to connect besides the server's own, such as
   * `"http://127.0.0.1:8080"` for a page served from another port. A
   * browser sends the Origin of the page that opens a WebSocket, and does
   * not apply the same-origin policy to WebSockets: the server must, or any
   * page a user visits could talk to a server on the user's machine
   * (cross-site WebSocket hijacking). Requests without an Origin header
   * (aiocoap, the Deno client, devices) are not affected.
   *
   * @default {[]} (only the server's own origin)
   */
  allowedOrigins?: readonly string[];
  /**
   * Looks at the HTTP request before it is upgraded (a cookie, an
   * `Authorization` header, a token in the query) and returns `undefined`
   * to accept it or the response to refuse it with, such as a 401 or 403
   * with a reason. A browser cannot set headers on a WebSocket, so a page
   * passes a token in the query or relies on a cookie; other clients may
   * send `Authorization`. A hook that throws refuses with 500. Runs after
   * the path, upgrade, subprotocol and Origin checks.
   */
  authorize?: (
    request: Request,
  ) => Response | undefined | Promise<Response | undefined>;
}

/**
 * Checks that `request` asks for a WebSocket with the `coap` subprotocol on
 * the right path from an allowed origin.
 *
 * @param request The HTTP request.
 * @param options The allowed origins.
 * @returns `undefined` if it may be upgraded, otherwise the response to
 * send: 404 for another path, 426 for a request that is not a WebSocket
 * upgrade, 400 for one without the `coap` subprotocol, 403 for an Origin
 * that is neither the server's own (the scheme, host and port the request
 * was made to) nor in `allowedOrigins`.
 *
 * @example
 * ```ts
 * import { rejectUpgrade } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const response = rejectUpgrade(new Request("http://x/.well-known/coap"));
 * assertEquals(response?.status, 426);
 * ```
 */
export function rejectUpgrade(
  request: Request,
  options: UpgradeOptions = {},
): Response | undefined {
  const { pathname } = new URL(request.url);
  if (pathname !== COAP_WS_PATH) {
    return new Response(`CoAP over WebSocket is served at ${COAP_WS_PATH}\n`, {
      status: 404,
    });
  }
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return new Response("This endpoint speaks CoAP over WebSocket only\n", {
      status: 426,
      headers: { upgrade: "websocket" },
    });
  }
  const protocols = (request.headers.get("sec-websocket-protocol") ?? "")
    .split(",").map((p) => p.trim());
  if (!protocols.includes("coap")) {
    return new Response("The coap subprotocol is required\n", { status: 400 });
  }
  const origin = request.headers.get("origin");
  if (
    origin !== null && origin !== ownOrigin(request) &&
    !(options.allowedOrigins ?? []).includes(origin)
  ) {
    return new Response(
      `Origin ${origin} is not allowed (start the server with --origin ${origin}, or pass it in allowedOrigins, to let that page in)\n`,
      { status: 403 },
    );
  }
  return undefined;
}

/**
 * The origin a page served by this server would have: the request's
 * scheme (http for ws, https for wss), host and port.
 */
function ownOrigin(request: Request): string {
  const url = new URL(request.url);
  const scheme = url.protocol === "wss:" || url.protocol === "https:"
    ? "https:"
    : "http:";
  return `${scheme}//${url.host}`;
}

/**
 * Runs the `authorize` hook of `options`, if any: `undefined` to go on,
 * or the response that refuses the upgrade (500 if the hook throws).
 *
 * @param request The HTTP request.
 * @param options The upgrade options.
 * @returns The refusal, or `undefined`.
 *
 * @example
 * ```ts
 * import { authorizeUpgrade } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const authorize = (request: Request) =>
 *   request.headers.get("authorization") === "Bearer s3cret"
 *     ? undefined
 *     : new Response("A bearer token is required\n", { status: 401 });
 * const refused = await authorizeUpgrade(new Request("http://x/"), { authorize });
 * assertEquals(refused?.status, 401);
 * ```
 */
export async function authorizeUpgrade(
  request: Request,
  options: UpgradeOptions = {},
): Promise<Response | undefined> {
  if (options.authorize === undefined) return undefined;
  try {
    const refusal = await options.authorize(request);
    if (refusal === undefined || refusal instanceof Response) return refusal;
    throw new TypeError(
      "authorize must return a Response or undefined",
    );
  } catch (error) {
    console.error("The CoAP upgrade's authorize hook failed:", error);
    return new Response("Authorization failed\n", { status: 500 });
  }
}

/**
 * An `authorize` hook that lets in requests carrying `token` as a bearer
 * token (RFC 6750): in an `Authorization: Bearer` header, which non-browser
 * clients can send, or as the `access_token` query parameter (RFC 6750
 * §2.3), which is all a browser can do, since a page cannot set headers on
 * a WebSocket. A request without a token is answered 401 with
 * `WWW-Authenticate: Bearer`; one with another token 403. A query token may
 * end up in access logs: prefer the header where the client can send it.
 *
 * @param token The token to accept.
 * @returns The hook, for `UpgradeOptions.authorize`.
 * @throws {TypeError} If `token` is empty.
 *
 * @example
 * ```ts
 * import { bearerToken } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const authorize = bearerToken("s3cret");
 * const url = "http://127.0.0.1:8683/.well-known/coap";
 * assertEquals((await authorize(new Request(url)))?.status, 401);
 * assertEquals(await authorize(new Request(`${url}?access_token=s3cret`)), undefined);
 * ```
 */
export function bearerToken(
  token: string,
): (request: Request) => Response | undefined {
  if (typeof token !== "string" || token === "") {
    throw new TypeError(
      "Cannot use bearerToken(): the token must not be empty",
    );
  }
  const expected = new TextEncoder().encode(token);
  return (request) => {
    const header = request.headers.get("authorization");
    const given = header !== null && /^Bearer /i.test(header)
      ? header.slice(7).trim()
      : new URL(request.url).searchParams.get("access_token");
    if (given === null || given === "") {
      return new Response("A bearer token is required\n", {
        status: 401,
        headers: { "www-authenticate": 'Bearer realm="coap"' },
      });
    }
    if (!sameBytes(new TextEncoder().encode(given), expected)) {
      return new Response("The bearer token is not valid\n", {
        status: 403,
      });
    }
    return undefined;
  };
}

/** Compares without stopping at the first difference. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let differ = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) differ |= a[i] ^ (b[i % b.length] ?? 0);
  return differ === 0;
}
