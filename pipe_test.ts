import { assertEquals, assertStrictEquals, assertThrows } from "@std/assert";
import { Pipe, type PipeEvent, type ResponderPipe } from "./pipe.ts";
import { lacking, test } from "./testing/suite.ts";
import {
  awaitingResponder,
  captureReported,
  gc,
  type NodeInspect,
  observeUncaught,
  RecordingLogger,
  revokedProxy,
  settledHeap,
  show,
  ThrowingLogger,
  throwingProxy,
} from "./testing/helpers.ts";

/** A pipe with a recording logger, and a trace its callbacks write to. */
function setup(request = "GET /r") {
  const log = new RecordingLogger();
  const pipe = new Pipe<string, string>(request, log);
  const trace: string[] = [];
  /** An event callback that records and returns `keep`. */
  const record = (name: string, ...keep: [unknown?]) => {
    const result = keep.length === 0 ? true : keep[0];
    return (event: PipeEvent<string>) => {
      trace.push(`${name}: ${show(event)}`);
      return result;
    };
  };
  const hook = (name: string) => () => {
    trace.push(`${name}: interest ended`);
  };
  return { log, pipe, trace, record, hook };
}

// --- Events -----------------------------------------------------------------

test("Pipe events tell responses, exceptions and the end of interest apart", () => {
  const { pipe } = setup();
  const events: PipeEvent<string>[] = [];
  pipe.onEvent((e) => events.push(e) > 0);
  pipe.onEvent((e) => events.push(e) > 0, false);
  pipe.addResponse("a");
  pipe.addResponse("b", true);
  assertEquals(events.map((e) => e.toJSON()), [
    { kind: "response", message: "a", exception: undefined, isLast: false },
    { kind: "response", message: "a", exception: undefined, isLast: false },
    { kind: "response", message: "b", exception: undefined, isLast: true },
    { kind: "response", message: "b", exception: undefined, isLast: true },
  ]);

  for (const thrown of [undefined, null]) {
    const { pipe } = setup();
    const seen: PipeEvent<string>[] = [];
    pipe.onEvent((e) => seen.push(e) > 0);
    pipe.addException(thrown);
    assertEquals(seen.map((e) => e.toJSON()), [{
      kind: "exception",
      message: undefined,
      exception: thrown,
      isLast: true,
    }]);
  }

  const { pipe: ending } = setup();
  const seen: PipeEvent<string>[] = [];
  const off = ending.onEvent(() => true);
  ending.onEvent((e) => seen.push(e) > 0, false);
  off();
  assertEquals(seen.map((e) => e.toJSON()), [{
    kind: "interestEnd",
    message: undefined,
    exception: undefined,
    isLast: true,
  }]);
});

/** Tries to change every field of an event; returns what changed. */
function tamper(event: PipeEvent<string>): string[] {
  const changed: string[] = [];
  const before = JSON.stringify(event);
  for (const field of ["kind", "message", "exception", "isLast"]) {
    try {
      (event as unknown as Record<string, unknown>)[field] = "changed";
      changed.push(`${field} assigned`);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
    try {
      delete (event as unknown as Record<string, unknown>)[field];
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
    }
  }
  if (JSON.stringify(event) !== before) changed.push("content");
  return changed;
}

test("Pipe events are immutable", () => {
  const { pipe } = setup();
  const events: PipeEvent<string>[] = [];
  const off = pipe.onEvent((e) => events.push(e) > 0);
  pipe.onEvent((e) => events.push(e) > 0, false);
  pipe.addResponse("a");
  off();
  const { pipe: failing } = setup();
  failing.onEvent((e) => events.push(e) > 0);
  failing.addException(new Error("x"));
  assertEquals(events.map((e) => e.kind), [
    "response",
    "response",
    "interestEnd",
    "exception",
  ]);
  assertStrictEquals(events[0], events[1]); // one event for every callback
  for (const event of events) {
    assertEquals(tamper(event), []);
    // No own fields: spreading or cloning cannot carry a changed copy back.
    assertEquals(Object.getOwnPropertyNames(event), []);
  }
  assertEquals(
    events.map((e) => JSON.stringify(e)),
    [
      '{"kind":"response","message":"a","isLast":false}',
      '{"kind":"response","message":"a","isLast":false}',
      '{"kind":"interestEnd","isLast":true}',
      '{"kind":"exception","exception":{},"isLast":true}',
    ],
  );
});

test("Pipe events show their fields when inspected", () => {
  const { pipe } = setup();
  const events: PipeEvent<string>[] = [];
  pipe.onEvent((e) => events.push(e) > 0);
  pipe.addResponse("a");
  const inspect = (events[0] as unknown as Record<symbol, unknown>)[
    Symbol.for("nodejs.util.inspect.custom")
  ] as NodeInspect;
  assertEquals(
    inspect.call(events[0], 2, {}, (v) => `<${String(v)}>`),
    "{ kind: <response>, message: <a>, exception: <undefined>, isLast: false }",
  );
  const deno = (globalThis as {
    Deno?: { inspect(v: unknown): string };
  }).Deno;
  if (deno) {
    assertEquals(
      deno.inspect(events[0]),
      '{ kind: "response", message: "a", exception: undefined, isLast: false }',
    );
  }
});

// --- Construction -----------------------------------------------------------

test("Pipe() exposes request and log, and logs to the console by default", () => {
  const log = new RecordingLogger();
  const request = { method: "GET", path: "/r" };
  const pipe = new Pipe(request, log);
  assertStrictEquals(pipe.request, request);
  assertStrictEquals(pipe.log, log);
  assertStrictEquals(new Pipe("x").log, console);
});

test("Pipe() rejects a log without console-style methods", () => {
  assertThrows(
    () => new Pipe("x", {} as Console),
    TypeError,
    "log must have a debug() method",
  );
  assertThrows(
    () =>
      new Pipe("x", {
        info() {},
        warn() {},
        error() {},
        debug: 1,
      } as unknown as Console),
    TypeError,
    "debug()",
  );
  assertThrows(
    () => new Pipe("x", { debug() {}, info() {}, warn() {} } as Console),
    TypeError,
    "error()",
  );
  assertThrows(() => new Pipe("x", null as unknown as Console), TypeError);
});

// --- onEvent ----------------------------------------------------------------

test("Pipe.onEvent() callbacks run in registration order", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("a"));
  pipe.onEvent(record("b"), false);
  pipe.onEvent(record("c"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(trace, [
    "a: response 1",
    "b: response 1",
    "c: response 1",
    "a: response 2",
    "b: response 2",
    "c: response 2",
  ]);
});

test("Pipe.onEvent() keeps a callback that returns truthy and drops it otherwise", () => {
  const { pipe, trace, record } = setup();
  const keepers = [true, 1, "yes", {}, []];
  const droppers = [false, undefined, null, 0, "", NaN];
  keepers.forEach((value, i) => pipe.onEvent(record(`keep${i}`, value)));
  droppers.forEach((value, i) => pipe.onEvent(record(`drop${i}`, value)));
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(trace, [
    ...keepers.map((_, i) => `keep${i}: response 1`),
    ...droppers.map((_, i) => `drop${i}: response 1`),
    ...keepers.map((_, i) => `keep${i}: response 2`),
  ]);
  assertEquals(pipe.ended, false);
});

test("Pipe.onEvent() non-interest callbacks do not keep the pipe alive", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("observer"), false);
  pipe.onEvent(record("requester", false));
  pipe.onInterestEnd(hook("responder"));
  pipe.onEvent(record("late observer"), false);
  pipe.addResponse("1");
  assertEquals(trace, [
    "observer: response 1",
    "requester: response 1",
    "late observer: response 1",
    "observer: interestEnd",
    "responder: interest ended",
    "late observer: interestEnd",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe.onEvent() non-interest callback that let go gets no end event", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("observer", false), false);
  const off = pipe.onEvent(record("requester"));
  pipe.addResponse("1");
  off();
  assertEquals(trace, ["observer: response 1", "requester: response 1"]);
  assertEquals(pipe.ended, true);
});

test("Pipe.onEvent() unregistering the last interest ends the pipe", () => {
  const { pipe, trace, record, hook } = setup();
  const offA = pipe.onEvent(record("a"));
  pipe.onEvent(record("observer"), false);
  const offB = pipe.onEvent(record("b"));
  pipe.onInterestEnd(hook("responder"));
  offA();
  assertEquals(trace, []);
  assertEquals(pipe.ended, false);
  offB();
  assertEquals(trace, [
    "observer: interestEnd",
    "responder: interest ended",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe seen as a ResponderPipe tells whether it ended: a responder that awaited sees interest end in the meantime and does nothing more", async () => {
  const { pipe, trace, record, log } = setup();
  const off = pipe.onEvent(record("requester"));
  let release!: () => void;
  const engine = new Promise<void>((resolve) => release = resolve);
  const responding = awaitingResponder(pipe, engine, trace);
  off(); // the requester loses interest while the engine works
  release();
  await responding;
  assertEquals(trace, [
    "before the engine: ended false",
    "after the engine: ended true",
  ]);
  assertEquals(log.entries, []);
});

test("Pipe seen as a ResponderPipe stays open while interest lasts, and ends with a final response", async () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  await awaitingResponder(pipe, Promise.resolve(), trace);
  const responder: ResponderPipe<string, string> = pipe;
  assertEquals(responder.ended, false);
  responder.addResponse("last", true);
  assertEquals(responder.ended, true);
  assertEquals(trace, [
    "before the engine: ended false",
    "after the engine: ended false",
    "requester: response value",
    "requester: response last last",
    "hook: interest ended",
  ]);
  assertEquals(log.entries, []);
});

test("Pipe.onEvent() unregister is idempotent and a no-op after the end", () => {
  const { pipe, trace, record, hook } = setup();
  const offA = pipe.onEvent(record("a"));
  const offB = pipe.onEvent(record("b"));
  pipe.onInterestEnd(hook("responder"));
  offA();
  offA();
  offA();
  assertEquals(trace, []);
  pipe.addResponse("1");
  offB();
  offB();
  assertEquals(trace, [
    "b: response 1",
    "responder: interest ended",
  ]);
  offA();
  offB();
  pipe.addResponse("2", true);
  assertEquals(trace.length, 2);
});

test("Pipe.onEvent() unregister of a non-interest callback keeps the pipe", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("a"));
  const off = pipe.onEvent(record("observer"), false);
  off();
  pipe.addResponse("1", true);
  assertEquals(trace, ["a: response 1 last"]);
});

