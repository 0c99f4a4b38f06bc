import {
  assert,
  assertEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import { IterablePipe } from "./iterable_pipe.ts";
import type { PipeEvent, ResponderPipe } from "./pipe.ts";
import { lacking, test } from "./testing/suite.ts";
import {
  awaitingResponder,
  captureReported,
  flush,
  type NodeInspect,
  RecordingLogger,
  revokedProxy,
  show,
  ThrowingLogger,
  throwingProxy,
} from "./testing/helpers.ts";

function setup() {
  const log = new RecordingLogger();
  const pipe = new IterablePipe<string, string>("GET /r", { log });
  const trace: string[] = [];
  const hook = (name: string) => () => {
    trace.push(`${name}: interest ended`);
  };
  return { log, pipe, trace, hook };
}

test("IterablePipe() exposes request and log, and logs to the console by default", () => {
  const log = new RecordingLogger();
  const request = { path: "/r" };
  const pipe = new IterablePipe(request, { log });
  assertStrictEquals(pipe.request, request);
  assertStrictEquals(pipe.log, log);
  assertStrictEquals(new IterablePipe("x").log, console);
  assertStrictEquals(new IterablePipe("x", {}).log, console);
  assertThrows(
    () => new IterablePipe("x", { log: {} as Console }),
    TypeError,
    "log must have a debug() method",
  );
});

test("IterablePipe is a ResponderPipe", () => {
  const pipe: ResponderPipe<string, string> = new IterablePipe<string, string>(
    "GET /r",
    { log: new RecordingLogger() },
  );
  assertEquals(
    ["addResponse", "addException", "onInterestEnd", "onPoke", "ended"].map((
      m,
    ) => typeof (pipe as unknown as Record<string, unknown>)[m]),
    ["function", "function", "function", "function", "boolean"],
  );
});

test("IterablePipe seen as a ResponderPipe tells whether it ended: a responder that awaited sees the loop left in the meantime and does nothing more", async () => {
  const { pipe, trace, log } = setup();
  let release!: () => void;
  const engine = new Promise<void>((resolve) => release = resolve);
  const responding = awaitingResponder(pipe, engine, trace);
  const iterator = pipe[Symbol.asyncIterator]();
  const next = iterator.next();
  await iterator.return!(); // the requester leaves the loop
  trace.push(`pending next: done ${(await next).done}`);
  release();
  await responding;
  assertEquals(trace, [
    "before the engine: ended false",
    "pending next: done true",
    "after the engine: ended true",
  ]);
  assertEquals(log.entries, []);
});

test("IterablePipe seen as a ResponderPipe stays open while the loop runs, and ends with a final response", async () => {
  const { pipe, trace, log } = setup();
  await awaitingResponder(pipe, Promise.resolve(), trace);
  const responder: ResponderPipe<string, string> = pipe;
  assertEquals(responder.ended, false);
  responder.addResponse("last", true);
  assertEquals(responder.ended, true);
  for await (const event of pipe) trace.push(show(event));
  assertEquals(trace, [
    "before the engine: ended false",
    "after the engine: ended false",
    "hook: interest ended",
    "response value",
    "response last last",
  ]);
  assertEquals(log.entries, []);
});

test("IterablePipe yields events added before and during iteration, in order", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  const consumed = (async () => {
    for await (const event of pipe) trace.push(show(event));
    trace.push("loop done");
  })();
  await flush();
  assertEquals(trace, ["response 1", "response 2"]);
  pipe.addResponse("3");
  await flush();
  pipe.addResponse("4", true);
  assertEquals(trace, [
    "response 1",
    "response 2",
    "response 3",
    "responder: interest ended",
  ]);
  await consumed;
  assertEquals(trace, [
    "response 1",
    "response 2",
    "response 3",
    "responder: interest ended",
    "response 4 last",
    "loop done",
  ]);
});

