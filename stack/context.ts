// This module is browser compatible.

/**
 * One object for every CoAP server a program talks to, as aiocoap's
 * `Context` is: {@linkcode CoapContext} takes absolute URIs, opens one
 * connection per origin (scheme, host and port) when first needed, shares
 * it among requests, and closes it once idle. `await ctx.get(uri)` is a
 * request and its response; `ctx.observe(uri)` an async iterable of
 * notifications; `ctx.request(init)` gives `.response` and `.observation`
 * as aiocoap's `Context.request()` does.
 *
 * This entry point speaks the schemes every platform has: `coap+ws://` and
 * `coaps+ws://`, and, through a forward proxy (`proxy`), any other. In
 * Deno, Node.js and Bun, `@coap/stack/context` adds `coap://` (UDP),
 * `coap+tcp://` and `coaps+tcp://`.
 *
 * @module
 */

import type { Logger } from "@coap/pipe";
import { type ClientOptions, CoapClient } from "./client.ts";
import {
  type CoapRequest,
  type CoapResponse,
  requestMessage,
} from "./exchange.ts";
import type { CoapOption, Method } from "./message.ts";
import type { SecurityContext } from "./oscore.ts";

/** A response, and whether it is a success. */
export interface CoapResult extends CoapResponse {
  /** Whether the code is a success (2.xx); 4.xx and 5.xx are results too. */
  readonly ok: boolean;
  /** The payload as UTF-8 text. */
  text(): string;
}

/**
 * Makes the client for one origin (`coap://host:port`, `coap+ws://…`): what
 * a scheme needs that this entry point may not have.
 */
export type Connector = (
  origin: string,
  options: ClientOptions,
) => Promise<CoapClient>;

/** Options for {@linkcode CoapContext}. */
export interface ContextOptions extends Omit<ClientOptions, "oscore"> {
  /**
   * OSCORE security contexts (RFC 8613) by origin (`coap://host:port`,
   * the port always written): every request to that origin is protected
   * with its context, end to end, whether it goes directly or through
   * `proxy`.
   */
  oscore?: Readonly<Record<string, SecurityContext>>;
  /**
   * How long an origin's connection stays open with no request on it, in
   * milliseconds. {@linkcode CoapContext.prototype.close} closes every
   * one at once; until then, or until they idle out, open connections keep
   * a program running.
   *
   * @default {5000}
   */
  idleTimeout?: number;
  /**
   * Milliseconds every request waits for its response (an observation, for
   * its first notification) unless it says otherwise; `undefined` waits as
   * long as the transport does.
   */
  timeout?: number;
  /**
   * A forward proxy (`coap+ws://host:port`, such as `coap:proxy`) that
   * requests for schemes this context cannot speak itself go through, with
   * Proxy-Uri: how a browser reaches `coap://` devices.
   */
  proxy?: string;
  /** Connectors by scheme (`"coap:"`), beside or instead of the built-in. */
  connectors?: Readonly<Record<string, Connector>>;
}

/** Options of one request. */
export interface CoapRequestInit {
  /** Ends the request early; its reason is the rejection (or exception). */
  signal?: AbortSignal;
  /** Milliseconds to wait for the response (the context's by default). */
  timeout?: number;
  /** The payload's content format. */
  contentFormat?: number;
  /** The content format wanted. */
  accept?: number;
  /** Further options (If-Match, ETag, No-Response …). */
  options?: readonly CoapOption[];
  /** For an observation: notifications kept for a slow consumer. */
  maxBuffered?: number;
}

/** A request for {@linkcode CoapContext.prototype.request}. */
export interface ContextRequest extends CoapRequestInit {
  /** The method; GET when left out. */
  method?: Method;
  /** The absolute URI: `coap://device/temp`, `coap+ws://host:8683/`. */
  uri: string;
  /** The payload. */
  payload?: Uint8Array | string;
  /** Whether to observe (RFC 7641). */
  observe?: boolean;
}

