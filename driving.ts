// This module is browser compatible.

import {
  assertFunction,
  assertLogger,
  log,
  readArgument,
  reportCallbackError,
} from "./_util.ts";
import { formatSafely } from "./inspectable.ts";
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
  assertFunction(driver, "runDrivingPipe()");
  if (name !== undefined && typeof name !== "string") {
    throw new TypeError(
      `Cannot call runDrivingPipe(): name must be a string, got ${typeof name}`,
    );
  }
  // Describing the pipe reads its request, which may be a Proxy that throws:
  // the call still returns its promise, with a placeholder in the label.
  const label = name ?? formatSafely(String, pipe);
  const controller = new AbortController();
  pipe.onInterestEnd(() =>
    controller.abort(abortError(`Interest in ${label} ended`))
  );
  const { signal } = controller;
  const settled = (error: unknown, failed: boolean): void => {
    try {
      if (signal.aborted) {
        if (failed) {
          logTo(
            pipe,
            "debug",
            `Driver of ${label} stopped after interest ended`,
            error,
          );
        }
      } else if (failed) {
        pipe.addException(error);
      } else {
        pipe.addException(
          new Error(`Driver of ${label} ended without a final response`),
        );
      }
    } catch (error) {
      reportCallbackError(error);
    }
  };
  return new Promise<void>((resolve) => {
    queueMicrotask(() => {
      if (signal.aborted) {
        logTo(
          pipe,
          "debug",
          `Driver of ${label} not started: interest ended first`,
        );
        resolve();
        return;
      }
      let result: unknown;
      try {
        result = driver(signal);
      } catch (error) {
        settled(error, true);
        resolve();
        return;
      }
      Promise.resolve(result).then(
        () => settled(undefined, false),
        (error) => settled(error, true),
      ).then(resolve);
    });
  });
}

/**
 * The reason a driver's signal aborts with: an `AbortError` without a stack
 * trace. Interest ends at the end of every exchange, where a captured stack
 * was the largest single cost of a request in a server (about 4 µs and a
 * kilobyte in V8) and tells nothing: the message names the pipe. Engines
 * without `Error.stackTraceLimit` build it as they always do.
 */
function abortError(message: string): DOMException {
  const errors = Error as { stackTraceLimit?: number };
  const limit = errors.stackTraceLimit;
  if (typeof limit !== "number") return new DOMException(message, "AbortError");
  try {
    errors.stackTraceLimit = 0;
  } catch {
    return new DOMException(message, "AbortError");
  }
  try {
    return new DOMException(message, "AbortError");
  } finally {
    errors.stackTraceLimit = limit;
  }
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
  const [internalServerError, logger, request] = readArgument(
    () => [options.internalServerError, options.log ?? pipe.log, pipe.request],
    "Cannot call errorToMessage(): options or the pipe cannot be read",
  );
  if (typeof internalServerError !== "function") {
    throw new TypeError(
      "Cannot call errorToMessage(): internalServerError must be a function",
    );
  }
  assertLogger(logger, "the pipe for errorToMessage()");
  const next = new Pipe<Req, Res>(request, logger);
  const stop = next.onEvent((event) => {
    if (event.kind === "response") {
      pipe.addResponse(event.message, event.isLast);
      return !event.isLast;
    }
    if (event.kind === "exception") {
      // The outer pipe always ends: when even internalServerError() throws,
      // with that error as its exception event.
      let response: Res;
      try {
        response = toResponse(event.exception);
      } catch (error) {
        pipe.addException(error);
        return false;
      }
      pipe.addResponse(response, true);
    }
    return false;
  });
  pipe.onInterestEnd(stop);
  pipe.onPoke(() => next.poke());
  return next;

  function toResponse(exception: unknown): Res {
    let toMessage: unknown;
    try {
      toMessage = (exception as Partial<RenderableError<Res>> | null)
        ?.toMessage;
    } catch (error) {
      // A getter that throws, a revoked Proxy: not renderable.
      log(logger, "error", "Reading the exception's toMessage failed", error);
      return internalServerError();
    }
    if (typeof toMessage !== "function") {
      log(
        logger,
        "error",
        "An exception occurred while rendering a resource",
        exception,
      );
      return internalServerError();
    }
    let message: Res | null | undefined;
    try {
      message = toMessage.call(exception);
    } catch (error) {
      log(logger, "error", "Rendering the renderable exception failed", error);
      return internalServerError();
    }
    if (message === null || message === undefined) {
      log(
        logger,
        "error",
        "Rendering the renderable exception produced no message",
        exception,
      );
      return internalServerError();
    }
    log(
      logger,
      "info",
      "Render request raised a renderable error, responding accordingly",
      exception,
    );
    return message;
  }
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

/** Logs to `pipe.log`, which a hand-made responder may fail even to give. */
function logTo(
  pipe: ResponderPipe<unknown, unknown>,
  level: "debug" | "info" | "warn" | "error",
  ...data: unknown[]
): void {
  let logger: Logger;
  try {
    logger = pipe.log;
  } catch (error) {
    reportCallbackError(error);
    return;
  }
  log(logger, level, ...data);
}
