// This module is browser compatible.
// Internal helpers shared by the pipe classes; not part of the public API.

import type {
  ExceptionEvent,
  InterestEndEvent,
  Logger,
  ResponseEvent,
} from "./pipe.ts";
import { Inspectable, preview } from "./inspectable.ts";

/**
 * The class behind every event: read-only accessors over private fields.
 * Building one costs about a third of a frozen object literal, and nothing
 * can change it; `toJSON()` gives a plain copy.
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

/** The one end-of-interest event; events are immutable, so it is shared. */
export const END_EVENT: InterestEndEvent = /* @__PURE__ */ new PipeEventImpl(
  "interestEnd",
  undefined,
  undefined,
  true,
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

/** Logs a response added to an ended pipe, which drops it. */
export function lateResponse(pipe: { log: Logger }, response: unknown): void {
  pipe.log.warn(
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
  pipe.log.error(
    "Exception added to a pipe that has already ended; dropped",
    exception,
    pipe,
  );
}

/** Warns of an interest-end callback registered on an ended pipe. */
export function lateHook(pipe: { log: Logger }): void {
  pipe.log.warn(
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
    callback(event as E);
  } catch (error) {
    reportCallbackError(error);
  }
}

/** Throws a `TypeError` naming `where` unless `value` is a function. */
export function assertFunction(value: unknown, where: string): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `Cannot register a callback with ${where}: expected a function, got ${
        describeType(value)
      }`,
    );
  }
}

/** Throws a `TypeError` naming `where` unless `value` is a boolean. */
export function assertBoolean(
  value: unknown,
  name: string,
  where: string,
): void {
  if (typeof value !== "boolean") {
    throw new TypeError(
      `Cannot call ${where}: ${name} must be a boolean, got ${
        describeType(value)
      }`,
    );
  }
}

/** Throws a `TypeError` unless `log` has console-style logging methods. */
export function assertLogger(log: unknown, where: string): void {
  if (log === console) return;
  const l = (typeof log === "object" || typeof log === "function") &&
      log !== null
    ? log as Record<string, unknown>
    : {};
  const missing = typeof l.debug !== "function"
    ? "debug"
    : typeof l.info !== "function"
    ? "info"
    : typeof l.warn !== "function"
    ? "warn"
    : typeof l.error !== "function"
    ? "error"
    : undefined;
  if (missing !== undefined) {
    throw new TypeError(
      `Cannot create ${where}: log must have a ${missing}() method`,
    );
  }
}

function describeType(value: unknown): string {
  return value === null ? "null" : typeof value;
}

/**
 * The poke handlers of a pipe: registration returns an idempotent remover,
 * a poke calls every handler registered at the time, in order. `clear()`
 * lets go of every handler, also those a remover still points at.
 */
export class PokeHandlers {
  #entries: { fn: (() => void) | undefined }[] = [];

  add(handler: () => void): () => void {
    const entry: { fn: (() => void) | undefined } = { fn: handler };
    this.#entries = [...this.#entries, entry];
    return () => {
      if (entry.fn === undefined) return;
      entry.fn = undefined;
      this.#entries = this.#entries.filter((e) => e !== entry);
    };
  }

  fire(): void {
    for (const entry of this.#entries) {
      const fn = entry.fn;
      if (fn !== undefined) invoke(fn);
    }
  }

  clear(): void {
    for (const entry of this.#entries) entry.fn = undefined;
    this.#entries = [];
  }
}
