// This module is browser compatible.

import {
  assertLogger,
  assertType,
  exceptionEvent,
  invoke,
  lateException,
  lateHook,
  lateResponse,
  noop,
  PokeHandlers,
  readArgument,
  responseEvent,
} from "./_util.ts";
import { formatSafely, Inspectable, preview } from "./inspectable.ts";
import type { Logger, PipeEvent, ResponderPipe } from "./pipe.ts";
import { Queue } from "./_queue.ts";

/** Options for {@linkcode IterablePipe}. */
export interface IterablePipeOptions {
  /**
   * Where to log dropped events and similar trouble.
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * How many non-final events may wait for a lagging consumer. When that
   * many wait, a new non-final event replaces the oldest waiting one
   * (observation semantics: the newest state wins), and
   * {@linkcode IterablePipe.prototype.dropped} counts it. A final response
   * or an exception is never dropped and never blocked.
   *
   * @default {Infinity}
   */
  maxBuffered?: number;
}

/** An iterator's `[Symbol.asyncIterator]()`: the iterator itself. */
function self<T>(this: T): T {
  return this;
}

/** `Symbol.asyncDispose` where the platform has it. */
const asyncDispose: symbol | undefined =
  (Symbol as { asyncDispose?: symbol }).asyncDispose;

/**
 * A stand-in for a {@linkcode Pipe} that the requester consumes with
 * `for await` instead of registering callbacks (aiocoap's `IterablePipe`).
 * To the responder it looks like any other pipe.
 *
 * Iteration yields every event in order, including those added before it
 * began, and completes after the final event. Exceptions are yielded as
 * events, not thrown. Interest ends when the final event is added or when the
 * requester leaves the loop, whichever comes first; interest-end callbacks
 * then run exactly once.
 *
 * @typeParam Req The type of the request.
 * @typeParam Res The type of response messages.
 *
 * @example Consuming responses with `for await`
 * ```ts
 * import { IterablePipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const pipe = new IterablePipe<string, number>("GET /count");
 * // The responder's side:
 * pipe.addResponse(1);
 * pipe.addResponse(2);
 * pipe.addResponse(3, true);
 *
 * const got: unknown[] = [];
 * for await (const event of pipe) got.push(event.message);
 * assertEquals(got, [1, 2, 3]);
 * ```
 *
 * @example Leaving the loop ends interest
 * ```ts
 * import { IterablePipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const pipe = new IterablePipe<string, number>("GET /obs");
 * const trace: string[] = [];
 * pipe.onInterestEnd(() => trace.push("interest ended"));
 * pipe.addResponse(1);
 * pipe.addResponse(2);
 * for await (const event of pipe) {
 *   trace.push(`got ${event.message}`);
 *   break;
 * }
 * assertEquals(trace, ["got 1", "interest ended"]);
 * ```
 */
