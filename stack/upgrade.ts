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
   * Host names the server answers to besides those it always does: IP
   * addresses, `localhost` and names under `.localhost`, and (in the Deno
   * adapter) the name it listens on. A request whose Host header names
   * another is refused with 403 before anything else is looked at: a page
   * whose own name an attacker rebinds to this machine's address (DNS
   * rebinding) sends its own name as Host and its own origin as Origin, so
   * without this check the Origin check would let it in. An entry starting
   * with `.` allows that name and every name under it (`.example.com`);
   * `true` allows every name, for a server behind a proxy that checks it.
   *
   * @default {[]}
   */
  allowedHosts?: readonly string[] | true;
  /**
   * Answers the requests that are not WebSocket upgrades (no `Upgrade`
   * header) once their Host has passed the check, such as the explorer page
   * `coap:server` serves at `/`; without it they are refused as
   * {@linkcode refuseUpgrade} says (404 elsewhere, 426 at the path).
   */
  page?: (request: Request) => Response | Promise<Response>;
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

/** Why an upgrade is refused: the status, and the reason in words. */
export interface Refusal {
  /** The HTTP status: 400, 403, 404 or 426. */
  readonly status: number;
  /** One sentence, without a newline; it may quote the request's text. */
  readonly reason: string;
  /** What was refused, for logging each kind once (`host evil.example`). */
  readonly key: string;
  /** Headers the response carries (`Upgrade`, `Sec-WebSocket-Version`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Why `request` may not become a CoAP WebSocket, or `undefined` if it may:
 * a Host the server does not answer to (403), another path (404), no
 * WebSocket upgrade (426), a handshake that RFC 6455 §4.2.1 does not allow
 * (400; 426 for another WebSocket version), no `coap` subprotocol (400), or
 * an Origin that is neither the server's own nor allowed (403).
 *
 * @param request The HTTP request.
 * @param options The allowed hosts and origins.
 * @returns The refusal, or `undefined`.
 *
 * @example
 * ```ts
 * import { refuseUpgrade } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const refusal = refuseUpgrade(new Request("http://evil.example:8683/.well-known/coap"));
 * assertEquals(refusal?.status, 403);
 * assertEquals(refusal?.key, "host evil.example");
 * ```
 */
export function refuseUpgrade(
  request: Request,
  options: UpgradeOptions = {},
): Refusal | undefined {
  const host = refuseHost(request, options);
  if (host !== undefined) return host;
  const url = new URL(request.url);
  if (url.pathname !== COAP_WS_PATH) {
    return {
      status: 404,
      key: "path",
      reason: `CoAP over WebSocket is served at ${COAP_WS_PATH}`,
    };
  }
  const headers = request.headers;
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") {
    return {
      status: 426,
      key: "no upgrade",
      reason: "This endpoint speaks CoAP over WebSocket only",
      headers: { upgrade: "websocket" },
    };
  }
  if (request.method !== "GET") {
    return {
      status: 400,
      key: "method",
      reason: `A WebSocket upgrade is a GET, not a ${
        JSON.stringify(request.method.slice(0, 20))
      }`,
    };
  }
  if (!tokens(headers.get("connection")).includes("upgrade")) {
    return {
      status: 400,
      key: "connection",
      reason: "A WebSocket upgrade needs Connection: Upgrade",
    };
  }
  if (!/^[A-Za-z0-9+/]{22}==$/.test(headers.get("sec-websocket-key") ?? "")) {
    return {
      status: 400,
      key: "key",
      reason:
        "A WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64",
    };
  }
  if (headers.get("sec-websocket-version")?.trim() !== "13") {
    return {
      status: 426,
      key: "version",
      reason: "This server speaks WebSocket version 13 (RFC 6455)",
      headers: { "sec-websocket-version": "13" },
    };
  }
  if (!tokens(headers.get("sec-websocket-protocol")).includes("coap")) {
    return {
      status: 400,
      key: "subprotocol",
      reason: "The coap subprotocol is required",
    };
  }
  const origin = headers.get("origin");
  if (
    origin !== null && origin !== ownOrigin(url) &&
    !(options.allowedOrigins ?? []).includes(origin)
  ) {
    const shown = origin.slice(0, 200);
    return {
      status: 403,
      key: `origin ${shown}`,
      reason:
        `Origin ${shown} is not allowed (start the server with --origin ${shown}, or pass it in allowedOrigins, to let that page in)`,
    };
  }
  return undefined;
}

/**
 * Why the server does not answer a request for the name in its Host header
 * (403), or `undefined` if it does: the first of
 * {@linkcode refuseUpgrade}'s checks, and the one a page served beside the
 * WebSocket (the explorer) must pass too.
 *
 * @param request The HTTP request.
 * @param options The allowed hosts.
 * @returns The refusal, or `undefined`.
 *
 * @example
 * ```ts
 * import { refuseHost } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(refuseHost(new Request("http://localhost:8683/")), undefined);
 * assertEquals(refuseHost(new Request("http://evil.example/"))?.status, 403);
 * ```
 */
