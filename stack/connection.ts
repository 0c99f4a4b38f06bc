// This module is browser compatible.

/**
 * One CoAP-over-WebSocket connection (RFC 8323), both roles, as a state
 * machine that never touches a socket: it is fed the bytes that arrive
 * ({@linkcode CoapConnection.prototype.receive}) and hands the bytes to send
 * to a {@linkcode Transport}. It sends a CSM first, honours the peer's
 * Max-Message-Size, answers Ping with Pong, handles Release and Abort, and
 * matches responses to requests by token.
 *
 * Requests are pipes: {@linkcode CoapConnection.prototype.request} makes the
 * connection the responder of a pipe whose request is a message. Responses
 * come back as the pipe's events (a notification of an observation is a
 * non-final response); when the requester loses interest in an observation,
 * the connection deregisters it at the server (RFC 7641 §3.6); a poke sends
 * a Ping; when the connection closes, every pipe still open on it ends with
 * an exception event.
 *
 * @module
 */

import type { Logger, ResponderPipe } from "@coap/pipe";
import {
  type CoapFormatError,
  type CoapMessage,
  type CoapOption,
  Code,
  codeKind,
  codeToString,
  decodeMessage,
  encodeMessage,
  getOption,
  hex,
  isCritical,
  Option,
  type OutgoingMessage,
  readUint,
  SignalingOption,
  text,
  tokenKey,
  uint,
  utf8,
} from "./message.ts";
import { Fifo } from "./fifo.ts";
import { ConnectionLog } from "./peer_log.ts";

/** Where a connection's bytes go: a WebSocket, or a test's array. */
export interface Transport {
  /**
   * Sends one binary message. `message` is what `bytes` encode, where the
   * connection has it: a transport that reads what it sends (CoAP over
   * UDP, to put it in a datagram) takes it instead of decoding the bytes
   * again. Its payload may be a string (UTF-8 in `bytes`) and its options
   * out of order (in order in `bytes`).
   */
  send(bytes: Uint8Array, message?: OutgoingMessage): void;
  /** Closes the transport; `code` is a WebSocket close code. */
  close(code: number, reason: string): void;
  /**
   * Bytes handed to `send` that have not gone out yet (a WebSocket's
   * `bufferedAmount`); left out where the platform does not tell.
   */
  readonly bufferedAmount?: number;
  /**
   * The requester of the request on `token` lost interest before its final
   * response: a transport that still holds the request (CoAP over UDP,
   * retransmitting it or waiting for NSTART) lets it go, and its place.
   * Left out where there is nothing to let go.
   */
  abandon?(token: Uint8Array): void;
  /**
   * The peer's request on `token` gets no response (it asked for none with
   * No-Response, RFC 7967): a transport that holds the request (CoAP over
   * UDP, to acknowledge it and to match its response) lets it go; a CON
   * is acknowledged with an empty ACK if it was not yet.
   */
  withhold?(token: Uint8Array): void;
  /**
   * The peer's request on `token` proved itself (an OSCORE request that
   * verified and was new): its response may go whole to an address not
   * yet verified, past the transport's amplification budget (CoAP over
   * UDP). Left out where there is no such budget.
   */
  vouch?(token: Uint8Array): void;
}

