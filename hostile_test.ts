// Hostile values for every parameter of every export: Proxies whose every
// trap throws, revoked Proxies, getters that throw, thenables that never
// settle or whose `then` throws, loggers that throw, and non-Error throws
// (undefined, null, frozen objects). Each case asserts the whole outcome:
// who was called, what ended, what was logged or reported.

import {
  assertEquals,
  assertInstanceOf,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { errorToMessage, runDrivingPipe } from "./driving.ts";
import { IterablePipe } from "./iterable_pipe.ts";
import { Pipe, type PipeEvent, type ResponderPipe } from "./pipe.ts";
import { test } from "./testing/suite.ts";
import {
  captureReported,
  flush,
  RecordingLogger,
  revokedProxy,
  show,
  ThrowingLogger,
  throwingProxy,
} from "./testing/helpers.ts";

/** A getter that throws, on an otherwise ordinary object. */
function throwingGetter(name: string): object {
  return Object.defineProperty({}, name, {
    get() {
      throw new Error(`getter ${name} broke`);
    },
  });
}

/** Values no code may read: every read throws. */
const unreadable = (): [string, unknown][] => [
  ["a Proxy whose every trap throws", throwingProxy()],
  ["a revoked Proxy", revokedProxy()],
];

/** Opaque values a pipe must carry without looking. */
const opaque = (): [string, unknown][] => [
  ...unreadable(),
  ["undefined", undefined],
  ["null", null],
  ["a frozen object", Object.freeze({ frozen: true })],
  ["a never-settling thenable", { then() {} }],
];

test("new Pipe() carries any request, and rejects an unreadable or incomplete log with a TypeError", () => {
  for (const [what, request] of opaque()) {
    const pipe = new Pipe(request, new RecordingLogger());
    assertStrictEquals(pipe.request, request, what);
  }
  for (
    const [what, log, message] of [
      ...unreadable().map(([w, v]) => [w, v, "log cannot be read"] as const),
      ["a logger whose warn getter throws", {
        debug() {},
        info() {},
        ...throwingGetter("warn"),
        error() {},
      }, "log must have a warn() method"],
      ["null", null, "log must have a debug() method"],
    ] as const
  ) {
    assertThrows(
      () => new Pipe("r", log as never),
      TypeError,
      message,
      what,
    );
  }
});

test("Pipe.onEvent() rejects unreadable options and signals with a TypeError, registering nothing", () => {
  const log = new RecordingLogger();
  const pipe = new Pipe<string, string>("r", log);
  const bad: [string, unknown, string][] = [
    ...unreadable().map(([w, v]) =>
      [w, v, "options cannot be read"] as [string, unknown, string]
    ),
    [
      "options with a throwing signal getter",
      throwingGetter("signal"),
      "options cannot be read",
    ],
    ...unreadable().map(([w, v]) =>
      [
        `a signal that is ${w}`,
        { signal: v },
        "signal must be an AbortSignal",
      ] as [string, unknown, string]
    ),
    ["a signal whose aborted getter throws", {
      signal: {
        addEventListener() {},
        removeEventListener() {},
        ...throwingGetter("aborted"),
      },
    }, "signal must be an AbortSignal"],
    ["a signal whose addEventListener throws", {
      signal: {
        aborted: false,
        addEventListener() {
          throw new Error("add broke");
        },
        removeEventListener() {},
      },
    }, "signal.addEventListener() failed"],
  ];
  for (const [what, options, message] of bad) {
    assertThrows(
      () => pipe.onEvent(() => true, options as never),
      TypeError,
      message,
      what,
    );
  }
  assertEquals(
    String(pipe),
    'Pipe { request: "r", callbacks: 0, interests: 0 }',
  );
  const trace: string[] = [];
  pipe.onInterestEnd(() => trace.push("responder told"));
  assertEquals(trace, ["responder told"]); // nothing was registered
});

test("Pipe callbacks that are hostile functions, or throw non-Error values, are reported and removed", async () => {
  await captureReported((reported) => {
    const log = new RecordingLogger();
    const pipe = new Pipe<string, string>("r", log);
    const trace: string[] = [];
    const throwers: unknown[] = [undefined, null, Object.freeze({ x: 1 })];
    for (const value of throwers) {
      pipe.onEvent(() => {
        throw value;
      });
    }
    // A function Proxy whose apply trap throws.
    pipe.onEvent(
      new Proxy(() => true, {
        apply() {
          throw new Error("apply trap");
        },
      }),
    );
    pipe.onEvent((e) => trace.push(`survivor: ${show(e)}`) > 0);
    pipe.onInterestEnd(() => trace.push("responder told"));
    pipe.addResponse("one");
    pipe.addResponse("two");
    pipe.addResponse("three", true);
    assertEquals(trace, [
      "survivor: response one",
      "survivor: response two",
      "survivor: response three last",
      "responder told",
    ]);
    assertEquals(reported.length, 4);
    assertStrictEquals(reported[0], undefined);
    assertStrictEquals(reported[1], null);
    assertStrictEquals(reported[2], throwers[2]);
    assertEquals((reported[3] as Error).message, "apply trap");
    assertEquals(log.entries, []);
  });
});

test("Pipe.onInterestEnd() and onPoke() reject non-functions and report hostile functions", async () => {
  await captureReported((reported) => {
    const pipe = new Pipe<string, string>("r", new RecordingLogger());
    for (const [what, value] of opaque()) {
      assertThrows(
        () => pipe.onInterestEnd(value as never),
        TypeError,
        undefined,
        what,
      );
      assertThrows(
        () => pipe.onPoke(value as never),
        TypeError,
        undefined,
        what,
      );
    }
    const off = pipe.onEvent(() => true);
    pipe.onPoke(() => {
      throw null;
    });
    const trace: string[] = [];
    pipe.onPoke(() => trace.push("second poke handler"));
    pipe.onInterestEnd(() => {
      throw undefined;
    });
    pipe.onInterestEnd(() => trace.push("second hook"));
    pipe.poke();
    off();
    assertEquals(trace, ["second poke handler", "second hook"]);
    assertEquals(reported, [null, undefined]);
  });
});

test("Pipe.addResponse() and addException() carry hostile values to every callback unchanged", () => {
  for (const [what, value] of opaque()) {
    const log = new RecordingLogger();
    const pipe = new Pipe<string, unknown>("r", log);
    const got: unknown[] = [];
    pipe.onEvent((e) => got.push(e.message) > 0);
    pipe.onEvent((e) => got.push(e.message) > 0, false);
    pipe.addResponse(value);
    assertEquals(got.length, 2, what);
    assertStrictEquals(got[0], value);
    assertStrictEquals(got[1], value);
    const failing = new Pipe<string, string>("r", log);
    const exceptions: unknown[] = [];
    failing.onEvent((e) => exceptions.push(e.kind, e.exception) > 0);
    failing.addException(value);
    assertEquals(exceptions[0], "exception");
    assertStrictEquals(exceptions[1], value);
    assertEquals(failing.ended, true);
    assertEquals(log.entries, [], what);
  }
  const pipe = new Pipe<string, string>("r");
  for (const isLast of [undefined, null, "yes", 1, throwingProxy()]) {
    if (isLast === undefined) continue;
    assertThrows(
      () => pipe.addResponse("x", isLast as never),
      TypeError,
      "isLast must be a boolean",
    );
  }
});

test("Pipe inspection never throws, whatever the request", () => {
  for (const [what, request] of unreadable()) {
    const pipe = new Pipe(request, new RecordingLogger());
    assertEquals(
      String(pipe),
      "Pipe { request: [unreadable], callbacks: 0, interests: 0 }",
      what,
    );
    const format = () => {
      throw new Error("formatter broke");
    };
    assertEquals(
      pipe.toString(format),
      "Pipe { request: [unreadable], callbacks: 0, interests: 0 }",
    );
  }
});

test("new IterablePipe() carries any request, and rejects hostile options with a TypeError", () => {
  for (const [what, request] of opaque()) {
    assertStrictEquals(new IterablePipe(request).request, request, what);
  }
  for (
    const [what, options, message] of [
      ...unreadable().map(([w, v]) =>
        [w, v, "an options object { log, maxBuffered }"] as const
      ),
      [
        "options whose log getter throws",
        throwingGetter("log"),
        "an options object { log, maxBuffered }",
      ],
      [
        "a logger in place of options",
        new ThrowingLogger(),
        "an options object { log, maxBuffered }",
      ],
      ["an unreadable log", { log: revokedProxy() }, "log cannot be read"],
      [
        "maxBuffered 0",
        { maxBuffered: 0 },
        "maxBuffered must be a positive integer",
      ],
    ] as const
  ) {
    let error: unknown;
    try {
      new IterablePipe("r", options as never);
    } catch (e) {
      error = e;
    }
    assertEquals(
      error instanceof TypeError || error instanceof RangeError,
      true,
      what,
    );
    assertEquals(
      (error as Error).message.includes(message),
      true,
      `${what}: ${(error as Error).message}`,
    );
  }
});

test("IterablePipe yields hostile values and non-Error exceptions in order, then completes", async () => {
  for (const [what, value] of opaque()) {
    const log = new RecordingLogger();
    const pipe = new IterablePipe<string, unknown>("r", {
      log,
      maxBuffered: 2,
    });
    const told: string[] = [];
    pipe.onInterestEnd(() => told.push("told"));
    pipe.addResponse(value);
    pipe.addResponse(value);
    pipe.addResponse(value); // replaces the oldest: maxBuffered 2
    pipe.addException(value);
    const got: [string, unknown][] = [];
    for await (const event of pipe) {
      got.push([
        event.kind,
        event.kind === "exception" ? event.exception : event.message,
      ]);
    }
    assertEquals(
      got.map(([k]) => k),
      ["response", "response", "exception"],
      what,
    );
    for (const [, v] of got) assertStrictEquals(v, value);
    assertEquals([pipe.dropped, pipe.ended, told], [1, true, ["told"]]);
    assertEquals(log.entries, []);
  }
});

test("runDrivingPipe() rejects what is not a responder or a driver with a TypeError at the call", () => {
  const pipe = new Pipe<string, string>("r");
  for (
    const [what, value] of [...opaque(), ["a plain object", {}]] as [
      string,
      unknown,
    ][]
  ) {
    assertThrows(
      () => runDrivingPipe(value as never, () => {}),
      TypeError,
      "pipe must be a Pipe, an IterablePipe or another ResponderPipe",
      what,
    );
    assertThrows(
      () => runDrivingPipe(pipe, value as never),
      TypeError,
      undefined,
      what,
    );
  }
  assertThrows(
    () => runDrivingPipe(pipe, () => {}, 5 as never),
    TypeError,
    "name must be a string",
  );
});

test("runDrivingPipe() turns a thenable whose then throws, and non-Error throws, into the pipe's exception", async () => {
  const broken = new Error("then broke");
  const cases: [string, () => unknown, unknown][] = [
    ["a thenable whose then throws", () => ({
      then() {
        throw broken;
      },
    }), broken],
    ["a sync throw of undefined", () => {
      throw undefined;
    }, undefined],
    ["a rejection with null", () => Promise.reject(null), null],
    ["a sync throw of a revoked Proxy", () => {
      throw revokedProxy();
    }, "proxy"],
  ];
  for (const [what, driver, expected] of cases) {
    const pipe = new Pipe<string, string>("r", new RecordingLogger());
    const got: unknown[] = [];
    pipe.onEvent((e) => got.push(e.kind, e.exception) > 0);
    assertEquals(await runDrivingPipe(pipe, driver), undefined, what);
    assertEquals(got[0], "exception", what);
    if (expected === "proxy") assertEquals(typeof got[1], "object");
    else assertStrictEquals(got[1], expected);
    assertEquals(pipe.ended, true);
  }
});

test("runDrivingPipe() with a never-settling driver: the pipe still ends and the signal aborts; the promise waits for the driver", async () => {
  const pipe = new Pipe<string, string>("r", new RecordingLogger());
  const off = pipe.onEvent(() => true);
  let signal: AbortSignal | undefined;
  let settled = false;
  runDrivingPipe(pipe, (s) => {
    signal = s;
    return { then() {} }; // never settles, ignores its signal
  }).then(() => settled = true);
  await flush();
  off();
  await flush();
  assertEquals([pipe.ended, signal?.aborted, settled], [true, true, false]);
});

test("runDrivingPipe() on a hand-made responder whose log getter throws still settles, reporting the throw", async () => {
  await captureReported(async (reported) => {
    const hooks: (() => void)[] = [];
    const responder = {
      request: "r",
      get log(): never {
        throw new Error("no log here");
      },
      addResponse() {},
      addException() {},
      onInterestEnd: (hook: () => void) => hooks.push(hook),
      onPoke: () => () => {},
    } as unknown as ResponderPipe<string, string>;
    const done = runDrivingPipe(responder, () => {}, "hand-made");
    for (const hook of hooks) hook(); // interest ends before the start
    assertEquals(await done, undefined);
    assertEquals((reported[0] as Error).message, "no log here");
  });
});

test("errorToMessage() rejects hostile options and pipes with a TypeError at the call", () => {
  const pipe = new Pipe<string, string>("r");
  for (
    const [what, options] of [...unreadable(), [
      "a throwing getter",
      throwingGetter("internalServerError"),
    ]] as [string, unknown][]
  ) {
    assertThrows(
      () => errorToMessage(pipe, options as never),
      TypeError,
      "Cannot call errorToMessage(): options cannot be read",
      what,
    );
  }
  assertThrows(
    () => errorToMessage(pipe, { internalServerError: "5.00" as never }),
    TypeError,
    "Cannot call errorToMessage(): options.internalServerError must be a function, got string",
  );
  // A responder whose request or log cannot be read is named as such.
  const responder = (field: string) => {
    const methods = {
      addResponse() {},
      addException() {},
      onInterestEnd() {},
      onPoke: () => () => {},
      request: "r",
      log: console,
    };
    Object.defineProperty(methods, field, {
      get() {
        throw new Error(`no ${field}`);
      },
    });
    return methods;
  };
  assertThrows(
    () =>
      errorToMessage(responder("request") as never, {
        internalServerError: () => "5.00",
      }),
    TypeError,
    "Cannot call errorToMessage(): pipe.request cannot be read",
  );
  assertThrows(
    () =>
      errorToMessage(responder("log") as never, {
        internalServerError: () => "5.00",
      }),
    TypeError,
    "Cannot call errorToMessage(): pipe.log cannot be read",
  );
  for (const [what, value] of unreadable()) {
    assertThrows(
      () =>
        errorToMessage(value as never, { internalServerError: () => "5.00" }),
      TypeError,
      "pipe must be a Pipe",
      what,
    );
  }
});

test("errorToMessage() answers every hostile exception with a final response on the outer pipe", async () => {
  const cases: [string, unknown, string, string[]][] = [
    ["undefined", undefined, "5.00", ["error"]],
    ["null", null, "5.00", ["error"]],
    ["a frozen object", Object.freeze({ code: 1 }), "5.00", ["error"]],
    ["a Proxy whose every trap throws", throwingProxy(), "5.00", ["error"]],
    ["a revoked Proxy", revokedProxy(), "5.00", ["error"]],
    ["a toMessage getter that throws", throwingGetter("toMessage"), "5.00", [
      "error",
    ]],
    [
      "a toMessage that throws null",
      {
        toMessage() {
          throw null;
        },
      },
      "5.00",
      ["error"],
    ],
    [
      "a toMessage returning undefined",
      { toMessage: () => undefined },
      "5.00",
      ["error"],
    ],
    [
      "a frozen renderable error",
      Object.freeze({ toMessage: () => "4.03" }),
      "4.03",
      ["info"],
    ],
  ];
  for (const [what, thrown, code, levels] of cases) {
    const log = new RecordingLogger();
    const outer = new Pipe<string, string>("r", log);
    const trace: string[] = [];
    outer.onEvent((e) => trace.push(show(e)) > 0);
    const inner = errorToMessage(outer, { internalServerError: () => "5.00" });
    await runDrivingPipe(inner, () => {
      throw thrown;
    });
    assertEquals(trace, [`response ${code} last`], what);
    assertEquals(log.levels(), levels, what);
    assertEquals(outer.ended, true, what);
  }
});

test("Events stay read-only under assignment and through their frozen prototype, on both pipe classes", async () => {
  const events: PipeEvent<string>[] = [];
  const pipe = new Pipe<string, string>("r");
  pipe.onEvent((e) => events.push(e) > 0);
  pipe.addResponse("a");
  const iterable = new IterablePipe<string, string>("r");
  iterable.addResponse("b");
  iterable.addException(null);
  for await (const event of iterable) events.push(event);
  for (const event of events) {
    const before = JSON.stringify(event);
    for (
      const tamper of [
        () => ((event as unknown as Record<string, unknown>).message = "x"),
        () => ((event as unknown as Record<string, unknown>).isLast = false),
        () => ((event as unknown as Record<string, unknown>).kind = "x"),
        () => ((event as unknown as Record<string, unknown>).exception = 1),
        () =>
          Object.defineProperty(Object.getPrototypeOf(event), "message", {
            value: "forged",
          }),
        () => Object.setPrototypeOf(Object.getPrototypeOf(event), {}),
      ]
    ) {
      assertThrows(tamper, TypeError);
    }
    assertEquals(JSON.stringify(event), before);
  }
  assertInstanceOf(events[0], Object);
});
