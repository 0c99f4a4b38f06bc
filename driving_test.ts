import {
  assertEquals,
  assertInstanceOf,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { errorToMessage, renderException, runDrivingPipe } from "./driving.ts";
import { IterablePipe } from "./iterable_pipe.ts";
import { type Logger, Pipe, type PipeEvent } from "./pipe.ts";
import { test } from "./testing/suite.ts";
import {
  captureReported,
  countAbortControllers,
  flush,
  RecordingLogger,
  revokedProxy,
  show,
  ThrowingLogger,
  throwingProxy,
} from "./testing/helpers.ts";

function setup() {
  const log = new RecordingLogger();
  const pipe = new Pipe<string, string>("GET /r", log);
  const trace: string[] = [];
  const record = (name: string) => (event: PipeEvent<string>) => {
    trace.push(`${name}: ${show(event)}`);
    return true;
  };
  return { log, pipe, trace, record };
}

/** A promise and the functions that settle it. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// --- runDrivingPipe ----------------------------------------------------------

test("runDrivingPipe() starts the driver in a microtask", async () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("requester"));
  const done = runDrivingPipe(pipe, () => {
    trace.push("driver started");
    pipe.addResponse("1", true);
  });
  trace.push("set-up finished");
  await done;
  assertEquals(trace, [
    "set-up finished",
    "driver started",
    "requester: response 1 last",
  ]);
});

test("runDrivingPipe() aborts the signal with an AbortError when interest ends", async () => {
  const { pipe, trace, log } = setup();
  const off = pipe.onEvent(() => true);
  let signal: AbortSignal | undefined;
  const stopped = deferred();
  const done = runDrivingPipe(pipe, (s) => {
    signal = s;
    trace.push("driver started");
    s.addEventListener("abort", () => trace.push("driver saw abort"));
    return stopped.promise;
  });
  await flush();
  assertEquals(signal?.aborted, false);
  off();
  assertEquals(trace, ["driver started", "driver saw abort"]);
  const reason = signal!.reason;
  assertInstanceOf(reason, DOMException);
  assertEquals(reason.name, "AbortError");
  assertEquals(
    reason.message,
    'Interest in Pipe { request: "GET /r" } ended',
  );
  stopped.reject(reason);
  await done;
  // Rejecting with the signal's own reason is the expected stop: one line.
  assertEquals(log.entries, [[
    "debug",
    'Driver of Pipe { request: "GET /r" } stopped after interest ended',
  ]]);
});

test("runDrivingPipe() builds its abort reason without an error constructor: an AbortError DOMException whose stack is its first line", async () => {
  const errors = Error as { stackTraceLimit?: number };
  const before = errors.stackTraceLimit;
  const pipe = new Pipe<string, string>("GET /r", new RecordingLogger());
  const off = pipe.onEvent(() => true);
  let reason: unknown;
  const done = runDrivingPipe(pipe, (signal) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        reason = signal.reason;
        reject(signal.reason);
      });
    }), "r");
  await flush();
  off();
  await done;
  assertEquals(errors.stackTraceLimit, before);
  assertInstanceOf(reason, DOMException);
  assertInstanceOf(reason, Error);
  const r = reason as DOMException;
  assertEquals(
    [r.name, r.message, r.code, String(r), r.stack],
    [
      "AbortError",
      "Interest in r ended",
      20,
      "AbortError: Interest in r ended",
      // No frame on any engine: a constructed error would carry some where
      // the engine captures stacks (V8, SpiderMonkey, JavaScriptCore).
      "AbortError: Interest in r ended",
    ],
  );
  assertStrictEquals(r.constructor, DOMException);
  assertEquals(Object.keys(r), []);
});

test("runDrivingPipe() names the task in the abort reason when given a name", async () => {
  const pipe = new IterablePipe<string, string>("x", {
    log: new RecordingLogger(),
  });
  let reason: unknown;
  const done = runDrivingPipe(pipe, (signal) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        reason = signal.reason;
        reject(signal.reason);
      });
    }), "thermometer");
  await flush();
  pipe.addResponse("21", true);
  await done;
  assertInstanceOf(reason, DOMException);
  assertEquals(
    [(reason as DOMException).name, (reason as DOMException).message],
    ["AbortError", "Interest in thermometer ended"],
  );
});

test("runDrivingPipe() turns a rejection into the pipe's exception", async () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  const failure = new Error("sensor unplugged");
  const done = runDrivingPipe(pipe, async () => {
    await Promise.resolve();
    pipe.addResponse("partial");
    throw failure;
  });
  const settled = await done;
  assertStrictEquals(settled, undefined);
  assertEquals(trace, [
    "requester: response partial",
    "requester: exception sensor unplugged",
  ]);
  assertEquals(log.entries, []);
});

test("runDrivingPipe() turns a synchronous throw into the pipe's exception", async () => {
  const { pipe, log } = setup();
  const events: PipeEvent<string>[] = [];
  pipe.onEvent((e) => events.push(e) > 0);
  await runDrivingPipe(pipe, () => {
    throw undefined;
  });
  assertEquals(events.map((e) => e.toJSON()), [{
    kind: "exception",
    message: undefined,
    exception: undefined,
    isLast: true,
  }]);
  assertEquals(log.entries, []);
});

test("runDrivingPipe() swallows a rejection after the abort, logging only at debug", async () => {
  const { pipe, trace, record, log } = setup();
  const off = pipe.onEvent(record("requester"));
  const done = runDrivingPipe(pipe, async (signal) => {
    pipe.addResponse("1");
    await new Promise((_, reject) =>
      signal.addEventListener("abort", () => reject(new Error("cancelled")))
    );
  });
  await flush();
  off();
  await done;
  assertEquals(trace, ["requester: response 1"]);
  assertEquals(log.levels(), ["debug"]);
  assertEquals(
    log.entries[0][1],
    'Driver of Pipe { request: "GET /r" } stopped after interest ended',
  );
  assertEquals((log.entries[0][2] as Error).message, "cancelled");
});

test("runDrivingPipe() takes a driver whose length cannot be read (a revoked Proxy of a function): it is called with a signal, and its throw becomes the pipe's exception, never a throw from runDrivingPipe", async () => {
  const { pipe } = setup();
  const trace: string[] = [];
  pipe.onEvent((event) => {
    trace.push(
      `${event.kind} ${event.exception instanceof TypeError} ${event.isLast}`,
    );
    return true;
  });
  const { proxy, revoke } = Proxy.revocable(() => {}, {});
  revoke();
  // Every engine words the TypeError its own way: its kind is what counts.
  await runDrivingPipe(pipe, proxy);
  assertEquals(trace, ["exception true true"]);
  assertEquals(pipe.ended, true);
});

test("runDrivingPipe() makes no AbortController for a driver that declares no parameter and calls it with none; interest still ends it: a rejection after that is logged at debug with the error", async () => {
  const controllers = countAbortControllers();
  try {
    const { pipe, trace, record, log } = setup();
    const off = pipe.onEvent(record("requester"));
    const stop = deferred();
    const done = runDrivingPipe(pipe, function () {
      trace.push(`driver called with ${arguments.length} arguments`);
      pipe.addResponse("1");
      return stop.promise;
    });
    await flush();
    off();
    stop.reject(new Error("stopped late"));
    await done;
    assertEquals(trace, [
      "driver called with 0 arguments",
      "requester: response 1",
    ]);
    assertEquals(log.levels(), ["debug"]);
    assertEquals(
      log.entries[0][1],
      'Driver of Pipe { request: "GET /r" } stopped after interest ended',
    );
    assertEquals((log.entries[0][2] as Error).message, "stopped late");
    assertEquals(controllers.made, 0);
    // One parameter: a signal of its own, as before.
    const second = setup();
    second.pipe.onEvent(second.record("requester"));
    await runDrivingPipe(second.pipe, (signal) => {
      second.trace.push(`signal aborted: ${signal.aborted}`);
      second.pipe.addResponse("2", true);
    });
    assertEquals(second.trace, [
      "signal aborted: false",
      "requester: response 2 last",
    ]);
    assertEquals(controllers.made, 1);
  } finally {
    controllers.restore();
  }
});

test("runDrivingPipe() ends a pipe whose driver finished without a final response", async () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  pipe.onInterestEnd(() => trace.push("interest ended"));
  await runDrivingPipe(pipe, () => {
    pipe.addResponse("1");
  }, "counter");
  assertEquals(trace, [
    "requester: response 1",
    "requester: exception Driver of counter ended without a final response",
    "interest ended",
  ]);
  assertEquals(pipe.ended, true);
  assertEquals(log.entries, []);
});

test("runDrivingPipe() adds nothing after a driver that delivered a final response", async () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  await runDrivingPipe(pipe, async () => {
    await Promise.resolve();
    pipe.addResponse("done", true);
    return "ignored";
  });
  assertEquals(trace, ["requester: response done last"]);
  assertEquals(log.entries, []);
});

test("runDrivingPipe() does not start a driver when interest ended first", async () => {
  const { pipe, trace, log } = setup();
  const off = pipe.onEvent(() => true);
  const done = runDrivingPipe(pipe, () => {
    trace.push("driver started");
  });
  off();
  await done;
  assertEquals(trace, []);
  assertEquals(log.levels(), ["debug"]);

  // A pipe that nobody is interested in at all.
  const idle = setup();
  await runDrivingPipe(idle.pipe, () => {
    idle.trace.push("driver started");
  });
  assertEquals(idle.trace, []);
});

test("runDrivingPipe() resolves only after the outcome reached the pipe, and never rejects", async () => {
  await captureReported(async (reported) => {
    const trace: string[] = [];
    const failing = {
      request: "GET /r",
      log: new RecordingLogger(),
      ended: false,
      addResponse() {},
      addException(e: unknown) {
        trace.push(`exception reached: ${(e as Error).message}`);
        throw new Error("broken pipe implementation");
      },
      onInterestEnd() {},
      onPoke: () => () => {},
    };
    const driver = deferred();
    const done = runDrivingPipe(failing, () => driver.promise).then(
      () => trace.push("resolved"),
      () => trace.push("rejected"),
    );
    await flush();
    driver.reject(new Error("boom"));
    await done;
    assertEquals(trace, ["exception reached: boom", "resolved"]);
    assertEquals(reported.map((e) => (e as Error).message), [
      "broken pipe implementation",
    ]);
  });
});

test("runDrivingPipe() rejects a driver that is not a function", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => true);
  pipe.onInterestEnd(() => trace.push("interest ended"));
  assertThrows(
    () => runDrivingPipe(pipe, "render" as never),
    TypeError,
    "Cannot call runDrivingPipe(): driver must be a function, got string",
  );
  assertThrows(
    () => runDrivingPipe(pipe, () => {}, 7 as never),
    TypeError,
    "Cannot call runDrivingPipe(): name must be a string, got number",
  );
  // Nothing was hooked onto the pipe.
  pipe.addResponse("1", true);
  assertEquals(trace, ["interest ended"]);
});

test("runDrivingPipe() drives an IterablePipe until the loop is left", async () => {
  const pipe = new IterablePipe<string, number>("GET /ticks", {
    log: new RecordingLogger(),
  });
  const trace: string[] = [];
  const done = runDrivingPipe(pipe, async (signal) => {
    signal.addEventListener("abort", () => trace.push("signal aborted"));
    try {
      for (let tick = 1; !signal.aborted; tick++) {
        pipe.addResponse(tick);
        await Promise.resolve();
      }
    } finally {
      trace.push("driver cleaned up");
    }
  });
  for await (const event of pipe) {
    trace.push(`tick ${event.message}`);
    if (event.message === 3) break;
  }
  trace.push("loop left");
  await done;
  assertEquals(trace, [
    "tick 1",
    "tick 2",
    "tick 3",
    "signal aborted",
    "driver cleaned up",
    "loop left",
  ]);
});

// --- errorToMessage ----------------------------------------------------------

const ise = () => "5.00 Internal Server Error";

test("errorToMessage() forwards responses with their isLast", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  pipe.onInterestEnd(() => trace.push("interest ended"));
  const inner = errorToMessage(pipe, { internalServerError: ise });
  assertInstanceOf(inner, Pipe);
  assertStrictEquals(inner.request, pipe.request);
  assertStrictEquals(inner.log, log);
  inner.addResponse("1");
  inner.addResponse("2", true);
  inner.addResponse("3");
  assertEquals(trace, [
    "requester: response 1",
    "requester: response 2 last",
    "interest ended",
  ]);
  assertEquals([pipe.ended, inner.ended], [true, true]);
  assertEquals(log.levels(), ["warn"]); // the response after the end
});

test("errorToMessage() answers a renderable exception with its own message", () => {
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  const inner = errorToMessage(pipe, { internalServerError: ise });
  class NotFound extends Error {
    toMessage() {
      return "4.04 Not Found";
    }
  }
  const error = new NotFound("no such resource");
  inner.addException(error);
  assertEquals(trace, ["requester: response 4.04 Not Found last"]);
  // Expected, so one line without the stack.
  assertEquals(log.entries, [[
    "info",
    "Render request raised a renderable error (Error: no such resource), responding accordingly",
  ]]);
});

test("errorToMessage() answers a failing toMessage() with internalServerError()", () => {
  for (const toMessage of [() => null, () => undefined]) {
    const { pipe, trace, record, log } = setup();
    pipe.onEvent(record("requester"));
    const inner = errorToMessage(pipe, { internalServerError: ise });
    const error = { toMessage };
    inner.addException(error);
    assertEquals(trace, [
      "requester: response 5.00 Internal Server Error last",
    ]);
    assertEquals(log.entries, [[
      "error",
      "Rendering the renderable exception produced no message",
      error,
    ]]);
  }
  const { pipe, trace, record, log } = setup();
  pipe.onEvent(record("requester"));
  const inner = errorToMessage(pipe, { internalServerError: ise });
  const failure = new Error("cannot render");
  inner.addException({
    toMessage() {
      throw failure;
    },
  });
  assertEquals(trace, ["requester: response 5.00 Internal Server Error last"]);
  assertEquals(log.entries, [[
    "error",
    "Rendering the renderable exception failed",
    failure,
  ]]);
});

test("errorToMessage() answers any other exception with internalServerError()", () => {
  for (const exception of [new Error("bug"), undefined, null, "text", 42, {}]) {
    const { pipe, trace, record } = setup();
    const log = new RecordingLogger();
    pipe.onEvent(record("requester"));
    const inner = errorToMessage(pipe, { internalServerError: ise, log });
    inner.addException(exception);
    assertEquals(trace, [
      "requester: response 5.00 Internal Server Error last",
    ]);
    assertEquals(log.entries.length, 1);
    assertEquals(log.entries[0][0], "error");
    assertEquals(
      log.entries[0][1],
      "An exception occurred while rendering a resource",
    );
    assertStrictEquals(log.entries[0][2], exception);
    assertStrictEquals(inner.log, log);
  }
});

test("errorToMessage() forwards loss of interest so the inner driver aborts", async () => {
  const { pipe, trace } = setup();
  const off = pipe.onEvent(() => true);
  const inner = errorToMessage(pipe, { internalServerError: ise });
  inner.onInterestEnd(() => trace.push("inner interest ended"));
  const done = runDrivingPipe(
    inner,
    (signal) =>
      new Promise((_, reject) =>
        signal.addEventListener("abort", () => {
          trace.push(`driver aborted: ${signal.reason.name}`);
          reject(signal.reason);
        })
      ),
  );
  await flush();
  off();
  await done;
  assertEquals(trace, ["inner interest ended", "driver aborted: AbortError"]);
  assertEquals(inner.ended, true);
});

test("errorToMessage() ends the inner pipe at once when nobody is interested", () => {
  const { pipe, trace } = setup();
  const inner = errorToMessage(pipe, { internalServerError: ise });
  assertEquals(inner.ended, true);
  inner.onInterestEnd(() => trace.push("too late"));
  assertEquals(trace, ["too late"]);
});

test("errorToMessage() forwards pokes to the inner pipe's handlers", () => {
  const { pipe, trace, record } = setup();
  pipe.onEvent(record("requester"));
  const inner = errorToMessage(pipe, { internalServerError: ise });
  inner.onPoke(() => {
    trace.push("inner poked");
    inner.addResponse("alive");
  });
  pipe.poke();
  assertEquals(trace, ["inner poked", "requester: response alive"]);
});

test("errorToMessage() works on an IterablePipe", async () => {
  const log = new RecordingLogger();
  const pipe = new IterablePipe<string, string>("GET /r", { log });
  const inner = errorToMessage(pipe, { internalServerError: ise });
  const trace: string[] = [];
  inner.onPoke(() => trace.push("inner poked"));
  pipe.poke();
  runDrivingPipe(inner, async () => {
    inner.addResponse("1");
    await Promise.resolve();
    throw new Error("crash");
  });
  for await (const event of pipe) trace.push(show(event));
  assertEquals(trace, [
    "inner poked",
    "response 1",
    "response 5.00 Internal Server Error last",
  ]);
  assertEquals(log.levels(), ["error"]);
  assertEquals(inner.ended, true);
});

test("errorToMessage() rejects options without internalServerError()", () => {
  const { pipe, trace } = setup();
  pipe.onEvent(() => true);
  pipe.onInterestEnd(() => trace.push("interest ended"));
  assertThrows(
    () => errorToMessage(pipe, {} as never),
    TypeError,
    "internalServerError must be a function",
  );
  assertThrows(
    () =>
      errorToMessage(pipe, {
        internalServerError: ise,
        log: { warn() {} } as never,
      }),
    TypeError,
    "log must have a debug() method",
  );
  pipe.addResponse("1", true);
  assertEquals(trace, ["interest ended"]);
});

// --- Faults and hostile input -------------------------------------------------

/** An outer pipe with a trace, and errorToMessage's pipe on it. */
function rendering(
  options: { log?: Logger; internalServerError?: () => string } = {},
) {
  const { pipe: outer, trace, record, log } = setup();
  outer.onEvent(record("outer"));
  const inner = errorToMessage(outer, {
    internalServerError: options.internalServerError ?? (() => "5.00"),
    ...(options.log ? { log: options.log } : {}),
  });
  return { outer, inner, trace, log };
}

test("errorToMessage() answers internalServerError() when reading toMessage throws: a getter, a revoked Proxy", async () => {
  for (
    const thrown of [
      {
        get toMessage() {
          throw new Error("getter broke");
        },
      },
      revokedProxy(),
    ]
  ) {
    const { outer, inner, trace, log } = rendering();
    await runDrivingPipe(inner, () => {
      throw thrown;
    });
    assertEquals(trace, ["outer: response 5.00 last"]);
    assertEquals(outer.ended, true);
    assertEquals(log.levels(), ["error"]);
    assertEquals(
      log.entries[0][1],
      "Rendering the renderable exception failed",
    );
  }
});

test("errorToMessage() ends the outer pipe even when its logger throws, reporting the throw", async () => {
  await captureReported(async (reported) => {
    const log = new ThrowingLogger();
    for (
      const [thrown, expected] of [
        [new Error("plain"), "5.00"],
        [{ toMessage: () => "4.04" }, "4.04"],
        [{ toMessage: () => null }, "5.00"],
      ] as const
    ) {
      const { outer, inner, trace } = rendering({ log });
      await runDrivingPipe(inner, () => {
        throw thrown;
      });
      assertEquals(trace, [`outer: response ${expected} last`]);
      assertEquals(outer.ended, true);
    }
    assertEquals(log.calls, ["error", "info", "error"]);
    assertEquals(reported.length, 3);
  });
});

test("errorToMessage() makes an internalServerError() that throws the outer pipe's exception event", async () => {
  const broken = new Error("cannot even render a 5.00");
  const { outer, inner, trace } = rendering({
    internalServerError: () => {
      throw broken;
    },
  });
  const events: unknown[] = [];
  outer.onEvent((e) => events.push(e.exception) > 0, false);
  await runDrivingPipe(inner, () => {
    throw new Error("resource failed");
  });
  assertEquals(trace, ["outer: exception cannot even render a 5.00"]);
  assertStrictEquals(events[0], broken);
  assertEquals(outer.ended, true);
});

test("runDrivingPipe() returns its promise when describing the pipe throws, with a placeholder in the label", async () => {
  const log = new RecordingLogger();
  const pipe = new Pipe<object, string>(throwingProxy(), log);
  const off = pipe.onEvent(() => true);
  let reason: unknown;
  const done = runDrivingPipe(pipe, (signal) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        reason = signal.reason;
        reject(signal.reason);
      });
    }));
  assertInstanceOf(done, Promise);
  await flush();
  off();
  await done;
  assertEquals(
    (reason as DOMException).message,
    "Interest in Pipe { request: [unreadable] } ended",
  );
});

