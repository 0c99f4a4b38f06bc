// This module is browser compatible.

/**
 * A CoAP-over-WebSocket server on the pipes, built the way aiocoap's server
 * is: each request is a {@linkcode Pipe} whose requester is the connection
 * (it sends what the pipe carries) and whose responder is the resource,
 * run under {@linkcode runDrivingPipe}. A resource's thrown error with
 * `toMessage()` becomes its 4.xx/5.xx response, any other error a 5.00
 * ({@linkcode renderException}: what `errorToMessage()` does, without a
 * second pipe); an observation sends notifications until the client
 * deregisters or goes away, and then the driver's signal aborts.
 *
 * @module
 */

import {
  type ErrorToMessageOptions,
  type Logger,
  Pipe,
  type PipeEvent,
  renderException,
  type ResponderPipe,
  runDrivingPipe,
} from "@coap/pipe";
import { blockKey, type UploadBudget, Uploads } from "./blockwise.ts";
import { equalBytes } from "./bytes.ts";
import {
  decodeOscoreOption,
  OSCORE_OPTION,
  OSCORE_OVERHEAD,
  OscoreContexts,
  OscoreError,
  type OscoreOptionValue,
  type RequestBinding,
  type SecurityContext,
} from "./oscore.ts";
import {
  type Clock,
  type CoapConnection,
  type ConnectionOptions,
  DEFAULT_MAX_MESSAGE_SIZE,
  systemClock,
} from "./connection.ts";
import {
  Flow,
  type FlowLimits,
  type FlowLink,
  type Outgoing,
  type ResolvedLimits,
  resolveLimits,
} from "./flow.ts";
import {
  forObservation,
  type IncomingRequest,
  isProxyRequest,
  readRequest,
  RequestError,
  type ResponseInit,
  responseMessage,
  withoutObserve,
  withPayload,
} from "./exchange.ts";
import {
  type CoapMessage,
  type CoapOption,
  Code,
  decodeBlock,
  encodeBlock,
  getOption,
  Option,
  type OutgoingMessage,
  readUint,
  tokenKey,
  uint,
  utf8,
} from "./message.ts";
import { attachWebSocket, type WebSocketLike } from "./websocket.ts";

/**
 * Answers one method of a resource. Return the response, or add responses
 * to `pipe` yourself (an observation adds one per notification until
 * `signal` aborts). Throw a value with `toMessage()` (such as
 * {@linkcode CoapError}) for an error response; anything else thrown
 * becomes a 5.00.
 *
 * A handler that declares fewer than three parameters (`() => ({ payload
 * })`, `(request) => …`) is called with two, and no `AbortSignal` is made
 * for its request: it could not read one, and making one costs more than
 * the rest of a one-shot request's pipe work in Node.js.
 */
export type Handler = (
  request: IncomingRequest,
  pipe: ResponderPipe<IncomingRequest, ResponseInit>,
  signal: AbortSignal,
) => ResponseInit | void | Promise<ResponseInit | void>;

/** A resource: a handler per method, and what discovery says of it. */
export interface Resource {
  /** Answers GET (and observations, when `observable`). */
  GET?: Handler;
  /** Answers POST. */
  POST?: Handler;
  /** Answers PUT. */
  PUT?: Handler;
  /** Answers DELETE. */
  DELETE?: Handler;
  /**
   * Answers FETCH (RFC 8132): a GET with a body, observable as a GET is
   * (how a forward proxy passes on an OSCORE observation).
   */
  FETCH?: Handler;
  /**
   * Whether GET with Observe 0 starts an observation. With `true`, the GET
   * handler serves each observation as a task of its own, adding a response
   * per notification until its signal aborts. With an
   * {@linkcode Observers}, the server keeps the observations and the GET
   * handler only renders the current state: once when an observation
   * starts, and again for each observation whenever
   * {@linkcode Observers.prototype.updated} is called.
   */
  observable?: boolean | Observers;
  /** Link attributes for `/.well-known/core` (RFC 6690): `title`, `rt`, … */
  link?: Readonly<Record<string, string | true>>;
  /**
   * The ETag of the resource's current representation (1 to 8 bytes, or
   * text of as many), or `undefined` while it has none (it does not
   * exist). With it, the server answers conditional requests for the
   * resource (RFC 7252 §5.10.8): If-Match with 4.12 Precondition Failed
   * unless it names this ETag (an empty If-Match: unless the resource
   * exists), If-None-Match with 4.12 if the resource exists; a GET that
   * names this ETag with 2.03 Valid, without running the GET handler; and
   * every 2.05 to a GET that has no ETag of its own carries this one.
   * Without it, a resource exists when it is there at all, and a 2.05
   * that carries an ETag the request names still goes as 2.03.
   */
  etag?: (request: IncomingRequest) => Uint8Array | string | undefined;
  /**
   * Whether the resource is served only under OSCORE (RFC 8613): a request
   * that is not protected gets 4.01 Unauthorized, "OSCORE required". Needs
   * the server's `oscore` contexts; `oscoreRequired` does this for every
   * resource.
   */
  oscore?: boolean;
}

/**
 * Resources by path: `"/"`, `"/counter"`, `"/other/block"`. A key ending in
 * `/*` (`"/shared/*"`) serves every path under it that no other key names;
 * its handlers read `request.segments`. Discovery lists only exact paths.
 */
export type Resources = Readonly<Record<string, Resource>>;

/** An error a handler throws to answer with a code and a diagnostic. */
export class CoapError extends RequestError {
  /**
   * Creates the error.
   *
   * @param code The response code, such as `"4.04"`.
   * @param message The diagnostic payload.
   */
  constructor(code: string, message: string) {
    super(code, message);
    this.name = "CoapError";
  }
}

/** Options for {@linkcode CoapServer}. */
export interface ServerOptions {
  /**
   * Where the server logs what resources report and what goes wrong.
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * The largest message the server accepts; larger ones get an Abort.
   *
   * @default {1152}
   */
  maxMessageSize?: number;
  /**
   * Queue bounds, concurrency and observation limits, and the slice of
   * work a connection gets before others; see {@linkcode FlowLimits} for
   * each default.
   */
  limits?: FlowLimits;
  /**
   * Makes this server a forward proxy (RFC 7252 §5.7): requests that name
   * another server with Proxy-Uri or Proxy-Scheme go to this resource,
   * with `request.proxyUri` set, instead of being refused with 4.02.
   * Observations through it work as on any observable resource.
   */
  proxy?: Resource;
  /**
   * The timers of block-wise uploads and kept answers (`uploadTimeout`).
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * OSCORE security contexts (RFC 8613), one per client, found by the kid
   * of a protected request. A protected request is unprotected before any
   * resource sees it, and its responses and notifications are protected;
   * one that fails gets the unprotected error RFC 8613 §8.2 names (4.02 for
   * a malformed OSCORE option, 4.01 for an unknown kid or a replay, 4.00
   * when it does not verify).
   */
  oscore?: readonly SecurityContext[] | OscoreContexts;
  /**
   * Whether every resource is served only under OSCORE (as aiocoap's
   * OSCORE server does): a plain request gets 4.01 "OSCORE required".
   *
   * @default {false}
   */
  oscoreRequired?: boolean;
}

const METHOD_NAMES = ["GET", "POST", "PUT", "DELETE", "FETCH"] as const;
/** The largest block this server sends (SZX 6, 1024 bytes). */
const MAX_SZX = 6;

