/**
 * A CoAP forward cross-proxy (RFC 7252 §5.7, RFC 8323 §7): give
 * {@linkcode CoapProxy.prototype.resource} to a `CoapServer` as its `proxy`,
 * and requests that name a `coap://` (UDP), `coap+tcp://` (TCP) or
 * `coap+ws://` target with
 * Proxy-Uri, or Proxy-Scheme and Uri-Host, are forwarded there. A browser
 * page that can only open WebSockets reaches CoAP devices over UDP this way.
 *
 * - It forwards only to the targets it is allowed (`allow`: `host:port`
 *   for a device over UDP, `coap+tcp://host:port` for one over TCP,
 *   `coap+ws://host:port` for a WebSocket server;
 *   none by default): anything else gets 4.03 Forbidden, a scheme it does
 *   not speak 5.05 Proxying Not Supported, and a Proxy-Uri it cannot read
 *   4.00 Bad Request, each with the reason.
 * - A target it cannot reach, or that fails the exchange, is 5.02 Bad
 *   Gateway; one that does not answer within `timeout`, 5.04 Gateway
 *   Timeout.
 * - One upstream observation serves every downstream observer of the same
 *   resource (RFC 7641 §5): a new observer gets the latest notification at
 *   once, and the upstream observation ends when the last observer leaves.
 * - Block-wise responses are reassembled upstream (up to the upstream
 *   client's `maxBodySize`) and sent on block-wise as the downstream client
 *   needs; what is held of them at once, across every upstream, is bounded
 *   (`maxReassemblyBytes`, 5.03 past it).
 * - Everything is bounded: upstream connections (`maxUpstreams`), requests
 *   waiting on one upstream (`maxPendingPerUpstream`), and upstream
 *   observations (`maxUpstreamObservations`), each a 5.03 past it.
 *
 * @module
 */

import type { Logger, ResponderPipe } from "@coap/pipe";
import { ByteBudget, CoapClient, ReassemblyBudgetError } from "./client.ts";
import type {
  CoapRequest,
  CoapResponse,
  IncomingRequest,
  ResponseInit,
} from "./exchange.ts";
import {
  type CoapOption,
  getOption,
  hex,
  type Method,
  Option,
  uint,
} from "./message.ts";
import { CoapError, type Resource } from "./server.ts";
import { connectCoapUdp } from "./udp_node.ts";
import { connectCoapTcp } from "./tcp_node.ts";
import { connectCoapDtls } from "./dtls_node.ts";
import type { DtlsCertificate, PskCredentials } from "./dtls.ts";
import { type Clock, systemClock } from "./connection.ts";
import type { UdpOptions } from "./udp.ts";

/** Options for {@linkcode CoapProxy}. */
export interface ProxyOptions {
  /**
   * The targets requests may be forwarded to, as `host:port`
   * (`127.0.0.1:5683`, `[::1]:5683`, `device.local:5683`: a device, over
   * `coap://` only), or `scheme://host:port` (`coap+ws://127.0.0.1:8683`:
   * that scheme only). A forward proxy is an amplifier and a door into the
   * network behind it, so nothing is allowed by default, and an entry
   * meant for a UDP port never opens TCP or TLS connections to it.
   */
  allow: readonly string[];
  /**
   * How long a forwarded request may wait for its response, in
   * milliseconds (5.04 past it).
   *
   * @default {15000}
   */
  timeout?: number;
  /**
   * Upstream connections (one per target origin) kept at once.
   *
   * @default {64}
   */
  maxUpstreams?: number;
  /**
   * Forwarded requests waiting on one upstream at once.
   *
   * @default {100}
   */
  maxPendingPerUpstream?: number;
  /**
   * Upstream observations at once (each serves any number of observers).
   *
   * @default {1000}
   */
  maxUpstreamObservations?: number;
  /**
   * Bytes of block-wise responses held at once, across every upstream:
   * being reassembled, and kept for their later blocks. A transfer that
   * would go past it ends with 5.03 (and what is kept is let go, oldest
   * first), so a device that sends blocks for ever costs this at most.
   *
   * @default {16777216}
   */
  maxReassemblyBytes?: number;
  /**
   * Bytes of responses the proxy caches (RFC 7252 §5.6): a GET's 2.05 is
   * served from the cache while it is fresh (its Max-Age, 60 s when it
   * has none), and revalidated with its ETag once stale; notifications of
   * an upstream observation refresh it too. The least recently used
   * entries go first. 0 turns the cache off.
   *
   * @default {8388608} (8 MiB)
   */
  cacheBytes?: number;
  /**
   * Responses cached at once.
   *
   * @default {1024}
   */
  maxCacheEntries?: number;
  /** The timers for `timeout` and kept responses. @default {systemClock} */
  clock?: Clock;
  /** Settings for CoAP over UDP upstream. */
  udp?: UdpOptions;
  /**
   * The pre-shared keys for `coaps://` targets (DTLS 1.2,
   * `TLS_PSK_WITH_AES_128_CCM_8`), by target (`host:port`, as in
   * `allow`); `"*"` for every target without its own. A `coaps://` target
   * without credentials gets 5.02.
   */
  psk?: Readonly<Record<string, PskCredentials>>;
  /**
   * For `coaps://` targets without a pre-shared key: the CAs (DER) their
   * certificates must chain to, their raw public keys (RFC 7250), and the
   * proxy's own certificate for those that ask (`TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`).
   */
  dtls?: {
    readonly cas?: readonly Uint8Array[];
    readonly trustedKeys?: readonly Uint8Array[];
    readonly certificate?: DtlsCertificate;
    readonly rawPublicKey?: boolean;
  };
  /**
   * Where trouble is logged.
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * Makes the client for a target origin (`coap://host:port`,
   * `coap+ws://host:port`); the default speaks UDP, TCP or WebSocket, with the
   * proxy's reassembly budget (pass `budget` on as `reassemblyBudget`).
   */
  connect?: (origin: string, budget: ByteBudget) => Promise<CoapClient>;
}