test("Pipe.onEvent() callbacks are never called after they returned falsy", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("a"));
  pipe.onEvent(record("once", false));
  pipe.onEvent(record("observer once", false), false);
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  pipe.addResponse("3", true);
  assertEquals(trace, [
    "a: response 1",
    "once: response 1",
    "observer once: response 1",
    "a: response 2",
    "a: response 3 last",
    "responder: interest ended",
  ]);
});

test("Pipe.onEvent() callbacks get at most one isLast event", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("a"));
  pipe.onEvent(record("observer"), false);
  pipe.addResponse("1", true);
  pipe.addResponse("2", true);
  pipe.addException(new Error("x"));
  assertEquals(trace, [
    "a: response 1 last",
    "observer: response 1 last",
  ]);
});

test("Pipe.onEvent() on an ended pipe warns and delivers the end event at once", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("a"));
  pipe.addResponse("1", true);
  const off = pipe.onEvent(record("late"));
  const offObserver = pipe.onEvent(record("late observer"), false);
  assertEquals(trace, [
    "a: response 1 last",
    "late: interestEnd",
    "late observer: interestEnd",
  ]);
  assertEquals(log.levels(), ["warn", "warn"]);
  assertEquals(
    log.entries[0][1],
    "Event callback registered on a pipe that has already ended",
  );
  assertStrictEquals(log.entries[0][2], pipe);
  off();
  offObserver();
  pipe.addResponse("2");
  assertEquals(trace.length, 3);
});

test("Pipe.onEvent() rejects a callback that is not a function", () => {
  const { pipe, log } = setup();
  for (const bad of [undefined, null, 1, "f", {}, []]) {
    assertThrows(
      () => pipe.onEvent(bad as never),
      TypeError,
      "Cannot call Pipe.onEvent(): callback must be a function",
    );
  }
  assertThrows(
    () => pipe.onEvent(() => true, "yes" as never),
    TypeError,
    "isInterest must be a boolean",
  );
  // Nothing was registered: an event ends the pipe without interest.
  const trace: string[] = [];
  pipe.onInterestEnd(() => trace.push("ended"));
  assertEquals(trace, ["ended"]);
  assertEquals(log.entries, []);
});

test("Pipe.onEvent() registration during delivery waits for the next event", () => {
  const { pipe, trace, record } = setup();
  let registered = false;
  pipe.onEvent((event) => {
    trace.push(`a: ${show(event)}`);
    if (!registered) {
      registered = true;
      pipe.onEvent(record("added"));
    }
    return true;
  });
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(trace, [
    "a: response 1",
    "a: response 2",
    "added: response 2",
  ]);
});

