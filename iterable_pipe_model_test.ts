// Randomized model test of IterablePipe: thousands of seeded random
// sequences of addResponse / addException / next / return / ready /
// onInterestEnd, with random maxBuffered, run on a real IterablePipe and on
// a deliberately naive model of SEMANTICS.md. The traces (what each next()
// and ready resolved to, in order; which hooks ran; what was logged) must
// match, and the real trace must keep the invariants on its own. A failure
// names the seed and the sequence, so it reproduces.

import { assertEquals, AssertionError } from "@std/assert";
import { IterablePipe } from "./iterable_pipe.ts";
import type { PipeEvent } from "./pipe.ts";
import { test } from "./testing/suite.ts";
import { flush, seededRandom, show } from "./testing/helpers.ts";

type Op =
  | { op: "response"; message: string; isLast: boolean }
  | { op: "exception"; message: string }
  | { op: "next"; id: number }
  | { op: "return" }
  | { op: "ready"; id: number }
  | { op: "hook"; id: number };

function randomOps(random: () => number, length: number): Op[] {
  const ops: Op[] = [];
  let id = 0;
  for (let i = 0; i < length; i++) {
    const r = random();
    if (r < 0.4) {
      ops.push({ op: "response", message: `r${i}`, isLast: random() < 0.08 });
    } else if (r < 0.43) ops.push({ op: "exception", message: `e${i}` });
    else if (r < 0.75) ops.push({ op: "next", id: id++ });
    else if (r < 0.78) ops.push({ op: "return" });
    else if (r < 0.9) ops.push({ op: "ready", id: id++ });
    else ops.push({ op: "hook", id: id++ });
  }
  return ops;
}

function describe(result: IteratorResult<PipeEvent<string>>): string {
  return result.done ? "done" : show(result.value);
}

/** Runs the sequence on a real IterablePipe; returns the trace. */
async function runReal(ops: Op[], maxBuffered: number) {
  const trace: string[] = [];
  const log = {
    debug: () => trace.push("log debug"),
    info: () => trace.push("log info"),
    warn: () => trace.push("log warn"),
    error: () => trace.push("log error"),
  };
  const pipe = new IterablePipe<string, string>("GET /model", {
    log,
    maxBuffered,
  });
  let iterator: AsyncIterator<PipeEvent<string>> | undefined;
  const pending = new Set<number>();
  for (const step of ops) {
    switch (step.op) {
      case "response":
        pipe.addResponse(step.message, step.isLast);
        break;
      case "exception":
        pipe.addException(step.message);
        break;
      case "next": {
        iterator ??= pipe[Symbol.asyncIterator]();
        pending.add(step.id);
        iterator.next().then((result) => {
          pending.delete(step.id);
          trace.push(`next${step.id} ${describe(result)}`);
        });
        break;
      }
      case "return":
        iterator ??= pipe[Symbol.asyncIterator]();
        iterator.return!();
        trace.push("returned");
        break;
      case "ready":
        pending.add(step.id);
        pipe.ready.then(() => {
          pending.delete(step.id);
          trace.push(`ready${step.id}`);
        });
        break;
      case "hook":
        pipe.onInterestEnd(() => trace.push(`hook${step.id}`));
        break;
    }
  }
  await flush(50);
  trace.push(
    `end: ended=${pipe.ended} dropped=${pipe.dropped} pending=${
      [...pending].join(",")
    }`,
  );
  return trace;
}

/**
 * The naive model: arrays and flags, written from SEMANTICS.md. Promise
 * callbacks run after the synchronous sequence, in the order the promises
 * were resolved, so the model records resolutions in order and appends
 * them after the synchronous part of the trace.
 */