test("runDrivingPipe() settles when the logger throws on the path where the driver never starts", async () => {
  await captureReported(async (reported) => {
    const log = new ThrowingLogger();
    const pipe = new Pipe<string, string>("GET /r", log);
    const off = pipe.onEvent(() => true);
    let started = false;
    const done = runDrivingPipe(pipe, () => {
      started = true;
    });
    off(); // interest ends before the driver's microtask
    assertEquals(await done, undefined);
    assertEquals([started, log.calls], [false, ["debug"]]);
    assertEquals(reported.length, 1);
  });
});

test("runDrivingPipe() lets a driver send a last word when its signal aborts: dropped as late, never thrown", async () => {
  for (const kind of ["Pipe", "IterablePipe"] as const) {
    await captureReported(async (reported) => {
      const log = new RecordingLogger();
      const pipe = kind === "Pipe"
        ? new Pipe<string, string>("GET /obs", log)
        : new IterablePipe<string, string>("GET /obs", { log });
      const trace: string[] = [];
      let leave = () => {};
      if (pipe instanceof Pipe) {
        leave = pipe.onEvent((e) => trace.push(show(e)) > 0);
      }
      const done = runDrivingPipe(pipe, (signal) =>
        new Promise((_, reject) => {
          pipe.addResponse("hello");
          signal.addEventListener("abort", () => {
            pipe.addResponse("goodbye"); // the last word
            trace.push("driver: aborted");
            reject(signal.reason);
          });
        }));
      await flush();
      if (pipe instanceof IterablePipe) {
        for await (const event of pipe) {
          trace.push(show(event));
          break;
        }
      } else leave();
      await done;
      assertEquals(trace, ["response hello", "driver: aborted"]);
      assertEquals(log.levels(), ["warn", "debug"], kind);
      assertEquals(log.entries[0][2], "goodbye");
      assertEquals(reported, [], kind);
    });
  }
});

