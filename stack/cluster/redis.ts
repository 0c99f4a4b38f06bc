/**
 * A small Redis client (RESP2 over TCP) for the cluster's shared resources:
 * commands, and a subscriber for PUBLISH/SUBSCRIBE. It speaks just what the
 * shared resources use and depends on nothing, so the cluster, its tests and
 * its benchmark need no package registry.
 *
 * It never makes a caller wait for an engine that is away: while it is
 * disconnected every command fails at once with {@linkcode EngineUnavailable},
 * a command without a reply within `commandTimeout` fails the same way (and
 * the connection is dropped and made again), and in the background it
 * reconnects with a growing delay until {@linkcode Redis.close}.
 *
 * @module
 */

import type { Logger } from "@coap/pipe";
import { Fifo } from "../fifo.ts";

/** A value a command takes: text, or bytes as they are. */
export type Arg = string | number | Uint8Array;

/** A reply: bulk strings are bytes (Redis values are binary-safe). */
export type Reply = string | number | null | Uint8Array | ReplyError | Reply[];

/** An error reply (`-ERR …`): a value, so a pipeline goes on after it. */
export class ReplyError extends Error {
  /**
   * Creates the error.
   *
   * @param message The engine's text.
   */
  constructor(message: string) {
    super(message);
    this.name = "ReplyError";
  }
}

/** The engine cannot be reached now; the caller should not wait for it. */
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

/** Options for {@linkcode Redis}. */
export interface RedisOptions {
  /**
   * How long a command may wait for its reply, in milliseconds; past it the
   * command fails and the connection is made again.
   *
   * @default {1000}
   */
  commandTimeout?: number;
  /**
   * The first delay before reconnecting, in milliseconds; it doubles on
   * each failed attempt up to `maxReconnectDelay`.
   *
   * @default {100}
   */
  reconnectDelay?: number;
  /**
   * The longest delay between reconnection attempts, in milliseconds.
   *
   * @default {2000}
   */
  maxReconnectDelay?: number;
  /**
   * Commands sent and not yet answered, at most; one more fails at once.
   *
   * @default {10000}
   */
  maxPending?: number;
  /** Called with each message of a subscribed channel (subscriber only). */
  onMessage?: (channel: string, payload: Uint8Array) => void;
  /**
   * Called each time the connection is up; for a subscriber, once the
   * engine has confirmed every channel again, so that a value read then
   * misses nothing published after it (a reconnection may have missed
   * messages before).
   */
  onUp?: () => void;
  /** Called each time an open connection goes down. */
  onDown?: (why: string) => void;
  /**
   * Where connection trouble is logged.
   *
   * @default {console}
   */
  log?: Logger;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads `bytes` as text (a bulk reply, a channel name). */
export function text(reply: Reply): string {
  if (reply instanceof Uint8Array) return decoder.decode(reply);
  return String(reply);
}

/**
 * Parses `redis://host:port` (the host defaults to 127.0.0.1, the port to
 * 6379).
 *
 * @param url The engine's URL.
 * @returns Where to connect.
 * @throws {TypeError} If it is not a `redis://` URL.
 */
export function parseEngineUrl(
  url: string,
): { hostname: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `Cannot use the engine ${
        JSON.stringify(url)
      }: expected redis://host:port`,
    );
  }
  if (parsed.protocol !== "redis:") {
    throw new TypeError(
      `Cannot use the engine ${
        JSON.stringify(url)
      }: only redis:// is supported`,
    );
  }
  return {
    hostname: parsed.hostname || "127.0.0.1",
    port: parsed.port === "" ? 6379 : Number(parsed.port),
  };
}

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
  sent: number;
}

/**
 * One connection to Redis, made again whenever it drops. In subscriber mode
 * (`onMessage` given) it keeps its channels subscribed across reconnections.
 */
