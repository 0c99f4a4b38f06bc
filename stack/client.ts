// This module is browser compatible.

/**
 * A CoAP-over-WebSocket client that uses only web-standard globals, so it
 * runs in browsers, Deno and edge workers. Each request is an
 * {@linkcode IterablePipe}: a one-shot request yields its response and
 * completes; an observation yields every notification until the loop is
 * left, and leaving it deregisters at the server.
 *
 * @module
 */

import { IterablePipe, type Logger, Pipe, type PipeEvent } from "@coap/pipe";
import { blockKey } from "./blockwise.ts";
import {
  type CoapConnection,
  ConnectionError,
  type ConnectionOptions,
  type PeerSettings,
} from "./connection.ts";
import {
  type CoapRequest,
  type CoapResponse,
  readResponse,
  requestMessage,
} from "./exchange.ts";
import {
  type Block,
  type CoapMessage,
  type CoapOption,
  Code,
  decodeBlock,
  encodeBlock,
  getOption,
  hex,
  Option,
  uint,
} from "./message.ts";
import { OSCORE_OVERHEAD, SecurityContext } from "./oscore.ts";
import { attachWebSocket, type WebSocketLike } from "./websocket.ts";

/** Options for {@linkcode CoapClient.connect}. */
export interface ClientOptions {
  /**
   * Where trouble is logged.
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * The largest message this client accepts (its CSM says so). With the
   * default, large responses arrive block-wise.
   *
   * @default {1152}
   */
  maxMessageSize?: number;
  /**
   * How long a Ping may wait for its Pong, in milliseconds.
   *
   * @default {5000}
   */
  pingTimeout?: number;
  /**
   * How long connecting may take, up to the server's CSM, in milliseconds.
   *
   * @default {10000}
   */
  connectTimeout?: number;
  /**
   * The largest body a block-wise response may reassemble to, in bytes.
   *
   * @default {16777216}
   */
  maxBodySize?: number;
  /**
   * The largest block a request body is sent in (16, 32, … 1024 bytes):
   * a body larger than this, or too large for one message to the peer
   * (its Max-Message-Size), goes block-wise in Block1 options (RFC 7959
   * §2.5), in blocks as large as fit the peer up to this size.
   *
   * @default {1024}
   */
  blockSize?: number;
  /**
   * Bytes that block-wise reassemblies may hold at once, shared by every
   * client given the same budget (a proxy's upstreams): past it, a
   * transfer ends with a {@linkcode ReassemblyBudgetError}. Without one,
   * only `maxBodySize` bounds each transfer.
   */
  reassemblyBudget?: ByteBudget;
  /**
   * How many notifications of an observation may wait for a consumer that
   * reads more slowly than they arrive: past it, the oldest waiting one is
   * dropped (the newest state wins, as RFC 7641 §4.5.1 intends) and the
   * pipe's `dropped` counts it. The final response is never dropped. A
   * one-shot request is never coalesced. `Infinity` keeps every one.
   *
   * @default {1}
   */
  maxBufferedNotifications?: number;
  /**
   * Called with the round-trip time of every Pong, including those of the
   * Pings that `poke()` on a request's pipe sends (the connection's
   * `onPong`).
   */
  onPong?: (rtt: number) => void;
  /**
   * A bearer token for a server that asks for one (RFC 6750), sent as the
   * `access_token` query parameter of the WebSocket URL: browsers cannot
   * set an `Authorization` header on a WebSocket, so every platform sends
   * it the one way that works everywhere.
   */
  accessToken?: string;
  /**
   * The WebSocket class.
   *
   * @default {globalThis.WebSocket}
   */
  WebSocket?: new (url: string, protocols: string) => WebSocketLike;
  /**
   * Reconnect when the connection is lost (the server went away), and
   * register every open observation again on the new connection, as RFC
   * 7641 §3.3.1 expects of a client: its pipe goes on, with the current
   * state first. One-shot requests in flight end with an exception event
   * (the client cannot know whether a request that changes something took
   * effect), and so do requests made while the client reconnects. `true`
   * takes the defaults of {@linkcode ReconnectOptions}.
   *
   * @default {false}
   */
  reconnect?: boolean | ReconnectOptions;
  /**
   * An OSCORE security context (RFC 8613) that protects every request this
   * client sends, end to end to the server that holds its other half: the
   * one connected to, or, with `proxyUri`, the one behind the proxy.
   * {@linkcode RequestOptions.oscore} chooses another per request.
   */
  oscore?: SecurityContext;
}

/** Options of one {@linkcode CoapClient.prototype.request}. */
export interface RequestOptions {
  /**
   * For an observation: how many notifications may wait for a consumer
   * that reads more slowly (the client's `maxBufferedNotifications`).
   */
  maxBuffered?: number;
  /**
   * Ends the request when it aborts: the pipe ends with the signal's
   * reason as its exception event, and the exchange is let go (an
   * observation deregistered), as when the loop is left.
   */
  signal?: AbortSignal;
  /**
   * Milliseconds to wait for the response (for an observation, its first
   * notification): past them the pipe ends with a `TimeoutError`
   * `DOMException` as its exception event, and the exchange is let go.
   */
  timeout?: number;
  /**
   * The OSCORE context to protect this request with (`false`: none), in
   * place of the client's `oscore`. Its responses are unprotected with it;
   * one that is not protected, or fails verification, ends the pipe with
   * an `OscoreError`. A protected 4.01 with an Echo option (a server whose
   * replay window a restart lost) is answered once by sending the request
   * again with that Echo.
   */
  oscore?: SecurityContext | false;
}