/** What {@linkcode CoapContext.prototype.request} returns. */
export interface PendingRequest {
  /** The (first) response. Rejects on a transport failure or timeout. */
  readonly response: Promise<CoapResult>;
  /**
   * For an observation: the notifications after the first response, until
   * the loop is left (which deregisters), the signal aborts, or the server
   * ends it. An observation whose notifications are never read stays
   * registered (holding the latest) until one of those, or `close()`.
   */
  readonly observation: AsyncIterable<CoapResult>;
}

interface Pooled {
  readonly client: Promise<CoapClient>;
  users: number;
  timer: ReturnType<typeof setTimeout> | undefined;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = {
  "coap:": 5683,
  "coaps:": 5684,
  "coap+tcp:": 5683,
  "coaps+tcp:": 5684,
  "coap+ws:": 80,
  "coaps+ws:": 443,
};

const WEBSOCKET: Connector = (origin, options) =>
  CoapClient.connect(origin, options);

/**
 * A client for every server a program talks to.
 *
 * @example A GET, and an observation left after three notifications
 * ```ts ignore
 * import { CoapContext } from "@coap/stack/context";
 *
 * const ctx = new CoapContext();
 * const response = await ctx.get("coap://127.0.0.1/time", { timeout: 5000 });
 * console.log(response.code, response.text());
 * let seen = 0;
 * for await (const notification of ctx.observe("coap+ws://127.0.0.1:8683/counter")) {
 *   console.log(notification.text());
 *   if (++seen === 3) break; // deregisters
 * }
 * ctx.close();
 * ```
 */
export class CoapContext {
  readonly #options: ContextOptions;
  readonly #connectors: Map<string, Connector>;
  readonly #pool = new Map<string, Pooled>();
  readonly #idleTimeout: number;
  #closed = false;

  /**
   * Creates a context; nothing is opened until a request needs it.
   *
   * @param options Client settings, the idle timeout, a default timeout,
   * a proxy, and connectors for more schemes.
   * @throws {RangeError} If `idleTimeout` or `timeout` is not a positive
   * number.
   */
  constructor(options: ContextOptions = {}) {
    this.#options = options;
    this.#idleTimeout = options.idleTimeout ?? 5_000;
    for (
      const [name, value] of [
        ["idleTimeout", this.#idleTimeout],
        ["timeout", options.timeout],
      ] as const
    ) {
      if (value !== undefined && !(typeof value === "number" && value > 0)) {
        throw new RangeError(
          `Cannot create a CoapContext: ${name} must be a positive number of milliseconds, got ${
            String(value)
          }`,
        );
      }
    }
    this.#connectors = new Map<string, Connector>([
      ["coap+ws:", WEBSOCKET],
      ["coaps+ws:", WEBSOCKET],
      ...Object.entries(options.connectors ?? {}),
    ]);
  }

  /** Origins with a connection open or opening. */
  get connections(): number {
    return this.#pool.size;
  }

  /**
   * Sends a request. `response` resolves with the first response (an
   * error code is a response: see `ok`); for an observation,
   * `observation` yields the notifications after it.
   *
   * @param init The request: method, absolute URI, payload, options.
   * @returns The response, and the observation.
   * @throws {TypeError} If the URI is not absolute, its scheme is one this
   * context cannot speak (saying what would), or a field is not of its
   * documented form.
   * @throws {RangeError} If a content format or accept is out of range.
   */
  request(init: ContextRequest): PendingRequest {
    // Checked at the call: a bad URI throws here, not in the promise.
    const events = this.#events(this.#target(init), init);
    const response = events.next().then(async (first) => {
      if (first.done) throw new Error("The request ended without a response");
      // A one-shot request is done: its connection may idle.
      if (init.observe !== true) await events.return(undefined);
      return first.value;
    });
    // A response nobody awaits must not reject unhandled.
    response.catch(() => {});
    return {
      response,
      observation: {
        [Symbol.asyncIterator]: () => {
          let started = false;
          return {
            next: async () => {
              if (!started) {
                started = true;
                await response;
              }
              return events.next();
            },
            return: async () => {
              await events.return(undefined);
              return { done: true, value: undefined };
            },
          };
        },
      },
    };
  }

