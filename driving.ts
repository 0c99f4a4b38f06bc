// This module is browser compatible.

import {
  assertLogger,
  assertType,
  log,
  readArgument,
  reportCallbackError,
} from "./_util.ts";
import { formatSafely, preview } from "./inspectable.ts";
import { type Logger, Pipe, type ResponderPipe } from "./pipe.ts";

/**
 * A responder task for {@linkcode runDrivingPipe}. It should stop work when
 * `signal` aborts; rejecting with the signal's reason is the usual way.
 */
export type Driver = (signal: AbortSignal) => unknown;

/**
 * Runs a responder task that fills `pipe` (aiocoap's `run_driving_pipe`).
 *
 * The driver starts in a microtask, so the caller can finish its set-up
 * first; if interest has ended by then, it does not start at all. When
 * interest in the pipe ends, `signal` aborts with an `AbortError` that names
 * the pipe (or `name`). If the driver throws or rejects while there is still
 * interest, the error is added to the pipe as its exception; after the abort,
 * a rejection is the expected way to stop and is only logged at `debug`. If
 * the driver finishes while the pipe still waits for a final event, the pipe
 * ends with an exception saying so (aiocoap leaves such a pipe open).
 *
 * A run keeps its promises, their reactions and an `AbortController` for as
 * long as the driver runs: about 1.2 KB in Deno. For work that mostly waits
 * for the end of interest (thousands of idle observations), a responder that
 * registers {@linkcode Pipe.prototype.onInterestEnd} and adds responses when
 * it has them costs a hook instead.
 *
 * A driver that declares no parameter (`driver.length === 0`, such as
 * `() => pipe.addResponse(answer, true)`) cannot read the signal, and is
 * called without one: no `AbortController` is made for it (a flag set by
 * an interest-end hook keeps the rest of the contract). Making and aborting
 * one costs about 5 µs in Node.js 20, more than the rest of a one-shot
 * exchange's pipe work. (A plain `function` that reads `arguments[0]`
 * gets `undefined`.)
 *
 * A driver that waits for the end of interest must look at
 * `signal.aborted` before it adds an `abort` listener, or wait with
 * {@linkcode Pipe.prototype.onInterestEnd}, which runs at once when interest
 * has already ended: interest can end while the driver runs (its own first
 * response may end the connection that carries it), an `AbortSignal` fires
 * its event only once, and a listener added after that never runs, so the
 * driver would wait for ever.
 *
 * @typeParam Req The type of the request.
 * @typeParam Res The type of response messages.
 * @param pipe The pipe the driver fills.
 * @param driver The task; it receives the signal that aborts on loss of
 * interest.
 * @param name Names the task in the abort reason and in log messages.
 * @returns A promise that resolves once the driver has settled and its
 * outcome has reached the pipe. It never rejects.
 * @throws {TypeError} If `driver` is not a function.
 *
 * @example Serving an observation until the requester stops listening
 * ```ts
 * import { IterablePipe, runDrivingPipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const pipe = new IterablePipe<string, number>("GET /ticks");
 * const trace: string[] = [];
 * const done = runDrivingPipe(pipe, async (signal) => {
 *   signal.addEventListener("abort", () => trace.push("driver stopped"));
 *   for (let tick = 1; !signal.aborted; tick++) {
 *     pipe.addResponse(tick);
 *     await Promise.resolve();
 *   }
 * });
 * for await (const event of pipe) {
 *   trace.push(`tick ${event.message}`);
 *   if (event.message === 2) break;
 * }
 * await done;
 * assertEquals(trace, ["tick 1", "tick 2", "driver stopped"]);
 * ```
 */
export function runDrivingPipe<Req, Res>(
  pipe: ResponderPipe<Req, Res>,
  driver: Driver,
  name?: string,
): Promise<void> {
  assertResponder(pipe, "runDrivingPipe()");
  assertType(driver, "function", "driver", "runDrivingPipe()");
  if (name !== undefined) {
    assertType(name, "string", "name", "runDrivingPipe()");
  }
  // The hooks that abort: bound functions, which keep only their target for
  // as long as the exchange lives (a closure would keep its whole scope,
  // here also the driver).
  let signal: Aborted;
  let arity: unknown;
  try {
    arity = driver.length;
  } catch { /* unreadable (a revoked Proxy): the driver gets a signal */ }
  if (arity === 0) {
    // It cannot read a signal: none is made (see above), a flag stands in.
    pipe.onInterestEnd(setAborted.bind(signal = { aborted: false }));
  } else {
    const controller = new AbortController();
    pipe.onInterestEnd(
      controller.abort.bind(controller, abortReason(pipe, name)),
    );
    signal = controller.signal;
  }
  return new Promise<void>((resolve) =>
    RESOLVED.then(() => start(pipe, driver, name, signal, resolve))
  );
}