test("Pipe.onEvent() registration during a final delivery gets the end event", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent((event) => {
    trace.push(`a: ${show(event)}`);
    pipe.onEvent(record("added"));
    pipe.onInterestEnd(hook("hook added"));
    return true;
  });
  pipe.addResponse("1", true);
  assertEquals(trace, [
    "a: response 1 last",
    "added: interestEnd",
    "hook added: interest ended",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe.onEvent() unregistering during delivery skips the callback and ends afterwards", () => {
  const { pipe, trace, record, hook } = setup();
  let offB = () => {};
  pipe.onEvent((event) => {
    trace.push(`a: ${show(event)}`);
    offB();
    return false;
  });
  offB = pipe.onEvent(record("b"));
  pipe.onEvent(record("observer"), false);
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  assertEquals(trace, [
    "a: response 1",
    "observer: response 1",
    "observer: interestEnd",
    "responder: interest ended",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe.onEvent() a callback may unregister itself during delivery", () => {
  const { pipe, trace, record } = setup();
  let off = () => {};
  off = pipe.onEvent((event) => {
    trace.push(`self: ${show(event)}`);
    off();
    return true;
  });
  pipe.onEvent(record("b"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(trace, ["self: response 1", "b: response 1", "b: response 2"]);
});

// --- onInterestEnd ----------------------------------------------------------

test("Pipe.onInterestEnd() runs at once when nothing is interested", () => {
  const { pipe, trace, record, hook, log } = setup();
  pipe.onEvent(record("observer"), false);
  pipe.onInterestEnd(hook("responder"));
  assertEquals(trace, ["responder: interest ended"]);
  assertEquals(log.entries, []);
  // The pipe has not ended: it still carries events.
  assertEquals(pipe.ended, false);
  pipe.onEvent(record("a"));
  pipe.addResponse("1");
  assertEquals(trace, [
    "responder: interest ended",
    "observer: response 1",
    "a: response 1",
  ]);
});

test("Pipe.onInterestEnd() on an ended pipe warns and runs at once", () => {
  const { pipe, trace, hook, log } = setup();
  pipe.onEvent(() => false);
  pipe.addResponse("1");
  assertEquals(pipe.ended, true);
  pipe.onInterestEnd(hook("late"));
  assertEquals(trace, ["late: interest ended"]);
  assertEquals(log.levels(), ["warn"]);
  assertEquals(
    log.entries[0][1],
    "Interest-end callback registered on a pipe that has already ended",
  );
});

test("Pipe.onInterestEnd() runs on a final response at its registration position", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("a"));
  pipe.onInterestEnd(hook("first hook"));
  pipe.onEvent(record("b"));
  pipe.onInterestEnd(hook("second hook"));
  pipe.onEvent(record("observer"), false);
  pipe.addResponse("1");
  assertEquals(trace, [
    "a: response 1",
    "b: response 1",
    "observer: response 1",
  ]);
  pipe.addResponse("2", true);
  assertEquals(trace.slice(3), [
    "a: response 2 last",
    "first hook: interest ended",
    "b: response 2 last",
    "second hook: interest ended",
    "observer: response 2 last",
  ]);
});

test("Pipe.onInterestEnd() runs on an exception at its registration position", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onInterestEnd(hook("too early")); // nothing interested yet: at once
  pipe.onEvent(record("a"));
  pipe.onInterestEnd(hook("responder"));
  pipe.onEvent(record("b"));
  pipe.addException(new Error("boom"));
  assertEquals(trace, [
    "too early: interest ended",
    "a: exception boom",
    "responder: interest ended",
    "b: exception boom",
  ]);
});

test("Pipe.onInterestEnd() runs exactly once", () => {
  const { pipe, trace, hook } = setup();
  const off = pipe.onEvent(() => true);
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  off();
  off();
  pipe.addResponse("2", true);
  pipe.addException(new Error("late"));
  assertEquals(trace, ["responder: interest ended"]);
});

test("Pipe.onInterestEnd() rejects a callback that is not a function", () => {
  const { pipe } = setup();
  pipe.onEvent(() => true);
  for (const bad of [undefined, null, 1, "f", {}]) {
    assertThrows(
      () => pipe.onInterestEnd(bad as never),
      TypeError,
      "Cannot call Pipe.onInterestEnd(): callback must be a function",
    );
  }
  assertThrows(
    () => pipe.onPoke(42 as never),
    TypeError,
    "Cannot call Pipe.onPoke(): handler must be a function",
  );
  // None of them was stored: the final event reaches only the callback.
  const trace: string[] = [];
  pipe.onInterestEnd(() => trace.push("ok"));
  pipe.addResponse("1", true);
  assertEquals(trace, ["ok"]);
});

// --- addResponse and addException -------------------------------------------

test("Pipe.addResponse() ends the pipe when no interest is left afterwards", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("a", false));
  pipe.onEvent(record("b", false));
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  assertEquals(trace, [
    "a: response 1",
    "b: response 1",
    "responder: interest ended",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe.addResponse() into a pipe with no interest reaches observers, then ends it", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("observer"), false);
  pipe.addResponse("1");
  assertEquals(trace, ["observer: response 1", "observer: interestEnd"]);
  assertEquals(pipe.ended, true);
  assertEquals(log.entries, []);

  const bare = setup();
  bare.pipe.addResponse("1");
  assertEquals(bare.pipe.ended, true);
  assertEquals(bare.log.entries, []);
});

test("Pipe.addResponse() final ends the pipe whatever callbacks return", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("a", true));
  pipe.onEvent(record("observer", true), false);
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1", true);
  assertEquals(pipe.ended, true);
  pipe.addResponse("2");
  assertEquals(trace, [
    "a: response 1 last",
    "observer: response 1 last",
    "responder: interest ended",
  ]);
});

test("Pipe.addResponse() into an ended pipe is dropped with a warning", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("a"));
  pipe.addResponse("1", true);
  pipe.addResponse("late");
  pipe.addResponse("later", true);
  assertEquals(trace, ["a: response 1 last"]);
  assertEquals(log.entries, [
    [
      "warn",
      "Response added to a pipe that has already ended; dropped",
      "late",
      pipe,
    ],
    [
      "warn",
      "Response added to a pipe that has already ended; dropped",
      "later",
      pipe,
    ],
  ]);
});

test("Pipe.addException() into an ended pipe is dropped and logged as an error", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("a"));
  pipe.addException(new Error("first"));
  const late = new Error("late");
  pipe.addException(late);
  pipe.addException(undefined);
  assertEquals(trace, ["a: exception first"]);
  assertEquals(log.levels(), ["error", "error"]);
  assertEquals(
    log.entries[0][1],
    "Exception added to a pipe that has already ended; dropped",
  );
  assertStrictEquals(log.entries[0][2], late);
  assertStrictEquals(log.entries[1][2], undefined);
  assertStrictEquals(log.entries[1].length, 4);
});

test("Pipe.addResponse() rejects a non-boolean isLast", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("a"));
  assertThrows(
    () => pipe.addResponse("1", 1 as never),
    TypeError,
    "Cannot call Pipe.addResponse(): isLast must be a boolean, got number",
  );
  assertEquals(trace, []);
  pipe.addResponse("2");
  assertEquals(trace, ["a: response 2"]);
});

test("Pipe.addResponse() isolates a callback that throws and removes it", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record, hook } = setup();
    const failure = new Error("callback bug");
    pipe.onEvent(record("a"));
    pipe.onEvent((event) => {
      trace.push(`thrower: ${show(event)}`);
      throw failure;
    });
    pipe.onEvent(record("b"));
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("1"); // does not throw
    pipe.addResponse("2");
    assertEquals(trace, [
      "a: response 1",
      "thrower: response 1",
      "b: response 1",
      "a: response 2",
      "b: response 2",
    ]);
    assertEquals(reported, [failure]);
  });
});

