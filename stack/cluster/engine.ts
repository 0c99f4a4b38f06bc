/**
 * The cluster's engine: where it is (a `redis://` or `rediss://` URL, with
 * credentials and a database), how it is named in logs (never with its
 * credentials), and a connection to it through node-redis
 * (`@redis/client`, the official client), set up the way the shared
 * resources need it:
 *
 * - while the connection is down, every command fails at once (no offline
 *   queue), and it reconnects in the background: quickly after a network
 *   fault, slowly after the engine refused the credentials;
 * - a command without a reply fails after `commandTimeout` (node-redis
 *   bounds only the wait before a command is written; the wait for its
 *   reply is bounded here), and at most `maxPending` commands wait at once
 *   (one more fails at once);
 * - trouble is logged once when it starts and once when it ends, never once
 *   per attempt.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import {
  ClientClosedError,
  ClientOfflineError,
  createClient,
  defineScript,
  ErrorReply,
  type RedisScripts,
  RESP_TYPES,
} from "@redis/client";
import type { Logger } from "@coap/pipe";
import { describeEngine, type EngineAddress } from "./engine_url.ts";
export {
  describeEngine,
  type EngineAddress,
  parseEngineUrl,
} from "./engine_url.ts";

/** The engine did not answer: it is away, slow, or the queue is full. */
export class EngineUnavailable extends Error {
  /**
   * Creates the error.
   *
   * @param message Why.
   */
  constructor(message: string) {
    super(message);
    this.name = "EngineUnavailable";
  }
}

/** Options for {@linkcode Engine}. */
export interface EngineOptions {
  /**
   * How long a command may wait for its reply, in milliseconds.
   *
   * @default {1000}
   */
  commandTimeout?: number;
  /**
   * Commands waiting to be written or answered, at most, per connection.
   *
   * @default {10000}
   */
  maxPending?: number;
  /**
   * The longest delay between reconnection attempts after a network fault,
   * in milliseconds (the first is 50 ms, doubling).
   *
   * @default {250}
   */
  maxReconnectDelay?: number;
  /**
   * The delay between attempts while the engine refuses the credentials,
   * in milliseconds.
   *
   * @default {5000}
   */
  refusedRetryDelay?: number;
  /** PEM certificates to trust for `rediss://`, instead of the system's. */
  ca?: string;
  /**
   * Lua scripts to run with {@linkcode Engine.run}, by name: each with how
   * many of its arguments are keys.
   */
  scripts?: Record<string, { source: string; keys: number }>;
  /** What this connection is for ("commands", "subscriber"). */
  role: string;
  /**
   * Where the connections to one engine report trouble, so that a fault
   * is one log line however many connections see it.
   *
   * @default {a status of this connection's own}
   */
  status?: EngineStatus;
  /** Called each time the connection is ready, first and after a fault. */
  onReady?: () => void;
  /** Called each time a ready connection is lost. */
  onDown?: () => void;
  /**
   * Where connection trouble is logged, without a `status`.
   *
   * @default {console}
   */
  log?: Logger;
}

/**
 * The state of the connections to one engine, for its log: one line when
 * the first connection fails, one when the kind of fault changes (the
 * engine is back up but refuses the password, say), and one when every
 * connection is ready again. Never one line per attempt or per connection.
 */
export class EngineStatus {
  readonly #name: string;
  readonly #log: Logger;
  readonly #refusedRetryDelay: number;
  /** The kind of fault last logged; `undefined` while all is well. */
  #trouble: "unreachable" | "refused" | "slow" | undefined;
  readonly #down = new Set<string>();

  /**
   * Creates the status of one engine's connections.
   *
   * @param address The engine, named in the lines without its credentials.
   * @param log Where the lines go.
   * @param refusedRetryDelay How often a connection tries again while the
   * credentials are refused, for the line that says so.
   */
  constructor(address: EngineAddress, log: Logger, refusedRetryDelay = 5000) {
    this.#name = describeEngine(address);
    this.#log = log;
    this.#refusedRetryDelay = refusedRetryDelay;
  }

