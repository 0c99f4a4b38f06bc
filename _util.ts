// This module is browser compatible.
// Internal helpers shared by the pipe classes; not part of the public API.

import type {
  ExceptionEvent,
  InterestEndEvent,
  Logger,
  ResponseEvent,
} from "./events.ts";
import { Inspectable, preview } from "./inspectable.ts";

/**
 * The class behind every event: read-only accessors over private fields on
 * a frozen prototype, as DOM events have, so an assignment changes nothing
 * (a TypeError in strict code); `toJSON()` gives a plain copy. Events are
 * not frozen one by one: a freeze cost about three times the whole dispatch
 * of an event, and what it guarded against (adding a property to one's own
 * event, or redefining it with `Object.defineProperty`) is the caller's
 * business, as with DOM events.
 */
class PipeEventImpl extends Inspectable {
  readonly #kind: string;
  readonly #message: unknown;
  readonly #exception: unknown;
  readonly #isLast: boolean;

  constructor(
    kind: string,
    message: unknown,
    exception: unknown,
    isLast: boolean,
  ) {
    super();
    this.#kind = kind;
    this.#message = message;
    this.#exception = exception;
    this.#isLast = isLast;
  }
  get kind(): string {
    return this.#kind;
  }
  get message(): unknown {
    return this.#message;
  }
  get exception(): unknown {
    return this.#exception;
  }
  get isLast(): boolean {
    return this.#isLast;
  }
  toJSON(): object {
    return {
      kind: this.#kind,
      message: this.#message,
      exception: this.#exception,
      isLast: this.#isLast,
    };
  }
  override toString(format: (value: unknown) => string = preview): string {
    return `{ kind: ${format(this.#kind)}, message: ${
      format(this.#message)
    }, exception: ${format(this.#exception)}, isLast: ${this.#isLast} }`;
  }
}

Object.freeze(PipeEventImpl.prototype);

/**
 * The one end-of-interest event, shared by every pipe; it is frozen, so
 * that nothing added to it by one caller is seen by another.
 */
export const END_EVENT: InterestEndEvent = /* @__PURE__ */ Object.freeze(
  new PipeEventImpl("interestEnd", undefined, undefined, true),
) as unknown as InterestEndEvent;

/** Builds a response event. */
export function responseEvent<Res>(
  message: Res,
  isLast: boolean,
): ResponseEvent<Res> {
  return new PipeEventImpl(
    "response",
    message,
    undefined,
    isLast,
  ) as unknown as ResponseEvent<Res>;
}

/** Builds an exception event. */
export function exceptionEvent(exception: unknown): ExceptionEvent {
  return new PipeEventImpl(
    "exception",
    undefined,
    exception,
    true,
  ) as unknown as ExceptionEvent;
}

/**
 * Logs through `owner.log` at `level`. A logger that throws (or that cannot
 * even be read: a hand-made responder's getter) changes no outcome: the throw
 * is reported like a callback error and the caller goes on.
 */
export function log(
  owner: { readonly log: Logger },
  level: "debug" | "info" | "warn" | "error",
  ...data: unknown[]
): void {
  try {
    owner.log[level](...data);
  } catch (error) {
    reportCallbackError(error);
  }
}

/** Logs a response added to an ended pipe, which drops it. */
export function lateResponse(pipe: { log: Logger }, response: unknown): void {
  log(
    pipe,
    "warn",
    "Response added to a pipe that has already ended; dropped",
    response,
    pipe,
  );
}

/** Logs an exception added to an ended pipe, which drops it. */
export function lateException(
  pipe: { log: Logger },
  exception: unknown,
): void {
  log(
    pipe,
    "error",
    "Exception added to a pipe that has already ended; dropped",
    exception,
    pipe,
  );
}

/** Warns of an interest-end callback registered on an ended pipe. */
export function lateHook(pipe: { log: Logger }): void {
  log(
    pipe,
    "warn",
    "Interest-end callback registered on a pipe that has already ended",
    pipe,
  );
}

/**
 * Reports an error thrown by a callback the way the platform reports listener
 * errors, without letting it reach whoever caused the callback to run.
 */
export function reportCallbackError(error: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void })
    .reportError;
  if (typeof report === "function") {
    report(error);
  } else {
    queueMicrotask(() => {
      throw error;
    });
  }
}