test("Pipe.addResponse() a throwing last interest ends the pipe", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record, hook } = setup();
    pipe.onEvent(() => {
      throw "plain string";
    });
    pipe.onEvent(record("observer"), false);
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("1");
    assertEquals(trace, [
      "observer: response 1",
      "observer: interestEnd",
      "responder: interest ended",
    ]);
    assertEquals(reported, ["plain string"]);
    assertEquals(pipe.ended, true);
  });
});

test("Pipe callbacks that throw in interest-end delivery are isolated too", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record, hook } = setup();
    const off = pipe.onEvent(() => true);
    pipe.onEvent(() => {
      throw new Error("observer bug");
    }, false);
    pipe.onInterestEnd(() => {
      throw new Error("hook bug");
    });
    pipe.onEvent(record("observer"), false);
    pipe.onInterestEnd(hook("responder"));
    off();
    assertEquals(trace, ["observer: interestEnd", "responder: interest ended"]);
    assertEquals(reported.map((e) => (e as Error).message), [
      "observer bug",
      "hook bug",
    ]);
    // Immediate calls are isolated as well.
    pipe.onEvent(() => {
      throw new Error("late bug");
    });
    assertEquals(reported.length, 3);
  });
});

test("Pipe callback errors are rethrown from a microtask without reportError", async () => {
  // Shadow reportError with an own property: some runtimes (workerd) keep it
  // on the global scope's prototype, where deleting does not reach it.
  const g = globalThis as { reportError?: unknown };
  const had = Object.prototype.hasOwnProperty.call(g, "reportError");
  const original = g.reportError;
  g.reportError = undefined;
  const caught: unknown[] = [];
  const stop = observeUncaught((error) => caught.push(error));
  try {
    const { pipe, trace, record } = setup();
    const failure = new Error("late failure");
    pipe.onEvent(() => {
      throw failure;
    });
    pipe.onEvent(record("b"));
    pipe.addResponse("1"); // does not throw
    assertEquals(trace, ["b: response 1"]);
    assertEquals(caught, []); // not synchronously
    await new Promise((resolve) => setTimeout(resolve, 0));
    assertEquals(caught, [failure]);
  } finally {
    stop?.();
    if (had) g.reportError = original;
    else delete g.reportError;
  }
});

test("Pipe.addResponse() from inside a callback throws and leaves the pipe consistent", () => {
  const { pipe, trace, record, hook } = setup();
  const errors: unknown[] = [];
  let tries = 0;
  pipe.onEvent((event) => {
    trace.push(`a: ${show(event)}`);
    if (tries++ === 0) {
      try {
        pipe.addResponse("nested");
      } catch (error) {
        errors.push(error);
      }
      try {
        pipe.addException(new Error("nested"));
      } catch (error) {
        errors.push(error);
      }
    }
    return true;
  });
  pipe.onEvent(record("b"));
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2", true);
  assertEquals(trace, [
    "a: response 1",
    "b: response 1",
    "a: response 2 last",
    "b: response 2 last",
    "responder: interest ended",
  ]);
  assertEquals(
    errors.map((e) => [(e as Error).constructor, (e as Error).message]),
    [
      [
        Error,
        "Cannot add a response from inside a callback of the same pipe: callbacks must not produce new events",
      ],
      [
        Error,
        "Cannot add an exception from inside a callback of the same pipe: callbacks must not produce new events",
      ],
    ],
  );
});

test("Pipe.addResponse() from an interest-end callback during the end is dropped as late, never thrown", async () => {
  await captureReported((reported) => {
    const { pipe, trace, log } = setup();
    const off = pipe.onEvent(() => true);
    pipe.onInterestEnd(() => {
      pipe.addResponse("bye", true);
      pipe.addException(new Error("late failure"));
      trace.push("hook done");
    });
    off();
    assertEquals(trace, ["hook done"]);
    assertEquals(log.levels(), ["warn", "error"]);
    assertEquals(
      log.entries[0][1],
      "Response added to a pipe that has already ended; dropped",
    );
    assertEquals(log.entries[0][2], "bye");
    assertEquals(reported, []);
    assertEquals(pipe.ended, true);
  });
});

test("Pipe.addResponse() from an interest-end callback run inside a final delivery is late, not re-entrant", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record, log } = setup();
    pipe.onEvent(record("a"));
    pipe.onInterestEnd(() => {
      pipe.addResponse("last word");
      trace.push("responder told");
    });
    pipe.onEvent(record("b"));
    pipe.addResponse("final", true);
    assertEquals(trace, [
      "a: response final last",
      "responder told",
      "b: response final last",
    ]);
    assertEquals(log.levels(), ["warn"]);
    assertEquals(log.entries[0][2], "last word");
    assertEquals(reported, []);
  });
});

test("Pipe.addResponse() from a non-interest callback receiving the end is dropped as late", async () => {
  await captureReported((reported) => {
    const { pipe, trace, log } = setup();
    const off = pipe.onEvent(() => true);
    pipe.onEvent((event) => {
      trace.push(`observer: ${show(event)}`);
      pipe.addResponse("echo");
    }, false);
    off();
    assertEquals(trace, ["observer: interestEnd"]);
    assertEquals(log.levels(), ["warn"]);
    assertEquals(reported, []);
  });
});

test("Pipe.addResponse() from a response callback of a pipe that has not ended still throws", () => {
  const { pipe } = setup();
  const errors: string[] = [];
  pipe.onEvent(() => {
    try {
      pipe.addResponse("again");
    } catch (error) {
      errors.push((error as Error).message);
    }
    return true;
  });
  pipe.addResponse("first");
  assertEquals(errors, [
    "Cannot add a response from inside a callback of the same pipe: callbacks must not produce new events",
  ]);
  assertEquals(pipe.ended, false);
});

test("Pipe.addResponse() from an interest-end callback run at once is allowed", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("observer"), false);
  pipe.onInterestEnd(() => pipe.addResponse("bye", true));
  assertEquals(trace, ["observer: response bye last"]);
  assertEquals(pipe.ended, true);
});

// --- poke -------------------------------------------------------------------

test("Pipe.poke() calls poke handlers in order and is ignored without them", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("a"));
  pipe.poke(); // nobody listens: nothing happens
  const offFirst = pipe.onPoke(() => trace.push("first poked"));
  pipe.onPoke(() => trace.push("second poked"));
  pipe.poke();
  offFirst();
  offFirst();
  pipe.poke();
  assertEquals(trace, ["first poked", "second poked", "second poked"]);
});

