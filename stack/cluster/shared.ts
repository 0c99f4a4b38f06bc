/**
 * Shared resources: `/shared/{name}` values kept in Redis, so that every
 * server process of a cluster serves the same state, and an observation
 * through any process is notified of a change made through any other.
 *
 * - `PUT` stores the payload with its Content-Format: 2.01 Created, or 2.04
 *   Changed when the name had a value.
 * - `GET` reads it (4.04 when absent); with Observe 0 it is also notified of
 *   every later change, in the order the changes were made, and ends with a
 *   final 4.04 when the value is deleted.
 * - `DELETE` removes it: 2.02 Deleted.
 * - While the engine is unreachable each of these answers 5.03 Service
 *   Unavailable with Max-Age at once; observations stay registered and get
 *   the current value when the engine is back.
 *
 * Each change is one Lua script in the engine: it bumps the name's version
 * (a counter never deleted, so versions only grow), stores the value and
 * publishes the new state on the name's channel, atomically, so the
 * published order is the order of the changes. Each process subscribes once
 * per observed name, however many observe it, and drops a published state
 * no newer than one it has already passed on.
 *
 * @module
 */

import type { Logger, ResponderPipe } from "@coap/pipe";
export type { Logger };
import type { IncomingRequest, ResponseInit } from "../exchange.ts";
import { CoapError, type Resource } from "../server.ts";
import {
  EngineUnavailable,
  Redis,
  type Reply,
  ReplyError,
  text,
} from "./redis.ts";

/** Options for {@linkcode SharedStore}. */
export interface SharedOptions {
  /**
   * The largest value a PUT may store, in bytes (4.13 past it).
   *
   * @default {65536}
   */
  maxValueSize?: number;
  /**
   * The longest name, in UTF-8 bytes (4.00 past it).
   *
   * @default {256}
   */
  maxNameLength?: number;
  /**
   * The Max-Age of a 5.03 while the engine is unreachable, in seconds: when
   * a client may try again.
   *
   * @default {5}
   */
  retryAfter?: number;
  /**
   * Prepended to every key and channel, so that several clusters can share
   * one engine.
   *
   * @default {"coap:shared:"}
   */
  namespace?: string;
  /**
   * How long an engine command may take, in milliseconds.
   *
   * @default {1000}
   */
  commandTimeout?: number;
  /**
   * Where engine trouble is logged.
   *
   * @default {console}
   */
  log?: Logger;
}

/** A value as stored: its version, Content-Format and bytes. */
interface State {
  version: number;
  /** `undefined` when the value was deleted. */
  value: Uint8Array | undefined;
  contentFormat: number | undefined;
  /** The response for it, made once for all its observers. */
  init?: ResponseInit;
}

/** One observation: what it was last sent, and how to send the next. */
interface Observer {
  /** The version it was last sent; 0 before the first. */
  last: number;
  send(state: State): void;
}

/** The 5.03 a shared resource answers while the engine is away. */
export class ServiceUnavailable extends CoapError {
  readonly #maxAge: number;
  /**
   * Creates the error.
   *
   * @param message The diagnostic.
   * @param maxAge Seconds until a client may try again.
   */
  constructor(message: string, maxAge: number) {
    super("5.03", message);
    this.name = "ServiceUnavailable";
    this.#maxAge = maxAge;
  }