/** One upstream connection. */
interface Upstream {
  client: Promise<CoapClient>;
  pending: number;
  observations: number;
}

/** One upstream observation and the downstream pipes it serves. */
interface Shared {
  pipes: Set<ResponderPipe<IncomingRequest, ResponseInit>>;
  /** The latest notification, for observers that join. */
  last: ResponseInit | undefined;
  cancel: () => void;
}

const DEFAULT_PORTS: Record<string, number> = {
  "coap:": 5683,
  "coap+ws:": 80,
  "coaps+ws:": 443,
  "coap+tcp:": 5683,
  "coaps+tcp:": 5684,
  "coaps:": 5684,
};

/** Options a response carries that the downstream server sets itself. */
const OWN_OPTIONS = new Set<number>([
  Option.OBSERVE,
  Option.CONTENT_FORMAT,
  Option.MAX_AGE,
  Option.BLOCK2,
  Option.BLOCK1,
  Option.SIZE2,
  Option.SIZE1,
]);

/**
 * Sends a request upstream; one that cannot be sent as CoAP (a path
 * segment over 255 bytes, say) is the requester's 4.00, not a 5.00.
 */
function send(client: CoapClient, request: CoapRequest) {
  try {
    return client.request(request);
  } catch (error) {
    throw new CoapError(
      "4.00",
      `Bad Request: the target cannot be asked for (${
        (error as Error)?.message
      })`,
    );
  }
}

/**
 * Options no response carries (RFC 7252 §5.10, RFC 8768, RFC 7967, RFC
 * 9175's Request-Tag), and Echo, which a device offers the proxy's own hop:
 * a device's response that has them is passed on without them.
 */
const REQUEST_ONLY = new Set<number>([
  Option.IF_MATCH,
  Option.URI_HOST,
  Option.IF_NONE_MATCH,
  Option.URI_PORT,
  Option.URI_PATH,
  Option.URI_QUERY,
  Option.HOP_LIMIT,
  Option.ACCEPT,
  Option.PROXY_URI,
  Option.PROXY_SCHEME,
  Option.ECHO,
  Option.NO_RESPONSE,
  Option.REQUEST_TAG,
]);

/**
 * A device's response as the proxy answers with it: the options the
 * downstream server sets itself and those no response carries left out,
 * and an ETag only where it is one (1 to 8 bytes, RFC 7252 §5.10.6).
 */
function toInit(response: CoapResponse): ResponseInit {
  const options: CoapOption[] = response.options.filter((option) =>
    !OWN_OPTIONS.has(option.number) && !REQUEST_ONLY.has(option.number) &&
    (option.number !== Option.ETAG ||
      (option.value.length >= 1 && option.value.length <= 8))
  );
  return {
    code: response.code,
    payload: response.payload,
    ...(response.contentFormat === undefined
      ? {}
      : { contentFormat: response.contentFormat }),
    ...(response.maxAge === undefined ? {} : { maxAge: response.maxAge }),
    ...(options.length === 0 ? {} : { options }),
  };
}

