// Scaled-down soak tests: a long observation must not make the heap grow.
// The full-size runs (10^6 notifications) are in `deno task bench`.

import { assert, assertEquals } from "@std/assert";
import { IterablePipe } from "./iterable_pipe.ts";
import { Pipe } from "./pipe.ts";
import { test } from "./testing/suite.ts";
import { RecordingLogger, settledHeap } from "./testing/helpers.ts";

const NOTIFICATIONS = 100_000;
const MIB = 1024 * 1024;

/**
 * Runs `step(i)` for i in [0, count) and returns the heap growth from the
 * end of the first 10% to the end, or `undefined` where the runtime cannot
 * measure it.
 */
async function heapGrowth(
  count: number,
  step: (i: number) => void | Promise<void>,
): Promise<number | undefined> {
  let first: number | undefined;
  for (let i = 0; i < count; i++) {
    if (i === count / 10) first = settledHeap();
    await step(i);
  }
  const last = settledHeap();
  return first === undefined || last === undefined ? undefined : last - first;
}

test("Pipe holds its heap flat through a long observation", async () => {
  const pipe = new Pipe<string, { n: number }>(
    "GET /obs",
    new RecordingLogger(),
  );
  let received = 0;
  let expected = 0;
  pipe.onEvent((event) => {
    if (event.message?.n === expected) expected++;
    received++;
    return true;
  });
  pipe.onEvent(() => true, false);
  const growth = await heapGrowth(NOTIFICATIONS, (n) => {
    pipe.addResponse({ n });
  });
  assertEquals([received, expected], [NOTIFICATIONS, NOTIFICATIONS]);
  if (growth !== undefined) {
    assert(growth < MIB, `heap grew by ${growth} bytes`);
  }
  pipe.addResponse({ n: -1 }, true);
});

test("IterablePipe holds its heap flat through a long observation", async () => {
  const pipe = new IterablePipe<string, { n: number }>("GET /obs", {
    log: new RecordingLogger(),
  });
  const events = pipe[Symbol.asyncIterator]();
  let expected = 0;
  // The consumer keeps up: it takes each burst of ten before the next.
  const growth = await heapGrowth(NOTIFICATIONS / 10, async () => {
    for (let i = 0; i < 10; i++) pipe.addResponse({ n: expected + i });
    for (let i = 0; i < 10; i++) {
      const { value } = await events.next();
      if (value?.message?.n === expected) expected++;
    }
  });
  assertEquals(expected, NOTIFICATIONS);
  assertEquals(
    String(pipe),
    'IterablePipe { request: "GET /obs", interested, buffered: 0 }',
  );
  if (growth !== undefined) {
    assert(growth < MIB, `heap grew by ${growth} bytes`);
  }
  await events.return!();
});