/** How {@linkcode ClientOptions.reconnect} tries again. */
export interface ReconnectOptions {
  /**
   * Attempts after each loss before the client gives up; then open
   * observations end with an exception event and the client is closed.
   *
   * @default {10}
   */
  maxAttempts?: number;
  /**
   * The delay before the first attempt, in milliseconds; it doubles after
   * each failed one, up to `maxDelay`.
   *
   * @default {100}
   */
  delay?: number;
  /**
   * The longest delay between attempts, in milliseconds.
   *
   * @default {5000}
   */
  maxDelay?: number;
  /** Called after each successful reconnection, with the attempt number. */
  onReconnect?: (attempt: number) => void;
}

/** The exception a block-wise transfer ends with when it goes wrong. */
export class BlockwiseError extends Error {
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "BlockwiseError";
  }
}

/**
 * The exception a block-wise transfer ends with when the blocks it would
 * hold do not fit its {@linkcode ByteBudget}.
 */
export class ReassemblyBudgetError extends BlockwiseError {
  /**
   * Creates the error.
   *
   * @param message What went wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "ReassemblyBudgetError";
  }
}

/**
 * A number of bytes shared by the block-wise reassemblies of one or more
 * clients: each takes what it holds as blocks arrive and gives it all back
 * when it ends, however it ends.
 *
 * @example
 * ```ts
 * import { ByteBudget } from "./client.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const budget = new ByteBudget(1000);
 * assertEquals([budget.take(600), budget.take(600), budget.held], [true, false, 600]);
 * budget.give(600);
 * assertEquals(budget.held, 0);
 * ```
 */
export class ByteBudget {
  #held = 0;
  /** The most that may be held at once. */
  readonly max: number;