/** A cached response. */
interface Cached {
  readonly init: ResponseInit;
  /** Its Max-Age, in seconds. */
  maxAge: number;
  /** When it was stored or last made fresh, in clock milliseconds. */
  storedAt: number;
  /** What it counts against `cacheBytes`. */
  readonly bytes: number;
}

/**
 * The cache key of a GET (RFC 7252 §5.6): its target URI, its Accept, and
 * the options it is sent on with that are part of the key (not those
 * whose number says NoCacheKey, §5.4.6, nor Hop-Limit, RFC 8768 §3).
 */
function cacheKeyOf(
  uri: string,
  accept: number | undefined,
  options: readonly CoapOption[] | undefined,
): string {
  let key = `${uri}|${accept ?? ""}`;
  for (const option of options ?? []) {
    if ((option.number & 0x1e) === 0x1c || option.number === Option.HOP_LIMIT) {
      continue;
    }
    key += `;${option.number}=${hex(option.value)}`;
  }
  return key;
}

/** Milliseconds a cached response stays fresh from `now` (0 once stale). */
function freshFor(cached: Cached, now: number): number {
  return Math.max(0, cached.maxAge * 1000 - (now - cached.storedAt));
}

/**
 * A cached response as it goes out: its Max-Age what is left of its
 * freshness (RFC 7252 §5.6.1), in whole seconds.
 */
function served(cached: Cached, left: number): ResponseInit {
  return { ...cached.init, maxAge: Math.floor(left / 1000) };
}

/** A forward proxy's resource, its upstream connections and observations. */
export class CoapProxy {
  /** Allowed targets: host:port, and the schemes allowed there. */
  /** FETCH observations so far: each has a key of its own. */
  #fetches = 0;
  readonly #allow: Map<string, Set<string>>;
  readonly #timeout: number;
  readonly #maxUpstreams: number;
  readonly #maxPending: number;
  readonly #maxObservations: number;
  readonly #log: Logger;
  readonly #connect: (origin: string) => Promise<CoapClient>;
  readonly #budget: ByteBudget;
  readonly #clock: Clock;
  readonly #upstreams = new Map<string, Upstream>();
  readonly #shared = new Map<string, Shared>();
  /** Recent large GET responses, for their later blocks. */
  readonly #recent = new Map<string, { init: ResponseInit; at: number }>();
  /** Cached responses by cache key, least recently used first. */
  readonly #cache = new Map<string, Cached>();
  readonly #cacheBytes: number;
  readonly #maxCacheEntries: number;
  #cachedBytes = 0;
  readonly #counts = { hits: 0, revalidated: 0, misses: 0 };
  #closed = false;