// --- What the mutation pass showed no test noticed ----------------------------

test("runDrivingPipe() and errorToMessage() name themselves when the pipe is not a responder", () => {
  const complete = {
    addResponse() {},
    addException() {},
    onInterestEnd() {},
    onPoke: () => () => {},
    request: "r",
    log: console,
  };
  const lacking = ["addResponse", "addException", "onInterestEnd", "onPoke"]
    .map((method) => {
      const pipe = { ...complete } as Record<string, unknown>;
      delete pipe[method];
      return pipe;
    });
  for (const pipe of [...lacking, null, undefined, 5]) {
    assertThrows(
      () => runDrivingPipe(pipe as never, () => {}),
      TypeError,
      "Cannot call runDrivingPipe(): pipe must be a Pipe, an IterablePipe or another ResponderPipe",
    );
    assertThrows(
      () =>
        errorToMessage(pipe as never, { internalServerError: () => "5.00" }),
      TypeError,
      "Cannot call errorToMessage(): pipe must be a Pipe, an IterablePipe or another ResponderPipe",
    );
  }
});

test("errorToMessage() rejects a log without console methods, naming its pipe", () => {
  const pipe = new Pipe<string, string>("r");
  assertThrows(
    () =>
      errorToMessage(pipe, {
        internalServerError: () => "5.00",
        log: { debug() {} } as never,
      }),
    TypeError,
    "Cannot call errorToMessage(): log must have a info() method",
  );
});