  /**
   * GET: the response, whatever its code.
   *
   * @param uri The absolute URI.
   * @param init Signal, timeout, Accept, options.
   * @returns The response.
   */
  get(uri: string, init: CoapRequestInit = {}): Promise<CoapResult> {
    return this.request({ ...init, method: "GET", uri }).response;
  }

  /**
   * POST a payload.
   *
   * @param uri The absolute URI.
   * @param payload The body (sent block-wise where it is large).
   * @param init Signal, timeout, Content-Format, options.
   * @returns The response.
   */
  post(
    uri: string,
    payload?: Uint8Array | string,
    init: CoapRequestInit = {},
  ): Promise<CoapResult> {
    return this.request({ ...init, method: "POST", uri, payload }).response;
  }

  /**
   * PUT a payload.
   *
   * @param uri The absolute URI.
   * @param payload The body (sent block-wise where it is large).
   * @param init Signal, timeout, Content-Format, options.
   * @returns The response.
   */
  put(
    uri: string,
    payload?: Uint8Array | string,
    init: CoapRequestInit = {},
  ): Promise<CoapResult> {
    return this.request({ ...init, method: "PUT", uri, payload }).response;
  }

  /**
   * DELETE.
   *
   * @param uri The absolute URI.
   * @param init Signal, timeout, options.
   * @returns The response.
   */
  delete(uri: string, init: CoapRequestInit = {}): Promise<CoapResult> {
    return this.request({ ...init, method: "DELETE", uri }).response;
  }

  /**
   * Observes a resource (RFC 7641): every notification, the first
   * included, until the loop is left (which deregisters), the signal
   * aborts, or the server ends the observation (with a final response,
   * yielded too). A transport failure or timeout is thrown.
   *
   * @param uri The absolute URI.
   * @param init Signal, timeout (for the first notification), Accept.
   * @returns The notifications.
   * @throws {TypeError} If the URI is not absolute, or its scheme is one
   * this context cannot speak.
   */
  observe(uri: string, init: CoapRequestInit = {}): AsyncIterable<CoapResult> {
    const request: ContextRequest = {
      ...init,
      method: "GET",
      uri,
      observe: true,
    };
    const target = this.#target(request);
    return {
      [Symbol.asyncIterator]: () => this.#events(target, request),
    };
  }

  /** Closes every connection; requests still open end with an exception. */
  close(): void {
    this.#closed = true;
    for (const pooled of this.#pool.values()) {
      clearTimeout(pooled.timer);
      pooled.client.then((client) => client.close(), () => {});
    }
    this.#pool.clear();
  }