  /**
   * Creates the proxy.
   *
   * @param options See {@linkcode ProxyOptions}; `allow` is required.
   * @throws {TypeError} If an `allow` entry is not `host:port`.
   */
  constructor(options: ProxyOptions) {
    this.#allow = new Map();
    for (const entry of options.allow ?? []) {
      const match =
        /^(?:(coap|coaps|coap\+ws|coaps\+ws|coap\+tcp|coaps\+tcp):\/\/)?(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})$/
          .exec(entry);
      if (match === null || Number(match[3]) > 65535) {
        throw new TypeError(
          `Cannot allow ${
            JSON.stringify(entry)
          }: expected HOST:PORT or SCHEME://HOST:PORT, such as 127.0.0.1:5683 or coap+ws://127.0.0.1:8683`,
        );
      }
      const where = `${match[2].toLowerCase()}:${Number(match[3])}`;
      const schemes = this.#allow.get(where) ?? new Set<string>();
      // A bare HOST:PORT is a device's: coap:// (UDP) only. WebSocket
      // targets are allowed with their scheme, so that an entry meant for
      // a UDP port never opens TCP or TLS connections to it.
      schemes.add(match[1] === undefined ? "coap:" : `${match[1]}:`);
      this.#allow.set(where, schemes);
    }
    this.#timeout = options.timeout ?? 15_000;
    this.#clock = options.clock ?? systemClock;
    this.#maxUpstreams = options.maxUpstreams ?? 64;
    this.#maxPending = options.maxPendingPerUpstream ?? 100;
    this.#maxObservations = options.maxUpstreamObservations ?? 1000;
    this.#cacheBytes = options.cacheBytes ?? 8 * 1024 * 1024;
    this.#maxCacheEntries = options.maxCacheEntries ?? 1024;
    for (
      const [name, value] of [
        ["cacheBytes", this.#cacheBytes],
        ["maxCacheEntries", this.#maxCacheEntries],
      ] as const
    ) {
      if (!Number.isInteger(value) || value < 0) {
        throw new RangeError(
          `Cannot create the proxy: ${name} must be an integer from 0, got ${value}`,
        );
      }
    }
    this.#log = options.log ?? console;
    const udp = options.udp;
    const budget = this.#budget = new ByteBudget(
      options.maxReassemblyBytes ?? 16 * 1024 * 1024,
    );
    const psk = options.psk ?? {};
    const connect = options.connect ??
      ((origin) =>
        origin.startsWith("coaps://")
          ? dtls(origin)
          : origin.startsWith("coap://")
          ? connectCoapUdp(origin, {
            log: this.#log,
            udp,
            reassemblyBudget: budget,
          })
          : /^coaps?\+tcp:/.test(origin)
          ? connectCoapTcp(origin, {
            log: this.#log,
            reassemblyBudget: budget,
          })
          : CoapClient.connect(origin, {
            log: this.#log,
            reassemblyBudget: budget,
          }));
    const dtls = (origin: string) => {
      const where = origin.slice("coaps://".length).toLowerCase();
      const credentials = psk[where] ?? psk["*"];
      const trust = options.dtls;
      if (
        credentials === undefined && trust?.cas === undefined &&
        trust?.trustedKeys === undefined
      ) {
        return Promise.reject(
          new Error(
            `no pre-shared key for ${where} (--psk-identity), and no CA or raw public key to check it with (--ca, --server-key)`,
          ),
        );
      }
      return connectCoapDtls(origin, {
        log: this.#log,
        udp,
        reassemblyBudget: budget,
        ...(credentials === undefined ? trust : { psk: credentials }),
        dtls: { handshakeTimeout: this.#timeout },
      });
    };
    this.#connect = (origin) => connect(origin, budget);
  }

  /** Upstream connections open or opening. */
  get upstreams(): number {
    return this.#upstreams.size;
  }

  /** Upstream observations, each serving one or more observers. */
  get upstreamObservations(): number {
    return this.#shared.size;
  }

  /**
   * What the cache holds and has done: entries, bytes, GETs answered from
   * it while fresh (`hits`), stale entries an upstream 2.03 made fresh
   * again (`revalidated`), and cacheable GETs that went upstream
   * (`misses`).
   */
  get cache(): {
    entries: number;
    bytes: number;
    hits: number;
    revalidated: number;
    misses: number;
  } {
    return {
      entries: this.#cache.size,
      bytes: this.#cachedBytes,
      ...this.#counts,
    };
  }

  /** Observers served through upstream observations. */
  get observers(): number {
    let count = 0;
    for (const shared of this.#shared.values()) count += shared.pipes.size;
    return count;
  }

  /** The resource to give a `CoapServer` as its `proxy`. */
  get resource(): Resource {
    const handler = (
      request: IncomingRequest,
      pipe: ResponderPipe<IncomingRequest, ResponseInit>,
      signal: AbortSignal,
    ) => this.#forward(request, pipe, signal);
    return {
      observable: true,
      GET: handler,
      POST: handler,
      PUT: handler,
      DELETE: handler,
      FETCH: handler,
    };
  }

  /** Closes every upstream connection; forwarded exchanges end with 5.02. */
  close(): void {
    this.#closed = true;
    for (const shared of [...this.#shared.values()]) shared.cancel();
    for (const upstream of this.#upstreams.values()) {
      upstream.client.then((client) => client.close(), () => {});
    }
    this.#upstreams.clear();
  }

  /** Where a request goes: its origin, and the request to send there. */
  #target(request: IncomingRequest): { origin: string; forward: CoapRequest } {
    let url: URL;
    try {
      url = new URL(request.proxyUri ?? "");
    } catch {
      throw new CoapError(
        "4.00",
        "Bad Request: Proxy-Uri is not an absolute URI",
      );
    }
    if (DEFAULT_PORTS[url.protocol] === undefined) {
      throw new CoapError(
        "5.05",
        `Proxying Not Supported: this proxy forwards to coap://, coaps://, coap+tcp:// and coap+ws:// only, not ${
          url.protocol.slice(0, 20)
        }//`,
      );
    }
    if (url.username !== "" || url.password !== "") {
      throw new CoapError(
        "4.00",
        "Bad Request: a CoAP URI has no user information (RFC 7252 §6.1)",
      );
    }
    const host = url.hostname.toLowerCase();
    let scheme = url.protocol;
    let port = url.port === "" ? DEFAULT_PORTS[scheme] : Number(url.port);
    let schemes = this.#allow.get(`${host}:${port}`);
    if (request.proxyVia === "Proxy-Scheme") {
      // aiocoap 0.4.11's client sends the scheme it reaches the proxy by
      // (coap+ws) as Proxy-Scheme, whatever the target speaks, and no
      // Uri-Port for a URI without one; so a Proxy-Scheme request goes by
      // the scheme its allow entry names, or to coap:// (the devices a
      // cross-proxy is for) for a bare HOST:PORT, on coap's port 5683 when
      // none was given.
      if (
        schemes === undefined && url.port === "" &&
        this.#allow.has(`${host}:5683`)
      ) {
        port = 5683;
        schemes = this.#allow.get(`${host}:5683`);
      }
      if (schemes !== undefined && !schemes.has(scheme)) {
        scheme = schemes.size === 1 ? [...schemes][0] : "coap:";
      }
    }
    const where = `${host}:${port}`;
    if (
      schemes === undefined || !schemes.has(scheme)
    ) {
      throw new CoapError(
        "4.03",
        `Forbidden: this proxy does not forward to ${
          schemes === undefined ? where : `${scheme}//${where}`
        } (it forwards only to the targets it was started with, --allow HOST:PORT)`,
      );
    }
    let query: string[];
    try {
      query = url.search.length > 1
        ? url.search.slice(1).split("&").map((item) => decodeURIComponent(item))
        : [];
    } catch {
      throw new CoapError(
        "4.00",
        "Bad Request: Proxy-Uri has a malformed percent-encoding in its query",
      );
    }
    // RFC 8768: a request that has passed as many proxies as it may goes
    // no further; one without Hop-Limit starts at 16.
    const hopLimit = request.hopLimit ?? 17;
    if (hopLimit === 0) {
      throw new CoapError("4.00", "Bad Request: Hop-Limit 0");
    }
    if (hopLimit === 1) {
      throw new CoapError(
        "5.08",
        `Hop Limit Reached: not forwarded to ${scheme}//${where}`,
      );
    }
    const options: CoapOption[] = (request.forwardOptions ?? []).filter((o) =>
      // A GET's ETags are the proxy's to validate with (the cache).
      request.method !== "GET" || o.number !== Option.ETAG
    );
    options.push({ number: Option.HOP_LIMIT, value: uint(hopLimit - 1) });
    return {
      origin: `${scheme}//${url.hostname}:${port}`,
      forward: {
        options,
        method: request.method as Method,
        path: url.pathname || "/",
        query,
        payload: request.payload,
        ...(request.contentFormat === undefined
          ? {}
          : { contentFormat: request.contentFormat }),
        ...(request.accept === undefined ? {} : { accept: request.accept }),
      },
    };
  }

  #upstream(origin: string): Upstream {
    let upstream = this.#upstreams.get(origin);
    if (upstream !== undefined) return upstream;
    if (this.#upstreams.size >= this.#maxUpstreams) {
      // Let go of one that nothing uses, oldest first.
      for (const [key, idle] of this.#upstreams) {
        if (idle.pending === 0 && idle.observations === 0) {
          this.#upstreams.delete(key);
          idle.client.then((client) => client.close(), () => {});
          break;
        }
      }
      if (this.#upstreams.size >= this.#maxUpstreams) {
        throw new CoapError(
          "5.03",
          `Service Unavailable: this proxy has ${this.#maxUpstreams} upstream connections in use (maxUpstreams)`,
        );
      }
    }
    const client = this.#connect(origin);
    const created: Upstream = { client, pending: 0, observations: 0 };
    this.#upstreams.set(origin, created);
    upstream = created;
    client.then(
      (connected) =>
        connected.closed.then(() => {
          if (this.#upstreams.get(origin) === created) {
            this.#upstreams.delete(origin);
          }
        }),
      () => {
        if (this.#upstreams.get(origin) === created) {
          this.#upstreams.delete(origin);
        }
      },
    );
    return upstream;
  }

  async #client(origin: string, upstream: Upstream): Promise<CoapClient> {
    try {
      return await upstream.client;
    } catch (error) {
      throw new CoapError(
        "5.02",
        `Bad Gateway: cannot reach ${origin} (${(error as Error)?.message})`,
      );
    }
  }