export class IterablePipe<Req, Res> extends Inspectable
  implements ResponderPipe<Req, Res>, AsyncIterable<PipeEvent<Res>> {
  /** The request this pipe carries. */
  readonly request: Req;
  /** Where the pipe logs dropped events and similar trouble. */
  readonly log: Logger;

  /**
   * The non-final response messages the consumer has not taken yet. Events
   * are built as they are taken, so a long buffer holds no wrappers for the
   * garbage collector to trace.
   */
  #queue: Queue<Res> = new Queue();
  /**
   * The final event once it is added and not yet taken. It is kept apart
   * from the queue so that nothing ever inspects a message to tell the two
   * apart (a message may be a Proxy whose every trap throws).
   */
  #final: PipeEvent<Res> | undefined;
  readonly #max: number;
  #dropped = 0;
  /** Producers waiting for room, from `ready`. */
  #roomWaiters: (() => void)[] = [];
  /** Resolvers of `next()` calls waiting for an event. */
  #waiters: Queue<(result: IteratorResult<PipeEvent<Res>>) => void> =
    new Queue();
  /** Interest-end callbacks; `undefined` once interest has ended. */
  #hooks: (() => void)[] | undefined = [];
  #pokes: PokeHandlers | undefined;
  #iterating = false;
  /** Set once iteration can yield nothing more. */
  #done = false;

  /**
   * Creates an iterable pipe around a request.
   *
   * @param request The request the pipe carries.
   * @param options `log` (`console` when omitted) and `maxBuffered`
   * (`Infinity` when omitted); see {@linkcode IterablePipeOptions}.
   * @throws {TypeError} If `options` is not an options object (a logger,
   * say), `options.log` lacks a logging method, or `options.maxBuffered` is
   * not a number.
   * @throws {RangeError} If `options.maxBuffered` is a number other than a
   * positive integer or `Infinity`.
   */
  constructor(request: Req, options?: IterablePipeOptions) {
    super();
    const what =
      "Cannot create an IterablePipe: expected an options object { log, maxBuffered }";
    // Pipe's argument order passes a logger here; it must not be ignored.
    // (null fails the read, and becomes the same TypeError.)
    const read = readArgument(
      (): [Logger?, number?] | false =>
        options === undefined ? [] : typeof options === "object" &&
          typeof (options as Partial<Logger>).warn !== "function" &&
          [options.log, options.maxBuffered],
      what,
    );
    if (!read) throw new TypeError(what);
    const [log = console, maxBuffered = Infinity] = read;
    assertLogger(log, "Cannot create an IterablePipe");
    // (isInteger is false for anything but a number, so the comparison
    // after it never converts a hostile object.)
    if (
      maxBuffered !== Infinity &&
      !(Number.isInteger(maxBuffered) && maxBuffered >= 1)
    ) {
      throw new (typeof maxBuffered === "number" ? RangeError : TypeError)(
        `Cannot create an IterablePipe: maxBuffered must be a positive integer or Infinity, got ${
          preview(maxBuffered)
        }`,
      );
    }
    this.request = request;
    this.log = log;
    this.#max = maxBuffered;
  }

  /**
   * How many non-final events were dropped because `maxBuffered` of them
   * were already waiting.
   */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Room left for non-final events before the oldest waiting one is
   * dropped, like a WHATWG stream controller's `desiredSize`: `Infinity`
   * without `maxBuffered`, and 0 once interest has ended.
   */
  get desiredSize(): number {
    return this.#hooks === undefined ? 0 : this.#max - this.#queue.size;
  }

  /**
   * A promise for producers that can wait: it resolves at once while there
   * is room (`desiredSize > 0`), otherwise when the consumer takes an event,
   * and in any case when interest ends (check
   * {@linkcode IterablePipe.prototype.ended} after waiting). It never
   * rejects.
   *
   * @example A producer that waits instead of dropping
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, number>("GET /log", {
   *   maxBuffered: 2,
   * });
   * const producing = (async () => {
   *   for (let n = 1; n <= 5; n++) {
   *     await pipe.ready;
   *     if (pipe.ended) return;
   *     pipe.addResponse(n, n === 5);
   *   }
   * })();
   * const got: unknown[] = [];
   * for await (const event of pipe) got.push(event.message);
   * await producing;
   * assertEquals([got, pipe.dropped], [[1, 2, 3, 4, 5], 0]);
   * ```
   */
  get ready(): Promise<void> {
    if (this.#hooks === undefined || this.#queue.size < this.#max) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /**
   * Whether interest has ended: the final event was added, or the requester
   * left the loop.
   */
  get ended(): boolean {
    return this.#hooks === undefined;
  }

  /**
   * Adds a response. A final one ends interest at once, though iteration
   * still yields it. After interest ended the response is dropped with a
   * warning.
   *
   * @param response The response.
   * @param isLast Whether this is the final response; `false` when omitted.
   * @throws {TypeError} If `isLast` is not a boolean.
   *
   * @example A final response completes the iteration
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /");
   * pipe.addResponse("done", true);
   * const kinds: string[] = [];
   * for await (const event of pipe) kinds.push(event.kind);
   * assertEquals(kinds, ["response"]);
   * ```
   */
  addResponse(response: Res, isLast?: boolean): void {
    if (isLast === undefined) isLast = false;
    assertType(isLast, "boolean", "isLast", "IterablePipe.addResponse()");
    if (this.#hooks === undefined) {
      lateResponse(this, response);
      return;
    }
    if (isLast) {
      this.#pushFinal(responseEvent(response, true));
    } else if (this.#waiters.size !== 0) {
      this.#waiters.shift()({
        done: false,
        value: responseEvent(response, false),
      });
    } else {
      // With interest, the queue holds only response messages.
      if (this.#queue.size >= this.#max) {
        this.#queue.shift();
        this.#dropped++;
      }
      this.#queue.push(response);
    }
  }

  /**
   * Adds an exception, which is final and ends interest; iteration yields it
   * as an event. After interest ended it is dropped and logged as an error.
   *
   * @param exception The thrown value; `undefined` and `null` are fine.
   *
   * @example Exceptions arrive as events
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /");
   * pipe.addException(new RangeError("no such sensor"));
   * for await (const event of pipe) {
   *   assertEquals(event.kind, "exception");
   *   assertEquals((event.exception as Error).message, "no such sensor");
   * }
   * ```
   */
  addException(exception: unknown): void {
    if (this.#hooks === undefined) {
      lateException(this, exception);
      return;
    }
    this.#pushFinal(exceptionEvent(exception));
  }

  /**
   * Registers a callback that runs exactly once when interest ends: when the
   * final event is added or the requester leaves the loop, or at once (after
   * a warning) if that has already happened. Unlike aiocoap, this also works
   * after iteration began.
   *
   * @param callback Called once interest has ended.
   * @throws {TypeError} If `callback` is not a function.
   *
   * @example
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /");
   * let ended = 0;
   * pipe.onInterestEnd(() => ended++);
   * pipe.addResponse("bye", true);
   * assertEquals(ended, 1);
   * ```
   */
  onInterestEnd(callback: () => void): void {
    assertType(
      callback,
      "function",
      "callback",
      "IterablePipe.onInterestEnd()",
    );
    if (this.#hooks === undefined) {
      lateHook(this);
      invoke(callback);
    } else {
      this.#hooks.push(callback);
    }
  }

  /**
   * Asks the responder for a life sign: calls the handlers registered with
   * {@linkcode IterablePipe.prototype.onPoke}. Does nothing without handlers
   * or after interest ended.
   *
   * @example
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /obs");
   * pipe.onPoke(() => pipe.addResponse("alive"));
   * pipe.poke();
   * pipe.addResponse("bye", true);
   * const got: unknown[] = [];
   * for await (const event of pipe) got.push(event.message);
   * assertEquals(got, ["alive", "bye"]);
   * ```
   */
  poke(): void {
    this.#pokes?.fire();
  }

  /**
   * Registers a handler for {@linkcode IterablePipe.prototype.poke}. Handlers
   * are dropped when interest ends; after that this does nothing.
   *
   * @param handler Called on each poke.
   * @returns A function that unregisters the handler.
   * @throws {TypeError} If `handler` is not a function.
   *
   * @example
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /obs");
   * let pokes = 0;
   * const off = pipe.onPoke(() => pokes++);
   * pipe.poke();
   * off();
   * pipe.poke();
   * assertEquals(pokes, 1);
   * ```
   */
  onPoke(handler: () => void): () => void {
    assertType(handler, "function", "handler", "IterablePipe.onPoke()");
    if (this.#hooks === undefined) return noop;
    this.#pokes ??= new PokeHandlers();
    return this.#pokes.add(handler);
  }

  /**
   * Starts the one iteration this pipe allows.
   *
   * @returns An iterator over the events. Leaving it early with `return()`
   * or `throw()` (as `break` and exceptions in a `for await` body do), or
   * disposing it (`Symbol.asyncDispose`, where the platform has it), ends
   * interest and releases buffered events.
   * @throws {Error} If the pipe is iterated a second time.
   *
   * @example Iterating by hand
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /");
   * const events = pipe[Symbol.asyncIterator]();
   * const next = events.next();
   * pipe.addResponse("hi", true);
   * assertEquals((await next).value?.message, "hi");
   * assertEquals((await events.next()).done, true);
   * ```
   *
   * @example Leaving a loop from outside it (a Stop button)
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, number>("GET /counter");
   * const events = pipe[Symbol.asyncIterator]();
   * const seen: number[] = [];
   * const loop = (async () => {
   *   for await (const event of events) seen.push(event.message!);
   * })();
   * pipe.addResponse(1);
   * await Promise.resolve();
   * // The loop waits in next(); return() settles it with done.
   * await events.return!();
   * await loop;
   * assertEquals([seen, pipe.ended], [[1], true]);
   * ```
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<PipeEvent<Res>> {
    if (this.#iterating) {
      throw new Error("Cannot iterate an IterablePipe more than once");
    }
    this.#iterating = true;
    const next = () => this.#next();
    const leave = (value?: unknown) => {
      this.#leave();
      return Promise.resolve({ done: true, value } as IteratorResult<
        PipeEvent<Res>
      >);
    };
    const fail = (error?: unknown) => {
      this.#leave();
      return Promise.reject(error);
    };
    // One literal, so every iterator has one shape (adding the dispose key
    // afterwards made every request's loop pay a map transition). Where the
    // platform has no asyncDispose, its key is asyncIterator's, and the
    // line after it wins.
    const iterator: AsyncIterableIterator<PipeEvent<Res>> = {
      next,
      return: leave,
      throw: fail,
      [asyncDispose ?? Symbol.asyncIterator]: () => this[Symbol.asyncDispose](),
      [Symbol.asyncIterator]: self,
    };
    return iterator;
  }

  /**
   * Starts the one iteration this pipe allows as a `ReadableStream` of its
   * events, for code that speaks web streams (for example, to stream
   * observation notifications into a `Response` body). The stream closes
   * after the final event; cancelling it ends interest exactly like leaving
   * a `for await` loop.
   *
   * @returns A stream of the events, pulled one at a time.
   * @throws {Error} If the pipe is already being iterated or streamed.
   *
   * @example Streaming notifications as text lines
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /obs");
   * pipe.addResponse("20 °C");
   * pipe.addResponse("21 °C", true);
   * const lines = pipe.stream().pipeThrough(
   *   new TransformStream({
   *     transform(event, controller) {
   *       controller.enqueue(`${event.message}\n`);
   *     },
   *   }),
   * );
   * assertEquals(await new Response(lines.pipeThrough(new TextEncoderStream())).text(), "20 °C\n21 °C\n");
   * ```
   */
  stream(): ReadableStream<PipeEvent<Res>> {
    const iterator = this[Symbol.asyncIterator]();
    return new ReadableStream<PipeEvent<Res>>({
      pull: (controller) =>
        iterator.next().then((result) =>
          result.done ? controller.close() : controller.enqueue(result.value)
        ),
      cancel: () => iterator.return!().then(noop),
    }, { highWaterMark: 0 });
  }

  /**
   * Ends interest, as leaving the loop does, and releases buffered events:
   * `await using pipe = new IterablePipe(…)` ends interest at the end of the
   * block. A later iteration yields nothing.
   *
   * @returns A promise that resolves once interest-end callbacks have run.
   *
   * @example Ending interest at the end of a block
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const trace: string[] = [];
   * {
   *   await using pipe = new IterablePipe<string, string>("GET /obs");
   *   pipe.onInterestEnd(() => trace.push("interest ended"));
   *   pipe.addResponse("never read");
   *   trace.push("leaving the block");
   * }
   * assertEquals(trace, ["leaving the block", "interest ended"]);
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    this.#leave();
    return Promise.resolve();
  }

  #next(): Promise<IteratorResult<PipeEvent<Res>>> {
    if (this.#queue.size !== 0 || this.#final !== undefined) {
      return Promise.resolve({ done: false, value: this.#take() });
    }
    if (this.#done) {
      return Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #take(): PipeEvent<Res> {
    if (this.#queue.size === 0) {
      const event = this.#final!;
      this.#final = undefined;
      this.#finish();
      return event;
    }
    const item = this.#queue.shift();
    if (this.#roomWaiters.length !== 0) this.#releaseProducers();
    return responseEvent(item, false);
  }

  #pushFinal(event: PipeEvent<Res>): void {
    if (this.#waiters.size !== 0) {
      this.#waiters.shift()({ done: false, value: event });
      this.#finish();
    } else {
      this.#final = event;
    }
    this.#endInterest();
  }

  #releaseProducers(): void {
    const waiters = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /** Nothing more will be yielded: releases whoever waits for more. */
  #finish(): void {
    this.#done = true;
    // (A resolving function runs no code of its caller's: nothing can push
    // a waiter while this loop drains them.)
    const waiters = this.#waiters;
    while (waiters.size !== 0) {
      waiters.shift()({ done: true, value: undefined });
    }
  }

  #leave(): void {
    this.#queue = new Queue();
    this.#final = undefined;
    this.#finish();
    this.#endInterest();
  }

  #endInterest(): void {
    const hooks = this.#hooks;
    if (hooks === undefined) return;
    this.#hooks = undefined;
    this.#pokes?.clear();
    this.#pokes = undefined;
    this.#releaseProducers();
    for (const hook of hooks) invoke(hook);
  }

  /**
   * Describes the pipe: its request, whether interest has ended, how many
   * events are buffered and how many were dropped. This is what
   * `console.log`, `Deno.inspect` and Node's `util.inspect` show.
   *
   * @param format Formats the request; by default a short preview.
   * @returns The description.
   *
   * @example Describing a pipe
   * ```ts
   * import { IterablePipe } from "@coap/pipe";
   * import { assertEquals } from "@std/assert";
   *
   * const pipe = new IterablePipe<string, string>("GET /a");
   * pipe.addResponse("1");
   * assertEquals(String(pipe), 'IterablePipe { request: "GET /a", interested, buffered: 1 }');
   * ```
   */
  override toString(format?: (value: unknown) => string): string {
    const state = this.#hooks === undefined ? "ended" : "interested";
    const dropped = this.#dropped ? `, dropped: ${this.#dropped}` : "";
    return `IterablePipe { request: ${
      formatSafely(format ?? preview, this.request)
    }, ${state}, ` +
      `buffered: ${
        this.#queue.size + (this.#final === undefined ? 0 : 1)
      }${dropped} }`;
  }
}