  /** The fault logged and not yet seen to end, in a few words. */
  get fault(): string | undefined {
    return this.#trouble === undefined
      ? undefined
      : this.#trouble === "unreachable"
      ? "it is unreachable"
      : this.#trouble === "slow"
      ? "it does not answer in time"
      : "it refused this server's credentials or certificate";
  }

  /**
   * A command got no reply in time, on a connection that is still up (an
   * engine paused or overloaded).
   *
   * @param timeout The bound it missed, in milliseconds.
   */
  slow(timeout: number): void {
    if (this.#trouble !== undefined) return;
    this.#trouble = "slow";
    this.#log.warn(
      `The engine at ${this.#name} did not answer within ${timeout} ms; /shared answers 5.03 while it does not`,
    );
  }

  /** A command got its reply: a slow engine answers again. */
  answered(): void {
    if (this.#trouble !== "slow" || this.#down.size > 0) return;
    this.#trouble = undefined;
    this.#log.info(`The engine at ${this.#name} answers again`);
  }

  /**
   * A connection failed, or could not be made.
   *
   * @param role Which connection.
   * @param error Why.
   */
  failed(role: string, error: unknown): void {
    this.#down.add(role);
    const refused = refusal(error);
    const kind = refused === undefined ? "unreachable" : "refused";
    if (kind === this.#trouble) return;
    this.#trouble = kind;
    const reason = why(error);
    if (refused !== undefined) {
      this.#log.error(
        `The engine at ${this.#name} cannot be used: ${
          refused === "credentials"
            ? "it refused the credentials"
            : "its certificate was not accepted"
        } (${reason}); /shared answers 5.03, and the connection is tried again every ${this.#refusedRetryDelay} ms`,
      );
    } else {
      this.#log.warn(
        `The engine at ${this.#name} is unreachable (${reason}); /shared answers 5.03 until it is back`,
      );
    }
  }

  /**
   * A connection is ready.
   *
   * @param role Which connection.
   */
  ready(role: string): void {
    this.#down.delete(role);
    if (this.#down.size > 0 || this.#trouble === undefined) return;
    this.#trouble = undefined;
    this.#log.info(`The engine at ${this.#name} is back`);
  }
}

/** A command waiting for its reply. */
interface Waiting {
  started: number;
  reject: (error: Error) => void;
}

/** A value a command takes: text, or bytes as they are. */
export type Arg = string | number | Uint8Array;

/** A reply: bulk strings are bytes (values are binary-safe). */
export type Reply = string | number | null | Uint8Array | Reply[];

function toBuffer(arg: Arg): string | Buffer {
  if (typeof arg === "string") return arg;
  if (typeof arg === "number") return String(arg);
  return Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength);
}

/**
 * How the engine refused us, if it did: who we are (a wrong password, no
 * such user), or its certificate could not be verified. Faults that
 * another attempt a moment later will not mend.
 */
function refusal(error: unknown): "credentials" | "certificate" | undefined {
  const message = (error as Error | undefined)?.message ?? "";
  const code = String((error as { code?: unknown } | undefined)?.code ?? "");
  if (/^(WRONGPASS|NOAUTH|NOPERM)\b/.test(message)) return "credentials";
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    return "certificate";
  }
  return undefined;
}

/** One line of an error, for a log (no stack). */
function why(error: unknown): string {
  const message = (error as Error | undefined)?.message ?? String(error);
  return message.split("\n")[0].slice(0, 300);
}

/**
 * One connection to the engine through node-redis, made again whenever it
 * drops, until {@linkcode Engine.close}.
 */
export class Engine {
  // node-redis's types are generic over the scripts and type mapping; this
  // file is the only place that touches the client, so it uses it untyped.
  // deno-lint-ignore no-explicit-any
  readonly #base: any;
  /** `#base` replying with bytes for bulk strings. */
  // deno-lint-ignore no-explicit-any
  readonly #client: any;
  readonly #timeout: number;
  readonly #role: string;
  readonly #options: EngineOptions;
  readonly #maxPending: number;
  readonly #status: EngineStatus;
  #ready = false;
  #closed = false;
  /** Resolves once the first connection attempt succeeded or failed. */
  readonly ready: Promise<boolean>;