/** The timers a connection uses (for Ping deadlines). */
export interface Clock {
  /** Milliseconds from any fixed point. */
  now(): number;
  /** Calls `fn` after `ms` milliseconds; returns a handle. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a handle from `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/**
 * The platform's timers. Its time is in whole milliseconds: a field that
 * holds a time then holds a small integer, where a fraction made V8 box
 * every one (13 of them a UDP peer).
 */
export const systemClock: Clock = {
  now: () => Math.floor(performance.now()),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/** The peer's capabilities, from its CSM (RFC 8323 §5.3). */
export interface PeerSettings {
  /** The largest message the peer accepts, in bytes (default 1152). */
  readonly maxMessageSize: number;
  /** Whether the peer supports block-wise transfer with BERT. */
  readonly blockWise: boolean;
}

/** Options for {@linkcode CoapConnection}. */
export interface ConnectionOptions {
  /**
   * The largest message this side accepts, advertised in its CSM; larger
   * ones are answered with an Abort.
   *
   * @default {1152}
   */
  maxMessageSize?: number;
  /**
   * Whether to advertise block-wise transfer (BERT) in the CSM.
   *
   * @default {false}
   */
  blockWise?: boolean;
  /**
   * How long to wait for the Pong to a Ping before the connection is taken
   * for dead, in milliseconds.
   *
   * @default {5000}
   */
  pingTimeout?: number;
  /**
   * Where trouble is logged. The connection logs through a
   * {@linkcode ConnectionLog} of its own: a peer's text escaped and cut,
   * a repeated event once and then counted, at most `logLinesPerMinute`
   * lines a minute.
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * Lines this connection may log a minute; what is over is counted and
   * the count logged.
   *
   * @default {20}
   */
  logLinesPerMinute?: number;
  /**
   * The timers.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * How many messages may wait while the connection is paused
   * ({@linkcode CoapConnection.prototype.pause}); one more aborts it.
   *
   * @default {32768}
   */
  maxHeldMessages?: number;
  /**
   * Bytes queued in the transport above which a Ping is not answered but
   * aborts the connection: a peer that sends Pings without reading the
   * Pongs would otherwise grow this side's queue without bound. A server
   * sets it to its queue limit.
   *
   * @default {Infinity}
   */
  maxQueued?: number;
  /**
   * Messages that do no work a peer may send in one second: empty
   * messages, responses to no open request, CSMs after the first, and
   * Pings. One more aborts the connection, as HTTP/2 servers close a
   * connection that floods them with control frames (CVE-2019-9512, -9515,
   * -9518): each is cheap, but a flood of them holds the event loop that
   * other connections share.
   *
   * @default {1000}
   */
  maxIdleMessagesPerSecond?: number;
  /**
   * Told how the bytes of the messages held while paused change: the size
   * of each message as it is held (a positive number), and minus that as
   * it is taken up or let go. A server adds them up over its connections
   * to bound what they hold in total.
   */
  onHeld?: (bytes: number) => void;
  /** Called with each request that arrives (the server role). */
  onRequest?: (message: CoapMessage, connection: CoapConnection) => void;
  /** Called once when the connection has closed, with the reason. */
  onClose?: (reason: ConnectionError) => void;
  /**
   * Called with the round-trip time in milliseconds whenever a Pong answers
   * one of this side's Pings, whether {@linkcode CoapConnection.prototype.ping}
   * or a requester's `poke()` sent it. A poke has no answer of its own, so
   * this is where its outcome shows.
   */
  onPong?: (rtt: number) => void;
}

/** Why a connection closed; pipes open on it end with this exception. */
export class ConnectionError extends Error {
  /**
   * Creates the error.
   *
   * @param message What happened.
   */
  constructor(message: string) {
    super(message);
    this.name = "ConnectionError";
  }
}

/** The default Max-Message-Size (RFC 8323 §5.3.1). */
export const DEFAULT_MAX_MESSAGE_SIZE = 1152;

/** WebSocket close codes for each way a connection fails (RFC 6455 §7.4). */
const CLOSE_NORMAL = 1000,
  CLOSE_PROTOCOL = 1002,
  CLOSE_TEXT = 1003,
  CLOSE_MALFORMED = 1007,
  CLOSE_TOO_BIG = 1009,
  CLOSE_INTERNAL = 1011;

interface Exchange {
  readonly key: number | string;
  readonly pipe: ResponderPipe<CoapMessage, CoapMessage>;
  readonly request: CoapMessage;
  /** Registered an observation: notifications are non-final. */
  readonly observing: boolean;
  /** Cleared when the requester lost interest; the token stays reserved. */
  interested: boolean;
  /** Set once Observe 1 went out for it. */
  deregistered: boolean;
}

interface PendingPing {
  readonly sent: number;
  readonly timer: unknown;
  readonly resolve: (rtt: number) => void;
  readonly reject: (error: ConnectionError) => void;
}

/** The state of a connection. */
export type ConnectionState = "new" | "opening" | "open" | "closed";

const noop = (): void => {};

/**
 * One CoAP-over-WebSocket connection, either role. Call
 * {@linkcode CoapConnection.prototype.start} once the transport can send,
 * {@linkcode CoapConnection.prototype.receive} with every message that
 * arrives, and {@linkcode CoapConnection.prototype.transportClosed} when the
 * transport closes.
 *
 * @example Two connections talking through arrays
 * ```ts
 * import { CoapConnection } from "./connection.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const aToB: Uint8Array[] = [], bToA: Uint8Array[] = [];
 * const a = new CoapConnection({ send: (m) => aToB.push(m), close() {} });
 * const b = new CoapConnection({ send: (m) => bToA.push(m), close() {} });
 * a.start();
 * b.start();
 * aToB.splice(0).forEach((m) => b.receive(m));
 * bToA.splice(0).forEach((m) => a.receive(m));
 * assertEquals([a.state, b.state], ["open", "open"]);
 * assertEquals(await a.ready, { maxMessageSize: 1152, blockWise: false });
 * ```
 */
export class CoapConnection {
  readonly #transport: Transport;
  readonly #log: ConnectionLog;
  readonly #clock: Clock;
  readonly #maxMessageSize: number;
  readonly #blockWise: boolean;
  readonly #pingTimeout: number;
  readonly #onRequest: ConnectionOptions["onRequest"];
  readonly #onClose: ConnectionOptions["onClose"];
  readonly #onPong: ConnectionOptions["onPong"];
  readonly #onHeld: ConnectionOptions["onHeld"];
  readonly #maxIdle: number;
  /** When the current second of idle messages began, and how many came. */
  // Long ago, as a small integer: -Infinity made V8 box the field.
  #idleSince = -(2 ** 30);
  #idleCount = 0;
  /** The Ping that pokes are waiting on, so that pokes share one. */
  #pokePing: Promise<unknown> | undefined;
  #state: ConnectionState = "new";
  #peer: PeerSettings = {
    maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
    blockWise: false,
  };
  #exchanges = new Map<number | string, Exchange>();
  readonly #maxHeld: number;
  readonly #maxQueued: number;
  #paused = false;
  /** Messages that arrived while paused. */
  readonly #held = new Fifo<Uint8Array>();
  #mostHeld = 0;
  /** Bytes of the messages held. */
  #heldBytes = 0;
  /** Bytes handed to the transport. */
  #written = 0;
  /** Pings awaiting their Pong; a table only once one is sent. */
  #pings: Map<number | string, PendingPing> | undefined;
  #nextToken = 1;
  #ready: Promise<PeerSettings>;
  #settleReady!: (settings: PeerSettings | ConnectionError) => void;
  #closed: Promise<ConnectionError>;
  #settleClosed!: (reason: ConnectionError) => void;
  #closeReason: ConnectionError | undefined;

  /**
   * Creates a connection over a transport.
   *
   * @param transport Where the connection's bytes go.
   * @param options Settings and the server role's request handler.
   * @throws {RangeError} If `maxMessageSize` is not an integer of at least
   * 64, `pingTimeout` is not positive, or `maxHeldMessages`,
   * `maxIdleMessagesPerSecond` or `logLinesPerMinute` is not a positive
   * integer.
   */
  constructor(transport: Transport, options: ConnectionOptions = {}) {
    const {
      maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE,
      blockWise = false,
      pingTimeout = 5000,
      log = console,
      clock = systemClock,
      maxHeldMessages = 32_768,
    } = options;
    if (!Number.isInteger(maxHeldMessages) || maxHeldMessages < 1) {
      throw new RangeError(
        `Cannot create a connection: maxHeldMessages must be a positive integer, got ${maxHeldMessages}`,
      );
    }
    this.#maxHeld = maxHeldMessages;
    const { maxIdleMessagesPerSecond = 1000 } = options;
    if (
      !Number.isInteger(maxIdleMessagesPerSecond) ||
      maxIdleMessagesPerSecond < 1
    ) {
      throw new RangeError(
        `Cannot create a connection: maxIdleMessagesPerSecond must be a positive integer, got ${maxIdleMessagesPerSecond}`,
      );
    }
    this.#maxIdle = maxIdleMessagesPerSecond;
    this.#maxQueued = options.maxQueued ?? Infinity;
    if (!Number.isInteger(maxMessageSize) || maxMessageSize < 64) {
      throw new RangeError(
        `Cannot create a connection: maxMessageSize must be an integer of at least 64, got ${maxMessageSize}`,
      );
    }
    if (!(pingTimeout > 0)) {
      throw new RangeError(
        `Cannot create a connection: pingTimeout must be positive, got ${pingTimeout}`,
      );
    }
    this.#transport = transport;
    this.#log = new ConnectionLog(log, {
      linesPerMinute: options.logLinesPerMinute,
      // Bound, not an arrow: no context of this constructor kept with it.
      now: clock.now.bind(clock),
    });
    this.#clock = clock;
    this.#maxMessageSize = maxMessageSize;
    this.#blockWise = blockWise;
    this.#pingTimeout = pingTimeout;
    this.#onRequest = options.onRequest;
    this.#onClose = options.onClose;
    this.#onPong = options.onPong;
    this.#onHeld = options.onHeld;
    this.#ready = new Promise<PeerSettings>((resolve, reject) => {
      this.#settleReady = (value) =>
        value instanceof ConnectionError ? reject(value) : resolve(value);
    });
    // Nobody may be waiting for ready when the connection fails.
    this.#ready.catch(noop);
    this.#closed = new Promise((resolve) => this.#settleClosed = resolve);
  }

  /** `new`, `opening` (CSM sent), `open` (peer's CSM received), `closed`. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Resolves with the peer's settings when its CSM arrives. */
  get ready(): Promise<PeerSettings> {
    return this.#ready;
  }

  /** Resolves with the reason once the connection has closed. */
  get closed(): Promise<ConnectionError> {
    return this.#closed;
  }

  /** The peer's settings (the defaults until its CSM arrives). */
  get peer(): PeerSettings {
    return this.#peer;
  }

  /** What this side advertised in its CSM. */
  get local(): PeerSettings {
    return {
      maxMessageSize: this.#maxMessageSize,
      blockWise: this.#blockWise,
    };
  }

  /** Requests sent on this connection whose final response is still due. */
  get pending(): number {
    return this.#exchanges.size;
  }

  /**
   * Bytes sent that the transport has not passed on yet (its
   * `bufferedAmount`), or 0 where the transport does not tell: how far
   * behind the peer's reading is.
   */
  get queued(): number {
    const amount = this.#transport.bufferedAmount;
    return typeof amount === "number" && amount > 0 ? amount : 0;
  }

  /**
   * Bytes handed to the transport since the connection was made: the queue
   * grows by no more than this, so a reader of
   * {@linkcode CoapConnection.prototype.queued} can tell when it need not
   * look (reading it is an op call in Deno).
   */
  get written(): number {
    return this.#written;
  }

  /**
   * Where the connection logs: its {@linkcode ConnectionLog}, which escapes
   * what it is given and keeps to the connection's budget of lines.
   */
  get log(): ConnectionLog {
    return this.#log;
  }

  /**
   * Starts the connection: sends this side's CSM. Call it once the transport
   * is open.
   *
   * @throws {Error} If called twice.
   */
  start(): void {
    if (this.#state !== "new") {
      throw new Error("Cannot start a connection twice");
    }
    this.#state = "opening";
    const options: CoapOption[] = [{
      number: SignalingOption.MAX_MESSAGE_SIZE,
      value: uint(this.#maxMessageSize),
    }];
    if (this.#blockWise) {
      options.push({
        number: SignalingOption.BLOCK_WISE_TRANSFER,
        value: new Uint8Array(0),
      });
    }
    this.#write(signal(Code.CSM, options));
  }

  /**
   * Feeds one message that arrived. A text message, malformed bytes, a
   * message over the advertised size or a missing CSM make this side send
   * an Abort with a diagnostic payload and close the connection. Nothing a
   * peer sends makes it throw: an error that escapes the handling of a
   * message (a bug, or a request handler's) is logged once and aborts this
   * connection alone.
   *
   * @param data The message: bytes, or text (which is a protocol error).
   * @param decoded What `data` decodes to, where the transport decoded it
   * already (CoAP over UDP): it is not decoded again.
   */
  receive(
    data: Uint8Array | ArrayBuffer | string,
    decoded?: CoapMessage,
  ): void {
    try {
      this.#receive(data, decoded);
    } catch (error) {
      this.fault(error);
    }
  }

  /**
   * Contains an error that escaped this connection's handling: logs it
   * once, with its stack, and aborts the connection, which is all the harm
   * it may do. The server's own timers call it too.
   *
   * @param error What was thrown.
   */
  fault(error: unknown): void {
    if (this.#state === "closed") {
      this.#log.debug("An error after the connection closed", error);
      return;
    }
    this.#log.error(
      "Aborting a CoAP connection: handling what it sent failed",
      error,
    );
    this.abort("Internal error", CLOSE_INTERNAL);
  }

  #receive(
    data: Uint8Array | ArrayBuffer | string,
    decoded: CoapMessage | undefined,
  ): void {
    if (this.#state === "closed") return;
    if (typeof data === "string") {
      this.abort("Text frame received", CLOSE_TEXT);
      return;
    }
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    if (bytes.length > this.#maxMessageSize) {
      this.abort(
        `Message of ${bytes.length} bytes exceeds the Max-Message-Size of ${this.#maxMessageSize}`,
        CLOSE_TOO_BIG,
      );
      return;
    }
    if (this.#paused || this.#held.size > 0) {
      if (this.#held.size >= this.#maxHeld) {
        this.abort(
          `More than ${this.#maxHeld} messages arrived faster than this side takes them up (${this.queued} bytes of its own not yet read by the peer)`,
        );
        return;
      }
      this.#held.push(bytes);
      if (this.#held.size > this.#mostHeld) this.#mostHeld = this.#held.size;
      this.#heldBytes += bytes.length;
      this.#onHeld?.(bytes.length);
      return;
    }
    this.#process(bytes, decoded);
  }

  /**
   * Stops taking up what arrives, as a socket that is not read: messages
   * are held, undecoded, until {@linkcode CoapConnection.prototype.resume}.
   * A transport that cannot stop reading (a WebSocket) still delivers
   * them; holding more than `maxHeldMessages` aborts the connection.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Takes up the held messages in order, until they run out or a handler
   * pauses again, and then whatever arrives.
   */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    try {
      while (
        !this.#paused && this.#state !== "closed" && this.#held.size > 0
      ) {
        const bytes = this.#held.shift()!;
        this.#heldBytes -= bytes.length;
        this.#onHeld?.(-bytes.length);
        this.#process(bytes);
      }
    } catch (error) {
      this.fault(error);
    }
  }

  /** Messages that arrived and wait while the connection is paused. */
  get held(): number {
    return this.#held.size;
  }

  /** The most messages that waited at once while it was paused. */
  get mostHeld(): number {
    return this.#mostHeld;
  }

  /** The bytes of the messages waiting while it is paused. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  #process(bytes: Uint8Array, decoded?: CoapMessage): void {
    let message: CoapMessage;
    try {
      message = decoded ?? decodeMessage(bytes);
    } catch (error) {
      this.abort((error as CoapFormatError).message, CLOSE_MALFORMED);
      return;
    }
    const kind = codeKind(message.code);
    if (this.#state !== "open" && message.code !== Code.CSM) {
      this.abort(
        `Expected a CSM as the first message, got ${
          codeToString(message.code)
        }`,
      );
      return;
    }
    switch (kind) {
      case "signaling":
        this.#signaling(message);
        return;
      case "response":
        this.#response(message);
        return;
      case "request":
        this.#request(message);
        return;
      case "empty":
        this.#idle(); // RFC 8323 §3.4: always ignored.
        return;
      default:
        this.abort(`Reserved code ${codeToString(message.code)} received`);
    }
  }

  /**
   * Tells the connection that its transport closed. Every pipe still open on
   * it ends with a {@linkcode ConnectionError}: "Connection closed by the
   * peer", or "Connection failed before it opened" when the transport closed
   * before {@linkcode CoapConnection.prototype.start} (a WebSocket that
   * never opened: nothing listening, a refused upgrade).
   *
   * @param code The WebSocket close code, if known.
   * @param reason The close reason, if any.
   * @param plain Whether the reason says it all, with no close code to
   * speak of (CoAP over UDP: "No answer from …").
   */
  transportClosed(code?: number, reason?: string, plain = false): void {
    if (plain && reason) {
      this.#close(new ConnectionError(reason), undefined);
      return;
    }
    const what = this.#state === "new"
      ? "Connection failed before it opened"
      : "Connection closed by the peer";
    this.#close(
      new ConnectionError(
        `${what}${
          code === undefined ? "" : ` (${code}${reason ? `: ${reason}` : ""})`
        }`,
      ),
      undefined,
    );
  }

  /**
   * Sends the request of `pipe` and makes this connection the pipe's
   * responder: responses arrive as its events (non-final for the
   * notifications of an observation); when the requester loses interest in
   * an observation, it is deregistered with a GET with Observe 1; a poke
   * sends a Ping.
   *
   * On a closed connection, or when the request is larger than the peer
   * accepts, the pipe ends at once with an exception event.
   *
   * @param pipe A pipe whose request is the message to send; its token is
   * replaced by a fresh one.
   */
  request(pipe: ResponderPipe<CoapMessage, CoapMessage>): void {
    if (this.#state === "closed") {
      pipe.addException(
        this.#closeReason ?? new ConnectionError("Connection is closed"),
      );
      return;
    }
    const token = this.#freshToken(this.#exchanges);
    const key = tokenKey(token);
    const message = { ...pipe.request, token };
    let bytes: Uint8Array;
    try {
      bytes = this.#encode(message);
    } catch (error) {
      pipe.addException(error);
      return;
    }
    const observe = getOption(message, Option.OBSERVE);
    const exchange: Exchange = {
      key,
      pipe,
      request: message,
      // RFC 8132 §2.4: FETCH observes as GET does (OSCORE's outer
      // registration is a FETCH).
      observing: (message.code === Code.GET || message.code === Code.FETCH) &&
        observe !== undefined && readUint(observe) === 0,
      interested: true,
      deregistered: false,
    };
    this.#exchanges.set(key, exchange);
    this.#written += bytes.length;
    this.#transport.send(bytes, message);
    pipe.onInterestEnd(() => this.#lostInterest(exchange));
    pipe.onPoke(() => this.#poke());
  }

  /**
   * A requester asked for a life sign: send a Ping, unless one sent for a
   * poke is still waiting for its Pong, which answers this poke too.
   */
  #poke(): void {
    if (this.#pokePing !== undefined) return;
    this.#pokePing = this.ping().catch(noop).finally(() => {
      this.#pokePing = undefined;
    });
  }

  /**
   * Sends a message as it is (a server's response, say).
   *
   * @param message The message.
   * @throws {ConnectionError} If the connection is closed.
   * @throws {RangeError} If the message is larger than the peer accepts.
   * @throws {CoapFormatError} If the message cannot be encoded.
   */
  send(message: OutgoingMessage): void {
    if (this.#state === "closed") {
      throw this.#closeReason ?? new ConnectionError("Connection is closed");
    }
    this.#write(message);
  }

  /**
   * Sends a message unless it is larger than the peer accepts, encoding it
   * once.
   *
   * @param message The message.
   * @returns Whether it was sent; `false` if it is too large.
   * @throws {ConnectionError} If the connection is closed.
   * @throws {CoapFormatError} If the message cannot be encoded.
   */
  trySend(message: OutgoingMessage): boolean {
    if (this.#state === "closed") {
      throw this.#closeReason ?? new ConnectionError("Connection is closed");
    }
    const bytes = encodeMessage(message);
    if (bytes.length > this.#peer.maxMessageSize) return false;
    this.#written += bytes.length;
    this.#transport.send(bytes, message);
    return true;
  }

  /**
   * Sends no response to the peer's request on `token`: the peer asked
   * for none of its kind (No-Response, RFC 7967). The transport lets the
   * request go (over UDP, a CON is acknowledged with an empty ACK).
   *
   * @param token The request's token.
   */
  withhold(token: Uint8Array): void {
    if (this.#state === "closed") return;
    this.#transport.withhold?.(token);
  }

  /**
   * Tells the transport that the peer's request on `token` proved itself
   * (see `Transport.vouch`): its response is not held to the amplification
   * budget of an address not yet verified.
   *
   * @param token The request's token.
   */
  vouch(token: Uint8Array): void {
    if (this.#state === "closed") return;
    this.#transport.vouch?.(token);
  }

  /**
   * Sends a response whatever it holds, shortened to fit the peer. An error
   * response (4.xx, 5.xx) that is larger than the peer's Max-Message-Size
   * goes without its payload, the diagnostic; a success response that does
   * not fit, or one that cannot be encoded, becomes a 5.00. When not even
   * that fits, the connection is aborted. It never throws.
   *
   * @param message The response.
   * @returns Whether a message went out.
   */
  reply(message: OutgoingMessage): boolean {
    if (this.#state === "closed") return false;
    const limit = this.#peer.maxMessageSize;
    let bytes: Uint8Array | undefined;
    let sent = message;
    let trouble: string;
    try {
      bytes = encodeMessage(message);
      trouble = `a ${
        codeToString(message.code)
      } response of ${bytes.length} bytes`;
    } catch (error) {
      trouble = `a response that cannot be encoded (${
        (error as Error).message
      })`;
    }
    if (bytes === undefined || bytes.length > limit) {
      const error = bytes !== undefined && message.code >= Code.BAD_REQUEST;
      const bare: CoapMessage = {
        code: error ? message.code : Code.INTERNAL_SERVER_ERROR,
        token: message.token,
        options: [],
        payload: new Uint8Array(0),
      };
      bytes = encodeMessage(bare);
      sent = bare;
      if (bytes.length > limit) {
        this.abort(
          `Cannot answer: ${trouble} does not fit the peer's Max-Message-Size of ${limit}`,
        );
        return false;
      }
      this.#log.repeated(
        "shortened",
        "responses shortened to fit the peer",
        "debug",
        `Sent ${
          codeToString(bare.code)
        } without a payload instead of ${trouble}: the peer accepts at most ${limit} bytes`,
      );
    }
    this.#written += bytes.length;
    this.#transport.send(bytes, sent);
    return true;
  }

  /**
   * The size `message` has on the wire.
   *
   * @param message The message.
   * @returns Its size in bytes.
   */
  sizeOf(message: OutgoingMessage): number {
    return encodeMessage(message).length;
  }

  /**
   * Sends a Ping and waits for its Pong. Without a Pong in `pingTimeout`
   * milliseconds the connection is taken for dead: it aborts, and every
   * pipe open on it ends with an exception event.
   *
   * @returns The round-trip time in milliseconds.
   */
  ping(): Promise<number> {
    if (this.#state === "closed") {
      return Promise.reject(
        this.#closeReason ?? new ConnectionError("Connection is closed"),
      );
    }
    const pings = this.#pings ??= new Map();
    const token = this.#freshToken(pings);
    const key = tokenKey(token);
    return new Promise<number>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.abort(`No Pong within ${this.#pingTimeout} ms`);
      }, this.#pingTimeout);
      pings.set(key, {
        sent: this.#clock.now(),
        timer,
        resolve,
        reject,
      });
      this.#write(signal(Code.PING, [], token));
    });
  }

  /**
   * Closes the connection cleanly: sends a Release (RFC 8323 §5.5) and
   * closes the transport. Pipes still open end with an exception event.
   */
  release(): void {
    if (this.#state === "closed") return;
    this.#tryWrite(signal(Code.RELEASE, []));
    this.#close(
      new ConnectionError("Connection released by this side"),
      CLOSE_NORMAL,
    );
  }

  /**
   * Aborts the connection (RFC 8323 §5.6): sends an Abort whose payload is
   * the diagnostic, and closes the transport. Pipes still open end with an
   * exception event.
   *
   * @param diagnostic Why, in words; sent to the peer and logged.
   * @param closeCode The WebSocket close code.
   * @param badCsmOption The CSM option that caused it, if one did.
   */
  abort(
    diagnostic: string,
    closeCode: number = CLOSE_PROTOCOL,
    badCsmOption?: number,
  ): void {
    if (this.#state === "closed") return;
    this.#log.warn(`Aborting the CoAP connection: ${diagnostic}`);
    const abort: CoapMessage = {
      code: Code.ABORT,
      token: new Uint8Array(0),
      options: badCsmOption === undefined ? [] : [{
        number: SignalingOption.BAD_CSM_OPTION,
        value: uint(badCsmOption),
      }],
      payload: utf8(diagnostic),
    };
    // The diagnostic is cut to what the peer accepts; an Abort that does not
    // fit even without it is not sent (the close reason still says why).
    const room = this.#peer.maxMessageSize -
      encodeMessage({ ...abort, payload: new Uint8Array(0) }).length - 1;
    if (room >= 0) {
      this.#tryWrite(
        abort.payload.length > room
          ? { ...abort, payload: cutUtf8(abort.payload, room) }
          : abort,
      );
    }
    this.#close(
      new ConnectionError(`Connection aborted by this side: ${diagnostic}`),
      closeCode,
    );
  }

  #freshToken(taken: Map<number | string, unknown>): Uint8Array {
    for (;;) {
      const n = this.#nextToken;
      this.#nextToken = n >= 0xffffffff ? 1 : n + 1;
      const token = uint(n);
      if (!taken.has(tokenKey(token))) return token;
    }
  }

  #encode(message: OutgoingMessage): Uint8Array {
    const bytes = encodeMessage(message);
    if (bytes.length > this.#peer.maxMessageSize) {
      throw new RangeError(
        `Cannot send a message of ${bytes.length} bytes: the peer accepts at most ${this.#peer.maxMessageSize}`,
      );
    }
    return bytes;
  }

  #write(message: OutgoingMessage): void {
    const bytes = this.#encode(message);
    this.#written += bytes.length;
    this.#transport.send(bytes, message);
  }

  /** Writes, for a connection on its way out: failures are only logged. */
  #tryWrite(message: CoapMessage): void {
    try {
      this.#write(message);
    } catch (error) {
      this.#log.debug("Could not send a closing message", error);
    }
  }

  /**
   * Counts a message that does no work; past `maxIdleMessagesPerSecond`
   * within a second, the connection is aborted.
   *
   * @returns Whether the connection goes on.
   */
  #idle(): boolean {
    const now = this.#clock.now();
    if (now - this.#idleSince >= 1000) {
      this.#idleSince = now;
      this.#idleCount = 0;
    }
    if (++this.#idleCount <= this.#maxIdle) return true;
    this.abort(
      `More than ${this.#maxIdle} messages that do no work (empty messages, responses to no request, repeated CSMs, Pings) within a second`,
    );
    return false;
  }

  #signaling(message: CoapMessage): void {
    if (message.code === Code.CSM) {
      if (this.#state === "open" && !this.#idle()) return;
      let { maxMessageSize, blockWise } = this.#peer;
      for (const option of message.options) {
        if (option.number === SignalingOption.MAX_MESSAGE_SIZE) {
          if (option.value.length > 4) {
            this.abort("Malformed Max-Message-Size", CLOSE_PROTOCOL, 2);
            return;
          }
          maxMessageSize = readUint(option.value);
        } else if (option.number === SignalingOption.BLOCK_WISE_TRANSFER) {
          blockWise = true;
        } else if (isCritical(option.number)) {
          this.abort(
            `Unsupported critical CSM option ${option.number}`,
            CLOSE_PROTOCOL,
            option.number,
          );
          return;
        }
      }
      this.#peer = { maxMessageSize, blockWise };
      if (this.#state !== "open") {
        this.#state = "open";
        this.#settleReady(this.#peer);
      }
      return;
    }
    for (const option of message.options) {
      if (isCritical(option.number)) {
        this.abort(
          `Unknown critical option ${option.number} in ${
            codeToString(message.code)
          }`,
        );
        return;
      }
    }
    switch (message.code) {
      case Code.PING:
        if (!this.#idle()) return;
        if (this.queued >= this.#maxQueued) {
          this.abort(
            `Ping while ${this.queued} bytes were not read (limit ${this.#maxQueued})`,
          );
          return;
        }
        this.#tryWrite(signal(Code.PONG, [], message.token));
        return;
      case Code.PONG: {
        const key = tokenKey(message.token);
        const ping = this.#pings?.get(key);
        if (ping === undefined) {
          this.#idle();
          return;
        }
        this.#pings!.delete(key);
        this.#clock.clearTimeout(ping.timer);
        const rtt = this.#clock.now() - ping.sent;
        ping.resolve(rtt);
        if (this.#onPong !== undefined) {
          try {
            this.#onPong(rtt);
          } catch (error) {
            this.#log.error("A connection's pong handler failed", error);
          }
        }
        return;
      }
      case Code.RELEASE:
        this.#close(
          new ConnectionError("Connection released by the peer"),
          CLOSE_NORMAL,
        );
        return;
      case Code.ABORT: {
        const why = text(message.payload);
        this.#log.warn(`The peer aborted the CoAP connection: ${why}`);
        this.#close(
          new ConnectionError(
            `Connection aborted by the peer${why ? `: ${why}` : ""}`,
          ),
          CLOSE_NORMAL,
        );
        return;
      }
      default:
        this.abort(`Unknown signaling code ${codeToString(message.code)}`);
    }
  }

  #response(message: CoapMessage): void {
    const key = tokenKey(message.token);
    const exchange = this.#exchanges.get(key);
    if (exchange === undefined) {
      if (!this.#idle()) return;
      this.#log.repeated(
        "unknown token",
        "responses with unknown tokens",
        "warn",
        `Ignoring a ${codeToString(message.code)} response with unknown token ${
          hex(message.token) || "(empty)"
        }`,
      );
      return;
    }
    const notification = exchange.observing && message.code >> 5 === 2 &&
      getOption(message, Option.OBSERVE) !== undefined;
    if (!notification) this.#exchanges.delete(key);
    if (!exchange.interested) {
      this.#log.debug(
        `Dropping a response on token ${
          hex(message.token)
        }: nobody wants it any more`,
      );
      return;
    }
    exchange.pipe.addResponse(message, !notification);
  }

  #request(message: CoapMessage): void {
    if (this.#onRequest === undefined) {
      this.#tryWrite({
        code: Code.NOT_FOUND,
        token: message.token,
        options: [],
        payload: utf8("This endpoint serves no resources"),
      });
      return;
    }
    this.#onRequest(message, this);
  }

  #lostInterest(exchange: Exchange): void {
    exchange.interested = false;
    if (
      !exchange.observing && this.#state !== "closed" &&
      this.#exchanges.get(exchange.key) === exchange
    ) {
      this.#transport.abandon?.(exchange.request.token);
      return;
    }
    if (
      !exchange.observing || exchange.deregistered ||
      this.#exchanges.get(exchange.key) !== exchange ||
      this.#state === "closed"
    ) {
      return;
    }
    // RFC 7641 §3.6: a GET on the same token with Observe 1. Its response is
    // the final one on the token, which frees it.
    exchange.deregistered = true;
    this.#tryWrite({
      ...exchange.request,
      options: exchange.request.options.map((option) =>
        option.number === Option.OBSERVE
          ? { number: Option.OBSERVE, value: uint(1) }
          : option
      ),
    });
  }

  #close(reason: ConnectionError, closeCode: number | undefined): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closeReason = reason;
    this.#held.clear();
    if (this.#heldBytes > 0) {
      const bytes = this.#heldBytes;
      this.#heldBytes = 0;
      this.#onHeld?.(-bytes);
    }
    this.#settleReady(reason);
    const pings = [...this.#pings?.values() ?? []];
    this.#pings?.clear();
    for (const ping of pings) {
      this.#clock.clearTimeout(ping.timer);
      ping.reject(reason);
    }
    const exchanges = [...this.#exchanges.values()];
    this.#exchanges.clear();
    if (closeCode !== undefined) {
      try {
        this.#transport.close(closeCode, reason.message);
      } catch (error) {
        this.#log.debug("Closing the transport failed", error);
      }
    }
    for (const exchange of exchanges) {
      if (exchange.interested) endWith(exchange.pipe, reason);
    }
    this.#settleClosed(reason);
    try {
      this.#onClose?.(reason);
    } catch (error) {
      this.#log.error("A connection's close handler failed", error);
    }
    this.#log.close();
  }
}

/**
 * Ends a pipe with an exception. A connection may close from inside one of
 * the pipe's own callbacks (a requester that closes the client on a
 * response), where the pipe refuses new events; the exception then follows
 * once that delivery is over.
 */
function endWith(
  pipe: ResponderPipe<CoapMessage, CoapMessage>,
  reason: ConnectionError,
): void {
  try {
    pipe.addException(reason);
  } catch {
    queueMicrotask(() => pipe.addException(reason));
  }
}

/** The first `room` bytes of UTF-8 text, never half a character. */
function cutUtf8(bytes: Uint8Array, room: number): Uint8Array {
  let end = room;
  // Back off over continuation bytes (10xxxxxx) to a character's start.
  while (end > 0 && end < bytes.length && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function signal(
  code: number,
  options: CoapMessage["options"],
  token: Uint8Array = new Uint8Array(0),
): CoapMessage {
  return { code, token, options, payload: new Uint8Array(0) };
}