test("IterablePipe yields exceptions as events and then completes", async () => {
  const { pipe } = setup();
  pipe.addResponse("1");
  pipe.addException(undefined);
  const events: PipeEvent<string>[] = [];
  for await (const event of pipe) events.push(event);
  assertEquals(events.map((e) => e.toJSON()), [
    { kind: "response", message: "1", exception: undefined, isLast: false },
    {
      kind: "exception",
      message: undefined,
      exception: undefined,
      isLast: true,
    },
  ]);
});

test("IterablePipe can be iterated only once", async () => {
  const { pipe } = setup();
  pipe[Symbol.asyncIterator]();
  assertThrows(
    () => pipe[Symbol.asyncIterator](),
    Error,
    "Cannot iterate an IterablePipe more than once",
  );
  const done = new IterablePipe<string, string>("x", {
    log: new RecordingLogger(),
  });
  done.addResponse("only", true);
  for await (const _ of done) { /* drain */ }
  await assertRejects(
    async () => {
      for await (const _ of done) { /* second loop */ }
    },
    Error,
    "more than once",
  );
});

test("IterablePipe ends interest when the final event is added", () => {
  const { pipe, trace, hook, log } = setup();
  pipe.onInterestEnd(hook("first"));
  pipe.onInterestEnd(hook("second"));
  pipe.addResponse("1");
  assertEquals(trace, []);
  pipe.addResponse("2", true);
  assertEquals(trace, ["first: interest ended", "second: interest ended"]);
  assertEquals(pipe.ended, true);
  pipe.addResponse("3");
  assertEquals(trace.length, 2);
  assertEquals(log.levels(), ["warn"]);
});

test("IterablePipe ends interest when the loop is left with break", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  pipe.addResponse("3");
  for await (const event of pipe) {
    trace.push(show(event));
    break;
  }
  assertEquals(trace, ["response 1", "responder: interest ended"]);
  assertEquals(pipe.ended, true);
});

test("IterablePipe ends interest when the loop body throws", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  await assertRejects(
    async () => {
      for await (const event of pipe) {
        trace.push(show(event));
        throw new RangeError("consumer gave up");
      }
    },
    RangeError,
    "consumer gave up",
  );
  assertEquals(trace, ["response 1", "responder: interest ended"]);
});

test("IterablePipe iterator return() ends interest once and releases buffered events", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  const events = pipe[Symbol.asyncIterator]();
  assertEquals(show((await events.next()).value!), "response 1");
  assertEquals(await events.return!("bye"), { done: true, value: "bye" });
  assertEquals(await events.return!(), { done: true, value: undefined });
  assertEquals(await events.next(), { done: true, value: undefined });
  assertEquals(trace, ["responder: interest ended"]);
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", ended, buffered: 0 }',
  );
});

test("IterablePipe iterator throw() ends interest and rejects with the error", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  const events = pipe[Symbol.asyncIterator]();
  const reason = new Error("stop");
  const thrown = await events.throw!(reason).then(
    () => "resolved",
    (error) => error,
  );
  assertStrictEquals(thrown, reason);
  assertEquals(await events.next(), { done: true, value: undefined });
  assertEquals(trace, ["responder: interest ended"]);
});

test(
  "IterablePipe iterator disposal ends interest like leaving the loop",
  async () => {
    const { pipe, trace, hook } = setup();
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("1");
    pipe.addResponse("2");
    // What `await using events = …` does at the end of its block; spelled out
    // so that runtimes without the syntax (Node.js 20) run the case too.
    const events = pipe[Symbol.asyncIterator]() as
      & AsyncIterableIterator<PipeEvent<string>>
      & AsyncDisposable;
    trace.push(show((await events.next()).value!));
    await events[Symbol.asyncDispose]();
    assertEquals(trace, ["response 1", "responder: interest ended"]);
    assertEquals(
      String(pipe),
      'IterablePipe { request: "GET /r", ended, buffered: 0 }',
    );
  },
  {
    ignore: lacking("Symbol.asyncDispose", !("asyncDispose" in Symbol)),
  },
);

test("IterablePipe iterator return() releases a pending next()", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  const events = pipe[Symbol.asyncIterator]();
  const first = events.next();
  const second = events.next();
  await events.return!();
  assertEquals(await first, { done: true, value: undefined });
  assertEquals(await second, { done: true, value: undefined });
  assertEquals(trace, ["responder: interest ended"]);
});