function runModel(ops: Op[], maxBuffered: number): string[] {
  const sync: string[] = [];
  const resolved: string[] = [];
  let interested = true;
  let done = false;
  let final: string | undefined;
  const buffer: string[] = [];
  const waiters: number[] = [];
  const roomWaiters: number[] = [];
  let hooks: number[] = [];
  let dropped = 0;
  const pending = new Set<number>();

  const resolveNext = (id: number, text: string) => {
    pending.delete(id);
    resolved.push(`next${id} ${text}`);
  };
  const releaseRoom = () => {
    for (const id of roomWaiters.splice(0)) {
      pending.delete(id);
      resolved.push(`ready${id}`);
    }
  };
  const finish = () => {
    done = true;
    for (const id of waiters.splice(0)) resolveNext(id, "done");
  };
  const endInterest = () => {
    if (!interested) return;
    interested = false;
    releaseRoom();
    for (const id of hooks) sync.push(`hook${id}`);
    hooks = [];
  };
  const addFinal = (text: string) => {
    if (waiters.length > 0) {
      resolveNext(waiters.shift()!, text);
      finish();
    } else final = text;
    endInterest();
  };

  for (const step of ops) {
    switch (step.op) {
      case "response":
        if (!interested) sync.push("log warn");
        else if (step.isLast) addFinal(`response ${step.message} last`);
        else if (waiters.length > 0) {
          resolveNext(waiters.shift()!, `response ${step.message}`);
        } else {
          if (buffer.length >= maxBuffered) {
            buffer.shift();
            dropped++;
          }
          buffer.push(step.message);
        }
        break;
      case "exception":
        if (!interested) sync.push("log error");
        else addFinal(`exception ${step.message}`);
        break;
      case "next":
        pending.add(step.id);
        if (buffer.length > 0) {
          // Taking makes room first: a waiting producer hears before the
          // consumer's next() settles.
          const message = buffer.shift();
          releaseRoom();
          resolveNext(step.id, `response ${message}`);
        } else if (final !== undefined) {
          resolveNext(step.id, final);
          final = undefined;
          finish();
        } else if (done) resolveNext(step.id, "done");
        else waiters.push(step.id);
        break;
      case "return":
        buffer.length = 0;
        final = undefined;
        finish();
        endInterest();
        sync.push("returned");
        break;
      case "ready":
        pending.add(step.id);
        if (!interested || buffer.length < maxBuffered) {
          pending.delete(step.id);
          resolved.push(`ready${step.id}`);
        } else roomWaiters.push(step.id);
        break;
      case "hook":
        if (interested) hooks.push(step.id);
        else {
          sync.push("log warn");
          sync.push(`hook${step.id}`);
        }
        break;
    }
  }
  return [
    ...sync,
    ...resolved,
    `end: ended=${!interested} dropped=${dropped} pending=${
      [...pending].join(",")
    }`,
  ];
}

/** Invariants that must hold on the real trace alone. */
function checkInvariants(trace: string[], ops: Op[]): void {
  const hooks = ops.filter((o) => o.op === "hook").map((o) => `hook${o.id}`);
  for (const hook of hooks) {
    const runs = trace.filter((line) => line === hook).length;
    const ended = trace.at(-1)!.includes("ended=true");
    if (runs !== (ended ? 1 : 0)) {
      throw new AssertionError(`${hook} ran ${runs} times (ended=${ended})`);
    }
  }
  // Nothing is yielded after the final event, or after leaving.
  const yielded = trace.filter((l) => /^next\d+ (response|exception)/.test(l));
  const lastIndex = yielded.findIndex((l) => / last$|exception/.test(l));
  if (lastIndex !== -1 && lastIndex !== yielded.length - 1) {
    throw new AssertionError(`events yielded after the final one: ${yielded}`);
  }
  // Messages come out in the order they went in.
  const order = yielded.map((l) => Number(l.match(/ [re](\d+)/)![1]));
  for (let i = 1; i < order.length; i++) {
    if (order[i] <= order[i - 1]) {
      throw new AssertionError(`out of order: ${yielded}`);
    }
  }
  // Once interest has ended, no next() and no ready is left hanging.
  if (trace.at(-1)!.includes("ended=true") && !trace.at(-1)!.endsWith("=")) {
    throw new AssertionError(`left hanging after the end: ${trace.at(-1)}`);
  }
}

test("IterablePipe matches the naive model over 3000 random sequences, maxBuffered included", async () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const random = seededRandom(seed);
    const ops = randomOps(random, 5 + Math.floor(random() * 30));
    const maxBuffered = random() < 0.3
      ? Infinity
      : 1 + Math.floor(random() * 4);
    const real = await runReal(ops, maxBuffered);
    const model = runModel(ops, maxBuffered);
    try {
      assertEquals(real, model);
      checkInvariants(real, ops);
    } catch (error) {
      throw new AssertionError(
        `seed ${seed}, maxBuffered ${maxBuffered}, ops ${
          JSON.stringify(ops)
        }:\n${(error as Error).message}`,
      );
    }
  }
});
