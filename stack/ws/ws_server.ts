// deno-lint-ignore-file no-import-prefix -- ws is pinned inline below, on purpose
/**
 * `serveCoapWs` with `ws` itself: the one npm package the server uses,
 * pinned here and locked in this folder's own configuration (deno.json,
 * deno.lock): in the workspace's, Deno would install it for every command,
 * the module's own included. `@coap/stack/ws` takes the class instead, so
 * that the published package depends on nothing.
 *
 * @module
 */

// @ts-types="npm:@types/ws@8.18.2"
import { WebSocketServer } from "npm:ws@8.23.0";
import {
  type CoapWsServer,
  serveCoapWs as serve,
  type ServeCoapWsOptions,
} from "../node_ws.ts";
import type { CoapServer, Resources } from "../server.ts";

/**
 * {@linkcode serve} with `ws` 8.23.0.
 *
 * @param resources The resources, or a server.
 * @param options As `serveCoapWs` takes them, less the class.
 * @returns Once listening.
 */
export function serveCoapWs(
  resources: Resources | CoapServer,
  options: Omit<ServeCoapWsOptions, "WebSocketServer">,
): Promise<CoapWsServer> {
  return serve(resources, { ...options, WebSocketServer });
}