  /**
   * The 5.03 response, with Max-Age.
   *
   * @returns The response.
   */
  override toMessage(): ResponseInit {
    return { ...super.toMessage(), maxAge: this.#maxAge };
  }
}

// KEYS[1] value hash, KEYS[2] version counter, KEYS[3] channel;
// ARGV[1] the value, ARGV[2] the Content-Format or "-".
const PUT = `
local v = redis.call('INCR', KEYS[2])
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'cf', ARGV[2], 'v', v)
redis.call('PUBLISH', KEYS[3], v .. ' ' .. ARGV[2] .. ' ' .. ARGV[1])
return {v, existed}`;

const DELETE = `
local n = redis.call('DEL', KEYS[1])
if n == 1 then
  local v = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', KEYS[3], v .. ' x')
end
return n`;

// The version counter (never deleted, so newer than any deletion) and the
// value; a missing one reads as nil.
const READ = `
local h = redis.call('HMGET', KEYS[1], 'cf', 'value')
return {redis.call('GET', KEYS[2]), h[1], h[2]}`;

const encoder = new TextEncoder();

/**
 * The shared resources of one server process, on one engine: a command
 * connection and a subscriber, each made again whenever it drops.
 */
export class SharedStore {
  readonly #commands: Redis;
  readonly #subscriber: Redis;
  readonly #namespace: string;
  readonly #maxValueSize: number;
  readonly #maxNameLength: number;
  readonly #retryAfter: number;
  readonly #log: Logger;
  /** Set when a connection dropped, until every observer was resynced. */
  #away = false;
  /** Observed names: their observers and the newest version passed on. */
  readonly #watched = new Map<
    string,
    { observers: Set<Observer>; version: number }
  >();