/** A driver's signal, or the flag that stands in for one. */
type Aborted = { aborted: boolean; readonly reason?: unknown };

function setAborted(this: Aborted): void {
  this.aborted = true;
}

/**
 * Runs what is passed to its `then` in a microtask, as `queueMicrotask`
 * does: in Deno `queueMicrotask` is an op call that costs twice as much, and
 * every exchange takes two. What it runs must not throw (the derived promise
 * would reject unhandled); it reports its own errors.
 */
const RESOLVED = Promise.resolve();

/**
 * Starts the driver in its microtask and takes its outcome. While a driver
 * runs, what it keeps alive is this function's context and two callbacks:
 * an idle observation is paid for in bytes.
 */
function start(
  pipe: ResponderPipe<unknown, unknown>,
  driver: Driver,
  name: string | undefined,
  signal: Aborted,
  resolve: () => void,
): void {
  const settle = (error?: unknown, failed?: boolean): void => {
    try {
      if (signal.aborted) {
        if (failed) {
          // Rejecting with the signal's own reason is the expected way to
          // stop: one line. Anything else is shown with the message.
          const message = `Driver of ${
            name ?? describe(pipe)
          } stopped after interest ended`;
          if (error === signal.reason) log(pipe, "debug", message);
          else log(pipe, "debug", message, error);
        }
      } else {
        pipe.addException(
          failed ? error : new Error(
            `Driver of ${
              name ?? describe(pipe)
            } ended without a final response`,
          ),
        );
      }
    } catch (error) {
      reportCallbackError(error);
    }
    resolve();
  };
  if (signal.aborted) {
    log(
      pipe,
      "debug",
      `Driver of ${name ?? describe(pipe)} not started: interest ended first`,
    );
    return resolve();
  }
  try {
    const result = signal instanceof AbortSignal
      ? driver(signal)
      : (driver as () => unknown)();
    // A driver that returns at once (the usual request) settles a microtask
    // later, as an awaited value would, without a promise.
    if (typeof (result as PromiseLike<unknown> | null)?.then !== "function") {
      RESOLVED.then(settle);
      return;
    }
    Promise.resolve(result).then(() => settle(), (e) => settle(e, true));
  } catch (error) {
    // The driver threw, reading `then` of what it returned did, or so did
    // reading the `constructor` of a promise it returned.
    settle(error, true);
  }
}

/**
 * Names a pipe briefly in messages: its class and a preview of its request
 * (`Pipe { request: "GET /a" }`, `IterablePipe { request: [object] }`),
 * never a dump of the request. Reading a hostile pipe never throws.
 */
function describe(pipe: ResponderPipe<unknown, unknown>): string {
  return formatSafely(
    (p) =>
      `${(p as object).constructor.name} { request: ${
        preview((p as ResponderPipe<unknown, unknown>).request)
      } }`,
    pipe,
  );
}

/**
 * The reason a driver's signal aborts with: an `AbortError`
 * (`instanceof DOMException`, `name`, `message`, `code` 20) built without
 * calling an error constructor. Interest ends at the end of every exchange,
 * and constructing any error there captured a stack (in Deno, about 5 to
 * 13 µs whatever `Error.stackTraceLimit` says): the largest single cost of a
 * request in a server, telling nothing the message does not. Its `stack` is
 * its first line only.
 */