  /**
   * Starts connecting.
   *
   * @param address Where the engine is ({@linkcode parseEngineUrl}).
   * @param options See {@linkcode EngineOptions}.
   */
  constructor(address: EngineAddress, options: EngineOptions) {
    this.#options = options;
    this.#timeout = options.commandTimeout ?? 1000;
    this.#role = options.role;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#status = options.status ??
      new EngineStatus(
        address,
        options.log ?? console,
        options.refusedRetryDelay,
      );
    const maxDelay = options.maxReconnectDelay ?? 250;
    const refusedDelay = options.refusedRetryDelay ?? 5000;
    const scripts: RedisScripts = {};
    for (
      const [name, { source, keys }] of Object.entries(options.scripts ?? {})
    ) {
      scripts[name] = defineScript({
        SCRIPT: source,
        NUMBER_OF_KEYS: keys,
        parseCommand(
          parser: {
            pushKey(key: string): void;
            push(...args: (string | Buffer)[]): void;
          },
          keys: string[],
          args: (string | Buffer)[],
        ) {
          for (const key of keys) parser.pushKey(key);
          parser.push(...args);
        },
        transformReply: (reply: unknown) => reply,
      });
    }
    this.#base = createClient({
      socket: {
        host: address.host,
        port: address.port,
        connectTimeout: Math.max(this.#timeout, 1000),
        ...(address.tls
          ? {
            tls: true,
            // SNI takes a name, never an address.
            ...(isIP(address.host) === 0 ? { servername: address.host } : {}),
            ...(options.ca === undefined ? {} : { ca: options.ca }),
          }
          : {}),
        reconnectStrategy: (retries: number, cause: Error) => {
          if (this.#closed) return false;
          this.#status.failed(this.#role, cause);
          return refusal(cause) !== undefined
            ? refusedDelay
            : Math.min(50 * 2 ** Math.min(retries, 10), maxDelay);
        },
      },
      ...(address.username === undefined ? {} : { username: address.username }),
      ...(address.password === undefined ? {} : { password: address.password }),
      database: address.database,
      disableOfflineQueue: true,
      commandsQueueMaxLength: this.#maxPending,
      // node-redis's own timeout (5 s by default) covers only the wait
      // before a command is written, and costs an AbortSignal with a timer
      // for every command; #bounded covers the whole wait with one timer.
      commandOptions: { timeout: 0 },
      // No CLIENT SETINFO: nothing about us goes into the engine's logs.
      disableClientInfo: true,
      scripts,
    });
    this.#client = this.#base.withTypeMapping({
      [RESP_TYPES.BLOB_STRING]: Buffer,
    });
    this.#base.on("error", (error: Error) => {
      if (!this.#closed) this.#status.failed(this.#role, error);
    });
    this.#base.on("ready", () => {
      this.#ready = true;
      this.#status.ready(this.#role);
      options.onReady?.();
    });
    this.#base.on("end", () => this.#down());
    this.#base.on("reconnecting", () => this.#down());
    let settle!: (up: boolean) => void;
    this.ready = new Promise((resolve) => settle = resolve);
    this.#base.once("ready", () => settle(true));
    this.#base.once("error", () => settle(false));
    this.#base.connect().catch(() => {
      // Failures are the "error" events above; connect() rejects only when
      // the connection is closed for good.
      settle(false);
    });
  }

  /** Whether the connection is ready now. */
  get up(): boolean {
    return this.#ready;
  }

  #down(): void {
    if (!this.#ready) return;
    this.#ready = false;
    this.#options.onDown?.();
  }

  /**
   * Sends a command. It fails at once with {@linkcode EngineUnavailable}
   * while the connection is down or the queue is full, and after
   * `commandTimeout` without a reply; an error reply rejects with
   * `ErrorReply`.
   *
   * @param args The command and its arguments.
   * @returns The reply.
   */
  command(...args: Arg[]): Promise<Reply> {
    return this.#bounded(this.#client.sendCommand(args.map(toBuffer)));
  }

  /**
   * Runs one of the scripts given in {@linkcode EngineOptions.scripts} by
   * its digest (EVALSHA), sending its text only when the engine does not
   * have it yet (node-redis's script support). Fails as
   * {@linkcode Engine.command} does.
   *
   * @param name The script's name.
   * @param keys Its keys.
   * @param args Its arguments.
   * @returns The reply.
   */
  run(name: string, keys: string[], args: Arg[]): Promise<Reply> {
    return this.#bounded(this.#client[name](keys, args.map(toBuffer)));
  }

  /**
   * Subscribes to a channel; resolves once the engine confirmed it.
   *
   * @param channel The channel.
   * @param listener Called with each message's bytes.
   */
  subscribe(
    channel: string,
    listener: (message: Uint8Array) => void,
  ): Promise<void> {
    return this.#bounded(
      this.#client.subscribe(
        channel,
        (message: Buffer) => listener(message),
        true,
      ),
    ).then(() => {});
  }

  /**
   * Unsubscribes from a channel; never fails (while the connection is down
   * the subscription is forgotten, and not made again on reconnection).
   *
   * @param channel The channel.
   */
  unsubscribe(channel: string): void {
    this.#client.unsubscribe(channel).catch(() => {});
  }

  /**
   * Resolves once every command sent before it has been answered: after
   * reconnection, once the subscriptions node-redis makes again are
   * confirmed.
   */
  async barrier(): Promise<void> {
    await this.#bounded(this.#client.ping());
  }

  /** Closes the connection; it is not made again. */
  close(): void {
    this.#closed = true;
    this.#ready = false;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    try {
      this.#base.destroy();
    } catch { /* closed already */ }
  }

  /** Why a command could not be sent or answered, for its 5.03. */
  #unavailable(error: unknown): string {
    if (
      error instanceof ClientOfflineError || error instanceof ClientClosedError
    ) {
      return this.#status.fault ?? "it is not connected yet";
    }
    if ((error as Error | undefined)?.message === "The queue is full") {
      return `${this.#maxPending} commands are waiting for it`;
    }
    return why(error);
  }

  /**
   * Commands waiting for their replies, oldest first: one sweep timer for
   * all of them rather than a timer each, which cost more than node-redis
   * itself per command (measured: 11 µs of CPU a command with a timer each,
   * 6 µs for node-redis alone).
   */
  readonly #waiting = new Set<Waiting>();
  #sweeper: ReturnType<typeof setInterval> | undefined;

  #bounded<T>(sent: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Waiting = { started: performance.now(), reject };
      this.#waiting.add(entry);
      this.#sweeper ??= setInterval(
        () => this.#sweep(),
        Math.max(5, this.#timeout / 10),
      );
      sent.then(
        (reply) => {
          if (!this.#settled(entry)) return;
          if (this.#status.fault !== undefined) this.#status.answered();
          resolve(reply);
        },
        (error) => {
          if (!this.#settled(entry)) return;
          reject(
            error instanceof ErrorReply
              ? error
              : new EngineUnavailable(this.#unavailable(error)),
          );
        },
      );
    });
  }

  /** Takes a command off the waiting list; false if it timed out already. */
  #settled(entry: Waiting): boolean {
    return this.#waiting.delete(entry);
  }

  /**
   * Fails the commands that waited `commandTimeout` or longer; stops when
   * none wait (not as the last one is answered: under load that would arm
   * and disarm the timer for nearly every command).
   */
  #sweep(): void {
    if (this.#waiting.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      return;
    }
    const now = performance.now();
    for (const entry of this.#waiting) {
      if (now - entry.started < this.#timeout) break;
      this.#settled(entry);
      this.#status.slow(this.#timeout);
      entry.reject(
        new EngineUnavailable(`it did not answer within ${this.#timeout} ms`),
      );
    }
  }
}