  /**
   * Creates the budget.
   *
   * @param max The most bytes held at once.
   * @throws {RangeError} If `max` is not a number from 0.
   */
  constructor(max: number) {
    if (!(max >= 0)) {
      throw new RangeError(
        `Cannot create a ByteBudget: max must be a number from 0, got ${max}`,
      );
    }
    this.max = max;
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Takes `bytes`, if they fit.
   *
   * @param bytes How many.
   * @returns Whether they were taken.
   */
  take(bytes: number): boolean {
    if (this.#held + bytes > this.max) return false;
    this.#held += bytes;
    return true;
  }

  /**
   * Gives back `bytes` taken before.
   *
   * @param bytes How many.
   */
  give(bytes: number): void {
    this.#held = Math.max(0, this.#held - bytes);
  }
}

/**
 * Turns a `coap+ws://` or `coaps+ws://` URI into the WebSocket URL of RFC
 * 8323 §8.2 (`ws://host:port/.well-known/coap`), and the resource path and
 * query it names.
 *
 * @param uri A CoAP-over-WebSocket URI.
 * @returns The WebSocket URL, path and query.
 * @throws {TypeError} If `uri` is not such a URI.
 *
 * @example
 * ```ts
 * import { parseCoapUri } from "./client.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(parseCoapUri("coap+ws://127.0.0.1:8683/slow?ms=5"), {
 *   url: "ws://127.0.0.1:8683/.well-known/coap",
 *   path: "/slow",
 *   query: ["ms=5"],
 * });
 * ```
 */
export function parseCoapUri(
  uri: string,
): { url: string; path: string; query: string[] } {
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new TypeError(
      `Cannot connect to ${
        JSON.stringify(uri)
      }: not a URI (expected coap+ws://host:port/)`,
    );
  }
  const scheme = { "coap+ws:": "ws:", "coaps+ws:": "wss:" }[parsed.protocol];
  if (scheme === undefined || parsed.host === "") {
    throw new TypeError(
      `Cannot connect to ${
        JSON.stringify(uri)
      }: the scheme must be coap+ws:// or coaps+ws:// with a host${
        /^coaps?(\+tcp)?:$/.test(parsed.protocol)
          ? ` (for ${parsed.protocol}//, use CoapContext from @coap/stack/context, or connectCoapUdp and connectCoapTcp)`
          : ""
      }`,
    );
  }
  const query = parsed.search.length > 1
    ? parsed.search.slice(1).split("&")
    : [];
  return {
    url: `${scheme}//${parsed.host}/.well-known/coap`,
    path: parsed.pathname || "/",
    query,
  };
}

/**
 * A client for one CoAP-over-WebSocket server.
 *
 * @example Talking to a server (run one with `deno task coap:server`)
 * ```ts ignore
 * import { CoapClient, text } from "./mod.ts";
 *
 * const client = await CoapClient.connect("coap+ws://127.0.0.1:8683");
 * for await (const event of client.request({ method: "GET", path: "/" })) {
 *   if (event.kind === "response") console.log(text(event.message.payload));
 * }
 * client.close();
 * ```
 */
export class CoapClient {
  #connection: CoapConnection;
  readonly #log: Logger;
  /** Set by connect() when asked to reconnect. */
  #reconnect:
    | (Required<Omit<ReconnectOptions, "onReconnect">> & {
      uri: string;
      options: ClientOptions;
      onReconnect?: (attempt: number) => void;
    })
    | undefined;
  /** The reconnection under way, resolving with whether it succeeded. */
  #reconnecting: Promise<boolean> | undefined;
  /** Set by close(): a loss after it is no reason to reconnect. */
  #closedByUser = false;
  readonly #finallyClosed: Promise<ConnectionError>;
  #closeFinally!: (reason: ConnectionError) => void;
  readonly #maxBodySize: number;
  readonly #budget: ByteBudget | undefined;
  readonly #maxBufferedNotifications: number;
  /** The size exponent of `blockSize`. */
  readonly #szx: number;
  /** Uploads under way, by their request's block key: for Request-Tag. */
  readonly #uploading = new Map<string, number>();
  /** The last Request-Tag used. */
  #tag = 0;
  /** Observations in `#onFirst`: waiting for their first notification. */
  #waitingFirst = 0;
  /** What an observation's first notification ends (its timeout). */
  readonly #onFirst = new WeakMap<
    IterablePipe<CoapRequest, CoapResponse>,
    () => void
  >();
  #open = 0;
  readonly #oscore: SecurityContext | undefined;

  /**
   * Wraps a connection (from {@linkcode attachWebSocket}, or any other
   * transport); {@linkcode CoapClient.connect} is the usual way in.
   *
   * @param connection A started connection.
   * @param options `log` and `maxBodySize` apply.
   */
  constructor(connection: CoapConnection, options: ClientOptions = {}) {
    this.#connection = connection;
    this.#finallyClosed = new Promise((resolve) => {
      this.#closeFinally = resolve;
    });
    this.#watch(connection);
    this.#log = options.log ?? connection.log;
    this.#maxBodySize = options.maxBodySize ?? 16 * 1024 * 1024;
    this.#budget = options.reassemblyBudget;
    this.#maxBufferedNotifications = options.maxBufferedNotifications ?? 1;
    if (
      options.oscore !== undefined &&
      !(options.oscore instanceof SecurityContext)
    ) {
      throw new TypeError(
        "Cannot create a CoapClient: oscore must be a SecurityContext",
      );
    }
    this.#oscore = options.oscore;
    const blockSize = options.blockSize ?? 1024;
    this.#szx = [16, 32, 64, 128, 256, 512, 1024].indexOf(blockSize);
    if (this.#szx < 0) {
      throw new RangeError(
        `Cannot create a CoapClient: blockSize must be 16, 32, 64, 128, 256, 512 or 1024, got ${
          String(blockSize)
        }`,
      );
    }
    checkBuffered(
      this.#maxBufferedNotifications,
      "Cannot create a CoapClient: maxBufferedNotifications",
    );
  }

  /**
   * Opens a WebSocket to the server of `uri` with the `coap` subprotocol,
   * exchanges CSMs, and resolves once the server's CSM has arrived.
   *
   * @param uri `coap+ws://host:port` or `coaps+ws://host:port`.
   * @param options Settings; all optional.
   * @returns The client.
   * @throws {TypeError} If `uri` is not a CoAP-over-WebSocket URI, or there
   * is no WebSocket class.
   * @throws {ConnectionError} If the connection fails, the server does not
   * speak `coap`, or its CSM does not arrive in time.
   */
  static async connect(
    uri: string,
    options: ClientOptions = {},
  ): Promise<CoapClient> {
    const client = new CoapClient(await open(uri, options), options);
    if (options.reconnect !== undefined && options.reconnect !== false) {
      const r = options.reconnect === true ? {} : options.reconnect;
      client.#reconnect = {
        uri,
        options,
        maxAttempts: r.maxAttempts ?? 10,
        delay: r.delay ?? 100,
        maxDelay: r.maxDelay ?? 5000,
        onReconnect: r.onReconnect,
      };
      for (const [what, value] of Object.entries(client.#reconnect)) {
        if (typeof value === "number" && !(value >= 0)) {
          throw new RangeError(
            `Cannot connect: reconnect.${what} must be a number from 0, got ${value}`,
          );
        }
      }
    }
    return client;
  }

  /** The server's settings, from its CSM. */
  get peer(): PeerSettings {
    return this.#connection.peer;
  }

  /** The connection underneath. */
  get connection(): CoapConnection {
    return this.#connection;
  }

  /** Requests whose pipes have not ended yet. */
  get openRequests(): number {
    return this.#open;
  }

  /**
   * Resolves with the reason once the client has closed: its connection
   * closed, or, with `reconnect`, it was closed or gave up reconnecting.
   */
  get closed(): Promise<ConnectionError> {
    return this.#finallyClosed;
  }

