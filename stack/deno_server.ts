/**
 * The Deno adapter: a `Deno.serve` handler that upgrades requests for
 * `/.well-known/coap` with the `coap` subprotocol and serves them with a
 * {@linkcode CoapServer}.
 *
 * @module
 */

import type { Logger } from "@coap/pipe";
export type { Logger };
import { escapeText } from "./peer_log.ts";
import { CoapServer, type Resources } from "./server.ts";
import {
  authorizeUpgrade,
  fullRefusal,
  type Refusal,
  refusalResponse,
  refuseHost,
  refuseUpgrade,
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

/** How many kinds of refusal are logged, each once, before no more are. */
const REFUSALS_LOGGED = 100;

/**
 * Logs each kind of refused upgrade once, at info: a page from an origin
 * not allowed, a Host the server does not answer to, a malformed
 * handshake. The kinds are bounded, so no client can flood the log by
 * varying what it sends.
 *
 * @param log Where the lines go.
 * @returns The function to call with each refusal.
 */
export function refusalLog(log: Logger): (refusal: Refusal) => void {
  const seen = new Set<string>();
  return (refusal) => {
    if (seen.has(refusal.key) || seen.size > REFUSALS_LOGGED) return;
    seen.add(refusal.key);
    try {
      log.info(
        seen.size > REFUSALS_LOGGED
          ? `Refused CoAP upgrades of ${REFUSALS_LOGGED} kinds; more are not logged`
          : `Refused a CoAP upgrade with ${refusal.status}: ${
            escapeText(refusal.reason)
          }`,
      );
    } catch { /* a logger's failure changes nothing */ }
  };
}

/**
 * A `Deno.serve` handler for CoAP over WebSocket. It refuses what
 * {@linkcode refuseUpgrade} refuses, logging each kind of refusal once at
 * info; past the server's connection limits it answers 503
 * ({@linkcode CoapServer.prototype.admit}); an upgrade that Deno cannot
 * make is a 400 with the reason, never a 500.
 *
 * @param server The server that serves each accepted socket.
 * @param options The hosts and origins allowed besides the server's own,
 * and an `authorize` hook.
 * @returns The handler; give it the `info` Deno.serve passes, so that it
 * can count connections by address.
 *
 * @example
 * ```ts
 * import { coapHandler } from "./deno_server.ts";
 * import { CoapServer } from "./server.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const handler = coapHandler(new CoapServer({}));
 * assertEquals((await handler(new Request("http://127.0.0.1/"))).status, 404);
 * ```
 */
export function coapHandler(
  server: CoapServer,
  options: UpgradeOptions = {},
): (
  request: Request,
  info?: Deno.ServeHandlerInfo<Deno.Addr>,
) => Response | Promise<Response> {
  const refused = refusalLog(server.log);
  const refuse = (refusal: Refusal): Response => {
    refused(refusal);
    return refusalResponse(refusal);
  };
  const upgrade = (request: Request, address?: string): Response => {
    const full = server.admit(address);
    if (full !== undefined) return refuse(fullRefusal(full));
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request, {
        protocol: "coap",
        idleTimeout: 0,
      });
    } catch (error) {
      return refuse({
        status: 400,
        key: "upgrade failed",
        reason: `Cannot upgrade to a WebSocket: ${(error as Error).message}`,
      });
    }
    server.accept(upgraded.socket, { address });
    return upgraded.response;
  };
  return (request, info) => {
    if (options.page !== undefined && !request.headers.has("upgrade")) {
      const host = refuseHost(request, options);
      return host === undefined ? options.page(request) : refuse(host);
    }
    const refusal = refuseUpgrade(request, options);
    if (refusal !== undefined) return refuse(refusal);
    const remote = info?.remoteAddr;
    const address = remote !== undefined && "hostname" in remote
      ? remote.hostname
      : undefined;
    if (options.authorize === undefined) return upgrade(request, address);
    return authorizeUpgrade(request, options).then((no) =>
      no ?? upgrade(request, address)
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
  const hostname = options.hostname ?? "127.0.0.1";
  // The name it listens on is one it answers to.
  const allowedHosts = options.allowedHosts === true
    ? true
    : [...(options.allowedHosts ?? []), hostname];
  const http = Deno.serve({
    port: options.port,
    hostname,
    onListen: ({ port }) => options.onListen?.(port),
    // What escapes the handler (nothing should) is one line, not a stack
    // for each request.
    onError: (error) => {
      try {
        coap.log.error(
          `A CoAP upgrade request failed: ${
            escapeText(String((error as Error)?.message ?? error))
          }`,
        );
      } catch { /* a logger's failure changes nothing */ }
      return new Response("Internal Server Error\n", { status: 500 });
    },
    ...(options.reusePort === true ? { reusePort: true } : {}),
    ...(cert === undefined ? {} : { cert, key }),
  }, coapHandler(coap, { ...options, allowedHosts }));
  return { http, coap };
}