  /** The responses of a request, as an async generator (left: cancelled). */
  async *#events(
    target: Target,
    init: ContextRequest,
  ): AsyncGenerator<CoapResult> {
    const { origin, request, direct, security } = target;
    const pooled = this.#use(origin, direct);
    try {
      const client = await pooled.client;
      const timeout = init.timeout ?? this.#options.timeout;
      const pipe = client.request(request, {
        ...(init.signal === undefined ? {} : { signal: init.signal }),
        ...(timeout === undefined ? {} : { timeout }),
        ...(init.maxBuffered === undefined
          ? {}
          : { maxBuffered: init.maxBuffered }),
        ...(security === undefined ? {} : { oscore: security }),
      });
      for await (const event of pipe) {
        if (event.kind === "exception") throw event.exception;
        if (event.kind !== "response") return;
        yield result(event.message);
      }
    } finally {
      this.#release(origin, pooled);
    }
  }

  /** Where a request goes, and the request to send there. */
  #target(init: ContextRequest): Target {
    if (this.#closed) {
      throw new TypeError("Cannot make a request: the CoapContext is closed");
    }
    let url: URL;
    try {
      url = new URL(init.uri);
    } catch {
      throw new TypeError(
        `Cannot request ${
          JSON.stringify(init.uri)
        }: not an absolute URI (coap://host/path, coap+ws://host:port/path …)`,
      );
    }
    const scheme = url.protocol;
    const port = DEFAULT_PORTS[scheme];
    if (port === undefined || url.hostname === "") {
      throw new TypeError(
        `Cannot request ${
          JSON.stringify(init.uri)
        }: a CoAP URI has a host, and a scheme of ${
          Object.keys(DEFAULT_PORTS).map((s) => `${s}//`).join(", ")
        }`,
      );
    }
    const fields = {
      method: init.method ?? "GET",
      ...(init.payload === undefined ? {} : { payload: init.payload }),
      ...(init.contentFormat === undefined
        ? {}
        : { contentFormat: init.contentFormat }),
      ...(init.accept === undefined ? {} : { accept: init.accept }),
      ...(init.observe === undefined ? {} : { observe: init.observe }),
      ...(init.options === undefined ? {} : { options: init.options }),
    };
    const host = url.hostname.includes(":") && !url.hostname.startsWith("[")
      ? `[${url.hostname}]`
      : url.hostname;
    // The origin the request is for, whichever way it goes.
    const origin = `${scheme}//${host}:${url.port === "" ? port : url.port}`;
    const security = this.#options.oscore?.[origin];
    const connector = this.#connectors.get(scheme);
    if (connector === undefined) {
      const proxy = this.#options.proxy;
      if (proxy === undefined) {
        throw new TypeError(
          `Cannot request ${JSON.stringify(init.uri)}: ${
            scheme === "coap:" || scheme.endsWith("+tcp:")
              ? `${scheme}// needs ${
                scheme === "coap:" ? "UDP" : "TCP"
              } sockets, which a browser does not have: in Deno, Node.js and Bun use CoapContext from @coap/stack/context; in a browser, give the context a proxy (coap+ws://…, as coap:proxy serves)`
              : `this context has no connector for ${scheme}//`
          }`,
        );
      }
      // Through the proxy: the whole URI as Proxy-Uri.
      const through = new URL(proxy);
      const request = { ...fields, path: "/", proxyUri: init.uri };
      requestMessage(request, NO_TOKEN);
      return {
        origin: `${through.protocol}//${through.host}`,
        request,
        direct: this.#connectors.get(through.protocol) ?? WEBSOCKET,
        security,
      };
    }
    const request: CoapRequest = {
      ...fields,
      path: url.pathname || "/",
      query: url.search.length > 1
        ? url.search.slice(1).split("&").map((item) => decodeURIComponent(item))
        : [],
    };
    // Every field checked now, at the call (the client checks again).
    requestMessage(request, NO_TOKEN);
    return { origin, request, direct: connector, security };
  }

  /** The pooled client of an origin, counted as in use. */
  #use(origin: string, connector: Connector): Pooled {
    let pooled = this.#pool.get(origin);
    if (pooled === undefined) {
      // The contexts go with each request, by its origin: not to the client.
      const { oscore: _, ...options } = this.#options;
      const client = connector(origin, {
        ...options,
        log: options.log ?? QUIET,
      });
      const made: Pooled = { client, users: 0, timer: undefined };
      pooled = made;
      this.#pool.set(origin, made);
      const forget = () => {
        if (this.#pool.get(origin) === made) {
          clearTimeout(made.timer);
          this.#pool.delete(origin);
        }
      };
      client.then((connected) => connected.closed.then(forget), forget);
    }
    clearTimeout(pooled.timer);
    pooled.timer = undefined;
    pooled.users++;
    return pooled;
  }

  /** One request less on an origin: idle, its connection closes later. */
  #release(origin: string, pooled: Pooled): void {
    pooled.users--;
    if (pooled.users > 0 || this.#pool.get(origin) !== pooled) return;
    pooled.timer = setTimeout(() => {
      if (pooled.users > 0 || this.#pool.get(origin) !== pooled) return;
      this.#pool.delete(origin);
      pooled.client.then((client) => client.close(), () => {});
    }, this.#idleTimeout);
  }
}

/** Where a request goes, the request, and its OSCORE context. */
interface Target {
  readonly origin: string;
  readonly request: CoapRequest;
  readonly direct: Connector;
  readonly security: SecurityContext | undefined;
}

const NO_TOKEN = new Uint8Array(0);
const QUIET: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const DECODER = new TextDecoder();

function result(response: CoapResponse): CoapResult {
  return {
    ...response,
    ok: response.code.startsWith("2."),
    text: () => DECODER.decode(response.payload),
  };
}