  /**
   * Sends a request. The returned pipe yields the response (reassembled
   * when it came block-wise) and completes; with `observe`, it yields every
   * notification until the loop is left, which deregisters at the server.
   * Error responses (4.xx, 5.xx) are responses; a connection that fails, a
   * response with an unknown critical option, or a broken block-wise
   * transfer end the pipe with an exception event. `poke()` on the pipe
   * sends a Ping.
   *
   * An observation's consumer that falls behind gets the latest
   * notifications: at most `maxBuffered` wait (the client's
   * `maxBufferedNotifications`, 1 unless set), older ones are dropped and
   * counted in the pipe's `dropped`.
   *
   * @example An observation read slowly keeps only the latest notification
   * ```ts ignore
   * const pipe = client.request({ method: "GET", path: "/counter", observe: true });
   * for await (const event of pipe) {
   *   await new Promise((resolve) => setTimeout(resolve, 1000)); // slow work
   *   console.log(event.message?.payload, "skipped so far:", pipe.dropped);
   * }
   * ```
   *
   * @param request The request.
   * @param options `maxBuffered` overrides the client's
   * `maxBufferedNotifications` for this observation; `signal` and
   * `timeout` end the request early (see {@linkcode RequestOptions}).
   * @returns The pipe to iterate.
   * @throws {TypeError} If the request is not of the documented form, or
   * `signal` is not an `AbortSignal`.
   * @throws {RangeError} If a content format or accept is out of range,
   * `maxBuffered` is not a positive integer or `Infinity`, or `timeout` is
   * not a positive number.
   */
  request(
    request: CoapRequest,
    options: RequestOptions = {},
  ): IterablePipe<CoapRequest, CoapResponse> {
    const message = requestMessage(request, new Uint8Array(0));
    const maxBuffered = options.maxBuffered ?? this.#maxBufferedNotifications;
    checkBuffered(maxBuffered, "Cannot make a CoAP request: maxBuffered");
    const { signal, timeout } = options;
    if (
      options.oscore !== undefined && options.oscore !== false &&
      !(options.oscore instanceof SecurityContext)
    ) {
      throw new TypeError(
        "Cannot make a CoAP request: oscore must be a SecurityContext or false",
      );
    }
    const security = options.oscore === false
      ? undefined
      : options.oscore ?? this.#oscore;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        "Cannot make a CoAP request: signal must be an AbortSignal",
      );
    }
    if (
      timeout !== undefined &&
      (typeof timeout !== "number" || !(timeout > 0) || timeout === Infinity)
    ) {
      throw new RangeError(
        `Cannot make a CoAP request: timeout must be a positive number of milliseconds, got ${
          String(timeout)
        }`,
      );
    }
    const pipe = new IterablePipe<CoapRequest, CoapResponse>(request, {
      log: this.#log,
      // A one-shot request has one response: nothing to coalesce.
      maxBuffered: request.observe === true ? maxBuffered : Infinity,
    });
    this.#open++;
    pipe.onInterestEnd(() => this.#open--);
    if (signal?.aborted) {
      pipe.addException(signal.reason);
      return pipe;
    }
    if (signal !== undefined) {
      // The exception ends interest: the exchange is let go (an observation
      // deregistered), as when the loop is left.
      const onAbort = () => {
        if (!pipe.ended) pipe.addException(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      pipe.onInterestEnd(() => signal.removeEventListener("abort", onAbort));
    }
    if (timeout !== undefined) {
      const observe = request.observe === true;
      const timer = setTimeout(() => {
        if (!pipe.ended) {
          pipe.addException(
            new DOMException(
              `No ${observe ? "first " : ""}response within ${timeout} ms`,
              "TimeoutError",
            ),
          );
        }
      }, timeout);
      const clear = () => clearTimeout(timer);
      // An observation's timeout is for its first notification.
      if (observe) {
        this.#onFirst.set(pipe, clear);
        this.#waitingFirst++;
      }
      pipe.onInterestEnd(() => {
        clear();
        if (observe && this.#onFirst.delete(pipe)) this.#waitingFirst--;
      });
    }
    if (this.#reconnecting !== undefined) {
      pipe.addException(
        new ConnectionError("Not connected: the client is reconnecting"),
      );
      return pipe;
    }
    this.#drive(pipe, message, security);
    return pipe;
  }

  /** The first response of a request: its timeout, if any, is done. */
  #responded(pipe: IterablePipe<CoapRequest, CoapResponse>): void {
    // Every response passes here: no lookup unless an observation waits.
    if (this.#waitingFirst === 0) return;
    const first = this.#onFirst.get(pipe);
    if (first === undefined) return;
    this.#onFirst.delete(pipe);
    this.#waitingFirst--;
    first();
  }

  /**
   * Sends a Ping and waits for the Pong.
   *
   * @returns The round-trip time in milliseconds.
   */
  ping(): Promise<number> {
    return this.#connection.ping();
  }

  /**
   * Closes the connection with a Release. Requests still open end with an
   * exception event.
   */
  close(): void {
    this.#closedByUser = true;
    this.#connection.release();
  }

  /** Follows a connection until it closes: then reconnect, or be closed. */
  #watch(connection: CoapConnection): void {
    connection.closed.then((reason) => {
      if (connection !== this.#connection) return;
      if (this.#reconnect === undefined || this.#closedByUser) {
        this.#closeFinally(reason);
      } else this.#lost(connection);
    });
  }

  /**
   * The connection was lost: reconnect (once, however many pipes ask),
   * and resolve with whether it worked.
   */
  #lost(connection: CoapConnection): Promise<boolean> {
    if (this.#reconnecting !== undefined) return this.#reconnecting;
    if (connection !== this.#connection) return Promise.resolve(true);
    const settings = this.#reconnect!;
    this.#reconnecting = (async () => {
      let delay = settings.delay;
      let why = "";
      for (let attempt = 1; attempt <= settings.maxAttempts; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, settings.maxDelay);
        if (this.#closedByUser) break;
        try {
          const next = await open(settings.uri, settings.options);
          if (this.#closedByUser) {
            next.release();
            break;
          }
          this.#connection = next;
          this.#reconnecting = undefined;
          this.#watch(next);
          this.#log.info(
            `Reconnected to ${settings.uri} (attempt ${attempt})`,
          );
          settings.onReconnect?.(attempt);
          return true;
        } catch (error) {
          why = (error as Error).message;
          this.#log.debug(
            `Reconnecting to ${settings.uri}, attempt ${attempt} failed: ${why}`,
          );
        }
      }
      const reason = new ConnectionError(
        this.#closedByUser
          ? "The client was closed while reconnecting"
          : `Cannot reconnect to ${settings.uri} after ${settings.maxAttempts} attempts${
            why === "" ? "" : ` (${why})`
          }`,
      );
      this.#closeFinally(reason);
      return false;
    })();
    return this.#reconnecting;
  }