export class Redis {
  readonly #where: { hostname: string; port: number };
  readonly #options: Required<
    Pick<
      RedisOptions,
      "commandTimeout" | "reconnectDelay" | "maxReconnectDelay" | "maxPending"
    >
  >;
  readonly #hooks: RedisOptions;
  readonly #log: Logger;
  readonly #pending = new Fifo<Pending>();
  /** Subscribed channels, and whether the engine has confirmed each. */
  readonly #channels = new Map<string, boolean>();
  /** Waiting for a channel's confirmation. */
  readonly #acks = new Map<
    string,
    { resolve: () => void; reject: (error: Error) => void }[]
  >();
  #conn: Deno.TcpConn | undefined;
  #outgoing: Uint8Array[] = [];
  #writing = false;
  #up = false;
  #closed = false;
  #delay: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #watch: ReturnType<typeof setInterval> | undefined;
  /** Resolves once the first connection attempt has succeeded or failed. */
  readonly ready: Promise<boolean>;

  /**
   * Starts connecting to `url` (`redis://host:port`).
   *
   * @param url The engine.
   * @param options See {@linkcode RedisOptions}.
   */
  constructor(url: string, options: RedisOptions = {}) {
    this.#where = parseEngineUrl(url);
    this.#options = {
      commandTimeout: options.commandTimeout ?? 1000,
      reconnectDelay: options.reconnectDelay ?? 100,
      maxReconnectDelay: options.maxReconnectDelay ?? 2000,
      maxPending: options.maxPending ?? 10_000,
    };
    this.#hooks = options;
    this.#log = options.log ?? console;
    this.#delay = this.#options.reconnectDelay;
    this.ready = this.#connect();
  }

  /** Whether the connection is up now. */
  get up(): boolean {
    return this.#up;
  }

  /**
   * Sends a command. It fails at once while the engine is away, and after
   * `commandTimeout` without a reply.
   *
   * @param args The command and its arguments.
   * @returns The reply; an error reply is a {@linkcode ReplyError} value.
   */
  command(...args: Arg[]): Promise<Reply> {
    if (!this.#up || this.#conn === undefined) {
      return Promise.reject(
        new EngineUnavailable(
          `The engine at ${this.#where.hostname}:${this.#where.port} is unreachable`,
        ),
      );
    }
    if (this.#pending.size >= this.#options.maxPending) {
      return Promise.reject(
        new EngineUnavailable(
          `${this.#options.maxPending} commands are waiting for the engine`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject, sent: performance.now() });
      this.#write(encode(args));
    });
  }

  /**
   * Subscribes to `channel`, now and after every reconnection.
   *
   * @param channel The channel.
   * @returns Resolves once the engine has confirmed the subscription, so
   * that no message published after that is missed; rejects with
   * {@linkcode EngineUnavailable} while the engine is away.
   */
  subscribe(channel: string): Promise<void> {
    if (this.#channels.get(channel) === true) return Promise.resolve();
    if (!this.#up) {
      return Promise.reject(
        new EngineUnavailable(
          `The engine at ${this.#where.hostname}:${this.#where.port} is unreachable`,
        ),
      );
    }
    if (!this.#channels.has(channel)) {
      this.#channels.set(channel, false);
      this.#write(encode(["SUBSCRIBE", channel]));
    }
    return new Promise((resolve, reject) => {
      const waiting = this.#acks.get(channel);
      if (waiting === undefined) this.#acks.set(channel, [{ resolve, reject }]);
      else waiting.push({ resolve, reject });
    });
  }

  /** Unsubscribes from `channel`. */
  unsubscribe(channel: string): void {
    if (!this.#channels.delete(channel)) return;
    const failure = new EngineUnavailable(`Unsubscribed from ${channel}`);
    for (const waiter of this.#acks.get(channel) ?? []) waiter.reject(failure);
    this.#acks.delete(channel);
    if (this.#up) this.#write(encode(["UNSUBSCRIBE", channel]));
  }

  /** How many channels this subscriber is subscribed to. */
  get channels(): number {
    return this.#channels.size;
  }

  /** Closes the connection for good; pending commands fail. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#drop("closed");
  }

  async #connect(): Promise<boolean> {
    try {
      this.#conn = await Deno.connect({
        hostname: this.#where.hostname,
        port: this.#where.port,
      });
    } catch (error) {
      this.#retry((error as Error).message);
      return false;
    }
    if (this.#closed) {
      this.#conn.close();
      return false;
    }
    this.#conn.setNoDelay(true);
    this.#up = true;
    this.#delay = this.#options.reconnectDelay;
    const conn = this.#conn;
    this.#watch = setInterval(
      () => this.#checkTimeouts(),
      Math.max(10, this.#options.commandTimeout / 4),
    );
    // A subscriber is up once the engine has confirmed every channel again:
    // what onUp reads then cannot miss a message published after it.
    const confirmed = [...this.#channels.keys()].map((channel) =>
      new Promise<void>((resolve, reject) => {
        const waiting = this.#acks.get(channel);
        if (waiting === undefined) {
          this.#acks.set(channel, [{ resolve, reject }]);
        } else waiting.push({ resolve, reject });
      })
    );
    if (confirmed.length > 0) {
      this.#write(encode(["SUBSCRIBE", ...this.#channels.keys()]));
    }
    this.#read(conn);
    Promise.all(confirmed).then(() => {
      if (conn !== this.#conn) return;
      try {
        this.#hooks.onUp?.();
      } catch (error) {
        this.#log.error("The engine's onUp hook failed", error);
      }
    }, () => {
      // Dropped again before confirming: the next connection tries again.
    });
    return true;
  }

  #retry(why: string): void {
    if (this.#closed) return;
    const delay = this.#delay;
    this.#delay = Math.min(delay * 2, this.#options.maxReconnectDelay);
    this.#log.debug(`Engine unreachable (${why}); retrying in ${delay} ms`);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, delay);
  }

  #write(bytes: Uint8Array): void {
    if (this.#conn === undefined) return;
    // Commands issued while a write is under way go out together in the
    // next one: under load, one write carries many commands.
    this.#outgoing.push(bytes);
    if (!this.#writing && this.#outgoing.length === 1) {
      queueMicrotask(() => this.#flush());
    }
  }

  async #flush(): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined || this.#writing) return;
    this.#writing = true;
    try {
      while (this.#outgoing.length > 0 && conn === this.#conn) {
        const parts = this.#outgoing;
        this.#outgoing = [];
        let size = 0;
        for (const part of parts) size += part.length;
        const out = new Uint8Array(size);
        let at = 0;
        for (const part of parts) {
          out.set(part, at);
          at += part.length;
        }
        await writeAll(conn, out);
      }
    } catch (error) {
      // A failed write drops the connection, which fails what is pending.
      this.#lost(conn, error);
    } finally {
      this.#writing = false;
    }
  }

  #checkTimeouts(): void {
    if (this.#pending.size === 0) return;
    const oldest = this.#pending.peek()!;
    if (performance.now() - oldest.sent > this.#options.commandTimeout) {
      this.#lost(
        this.#conn,
        new Error(`no reply within ${this.#options.commandTimeout} ms`),
      );
    }
  }

  async #read(conn: Deno.TcpConn): Promise<void> {
    const parser = new Parser();
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(chunk);
        if (n === null) throw new Error("the engine closed the connection");
        parser.feed(chunk.subarray(0, n));
        for (;;) {
          const reply = parser.next();
          if (reply === undefined) break;
          this.#deliver(reply);
        }
      }
    } catch (error) {
      this.#lost(conn, error);
    }
  }

  #deliver(reply: Reply): void {
    if (
      this.#hooks.onMessage !== undefined && Array.isArray(reply) &&
      reply.length >= 3
    ) {
      const kind = text(reply[0]);
      if (kind === "message") {
        try {
          this.#hooks.onMessage(text(reply[1]), reply[2] as Uint8Array);
        } catch (error) {
          this.#log.error("A subscriber's message handler failed", error);
        }
        return;
      }
      if (kind === "subscribe") {
        const channel = text(reply[1]);
        if (this.#channels.has(channel)) this.#channels.set(channel, true);
        for (const waiter of this.#acks.get(channel) ?? []) waiter.resolve();
        this.#acks.delete(channel);
        return;
      }
      if (kind === "unsubscribe") return;
    }
    if (this.#pending.size === 0) return;
    this.#pending.shift()!.resolve(reply);
  }

  #lost(conn: Deno.TcpConn | undefined, error: unknown): void {
    if (conn === undefined || conn !== this.#conn) return;
    this.#drop(error instanceof Error ? error.message : String(error));
    this.#retry("connection lost");
  }

  #drop(why: string): void {
    const wasUp = this.#up;
    this.#up = false;
    clearInterval(this.#watch);
    this.#watch = undefined;
    const conn = this.#conn;
    this.#conn = undefined;
    this.#outgoing = [];
    try {
      conn?.close();
    } catch { /* already closed */ }
    const failure = new EngineUnavailable(`The engine went away (${why})`);
    while (this.#pending.size > 0) this.#pending.shift()!.reject(failure);
    for (const channel of this.#channels.keys()) {
      this.#channels.set(channel, false);
    }
    for (const waiters of this.#acks.values()) {
      for (const waiter of waiters) waiter.reject(failure);
    }
    this.#acks.clear();
    if (wasUp) {
      try {
        this.#hooks.onDown?.(why);
      } catch (error) {
        this.#log.error("The engine's onDown hook failed", error);
      }
    }
  }
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

/** A command as a RESP array of bulk strings. */
export function encode(args: Arg[]): Uint8Array {
  const values = args.map((arg) =>
    arg instanceof Uint8Array ? arg : utf8(String(arg))
  );
  let size = 3 + digits(values.length);
  for (const value of values) size += 5 + digits(value.length) + value.length;
  const out = new Uint8Array(size);
  let at = header(out, 0, 42, values.length); // *
  for (const value of values) {
    at = header(out, at, 36, value.length); // $
    out.set(value, at);
    at += value.length;
    out[at++] = 13;
    out[at++] = 10;
  }
  return out;
}

/** UTF-8 bytes of `s`, by hand for ASCII (the usual key or command). */
function utf8(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 127) return encoder.encode(s);
    out[i] = c;
  }
  return out;
}

function digits(n: number): number {
  return n < 10 ? 1 : String(n).length;
}

/** Writes `*N\r\n` or `$N\r\n` at `at`; returns where it ends. */
function header(out: Uint8Array, at: number, type: number, n: number): number {
  out[at++] = type;
  const text = String(n);
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  out[at++] = 13;
  out[at++] = 10;
  return at;
}

/** An incremental RESP2 reply parser. */
export class Parser {
  #buffer = new Uint8Array(0);
  #at = 0;

  /** Adds bytes read from the connection. */
  feed(bytes: Uint8Array): void {
    const rest = this.#buffer.subarray(this.#at);
    const next = new Uint8Array(rest.length + bytes.length);
    next.set(rest);
    next.set(bytes, rest.length);
    this.#buffer = next;
    this.#at = 0;
  }

  /** The next whole reply, or undefined until more bytes arrive. */
  next(): Reply | undefined {
    const start = this.#at;
    const reply = this.#parse();
    if (reply === undefined) this.#at = start;
    return reply;
  }

  #line(): string | undefined {
    const buffer = this.#buffer;
    for (let i = this.#at; i + 1 < buffer.length; i++) {
      if (buffer[i] === 13 && buffer[i + 1] === 10) {
        const line = decoder.decode(buffer.subarray(this.#at, i));
        this.#at = i + 2;
        return line;
      }
    }
    return undefined;
  }

  #parse(): Reply | undefined {
    if (this.#at >= this.#buffer.length) return undefined;
    const type = this.#buffer[this.#at++];
    const line = this.#line();
    if (line === undefined) return undefined;
    switch (type) {
      case 43: // +
        return line;
      case 45: // -
        return new ReplyError(line);
      case 58: // :
        return Number(line);
      case 36: { // $
        const length = Number(line);
        if (length < 0) return null;
        if (this.#at + length + 2 > this.#buffer.length) return undefined;
        const value = this.#buffer.slice(this.#at, this.#at + length);
        this.#at += length + 2;
        return value;
      }
      case 42: { // *
        const count = Number(line);
        if (count < 0) return null;
        const items: Reply[] = [];
        for (let i = 0; i < count; i++) {
          const item = this.#parse();
          if (item === undefined) return undefined;
          items.push(item);
        }
        return items;
      }
      default:
        throw new Error(`Unexpected reply type ${String.fromCharCode(type)}`);
    }
  }
}