class AbortReason {
  readonly #pipe: ResponderPipe<unknown, unknown>;
  readonly #what: string | undefined;
  constructor(pipe: ResponderPipe<unknown, unknown>, what: string | undefined) {
    this.#pipe = pipe;
    this.#what = what;
  }
  get name(): string {
    return "AbortError";
  }
  /** Made when read: every exchange has a reason, few read its message. */
  get message(): string {
    return `Interest in ${this.#what ?? describe(this.#pipe)} ended`;
  }
  /** DOMException.ABORT_ERR, the legacy code an AbortError carries. */
  get code(): number {
    return 20;
  }
  get stack(): string {
    return `AbortError: ${this.message}`;
  }
}

let reasonReady = false;

/** An {@linkcode AbortReason}; its prototype is set up on first use. */
function abortReason(
  pipe: ResponderPipe<unknown, unknown>,
  name: string | undefined,
): DOMException {
  if (!reasonReady) {
    reasonReady = true;
    Object.setPrototypeOf(AbortReason.prototype, DOMException.prototype);
    AbortReason.prototype.constructor = DOMException;
  }
  return new AbortReason(pipe, name) as unknown as DOMException;
}

/**
 * Something a responder may throw that knows its own error response, the way
 * aiocoap's `RenderableError` does.
 *
 * @typeParam Res The type of response messages.
 */
export interface RenderableError<Res> {
  /** Builds the response; `null` or `undefined` means it could not. */
  toMessage(): Res | null | undefined;
}

/** Options for {@linkcode errorToMessage}. */
export interface ErrorToMessageOptions<Res> {
  /** Builds the response sent for an exception that has no response. */
  internalServerError: () => Res;
  /**
   * Where to log exceptions and the new pipe's trouble.
   *
   * @default {pipe.log}
   */
  log?: Logger;
}

/**
 * Wraps a requester's pipe for a responder so that exceptions become final
 * error responses (aiocoap's `error_to_message`).
 *
 * Responses on the returned pipe are forwarded to `pipe` as they are. An
 * exception on it becomes a final response on `pipe`: the exception's own
 * `toMessage()` result if it has one (logged at `info`), otherwise
 * `internalServerError()` (logged at `error` with the exception). Loss of
 * interest in `pipe` ends the returned pipe, and a poke on `pipe` reaches
 * the returned pipe's poke handlers.
 *
 * @typeParam Req The type of the request.
 * @typeParam Res The type of response messages.
 * @param pipe The requester's pipe: a {@linkcode Pipe} or an
 * {@linkcode IterablePipe}.
 * @param options See {@linkcode ErrorToMessageOptions}.
 * @returns A new pipe on the same request, for the responder.
 * @throws {TypeError} If `options.internalServerError` is not a function or
 * `options.log` is not a logger.
 *
 * @example A failing resource answers with an error response
 * ```ts
 * import { errorToMessage, IterablePipe, runDrivingPipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const quiet = { ...console, error() {} };
 * const pipe = new IterablePipe<string, string>("GET /broken", { log: quiet });
 * const inner = errorToMessage(pipe, {
 *   internalServerError: () => "5.00 Internal Server Error",
 * });
 * runDrivingPipe(inner, () => {
 *   throw new Error("sensor unplugged");
 * });
 * const got: unknown[] = [];
 * for await (const event of pipe) got.push(event.message, event.isLast);
 * assertEquals(got, ["5.00 Internal Server Error", true]);
 * ```
 */
export function errorToMessage<Req, Res>(
  pipe: ResponderPipe<Req, Res>,
  options: ErrorToMessageOptions<Res>,
): Pipe<Req, Res> {
  assertResponder(pipe, "errorToMessage()");
  const checked = readOptions(options, "errorToMessage()", () => pipe.log);
  const request = readArgument(
    () => pipe.request,
    "Cannot call errorToMessage(): pipe.request cannot be read",
  );
  const next = new Pipe<Req, Res>(request, checked.log);
  const stop = next.onEvent((event) => {
    if (event.kind === "response") {
      pipe.addResponse(event.message, event.isLast);
      return !event.isLast;
    }
    // Only responses and exceptions reach an interested callback; an
    // exception is final, so what this returns then changes nothing. The
    // outer pipe always ends: when even internalServerError() throws, with
    // that error as its exception event.
    let response: Res;
    try {
      response = renderException(event.exception, checked);
    } catch (error) {
      pipe.addException(error);
      return;
    }
    pipe.addResponse(response, true);
  });
  pipe.onInterestEnd(stop);
  pipe.onPoke(() => next.poke());
  return next;
}