  /**
   * Connects the requester's pipe to the wire, the way aiocoap stacks its
   * layers: a raw pipe per message sent, this layer its requester and the
   * connection its responder. Responses are read, block-wise bodies
   * fetched and reassembled, and handed on in order.
   */
  #drive(
    pipe: IterablePipe<CoapRequest, CoapResponse>,
    message: CoapMessage,
    security: SecurityContext | undefined,
  ): void {
    const szx = this.#uploadSzx(message, security);
    if (szx !== undefined) {
      this.#driveUpload(pipe, message, szx, security);
      return;
    }
    const raw = new Pipe<CoapMessage, CoapMessage>(message, this.#log);
    // A request protected by someone else (a proxy forwards it) gets
    // protected responses, for that someone.
    const forwardsOscore = security === undefined &&
      getOption(message, Option.OSCORE) !== undefined;
    // Responses are handed on in arrival order. One that needs block-wise
    // follow-ups first waits in `tail`, and so does everything after it
    // until the chain drains; the rest go on at once, inside the delivery.
    let busy = 0;
    let tail: Promise<void> = Promise.resolve();
    const fetches = new Set<() => void>();
    const fail = (exception: unknown) => {
      if (!pipe.ended) pipe.addException(exception);
      stop();
    };
    const later = (work: () => void | Promise<void>) => {
      busy++;
      tail = tail.then(work).catch(fail).finally(() => busy--);
    };
    const connection = this.#connection;
    const stop = raw.onEvent((event: PipeEvent<CoapMessage>) => {
      if (event.kind === "exception") {
        const exception = event.exception;
        if (
          this.#reconnect !== undefined && !this.#closedByUser &&
          pipe.request.observe === true &&
          exception instanceof ConnectionError && busy === 0
        ) {
          // RFC 7641 §3.3.1: register again once reconnected; the pipe
          // goes on.
          this.#lost(connection).then((ok) => {
            if (pipe.ended) return;
            if (ok) this.#drive(pipe, message, security);
            else pipe.addException(exception);
          });
          return false;
        }
        if (busy === 0) fail(exception);
        else later(() => fail(exception));
        return false;
      }
      if (event.kind !== "response") return false;
      const isLast = event.isLast;
      let response: CoapResponse;
      try {
        response = readResponse(event.message, forwardsOscore);
      } catch (error) {
        if (busy === 0) fail(error);
        else later(() => fail(error));
        return false;
      }
      if (busy === 0 && !moreBlocks(response)) {
        this.#responded(pipe);
        pipe.addResponse(response, isLast);
      } else {
        later(async () => {
          if (pipe.ended) return;
          const whole = await this.#reassemble(
            message,
            response,
            fetches,
            security,
          );
          if (pipe.ended) return;
          this.#responded(pipe);
          pipe.addResponse(whole, isLast);
        });
      }
      return !isLast;
    });
    pipe.onInterestEnd(() => {
      stop();
      for (const cancel of fetches) cancel();
    });
    pipe.onPoke(() => raw.poke());
    this.#send(raw, security);
  }

  /**
   * The size exponent to send `message`'s body in block-wise, or
   * `undefined` when it goes in one message: it fits the peer's
   * Max-Message-Size and `blockSize`, or not even the smallest block would
   * fit (the connection then says why it cannot be sent).
   */
  #uploadSzx(
    message: CoapMessage,
    security: SecurityContext | undefined,
  ): number | undefined {
    const length = message.payload.length;
    if (length <= 16) return undefined;
    const connection = this.#connection;
    const limit = connection.peer.maxMessageSize;
    let head: number;
    try {
      head = connection.sizeOf({ ...message, payload: EMPTY });
    } catch {
      return undefined;
    }
    if (head + 1 + length <= limit && length <= 16 << this.#szx) {
      return undefined;
    }
    // The marker, Block1 (up to 4 bytes), Size1 (up to 5), Request-Tag (up to 6).
    head += 16;
    // OSCORE's option, code byte and tag.
    if (security !== undefined) head += OSCORE_OVERHEAD;
    let szx = this.#szx;
    while (szx > 0 && head + (16 << szx) > limit) szx--;
    return head + (16 << szx) > limit ? undefined : szx;
  }

  /**
   * Sends a request whose body goes block-wise (RFC 7959 §2.5), then reads
   * the answer to its last block like any response: fetching the rest of
   * a block-wise answer with follow-ups that carry no body (§3.2).
   */
  #driveUpload(
    pipe: IterablePipe<CoapRequest, CoapResponse>,
    message: CoapMessage,
    szx: number,
    security: SecurityContext | undefined,
  ): void {
    const fetches = new Set<() => void>();
    pipe.onInterestEnd(() => {
      for (const cancel of fetches) cancel();
    });
    const key = blockKey(message);
    const count = this.#uploading.get(key) ?? 0;
    this.#uploading.set(key, count + 1);
    // RFC 9175 §3.4: a second upload to the same resource at once is told
    // apart by a Request-Tag.
    const tag = count === 0 ? undefined : uint(++this.#tag & 0xffffffff);
    const upload = async () => {
      try {
        const last = await this.#upload(message, szx, tag, fetches, security);
        const response = readResponse(
          last,
          security === undefined &&
            getOption(message, Option.OSCORE) !== undefined,
        );
        const followUp: CoapMessage = {
          ...message,
          options: message.options,
          payload: EMPTY,
        };
        const whole = await this.#reassemble(
          followUp,
          response,
          fetches,
          security,
        );
        if (pipe.ended) return;
        this.#responded(pipe);
        pipe.addResponse(whole, true);
      } finally {
        const left = this.#uploading.get(key)! - 1;
        if (left === 0) this.#uploading.delete(key);
        else this.#uploading.set(key, left);
      }
    };
    upload().catch((error) => {
      if (!pipe.ended) pipe.addException(error);
    });
  }

  /** Sends the blocks of a body; resolves with the answer to the last. */
  async #upload(
    message: CoapMessage,
    firstSzx: number,
    tag: Uint8Array | undefined,
    fetches: Set<() => void>,
    security: SecurityContext | undefined,
  ): Promise<CoapMessage> {
    const payload = message.payload;
    const base = tag === undefined
      ? message.options
      : [...message.options, { number: Option.REQUEST_TAG, value: tag }];
    let szx = firstSzx;
    let offset = 0;
    for (;;) {
      const size = 16 << szx;
      const num = offset / size;
      const more = offset + size < payload.length;
      const options: CoapOption[] = [...base, {
        number: Option.BLOCK1,
        value: encodeBlock({ num, more, szx }),
      }];
      if (num === 0) {
        options.push({ number: Option.SIZE1, value: uint(payload.length) });
      }
      const response = await this.#fetch(
        {
          ...message,
          options,
          payload: payload.subarray(offset, offset + size),
        },
        fetches,
        security,
      );
      const echoed = getOption(response, Option.BLOCK1);
      const theirs = echoed === undefined ? undefined : decodeBlock(echoed);
      if (more && response.code === Code.CONTINUE) {
        if (theirs !== undefined && theirs.num !== num) {
          throw new BlockwiseError(
            `Block-wise upload failed: sent block ${num}, the server continued after block ${theirs.num}`,
          );
        }
        offset += size;
        // The server may ask for smaller blocks from here on (§2.5).
        if (theirs !== undefined && theirs.szx < szx) szx = theirs.szx;
        continue;
      }
      if (
        num === 0 && response.code === Code.REQUEST_ENTITY_TOO_LARGE &&
        theirs !== undefined && theirs.szx < szx
      ) {
        // §2.9.3: the first block was too large; start again smaller.
        szx = theirs.szx;
        continue;
      }
      if (response.code === Code.CONTINUE) {
        // 2.31 asks for more than there is: no answer to the request.
        throw new BlockwiseError(
          `Block-wise upload failed: the server answered the last block (${num}) 2.31 Continue`,
        );
      }
      // The last block's answer; or an error, which ends the upload.
      return response;
    }
  }

  /**
   * Fetches the remaining blocks of a response whose Block2 option says more
   * follow (RFC 7959 §2.4), with the request's options and no Observe.
   */
  async #reassemble(
    request: CoapMessage,
    first: CoapResponse,
    fetches: Set<() => void>,
    security: SecurityContext | undefined,
  ): Promise<CoapResponse> {
    if (!moreBlocks(first)) return first;
    const block = decodeBlock(getOption(first, Option.BLOCK2)!);
    if (block.num !== 0) {
      throw new BlockwiseError(
        `Block-wise transfer failed: the first response is block ${block.num}`,
      );
    }
    const budget = this.#budget;
    let taken = 0;
    const hold = (bytes: number) => {
      if (budget === undefined) return;
      if (!budget.take(bytes)) {
        throw new ReassemblyBudgetError(
          `Block-wise transfer failed: ${budget.held} of ${budget.max} bytes are held in reassembly already (its budget)`,
        );
      }
      taken += bytes;
    };
    try {
      hold(first.payload.length);
      return await this.#fetchBlocks(
        request,
        first,
        block,
        fetches,
        hold,
        security,
      );
    } finally {
      budget?.give(taken);
    }
  }

  /** The blocks after the first, each held as it arrives; then the whole. */
  async #fetchBlocks(
    request: CoapMessage,
    first: CoapResponse,
    firstBlock: Block,
    fetches: Set<() => void>,
    hold: (bytes: number) => void,
    security: SecurityContext | undefined,
  ): Promise<CoapResponse> {
    let block = firstBlock;
    const etag = getOption(first, Option.ETAG);
    const parts = [first.payload];
    let size = first.payload.length;
    while (block.more) {
      const blockSize = 16 << Math.min(block.szx, 6);
      if (size % blockSize !== 0) {
        throw new BlockwiseError(
          `Block-wise transfer failed: ${size} bytes so far is not a multiple of the block size ${blockSize}`,
        );
      }
      const num = size / blockSize;
      const next = await this.#fetch(
        {
          ...request,
          options: [
            ...request.options.filter((o) =>
              o.number !== Option.OBSERVE && o.number !== Option.BLOCK2
            ),
            {
              number: Option.BLOCK2,
              value: encodeBlock({ num, more: false, szx: block.szx }),
            },
          ],
        },
        fetches,
        security,
      );
      const response = readResponse(
        next,
        security === undefined &&
          getOption(request, Option.OSCORE) !== undefined,
      );
      const got = getOption(response, Option.BLOCK2);
      if (response.code[0] !== "2" || got === undefined) {
        throw new BlockwiseError(
          `Block-wise transfer failed: block ${num} was answered ${response.code}${
            got === undefined ? " without a Block2 option" : ""
          }`,
        );
      }
      block = decodeBlock(got);
      if (block.num * (16 << Math.min(block.szx, 6)) !== size) {
        throw new BlockwiseError(
          `Block-wise transfer failed: asked for block ${num}, got block ${block.num}`,
        );
      }
      const tag = getOption(response, Option.ETAG);
      if (
        (etag === undefined) !== (tag === undefined) ||
        (etag !== undefined && hex(etag) !== hex(tag!))
      ) {
        throw new BlockwiseError(
          "Block-wise transfer failed: the resource changed (ETag) while it was fetched",
        );
      }
      size += response.payload.length;
      if (size > this.#maxBodySize) {
        throw new BlockwiseError(
          `Block-wise transfer failed: the body exceeds ${this.#maxBodySize} bytes`,
        );
      }
      if (response.payload.length === 0 && block.more) {
        throw new BlockwiseError(
          `Block-wise transfer failed: block ${block.num} is empty but more are announced`,
        );
      }
      hold(response.payload.length);
      parts.push(response.payload);
    }
    const payload = new Uint8Array(size);
    let at = 0;
    for (const part of parts) {
      payload.set(part, at);
      at += part.length;
    }
    return { ...first, payload };
  }

  /** Sends one message and resolves with its one response. */
  #fetch(
    message: CoapMessage,
    fetches: Set<() => void>,
    security: SecurityContext | undefined,
  ): Promise<CoapMessage> {
    return new Promise((resolve, reject) => {
      const raw = new Pipe<CoapMessage, CoapMessage>(message, this.#log);
      const stop = raw.onEvent((event) => {
        fetches.delete(cancel);
        if (event.kind === "response") resolve(event.message);
        else reject(event.exception ?? new BlockwiseError("Cancelled"));
        return false;
      });
      const cancel = () => {
        stop();
        reject(new BlockwiseError("Block-wise transfer cancelled"));
      };
      fetches.add(cancel);
      this.#send(raw, security);
    });
  }

  /**
   * Hands a raw pipe to the connection; with OSCORE, through a layer of
   * its own: the request protected, and each response unprotected, in
   * order, before the raw pipe gets it (RFC 8613 §8.1, §8.4). A protected
   * 4.01 with Echo (B.1.2) is answered once, by the request again with it.
   */
  #send(
    raw: Pipe<CoapMessage, CoapMessage>,
    security: SecurityContext | undefined,
  ): void {
    if (security === undefined) {
      this.#connection.request(raw);
      return;
    }
    const connection = this.#connection;
    let stopOuter: (() => void) | undefined;
    let ended = false;
    let outer: Pipe<CoapMessage, CoapMessage> | undefined;
    raw.onInterestEnd(() => {
      ended = true;
      stopOuter?.();
    });
    raw.onPoke(() => outer?.poke());
    let tail: Promise<void> = Promise.resolve();
    let echoed = false;
    const fail = (exception: unknown) => {
      if (!raw.ended) raw.addException(exception);
      stopOuter?.();
    };
    const start = async (message: CoapMessage): Promise<void> => {
      const { message: wire, binding } = await security.protectRequest(
        message,
      );
      if (ended) return;
      const pipe = new Pipe<CoapMessage, CoapMessage>(wire, this.#log);
      outer = pipe;
      const stop = pipe.onEvent((event: PipeEvent<CoapMessage>) => {
        if (event.kind === "exception") {
          const exception = event.exception;
          tail = tail.then(() => fail(exception));
          return false;
        }
        if (event.kind !== "response") return false;
        const isLast = event.isLast;
        const response = event.message;
        tail = tail.then(async () => {
          if (ended) return;
          let inner: CoapMessage;
          try {
            inner = await security.unprotectResponse(response, binding);
          } catch (error) {
            fail(error);
            return;
          }
          if (ended) return;
          const echo = inner.code === Code.UNAUTHORIZED
            ? getOption(inner, Option.ECHO)
            : undefined;
          if (echo !== undefined && !echoed) {
            echoed = true;
            stop();
            await start({
              ...message,
              options: [
                ...message.options.filter((o) => o.number !== Option.ECHO),
                { number: Option.ECHO, value: echo },
              ],
            });
            return;
          }
          raw.addResponse(inner, isLast);
        });
        return !isLast;
      });
      stopOuter = stop;
      connection.request(pipe);
    };
    start(raw.request).catch(fail);
  }
}