/**
 * Serves resources on any number of connections, and counts what is open.
 *
 * @example A server and a client over an in-memory socket pair
 * ```ts
 * import { CoapServer } from "./server.ts";
 * import { CoapClient } from "./client.ts";
 * import { attachWebSocket } from "./websocket.ts";
 * import { socketPair } from "./testing/socket_pair.ts";
 * import { text } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new CoapServer({ "/hello": { GET: () => ({ payload: "hi" }) } });
 * const [near, far] = socketPair();
 * server.accept(far);
 * const connection = attachWebSocket(near);
 * await connection.ready;
 * const client = new CoapClient(connection);
 * const got: string[] = [];
 * for await (const event of client.request({ method: "GET", path: "/hello" })) {
 *   if (event.kind === "response") got.push(`${event.message.code} ${text(event.message.payload)}`);
 * }
 * assertEquals(got, ["2.05 hi"]);
 * client.close();
 * ```
 */
export class CoapServer {
  readonly #resources: Map<string, Resource>;
  readonly #proxy: Resource | undefined;
  readonly #oscore: OscoreContexts | undefined;
  readonly #oscoreRequired: boolean;
  readonly #log: Logger;
  /** Resources for every path under a prefix (`"/shared/*"`), longest first. */
  readonly #prefixes: [string, Resource][] = [];
  readonly #maxMessageSize: number | undefined;
  readonly #limits: ResolvedLimits;
  readonly #counts: Counts = {
    connections: 0,
    exchanges: 0,
    drivers: 0,
    observations: 0,
  };
  /** The open connections, for the one holding most when over budget. */
  readonly #open = new Set<CoapConnection>();
  /** Bytes held by block-wise uploads and kept answers. */
  readonly #uploadBudget: UploadBudget = { held: 0 };
  readonly #clock: Clock;
  /** Open connections by the peer's address, where the adapter knows it. */
  readonly #byAddress = new Map<string, number>();
  /** Bytes held unread over all connections. */
  #heldBytes = 0;

  /**
   * Creates a server for `resources`. Unless one is given,
   * `/.well-known/core` lists them in link format.
   *
   * @param resources The resources by path.
   * @param options Logging and the size limit.
   * @throws {TypeError} If a path does not start with `/` or holds what a
   * percent-encoded path cannot (whitespace, `<`, `>`, `"`), a resource has
   * a handler that is not a function, or a `link` parameter name is not a
   * token, or a limit is unknown.
   * @throws {RangeError} If a limit is not a positive number.
   */
  constructor(resources: Resources, options: ServerOptions = {}) {
    this.#log = options.log ?? console;
    this.#proxy = options.proxy;
    const oscore = options.oscore;
    this.#oscore = oscore === undefined || oscore instanceof OscoreContexts
      ? oscore
      : new OscoreContexts(oscore);
    this.#oscoreRequired = options.oscoreRequired ?? false;
    if (this.#oscoreRequired && this.#oscore === undefined) {
      throw new TypeError(
        "Cannot create a CoapServer: oscoreRequired needs oscore contexts",
      );
    }
    this.#maxMessageSize = options.maxMessageSize;
    this.#limits = resolveLimits(options.limits);
    this.#clock = options.clock ?? systemClock;
    this.#resources = new Map();
    for (const [path, resource] of Object.entries(resources)) {
      if (!path.startsWith("/")) {
        throw new TypeError(
          `Cannot serve ${JSON.stringify(path)}: a path starts with "/"`,
        );
      }
      if (/[\s<>"]/.test(path)) {
        throw new TypeError(
          `Cannot serve ${
            JSON.stringify(path)
          }: a path is percent-encoded (no whitespace, "<", ">" or quotes)`,
        );
      }
      for (const name of Object.keys(resource.link ?? {})) {
        if (!LINK_PARAM_NAME.test(name)) {
          throw new TypeError(
            `Cannot serve ${path}: ${
              JSON.stringify(name)
            } is not a link parameter name (RFC 6690 parmname)`,
          );
        }
      }
      if (resource.etag !== undefined && typeof resource.etag !== "function") {
        throw new TypeError(`Cannot serve ${path}: its etag is not a function`);
      }
      for (const method of METHOD_NAMES) {
        const handler = resource[method];
        if (handler !== undefined && typeof handler !== "function") {
          throw new TypeError(
            `Cannot serve ${path}: its ${method} handler is not a function`,
          );
        }
      }
      if (path.endsWith("/*")) {
        this.#prefixes.push([path.slice(0, -1), resource]);
      } else this.#resources.set(path, resource);
    }
    // The longest prefix wins.
    this.#prefixes.sort((a, b) => b[0].length - a[0].length);
    if (!this.#resources.has("/.well-known/core")) {
      const links = linkFormat(this.#resources);
      this.#resources.set("/.well-known/core", {
        GET: (request) => ({
          payload: links(request.query),
          contentFormat: 40,
        }),
        link: { ct: "40" },
      });
    }
  }

  /** Connections open now. */
  get connections(): number {
    return this.#counts.connections;
  }

  /** Requests being answered now (observations included). */
  get exchanges(): number {
    return this.#counts.exchanges;
  }

  /** Resource drivers that have not settled yet. */
  get drivers(): number {
    return this.#counts.drivers;
  }

  /** Observations being served now, over all connections. */
  get observations(): number {
    return this.#counts.observations;
  }

  /** The limits in force, defaults filled in. */
  get limits(): ResolvedLimits {
    return this.#limits;
  }

  /** The largest message the server accepts, advertised in its CSM. */
  get maxMessageSize(): number {
    return this.#maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  }

  /** Where the server logs (each connection through a guard of its own). */
  get log(): Logger {
    return this.#log;
  }

  /** Bytes of messages held unread now, over all connections. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * Bytes held now by block-wise uploads in progress and by answers kept
   * for their block-wise follow-ups, over all connections.
   */
  get uploadBytes(): number {
    return this.#uploadBudget.held;
  }

  /**
   * Whether one more connection may be accepted, from `address` if the
   * adapter knows it: an adapter asks before it upgrades, and refuses with
   * 503 and the reason when there is one.
   *
   * @param address The peer's IP address, if known.
   * @returns `undefined` to accept, or why not.
   */
  admit(address?: string): string | undefined {
    const { maxConnections, maxConnectionsPerAddress } = this.#limits;
    if (this.#counts.connections >= maxConnections) {
      return `The server has ${this.#counts.connections} connections open, its limit (maxConnections)`;
    }
    if (
      address !== undefined &&
      (this.#byAddress.get(address) ?? 0) >= maxConnectionsPerAddress
    ) {
      return `${address} has ${maxConnectionsPerAddress} connections open, the limit for one address (maxConnectionsPerAddress)`;
    }
    return undefined;
  }

  /**
   * Serves a WebSocket that was accepted with the `coap` subprotocol.
   *
   * @param socket The socket (open, or opening).
   * @param options Connection options (`onRequest` is the server's own),
   * and the peer's `address`, counted against `maxConnectionsPerAddress`.
   * @returns The connection.
   */
  accept(
    socket: WebSocketLike,
    options: Omit<ConnectionOptions, "onRequest"> & { address?: string } = {},
  ): CoapConnection {
    const served = new Map<number | string, Served>();
    const { address } = options;
    this.#counts.connections++;
    if (address !== undefined) {
      this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
    }
    const flowLink = new ConnectionFlowLink(this.#handleOf);
    const flow: Flow = new Flow(
      flowLink,
      this.#limits,
      options.clock ?? systemClock,
    );
    const connection: CoapConnection = attachWebSocket(socket, {
      // The server's settings stand where an option is given as undefined.
      ...options,
      log: options.log ?? this.#log,
      maxMessageSize: options.maxMessageSize ?? this.#maxMessageSize,
      maxHeldMessages: options.maxHeldMessages ??
        this.#limits.maxHeldMessages,
      maxQueued: options.maxQueued ?? this.#limits.queueLimit,
      onRequest: (message) => flow.request(message),
      onHeld: (bytes) => {
        this.#heldBytes += bytes;
        if (bytes > 0 && this.#heldBytes > this.#limits.maxHeldBytes) {
          this.#shed();
        }
        options.onHeld?.(bytes);
      },
      onClose: (reason) => {
        this.#counts.connections--;
        this.#open.delete(connection);
        if (address !== undefined) {
          const left = this.#byAddress.get(address)! - 1;
          if (left === 0) this.#byAddress.delete(address);
          else this.#byAddress.set(address, left);
        }
        flow.close();
        for (const exchange of [...served.values()]) exchange.stop();
        served.clear();
        link.table?.close();
        tellOnce(this.#log, flow, this.#limits);
        options.onClose?.(reason);
      },
    });
    this.#open.add(connection);
    flowLink.connection = connection;
    const log = connection.log;
    const link: Link = flowLink.link = {
      counts: this.#counts,
      connection,
      served,
      flow,
      table: undefined,
      secured: undefined,
      secure: () => link.secured ??= secure(link, connection),
      uploads: () =>
        link.table ??= new Uploads(
          this.#uploadBudget,
          this.#limits,
          this.#clock,
        ),
      // An error response the resource chose (a 4.04, a 4.00) is an
      // expected event: renderException logs it at info, and the server at
      // debug. Unexpected errors (a handler that throws anything else) stay
      // errors. Through the connection's log: the lines may hold the
      // peer's text (a path), and count against its budget.
      render: { internalServerError, log: new RenderLog(log) },
    };
    return connection;
  }

  /**
   * The server holds more unread bytes than `maxHeldBytes`: the connection
   * holding most is aborted, which lets go of what it held.
   */
  #shed(): void {
    let largest: CoapConnection | undefined;
    for (const connection of this.#open) {
      if (largest === undefined || connection.heldBytes > largest.heldBytes) {
        largest = connection;
      }
    }
    largest?.abort(
      `Holding ${largest.heldBytes} bytes of messages not yet taken up, the most of any connection, while the server held ${this.#heldBytes} (limit ${this.#limits.maxHeldBytes}, maxHeldBytes)`,
    );
  }

  /**
   * Answers a request before any resource runs (a failed precondition, a
   * 2.03), unless the request asked for no answer of its class.
   */
  #answerNow(
    link: Link,
    message: CoapMessage,
    init: ResponseInit,
    noResponse: number,
  ): void {
    const { connection, flow } = link;
    const answer = responseMessage(init, message.token, undefined);
    flow.offer({
      flush: () => {
        if (suppressed(answer.code, noResponse)) {
          connection.withhold(message.token);
        } else connection.reply(answer);
      },
    });
  }

  /** The resource of a `"/prefix/*"` key that `path` is under, if any. */
  #under(path: string): Resource | undefined {
    for (const [prefix, resource] of this.#prefixes) {
      if (path.length > prefix.length && path.startsWith(prefix)) {
        return resource;
      }
    }
    return undefined;
  }

  /**
   * A protected request (RFC 8613 §8.2): its context found by kid,
   * unprotected, and handled as the inner request on the link whose
   * responses are protected. What fails is answered unprotected.
   */
  #unprotect(
    link: Link,
    message: CoapMessage,
    value: Uint8Array,
    key: number | string,
  ): void {
    const secured = link.secure();
    const real = secured.real;
    const refuse = (code: number, why: string) => {
      real.reply({ code, token: message.token, options: [], payload: why });
    };
    let fields: OscoreOptionValue;
    try {
      fields = decodeOscoreOption(value);
    } catch (error) {
      const e = error as OscoreError;
      refuse(e.code, e.message);
      return;
    }
    const context = this.#oscore!.find(fields);
    if (context === undefined) {
      refuse(Code.UNAUTHORIZED, "Security context not found");
      return;
    }
    // Unprotecting waits for WebCrypto: what one connection may have
    // waiting is bounded, and past it a request is answered 5.03.
    if (secured.pending >= MAX_PENDING_UNPROTECT) {
      real.reply({
        code: Code.SERVICE_UNAVAILABLE,
        token: message.token,
        options: [{ number: Option.MAX_AGE, value: uint(1) }],
        payload: "Too many OSCORE requests waiting on this connection",
      });
      return;
    }
    const previous = secured.requests.get(key);
    const observe = getOption(message, Option.OBSERVE);
    if (
      previous !== undefined && observe !== undefined &&
      readUint(observe) === 1 &&
      equalBytes(previous.payload, message.payload) &&
      equalBytes(getOption(previous, OSCORE_OPTION)!, value)
    ) {
      // The registration again with Observe 1: how the UDP layer passes on
      // a Reset of a notification, and how a client deregisters when it
      // cannot protect anew. It ends the observation; as a request it is a
      // replay, and is answered so.
      link.served.get(key)?.stop();
      secured.bindings.delete(key);
      secured.requests.delete(key);
      refuse(Code.UNAUTHORIZED, "Replay detected");
      return;
    }
    secured.pending++;
    // In arrival order: the replay window sees the numbers as they came
    // (in parallel, WebCrypto's answers reorder them past the window).
    const unprotected = secured.order.then(() =>
      context.unprotectRequest(message, fields)
    );
    secured.order = unprotected.then(() => {}, () => {});
    unprotected.finally(() => secured.pending--)
      .then(
        async ({ message: inner, binding, echo }) => {
          if (real.state === "closed") return;
          if (echo) {
            real.reply(await context.echoChallenge(message.token, binding));
            return;
          }
          secured.bindings.set(key, binding);
          secured.requests.set(key, message);
          real.vouch(message.token);
          this.#handle(secured.link, inner, true);
        },
        (error) => {
          if (error instanceof OscoreError) refuse(error.code, error.message);
          else {
            real.log.error("Cannot unprotect an OSCORE request", error);
            refuse(Code.INTERNAL_SERVER_ERROR, "");
          }
        },
      );
  }

  /** `#handle`, for the flow of every connection: one function for all. */
  readonly #handleOf = (link: Link, message: CoapMessage): void =>
    this.#handle(link, message);

  #handle(
    link: Link,
    message: CoapMessage,
    secured = false,
  ): void {
    const { connection, served, flow } = link;
    const key = tokenKey(message.token);
    if (this.#oscore !== undefined && !secured) {
      const value = getOption(message, OSCORE_OPTION);
      if (value !== undefined && !(this.#proxy && isProxyRequest(message))) {
        this.#unprotect(link, message, value, key);
        return;
      }
      // A plain request on the token replaces a protected one.
      if (link.secured?.bindings.delete(key)) link.secured.requests.delete(key);
    }
    // A new request on a token replaces the old one: a GET with Observe 1
    // (RFC 7641 §3.6) ends the observation it names this way.
    served.get(key)?.stop();
    let request: IncomingRequest;
    const proxying = this.#proxy !== undefined && isProxyRequest(message);
    try {
      request = readRequest(message, proxying);
    } catch (error) {
      const init = error instanceof RequestError
        ? error.toMessage()
        : { code: "4.00", payload: "Bad Request" };
      flow.offer({
        flush: () =>
          connection.reply(responseMessage(init, message.token, undefined)),
      });
      return;
    }
    const block1 = getOption(message, Option.BLOCK1);
    const unsafe = request.method !== "GET" && request.method !== "FETCH";
    let upload: Extras | undefined;
    if (block1 !== undefined) {
      // RFC 7959 §2.5: a block of a body; only the last one is served.
      const size1 = getOption(message, Option.SIZE1);
      const step = link.uploads().take(
        blockKey(message),
        decodeBlock(block1),
        request.payload,
        size1 === undefined ? undefined : readUint(size1),
      );
      if (step.kind === "answer") {
        const answer = responseMessage(step.init, message.token, undefined);
        flow.offer({ flush: () => connection.reply(answer) });
        return;
      }
      request = withPayload(request, step.payload);
      upload = { block1: step.block1 };
    }
    if (unsafe) {
      // The answer to a POST or PUT is made once: what goes block-wise is
      // kept for the follow-ups that ask for its later blocks (RFC 7959
      // §3.2), which carry no body.
      const wanted = request.block2;
      if (
        block1 === undefined && wanted !== undefined && wanted.num > 0 &&
        link.table !== undefined
      ) {
        const uploads = link.table;
        const key = blockKey(message, false);
        const kept = uploads.keptAnswer(key);
        if (kept !== undefined) {
          const answer = { ...kept, token: message.token };
          const asked = request;
          flow.offer({
            flush: () =>
              send(connection, asked, answer, {
                last: () => uploads.forget(key),
              }),
          });
          return;
        }
      }
      // The key is made only if the answer goes block-wise: most do not.
      upload = { block1: upload?.block1, message };
    }
    // Conditions, validators and No-Response: options few requests carry.
    let ifMatch: Uint8Array[] | undefined;
    let etags: Uint8Array[] | undefined;
    let ifNoneMatch = false;
    let noResponse = 0;
    let noResponses = 0;
    for (const option of message.options) {
      const number = option.number;
      const length = option.value.length;
      // Malformed critical ones were refused (4.02); malformed elective
      // ones count as absent (RFC 7252 §5.4.1), as a repeated No-Response.
      if (number === Option.IF_MATCH) (ifMatch ??= []).push(option.value);
      else if (number === Option.ETAG && length >= 1 && length <= 8) {
        (etags ??= []).push(option.value);
      } else if (number === Option.IF_NONE_MATCH) ifNoneMatch = true;
      else if (number === Option.NO_RESPONSE && noResponses++ === 0) {
        noResponse = length <= 1 ? readUint(option.value) : 0;
      }
    }
    const resource = proxying
      ? this.#proxy
      : this.#resources.get(request.path) ?? this.#under(request.path);
    if (
      !secured && !proxying && this.#oscore !== undefined &&
      (this.#oscoreRequired || resource?.oscore === true)
    ) {
      this.#answerNow(
        link,
        message,
        { code: "4.01", payload: "OSCORE required" },
        noResponse,
      );
      return;
    }
    // `observable` is true or an Observers table.
    let observing = (request.method === "GET" || request.method === "FETCH") &&
      request.observe === 0 &&
      !!resource?.observable;
    if (
      observing && (
        flow.observations >= this.#limits.maxObservationsPerConnection ||
        this.#counts.observations >= this.#limits.maxObservations
      )
    ) {
      // RFC 7641 §4.1: a server that cannot add an observer answers the
      // registration as a plain GET, without the Observe option.
      observing = false;
      request = withoutObserve(request);
      flow.report.unobserved++;
    }
    let current: Uint8Array | undefined;
    if (resource?.etag !== undefined) {
      try {
        current = etagValue(resource.etag(request));
      } catch (error) {
        connection.log.error(
          `Cannot tell the ETag of ${request.path}: its etag() failed`,
          error,
        );
        this.#answerNow(link, message, { code: "5.00" }, noResponse);
        return;
      }
    }
    // A forward proxy's request is the target's to judge.
    if (
      !proxying && (ifMatch !== undefined || ifNoneMatch || etags !== undefined)
    ) {
      const early = preconditions(
        resource,
        current,
        ifMatch,
        ifNoneMatch,
        request.method === "GET" && !observing ? etags : undefined,
      );
      if (early !== undefined) {
        this.#answerNow(link, message, early, noResponse);
        return;
      }
    }
    // A plain GET's 2.05 carries the ETag, or goes as 2.03 where the
    // request named it. Not an observation's notifications: each is a later
    // state than the ETag read at registration (a resource gives its own).
    const plainGet = request.method === "GET" && !observing;
    if (
      noResponse !== 0 || (plainGet && (etags !== undefined || current))
    ) {
      upload = {
        ...upload,
        noResponse,
        etags: plainGet ? etags : undefined,
        etag: plainGet ? current : undefined,
      };
    }
    if (observing) request = forObservation(request);
    const pipe = new Pipe<IncomingRequest, ResponseInit>(
      request,
      connection.log,
    );
    const exchange = new Served(link, key, request, observing, pipe, upload);
    served.set(key, exchange);
    const method = request.method as typeof METHOD_NAMES[number];
    const handler = METHOD_NAMES.includes(method)
      ? resource?.[method]
      : undefined;
    const observers = resource?.observable;
    if (observing && handler !== undefined && observers instanceof Observers) {
      // No task: the resource's table keeps the observation.
      observers[OBSERVE](pipe, handler);
      return;
    }
    // One pipe an exchange: the Served requester renders exception events
    // itself (renderException), where errorToMessage() would add a second
    // pipe with its callbacks.
    runDrivingPipe(
      pipe,
      drive(this.#counts, resource, handler, request, pipe),
      `${request.method} ${request.path}`,
    );
  }
}

/**
 * The log of error responses (renderException's): info at debug, the rest
 * as they are, through the connection's log. A class: four closures a
 * connection were most of what a UDP peer's render cost.
 */
class RenderLog implements Logger {
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  debug(...data: unknown[]): void {
    this.#log.debug(...data);
  }

  info(...data: unknown[]): void {
    this.#log.debug(...data);
  }

  warn(...data: unknown[]): void {
    this.#log.warn(...data);
  }

  error(...data: unknown[]): void {
    this.#log.error(...data);
  }
}

/**
 * What a connection's flow sees of it. A class, not an object literal with
 * getters and arrows: that was a dictionary of 448 bytes and nine closures
 * a connection, and a UDP server has one connection a peer.
 */
class ConnectionFlowLink implements FlowLink {
  connection!: CoapConnection;
  link!: Link;
  readonly #handle: (link: Link, message: CoapMessage) => void;

  constructor(handle: (link: Link, message: CoapMessage) => void) {
    this.#handle = handle;
  }

  get queued(): number {
    return this.connection.queued;
  }

  get written(): number {
    return this.connection.written;
  }

  get closed(): boolean {
    return this.connection.state === "closed";
  }

  get mostHeld(): number {
    return this.connection.mostHeld;
  }

  abort(diagnostic: string): void {
    this.connection.abort(diagnostic);
  }

  fault(error: unknown): void {
    this.connection.fault(error);
  }

  process(message: CoapMessage): void {
    this.#handle(this.link, message);
  }

  pause(): void {
    this.connection.pause();
  }

  resume(): void {
    this.connection.resume();
  }
}

/** A token for checking a response that goes to many (`updated()`). */
const NO_TOKEN = new Uint8Array(0);

/** The server's way in to {@linkcode Observers}; not for resources. */
const OBSERVE = Symbol("observe");

/**
 * The observations of one observable resource, kept the way aiocoap's
 * `ObservableResource` keeps them: a table of pipes, not a task each. Give
 * it as the resource's `observable`. The resource's GET handler then only
 * renders the current state: once as an observation starts, and for every
 * observation whenever {@linkcode Observers.prototype.updated} is called
 * (aiocoap's `updated_state()`). An idle observation costs its pipe, its
 * exchange and its request: no driver, no promise, no `AbortSignal`.
 *
 * A render may be asynchronous; its signal aborts if the observation ends
 * first, and an update while it runs renders once more after it. A render
 * that throws, or answers with an error code, ends the observation with
 * that error response.
 *
 * @example A value that notifies its observers when it changes
 * ```ts
 * import { CoapServer, Observers } from "./server.ts";
 * import { assertEquals } from "@std/assert";
 *
 * let value = 0;
 * const observers = new Observers();
 * const server = new CoapServer({
 *   "/value": { observable: observers, GET: () => ({ payload: String(value) }) },
 * });
 * value++;
 * observers.updated(); // nobody observes yet: renders nothing
 * assertEquals([observers.count, server.observations], [0, 0]);
 * ```
 */
export class Observers {
  /** The handler of each observation, by its pipe. */
  readonly #observations = new Map<ObservedPipe, Handler>();
  /** Renders under way (asynchronous ones), by pipe. */
  readonly #rendering = new Map<ObservedPipe, Render>();
  /** Pipes updated while their render was under way. */
  readonly #stale = new Set<ObservedPipe>();
  readonly #onCount: ((count: number) => void) | undefined;
  readonly #onEnd: (() => void) | undefined;

  /**
   * Creates an empty table.
   *
   * @param hooks `onCount` hears the number of observations whenever it
   * changes; `onEnd`, each observation's end.
   */
  constructor(
    hooks: { onCount?(count: number): void; onEnd?(): void } = {},
  ) {
    this.#onCount = hooks.onCount?.bind(hooks);
    this.#onEnd = hooks.onEnd?.bind(hooks);
  }

  /** The observations being served now. */
  get count(): number {
    return this.#observations.size;
  }

  /**
   * Tells every observation that the state changed: each gets its GET
   * handler's answer as a notification (aiocoap's `updated_state()`), or,
   * given `response`, that response, with no handler called (aiocoap's
   * `updated_state(response)`: the caller vouches that it suits every
   * observation). A render still under way for an observation is then
   * overtaken: its answer, when it comes, is dropped. An error code ends
   * every observation, as a render's would.
   *
   * @param response What every observation gets, if not each its own
   * render.
   * @throws {TypeError} If `response` is not a response (an unknown or
   * request code, a payload that is neither bytes nor text), before any
   * observation is told.
   *
   * @example One answer for all, rendered once
   * ```ts
   * import { CoapServer, Observers } from "./server.ts";
   * import { assertEquals, assertThrows } from "@std/assert";
   *
   * const observers = new Observers();
   * new CoapServer({ "/v": { observable: observers, GET: () => ({}) } });
   * observers.updated({ payload: "42" }); // nobody observes: nothing sent
   * assertThrows(() => observers.updated({ code: "0.01" }), TypeError);
   * ```
   */
  updated(response?: ResponseInit): void {
    if (response !== undefined) {
      // Checked once, here, rather than found bad by every observation.
      responseMessage(response, NO_TOKEN);
      for (const pipe of this.#observations.keys()) {
        this.#dropRender(pipe); // overtaken
        pipe.addResponse(response);
      }
      return;
    }
    // A live iteration: an observation that a render ends is skipped.
    for (const [pipe, handler] of this.#observations) {
      this.#render(pipe, handler);
    }
  }

  /**
   * Takes an observation: the server calls this, not resources.
   *
   * @ignore
   */
  [OBSERVE](pipe: ObservedPipe, handler: Handler): void {
    this.#observations.set(pipe, handler);
    this.#onCount?.(this.#observations.size);
    // The pipe tells the responder of the end, as to any other responder.
    pipe.onInterestEnd(this.#end.bind(this, pipe));
    // The first answer comes a microtask later, as a driver's would.
    queueMicrotask(this.#render.bind(this, pipe, handler));
  }

  #end(pipe: ObservedPipe): void {
    if (!this.#observations.delete(pipe)) return;
    this.#dropRender(pipe)?.controller?.abort(
      new DOMException(
        `Interest in the observation of ${pipe.request.path} ended`,
        "AbortError",
      ),
    );
    this.#onCount?.(this.#observations.size);
    this.#onEnd?.();
  }

  /**
   * Forgets `pipe`'s render under way, if any, and any update waiting for
   * it: its answer, when it comes, is dropped.
   *
   * @returns The render forgotten.
   */
  #dropRender(pipe: ObservedPipe): Render | undefined {
    this.#stale.delete(pipe);
    const render = this.#rendering.get(pipe);
    if (render === undefined) return undefined;
    this.#rendering.delete(pipe);
    render.over = true;
    return render;
  }

  #render(pipe: ObservedPipe, handler: Handler): void {
    if (!this.#observations.has(pipe)) return;
    if (this.#rendering.has(pipe)) {
      this.#stale.add(pipe);
      return;
    }
    // A handler that declares no signal gets none (see Handler): a change
    // notified to many observers makes no AbortController for each.
    const controller = takesSignal(handler) ? new AbortController() : undefined;
    let result: ResponseInit | void | PromiseLike<ResponseInit | void>;
    try {
      result = controller === undefined
        ? (handler as unknown as TwoArguments)(pipe.request, pipe)
        : handler(pipe.request, pipe, controller.signal);
    } catch (error) {
      pipe.addException(error);
      return;
    }
    if (!isThenable(result)) {
      // Unless the handler ended the observation itself (a final response
      // of its own).
      if (result !== undefined && this.#observations.has(pipe)) {
        pipe.addResponse(result);
      }
      return;
    }
    const render: Render = { over: false, controller };
    this.#rendering.set(pipe, render);
    result.then((value) => {
      if (render.over) return;
      this.#rendering.delete(pipe);
      if (value !== undefined) pipe.addResponse(value);
      if (this.#stale.delete(pipe)) this.#render(pipe, handler);
    }, (error) => {
      if (render.over) return;
      this.#rendering.delete(pipe);
      this.#stale.delete(pipe);
      pipe.addException(error);
    });
  }
}

type ObservedPipe = Pipe<IncomingRequest, ResponseInit>;

/**
 * An asynchronous render under way: `over` once its observation ended or
 * `updated(response)` overtook it (its answer is then dropped).
 */
interface Render {
  over: boolean;
  controller: AbortController | undefined;
}

/** What a connection's exchanges share: one object, not four fields each. */
interface Link {
  counts: Counts;
  /** Where responses go: the connection, or OSCORE's layer over it. */
  connection: Replier;
  served: Map<number | string, Served>;
  flow: Flow;
  /** Block-wise uploads and kept answers, if any came yet. */
  table: Uploads | undefined;
  /** The table, made by the first upload or kept answer that needs it. */
  uploads(): Uploads;
  /** How exceptions become responses, and where they are logged. */
  render: ErrorToMessageOptions<ResponseInit>;
  /** OSCORE on this connection, once a protected request came. */
  secured: Secured | undefined;
  /** The OSCORE layer, made by the first protected request. */
  secure(): Secured;
}

/** What the server's exchanges use of a connection. */
type Replier = Pick<
  CoapConnection,
  "state" | "peer" | "log" | "reply" | "trySend" | "sizeOf" | "withhold"
>;

/**
 * OSCORE on one connection: the protected exchanges' bindings by token, and
 * the link their responses go through, protected in the order they are
 * sent.
 */
interface Secured {
  /** The link with OSCORE's `connection`; the rest is the connection's. */
  readonly link: Link;
  readonly real: CoapConnection;
  readonly bindings: Map<number | string, RequestBinding>;
  /** The outer request of each, to know a repeat of it (a deregistration). */
  readonly requests: Map<number | string, CoapMessage>;
  /** The last protection under way: responses go out in order. */
  tail: Promise<void>;
  /** Requests being unprotected now. */
  pending: number;
  /** The last unprotection: they run one after another, in order. */
  order: Promise<void>;
}

/** Requests one connection may have waiting to be unprotected. */
const MAX_PENDING_UNPROTECT = 64;

/** Makes the OSCORE layer over `real` for `link`'s protected exchanges. */
function secure(link: Link, real: CoapConnection): Secured {
  const bindings = new Map<number | string, RequestBinding>();
  const requests = new Map<number | string, CoapMessage>();
  const forget = (key: number | string) => {
    bindings.delete(key);
    requests.delete(key);
  };
  const send = (message: OutgoingMessage): boolean => {
    const key = tokenKey(message.token);
    const binding = bindings.get(key);
    // Its exchange was replaced (by a plain request on the token).
    if (binding === undefined) return false;
    const notification = message.code >> 5 === 2 &&
      getOption(message, Option.OBSERVE) !== undefined;
    if (!notification) forget(key);
    const plain: CoapMessage = {
      ...message,
      payload: typeof message.payload === "string"
        ? utf8(message.payload)
        : message.payload,
    };
    secured.tail = secured.tail
      .then(() => binding.context.protectResponse(plain, binding))
      .then((outer) => void real.reply(outer), (error) => {
        real.log.error("Cannot protect a response with OSCORE", error);
        real.reply({
          code: Code.INTERNAL_SERVER_ERROR,
          token: message.token,
          options: [],
          payload: new Uint8Array(0),
        });
      });
    return true;
  };
  const connection: Replier = {
    get state() {
      return real.state;
    },
    get peer() {
      // Block-wise inside OSCORE is the client's to fetch block by block,
      // each its own OSCORE exchange: no BERT, and room for the overhead.
      return {
        maxMessageSize: real.peer.maxMessageSize - OSCORE_OVERHEAD,
        blockWise: false,
      };
    },
    get log() {
      return real.log;
    },
    reply: send,
    trySend: (message) =>
      real.sizeOf(message) + OSCORE_OVERHEAD <= real.peer.maxMessageSize &&
      send(message),
    sizeOf: (message) => real.sizeOf(message) + OSCORE_OVERHEAD,
    withhold: (token) => {
      forget(tokenKey(token));
      real.withhold(token);
    },
  };
  const secured: Secured = {
    link: Object.create(link, { connection: { value: connection } }),
    real,
    bindings,
    requests,
    tail: Promise.resolve(),
    pending: 0,
    order: Promise.resolve(),
  };
  return secured;
}

/** Bits of `Served.#flags`. */
const OBSERVING = 1, ENDED = 2, FINAL = 4, QUEUED = 8, DONE = 16;

/** The counters a server keeps; its exchanges update them. */
interface Counts {
  connections: number;
  exchanges: number;
  drivers: number;
  observations: number;
}

/**
 * Logs, once per connection as it closes, each limit that engaged there,
 * with its figures: never once per message.
 */
function tellOnce(log: Logger, flow: Flow, limits: ResolvedLimits): void {
  const { skipped, unobserved, pauses, mostHeld, mostQueued } = flow.report;
  const lines: string[] = [];
  if (skipped > 0) {
    lines.push(
      `skipped ${skipped} stale notifications while responses were not read (up to ${mostQueued} bytes queued; RFC 7641 §4.5.1: the latest state went out)`,
    );
  }
  if (unobserved > 0) {
    lines.push(
      `answered ${unobserved} registrations without Observe (limits: ${limits.maxObservationsPerConnection} a connection, ${limits.maxObservations} a server)`,
    );
  }
  if (pauses > 0) {
    lines.push(
      `paused reading ${pauses} times (at most ${mostHeld} messages held) while responses were not read, ${limits.maxConcurrentRequests} were being answered, or a burst used its ${limits.sliceMs} ms slice`,
    );
  }
  if (lines.length === 0) return;
  try {
    log.warn(
      `A CoAP connection closed; while it was open the server ${
        lines.join("; ")
      }`,
    );
  } catch { /* a logger's failure changes nothing */ }
}

/**
 * The driver of one exchange. Made outside `#handle`, whose scope holds the
 * decoded message: a closure keeps its whole scope alive, and an
 * observation's driver lives as long as the observation.
 */
function drive(
  counts: Counts,
  resource: Resource | undefined,
  handler: Handler | undefined,
  request: IncomingRequest,
  pipe: Pipe<IncomingRequest, ResponseInit>,
): (signal: AbortSignal) => unknown {
  // A handler that declares no signal parameter gets none, and its driver
  // takes none, so that runDrivingPipe makes no AbortController (about 5
  // µs a request in Node.js 20).
  if (handler === undefined || !takesSignal(handler)) {
    return () => run(counts, resource, handler, request, pipe, undefined);
  }
  return (signal) => run(counts, resource, handler, request, pipe, signal);
}

/**
 * Whether a handler declares its third parameter, the signal; one whose
 * `length` cannot be read (a revoked Proxy) is given one, as before.
 */
function takesSignal(handler: Handler): boolean {
  try {
    return !(handler.length < 3);
  } catch {
    return true;
  }
}

/** A handler that declares no signal parameter. */
type TwoArguments = (
  request: IncomingRequest,
  pipe: ResponderPipe<IncomingRequest, ResponseInit>,
) => ResponseInit | void | PromiseLike<ResponseInit | void>;

/** A request's driver: its handler's answer, or the error it threw. */
function run(
  counts: Counts,
  resource: Resource | undefined,
  handler: Handler | undefined,
  request: IncomingRequest,
  pipe: Pipe<IncomingRequest, ResponseInit>,
  signal: AbortSignal | undefined,
): unknown {
  // Counted here rather than with a .then() on runDrivingPipe's promise:
  // one promise reaction less for every exchange's life.
  counts.drivers++;
  let result: ResponseInit | void | PromiseLike<ResponseInit | void>;
  try {
    if (resource === undefined) {
      throw new CoapError("4.04", `Not Found: ${request.path}`);
    }
    if (handler === undefined) {
      throw new CoapError("4.05", "Method Not Allowed");
    }
    // Called with the two arguments it declares: no signal is made.
    result = signal === undefined
      ? (handler as unknown as TwoArguments)(request, pipe)
      : handler(request, pipe, signal);
  } catch (error) {
    counts.drivers--;
    throw error;
  }
  // Not an async function: a suspended one costs a frame per request.
  if (isThenable(result)) {
    return result.then((value) => {
      counts.drivers--;
      finish(pipe, value, signal);
    }, (error) => {
      counts.drivers--;
      throw error;
    });
  }
  counts.drivers--;
  finish(pipe, result, signal);
}

/** The responder's answer, unless it added its own or interest ended. */
function finish(
  pipe: ResponderPipe<IncomingRequest, ResponseInit>,
  result: ResponseInit | void,
  signal: AbortSignal | undefined,
): void {
  if (result === undefined) return;
  if (signal === undefined ? !pipe.ended : !signal.aborted) {
    pipe.addResponse(result, true);
  }
}

function isThenable(value: unknown): value is PromiseLike<ResponseInit | void> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}

const internalServerError = (): ResponseInit => ({
  code: "5.00",
  payload: "Internal Server Error",
});

/**
 * One request being answered: the requester's side of its pipe. It hands
 * what the pipe carries to the connection's flow (with Observe numbers
 * while it is an observation) and keeps the counts; `stop()` ends the
 * requester's interest.
 *
 * While the connection does not drain, it holds one response: a newer
 * notification replaces an older one that has not gone out (RFC 7641
 * §4.5.1 lets a server skip notifications; the client wants the current
 * state), and a final response replaces a notification too. A final
 * response is never dropped, except when the requester's interest ended
 * first (`stop()`: a new request on the token, or the connection closed).
 */
class Served implements Outgoing {
  #sequence = 0;
  /** `OBSERVING`, `ENDED`, `FINAL` (of the pending response), `QUEUED`, `DONE`. */
  #flags: number;
  /** The response waiting for the flow. */
  #pending: ResponseInit | undefined;
  readonly #off: () => void;
  readonly #upload: Extras | undefined;

  constructor(
    readonly link: Link,
    readonly key: number | string,
    readonly request: IncomingRequest,
    observing: boolean,
    pipe: Pipe<IncomingRequest, ResponseInit>,
    upload?: Extras,
  ) {
    this.#flags = observing ? OBSERVING : 0;
    this.#upload = upload;
    link.counts.exchanges++;
    if (observing) {
      link.counts.observations++;
      link.flow.observations++;
    } else link.flow.started();
    // Bound rather than a closure: no context kept for the exchange's life.
    this.#off = pipe.onEvent(this.#deliver.bind(this));
  }

  /** Ends the requester's interest: the resource's driver aborts. */
  stop(): void {
    this.#off();
    this.#end();
    this.#pending = undefined;
    this.#settle();
  }

  /** Sends the response waiting, if any (the flow calls it). */
  flush(): void {
    this.#flags &= ~QUEUED;
    const init = this.#pending;
    if (init === undefined) return;
    const final = (this.#flags & FINAL) !== 0;
    this.#pending = undefined;
    const observe = final ? undefined : this.#sequence++ & 0xffffff;
    const { link: { connection }, request } = this;
    let message: OutgoingMessage | undefined;
    try {
      message = responseMessage(init, request.token, observe);
    } catch (error) {
      // What the resource answered is not a response (an unknown code, a
      // content format out of range): its bug, answered as a 5.00.
      connection.log.error(
        `Cannot send the response to ${request.path}`,
        error,
      );
      connection.reply(
        responseMessage({ code: "5.00" }, request.token, undefined),
      );
    }
    const upload = this.#upload;
    let sent = message !== undefined;
    if (message !== undefined && upload === undefined) {
      sent = send(connection, request, message);
    } else if (
      message !== undefined && suppressed(message.code, upload!.noResponse)
    ) {
      // RFC 7967: the client wants no answer of this class. A notification
      // is left out; the observation goes on.
      if (final) connection.withhold(request.token);
    } else if (message !== undefined) {
      const whole = validated(message, upload!);
      const { block1, message: asked } = upload!;
      sent = send(
        connection,
        request,
        block1 === undefined
          ? whole
          : { ...whole, options: [...whole.options, block1] },
        {
          keep: asked === undefined
            ? undefined
            : (bytes) =>
              this.link.uploads().keep(blockKey(asked, false), whole, bytes),
        },
      );
    }
    if (final) this.#settle();
    else if (!sent) {
      // A notification went out as an error (a block past the end, one
      // that cannot be encoded): final for the client, so the observation
      // ends here too (RFC 7641 §3.2: a non-2.xx ends it).
      this.stop();
    }
  }

  #end(): void {
    if (this.#flags & ENDED) return;
    this.#flags |= ENDED;
    const { counts, flow, served } = this.link;
    counts.exchanges--;
    if (this.#flags & OBSERVING) {
      counts.observations--;
      flow.observations--;
    }
    if (served.get(this.key) === this) served.delete(this.key);
  }

  /** The final response went out, or will not: the flow may take more. */
  #settle(): void {
    if (this.#flags & DONE) return;
    this.#flags |= DONE;
    if (!(this.#flags & OBSERVING)) this.link.flow.finished();
  }

  /** The error response for a resource's exception (logged there). */
  #render(exception: unknown): ResponseInit {
    return renderException(exception, this.link.render);
  }

  #deliver(event: PipeEvent<ResponseInit>): boolean {
    const init: ResponseInit = event.kind === "response"
      ? event.message
      : event.kind === "exception"
      ? this.#render(event.exception)
      : { code: "5.00" };
    const success = (init.code ?? "2.05").startsWith("2.");
    const final = event.isLast || !(this.#flags & OBSERVING) || !success;
    const { flow } = this.link;
    if (this.#pending !== undefined) flow.report.skipped++;
    this.#pending = init;
    if (final) {
      this.#flags |= FINAL;
      this.#end();
    } else this.#flags &= ~FINAL;
    if (!(this.#flags & QUEUED) && !flow.offer(this)) this.#flags |= QUEUED;
    return !final;
  }
}

/** What {@linkcode send} tells of a block-wise answer. */
interface SendHooks {
  /** It goes block-wise from its first block: keep the whole of `bytes`. */
  keep?(bytes: number): void;
  /** Its last block went out. */
  last?(): void;
}

/**
 * What a request's exchange does besides answering: uploads, kept
 * answers, validators and No-Response. Made only for requests that need it.
 */
interface Extras {
  /** The Block1 option the answer carries (RFC 7959 §2.5). */
  readonly block1?: CoapOption;
  /**
   * A POST or PUT as it came: should its answer go block-wise, the key it
   * is kept under is made from it (most do not: no key is made for them).
   */
  readonly message?: CoapMessage;
  /** The resource's ETag, added to a 2.05 that has none. */
  readonly etag?: Uint8Array;
  /** The request's ETags: a 2.05 with one of them goes as 2.03 Valid. */
  readonly etags?: readonly Uint8Array[];
  /** The No-Response option's value (RFC 7967), 0 when absent. */
  readonly noResponse?: number;
}

/**
 * Whether a response of `code`'s class is one the request asked not to
 * get (RFC 7967 §2.1: 2 for 2.xx, 8 for 4.xx, 16 for 5.xx).
 */
function suppressed(code: number, noResponse: number | undefined): boolean {
  if (!noResponse) return false;
  const kind = code >> 5;
  return kind >= 2 && kind <= 5 && (noResponse & (1 << (kind - 1))) !== 0;
}

/** An ETag the resource gave: 1 to 8 bytes, or text of as many. */
function etagValue(value: unknown): Uint8Array | undefined {
  if (value === undefined) return undefined;
  const bytes = typeof value === "string"
    ? utf8(value)
    : value instanceof Uint8Array
    ? value
    : undefined;
  if (bytes === undefined || bytes.length < 1 || bytes.length > 8) {
    throw new TypeError(
      `an ETag is 1 to 8 bytes, or text of as many (RFC 7252 §5.10.6), got ${
        bytes === undefined ? typeof value : `${bytes.length} bytes`
      }`,
    );
  }
  return bytes;
}

/**
 * The answer a request's conditions call for before its resource runs
 * (RFC 7252 §5.10.8, §5.10.6.2), or `undefined` to go on: 4.12 where
 * If-Match names no current ETag (an empty one: the resource exists) or
 * If-None-Match finds the resource existing; 2.03 Valid with the ETag
 * where a GET names the current one. A resource with `etag` exists when it
 * gives one; one without, when it is there at all.
 */
function preconditions(
  resource: Resource | undefined,
  current: Uint8Array | undefined,
  ifMatch: readonly Uint8Array[] | undefined,
  ifNoneMatch: boolean,
  etags: readonly Uint8Array[] | undefined,
): ResponseInit | undefined {
  const exists = resource?.etag !== undefined
    ? current !== undefined
    : resource !== undefined;
  if (
    ifMatch !== undefined &&
    !ifMatch.some((value) =>
      value.length === 0
        ? exists
        : current !== undefined && equalBytes(value, current)
    )
  ) {
    return {
      code: "4.12",
      payload: exists
        ? "Precondition Failed: If-Match names no current ETag of the resource"
        : "Precondition Failed: If-Match, but the resource does not exist",
    };
  }
  if (ifNoneMatch && exists) {
    return {
      code: "4.12",
      payload: "Precondition Failed: If-None-Match, but the resource exists",
    };
  }
  if (
    etags !== undefined && current !== undefined &&
    etags.some((value) => equalBytes(value, current))
  ) {
    return { code: "2.03", options: [{ number: Option.ETAG, value: current }] };
  }
  return undefined;
}

/**
 * A 2.05 with the resource's ETag where it has none of its own; and as a
 * 2.03 Valid, without its payload, where the request named that ETag
 * (RFC 7252 §5.9.1.3).
 */
function validated(message: OutgoingMessage, extras: Extras): OutgoingMessage {
  if (message.code !== Code.CONTENT) return message;
  let etag = getOption(message, Option.ETAG);
  let options = message.options;
  if (etag === undefined && extras.etag !== undefined) {
    etag = extras.etag;
    options = [...options, { number: Option.ETAG, value: etag }];
  }
  const { etags } = extras;
  if (
    etag !== undefined && etags !== undefined &&
    etags.some((value) => equalBytes(value, etag!))
  ) {
    return {
      code: Code.VALID,
      token: message.token,
      options: options.filter((o) =>
        o.number === Option.ETAG || o.number === Option.MAX_AGE ||
        o.number === Option.OBSERVE
      ),
      payload: EMPTY_PAYLOAD,
    };
  }
  return options === message.options ? message : { ...message, options };
}

const EMPTY_PAYLOAD = new Uint8Array(0);

/**
 * Sends a resource's answer, block-wise (RFC 7959) when the request asked
 * for a block or the whole would not fit the peer's Max-Message-Size: then
 * Block2 and, on the first block, Size2. It never throws: what cannot go
 * out as it is goes through {@linkcode CoapConnection.prototype.reply}
 * (an error without its diagnostic, a 5.00, or the connection aborted).
 * Returns `false` where a success went out as an error instead (4.02 for a
 * block past the end, 5.00 where it cannot be sent).
 */
function send(
  connection: Replier,
  request: IncomingRequest,
  message: OutgoingMessage,
  hooks?: SendHooks,
): boolean {
  if (connection.state === "closed") return true;
  const limit = connection.peer.maxMessageSize;
  const wanted = request.block2;
  const success = message.code >> 5 === 2;
  if (!success) {
    connection.reply(message);
    return true;
  }
  let size: number;
  try {
    if (wanted === undefined && connection.trySend(message)) return true;
    size = connection.sizeOf({ ...message, payload: new Uint8Array(0) });
  } catch {
    // It cannot be encoded (an option too long): reply() says so.
    connection.reply(message);
    return false;
  }
  // Block-wise, the payload's bytes are cut into blocks.
  const payload = typeof message.payload === "string"
    ? utf8(message.payload)
    : message.payload;
  let szx = Math.min(wanted?.szx ?? MAX_SZX, MAX_SZX);
  const head = size + 12; // room for the marker, Block2 and Size2
  while (szx > 0 && head + (16 << szx) > limit) szx--;
  const blockSize = 16 << szx;
  if (head + blockSize > limit) {
    // Not even the smallest block fits: reply() makes it a 5.00.
    connection.reply(message);
    return false;
  }
  // A client asking with a larger block size gets the same bytes in
  // smaller blocks: its block number counts in its own block size.
  // BERT's (SZX 7) numbers count 1024 bytes.
  const offset = (wanted?.num ?? 0) *
    (16 << Math.min(wanted?.szx ?? szx, 6));
  if (offset >= payload.length && offset > 0) {
    connection.reply(responseMessage({
      code: "4.02",
      payload: `Block ${wanted?.num} is past the end of the resource`,
    }, request.token));
    return false;
  }
  const more = offset + blockSize < payload.length;
  if (offset === 0) hooks?.keep?.(payload.length);
  if (!more) hooks?.last?.();
  const options: CoapOption[] = [...message.options, {
    number: Option.BLOCK2,
    value: encodeBlock({ num: offset / blockSize, more, szx }),
  }];
  if (offset === 0) {
    options.push({ number: Option.SIZE2, value: uint(payload.length) });
  }
  connection.reply({
    ...message,
    options,
    payload: payload.subarray(offset, offset + blockSize),
  });
  return true;
}

const LINK_PARAM_NAME = /^[A-Za-z0-9!#$&+\-.^_`|~]+\*?$/;

/** Link attributes whose value is a space-separated list (RFC 6690 §3.1, RFC 7252 §7.2.1). */
const LIST_ATTRIBUTES = new Set(["rt", "if", "ct"]);

/**
 * Lists resources in the CoRE link format (RFC 6690), filtered by the
 * request's query as §4.1 describes: each `name=value` item keeps the
 * links whose attribute `name` (or target, for `href`) has that value, or
 * starts with it where the value ends in `*`; `rt`, `if` and `ct` match
 * any one of their space-separated values. Items without `=` are ignored,
 * as aiocoap does; several items must all match. No link matching is an
 * empty listing, not an error.
 */
function linkFormat(
  resources: Map<string, Resource>,
): (query: readonly string[]) => string {
  return (query) => {
    const filters = query.flatMap((item) => {
      const at = item.indexOf("=");
      if (at < 0) return [];
      const name = item.slice(0, at);
      const wanted = item.slice(at + 1);
      const prefix = wanted.endsWith("*");
      const stem = prefix ? wanted.slice(0, -1) : wanted;
      const matches = (value: string) =>
        prefix ? value.startsWith(stem) : value === stem;
      return [(path: string, resource: Resource): boolean => {
        if (name === "href") return matches(path);
        const value = name === "obs"
          ? (resource.observable ? true : undefined)
          : resource.link?.[name];
        if (value === undefined) return false;
        if (value === true) return matches("");
        return LIST_ATTRIBUTES.has(name)
          ? value.split(" ").some(matches)
          : matches(value);
      }];
    });
    const links: string[] = [];
    for (const [path, resource] of resources) {
      if (!filters.every((filter) => filter(path, resource))) continue;
      let link = `<${path}>`;
      if (resource.observable) link += ";obs";
      for (const [name, value] of Object.entries(resource.link ?? {})) {
        // A quoted-string: backslash and double quote are escaped.
        link += value === true
          ? `;${name}`
          : `;${name}="${String(value).replace(/["\\]/g, "\\$&")}"`;
      }
      links.push(link);
    }
    return links.join(",");
  };
}

/**
 * Serves `resources` on a WebSocket accepted with the `coap` subprotocol:
 * a {@linkcode CoapServer} of its own for this one socket. Pass a
 * `CoapServer` instead to share resources and counters across sockets.
 *
 * @param socket The socket.
 * @param resources The resources, or a server.
 * @returns The connection.
 *
 * @example
 * ```ts
 * import { handleCoapWebSocket } from "./server.ts";
 * import { socketPair } from "./testing/socket_pair.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const [, far] = socketPair();
 * const connection = handleCoapWebSocket(far, { "/": { GET: () => ({ payload: "hi" }) } });
 * assertEquals(connection.state, "opening");
 * connection.release();
 * ```
 */
export function handleCoapWebSocket(
  socket: WebSocketLike,
  resources: Resources | CoapServer,
): CoapConnection {
  const server = resources instanceof CoapServer
    ? resources
    : new CoapServer(resources);
  return server.accept(socket);
}
