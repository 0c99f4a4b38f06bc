// This module is browser compatible (workerd's WebSocketPair aside).

/**
 * The workerd (Cloudflare Workers) adapter: answers a `fetch` for
 * `/.well-known/coap` with a `WebSocketPair` whose server end a
 * {@linkcode CoapServer} serves.
 *
 * @module
 */

import type { CoapServer } from "./server.ts";
import {
  authorizeUpgrade,
  fullRefusal,
  refusalResponse,
  rejectUpgrade,
  type UpgradeOptions,
} from "./upgrade.ts";
import type { WebSocketLike } from "./websocket.ts";

/** workerd's server-side socket: accepted, then used like any WebSocket. */
interface WorkerSocket extends WebSocketLike {
  accept(): void;
}

/**
 * Handles a worker's `fetch` for CoAP over WebSocket.
 *
 * @param request The HTTP request.
 * @param server The server that serves the accepted socket.
 * @param options The hosts and origins allowed besides the server's own,
 * and an `authorize` hook. A worker on a name of its own gives that name
 * in `allowedHosts` (or `true` where its platform routes only its names to
 * it).
 * @returns The 101 response carrying the client end, or a rejection (a
 * promise of it when there is an `authorize` hook): as the Deno adapter's,
 * and 503 past the server's `maxConnections`.
 *
 * @example Rejecting a plain GET (no WebSocketPair needed)
 * ```ts
 * import { coapFetch } from "./workerd_server.ts";
 * import { CoapServer } from "./server.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const response = await coapFetch(new Request("http://127.0.0.1/.well-known/coap"), new CoapServer({}));
 * assertEquals(response.status, 426);
 * ```
 */
export function coapFetch(
  request: Request,
  server: CoapServer,
  options: UpgradeOptions = {},
): Response | Promise<Response> {
  const rejected = rejectUpgrade(request, options);
  if (rejected !== undefined) return rejected;
  if (options.authorize === undefined) return upgrade(server);
  return authorizeUpgrade(request, options).then((refused) =>
    refused ?? upgrade(server)
  );
}

function upgrade(server: CoapServer): Response {
  const full = server.admit();
  if (full !== undefined) return refusalResponse(fullRefusal(full));
  const Pair = (globalThis as {
    WebSocketPair?: new () => Record<0 | 1, WorkerSocket>;
  }).WebSocketPair;
  if (Pair === undefined) {
    return new Response("No WebSocketPair on this platform\n", {
      status: 501,
    });
  }
  const pair = new Pair();
  const client = pair[0], socket = pair[1];
  socket.accept();
  server.accept(socket);
  return new Response(null, {
    status: 101,
    headers: { "sec-websocket-protocol": "coap" },
    webSocket: client,
  } as ResponseInit);
}