/**
 * Opens a WebSocket to the server of `uri` with the `coap` subprotocol and
 * resolves with the connection once the server's CSM has arrived.
 */
async function open(
  uri: string,
  options: ClientOptions,
): Promise<CoapConnection> {
  let { url } = parseCoapUri(uri);
  if (options.accessToken !== undefined) {
    url += `?access_token=${encodeURIComponent(options.accessToken)}`;
  }
  const WebSocketClass = options.WebSocket ??
    (globalThis as { WebSocket?: ClientOptions["WebSocket"] }).WebSocket;
  if (typeof WebSocketClass !== "function") {
    throw new TypeError(
      "Cannot connect: this platform has no WebSocket (pass options.WebSocket)",
    );
  }
  const socket = new WebSocketClass(url, "coap");
  const connectionOptions: ConnectionOptions = {
    log: options.log ?? CLIENT_LOG,
    maxMessageSize: options.maxMessageSize,
    pingTimeout: options.pingTimeout,
    onPong: options.onPong,
  };
  const connection = attachWebSocket(socket, connectionOptions);
  // Deno says why a connection failed (an untrusted certificate, say) in
  // the error event; browsers say nothing, on purpose.
  let why = "";
  socket.addEventListener("error", (event) => {
    const message = (event as ErrorEvent).message;
    if (typeof message === "string" && message !== "") why = message;
  }, { once: true });
  socket.addEventListener("open", () => {
    // A server that ignores the subprotocol leaves it empty.
    if (socket.protocol !== "coap") {
      connection.abort(
        `The server did not select the coap subprotocol (got ${
          JSON.stringify(socket.protocol)
        })`,
      );
    }
  }, { once: true });
  try {
    await peerReady(connection, options.connectTimeout ?? 10_000);
  } catch (error) {
    const reason = (error as Error).message;
    connection.abort(reason);
    // Deno's words for a port where nothing listens, said plainly.
    if (/tcp connect error|connection refused/i.test(why)) {
      throw new ConnectionError(
        `Cannot connect to ${uri}: nothing is listening at ${
          new URL(url).host
        } (${why.replace(/^NetworkError: /, "")})`,
      );
    }
    throw new ConnectionError(
      `Cannot connect to ${uri}: ${reason}${why === "" ? "" : ` (${why})`}`,
    );
  }
  return connection;
}

