// Our pipes against the libraries people would otherwise reach for, with
// the same workloads, in one `deno bench` run:
//   deno task bench:peers
// RxJS and it-pushable come from the npm registry by `npm:` specifier for
// this benchmark only; the published package depends on neither.

// deno-lint-ignore no-import-prefix -- benchmark-only peers, pinned here on purpose
import { Subject } from "npm:rxjs@7.8.2";
// deno-lint-ignore no-import-prefix -- benchmark-only peers, pinned here on purpose
import { pushable } from "npm:it-pushable@3.2.4";
import { IterablePipe } from "../../iterable_pipe.ts";
import { Pipe } from "../../pipe.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const CALLS = 1_000_000, REQUESTS = 10_000, EVENTS = 100_000;
/** Keeps results observable, so the engine cannot drop the work. */
export let sink: unknown;
const keep = (event: unknown): boolean => {
  sink = event;
  return true;
};

const dispatch = `dispatch: ${CALLS} non-final responses, 1 callback`;
Deno.bench({
  name: "Pipe.addResponse()",
  group: dispatch,
  baseline: true,
  fn() {
    const pipe = new Pipe<number, number>(0, quiet);
    pipe.onEvent(keep);
    for (let i = 0; i < CALLS; i++) pipe.addResponse(i);
  },
});
Deno.bench({
  name: "RxJS Subject.next()",
  group: dispatch,
  fn() {
    const subject = new Subject<number>();
    subject.subscribe(keep);
    for (let i = 0; i < CALLS; i++) subject.next(i);
  },
});
Deno.bench({
  name: "EventTarget.dispatchEvent()",
  group: dispatch,
  fn() {
    const target = new EventTarget();
    target.addEventListener("response", keep);
    for (let i = 0; i < CALLS; i++) target.dispatchEvent(new Event("response"));
  },
});

const fanOut = `dispatch: ${CALLS / 10} non-final responses, 10 callbacks`;
Deno.bench({
  name: "Pipe.addResponse() to 10 callbacks",
  group: fanOut,
  baseline: true,
  fn() {
    const pipe = new Pipe<number, number>(0, quiet);
    for (let c = 0; c < 10; c++) pipe.onEvent(keep);
    for (let i = 0; i < CALLS / 10; i++) pipe.addResponse(i);
  },
});
Deno.bench({
  name: "RxJS Subject.next() to 10 subscribers",
  group: fanOut,
  fn() {
    const subject = new Subject<number>();
    for (let c = 0; c < 10; c++) subject.subscribe(keep);
    for (let i = 0; i < CALLS / 10; i++) subject.next(i);
  },
});
Deno.bench({
  name: "bare loop over 10 functions",
  group: fanOut,
  fn() {
    const callbacks = Array.from({ length: 10 }, () => keep);
    for (let i = 0; i < CALLS / 10; i++) {
      for (const callback of callbacks) callback(i);
    }
  },
});

const lifecycle =
  `lifecycle: ${REQUESTS} requests, a callback, an end hook, a final response`;
Deno.bench({
  name: "Pipe",
  group: lifecycle,
  baseline: true,
  fn() {
    for (let i = 0; i < REQUESTS; i++) {
      const pipe = new Pipe<number, number>(i, quiet);
      pipe.onEvent(keep);
      pipe.onInterestEnd(() => sink = i);
      pipe.addResponse(i, true);
    }
  },
});
Deno.bench({
  name: "RxJS Subject: subscribe, next, complete",
  group: lifecycle,
  fn() {
    for (let i = 0; i < REQUESTS; i++) {
      const subject = new Subject<number>();
      subject.subscribe({ next: keep, complete: () => sink = i });
      subject.next(i);
      subject.complete();
    }
  },
});

const burst = `burst: ${EVENTS} events added, then drained with for await`;
Deno.bench({
  name: "IterablePipe",
  group: burst,
  baseline: true,
  async fn() {
    const pipe = new IterablePipe<number, number>(0, { log: quiet });
    for (let i = 0; i < EVENTS - 1; i++) pipe.addResponse(i);
    pipe.addResponse(EVENTS, true);
    for await (const event of pipe) sink = event;
  },
});
Deno.bench({
  name: "it-pushable",
  group: burst,
  async fn() {
    const source = pushable<number>({ objectMode: true });
    for (let i = 0; i < EVENTS; i++) source.push(i);
    source.end();
    for await (const value of source) sink = value;
  },
});

const pingPong =
  `ping-pong: ${EVENTS} events, each added after the last was consumed`;
Deno.bench({
  name: "IterablePipe",
  group: pingPong,
  baseline: true,
  async fn() {
    const pipe = new IterablePipe<number, number>(0, { log: quiet });
    const iterator = pipe[Symbol.asyncIterator]();
    for (let i = 0; i < EVENTS; i++) {
      const next = iterator.next();
      pipe.addResponse(i);
      sink = await next;
    }
    await iterator.return!();
  },
});
Deno.bench({
  name: "it-pushable",
  group: pingPong,
  async fn() {
    const source = pushable<number>({ objectMode: true });
    const iterator = source[Symbol.asyncIterator]();
    for (let i = 0; i < EVENTS; i++) {
      const next = iterator.next();
      source.push(i);
      sink = await next;
    }
    source.end();
  },
});