test("Pipe.poke() does nothing on an ended pipe", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => true);
  pipe.onPoke(() => trace.push("poked"));
  pipe.addResponse("1", true);
  pipe.poke();
  const off = pipe.onPoke(() => trace.push("late handler"));
  pipe.poke();
  off();
  assertEquals(trace, []);
});

test("Pipe.poke() handlers may answer with a response; errors are isolated", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record } = setup();
    pipe.onEvent(record("a"));
    pipe.onPoke(() => {
      throw new Error("poke bug");
    });
    pipe.onPoke(() => pipe.addResponse("alive"));
    pipe.poke();
    assertEquals(trace, ["a: response alive"]);
    assertEquals(reported.map((e) => (e as Error).message), ["poke bug"]);
  });
});

// --- Inspection -------------------------------------------------------------

test("Pipe shows request, callbacks and interests when inspected", () => {
  const pipe = new Pipe<{ path: string }, string>(
    { path: "/r" },
    new RecordingLogger(),
  );
  pipe.onEvent(() => true);
  pipe.onEvent(() => true, false);
  pipe.onInterestEnd(() => {});
  // Deno.inspect, Node's util.inspect and Bun all call this one hook.
  const nodeInspect = (pipe as unknown as Record<symbol, unknown>)[
    Symbol.for("nodejs.util.inspect.custom")
  ] as NodeInspect;
  const options = { colors: false };
  const fake = (v: unknown, o?: unknown) =>
    `<${JSON.stringify(v)}${o === options ? "" : " without options"}>`;
  assertEquals(
    nodeInspect.call(pipe, 2, options, fake),
    'Pipe { request: <{"path":"/r"}>, callbacks: 2, interests: 1 }',
  );
  // Without the runtime's inspector (an older Node), a short preview.
  assertEquals(
    nodeInspect.call(pipe, 2, options),
    "Pipe { request: [object], callbacks: 2, interests: 1 }",
  );
  assertEquals(
    String(pipe),
    "Pipe { request: [object], callbacks: 2, interests: 1 }",
  );
  pipe.addResponse("x", true);
  assertEquals(String(pipe), "Pipe { request: [object], ended }");
  assertEquals(
    String(new Pipe("GET /x", new RecordingLogger())),
    'Pipe { request: "GET /x", callbacks: 0, interests: 0 }',
  );
  const deno = (globalThis as {
    Deno?: { inspect(v: unknown): string };
  }).Deno;
  if (deno) {
    const live = new Pipe("GET /live", new RecordingLogger());
    live.onEvent(() => true);
    assertEquals(
      deno.inspect(live),
      'Pipe { request: "GET /live", callbacks: 1, interests: 1 }',
    );
  }
});

// --- Lifetime ----------------------------------------------------------------

// Needs the collector exposed (deno task test passes --v8-flags=--expose-gc,
// and the other runtimes' runners their equivalent); reported as ignored
// without it, never passed.
test("Pipe releases its callbacks when it ends", async () => {
  const { pipe } = setup();
  const refs: WeakRef<object>[] = [];
  const kept: (() => void)[] = [];
  (() => {
    const callbacks = [() => true, () => true, () => {}, () => {}];
    refs.push(...callbacks.map((c) => new WeakRef(c)));
    kept.push(pipe.onEvent(callbacks[0]));
    kept.push(pipe.onEvent(callbacks[1], false));
    pipe.onInterestEnd(callbacks[2]);
    kept.push(pipe.onPoke(callbacks[3]));
  })();
  pipe.addResponse("1", true);
  // WeakRefs hold their targets until the current job ends.
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc!();
  // The pipe and its unregister functions are still alive; the callbacks not.
  assertEquals(String(pipe), 'Pipe { request: "GET /r", ended }');
  assertEquals(kept.length, 3);
  assertEquals(refs.map((ref) => ref.deref() === undefined), [
    true,
    true,
    true,
    true,
  ]);
}, {
  ignore: lacking(
    "a garbage collector a test can call (gc, Bun.gc)",
    gc === undefined,
  ),
});

test("Pipe shows any kind of request in String()", () => {
  const log = new RecordingLogger();
  const shown = [
    "GET /x",
    12n,
    function handler() {},
    () => {},
    null,
    undefined,
    7,
    Symbol("s"),
    new Map(),
    Object.create(null),
  ].map((request) => String(new Pipe(request, log)).slice(16, -30));
  assertEquals(shown, [
    '"GET /x"',
    "12n",
    "[Function handler]",
    "[Function (anonymous)]",
    "null",
    "undefined",
    "7",
    "Symbol(s)",
    "[Map]",
    "[object]",
  ]);
});

// --- Disposal and AbortSignal -------------------------------------------------

/** An AbortSignal stand-in that shows its listeners. */
function countingSignal() {
  const controller = new AbortController();
  // Keyed by type as a real signal is: removing with another type removes
  // nothing.
  const listeners = new Set<string>();
  const ids = new Map<EventListenerOrEventListenerObject, number>();
  const key = (type: string, listener: EventListenerOrEventListenerObject) => {
    if (!ids.has(listener)) ids.set(listener, ids.size);
    return `${type}:${ids.get(listener)}`;
  };
  const signal = {
    get aborted() {
      return controller.signal.aborted;
    },
    addEventListener(
      type: string,
      listener: EventListenerOrEventListenerObject,
      options?: AddEventListenerOptions,
    ) {
      listeners.add(key(type, listener));
      controller.signal.addEventListener(type, listener, options);
    },
    removeEventListener(
      type: string,
      listener: EventListenerOrEventListenerObject,
    ) {
      listeners.delete(key(type, listener));
      controller.signal.removeEventListener(type, listener);
    },
  } as unknown as AbortSignal;
  return { signal, listeners, abort: () => controller.abort() };
}

test(
  "Pipe.onEvent() returns an unregister function that is also disposable",
  () => {
    const { pipe, trace, record, hook } = setup();
    const off = pipe.onEvent(record("a"));
    pipe.onEvent(record("observer"), false);
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("1");
    // What `using off = pipe.onEvent(…)` does at the end of its block.
    off[Symbol.dispose]();
    off[Symbol.dispose]();
    assertEquals(trace, [
      "a: response 1",
      "observer: response 1",
      "observer: interestEnd",
      "responder: interest ended",
    ]);
    // The no-op returned by an ended pipe is disposable too.
    const late = pipe.onEvent(record("late"));
    late[Symbol.dispose]();
    assertEquals(trace.at(-1), "late: interestEnd");
  },
  { ignore: lacking("Symbol.dispose", !("dispose" in Symbol)) },
);

test("Pipe.onEvent() accepts an options object with isInterest", () => {
  const { pipe, trace, record, hook } = setup();
  pipe.onEvent(record("observer"), { isInterest: false });
  const off = pipe.onEvent(record("a", false), {});
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  off();
  assertEquals(trace, [
    "observer: response 1",
    "a: response 1",
    "observer: interestEnd",
    "responder: interest ended",
  ]);
  assertThrows(
    () => pipe.onEvent(() => true, { isInterest: 1 as never }),
    TypeError,
    "isInterest must be a boolean",
  );
});