/**
 * Calls a callback (with the event, if one is given), reporting what it
 * throws instead of throwing; its return value is ignored.
 */
export function invoke<E>(callback: (event: E) => unknown, event?: E): void {
  try {
    // Interest-end callbacks and poke handlers are called with nothing.
    if (event === undefined) (callback as () => unknown)();
    else callback(event);
  } catch (error) {
    reportCallbackError(error);
  }
}

/** `Symbol.dispose` where the platform has it. */
const dispose: symbol | undefined = (Symbol as { dispose?: symbol }).dispose;

/** Makes `fn` disposable (`using`): disposing it calls it. */
export function disposable(fn: () => void): (() => void) & Disposable {
  if (dispose !== undefined) {
    (fn as unknown as Record<symbol, unknown>)[dispose] = fn;
  }
  return fn as (() => void) & Disposable;
}

/** A function that does nothing, also disposable. */
export const noop: (() => void) & Disposable = /* @__PURE__ */ disposable(
  (): void => {},
);

/**
 * Throws a `TypeError` unless `typeof value` is `type`: "Cannot call
 * `where`: `name` must be a `type`, got …".
 */
export function assertType(
  value: unknown,
  type: "function" | "boolean" | "string",
  name: string,
  where: string,
): void {
  // (`type` is one of typeof's own results, typed as such.)
  // deno-lint-ignore valid-typeof
  if (typeof value !== type) {
    throw new TypeError(
      `Cannot call ${where}: ${name} must be a ${type}, got ${
        value === null ? "null" : typeof value
      }`,
    );
  }
}

/**
 * Throws a `TypeError` unless `log` has console-style logging methods; its
 * message starts with `context` ("Cannot create a Pipe").
 */
export function assertLogger(log: unknown, context: string): void {
  if (log === console) return;
  // (A primitive is read through its prototype, which has none of them.)
  const l = (log ?? {}) as Record<string, unknown>;
  // Every pipe checks its logger: four named reads in order, with no
  // closure, no message built in advance, and no keyed read by a varying
  // name (megamorphic, and most of the cost before).
  let missing: string | undefined;
  try {
    if (typeof l.debug !== "function") missing = "debug";
    else if (typeof l.info !== "function") missing = "info";
    else if (typeof l.warn !== "function") missing = "warn";
    else if (typeof l.error !== "function") missing = "error";
  } catch (error) {
    throw new TypeError(`${context}: log cannot be read`, { cause: error });
  }
  if (missing !== undefined) {
    throw new TypeError(
      `${context}: log must have a ${missing}() method`,
    );
  }
}

/**
 * Reads from an argument; a read that throws (a getter, a hostile Proxy)
 * becomes a `TypeError` with `message` at the call that passed it.
 */
export function readArgument<T>(read: () => T, message: string): T {
  try {
    return read();
  } catch (error) {
    throw new TypeError(message, { cause: error });
  }
}

/**
 * The poke handlers of a pipe: registration returns an idempotent remover,
 * a poke calls every handler registered at the time, in order. `clear()`
 * lets go of every handler, also those a remover still points at.
 */
export class PokeHandlers {
  #entries: { fn: (() => void) | undefined }[] = [];
  /** Removed entries still in `#entries`; compacted at half. */
  #removed = 0;

  add(handler: () => void): () => void {
    const entry: { fn: (() => void) | undefined } = { fn: handler };
    // Pushing (not copying) keeps registration amortized O(1); a poke in
    // progress stops at the count it started with.
    this.#entries.push(entry);
    return () => {
      if (entry.fn === undefined) return;
      entry.fn = undefined;
      if (++this.#removed * 2 > this.#entries.length) {
        this.#entries = this.#entries.filter((e) => e.fn !== undefined);
        this.#removed = 0;
      }
    };
  }

  /** Entries held, removed ones not yet compacted included (for tests). */
  get held(): number {
    return this.#entries.length;
  }

  fire(): void {
    const entries = this.#entries;
    const count = entries.length;
    for (let i = 0; i < count; i++) {
      const fn = entries[i].fn;
      if (fn !== undefined) invoke(fn);
    }
  }

  clear(): void {
    for (const entry of this.#entries) entry.fn = undefined;
    this.#entries = [];
    this.#removed = 0;
  }
}