/**
 * Turns a responder's exception into the error response for it, the way
 * {@linkcode errorToMessage} does, for a requester that takes exception
 * events itself: a server can then answer an exchange with one pipe and one
 * callback instead of two pipes.
 *
 * The response is the exception's own `toMessage()` result when it has one
 * (logged at `info`, one line); otherwise `internalServerError()` (logged at
 * `error` with the exception, since it was not expected).
 *
 * @typeParam Res The type of response messages.
 * @param exception What the responder threw or added.
 * @param options `internalServerError` builds the fallback response; `log`
 * defaults to `console`.
 * @returns The response to send as final.
 * @throws {TypeError} If `options.internalServerError` is not a function or
 * `options.log` is not a logger.
 * @throws What `internalServerError()` throws.
 *
 * @example A server's requester side answering an exception event
 * ```ts
 * import { Pipe, renderException, runDrivingPipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * class NotFound extends Error {
 *   toMessage = () => "4.04 Not Found";
 * }
 * const quiet = { ...console, info() {} };
 * const options = { internalServerError: () => "5.00", log: quiet };
 * const pipe = new Pipe<string, string>("GET /nowhere");
 * const sent: string[] = [];
 * pipe.onEvent((event) => {
 *   if (event.kind === "response") sent.push(event.message);
 *   if (event.kind === "exception") {
 *     sent.push(renderException(event.exception, options));
 *   }
 *   return !event.isLast;
 * });
 * await runDrivingPipe(pipe, () => {
 *   throw new NotFound();
 * });
 * assertEquals(sent, ["4.04 Not Found"]);
 * ```
 */
export function renderException<Res>(
  exception: unknown,
  options: ErrorToMessageOptions<Res>,
): Res {
  const checked = readOptions(options, "renderException()", () => console);
  let message: Res | null | undefined;
  let what = "An exception occurred while rendering a resource";
  let failure = exception;
  try {
    // A getter that throws, a revoked Proxy: not renderable.
    const toMessage = (exception as Partial<RenderableError<Res>> | null)
      ?.toMessage;
    if (typeof toMessage === "function") {
      what = "Rendering the renderable exception produced no message";
      message = toMessage.call(exception);
    }
  } catch (error) {
    what = "Rendering the renderable exception failed";
    failure = error;
  }
  if (message === null || message === undefined) {
    log(checked, "error", what, failure);
    const { internalServerError } = checked; // called as a plain function
    return internalServerError();
  }
  // Expected: one line, no stack (aiocoap logs the exception's repr).
  log(
    checked,
    "info",
    `Render request raised a renderable error (${
      formatSafely(String, exception)
    }), responding accordingly`,
  );
  return message;
}

/** Reads and checks {@linkcode ErrorToMessageOptions}, once each. */
function readOptions<Res>(
  options: ErrorToMessageOptions<Res>,
  where: string,
  defaultLog: () => Logger,
): Required<ErrorToMessageOptions<Res>> {
  const [internalServerError, logger] = readArgument(
    () => [options.internalServerError, options.log],
    `Cannot call ${where}: options cannot be read`,
  );
  assertType(
    internalServerError,
    "function",
    "options.internalServerError",
    where,
  );
  const chosen = logger ?? readArgument(
    defaultLog,
    `Cannot call ${where}: pipe.log cannot be read`,
  );
  assertLogger(chosen, `Cannot call ${where}`);
  return {
    internalServerError: internalServerError as () => Res,
    log: chosen,
  };
}

/**
 * Checks that `pipe` has the responder's methods, so that a wrong argument
 * is a `TypeError` at the call rather than a failure later.
 */
function assertResponder(pipe: unknown, where: string): void {
  const message =
    `Cannot call ${where}: pipe must be a Pipe, an IterablePipe or another ResponderPipe`;
  // Reading a method of null, undefined or a hostile Proxy throws: that is a
  // TypeError with the same message.
  const ok = readArgument(() => {
    const p = pipe as ResponderPipe<unknown, unknown>;
    return typeof p.addResponse === "function" &&
      typeof p.addException === "function" &&
      typeof p.onInterestEnd === "function" &&
      typeof p.onPoke === "function";
  }, message);
  if (!ok) throw new TypeError(message);
}