test("Pipe.onEvent() unregisters the callback when its signal aborts", () => {
  const { pipe, trace, record, hook } = setup();
  const controller = new AbortController();
  pipe.onEvent(record("a"), { signal: controller.signal });
  pipe.onEvent(record("observer"), { isInterest: false });
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  controller.abort();
  pipe.addResponse("2");
  assertEquals(trace, [
    "a: response 1",
    "observer: response 1",
    "observer: interestEnd",
    "responder: interest ended",
  ]);
  assertEquals(pipe.ended, true);
});

test("Pipe.onEvent() with an aborted signal registers nothing", () => {
  const { pipe, trace, record, hook } = setup();
  const signal = AbortSignal.abort();
  const off = pipe.onEvent(record("a"), { signal });
  pipe.onInterestEnd(hook("responder")); // no interest: at once
  pipe.addResponse("1");
  off();
  assertEquals(trace, ["responder: interest ended"]);
});

test("Pipe.onEvent() lets go of its signal whenever the callback goes", () => {
  const { pipe, trace, record } = setup();
  const bySignal = countingSignal();
  const byReturn = countingSignal();
  const byUnregister = countingSignal();
  const byFinal = countingSignal();
  const byEnd = countingSignal();
  pipe.onEvent(record("signal"), { signal: bySignal.signal });
  pipe.onEvent(record("return", false), { signal: byReturn.signal });
  const off = pipe.onEvent(record("off"), { signal: byUnregister.signal });
  pipe.onEvent(record("final"), { signal: byFinal.signal });
  const counts = () =>
    [bySignal, byReturn, byUnregister, byFinal].map((s) => s.listeners.size);
  assertEquals(counts(), [1, 1, 1, 1]);
  bySignal.abort();
  pipe.addResponse("1");
  off();
  assertEquals(counts(), [0, 0, 0, 1]);
  pipe.addResponse("2", true);
  assertEquals(counts(), [0, 0, 0, 0]);
  assertEquals(trace, [
    "return: response 1",
    "off: response 1",
    "final: response 1",
    "final: response 2 last",
  ]);

  // A non-interest callback with a signal, dropped by the end of interest.
  const other = setup();
  const stop = other.pipe.onEvent(() => true);
  other.pipe.onEvent(other.record("observer"), {
    isInterest: false,
    signal: byEnd.signal,
  });
  assertEquals(byEnd.listeners.size, 1);
  stop();
  assertEquals(byEnd.listeners.size, 0);
  byEnd.abort();
  assertEquals(other.trace, ["observer: interestEnd"]);
});

test("Pipe.onEvent() rejects a signal that is not an AbortSignal", () => {
  const { pipe, trace, hook } = setup();
  for (const bad of [null, 1, {}, { aborted: false }]) {
    assertThrows(
      () => pipe.onEvent(() => true, { signal: bad as never }),
      TypeError,
      "Cannot call Pipe.onEvent(): signal must be an AbortSignal",
    );
  }
  pipe.onInterestEnd(hook("responder"));
  assertEquals(trace, ["responder: interest ended"]);
});

// --- Faults and hostile input -------------------------------------------------

test("Pipe events cannot be extended or shadowed, the shared end-of-interest event included", () => {
  const events: PipeEvent<string>[] = [];
  const ends: PipeEvent<string>[] = [];
  for (const name of ["A", "B"]) {
    const { pipe } = setup(`GET /${name}`);
    const off = pipe.onEvent((e) => events.push(e) > 0);
    pipe.onEvent((e) => ends.push(e) > 0, false);
    pipe.addResponse(name);
    off();
  }
  const { pipe: failing } = setup();
  failing.onEvent((e) => events.push(e) > 0);
  failing.addException(new Error("x"));
  assertEquals(ends.map((e) => e.kind), [
    "response",
    "interestEnd",
    "response",
    "interestEnd",
  ]);
  assertStrictEquals(ends[1], ends[3]); // the end event all pipes share
  const attempts: string[] = [];
  for (const event of [...events, ends[1]]) {
    for (const field of ["kind", "message", "exception", "isLast"]) {
      const before = (event as unknown as Record<string, unknown>)[field];
      try {
        (event as unknown as Record<string, unknown>)[field] = "forged";
        attempts.push(`assign ${field} succeeded`);
      } catch (error) {
        if (!(error instanceof TypeError)) throw error;
      }
      assertStrictEquals(
        (event as unknown as Record<string, unknown>)[field],
        before,
      );
    }
  }
  assertEquals(attempts, []);
  assertEquals(events.map((e) => e.message), ["A", "B", undefined]);
  // The end event all pipes share is frozen: nothing one caller adds to it
  // reaches another.
  const shared = ends[1];
  assertEquals(Object.isFrozen(shared), true);
  for (
    const act of [
      () => (shared as unknown as Record<string, unknown>).tag = "A",
      () => Object.defineProperty(shared, "message", { value: "forged" }),
      () => Object.setPrototypeOf(shared, null),
    ]
  ) {
    assertThrows(act, TypeError);
  }
  assertEquals((ends[3] as unknown as { tag?: string }).tag, undefined);
  // Other events are not frozen (a freeze per event tripled the cost of a
  // dispatch); redefining their properties is the caller's own business.
  assertEquals(events.map((e) => Object.isFrozen(e)), [false, false, false]);
  // Nor can every event be changed at once through their prototype.
  const proto = Object.getPrototypeOf(events[0]);
  assertEquals(Object.isFrozen(proto), true);
});

test("Pipe.onEvent() rejects a fake AbortSignal, such as one without removeEventListener", () => {
  const { pipe } = setup();
  const fakes: unknown[] = [
    { aborted: false, addEventListener() {} }, // no removeEventListener
    { aborted: "no", addEventListener() {}, removeEventListener() {} },
    { aborted: false, removeEventListener() {} },
    "signal",
    null,
  ];
  for (const signal of fakes) {
    assertThrows(
      () => pipe.onEvent(() => true, { signal: signal as AbortSignal }),
      TypeError,
      "signal must be an AbortSignal",
    );
  }
  assertEquals(
    String(pipe),
    'Pipe { request: "GET /r", callbacks: 0, interests: 0 }',
  );
});

test("Pipe.onEvent() reports a signal whose removeEventListener throws, and still ends the pipe", async () => {
  await captureReported((reported) => {
    const { pipe, trace, record, hook } = setup();
    const broken = new Error("removeEventListener broke");
    const signal = {
      aborted: false,
      addEventListener() {},
      removeEventListener() {
        throw broken;
      },
    } as unknown as AbortSignal;
    pipe.onEvent(record("a"), { signal });
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("final", true); // does not throw
    assertEquals(trace, [
      "a: response final last",
      "responder: interest ended",
    ]);
    assertEquals(pipe.ended, true);
    assertEquals(reported, [broken]);
  });
});

