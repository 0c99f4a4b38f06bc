// This module is browser compatible.

import {
  assertLogger,
  assertType,
  disposable,
  END_EVENT,
  exceptionEvent,
  invoke,
  lateException,
  lateHook,
  lateResponse,
  log,
  noop,
  PokeHandlers,
  readArgument,
  reportCallbackError,
  responseEvent,
} from "./_util.ts";
import { formatSafely, Inspectable, preview } from "./inspectable.ts";
import type { EventCallback, Logger, PipeEvent } from "./events.ts";

export type {
  EventCallback,
  ExceptionEvent,
  InterestEndEvent,
  Logger,
  PipeEvent,
  ResponseEvent,
} from "./events.ts";

/**
 * The side of a pipe the responder sees. {@linkcode Pipe} and
 * {@linkcode IterablePipe} both implement it, and
 * {@linkcode runDrivingPipe} and {@linkcode errorToMessage} accept either.
 *
 * @typeParam Req The type of the request.
 * @typeParam Res The type of response messages.
 *
 * @example A responder that works on any pipe
 * ```ts
 * import { Pipe, type ResponderPipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * function respond(pipe: ResponderPipe<string, string>): void {
 *   pipe.addResponse(`echo ${pipe.request}`, true);
 * }
 *
 * const pipe = new Pipe<string, string>("hello");
 * const got: unknown[] = [];
 * pipe.onEvent((event) => got.push(event.message));
 * respond(pipe);
 * assertEquals(got, ["echo hello"]);
 * ```
 */
export interface ResponderPipe<Req, Res> {
  /** The request the responder answers. */
  readonly request: Req;
  /** Where the pipe logs dropped events and similar trouble. */
  readonly log: Logger;
  /**
   * Whether the pipe has ended: a final event was added, or interest in
   * responses ended. A responder that awaited something (an engine round
   * trip, say) asks this before it registers an interest-end hook or adds
   * more: events added after the end are dropped, and a hook registered
   * then runs at once.
   */
  readonly ended: boolean;
  /** Adds a response; `isLast` marks it final. */
  addResponse(response: Res, isLast?: boolean): void;
  /** Adds an exception, which is always final. */
  addException(exception: unknown): void;
  /** Calls `callback` exactly once, when interest in responses ends. */
  onInterestEnd(callback: () => void): void;
  /**
   * Calls `handler` whenever the requester asks for a life sign; returns a
   * function that unregisters it.
   */
  onPoke(handler: () => void): () => void;
}

/**
 * Options for {@linkcode Pipe.prototype.onEvent}, the `addEventListener`
 * style alternative to the boolean `isInterest`.
 */
export interface OnEventOptions {
  /**
   * Whether the callback counts as interest in responses.
   *
   * @default {true}
   */
  isInterest?: boolean;
  /** Unregisters the callback when aborted, as `addEventListener` does. */
  signal?: AbortSignal;
}

/**
 * Unregisters a callback when called. It is also disposable, so
 * `using off = pipe.onEvent(…)` unregisters at the end of the block.
 */
export interface Unregister extends Disposable {
  /** Unregisters the callback; idempotent. */
  (): void;
}

/** What an entry is: an event callback (with or without interest) or a hook. */
const OBSERVER = 0, INTEREST = 1, HOOK = 2;

interface Entry<Res> {
  /** The pipe, for the entry's unregister function. */
  pipe: Pipe<unknown, Res>;
  /** The callback; `undefined` once it has been removed. */
  fn: EventCallback<Res> | (() => void) | undefined;
  /**
   * `INTEREST` keeps the pipe alive; `HOOK` is an interest-end callback,
   * called only on a final event or at the end; `OBSERVER` is neither.
   */
  role: number;
  /** Detaches from the callback's abort signal, if it has one. */
  detach: (() => void) | undefined;
}

/**
 * Bits of `Pipe.#state`. `TOLD` is set while an interest-end callback runs
 * inside a final delivery: the responder has been told, so its adds are
 * late, not re-entrant. `POKED` marks a poke that waits for a delivery to
 * end. Above the flags, `Pipe.#state` counts removed entries that still
 * take room in `#entries` (in units of `REMOVED`).
 */
const ENDED = 1, DELIVERING = 2, DIRTY = 4, TOLD = 8, POKED = 16;
const FLAGS = 31, REMOVED = 32;

const NO_ENTRIES: never[] = /* @__PURE__ */ Object.freeze([]) as never[];