test("runDrivingPipe() logs, at debug, that it did not start a driver whose interest ended first", async () => {
  const log = new RecordingLogger();
  const pipe = new Pipe<string, string>("GET /r", log);
  const off = pipe.onEvent(() => true);
  const done = runDrivingPipe(pipe, () => {}, "the sensor");
  off();
  await done;
  assertEquals(log.entries, [[
    "debug",
    "Driver of the sensor not started: interest ended first",
  ]]);
});

test("runDrivingPipe() names a pipe by its kind and a brief preview of its request, never a dump", async () => {
  const reasons: string[] = [];
  const drive = (pipe: Pipe<unknown, string> | IterablePipe<unknown, string>) =>
    runDrivingPipe(
      pipe,
      (signal) =>
        new Promise((_, reject) =>
          signal.addEventListener("abort", () => {
            reasons.push((signal.reason as DOMException).message);
            reject(signal.reason);
          })
        ),
    );
  const log = new RecordingLogger();
  const plain = new Pipe<unknown, string>({ method: "GET", path: "/a" }, log);
  const iterable = new IterablePipe<unknown, string>(new Map([[1, 2]]), {
    log,
  });
  const offPlain = plain.onEvent(() => true);
  const iterator = iterable[Symbol.asyncIterator]();
  const next = iterator.next(); // interest, until the loop is left
  const done = [drive(plain), drive(iterable)];
  await flush();
  offPlain();
  await iterator.return!();
  await Promise.all([...done, next]);
  assertEquals(reasons, [
    "Interest in Pipe { request: [object] } ended",
    "Interest in IterablePipe { request: [Map] } ended",
  ]);
});