test("IterablePipe serves concurrent next() calls in order", async () => {
  const { pipe } = setup();
  const events = pipe[Symbol.asyncIterator]();
  assertStrictEquals(events[Symbol.asyncIterator](), events);
  const pending = [events.next(), events.next(), events.next()];
  pipe.addResponse("1");
  pipe.addResponse("2", true);
  const results = await Promise.all(pending);
  assertEquals(
    results.map((r) => r.done ? "done" : show(r.value)),
    ["response 1", "response 2 last", "done"],
  );
});

test("IterablePipe.onInterestEnd() after iteration began runs when interest ends", async () => {
  const { pipe, trace, hook, log } = setup();
  pipe.addResponse("1");
  const events = pipe[Symbol.asyncIterator]();
  await events.next();
  pipe.onInterestEnd(hook("late but in time"));
  assertEquals(trace, []);
  await events.return!();
  assertEquals(trace, ["late but in time: interest ended"]);
  assertEquals(log.entries, []);
});

test("IterablePipe.onInterestEnd() after interest ended warns and runs at once", () => {
  const { pipe, trace, hook, log } = setup();
  pipe.addResponse("1", true);
  pipe.onInterestEnd(hook("late"));
  assertEquals(trace, ["late: interest ended"]);
  assertEquals(log.levels(), ["warn"]);
  assertEquals(
    log.entries[0][1],
    "Interest-end callback registered on a pipe that has already ended",
  );
  assertThrows(
    () => pipe.onInterestEnd("nope" as never),
    TypeError,
    "Cannot call IterablePipe.onInterestEnd(): callback must be a function",
  );
});

test("IterablePipe drops events after interest ended, with logging", async () => {
  const { pipe, log } = setup();
  const events = pipe[Symbol.asyncIterator]();
  await events.return!();
  const late = new Error("late");
  pipe.addResponse("late response");
  pipe.addException(late);
  assertEquals(log.entries, [
    [
      "warn",
      "Response added to a pipe that has already ended; dropped",
      "late response",
      pipe,
    ],
    [
      "error",
      "Exception added to a pipe that has already ended; dropped",
      late,
      pipe,
    ],
  ]);
  assertEquals(await events.next(), { done: true, value: undefined });
});

test("IterablePipe keeps the final event for the loop after interest ended", async () => {
  const { pipe, trace, log } = setup();
  pipe.addResponse("1", true);
  pipe.addResponse("after final");
  for await (const event of pipe) trace.push(show(event));
  assertEquals(trace, ["response 1 last"]);
  assertEquals(log.levels(), ["warn"]);
});

test("IterablePipe.addResponse() rejects a non-boolean isLast", () => {
  const { pipe } = setup();
  assertThrows(
    () => pipe.addResponse("x", "yes" as never),
    TypeError,
    "Cannot call IterablePipe.addResponse(): isLast must be a boolean",
  );
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", interested, buffered: 0 }',
  );
});

test("IterablePipe.poke() reaches poke handlers until interest ends", async () => {
  await captureReported(async (reported) => {
    const { pipe, trace } = setup();
    pipe.poke();
    const off = pipe.onPoke(() => trace.push("first"));
    pipe.onPoke(() => {
      throw new Error("poke bug");
    });
    pipe.onPoke(() => trace.push("third"));
    pipe.poke();
    off();
    pipe.poke();
    const events = pipe[Symbol.asyncIterator]();
    await events.return!();
    pipe.poke();
    pipe.onPoke(() => trace.push("late"));
    pipe.poke();
    assertEquals(trace, ["first", "third", "third"]);
    assertEquals(reported.map((e) => (e as Error).message), [
      "poke bug",
      "poke bug",
    ]);
    assertThrows(() => pipe.onPoke(null as never), TypeError);
  });
});

