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
   * Origins allowed to connect (browsers send one); requests without an
   * Origin header (non-browser clients) are always allowed. Every origin
   * when left out.
   */
  allowedOrigins?: readonly string[];
}

/**
 * Checks that `request` asks for a WebSocket with the `coap` subprotocol on
 * the right path from an allowed origin.
 *
 * @param request The HTTP request.
 * @param options The allowed origins.
 * @returns `undefined` if it may be upgraded, otherwise the response to
 * send: 404 for another path, 426 for a request that is not a WebSocket
 * upgrade, 400 for one without the `coap` subprotocol, 403 for an origin
 * that is not allowed.
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
    origin !== null && options.allowedOrigins !== undefined &&
    !options.allowedOrigins.includes(origin)
  ) {
    return new Response(`Origin ${origin} is not allowed\n`, { status: 403 });
  }
  return undefined;
}