  /**
   * Connects to the engine at `url` (`redis://host:port`).
   *
   * @param url The engine.
   * @param options See {@linkcode SharedOptions}.
   */
  constructor(url: string, options: SharedOptions = {}) {
    this.#namespace = options.namespace ?? "coap:shared:";
    this.#maxValueSize = options.maxValueSize ?? 65536;
    this.#maxNameLength = options.maxNameLength ?? 256;
    this.#retryAfter = options.retryAfter ?? 5;
    this.#log = options.log ?? console;
    const common = {
      commandTimeout: options.commandTimeout,
      log: this.#log,
    };
    // Back after an outage (both connections up again): every observer
    // gets the current value.
    const away = () => this.#away = true;
    this.#commands = new Redis(url, {
      ...common,
      onUp: () => {
        this.#load();
        this.#resync();
      },
      onDown: away,
    });
    this.#subscriber = new Redis(url, {
      ...common,
      onMessage: (channel, payload) => this.#published(channel, payload),
      onUp: () => this.#resync(),
      onDown: away,
    });
  }

  /** Resolves once both connections made their first attempt. */
  async ready(): Promise<boolean> {
    const [a, b] = await Promise.all([
      this.#commands.ready,
      this.#subscriber.ready,
    ]);
    return a && b;
  }

  /** Whether the engine is reachable now. */
  get up(): boolean {
    return this.#commands.up && this.#subscriber.up;
  }

  /** Names this process is subscribed to: one per observed name. */
  get subscriptions(): number {
    return this.#subscriber.channels;
  }

  /** Observations of shared resources in this process. */
  get observations(): number {
    let count = 0;
    for (const { observers } of this.#watched.values()) {
      count += observers.size;
    }
    return count;
  }

  /** The resource to serve under a prefix: `{ "/shared/*": store.resource }`. */
  get resource(): Resource {
    return {
      observable: true,
      GET: (request, pipe) => this.#get(request, pipe),
      PUT: (request) => this.#put(request),
      DELETE: (request) => this.#delete(request),
    };
  }

  /** Closes both connections. */
  close(): void {
    this.#commands.close();
    this.#subscriber.close();
  }

  #name(request: IncomingRequest): string {
    if (request.segments.length !== 2 || request.segments[1] === "") {
      throw new CoapError(
        "4.04",
        `Not Found: a shared resource is /${
          request.segments[0]
        }/{name}, one segment`,
      );
    }
    const name = request.segments[1];
    if (encoder.encode(name).length > this.#maxNameLength) {
      throw new CoapError(
        "4.00",
        `Bad Request: a name has at most ${this.#maxNameLength} bytes`,
      );
    }
    return name;
  }

  #keys(name: string): [string, string, string] {
    const ns = this.#namespace;
    return [
      `${ns}value:${name}`,
      `${ns}version:${name}`,
      `${ns}changes:${name}`,
    ];
  }

  /** SHA-1 digests of the scripts, once computed (for EVALSHA). */
  readonly #digests = new Map<string, Promise<string>>();

  /**
   * Runs a script by its digest (EVALSHA), sending its text only when the
   * engine does not have it yet (after a restart, say).
   */
  async #script(
    source: string,
    keys: string[],
    ...args: (string | Uint8Array)[]
  ): Promise<Reply> {
    let digest = this.#digests.get(source);
    if (digest === undefined) {
      digest = crypto.subtle.digest("SHA-1", encoder.encode(source)).then(
        (hash) =>
          [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0"))
            .join(""),
      );
      this.#digests.set(source, digest);
    }
    try {
      return await this.#run(
        "EVALSHA",
        await digest,
        keys.length,
        ...keys,
        ...args,
      );
    } catch (error) {
      if (
        !(error instanceof ReplyError) || !error.message.startsWith("NOSCRIPT")
      ) {
        throw error;
      }
      return await this.#run("EVAL", source, keys.length, ...keys, ...args);
    }
  }

  /**
   * Loads the scripts into the engine (SCRIPT LOAD) whenever the command
   * connection comes up, so that a burst of requests after a (re)start
   * finds them by digest (the SHA-1 `#script` computes too) instead of each
   * falling back to sending the text.
   */
  #load(): void {
    for (const source of [PUT, DELETE, READ]) {
      this.#commands.command("SCRIPT", "LOAD", source).catch(() => {
        // The fallback in #script covers a script that did not load.
      });
    }
  }

  /** Runs a command; an unreachable engine is a 5.03 with Max-Age. */
  async #run(...args: (string | number | Uint8Array)[]): Promise<Reply> {
    let reply: Reply;
    try {
      reply = await this.#commands.command(...args);
    } catch (error) {
      if (error instanceof EngineUnavailable) {
        throw new ServiceUnavailable(
          `Service Unavailable: the shared store is unreachable (${error.message})`,
          this.#retryAfter,
        );
      }
      throw error;
    }
    if (reply instanceof ReplyError) throw reply;
    return reply;
  }

  async #put(request: IncomingRequest): Promise<ResponseInit> {
    const name = this.#name(request);
    if (request.payload.length > this.#maxValueSize) {
      throw new CoapError(
        "4.13",
        `Request Entity Too Large: at most ${this.#maxValueSize} bytes`,
      );
    }
    const [value, version, channel] = this.#keys(name);
    const cf = request.contentFormat === undefined
      ? "-"
      : String(request.contentFormat);
    const reply = await this.#script(
      PUT,
      [value, version, channel],
      request.payload,
      cf,
    ) as number[];
    return { code: reply[1] === 1 ? "2.04" : "2.01" };
  }

  async #delete(request: IncomingRequest): Promise<ResponseInit> {
    const name = this.#name(request);
    const [value, version, channel] = this.#keys(name);
    await this.#script(DELETE, [value, version, channel]);
    return { code: "2.02" };
  }

  async #read(name: string): Promise<State> {
    const [key, counter] = this.#keys(name);
    const [version, cf, value] = await this.#script(
      READ,
      [key, counter],
    ) as (Uint8Array | null)[];
    return {
      version: version === null ? 0 : Number(text(version)),
      value: value ?? undefined,
      contentFormat: cf === null || text(cf) === "-"
        ? undefined
        : Number(text(cf)),
    };
  }

  async #get(
    request: IncomingRequest,
    pipe: ResponderPipe<IncomingRequest, ResponseInit>,
  ): Promise<ResponseInit | void> {
    const name = this.#name(request);
    if (request.observe !== 0) return answer(await this.#read(name));
    // Subscribed (and confirmed) before the value is read: no change made
    // after the read can be missed, and one made before it is dropped as
    // stale by its version.
    const observer: Observer = {
      last: 0,
      send(state) {
        if (state.value === undefined) {
          pipe.addResponse({ code: "4.04", payload: "Deleted" }, true);
        } else pipe.addResponse(state.init ??= answer(state));
      },
    };
    await this.#watch(name, observer);
    let current: State;
    try {
      current = await this.#read(name);
    } catch (error) {
      this.#unwatch(name, observer);
      throw error;
    }
    if (current.value === undefined) {
      this.#unwatch(name, observer);
      return answer(current);
    }
    // Interest may have ended while the engine answered.
    if (pipe.ended) {
      this.#unwatch(name, observer);
      return;
    }
    offer(observer, current);
    return new Promise<void>((resolve) =>
      pipe.onInterestEnd(() => {
        this.#unwatch(name, observer);
        resolve();
      })
    );
  }

  async #watch(name: string, observer: Observer): Promise<void> {
    let watch = this.#watched.get(name);
    if (watch === undefined) {
      watch = { observers: new Set(), version: 0 };
      this.#watched.set(name, watch);
    }
    watch.observers.add(observer);
    try {
      await this.#subscriber.subscribe(this.#keys(name)[2]);
    } catch (error) {
      this.#unwatch(name, observer);
      throw new ServiceUnavailable(
        `Service Unavailable: the shared store is unreachable (${
          (error as Error).message
        })`,
        this.#retryAfter,
      );
    }
  }

  #unwatch(name: string, observer: Observer): void {
    const watch = this.#watched.get(name);
    if (watch === undefined || !watch.observers.delete(observer)) return;
    if (watch.observers.size === 0) {
      this.#watched.delete(name);
      this.#subscriber.unsubscribe(this.#keys(name)[2]);
    }
  }

  /** A state published on a name's channel: `v cf value` or `v x`. */
  #published(channel: string, payload: Uint8Array): void {
    const prefix = `${this.#namespace}changes:`;
    if (!channel.startsWith(prefix)) return;
    const name = channel.slice(prefix.length);
    const watch = this.#watched.get(name);
    if (watch === undefined) return;
    const first = payload.indexOf(32);
    const version = Number(text(payload.subarray(0, first)));
    const second = payload.indexOf(32, first + 1);
    let state: State;
    if (second === -1) {
      state = { version, value: undefined, contentFormat: undefined };
    } else {
      const cf = text(payload.subarray(first + 1, second));
      state = {
        version,
        value: payload.subarray(second + 1),
        contentFormat: cf === "-" ? undefined : Number(cf),
      };
    }
    this.#deliver(watch, state);
  }

  #deliver(
    watch: { observers: Set<Observer>; version: number },
    state: State,
  ): void {
    // Never a stale state after a newer one.
    if (state.version <= watch.version) return;
    watch.version = state.version;
    for (const observer of [...watch.observers]) offer(observer, state);
  }

  /**
   * After the engine was away: every observed name's current value, to
   * every observer that has not had it. The engine is the truth, also when
   * it came back without its data (versions then start again, and the value
   * may be gone: its observers get a final 4.04).
   */
  #resync(): void {
    if (!this.#commands.up || !this.#subscriber.up || !this.#away) return;
    this.#away = false;
    for (const [name, watch] of this.#watched) {
      this.#read(name).then(
        (state) => {
          if (this.#watched.get(name) !== watch) return;
          if (state.version >= watch.version) {
            // Changed while away, or not: sent only if newer.
            this.#deliver(watch, state);
            return;
          }
          // Older than what was passed on: the engine lost its data.
          watch.version = state.version;
          for (const observer of [...watch.observers]) {
            observer.last = 0;
            offer(observer, state);
          }
        },
        (error) =>
          this.#log.warn(
            `Cannot read /shared/${name} after the engine came back`,
            error,
          ),
      );
    }
  }
}

/** Sends `state` to an observer that has not had it or a newer one. */
function offer(observer: Observer, state: State): void {
  if (state.version <= observer.last && observer.last !== 0) return;
  observer.last = state.version;
  observer.send(state);
}

function answer(state: State): ResponseInit {
  if (state.value === undefined) {
    throw new CoapError("4.04", "Not Found");
  }
  return {
    payload: state.value,
    ...(state.contentFormat === undefined
      ? {}
      : { contentFormat: state.contentFormat }),
  };
}
