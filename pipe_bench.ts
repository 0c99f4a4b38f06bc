// Benchmarks of Pipe, each beside a bare baseline in the same group, so every
// figure is a ratio measured in one run: deno task bench

import { Pipe } from "./pipe.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const CALLS = 1_000_000;
const REQUESTS = 10_000;

/** Keeps results observable, so the engine cannot drop the work. */
let sink: unknown;

function keep(event: unknown): boolean {
  sink = event;
  return true;
}

for (const callbacks of [1, 10]) {
  const group = `dispatch: ${CALLS} non-final responses, ${callbacks} callback${
    callbacks > 1 ? "s" : ""
  }`;

  Deno.bench({
    name: "bare loop over an array of callbacks",
    group,
    baseline: true,
    n: 20,
    warmup: 5,
    fn() {
      const list: ((event: unknown) => unknown)[] = [];
      for (let c = 0; c < callbacks; c++) list.push(keep);
      for (let i = 0; i < CALLS; i++) {
        const event = { message: i, exception: undefined, isLast: false };
        for (let c = 0; c < list.length; c++) list[c](event);
      }
    },
  });

  Deno.bench({
    name: "Pipe.addResponse()",
    group,
    n: 20,
    warmup: 5,
    fn() {
      const pipe = new Pipe<number, number>(0, quiet);
      for (let c = 0; c < callbacks; c++) pipe.onEvent(keep);
      for (let i = 0; i < CALLS; i++) pipe.addResponse(i);
    },
  });
}

const lifecycle =
  `lifecycle: ${REQUESTS} requests, each with a callback, an interest-end callback and a final response`;

Deno.bench({
  name: "plain objects and closures",
  group: lifecycle,
  baseline: true,
  n: 200,
  warmup: 20,
  fn() {
    for (let i = 0; i < REQUESTS; i++) {
      const request = { request: i, callbacks: [] as unknown[] };
      let done = false;
      const callback = (event: { isLast: boolean }) => {
        sink = event;
        return !event.isLast;
      };
      const onEnd = () => {
        done = true;
      };
      request.callbacks.push(callback, onEnd);
      const event = { message: i, exception: undefined, isLast: true };
      callback(event);
      onEnd();
      sink = done;
    }
  },
});

Deno.bench({
  name: "Pipe: new, onEvent, onInterestEnd, final addResponse",
  group: lifecycle,
  n: 200,
  warmup: 20,
  fn() {
    for (let i = 0; i < REQUESTS; i++) {
      const pipe = new Pipe<number, number>(i, quiet);
      let done = false;
      pipe.onEvent((event) => {
        sink = event;
        return !event.isLast;
      });
      pipe.onInterestEnd(() => {
        done = true;
      });
      pipe.addResponse(i, true);
      sink = done;
    }
  },
});

export { sink };
