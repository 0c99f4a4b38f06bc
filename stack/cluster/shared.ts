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
 * - While the engine is unreachable, slow past the command timeout, or
 *   refusing the credentials, each of these answers 5.03 Service
 *   Unavailable with Max-Age; observations stay registered and get the
 *   current value when the engine is back.
 *
 * Each change is one Lua script in the engine: it bumps the name's version
 * (a counter never deleted, so versions only grow), stores the value and
 * publishes the new state on the name's channel, atomically, so the
 * published order is the order of the changes. Each process subscribes once
 * per observed name, however many observe it, and drops a published state
 * no newer than one it has already passed on.
 *
 * Versions are counted within an epoch: a random id the first script to
 * find none stores in the engine, and every reply and published state
 * carries. An engine that comes back without its data (restarted without
 * persistence, failed over to an empty replica, flushed) has lost the
 * epoch too; the next script makes a new one, and a process that sees it
 * says so in one log line, forgets every version it knew, and sends every
 * observer the current value, or a final 4.04 where there is none. The
 * engine must not evict keys (`maxmemory-policy noeviction`, its default).
 *
 * The engine is reached through node-redis (`@redis/client`): see
 * `engine.ts` for the URL (credentials, database, TLS) and the bounds on
 * its commands.
 *
 * @module
 */

import type { Logger, ResponderPipe } from "@coap/pipe";
export type { Logger };
import type { IncomingRequest, ResponseInit } from "../exchange.ts";
import { CoapError, type Resource } from "../server.ts";
import type { SharedStoreLike } from "../server_cli.ts";
import {
  describeEngine,
  Engine,
  type EngineAddress,
  EngineStatus,
  EngineUnavailable,
  parseEngineUrl,
  type Reply,
} from "./engine.ts";

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
   * How long an engine command may wait for its reply, in milliseconds
   * (5.03 past it).
   *
   * @default {1000}
   */
  commandTimeout?: number;
  /**
   * Engine commands waiting at once, at most, per connection (5.03 past
   * it).
   *
   * @default {10000}
   */
  maxPending?: number;
  /** PEM certificates to trust for a `rediss://` engine. */
  ca?: string;
  /**
   * After the engine lost its data, how long to wait for a change before
   * observers of a name without one get its current state (a final 4.04
   * for a value that is gone), in milliseconds.
   *
   * @default {400}
   */
  lostDataGrace?: number;
  /**
   * Where engine trouble is logged.
   *
   * @default {console}
   */
  log?: Logger;
}

/** A value as stored: its epoch and version, Content-Format and bytes. */
interface State {
  epoch: string;
  version: number;
  /** `undefined` when the value was deleted. */
  value: Uint8Array | undefined;
  contentFormat: number | undefined;
  /** The response for it, made once for all its observers. */
  init?: ResponseInit;
  /** Set on the first state after the engine lost its data. */
  lost?: boolean;
}