  async #forward(
    request: IncomingRequest,
    pipe: ResponderPipe<IncomingRequest, ResponseInit>,
    signal: AbortSignal,
  ): Promise<ResponseInit | void> {
    if (this.#closed) {
      throw new CoapError("5.03", "Service Unavailable: the proxy is closing");
    }
    const { origin, forward } = this.#target(request);
    if (request.method === "GET" && request.observe === 0) {
      return await this.#observe(request, origin, forward, pipe);
    }
    if (request.method === "FETCH" && request.observe === 0) {
      // A FETCH observation (an OSCORE one: its body is ciphertext only
      // the device can read) is its requester's own, shared with nobody.
      return await this.#observe(
        request,
        origin,
        forward,
        pipe,
        `FETCH ${++this.#fetches}`,
      );
    }
    if (request.method === "GET" && request.observe === 1) {
      // A deregistration (RFC 7641 §3.6) is answered with the current
      // state; where an upstream observation has it, the device is not
      // asked again.
      const shared = this.#shared.get(
        `${request.proxyUri}|${request.accept ?? ""}`,
      );
      if (shared?.last !== undefined) return shared.last;
    }
    const upstream = this.#upstream(origin);
    if (upstream.pending >= this.#maxPending) {
      throw new CoapError(
        "5.03",
        `Service Unavailable: ${this.#maxPending} requests are waiting on ${origin} (maxPendingPerUpstream)`,
      );
    }
    // The later blocks of a response that goes on block-wise come from the
    // representation fetched for its first block, not from a fetch each.
    const key = `${request.method} ${request.proxyUri}|${request.accept ?? ""}`;
    const later = request.method === "GET" && (request.block2?.num ?? 0) > 0;
    // Kept responses go after 30 s, and their bytes with them.
    for (const [old, { at }] of this.#recent) {
      if (this.#clock.now() - at < 30_000) break;
      this.#forget(old);
    }
    const kept = this.#recent.get(key);
    if (later && kept !== undefined) return kept.init;
    const cacheKey = request.method === "GET" && this.#cacheBytes > 0
      ? cacheKeyOf(request.proxyUri!, request.accept, forward.options)
      : undefined;
    const cached = cacheKey === undefined
      ? undefined
      : this.#cache.get(cacheKey);
    if (cached !== undefined) {
      const left = freshFor(cached, this.#clock.now());
      if (left > 0) {
        this.#counts.hits++;
        // Most recently used last.
        this.#cache.delete(cacheKey!);
        this.#cache.set(cacheKey!, cached);
        return served(cached, left);
      }
    }
    const etag = cached === undefined
      ? undefined
      : getOption({ options: cached.init.options ?? [] }, Option.ETAG);
    upstream.pending++;
    try {
      const client = await this.#client(origin, upstream);
      const init = await this.#once(
        client,
        origin,
        etag === undefined ? forward : {
          ...forward,
          options: [...(forward.options ?? []), {
            number: Option.ETAG,
            value: etag,
          }],
        },
        signal,
      );
      if (cacheKey !== undefined) {
        if (init.code === "2.03" && cached !== undefined) {
          // Still valid: the cached body, fresh again for the new Max-Age.
          this.#counts.revalidated++;
          cached.storedAt = this.#clock.now();
          cached.maxAge = init.maxAge ?? 60;
          this.#cache.delete(cacheKey);
          this.#cache.set(cacheKey, cached);
          const fresh = served(cached, cached.maxAge * 1000);
          this.#keep(key, fresh);
          return fresh;
        }
        this.#counts.misses++;
        this.#store(cacheKey, init);
      } else if (request.method !== "GET") {
        // RFC 7252 §5.9: what changes the target makes its cached
        // representations stale.
        this.#invalidate(request.proxyUri!);
      }
      if (request.method === "GET") this.#keep(key, init);
      return init;
    } finally {
      upstream.pending--;
    }
  }

  /** Caches a GET's 2.05 (or lets go of what was cached for it). */
  #store(key: string, init: ResponseInit): void {
    this.#uncache(key);
    if (init.code !== undefined && init.code !== "2.05") return;
    const maxAge = init.maxAge ?? 60;
    const hasTag = init.options?.some((o) => o.number === Option.ETAG);
    if (maxAge === 0 && !hasTag) return;
    const bytes = (init.payload?.length ?? 0) + key.length + 64;
    if (bytes > this.#cacheBytes) return;
    while (
      this.#cache.size > 0 && (
        this.#cache.size >= this.#maxCacheEntries ||
        this.#cachedBytes + bytes > this.#cacheBytes
      )
    ) {
      this.#uncache(this.#cache.keys().next().value!);
    }
    if (this.#maxCacheEntries === 0) return;
    this.#cache.set(key, {
      init,
      maxAge,
      storedAt: this.#clock.now(),
      bytes,
    });
    this.#cachedBytes += bytes;
  }

  #uncache(key: string): void {
    const cached = this.#cache.get(key);
    if (cached === undefined) return;
    this.#cache.delete(key);
    this.#cachedBytes -= cached.bytes;
  }

  /** Lets go of every cached response of `uri`, whatever its Accept. */
  #invalidate(uri: string): void {
    const prefix = `${uri}|`;
    for (const key of [...this.#cache.keys()]) {
      if (key.startsWith(prefix)) this.#uncache(key);
    }
  }

  /**
   * Keeps a GET's response for its later blocks: at most 64 at once, the
   * oldest let go first, and only those larger than one block.
   */
  #keep(key: string, init: ResponseInit): void {
    this.#forget(key);
    const size = init.payload?.length ?? 0;
    if (size <= 1024) return;
    // What is kept counts against the reassembly budget: the oldest goes
    // first to make room, and 64 at most are kept.
    while (this.#recent.size >= 64) {
      this.#forget(this.#recent.keys().next().value!);
    }
    while (!this.#budget.take(size)) {
      if (this.#recent.size === 0) return;
      this.#forget(this.#recent.keys().next().value!);
    }
    this.#recent.set(key, { init, at: this.#clock.now() });
  }

  /** Lets a kept response go, and its bytes. */
  #forget(key: string): void {
    const kept = this.#recent.get(key);
    if (kept === undefined) return;
    this.#recent.delete(key);
    this.#budget.give(kept.init.payload?.length ?? 0);
  }

  /** The diagnostic of a transfer refused for the reassembly budget. */
  #overBudget(): string {
    return `Service Unavailable: ${this.#budget.held} bytes of block-wise responses are held already, the proxy's limit (maxReassemblyBytes ${this.#budget.max})`;
  }

  /** Bytes of block-wise responses held now: being reassembled, or kept. */
  get reassemblyBytes(): number {
    return this.#budget.held;
  }

  /** One request and its response, within the timeout. */
  async #once(
    client: CoapClient,
    origin: string,
    forward: CoapRequest,
    signal: AbortSignal,
  ): Promise<ResponseInit> {
    const exchange = send(client, forward)[Symbol.asyncIterator]();
    let timer: unknown;
    let left: (() => void) | undefined;
    try {
      const first = await Promise.race([
        exchange.next(),
        new Promise<"timeout">((resolve) => {
          timer = this.#clock.setTimeout(
            () => resolve("timeout"),
            this.#timeout,
          );
        }),
        // The requester left: the upstream exchange is let go at once, and
        // its place among the upstream's pending requests with it.
        new Promise<"left">((resolve) => {
          left = () => resolve("left");
          signal.addEventListener("abort", left, { once: true });
        }),
      ]);
      if (first === "left") {
        throw new CoapError("5.03", "Service Unavailable: the requester left");
      }
      if (first === "timeout") {
        throw new CoapError(
          "5.04",
          `Gateway Timeout: no response from ${origin} within ${this.#timeout} ms`,
        );
      }
      if (first.done) {
        throw new CoapError(
          "5.02",
          `Bad Gateway: ${origin} ended the exchange without a response`,
        );
      }
      const event = first.value;
      if (
        event.kind === "exception" &&
        event.exception instanceof ReassemblyBudgetError
      ) {
        throw new CoapError("5.03", this.#overBudget());
      }
      if (event.kind !== "response") {
        throw new CoapError(
          "5.02",
          `Bad Gateway: ${origin}: ${
            (event.kind === "exception"
              ? (event.exception as Error)?.message
              : "no response") ?? "the exchange failed"
          }`,
        );
      }
      return toInit(event.message);
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
      if (left !== undefined) signal.removeEventListener("abort", left);
      // Interest ends here: a late response is not waited for.
      exchange.return?.();
    }
  }

  /** An observation, shared with every observer of the same target. */
  async #observe(
    request: IncomingRequest,
    origin: string,
    forward: CoapRequest,
    pipe: ResponderPipe<IncomingRequest, ResponseInit>,
    own?: string,
  ): Promise<void> {
    const key = own ?? `${request.proxyUri}|${request.accept ?? ""}`;
    let shared = this.#shared.get(key);
    if (shared === undefined) {
      if (this.#shared.size >= this.#maxObservations) {
        throw new CoapError(
          "5.03",
          `Service Unavailable: this proxy has ${this.#maxObservations} upstream observations (maxUpstreamObservations)`,
        );
      }
      const upstream = this.#upstream(origin);
      const client = await this.#client(origin, upstream);
      if (pipe.ended) return;
      shared = this.#shared.get(key);
      if (shared === undefined) {
        shared = this.#start(key, client, origin, forward, upstream);
      }
    }
    const joined = shared;
    joined.pipes.add(pipe);
    if (joined.last !== undefined) pipe.addResponse(joined.last);
    if (pipe.ended) {
      this.#leave(key, joined, pipe);
      return;
    }
    await new Promise<void>((resolve) =>
      pipe.onInterestEnd(() => {
        this.#leave(key, joined, pipe);
        resolve();
      })
    );
  }

  #leave(
    key: string,
    shared: Shared,
    pipe: ResponderPipe<IncomingRequest, ResponseInit>,
  ): void {
    shared.pipes.delete(pipe);
    if (shared.pipes.size === 0 && this.#shared.get(key) === shared) {
      // Ended in a later task, not at once: observers that leave together
      // send their deregistrations together (RFC 7641 §3.6), and each is
      // answered from the latest notification while the observation
      // stands; one who comes back meanwhile keeps it.
      this.#clock.setTimeout(() => {
        if (shared.pipes.size === 0) shared.cancel();
      }, 0);
    }
  }

  #start(
    key: string,
    client: CoapClient,
    origin: string,
    forward: CoapRequest,
    upstream: Upstream,
  ): Shared {
    // A GET observation's notifications are the resource's state, for
    // the cache; a FETCH's are its own.
    const cacheKey = forward.method !== "GET" ? undefined : cacheKeyOf(
      key.slice(0, key.lastIndexOf("|")),
      forward.accept,
      forward.options,
    );
    const exchange = send(client, { ...forward, observe: true })[
      Symbol.asyncIterator
    ]();
    let ended = false;
    const shared: Shared = {
      pipes: new Set(),
      last: undefined,
      cancel: () => {
        if (ended) return;
        ended = true;
        if (this.#shared.get(key) === shared) this.#shared.delete(key);
        upstream.observations--;
        // Ends interest upstream: the client deregisters (RFC 7641 §3.6).
        exchange.return?.();
        for (const pipe of [...shared.pipes]) {
          pipe.addResponse(
            { code: "5.02", payload: "Bad Gateway: the proxy closed" },
            true,
          );
        }
      },
    };
    this.#shared.set(key, shared);
    upstream.observations++;
    const finish = (init: ResponseInit) => {
      if (ended) return;
      ended = true;
      if (this.#shared.get(key) === shared) this.#shared.delete(key);
      upstream.observations--;
      for (const pipe of [...shared.pipes]) pipe.addResponse(init, true);
    };
    const timer = this.#clock.setTimeout(() => {
      if (shared.last === undefined) {
        finish({
          code: "5.04",
          payload:
            `Gateway Timeout: no response from ${origin} within ${this.#timeout} ms`,
        });
        exchange.return?.();
      }
    }, this.#timeout);
    (async () => {
      try {
        for (;;) {
          const next = await exchange.next();
          if (ended) return;
          if (next.done) {
            finish({
              code: "5.02",
              payload: `Bad Gateway: ${origin} ended the observation`,
            });
            return;
          }
          const event = next.value;
          if (
            event.kind === "exception" &&
            event.exception instanceof ReassemblyBudgetError
          ) {
            finish({ code: "5.03", payload: this.#overBudget() });
            return;
          }
          if (event.kind !== "response") {
            finish({
              code: "5.02",
              payload: `Bad Gateway: ${origin}: ${
                event.kind === "exception"
                  ? (event.exception as Error)?.message
                  : "the observation ended"
              }`,
            });
            return;
          }
          this.#clock.clearTimeout(timer);
          const init = toInit(event.message);
          if (
            event.message.observe === undefined || !init.code?.startsWith("2.")
          ) {
            // Not (or no longer) observable: the final response.
            finish(init);
            return;
          }
          shared.last = init;
          if (
            cacheKey !== undefined && this.#cacheBytes > 0 &&
            init.code === "2.05"
          ) {
            // The latest notification is the resource's current state:
            // GETs of it are answered from the cache while it is fresh.
            this.#store(cacheKey, init);
          }
          for (const pipe of [...shared.pipes]) pipe.addResponse(init);
        }
      } catch (error) {
        finish({
          code: "5.02",
          payload: `Bad Gateway: ${origin}: ${(error as Error)?.message}`,
        });
      } finally {
        this.#clock.clearTimeout(timer);
      }
    })();
    return shared;
  }
}
