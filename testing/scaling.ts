// Scaling of the operations that must stay amortized O(1) each
// (SEMANTICS.md, "Cost stays linear"):
//   deno task bench:scaling
// For callbacks (registered, then unregistered in a scrambled order, by
// their unregister functions and through AbortSignals), poke handlers
// (likewise), and pending next() calls of an IterablePipe, it times 10^3,
// 10^4 and 10^5 operations (best of several runs) and prints the time per
// operation and the ratio 10^5/10^3 (goal: at most 1.5), beside bare
// baselines that show what memory alone costs at those sizes. It exits
// non-zero only past 10: timings on a shared machine are noisy, a
// quadratic path is not (it shows ratios of 100 and more).

import { IterablePipe } from "../iterable_pipe.ts";
import { Pipe } from "../pipe.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A fixed scrambled order of 0..n-1 (a multiplicative permutation). */
function scrambled(n: number): number[] {
  const step = 7919; // prime, coprime with the sizes used
  return Array.from({ length: n }, (_, i) => (i * step) % n);
}

/**
 * Bare baselines: the same allocations with nothing in between (closures
 * in an array, dropped in the same order; promises resolved by their own
 * resolvers). Their growth from 10^3 to 10^5 is what memory alone costs on
 * this machine (caches, the collector), which no data structure avoids.
 */
const baselines: Record<string, (n: number) => Promise<void> | void> = {
  "closures in an array, dropped in any order": (n) => {
    const items: ((() => boolean) | undefined)[] = Array.from(
      { length: n },
      () => () => true,
    );
    for (const i of scrambled(n)) items[i] = undefined;
  },
  "promises resolved by their resolvers": async (n) => {
    const resolvers: ((value: number) => void)[] = [];
    const pending = Array.from(
      { length: n },
      () => new Promise<number>((resolve) => resolvers.push(resolve)),
    );
    for (let i = 0; i < n; i++) resolvers[i](i);
    await Promise.all(pending);
  },
};

const operations: Record<string, (n: number) => Promise<void> | void> = {
  "callbacks: register, unregister in any order": (n) => {
    const pipe = new Pipe<string, string>("r", quiet);
    pipe.onEvent(() => true); // keeps the pipe alive throughout
    const offs = Array.from({ length: n }, () => pipe.onEvent(() => true));
    for (const i of scrambled(n)) offs[i]();
  },
  "callbacks through AbortSignals": (n) => {
    const pipe = new Pipe<string, string>("r", quiet);
    pipe.onEvent(() => true);
    const controllers = Array.from({ length: n }, () => {
      const controller = new AbortController();
      pipe.onEvent(() => true, { signal: controller.signal });
      return controller;
    });
    for (const i of scrambled(n)) controllers[i].abort();
  },
  "poke handlers: register, remove in any order": (n) => {
    const pipe = new Pipe<string, string>("r", quiet);
    pipe.onEvent(() => true);
    const offs = Array.from({ length: n }, () => pipe.onPoke(() => {}));
    for (const i of scrambled(n)) offs[i]();
  },
  "pending next() calls of an IterablePipe": async (n) => {
    const pipe = new IterablePipe<string, number>("r", { log: quiet });
    const iterator = pipe[Symbol.asyncIterator]();
    const pending = Array.from({ length: n }, () => iterator.next());
    for (let i = 0; i < n; i++) pipe.addResponse(i);
    await Promise.all(pending);
  },
};

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

async function time(op: (n: number) => Promise<void> | void, n: number) {
  let best = Infinity;
  const runs = n >= 100_000 ? 5 : n >= 10_000 ? 10 : 40;
  for (let run = 0; run < runs; run++) {
    gc(); // each run starts from a collected heap
    const started = performance.now();
    await op(n);
    best = Math.min(best, performance.now() - started);
  }
  return best / n * 1e6; // ns per operation
}

let worst = 0;
const rows = [
  ...Object.entries(baselines).map(([n, op]) =>
    [`(baseline) ${n}`, op] as const
  ),
  ...Object.entries(operations),
];
for (const [name, op] of rows) {
  await time(op, 1000); // warm-up
  const perOp = [];
  for (const n of [1_000, 10_000, 100_000]) perOp.push(await time(op, n));
  const ratio = perOp[2] / perOp[0];
  if (!name.startsWith("(baseline)")) worst = Math.max(worst, ratio);
  console.log(
    `${name.padEnd(58)} ns/op at 10^3 ${
      perOp[0].toFixed(0).padStart(5)
    }, 10^4 ${perOp[1].toFixed(0).padStart(5)}, 10^5 ${
      perOp[2].toFixed(0).padStart(5)
    }; ratio 10^5/10^3 ${ratio.toFixed(2)} (goal <= 1.5): ${
      ratio <= 1.5 ? "met" : "MISSED"
    }`,
  );
}
if (worst > 10) {
  console.error(`a per-operation cost grew ${worst.toFixed(1)}x: not linear`);
  Deno.exit(1);
}