/**
 * Waits for the peer's CSM on a started connection (RFC 8323 §5.3), at
 * most `timeout` milliseconds: how every transport's connect ends.
 *
 * @param connection The connection, its own CSM sent.
 * @param timeout Milliseconds.
 * @returns Once the peer's CSM has arrived.
 * @throws {ConnectionError} The connection's close reason, or "no CSM
 * within … ms".
 */
export async function peerReady(
  connection: CoapConnection,
  timeout: number,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      connection.ready,
      connection.closed.then((reason) => Promise.reject(reason)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new ConnectionError(`no CSM within ${timeout} ms`)),
          timeout,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function checkBuffered(value: number, what: string): void {
  if (
    typeof value !== "number" || !(value >= 1) ||
    (value !== Infinity && !Number.isInteger(value))
  ) {
    throw new RangeError(
      `${what} must be a positive integer or Infinity, got ${String(value)}`,
    );
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Where a client logs when not told: warnings and errors to the console;
 * its own debug and info lines (a late response dropped after the loop was
 * left, say) are not a program's business.
 */
export const CLIENT_LOG: Logger = {
  debug() {},
  info() {},
  warn: (...data) => console.warn(...data),
  error: (...data) => console.error(...data),
};

/** Whether a response is the first of several Block2 blocks. */
function moreBlocks(response: CoapResponse): boolean {
  const option = getOption(response, Option.BLOCK2);
  return option !== undefined && response.code[0] === "2" &&
    decodeBlock(option).more;
}
