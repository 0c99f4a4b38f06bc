// Memory figures for `deno task bench`: the heap an idle pipe costs, what a
// completed pipe leaves behind, and full-size soaks (10^6 notifications).
// Run with: deno run --v8-flags=--expose-gc testing/memory.ts

import { IterablePipe, Pipe } from "../mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error("memory: needs --v8-flags=--expose-gc");
  Deno.exit(1);
}

function heap(): number {
  gc!();
  gc!();
  return Deno.memoryUsage().heapUsed;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const keep = () => true;
const COUNT = 100_000;
const MIB = 1024 * 1024;
let failed = false;

function report(line: string, ok: boolean): void {
  console.log(`${ok ? "ok  " : "FAIL"} ${line}`);
  if (!ok) failed = true;
}

// An idle pipe with one callback: the pipe, its entry and its array. The
// request, the logger and the callback are shared, so they are not counted;
// the unregister function is counted separately, as callers may drop it.
{
  const pipes: Pipe<number, number>[] = new Array(COUNT);
  const offs: (() => void)[] = new Array(COUNT);
  const before = heap();
  for (let i = 0; i < COUNT; i++) {
    const pipe = new Pipe<number, number>(0, quiet);
    offs[i] = pipe.onEvent(keep);
    pipes[i] = pipe;
  }
  const withOffs = (heap() - before) / COUNT;
  offs.fill(undefined as never);
  const pipesOnly = (heap() - before) / COUNT;
  report(
    `idle Pipe with one callback: ${
      pipesOnly.toFixed(0)
    } bytes (target <= 200); with the unregister function kept by the ` +
      `caller: ${withOffs.toFixed(0)} bytes`,
    pipesOnly <= 200,
  );
  pipes.length = 0;
  offs.length = 0;
}

{
  const pipes: IterablePipe<number, number>[] = new Array(COUNT);
  const before = heap();
  for (let i = 0; i < COUNT; i++) {
    pipes[i] = new IterablePipe<number, number>(0, { log: quiet });
  }
  const each = (heap() - before) / COUNT;
  console.log(`     idle IterablePipe: ${each.toFixed(0)} bytes`);
  pipes.length = 0;
}

// Completed pipes must leave nothing behind.
{
  let sink: unknown;
  const before = heap();
  for (let i = 0; i < COUNT; i++) {
    const pipe = new Pipe<number, number>(i, quiet);
    pipe.onEvent((event) => {
      sink = event;
      return true;
    });
    pipe.onInterestEnd(() => {
      sink = i;
    });
    pipe.addResponse(i, true);
  }
  const retained = (heap() - before) / COUNT;
  // A leaked entry alone would be 48 bytes; below 8 is measurement noise.
  report(
    `heap retained per completed Pipe after ${COUNT} requests: ${
      retained.toFixed(2)
    } bytes (target ~0, checked < 8)`,
    retained < 8,
  );
  void sink;
}

// Full-size soaks: 10^6 notifications, heap growth from the end of the first
// 10% to the end.
const NOTIFICATIONS = 1_000_000;
{
  const pipe = new Pipe<string, { n: number }>("GET /obs", quiet);
  let received = 0;
  pipe.onEvent(() => ++received > 0);
  let first = 0;
  for (let n = 0; n < NOTIFICATIONS; n++) {
    if (n === NOTIFICATIONS / 10) first = heap();
    pipe.addResponse({ n });
  }
  const growth = heap() - first;
  report(
    `soak, Pipe, ${NOTIFICATIONS} notifications: heap grew ${
      (growth / 1024).toFixed(1)
    } KiB (target < 1 MiB), ${received} delivered`,
    growth < MIB && received === NOTIFICATIONS,
  );
}
{
  const pipe = new IterablePipe<string, { n: number }>("GET /obs", {
    log: quiet,
  });
  const events = pipe[Symbol.asyncIterator]();
  let received = 0;
  let first = 0;
  for (let n = 0; n < NOTIFICATIONS; n += 10) {
    if (n === NOTIFICATIONS / 10) first = heap();
    for (let i = 0; i < 10; i++) pipe.addResponse({ n: n + i });
    for (let i = 0; i < 10; i++) {
      if ((await events.next()).value?.message?.n === received) received++;
    }
  }
  const growth = heap() - first;
  report(
    `soak, IterablePipe, ${NOTIFICATIONS} notifications (consumer keeping up): heap grew ${
      (growth / 1024).toFixed(1)
    } KiB (target < 1 MiB), ${received} delivered in order`,
    growth < MIB && received === NOTIFICATIONS,
  );
  await events.return!();
}

if (failed) Deno.exit(1);