/** One observation: what it was last sent, and how to send the next. */
interface Observer {
  /** The version it was last sent; -1 before the first in this epoch. */
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

// Every script first makes sure there is an epoch: the last key, and a
// candidate in the first argument.
const EPOCH = `
local e = redis.call('GET', KEYS[#KEYS])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[#KEYS], e)
end`;

// KEYS value hash, version counter, channel, epoch;
// ARGV the candidate epoch, the value, the Content-Format or "-".
const PUT = `${EPOCH}
local v = redis.call('INCR', KEYS[2])
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'cf', ARGV[3], 'v', v)
redis.call('PUBLISH', KEYS[3], e .. ' ' .. v .. ' ' .. ARGV[3] .. ' ' .. ARGV[2])
return {e, v, existed}`;

const DELETE = `${EPOCH}
local n = redis.call('DEL', KEYS[1])
if n == 1 then
  local v = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', KEYS[3], e .. ' ' .. v .. ' x')
end
return {e, n}`;

// The version counter (never deleted, so newer than any deletion) and the
// value; a missing one reads as nil. KEYS value hash, version counter,
// epoch.
const READ = `${EPOCH}
local h = redis.call('HMGET', KEYS[1], 'cf', 'value')
return {e, redis.call('GET', KEYS[2]), h[1], h[2]}`;

const SCRIPTS = {
  coapSharedPut: { source: PUT, keys: 4 },
  coapSharedDelete: { source: DELETE, keys: 4 },
  coapSharedRead: { source: READ, keys: 3 },
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads a bulk reply (bytes) or a number as text. */
function text(reply: Reply): string {
  return reply instanceof Uint8Array ? decoder.decode(reply) : String(reply);
}

/** A name being observed in this process. */
interface Watch {
  observers: Set<Observer>;
  /** The newest version passed on in this epoch; -1 before the first. */
  version: number;
  /** Resolves once the engine confirmed the name's subscription. */
  subscribed: Promise<void>;
  /** Set when the engine lost its data, until the next state is passed on. */
  lost: boolean;
}

/**
 * The shared resources of one server process, on one engine: a command
 * connection and a subscriber, each made again whenever it drops.
 */
export class SharedStore {
  readonly #commands: Engine;
  readonly #subscriber: Engine;
  readonly #engine: string;
  readonly #namespace: string;
  readonly #maxValueSize: number;
  readonly #maxNameLength: number;
  readonly #retryAfter: number;
  readonly #log: Logger;
  /** The engine's epoch as last seen; `undefined` before the first reply. */
  #epoch: string | undefined;
  /** Set when a connection dropped, until every observer was resynced. */
  #away = false;
  readonly #lostGrace: number;
  #grace: ReturnType<typeof setTimeout> | undefined;
  /** Observed names. */
  readonly #watched = new Map<string, Watch>();

  /**
   * Connects to the engine at `url`: `redis://[[user]:password@]host[:port][/db]`,
   * or `rediss://…` for TLS.
   *
   * @param url The engine.
   * @param options See {@linkcode SharedOptions}.
   * @throws {TypeError} If the URL cannot be used; the message does not
   * repeat it, since it may hold a password.
   */
  constructor(url: string, options: SharedOptions = {}) {
    const address: EngineAddress = parseEngineUrl(url);
    this.#engine = describeEngine(address);
    this.#namespace = options.namespace ?? "coap:shared:";
    this.#maxValueSize = options.maxValueSize ?? 65536;
    this.#maxNameLength = options.maxNameLength ?? 256;
    this.#retryAfter = options.retryAfter ?? 5;
    this.#lostGrace = options.lostDataGrace ?? 400;
    this.#log = options.log ?? console;
    const common = {
      status: new EngineStatus(address, this.#log),
      commandTimeout: options.commandTimeout,
      maxPending: options.maxPending,
      ca: options.ca,
      log: this.#log,
      onDown: () => this.#away = true,
      // Back after an outage (both connections up again): every observer
      // gets the current value.
      onReady: () => this.#resync(),
    };
    this.#commands = new Engine(address, {
      ...common,
      role: "commands",
      scripts: SCRIPTS,
    });
    this.#subscriber = new Engine(address, { ...common, role: "subscriber" });
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

  /** The engine, named without its credentials. */
  get engine(): string {
    return this.#engine;
  }

  /** The engine's epoch as last seen, `undefined` before the first reply. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** Names this process is subscribed to: one per observed name. */
  get subscriptions(): number {
    return this.#watched.size;
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
    clearTimeout(this.#grace);
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

  #keys(name: string) {
    const ns = this.#namespace;
    return {
      value: `${ns}value:${name}`,
      version: `${ns}version:${name}`,
      channel: `${ns}changes:${name}`,
      epoch: `${ns}epoch`,
    };
  }

  #unavailable(error: unknown): unknown {
    if (!(error instanceof EngineUnavailable)) return error;
    return new ServiceUnavailable(
      `Service Unavailable: the shared store cannot be used now (${error.message})`,
      this.#retryAfter,
    );
  }

  /** Runs a script; an engine that does not answer is a 5.03. */
  async #run(
    name: keyof typeof SCRIPTS,
    keys: string[],
    args: (string | Uint8Array)[],
  ): Promise<Reply[]> {
    // A fresh candidate each time: used only where the engine has none.
    const candidate = crypto.randomUUID();
    try {
      return await this.#commands.run(name, keys, [
        candidate,
        ...args,
      ]) as Reply[];
    } catch (error) {
      throw this.#unavailable(error);
    }
  }

  /**
   * Notes the epoch of a reply or a published state. A new one after
   * another means the engine lost its data: every version known here is
   * void, and every observer gets the current value again.
   *
   * @returns Whether the epoch changed.
   */
  #seen(epoch: string): boolean {
    if (epoch === this.#epoch) return false;
    const before = this.#epoch;
    this.#epoch = epoch;
    if (before === undefined) return false;
    this.#log.warn(
      `The engine at ${this.#engine} lost its data (its epoch changed); ${this.observations} observation(s) of ${this.#watched.size} name(s) get the current value, or a 4.04 where there is none`,
    );
    for (const watch of this.#watched.values()) {
      watch.version = -1;
      watch.lost = true;
      for (const observer of watch.observers) observer.last = -1;
    }
    // A change made right after the engine came back (a PUT that was being
    // retried, say) reaches the observers as it is published; those of the
    // names nobody wrote to meanwhile get the current state after a grace,
    // which for a value that is gone is a final 4.04.
    clearTimeout(this.#grace);
    this.#grace = setTimeout(() => {
      this.#grace = undefined;
      this.#refresh();
    }, this.#lostGrace);
    return true;
  }

  async #put(request: IncomingRequest): Promise<ResponseInit> {
    const name = this.#name(request);
    if (request.payload.length > this.#maxValueSize) {
      throw new CoapError(
        "4.13",
        `Request Entity Too Large: at most ${this.#maxValueSize} bytes`,
      );
    }
    const keys = this.#keys(name);
    const cf = request.contentFormat === undefined
      ? "-"
      : String(request.contentFormat);
    const [epoch, , existed] = await this.#run(
      "coapSharedPut",
      [keys.value, keys.version, keys.channel, keys.epoch],
      [request.payload, cf],
    );
    this.#seen(text(epoch));
    return { code: existed === 1 ? "2.04" : "2.01" };
  }

  async #delete(request: IncomingRequest): Promise<ResponseInit> {
    const name = this.#name(request);
    const keys = this.#keys(name);
    const [epoch] = await this.#run(
      "coapSharedDelete",
      [keys.value, keys.version, keys.channel, keys.epoch],
      [],
    );
    this.#seen(text(epoch));
    return { code: "2.02" };
  }

  async #read(name: string): Promise<State> {
    const keys = this.#keys(name);
    const [epoch, version, cf, value] = await this.#run(
      "coapSharedRead",
      [keys.value, keys.version, keys.epoch],
      [],
    ) as [Uint8Array, Uint8Array | null, Uint8Array | null, Uint8Array | null];
    const state: State = {
      epoch: text(epoch),
      version: version === null ? 0 : Number(text(version)),
      value: value ?? undefined,
      contentFormat: cf === null || text(cf) === "-"
        ? undefined
        : Number(text(cf)),
    };
    this.#seen(state.epoch);
    return state;
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
      last: -1,
      send(state) {
        if (state.value === undefined) {
          pipe.addResponse({
            code: "4.04",
            payload: state.lost
              ? "Not Found: the shared store lost its data"
              : "Deleted",
          }, true);
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
    // Interest may have ended while the engine answered, or the value may
    // be gone; either way this observation is over.
    if (current.value === undefined || pipe.ended) {
      this.#unwatch(name, observer);
      if (pipe.ended) return;
      return answer(current);
    }
    if (current.epoch === this.#epoch) offer(observer, current);
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
      const channel = this.#keys(name).channel;
      const created: Watch = {
        observers: new Set(),
        version: -1,
        lost: false,
        subscribed: this.#subscriber.subscribe(
          channel,
          (payload) => this.#published(name, created, payload),
        ),
      };
      watch = created;
      this.#watched.set(name, watch);
      // A failed subscription is forgotten at once, so that the next
      // observer tries again.
      watch.subscribed.catch(() => {
        if (this.#watched.get(name) === created) {
          this.#watched.delete(name);
          this.#subscriber.unsubscribe(channel);
        }
      });
    }
    watch.observers.add(observer);
    try {
      await watch.subscribed;
    } catch (error) {
      this.#unwatch(name, observer);
      throw this.#unavailable(error);
    }
  }

  #unwatch(name: string, observer: Observer): void {
    const watch = this.#watched.get(name);
    if (watch === undefined || !watch.observers.delete(observer)) return;
    if (watch.observers.size === 0) {
      this.#watched.delete(name);
      this.#subscriber.unsubscribe(this.#keys(name).channel);
    }
  }

  /** A state published on a name's channel: `epoch v cf value` or `epoch v x`. */
  #published(name: string, watch: Watch, payload: Uint8Array): void {
    if (this.#watched.get(name) !== watch) return;
    const first = payload.indexOf(32);
    const second = payload.indexOf(32, first + 1);
    const third = payload.indexOf(32, second + 1);
    if (first === -1 || second === -1) return;
    const epoch = text(payload.subarray(0, first));
    const version = Number(text(payload.subarray(first + 1, second)));
    let state: State;
    if (third === -1) {
      state = { epoch, version, value: undefined, contentFormat: undefined };
    } else {
      const cf = text(payload.subarray(second + 1, third));
      state = {
        epoch,
        version,
        value: payload.subarray(third + 1),
        contentFormat: cf === "-" ? undefined : Number(cf),
      };
    }
    this.#seen(epoch);
    this.#deliver(watch, state);
  }

  #deliver(watch: Watch, state: State): void {
    // Never a state of an epoch gone by, nor a stale one after a newer one.
    if (state.epoch !== this.#epoch || state.version <= watch.version) return;
    watch.version = state.version;
    if (watch.lost) {
      watch.lost = false;
      state = { ...state, lost: true };
    }
    for (const observer of [...watch.observers]) offer(observer, state);
  }

  /**
   * After the engine was away: once both connections are ready again, and
   * the subscriptions node-redis makes again are confirmed, every observed
   * name's current value, to every observer that has not had it.
   */
  #resync(): void {
    if (!this.up || !this.#away) return;
    this.#away = false;
    this.#subscriber.barrier().then(
      () => this.#refresh(),
      () => {
        // Down again already: the next onReady resyncs.
        this.#away = true;
      },
    );
  }

  /** Reads every observed name, and offers each observer what it lacks. */
  #refresh(): void {
    for (const [name, watch] of this.#watched) {
      this.#read(name).then(
        (state) => {
          if (this.#watched.get(name) !== watch) return;
          // Within the grace after a loss, only a value is passed on.
          if (this.#grace !== undefined && state.value === undefined) return;
          this.#deliver(watch, state);
        },
        (error) =>
          this.#log.warn(
            `Cannot read /shared/${name} after the engine came back (${
              (error as Error).message
            })`,
          ),
      );
    }
  }
}

// coap:server loads this file through a specifier in a variable; this is
// where the compiler checks that it gets what it expects.
const _serves: SharedStoreLike = {} as SharedStore;

/** Sends `state` to an observer that has not had it or a newer one. */
function offer(observer: Observer, state: State): void {
  if (state.version <= observer.last) return;
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