test("Pipe with a logger whose methods throw: no outcome changes, each throw is reported", async () => {
  await captureReported((reported) => {
    const log = new ThrowingLogger();
    const pipe = new Pipe<string, string>("GET /r", log);
    const trace: string[] = [];
    pipe.onEvent((e) => trace.push(`a: ${show(e)}`) > 0);
    pipe.addResponse("final", true);
    pipe.addResponse("late"); // warn throws
    pipe.addException(new Error("late")); // error throws
    pipe.onInterestEnd(() => trace.push("hook ran")); // warn throws first
    pipe.onEvent((e) => trace.push(`late callback: ${show(e)}`) > 0);
    assertEquals(trace, [
      "a: response final last",
      "hook ran",
      "late callback: interestEnd",
    ]);
    assertEquals(log.calls, ["warn", "error", "warn", "warn"]);
    assertEquals(
      reported.map((e) => (e as Error).message),
      [
        "logger broke (warn)",
        "logger broke (error)",
        "logger broke (warn)",
        "logger broke (warn)",
      ],
    );
  });
});

test("Pipe unregister called during the end removes a callback not yet reached", () => {
  const { pipe, trace, record } = setup();
  const off = pipe.onEvent(() => true);
  let offObserver = () => {};
  pipe.onInterestEnd(() => {
    trace.push("responder: interest ended");
    offObserver();
  });
  offObserver = pipe.onEvent(record("observer"), false);
  off();
  assertEquals(trace, ["responder: interest ended"]);
  assertEquals(pipe.ended, true);
  offObserver(); // and afterwards it does nothing
  assertEquals(trace, ["responder: interest ended"]);
});

test("Pipe.poke() from inside a delivery runs the poke handlers once the delivery is over", () => {
  const { pipe, trace } = setup();
  pipe.onEvent((event) => {
    trace.push(`a: ${show(event)}`);
    if (event.message === "ping me") {
      pipe.poke();
      trace.push("a: poked");
    }
    return true;
  });
  pipe.onEvent((event) => trace.push(`b: ${show(event)}`) > 0);
  // The README's responder: answers a poke at once.
  pipe.onPoke(() => pipe.addResponse("pong"));
  pipe.addResponse("ping me");
  assertEquals(trace, [
    "a: response ping me",
    "a: poked",
    "b: response ping me",
    "a: response pong",
    "b: response pong",
  ]);
});

test("Pipe.poke() from inside a final delivery does nothing: the pipe has ended", () => {
  const { pipe, trace } = setup();
  pipe.onPoke(() => trace.push("poked"));
  pipe.onEvent(() => {
    pipe.poke();
    return true;
  });
  pipe.addResponse("bye", true);
  assertEquals(trace, []);
});

test("Pipe.onPoke() on an ended pipe registers nothing and returns a harmless unregister", () => {
  const { pipe, trace } = setup();
  pipe.addResponse("x", true);
  const off = pipe.onPoke(() => trace.push("poked"));
  assertEquals(typeof off, "function");
  pipe.poke();
  off();
  off();
  assertEquals(trace, []);
});

test("Pipe accepts a logger that is itself a function with the four methods", () => {
  const calls: string[] = [];
  const log = Object.assign(() => {}, {
    debug: () => calls.push("debug"),
    info: () => calls.push("info"),
    warn: () => calls.push("warn"),
    error: () => calls.push("error"),
  });
  const pipe = new Pipe<string, string>("GET /r", log);
  pipe.addResponse("x", true);
  pipe.addResponse("late");
  assertEquals(calls, ["warn"]);
});

test("Pipe carries requests and messages that are hostile Proxies without touching them", async () => {
  await captureReported((reported) => {
    const request = throwingProxy();
    const log = new RecordingLogger();
    const pipe = new Pipe<object, object>(request, log);
    const got: unknown[] = [];
    pipe.onEvent((e) => got.push(e.message) > 0);
    const messages = [throwingProxy(), revokedProxy()];
    pipe.addResponse(messages[0]);
    pipe.addResponse(messages[1], true);
    assertStrictEquals(got[0], messages[0]);
    assertStrictEquals(got[1], messages[1]);
    assertStrictEquals(pipe.request, request);
    assertEquals(String(pipe), "Pipe { request: [unreadable], ended }");
    pipe.addResponse(revokedProxy()); // late: logged, with the pipe
    assertEquals(log.levels(), ["warn"]);
    assertEquals(reported, []);
  });
});

test("Pipe.addException() carries thrown values of any kind unchanged", () => {
  for (
    const thrown of [
      undefined,
      null,
      Object.freeze({ code: 1 }),
      0,
      "",
      revokedProxy(),
    ]
  ) {
    const { pipe } = setup();
    const got: unknown[] = [];
    pipe.onEvent((e) => got.push(e.kind, e.exception) > 0);
    pipe.addException(thrown);
    assertEquals(got.length, 2);
    assertEquals(got[0], "exception");
    assertStrictEquals(got[1], thrown);
  }
});

test("Pipe unregisters many callbacks in any order, delivering to exactly the ones left", () => {
  const { pipe } = setup();
  const seen = new Set<number>();
  const offs = Array.from({ length: 1000 }, (_, i) =>
    pipe.onEvent(() => {
      seen.add(i);
      return true;
    }));
  // Every third callback stays; the rest go in a scrambled order.
  const order = offs.map((_, i) => i).filter((i) => i % 3 !== 0)
    .sort((a, b) => ((a * 7919) % 1000) - ((b * 7919) % 1000));
  for (const i of order) offs[i]();
  pipe.addResponse("x");
  assertEquals(
    [...seen].sort((a, b) => a - b),
    offs.map((_, i) => i).filter((i) => i % 3 === 0),
  );
  assertEquals(
    String(pipe),
    'Pipe { request: "GET /r", callbacks: 334, interests: 334 }',
  );
});

test("Pipe.onPoke() removers work in any order; a poke calls exactly the handlers left, in order", () => {
  const { pipe } = setup();
  pipe.onEvent(() => true);
  const called: number[] = [];
  const offs = Array.from(
    { length: 300 },
    (_, i) => pipe.onPoke(() => called.push(i)),
  );
  for (let i = 299; i >= 0; i--) if (i % 4 !== 0) offs[i]();
  pipe.poke();
  assertEquals(called, offs.map((_, i) => i).filter((i) => i % 4 === 0));
});

// --- What the mutation pass showed no test noticed ----------------------------

test("Pipe() names the first console method its log lacks", () => {
  const full = { debug() {}, info() {}, warn() {}, error() {} };
  for (const method of ["debug", "info", "warn", "error"] as const) {
    const log = { ...full } as Record<string, unknown>;
    delete log[method];
    assertThrows(
      () => new Pipe("r", log as never),
      TypeError,
      `Cannot create a Pipe: log must have a ${method}() method`,
    );
  }
});