test("IterablePipe interest-end callbacks that throw are isolated", async () => {
  await captureReported((reported) => {
    const { pipe, trace, hook } = setup();
    pipe.onInterestEnd(() => {
      throw new Error("hook bug");
    });
    pipe.onInterestEnd(hook("second"));
    pipe.addException(new Error("x")); // does not throw
    assertEquals(trace, ["second: interest ended"]);
    assertEquals(reported.map((e) => (e as Error).message), ["hook bug"]);
  });
});

test("IterablePipe keeps order through a long queue that never drains", async () => {
  const { pipe } = setup();
  const events = pipe[Symbol.asyncIterator]();
  const got: string[] = [];
  let added = 0;
  // Stay 3000 events ahead of the consumer for 10,000 events, so the queue's
  // head moves far without the queue ever running empty.
  for (; added < 3000; added++) pipe.addResponse(String(added));
  while (got.length < 10_000) {
    const result = await events.next();
    got.push((result.value as PipeEvent<string>).message as string);
    if (added < 13_000) pipe.addResponse(String(added++));
  }
  assertEquals(got, Array.from({ length: 10_000 }, (_, i) => String(i)));
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", interested, buffered: 3000 }',
  );
  await events.return!();
});

test("IterablePipe shows its state when inspected", () => {
  const { pipe } = setup();
  pipe.addResponse("1");
  const inspect = (pipe as unknown as Record<symbol, unknown>)[
    Symbol.for("nodejs.util.inspect.custom")
  ] as NodeInspect;
  assertEquals(
    inspect.call(pipe, 2, {}, (v) => `<${v}>`),
    "IterablePipe { request: <GET /r>, interested, buffered: 1 }",
  );
  pipe.addResponse("2", true);
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", ended, buffered: 2 }',
  );
});

// --- Web streams and disposal ------------------------------------------------

test("IterablePipe.stream() yields every event and closes after the final one", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  const reader = pipe.stream().getReader();
  trace.push(show((await reader.read()).value!));
  const pending = reader.read();
  pipe.addResponse("2");
  trace.push(show((await pending).value!));
  pipe.addException(new Error("boom"));
  trace.push(show((await reader.read()).value!));
  const end = await reader.read();
  trace.push(`done=${end.done}`);
  assertEquals(trace, [
    "response 1",
    "response 2",
    "responder: interest ended",
    "exception boom",
    "done=true",
  ]);
});

test("IterablePipe.stream() cancel ends interest like leaving the loop", async () => {
  const { pipe, trace, hook } = setup();
  pipe.onInterestEnd(hook("responder"));
  pipe.addResponse("1");
  pipe.addResponse("2");
  const reader = pipe.stream().getReader();
  trace.push(show((await reader.read()).value!));
  await reader.cancel("enough");
  pipe.addResponse("3");
  assertEquals(trace, ["response 1", "responder: interest ended"]);
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", ended, buffered: 0 }',
  );
  assertEquals(await reader.closed.then(() => "closed"), "closed");
});

test("IterablePipe.stream() shares the one iteration the pipe allows", () => {
  const { pipe } = setup();
  pipe.stream();
  assertThrows(() => pipe.stream(), Error, "more than once");
  assertThrows(() => pipe[Symbol.asyncIterator](), Error, "more than once");
});

test(
  "IterablePipe disposal ends interest and releases buffered events",
  async () => {
    const { pipe, trace, hook } = setup();
    pipe.onInterestEnd(hook("responder"));
    pipe.addResponse("1");
    // What `await using pipe = …` does at the end of its block.
    await pipe[Symbol.asyncDispose]();
    await pipe[Symbol.asyncDispose]();
    pipe.addResponse("2");
    for await (const event of pipe) trace.push(show(event));
    assertEquals(trace, ["responder: interest ended"]);
  },
  {
    ignore: lacking("Symbol.asyncDispose", !("asyncDispose" in Symbol)),
  },
);

// --- Bounded buffering ---------------------------------------------------------

/** Drains whatever is buffered without waiting for more. */
async function drainBuffered(
  events: AsyncIterator<PipeEvent<string>>,
  count: number,
): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < count; i++) got.push(show((await events.next()).value!));
  return got;
}

