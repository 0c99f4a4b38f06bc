// This module is browser compatible.

/**
 * The event types and the logger interface, shared by the pipe classes and
 * their helpers without an import cycle; `pipe.ts` re-exports them.
 *
 * @module
 */

/**
 * Anything with console-style logging methods; `console` itself is one.
 *
 * @example A logger that keeps warnings
 * ```ts
 * import { type Logger, Pipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const warnings: unknown[][] = [];
 * const log: Logger = { ...console, warn: (...data) => warnings.push(data) };
 * const pipe = new Pipe<string, string>("GET /", log);
 * pipe.addResponse("late", true); // nobody listens: the pipe ends
 * pipe.addResponse("later"); // dropped, with a warning
 * assertEquals(warnings.length, 1);
 * ```
 */
export interface Logger {
  /** Logs detail that is only useful while debugging. */
  debug(...data: unknown[]): void;
  /** Logs an expected, noteworthy occurrence. */
  info(...data: unknown[]): void;
  /** Logs something that should not happen but was handled. */
  warn(...data: unknown[]): void;
  /** Logs an error. */
  error(...data: unknown[]): void;
}

/**
 * A response travelling from the responder to the requester.
 *
 * @typeParam Res The type of response messages.
 */
export interface ResponseEvent<Res> {
  /** Tells the three kinds of event apart. */
  readonly kind: "response";
  /** The response. */
  readonly message: Res;
  /** Always `undefined` on a response. */
  readonly exception: undefined;
  /** Whether this is the final response. */
  readonly isLast: boolean;
  /** A plain copy of the event. */
  toJSON(): {
    kind: "response";
    message: Res;
    exception: undefined;
    isLast: boolean;
  };
}

/** An exception raised while producing responses; it is always final. */
export interface ExceptionEvent {
  /** Tells the three kinds of event apart. */
  readonly kind: "exception";
  /** Always `undefined` on an exception. */
  readonly message: undefined;
  /** The thrown value, which may be anything, `undefined` included. */
  readonly exception: unknown;
  /** Always `true`: an exception ends the pipe. */
  readonly isLast: true;
  /** A plain copy of the event. */
  toJSON(): {
    kind: "exception";
    message: undefined;
    exception: unknown;
    isLast: true;
  };
}

/**
 * What a non-interest callback receives when a pipe ends because no interest
 * is left (aiocoap's `Event(None, None, True)`).
 */
export interface InterestEndEvent {
  /** Tells the three kinds of event apart. */
  readonly kind: "interestEnd";
  /** Always `undefined`. */
  readonly message: undefined;
  /** Always `undefined`. */
  readonly exception: undefined;
  /** Always `true`. */
  readonly isLast: true;
  /** A plain copy of the event. */
  toJSON(): {
    kind: "interestEnd";
    message: undefined;
    exception: undefined;
    isLast: true;
  };
}

/**
 * An event on a pipe (aiocoap's `Pipe.Event`): a response, an exception or
 * the end of interest, told apart by `kind`. Events are read-only, as DOM
 * events are: their fields are accessors without setters on a frozen
 * prototype, so an assignment changes nothing (a `TypeError` in strict
 * code) and `{ ...event }` and `structuredClone` see no fields; the
 * end-of-interest event that all pipes share is frozen. `toJSON()` gives a
 * plain copy.
 *
 * @typeParam Res The type of response messages.
 *
 * @example Telling events apart
 * ```ts
 * import { Pipe, type PipeEvent } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const seen: string[] = [];
 * const pipe = new Pipe<string, string>("GET /temp");
 * pipe.onEvent((event: PipeEvent<string>) => {
 *   if (event.kind === "response") seen.push(`response ${event.message}`);
 *   else if (event.kind === "exception") seen.push("exception");
 *   else seen.push("interest ended");
 *   return true;
 * });
 * pipe.addResponse("21 °C", true);
 * assertEquals(seen, ["response 21 °C"]);
 * ```
 */
export type PipeEvent<Res> =
  | ResponseEvent<Res>
  | ExceptionEvent
  | InterestEndEvent;

/**
 * An event callback. Return a truthy value to stay registered for the next
 * event; any other return value unregisters the callback.
 *
 * @typeParam Res The type of response messages.
 */
export type EventCallback<Res> = (event: PipeEvent<Res>) => unknown;