// --- renderException ---------------------------------------------------------

test("renderException() answers a renderable exception with its message, one info line", () => {
  const log = new RecordingLogger();
  const error = {
    toMessage: () => "4.04 Not Found",
    toString: () => "NotFound",
  };
  assertEquals(
    renderException(error, { internalServerError: ise, log }),
    "4.04 Not Found",
  );
  assertEquals(log.entries, [[
    "info",
    "Render request raised a renderable error (NotFound), responding accordingly",
  ]]);
});

test("renderException() answers anything else with internalServerError(), logged at error with the exception", () => {
  const log = new RecordingLogger();
  const error = new Error("disk on fire");
  const got = [
    renderException(error, { internalServerError: ise, log }),
    renderException({ toMessage: () => null }, {
      internalServerError: ise,
      log,
    }),
  ];
  assertEquals(got, [
    "5.00 Internal Server Error",
    "5.00 Internal Server Error",
  ]);
  assertEquals(log.levels(), ["error", "error"]);
  assertEquals(
    log.entries[0][1],
    "An exception occurred while rendering a resource",
  );
  assertStrictEquals(log.entries[0][2], error);
  assertEquals(
    log.entries[1][1],
    "Rendering the renderable exception produced no message",
  );
});

test("renderException() throws what internalServerError() throws, and names itself for bad options", () => {
  const log = new RecordingLogger();
  const failure = new Error("no response either");
  const thrown = assertThrows(() =>
    renderException(new Error("x"), {
      internalServerError: () => {
        throw failure;
      },
      log,
    })
  );
  assertStrictEquals(thrown, failure);
  assertThrows(
    () => renderException(new Error("x"), {} as never),
    TypeError,
    "Cannot call renderException(): options.internalServerError must be a function, got undefined",
  );
  assertThrows(
    () => renderException(new Error("x"), null as never),
    TypeError,
    "Cannot call renderException(): options cannot be read",
  );
  assertThrows(
    () =>
      renderException(new Error("x"), {
        internalServerError: ise,
        log: {} as never,
      }),
    TypeError,
    "Cannot call renderException(): log must have a debug() method",
  );
});

test("renderException() logs to console by default", () => {
  const original = console.info;
  const lines: unknown[][] = [];
  console.info = (...data: unknown[]) => lines.push(data);
  try {
    renderException({ toMessage: () => "4.04", toString: () => "E" }, {
      internalServerError: ise,
    });
  } finally {
    console.info = original;
  }
  assertEquals(lines, [[
    "Render request raised a renderable error (E), responding accordingly",
  ]]);
});

test("errorToMessage() on a responder without a log says which method the missing log lacks", () => {
  const responder = {
    request: "r",
    addResponse() {},
    addException() {},
    onInterestEnd() {},
    onPoke: () => () => {},
  };
  assertThrows(
    () =>
      errorToMessage(responder as never, { internalServerError: () => "5.00" }),
    TypeError,
    "Cannot call errorToMessage(): log must have a debug() method",
  );
});