test("IterablePipe with maxBuffered replaces the oldest waiting event", async () => {
  const log = new RecordingLogger();
  const pipe = new IterablePipe<string, string>("GET /obs", {
    log,
    maxBuffered: 3,
  });
  const trace: number[] = [];
  for (let n = 1; n <= 7; n++) {
    pipe.addResponse(String(n));
    trace.push(pipe.desiredSize);
  }
  assertEquals(trace, [2, 1, 0, 0, 0, 0, 0]);
  assertEquals(pipe.dropped, 4);
  const events = pipe[Symbol.asyncIterator]();
  assertEquals(await drainBuffered(events, 2), ["response 5", "response 6"]);
  assertEquals(pipe.desiredSize, 2);
  pipe.addResponse("8");
  pipe.addResponse("9");
  pipe.addResponse("10"); // drops 7
  assertEquals(await drainBuffered(events, 3), [
    "response 8",
    "response 9",
    "response 10",
  ]);
  assertEquals(pipe.dropped, 5);
  assertEquals(log.entries, []);
  await events.return!();
});

test("IterablePipe with maxBuffered never drops or blocks a final event", async () => {
  for (const final of ["response", "exception"] as const) {
    const pipe = new IterablePipe<string, string>("GET /obs", {
      log: new RecordingLogger(),
      maxBuffered: 2,
    });
    const trace: string[] = [];
    pipe.onInterestEnd(() => trace.push("interest ended"));
    pipe.addResponse("1");
    pipe.addResponse("2");
    if (final === "response") pipe.addResponse("3", true);
    else pipe.addException(new Error("3"));
    assertEquals(pipe.dropped, 0);
    for await (const event of pipe) trace.push(show(event));
    assertEquals(trace, [
      "interest ended",
      "response 1",
      "response 2",
      final === "response" ? "response 3 last" : "exception 3",
    ]);
  }
});

test("IterablePipe with maxBuffered hands events straight to a waiting consumer", async () => {
  const pipe = new IterablePipe<string, string>("GET /obs", {
    log: new RecordingLogger(),
    maxBuffered: 1,
  });
  const events = pipe[Symbol.asyncIterator]();
  const got: string[] = [];
  for (let n = 1; n <= 3; n++) {
    const next = events.next(); // waiting before the event arrives
    pipe.addResponse(String(n));
    got.push(show((await next).value!));
  }
  assertEquals(got, ["response 1", "response 2", "response 3"]);
  assertEquals([pipe.dropped, pipe.desiredSize], [0, 1]);
  await events.return!();
});

test("IterablePipe.desiredSize is Infinity without a bound and 0 after interest ended", async () => {
  const pipe = new IterablePipe<string, string>("GET /", {
    log: new RecordingLogger(),
  });
  pipe.addResponse("1");
  assertEquals(pipe.desiredSize, Infinity);
  await pipe.ready; // resolves at once
  pipe.addResponse("2", true);
  assertEquals([pipe.desiredSize, pipe.dropped], [0, 0]);
});

test("IterablePipe.ready resolves at once with room, and on drain when full", async () => {
  const pipe = new IterablePipe<string, string>("GET /obs", {
    log: new RecordingLogger(),
    maxBuffered: 2,
  });
  const trace: string[] = [];
  const settled = (name: string) => (p: Promise<void>) =>
    p.then(() => trace.push(name));
  await settled("room at once")(pipe.ready);
  pipe.addResponse("1");
  pipe.addResponse("2");
  const first = settled("first waiter")(pipe.ready);
  const second = settled("second waiter")(pipe.ready);
  await flush();
  assertEquals(trace, ["room at once"]);
  const events = pipe[Symbol.asyncIterator]();
  trace.push(show((await events.next()).value!));
  await Promise.all([first, second]);
  // Taking the event made room at once, so the waiters ran before the
  // consumer's own continuation.
  assertEquals(trace, [
    "room at once",
    "first waiter",
    "second waiter",
    "response 1",
  ]);
  assertEquals(pipe.desiredSize, 1);
  await events.return!();
});

