/**
 * {@linkcode CoapContext} for Deno, Node.js and Bun: every scheme the stack
 * speaks, `coap://` (UDP, `node:dgram`), `coap+tcp://` and `coaps+tcp://`
 * (`node:net`, `node:tls`) besides `coap+ws://` and `coaps+ws://`, with no
 * set-up; and `coaps://` (DTLS, `dtls.ts`) with the credentials of
 * `DtlsContextOptions.dtls`.
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
import { connectCoapDtls } from "./dtls_node.ts";
import type { DtlsCertificate, PskCredentials } from "./dtls.ts";

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

/** The options of this {@linkcode CoapContext}: `dtls` besides the rest. */
export interface DtlsContextOptions extends ContextOptions {
  /**
   * Credentials for `coaps://` origins (DTLS 1.2): pre-shared keys by
   * `host:port` (`"*"` for any other), and for certificates the CAs (DER),
   * raw public keys, and this client's own certificate. A `coaps://`
   * request without any of them fails with a `TypeError` saying so.
   */
  dtls?: {
    readonly psk?: Readonly<Record<string, PskCredentials>>;
    readonly cas?: readonly Uint8Array[];
    readonly trustedKeys?: readonly Uint8Array[];
    readonly certificate?: DtlsCertificate;
    readonly rawPublicKey?: boolean;
  };
}

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
  constructor(options: DtlsContextOptions = {}) {
    const dtls = options.dtls ?? {};
    const DTLS: Connector = (origin, client) => {
      const where = origin.slice("coaps://".length).toLowerCase();
      const psk = dtls.psk?.[where] ?? dtls.psk?.["*"];
      const { dtls: _, oscore: __, ...rest } = client as DtlsContextOptions;
      return connectCoapDtls(origin, {
        ...rest,
        psk,
        cas: dtls.cas,
        trustedKeys: dtls.trustedKeys,
        certificate: dtls.certificate,
        rawPublicKey: dtls.rawPublicKey,
      });
    };
    super({
      ...options,
      connectors: {
        "coap:": UDP,
        "coaps:": DTLS,
        "coap+tcp:": TCP,
        "coaps+tcp:": TCP,
        ...options.connectors,
      },
    });
  }
}