export function refuseHost(
  request: Request,
  options: UpgradeOptions = {},
): Refusal | undefined {
  const url = new URL(request.url);
  // The URL's host is what the own origin is made of; a runtime builds it
  // from the Host header, and both must name the server.
  const header = request.headers.get("host");
  const names = [hostName(url.host)];
  if (header !== null) names.push(hostName(header));
  const name = names.find((n) => !hostAllowed(n, options.allowedHosts ?? []));
  if (name === undefined) return undefined;
  const shown = JSON.stringify(name.slice(0, 100));
  return {
    status: 403,
    key: `host ${name.slice(0, 100)}`,
    reason:
      `Host ${shown} is not one this server answers to (start the server with --allowed-host ${shown}, or pass it in allowedHosts, to serve that name)`,
  };
}

/**
 * Checks that `request` asks for a WebSocket with the `coap` subprotocol on
 * the right path, with a Host the server answers to, from an allowed
 * origin: {@linkcode refuseUpgrade} as a response.
 *
 * @param request The HTTP request.
 * @param options The allowed hosts and origins.
 * @returns `undefined` if it may be upgraded, otherwise the response to
 * send: 403 for a Host the server does not answer to, 404 for another
 * path, 426 for a request that is not a WebSocket upgrade (or of another
 * version), 400 for a malformed handshake or one without the `coap`
 * subprotocol, 403 for an Origin that is neither the server's own (the
 * scheme, host and port the request was made to) nor in `allowedOrigins`.
 *
 * @example
 * ```ts
 * import { rejectUpgrade } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const response = rejectUpgrade(new Request("http://x/.well-known/coap"));
 * assertEquals(response?.status, 403); // x is not a name it answers to
 * const plain = rejectUpgrade(new Request("http://localhost/.well-known/coap"));
 * assertEquals(plain?.status, 426);
 * ```
 */
export function rejectUpgrade(
  request: Request,
  options: UpgradeOptions = {},
): Response | undefined {
  const refusal = refuseUpgrade(request, options);
  return refusal === undefined ? undefined : refusalResponse(refusal);
}

/**
 * The response that refuses an upgrade.
 *
 * @param refusal Why.
 * @returns A plain-text response with the reason.
 */
export function refusalResponse(refusal: Refusal): Response {
  return new Response(`${refusal.reason}\n`, {
    status: refusal.status,
    headers: refusal.headers,
  });
}

/**
 * The refusal of one connection more than the server takes
 * ({@linkcode CoapServer.prototype.admit}'s reason): 503, with
 * `Retry-After`.
 *
 * @param why Which limit, in words.
 * @returns The refusal.
 *
 * @example
 * ```ts
 * import { fullRefusal } from "./upgrade.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(fullRefusal("Too many").headers, { "retry-after": "10" });
 * ```
 */
export function fullRefusal(why: string): Refusal {
  return {
    status: 503,
    key: why,
    reason: `${why}; try again later`,
    headers: { "retry-after": "10" },
  };
}

/** The comma-separated tokens of a header, trimmed and in lower case. */
function tokens(header: string | null): string[] {
  return (header ?? "").split(",").map((t) => t.trim().toLowerCase());
}

/** The name in a Host header: no port, lower case, no trailing dot. */
function hostName(host: string): string {
  let name = host.trim().toLowerCase();
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    return end < 0 ? name : name.slice(0, end + 1);
  }
  const colon = name.lastIndexOf(":");
  if (colon >= 0) name = name.slice(0, colon);
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const IPV6 = /^\[[0-9a-f:.]+(%[\w.~-]+)?\]$/;

/**
 * Whether the server answers to `name`: an IP address (no DNS name, so
 * nothing to rebind), `localhost` and names under it (RFC 6761 §6.3: they
 * never leave the machine), or one `allowed`.
 */
function hostAllowed(
  name: string,
  allowed: readonly string[] | true,
): boolean {
  if (allowed === true) return true;
  if (IPV4.test(name) || IPV6.test(name)) return true;
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  for (const entry of allowed) {
    const wanted = entry.toLowerCase().replace(/\.$/, "");
    if (wanted.startsWith(".")) {
      if (name === wanted.slice(1) || name.endsWith(wanted)) return true;
    } else if (name === wanted) return true;
  }
  return false;
}

/**
 * The origin a page served by this server would have: the request's
 * scheme (http for ws, https for wss), host and port, which the caller has
 * checked name the server.
 */
function ownOrigin(url: URL): string {
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
