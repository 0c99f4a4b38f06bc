/**
 * The Deno adapter: a `Deno.serve` handler that upgrades requests for
 * `/.well-known/coap` with the `coap` subprotocol and serves them with a
 * {@linkcode CoapServer}.
 *
 * @module
 */

import { CoapServer, type Resources } from "./server.ts";
import {
  authorizeUpgrade,
  rejectUpgrade,
  type UpgradeOptions,
} from "./upgrade.ts";

/** Options for {@linkcode serveCoap}. */
export interface ServeCoapOptions extends UpgradeOptions {
  /** The port; 0 picks a free one. */
  port: number;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** Called once listening, with the port. */
  onListen?: (port: number) => void;
  /**
   * A certificate chain (PEM) to serve TLS with, so that clients connect
   * with `coaps+ws://`; give `key` with it.
   */
  cert?: string;
  /** The private key (PEM) of `cert`. */
  key?: string;
  /**
   * Let other processes listen on the same port, the kernel spreading
   * connections between them (Linux; Deno needs `--unstable-net`). This is
   * how `deno task coap:cluster` runs several servers on one port.
   *
   * @default {false}
   */
  reusePort?: boolean;
}

/**
 * A `Deno.serve` handler for CoAP over WebSocket.
 *
 * @param server The server that serves each accepted socket.
 * @param options The origins allowed besides the server's own, and an
 * `authorize` hook.
 * @returns The handler.
 *
 * @example
 * ```ts
 * import { coapHandler } from "./deno_server.ts";
 * import { CoapServer } from "./server.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const handler = coapHandler(new CoapServer({}));
 * assertEquals((await handler(new Request("http://x/"))).status, 404);
 * ```
 */
export function coapHandler(
  server: CoapServer,
  options: UpgradeOptions = {},
): (request: Request) => Response | Promise<Response> {
  const upgrade = (request: Request): Response => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: "coap",
      idleTimeout: 0,
    });
    server.accept(socket);
    return response;
  };
  return (request) => {
    const rejected = rejectUpgrade(request, options);
    if (rejected !== undefined) return rejected;
    if (options.authorize === undefined) return upgrade(request);
    return authorizeUpgrade(request, options).then((refused) =>
      refused ?? upgrade(request)
    );
  };
}

/**
 * Serves resources over CoAP over WebSocket with `Deno.serve`, on
 * 127.0.0.1 unless told otherwise.
 *
 * @param resources The resources, or a server.
 * @param options Port, address, allowed origins, an `authorize` hook, and
 * a certificate and key for TLS.
 * @returns The HTTP server and the CoAP server.
 * @throws {TypeError} If only one of `cert` and `key` is given.
 *
 * @example
 * ```ts ignore
 * import { serveCoap } from "./deno_server.ts";
 * import { demoResources } from "./resources.ts";
 *
 * serveCoap(demoResources(), { port: 8683 });
 * ```
 */
export function serveCoap(
  resources: Resources | CoapServer,
  options: ServeCoapOptions,
): { http: Deno.HttpServer<Deno.NetAddr>; coap: CoapServer } {
  const coap = resources instanceof CoapServer
    ? resources
    : new CoapServer(resources);
  const { cert, key } = options;
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      "Cannot serve CoAP over TLS: give both cert and key, or neither",
    );
  }
  const http = Deno.serve({
    port: options.port,
    hostname: options.hostname ?? "127.0.0.1",
    onListen: ({ port }) => options.onListen?.(port),
    ...(options.reusePort === true ? { reusePort: true } : {}),
    ...(cert === undefined ? {} : { cert, key }),
  }, coapHandler(coap, options));
  return { http, coap };
}
