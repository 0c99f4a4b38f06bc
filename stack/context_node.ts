/**
 * {@linkcode CoapContext} for Deno, Node.js and Bun: every scheme the stack
 * speaks, `coap://` (UDP, `node:dgram`), `coap+tcp://` and `coaps+tcp://`
 * (`node:net`, `node:tls`) besides `coap+ws://` and `coaps+ws://`, with no
 * set-up.
 *
 * @example
 * ```ts ignore
 * import { CoapContext } from "@coap/stack/context";
 *
 * const ctx = new CoapContext({ timeout: 5000 });
 * const reading = await ctx.get("coap://127.0.0.1/temperature");
 * if (reading.ok) console.log(reading.text());
 * ctx.close();
 * ```
 *
 * @module
 */

import {
  CoapContext as BrowserContext,
  type Connector,
  type ContextOptions,
} from "./context.ts";
import { connectCoapUdp } from "./udp_node.ts";
import { connectCoapTcp } from "./tcp_node.ts";

export type {
  CoapRequestInit,
  CoapResult,
  Connector,
  ContextOptions,
  ContextRequest,
  PendingRequest,
} from "./context.ts";

const UDP: Connector = (origin, options) => connectCoapUdp(origin, options);
const TCP: Connector = (origin, options) => connectCoapTcp(origin, options);

/**
 * A client for every server a program talks to, over every scheme: see
 * `context.ts`'s {@linkcode BrowserContext} for the API.
 */
export class CoapContext extends BrowserContext {
  /**
   * Creates a context; nothing is opened until a request needs it.
   *
   * @param options Client settings, the idle timeout, a default timeout,
   * a proxy, and connectors that replace the built-in ones.
   */
  constructor(options: ContextOptions = {}) {
    super({
      ...options,
      connectors: {
        "coap:": UDP,
        "coap+tcp:": TCP,
        "coaps+tcp:": TCP,
        ...options.connectors,
      },
    });
  }
}
