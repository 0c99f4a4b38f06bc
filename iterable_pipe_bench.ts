// Benchmarks of IterablePipe, each beside a bare baseline in the same group,
// so every figure is a ratio measured in one run: deno task bench

import { IterablePipe } from "./iterable_pipe.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const BURST = 100_000;
const PING_PONG = 100_000;

let sink: unknown;

/**
 * Starts the clock on a collected heap, so that no run pays for garbage left
 * by an earlier run or another benchmark (needs --v8-flags=--expose-gc).
 */
function settle(b: Deno.BenchContext): void {
  (globalThis as { gc?: () => void }).gc?.();
  b.start();
}

async function pipeBurst(events: number): Promise<void> {
  const pipe = new IterablePipe<number, number>(0, { log: quiet });
  for (let i = 1; i < events; i++) pipe.addResponse(i);
  pipe.addResponse(events, true);
  let count = 0;
  for await (const event of pipe) {
    sink = event;
    count++;
  }
  if (count !== events) throw new Error(`drained ${count} of ${events}`);
}

async function bareBurst(events: number): Promise<void> {
  const buffered: { message: number; exception: undefined; isLast: boolean }[] =
    [];
  for (let i = 1; i <= events; i++) {
    buffered.push({ message: i, exception: undefined, isLast: i === events });
  }
  async function* drain() {
    for (const event of buffered) yield event;
  }
  let count = 0;
  for await (const event of drain()) {
    sink = event;
    count++;
  }
  if (count !== events) throw new Error(`drained ${count} of ${events}`);
}

const burst = `iteration, burst: ${BURST} events added, then drained`;

Deno.bench({
  name: "bare async function* over an array",
  group: burst,
  baseline: true,
  n: 30,
  warmup: 5,
  async fn(b) {
    settle(b);
    await bareBurst(BURST);
    b.end();
  },
});

Deno.bench({
  name: "IterablePipe, for await",
  group: burst,
  n: 30,
  warmup: 5,
  async fn(b) {
    settle(b);
    await pipeBurst(BURST);
    b.end();
  },
});

// Cost per event must not grow with the burst: both do 10^6 events per run.
const scaling =
  "scaling: 10^6 events per run, as 10 bursts of 10^5 or 1 of 10^6";

Deno.bench({
  name: "IterablePipe, 10 bursts of 10^5",
  group: scaling,
  baseline: true,
  n: 10,
  warmup: 2,
  async fn(b) {
    settle(b);
    for (let i = 0; i < 10; i++) await pipeBurst(100_000);
    b.end();
  },
});

Deno.bench({
  name: "IterablePipe, 1 burst of 10^6",
  group: scaling,
  n: 10,
  warmup: 2,
  async fn(b) {
    settle(b);
    await pipeBurst(1_000_000);
    b.end();
  },
});

const pingPong =
  `iteration, ping-pong: ${PING_PONG} events, each added after the previous one was consumed`;

Deno.bench({
  name: "bare promise resolver hand-off",
  group: pingPong,
  baseline: true,
  n: 30,
  warmup: 5,
  async fn(b) {
    settle(b);
    let deliver: (event: unknown) => void = () => {};
    let ack: () => void = () => {};
    let ready = new Promise<void>((resolve) => ack = resolve);
    const consumer = (async () => {
      for (let i = 0; i < PING_PONG; i++) {
        sink = await new Promise((resolve) => {
          deliver = resolve;
          ack();
        });
      }
    })();
    for (let i = 0; i < PING_PONG; i++) {
      await ready;
      ready = new Promise<void>((resolve) => ack = resolve);
      deliver({ message: i, exception: undefined, isLast: false });
    }
    await consumer;
    b.end();
  },
});

Deno.bench({
  name: "IterablePipe iterator next()",
  group: pingPong,
  n: 30,
  warmup: 5,
  async fn(b) {
    settle(b);
    const pipe = new IterablePipe<number, number>(0, { log: quiet });
    const events = pipe[Symbol.asyncIterator]();
    let ack: () => void = () => {};
    let ready = new Promise<void>((resolve) => ack = resolve);
    const consumer = (async () => {
      for (let i = 0; i < PING_PONG; i++) {
        const next = events.next(); // waits: nothing is buffered
        ack();
        sink = (await next).value;
      }
    })();
    for (let i = 0; i < PING_PONG; i++) {
      await ready;
      ready = new Promise<void>((resolve) => ack = resolve);
      pipe.addResponse(i, i === PING_PONG - 1);
    }
    await consumer;
    b.end();
  },
});

export { sink };