test("IterablePipe.ready is released when interest ends", async () => {
  for (const end of ["leave", "final"] as const) {
    const pipe = new IterablePipe<string, string>("GET /obs", {
      log: new RecordingLogger(),
      maxBuffered: 1,
    });
    pipe.addResponse("1");
    const trace: string[] = [];
    const waiting = pipe.ready.then(() =>
      trace.push(`released, ended=${pipe.ended}`)
    );
    await flush();
    assertEquals(trace, []);
    if (end === "leave") await pipe[Symbol.asyncIterator]().return!();
    else pipe.addResponse("2", true);
    await waiting;
    assertEquals(trace, ["released, ended=true"]);
    await pipe.ready; // and at once from then on
  }
});

test("IterablePipe rejects a bad maxBuffered", () => {
  for (const bad of [0, -1, 1.5, NaN, -Infinity]) {
    assertThrows(
      () => new IterablePipe("x", { maxBuffered: bad }),
      RangeError,
      `Cannot create an IterablePipe: maxBuffered must be a positive integer or Infinity, got ${bad}`,
    );
  }
  for (
    const [bad, got] of [["3", '"3"'], [3n, "3n"], [null, "null"], [
      // Never converted: valueOf would throw something else.
      { valueOf: () => assert(false, "maxBuffered converted") },
      "[object]",
    ]] as const
  ) {
    assertThrows(
      () => new IterablePipe("x", { maxBuffered: bad as never }),
      TypeError,
      `maxBuffered must be a positive integer or Infinity, got ${got}`,
    );
  }
  assertEquals(new IterablePipe("x", { maxBuffered: 1 }).desiredSize, 1);
});

test("IterablePipe shows its drop count when inspected", () => {
  const pipe = new IterablePipe<string, string>("GET /r", {
    log: new RecordingLogger(),
    maxBuffered: 1,
  });
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", interested, buffered: 1, dropped: 1 }',
  );
});

// --- Faults and hostile input -------------------------------------------------

test("IterablePipe yields messages that are hostile Proxies without touching them, and ends", async () => {
  await captureReported(async (reported) => {
    const { pipe, trace, hook } = setup();
    pipe.onInterestEnd(hook("responder"));
    const messages = [throwingProxy(), revokedProxy(), throwingProxy()];
    pipe.addResponse(messages[0] as never);
    pipe.addResponse(messages[1] as never);
    pipe.addResponse(messages[2] as never, true);
    const got: unknown[] = [];
    for await (const event of pipe) got.push(event.message, event.isLast);
    assertEquals(got.length, 6);
    for (let i = 0; i < 3; i++) assertStrictEquals(got[2 * i], messages[i]);
    assertEquals([got[1], got[3], got[5]], [false, false, true]);
    assertEquals([pipe.ended, trace], [true, ["responder: interest ended"]]);
    assertEquals(reported, []);
  });
});

test("IterablePipe() takes an options object or nothing: a logger or another value is a TypeError", () => {
  for (const bad of [console, new RecordingLogger(), null, 5, "log"]) {
    assertThrows(
      () => new IterablePipe("x", bad as never),
      TypeError,
      "Cannot create an IterablePipe: expected an options object { log, maxBuffered }",
    );
  }
  assertStrictEquals(new IterablePipe("x", undefined).log, console);
});

test("IterablePipe buffers for two pipes at once without mixing their events", async () => {
  const a = new IterablePipe<string, string>("a");
  const b = new IterablePipe<string, string>("b");
  for (let i = 0; i < 40; i++) {
    a.addResponse(`a${i}`);
    b.addResponse(`b${i}`);
  }
  a.addResponse("a end", true);
  b.addResponse("b end", true);
  const got = { a: [] as string[], b: [] as string[] };
  for await (const event of a) got.a.push(event.message!);
  for await (const event of b) got.b.push(event.message!);
  assertEquals(got.a, [
    ...Array.from({ length: 40 }, (_, i) => `a${i}`),
    "a end",
  ]);
  assertEquals(got.b, [
    ...Array.from({ length: 40 }, (_, i) => `b${i}`),
    "b end",
  ]);
});

