// This module is browser compatible.

/**
 * The plumbing between a request and the responses that come back on it: a
 * TypeScript port of Python aiocoap's `aiocoap.pipe` module.
 *
 * A {@linkcode Pipe} carries one request. The requester registers callbacks
 * for response and exception events; the responder adds responses (the last
 * one marked final) or an exception, and learns when the requester loses
 * interest so it can stop work. An {@linkcode IterablePipe} lets the
 * requester consume the events with `for await` instead.
 * {@linkcode runDrivingPipe} runs a responder task that is cancelled through
 * an `AbortSignal` when interest ends, and {@linkcode errorToMessage} turns a
 * responder's exceptions into final error responses.
 *
 * @example A one-shot request
 * ```ts
 * import { Pipe, runDrivingPipe } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * const pipe = new Pipe<string, string>("GET /temperature");
 * const got: string[] = [];
 * pipe.onEvent((event) => {
 *   if (event.kind === "response") got.push(event.message);
 *   return !event.isLast;
 * });
 *
 * await runDrivingPipe(pipe, () => pipe.addResponse("21.5 °C", true));
 * assertEquals(got, ["21.5 °C"]);
 * ```
 *
 * @module
 */

export * from "./pipe.ts";
export * from "./iterable_pipe.ts";
export * from "./driving.ts";
export { type Inspect, Inspectable } from "./inspectable.ts";