test("Pipe.onEvent() names what it got instead of a callback, null included", () => {
  const { pipe } = setup();
  for (
    const [value, got] of [[null, "null"], [undefined, "undefined"], [
      1,
      "number",
    ]] as const
  ) {
    assertThrows(
      () => pipe.onEvent(value as never),
      TypeError,
      `Cannot call Pipe.onEvent(): callback must be a function, got ${got}`,
    );
  }
  assertThrows(
    () => pipe.onEvent(() => true, null as never),
    TypeError,
    "Cannot call Pipe.onEvent(): isInterest must be a boolean, got null",
  );
});

test("Pipe.onEvent() keeps the error behind an unreadable option as the TypeError's cause", () => {
  const { pipe } = setup();
  const broken = new Error("getter broke");
  const options = Object.defineProperty({}, "signal", {
    get() {
      throw broken;
    },
  });
  const error = assertThrows(
    () => pipe.onEvent(() => true, options),
    TypeError,
  );
  assertStrictEquals((error as Error & { cause?: unknown }).cause, broken);
});

test("new Pipe() keeps the error behind an unreadable logger as the TypeError's cause", () => {
  const broken = new Error("debug getter broke");
  const log = Object.defineProperty({}, "debug", {
    get() {
      throw broken;
    },
  });
  const error = assertThrows(
    () => new Pipe("r", log as never),
    TypeError,
    "Cannot create a Pipe: log cannot be read",
  );
  assertStrictEquals((error as Error & { cause?: unknown }).cause, broken);
});

test("Pipe.onEvent() rejects a function that carries AbortSignal's members", () => {
  const { pipe } = setup();
  const impostor = Object.assign(() => {}, {
    aborted: false,
    addEventListener() {},
    removeEventListener() {},
  });
  assertThrows(
    () => pipe.onEvent(() => true, { signal: impostor as never }),
    TypeError,
    "signal must be an AbortSignal",
  );
});

test("Pipe.onEvent() removes its abort listener from the signal when the callback goes", () => {
  const { pipe } = setup();
  const { signal, listeners } = countingSignal();
  const off = pipe.onEvent(() => true, { signal });
  pipe.onEvent(() => true);
  assertEquals([...listeners], ["abort:0"]);
  off();
  assertEquals([...listeners], []);
});

test("Pipe final delivery: a callback after the interest-end hook still may not add (re-entrant)", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => true);
  pipe.onInterestEnd(() => trace.push("told"));
  pipe.onEvent(() => {
    try {
      pipe.addResponse("sneaky");
      trace.push("added");
    } catch (error) {
      trace.push((error as Error).message.slice(0, 30));
    }
    return true;
  });
  pipe.addResponse("final", true);
  assertEquals(trace, ["told", "Cannot add a response from ins"]);
});

test("Pipe callback that unregisters itself and returns false counts as one removal", () => {
  const { pipe, trace, record } = setup();
  let offSelf = () => {};
  offSelf = pipe.onEvent((event) => {
    trace.push(`self: ${show(event)}`);
    offSelf();
    return false;
  });
  pipe.onEvent(record("b"));
  pipe.addResponse("1");
  assertEquals(
    String(pipe),
    'Pipe { request: "GET /r", callbacks: 1, interests: 1 }',
  );
  pipe.addResponse("2");
  assertEquals(trace, ["self: response 1", "b: response 1", "b: response 2"]);
  assertEquals(pipe.ended, false);
});

test("Pipe.poke() from inside a delivery is fine with no poke handlers at all", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => {
    pipe.poke();
    return true;
  });
  pipe.addResponse("1"); // does not throw
  pipe.onPoke(() => trace.push("poked"));
  pipe.poke();
  assertEquals(trace, ["poked"]);
});

test("Pipe.poke() from inside a delivery in which a callback left still runs the handlers", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => true);
  pipe.onEvent(() => {
    pipe.poke();
    return false; // leaves: the delivery ends with removed entries
  });
  pipe.onPoke(() => trace.push("poked"));
  pipe.addResponse("1");
  assertEquals(trace, ["poked"]);
});

test("Pipe delivery goes on to later callbacks when an observer unregisters the last interest", () => {
  const { pipe, trace, record } = setup();
  let offInterest = () => {};
  pipe.onEvent((event) => {
    trace.push(`first: ${show(event)}`);
    offInterest();
    return true;
  }, false);
  offInterest = pipe.onEvent(record("interest"));
  pipe.onEvent(record("last"), false);
  pipe.addResponse("1");
  assertEquals(trace, [
    "first: response 1",
    "last: response 1",
    "first: interestEnd",
    "last: interestEnd",
  ]);
});

test("Pipe interest-end callbacks are called with no arguments", () => {
  const { pipe } = setup();
  const calls: number[] = [];
  const off = pipe.onEvent(() => true);
  pipe.onInterestEnd(function (this: unknown, ...args: unknown[]) {
    calls.push(args.length);
  });
  off();
  const { pipe: other } = setup();
  other.onEvent(() => true);
  other.onInterestEnd((...args: unknown[]) => calls.push(args.length));
  other.addResponse("x", true);
  assertEquals(calls, [0, 0]);
});

test("Pipe counts only live event callbacks when shown: not interest-end hooks, not removed ones", () => {
  const { pipe } = setup();
  pipe.onEvent(() => true);
  pipe.onInterestEnd(() => {});
  const offs = [pipe.onEvent(() => true), pipe.onEvent(() => true, false)];
  offs[0](); // removed, maybe not compacted yet
  assertEquals(
    String(pipe),
    'Pipe { request: "GET /r", callbacks: 2, interests: 1 }',
  );
});

test(
  "Pipe lets go of removed callbacks' entries, by unregister or by returning false",
  async () => {
    const pipes: Pipe<string, string>[] = [];
    const before = settledHeap()!;
    for (let p = 0; p < 40; p++) {
      const pipe = new Pipe<string, string>("r", new RecordingLogger());
      pipe.onEvent(() => true);
      const offs = Array.from({ length: 1000 }, () => pipe.onEvent(() => true));
      for (let i = 0; i < 1000; i++) offs[(i * 7919) % 1000]();
      pipes.push(pipe);
    }
    for (let p = 0; p < 40; p++) {
      const pipe = new Pipe<string, string>("r", new RecordingLogger());
      pipe.onEvent(() => true);
      for (let i = 0; i < 1000; i++) pipe.onEvent(() => false);
      pipe.addResponse("x");
      pipes.push(pipe);
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
    const grown = settledHeap()! - before;
    // 80,000 entries kept would be about 4 MB; what is left is the 80 pipes
    // and the runtime's own noise (Node 20 showed 0.7 MB).
    assertEquals(grown < 1_500_000, true, `heap grew by ${grown} bytes`);
    assertEquals(
      pipes.every((p) => String(p).endsWith("callbacks: 1, interests: 1 }")),
      true,
    );
  },
  {
    ignore: lacking(
      "a heap figure after a collection",
      settledHeap() === undefined,
    ),
  },
);