test("IterablePipe serves many pending next() calls in order, and completes the rest at the end", async () => {
  const { pipe } = setup();
  const iterator = pipe[Symbol.asyncIterator]();
  const pending = Array.from({ length: 2000 }, () => iterator.next());
  for (let i = 0; i < 1500; i++) pipe.addResponse(`${i}`);
  pipe.addResponse("end", true);
  const results = await Promise.all(pending);
  assertEquals(
    results.slice(0, 1501).map((r) => r.value?.message),
    [...Array.from({ length: 1500 }, (_, i) => `${i}`), "end"],
  );
  assertEquals(results.slice(1501).every((r) => r.done), true);
});

test(
  "IterablePipe iterator [Symbol.asyncDispose]() returns a promise and ends interest",
  async () => {
    const { pipe, trace, hook } = setup();
    pipe.onInterestEnd(hook("responder"));
    const iterator = pipe[Symbol.asyncIterator]() as unknown as Record<
      symbol,
      () => unknown
    >;
    const result = iterator[Symbol.asyncDispose]();
    assertEquals(result instanceof Promise, true);
    assertEquals(await result, undefined);
    assertEquals(trace, ["responder: interest ended"]);
  },
  { ignore: lacking("Symbol.asyncDispose", !("asyncDispose" in Symbol)) },
);

test("IterablePipe with a logger whose methods throw: no outcome changes, each throw is reported", async () => {
  await captureReported(async (reported) => {
    const log = new ThrowingLogger();
    const pipe = new IterablePipe<string, string>("GET /r", { log });
    pipe.addResponse("final", true);
    pipe.addResponse("late");
    pipe.addException(new Error("late"));
    const trace: string[] = [];
    pipe.onInterestEnd(() => trace.push("hook ran"));
    const got: unknown[] = [];
    for await (const event of pipe) got.push(event.message);
    assertEquals([trace, got], [["hook ran"], ["final"]]);
    assertEquals(log.calls, ["warn", "error", "warn"]);
    assertEquals(reported.length, 3);
  });
});

test("IterablePipe events are read-only: assigning a field throws a TypeError and changes nothing", async () => {
  const { pipe } = setup();
  pipe.addResponse("a");
  pipe.addException(new Error("x"));
  const seen: unknown[] = [];
  for await (const event of pipe) {
    assertThrows(
      () => (event as unknown as Record<string, unknown>).message = 1,
      TypeError,
    );
    assertThrows(
      () => (event as unknown as Record<string, unknown>).isLast = false,
      TypeError,
    );
    seen.push(event.kind, event.isLast);
  }
  assertEquals(seen, ["response", false, "exception", true]);
});

test("IterablePipe.onPoke() on an ended pipe registers nothing and returns a harmless unregister", () => {
  const { pipe, trace } = setup();
  pipe.addResponse("x", true);
  const off = pipe.onPoke(() => trace.push("poked"));
  pipe.poke();
  off();
  assertEquals(trace, []);
});

test("IterablePipe shows a placeholder for a request it cannot read", () => {
  const pipe = new IterablePipe(revokedProxy());
  assertEquals(
    String(pipe),
    "IterablePipe { request: [unreadable], interested, buffered: 0 }",
  );
});

// --- What the mutation pass showed no test noticed ----------------------------

test("IterablePipe() and onPoke() name themselves in their errors", () => {
  assertThrows(
    () => new IterablePipe("x", { log: { debug() {} } as never }),
    TypeError,
    "Cannot create an IterablePipe: log must have a info() method",
  );
  assertThrows(
    () => new IterablePipe("x").onPoke(5 as never),
    TypeError,
    "Cannot call IterablePipe.onPoke(): handler must be a function, got number",
  );
});

test("IterablePipe.stream() pulls nothing ahead of its reader", async () => {
  const { pipe } = setup();
  const reader = pipe.stream().getReader();
  await flush();
  pipe.addResponse("1");
  pipe.addResponse("2");
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", interested, buffered: 2 }',
  );
  assertEquals((await reader.read()).value?.message, "1");
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /r", interested, buffered: 1 }',
  );
  await reader.cancel();
});