/**
 * The meeting point between one request and the responses that come back on
 * it (aiocoap's `Pipe`).
 *
 * The requester creates the pipe, registers event callbacks with
 * {@linkcode Pipe.prototype.onEvent}, and hands the pipe to a responder. The
 * responder adds responses (the last one marked final) or an exception, and
 * learns through {@linkcode Pipe.prototype.onInterestEnd} when nobody wants
 * responses any more. The pipe ends when a final event has been delivered or
 * when no interested callback is left.
 *
 * @typeParam Req The type of the request.
 * @typeParam Res The type of response messages.
 *
 * @example A request with two responses
 * ```ts
 * import { Pipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const trace: string[] = [];
 * const pipe = new Pipe<string, string>("GET /counter");
 * pipe.onEvent((event) => {
 *   trace.push(`${event.kind} ${event.message} last=${event.isLast}`);
 *   return true; // stay registered
 * });
 *
 * // The responder's side:
 * pipe.onInterestEnd(() => trace.push("interest ended"));
 * pipe.addResponse("1");
 * pipe.addResponse("2", true);
 *
 * assertEquals(trace, [
 *   "response 1 last=false",
 *   "response 2 last=true",
 *   "interest ended",
 * ]);
 * ```
 */
export class Pipe<Req, Res> extends Inspectable
  implements ResponderPipe<Req, Res> {
  /** The request this pipe carries. */
  readonly request: Req;
  /** Where the pipe logs dropped events and similar trouble. */
  readonly log: Logger;

  /** Registration order; shared and empty until the first registration. */
  #entries: Entry<Res>[] = NO_ENTRIES;
  /** Live entries with the `INTEREST` role. */
  #interests = 0;
  /**
   * `ENDED`; `DELIVERING` while events or the end are being delivered to
   * callbacks; `DIRTY` while removed entries await compaction; `TOLD`,
   * `POKED`, and the count of removed entries above the flags. One field
   * rather than three keeps an idle pipe small.
   */
  #state = 0;
  #pokes: PokeHandlers | undefined;

  /**
   * Creates a pipe around a request.
   *
   * @param request The request the pipe carries.
   * @param log Where to log dropped events and similar trouble; `console`
   * when omitted.
   * @throws {TypeError} If `log` lacks a `debug`, `info`, `warn` or `error`
   * method.
   */
  constructor(request: Req, log?: Logger) {
    super();
    if (log === undefined) log = console;
    assertLogger(log, "Cannot create a Pipe");
    this.request = request;
    this.log = log;
  }

  /** Whether the pipe has ended: by a final event, or by loss of interest. */
  get ended(): boolean {
    return (this.#state & ENDED) !== 0;
  }

  /**
   * Registers a callback for the pipe's events (aiocoap's `on_event`).
   *
   * Callbacks run in registration order. One that returns a truthy value
   * stays registered; otherwise it is removed after that call. A callback
   * never receives more than one event with `isLast` set, and is never called
   * after it was removed or after the pipe ended. A callback that throws is
   * reported (with `reportError` where the platform has it) and removed; the
   * other callbacks still run.
   *
   * With `isInterest` false the callback does not keep the pipe alive; if it
   * is still registered when the pipe ends by loss of interest, it receives
   * the end-of-interest event. Registering on an ended pipe logs a warning
   * and delivers the end-of-interest event at once (aiocoap crashes here).
   *
   * Instead of the boolean, `options` may be an object with `isInterest`
   * and a `signal` whose abort unregisters the callback, the way
   * `addEventListener` does; with a signal that has already aborted, nothing
   * is registered.
   *
   * @param callback Called with each event.
   * @param options Whether the callback counts as interest in responses
   * (`true` when omitted), or an {@linkcode OnEventOptions} object.
   * @returns A function that unregisters the callback, also disposable
   * (`using off = pipe.onEvent(…)`). It is idempotent and does nothing once
   * the pipe has ended. Removing the last interested callback ends the pipe.
   * @throws {TypeError} If `callback` is not a function, `isInterest` is not
   * a boolean, or `signal` is not an `AbortSignal`.
   *
   * @example Unregistering the last interest ends the pipe
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const trace: string[] = [];
   * const pipe = new Pipe<string, string>("GET /obs");
   * const stop = pipe.onEvent(() => true);
   * pipe.onEvent((event) => trace.push(`observer saw ${event.kind}`), false);
   * pipe.onInterestEnd(() => trace.push("responder told to stop"));
   * stop();
   * assertEquals(trace, [
   *   "observer saw interestEnd",
   *   "responder told to stop",
   * ]);
   * ```
   */
  onEvent(
    callback: EventCallback<Res>,
    options?: boolean | OnEventOptions,
  ): Unregister {
    if (options === undefined) options = true;
    assertType(callback, "function", "callback", "Pipe.onEvent()");
    let isInterest: unknown = options;
    let signal: AbortSignal | undefined;
    if (typeof options === "object" && options !== null) {
      const o = options;
      [isInterest, signal] = readArgument(
        () => [o.isInterest ?? true, o.signal],
        "Cannot call Pipe.onEvent(): options cannot be read",
      );
    }
    assertType(isInterest, "boolean", "isInterest", "Pipe.onEvent()");
    if (signal !== undefined && readSignal(signal)) {
      return noop;
    }
    if (this.#state & ENDED) {
      log(
        this,
        "warn",
        "Event callback registered on a pipe that has already ended",
        this,
      );
      invoke(callback, END_EVENT);
      return noop;
    }
    const entry: Entry<Res> = {
      pipe: this as Pipe<unknown, Res>,
      fn: callback,
      role: isInterest ? INTEREST : OBSERVER,
      detach: undefined,
    };
    // A bound function, not a closure: no context kept for as long as the
    // callback is registered (an idle observation pays for each byte).
    const unregister = disposable(this.#unregisterEntry.bind(entry));
    if (signal !== undefined) entry.detach = listen(signal, unregister);
    this.#add(entry);
    if (isInterest) this.#interests++;
    return unregister;
  }

  /**
   * Registers a callback that runs exactly once when interest in responses
   * ends (aiocoap's `on_interest_end`): at once if no interested callback is
   * registered right now, otherwise when a final event is delivered or the
   * last interested callback goes away. While interest exists, it runs at its
   * registration position among the event callbacks.
   *
   * On a pipe that has already ended it runs at once, after a warning.
   *
   * @param callback Called once interest has ended.
   * @throws {TypeError} If `callback` is not a function.
   *
   * @example Learning that nobody is listening
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new Pipe<string, string>("GET /obs");
   * let stopped = false;
   * pipe.onInterestEnd(() => stopped = true);
   * assertEquals(stopped, true); // nothing was interested to begin with
   * ```
   */
  onInterestEnd(callback: () => void): void {
    assertType(callback, "function", "callback", "Pipe.onInterestEnd()");
    if (this.#state & ENDED) {
      lateHook(this);
      invoke(callback);
    } else if (this.#interests === 0) {
      invoke(callback);
    } else {
      this.#add({
        pipe: this as Pipe<unknown, Res>,
        fn: callback,
        role: HOOK,
        detach: undefined,
      });
    }
  }

  /**
   * Asks the responder for a life sign (aiocoap's `poke`): calls the handlers
   * registered with {@linkcode Pipe.prototype.onPoke}. Without handlers, and
   * on an ended pipe, it does nothing.
   *
   * @example Poking a responder
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new Pipe<string, string>("GET /obs");
   * pipe.onEvent(() => true);
   * let pokes = 0;
   * pipe.onPoke(() => pokes++);
   * pipe.poke();
   * assertEquals(pokes, 1);
   * ```
   */
  poke(): void {
    // From inside a delivery the handlers run once it is over, so that a
    // handler may answer at once with addResponse().
    if (this.#state & DELIVERING) {
      if (!(this.#state & ENDED)) this.#state |= POKED;
      return;
    }
    this.#pokes?.fire();
  }

  /**
   * Registers a handler for {@linkcode Pipe.prototype.poke}. Handlers are
   * dropped when the pipe ends; on an ended pipe this does nothing.
   *
   * @param handler Called on each poke.
   * @returns A function that unregisters the handler.
   * @throws {TypeError} If `handler` is not a function.
   *
   * @example Answering a poke with a fresh response
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const got: unknown[] = [];
   * const pipe = new Pipe<string, string>("GET /obs");
   * pipe.onEvent((event) => got.push(event.message));
   * pipe.onPoke(() => pipe.addResponse("still here"));
   * pipe.poke();
   * assertEquals(got, ["still here"]);
   * ```
   */
  onPoke(handler: () => void): () => void {
    assertType(handler, "function", "handler", "Pipe.onPoke()");
    if (this.#state & ENDED) return noop;
    this.#pokes ??= new PokeHandlers();
    return this.#pokes.add(handler);
  }

  /**
   * Adds a response (aiocoap's `add_response`) and delivers it to the event
   * callbacks in order. The pipe ends after a final response, or when no
   * interest is left afterwards. On an ended pipe the response is dropped
   * with a warning.
   *
   * @param response The response.
   * @param isLast Whether this is the final response; `false` when omitted.
   * @throws {TypeError} If `isLast` is not a boolean.
   * @throws {Error} If called from inside one of this pipe's callbacks while
   * it delivers an event or its end.
   *
   * @example Two responses
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const got: unknown[] = [];
   * const pipe = new Pipe<string, number>("GET /n");
   * pipe.onEvent((event) => got.push([event.message, event.isLast]));
   * pipe.addResponse(1);
   * assertEquals(got, [[1, false]]);
   * ```
   */
  addResponse(response: Res, isLast?: boolean): void {
    if (isLast === undefined) isLast = false;
    assertType(isLast, "boolean", "isLast", "Pipe.addResponse()");
    if (this.#state & (ENDED | TOLD)) {
      lateResponse(this, response);
      return;
    }
    if (this.#state & DELIVERING) throw reentrant("a response");
    this.#dispatch(responseEvent(response, isLast));
  }

  /**
   * Adds an exception (aiocoap's `add_exception`), which is always final, and
   * delivers it to the event callbacks in order. On an ended pipe it is
   * dropped and logged as an error.
   *
   * @param exception The thrown value; `undefined` and `null` are fine.
   * @throws {Error} If called from inside one of this pipe's callbacks while
   * it delivers an event or its end.
   *
   * @example An exception is final
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const got: unknown[] = [];
   * const pipe = new Pipe<string, string>("GET /broken");
   * pipe.onEvent((event) => got.push(event.kind, event.isLast));
   * pipe.addException(new Error("disk on fire"));
   * assertEquals(got, ["exception", true]);
   * assertEquals(pipe.ended, true);
   * ```
   */
  addException(exception: unknown): void {
    if (this.#state & (ENDED | TOLD)) {
      lateException(this, exception);
      return;
    }
    if (this.#state & DELIVERING) throw reentrant("an exception");
    this.#dispatch(exceptionEvent(exception));
  }

  #dispatch(event: PipeEvent<Res>): void {
    const entries = this.#entries;
    // Callbacks registered during delivery wait for the next event.
    const count = entries.length;
    const last = event.isLast;
    this.#state |= DELIVERING;
    try {
      for (let i = 0; i < count; i++) {
        const entry = entries[i];
        const fn = entry.fn;
        if (fn === undefined) continue;
        if (entry.role === HOOK) {
          if (last) {
            this.#drop(entry);
            this.#state |= TOLD;
            invoke(fn as () => void);
            this.#state &= ~TOLD;
          }
          continue;
        }
        let keep: unknown;
        try {
          keep = (fn as EventCallback<Res>)(event);
        } catch (error) {
          reportCallbackError(error);
          keep = false;
        }
        // Unlike aiocoap, a final event removes every callback it reached,
        // whatever it returned: nobody gets a second isLast event.
        if ((!keep || last) && entry.fn !== undefined) this.#drop(entry);
      }
    } finally {
      this.#state &= ~DELIVERING;
    }
    if (last || this.#interests === 0) this.#end();
    else {
      if (this.#state & DIRTY) this.#compact();
      if (this.#state & POKED) {
        this.#state &= ~POKED;
        this.#pokes?.fire();
      }
    }
  }

  #add(entry: Entry<Res>): void {
    const entries = this.#entries;
    // Exact-size arrays for the usual few entries (a requester's callback,
    // a driver's and a resource's end hooks): a push onto a short array
    // reserves room for 17 more, and concat() costs more than a literal. A delivery in progress keeps iterating the
    // array it started with, which holds the same entry objects.
    const n = entries.length;
    if (n > 2) entries.push(entry);
    else {
      this.#entries = n === 0
        ? [entry]
        : n === 1
        ? [entries[0], entry]
        : [entries[0], entries[1], entry];
    }
  }

  /** Removes a live entry: it is never called again. */
  #drop(entry: Entry<Res>): void {
    entry.fn = undefined;
    this.#state = (this.#state | DIRTY) + REMOVED;
    if (entry.role === INTEREST) this.#interests--;
    if (entry.detach !== undefined) {
      entry.detach();
      entry.detach = undefined;
    }
  }

  /**
   * An entry's unregister function, bound to the entry: a bound function
   * keeps no closure context for as long as the callback is registered. A
   * private method rather than a static one: a static one is reached by
   * naming the class inside its own body, and bundlers then rename it.
   */
  #unregisterEntry(this: Entry<Res>): void {
    this.pipe.#remove(this);
  }

  #remove(entry: Entry<Res>): void {
    // An ended pipe has dropped every entry, so this does nothing there;
    // while the end is being delivered, it skips a callback not yet reached.
    if (entry.fn === undefined) return;
    this.#drop(entry);
    // During delivery, #dispatch ends or compacts the pipe once it is done.
    if (this.#state & DELIVERING) return;
    if (this.#interests === 0) this.#end();
    // Compacting only once removed entries are half the array keeps any
    // order of unregistering amortized O(1).
    else if ((this.#state >>> 5) * 2 > this.#entries.length) this.#compact();
  }

  #compact(): void {
    this.#entries = this.#entries.filter((entry) => entry.fn !== undefined);
    this.#state &= FLAGS & ~DIRTY;
  }

  #end(): void {
    const entries = this.#entries;
    this.#state = ENDED | DELIVERING;
    this.#entries = NO_ENTRIES;
    this.#interests = 0;
    this.#pokes?.clear();
    this.#pokes = undefined;
    try {
      for (const entry of entries) {
        const fn = entry.fn;
        if (fn === undefined) continue;
        this.#drop(entry);
        if (entry.role === HOOK) invoke(fn as () => void);
        else invoke(fn as EventCallback<Res>, END_EVENT);
      }
    } finally {
      this.#state = ENDED;
    }
  }

  /**
   * Describes the pipe like aiocoap's `repr()`: its request, and how many
   * callbacks and interested callbacks it has, or that it has ended. This is
   * what `console.log`, `Deno.inspect` and Node's `util.inspect` show.
   *
   * @param format Formats the request; by default a short preview.
   * @returns The description.
   *
   * @example Describing a pipe
   * ```ts
   * import { Pipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new Pipe<string, string>("GET /a");
   * pipe.onEvent(() => true);
   * assertEquals(String(pipe), 'Pipe { request: "GET /a", callbacks: 1, interests: 1 }');
   * ```
   */
  override toString(format?: (value: unknown) => string): string {
    const request = formatSafely(format ?? preview, this.request);
    if (this.#state & ENDED) return `Pipe { request: ${request}, ended }`;
    let callbacks = 0;
    for (const entry of this.#entries) {
      if (entry.fn !== undefined && entry.role !== HOOK) callbacks++;
    }
    return `Pipe { request: ${request}, callbacks: ${callbacks}, ` +
      `interests: ${this.#interests} }`;
  }
}

/**
 * Unregisters through `unregister` when `signal` aborts, and returns the
 * function that removes the listener (a failure there is reported, never
 * thrown at the producer). Apart from `onEvent`, so that its closure and
 * context exist only for callbacks registered with a signal.
 */
function listen(signal: AbortSignal, unregister: () => void): () => void {
  // The unregister function is the listener: a bound function, it ignores
  // the event it is called with.
  readArgument(
    () => signal.addEventListener("abort", unregister, { once: true }),
    "Cannot call Pipe.onEvent(): signal.addEventListener() failed",
  );
  return () => {
    try {
      signal.removeEventListener("abort", unregister);
    } catch (error) {
      reportCallbackError(error);
    }
  };
}

/**
 * Checks that `signal` is an AbortSignal (`aborted`, `addEventListener`,
 * `removeEventListener`), reading each once, and returns `aborted`.
 */
function readSignal(signal: AbortSignal): boolean {
  const message = "Cannot call Pipe.onEvent(): signal must be an AbortSignal";
  const aborted = readArgument(
    () =>
      typeof signal === "object" && signal !== null &&
        typeof signal.addEventListener === "function" &&
        typeof signal.removeEventListener === "function"
        ? signal.aborted
        : undefined,
    message,
  );
  if (typeof aborted !== "boolean") throw new TypeError(message);
  return aborted;
}

function reentrant(what: string): Error {
  return new Error(
    `Cannot add ${what} from inside a callback of the same pipe: callbacks must not produce new events`,
  );
}
