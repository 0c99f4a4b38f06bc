// Randomized model test: thousands of seeded random sequences of
// register / unregister / addResponse / addException / onInterestEnd run on
// a real Pipe and on a deliberately naive model of SEMANTICS.md; the traces
// must match, and the real trace must keep the invariants on its own.
// A failure names the seed and the sequence, so it reproduces.

import { assertEquals, AssertionError } from "@std/assert";
import { Pipe, type PipeEvent } from "./pipe.ts";
import { test } from "./testing/suite.ts";
import { captureReported, seededRandom, show } from "./testing/helpers.ts";

type Op =
  | { op: "register"; id: number; interest: boolean }
  | { op: "unregister"; id: number }
  | { op: "interestEnd"; id: number }
  | { op: "response"; message: string; isLast: boolean }
  | { op: "exception"; message: string };

/** What a callback does on its n-th call: keep, let go, or throw. */
type Reply = "keep" | "drop" | "throw";

function replyFor(seed: number, id: number, call: number): Reply {
  const r = seededRandom(seed * 7919 + id * 104729 + call)();
  return r < 0.6 ? "keep" : r < 0.9 ? "drop" : "throw";
}

function randomOps(random: () => number, length: number): Op[] {
  const ops: Op[] = [];
  let next = 0;
  for (let i = 0; i < length; i++) {
    const r = random();
    if (r < 0.3) {
      ops.push({ op: "register", id: next++, interest: random() < 0.7 });
    } else if (r < 0.45 && next > 0) {
      ops.push({ op: "unregister", id: Math.floor(random() * next) });
    } else if (r < 0.55) {
      ops.push({ op: "interestEnd", id: next++ });
    } else if (r < 0.95) {
      ops.push({ op: "response", message: `r${i}`, isLast: random() < 0.1 });
    } else {
      ops.push({ op: "exception", message: `e${i}` });
    }
  }
  return ops;
}

/** Runs the sequence on a real Pipe; returns the trace. */
function runReal(seed: number, ops: Op[]): string[] {
  const trace: string[] = [];
  const log = {
    debug: () => trace.push("log debug"),
    info: () => trace.push("log info"),
    warn: () => trace.push("log warn"),
    error: () => trace.push("log error"),
  };
  const pipe = new Pipe<string, string>("GET /model", log);
  const unregister = new Map<number, () => void>();
  const calls = new Map<number, number>();
  for (const step of ops) {
    switch (step.op) {
      case "register": {
        const { id } = step;
        calls.set(id, 0);
        unregister.set(
          id,
          pipe.onEvent((event: PipeEvent<string>) => {
            const call = calls.get(id)!;
            calls.set(id, call + 1);
            const reply = replyFor(seed, id, call);
            trace.push(`cb${id} ${show(event)} -> ${reply}`);
            if (reply === "throw") throw new Error(`cb${id} failed`);
            return reply === "keep";
          }, step.interest),
        );
        break;
      }
      case "unregister":
        unregister.get(step.id)?.();
        trace.push(`unregistered cb${step.id}`);
        break;
      case "interestEnd":
        pipe.onInterestEnd(() => trace.push(`hook${step.id}`));
        break;
      case "response":
        pipe.addResponse(step.message, step.isLast);
        break;
      case "exception":
        pipe.addException(new Error(step.message));
        break;
    }
    trace.push(`-- ended=${pipe.ended}`);
  }
  return trace;
}

/**
 * The contract, written as plainly as possible: a list of records scanned in
 * full at every step, with none of the real pipe's bookkeeping.
 */
function runModel(seed: number, ops: Op[]): string[] {
  const trace: string[] = [];
  interface Rec {
    id: number;
    interest: boolean;
    hook: boolean;
    alive: boolean;
    calls: number;
  }
  const records: Rec[] = [];
  let ended = false;
  const interested = () => records.some((r) => r.alive && r.interest);
  const call = (rec: Rec, event: string): boolean => {
    const reply = replyFor(seed, rec.id, rec.calls++);
    trace.push(`cb${rec.id} ${event} -> ${reply}`);
    return reply === "keep";
  };
  const end = () => {
    ended = true;
    for (const rec of records) {
      if (!rec.alive) continue;
      rec.alive = false;
      if (rec.hook) trace.push(`hook${rec.id}`);
      else call(rec, "interestEnd");
    }
  };
  const deliver = (event: string, isLast: boolean) => {
    if (ended) {
      trace.push(event.startsWith("exception") ? "log error" : "log warn");
      return;
    }
    for (const rec of [...records]) {
      if (!rec.alive) continue;
      if (rec.hook) {
        if (isLast) {
          rec.alive = false;
          trace.push(`hook${rec.id}`);
        }
        continue;
      }
      const keep = call(rec, event);
      if (!keep || isLast) rec.alive = false;
    }
    if (isLast || !interested()) end();
  };
  for (const step of ops) {
    switch (step.op) {
      case "register": {
        const rec = {
          id: step.id,
          interest: step.interest,
          hook: false,
          alive: true,
          calls: 0,
        };
        if (ended) {
          trace.push("log warn");
          rec.alive = false;
          call(rec, "interestEnd");
        }
        records.push(rec);
        break;
      }
      case "unregister": {
        const rec = records.find((r) => r.id === step.id && !r.hook);
        if (rec && rec.alive && !ended) {
          rec.alive = false;
          if (!interested()) end();
        }
        trace.push(`unregistered cb${step.id}`);
        break;
      }
      case "interestEnd": {
        if (ended) {
          trace.push("log warn");
          trace.push(`hook${step.id}`);
        } else if (!interested()) {
          trace.push(`hook${step.id}`);
        } else {
          records.push({
            id: step.id,
            interest: false,
            hook: true,
            alive: true,
            calls: 0,
          });
        }
        break;
      }
      case "response":
        deliver(
          `response ${step.message}${step.isLast ? " last" : ""}`,
          step.isLast,
        );
        break;
      case "exception":
        deliver(`exception ${step.message}`, true);
        break;
    }
    trace.push(`-- ended=${ended}`);
  }
  return trace;
}

/** Invariants checked on the real trace alone, without the model. */
function checkInvariants(trace: string[], ops: Op[]): void {
  const gone = new Set<number>(); // let go, unregistered or got isLast
  const lastSeen = new Set<number>();
  const hooksCalled = new Map<number, number>();
  let deliveryOrder: number[] = [];
  let ended = false;
  for (const line of trace) {
    if (line.startsWith("-- ended=")) {
      const nowEnded = line === "-- ended=true";
      if (ended && !nowEnded) throw new AssertionError("pipe came back");
      ended = nowEnded;
      deliveryOrder = [];
      continue;
    }
    const unregistered = line.match(/^unregistered cb(\d+)$/);
    if (unregistered) {
      gone.add(Number(unregistered[1]));
      continue;
    }
    const hook = line.match(/^hook(\d+)$/);
    if (hook) {
      const id = Number(hook[1]);
      hooksCalled.set(id, (hooksCalled.get(id) ?? 0) + 1);
      continue;
    }
    const cb = line.match(/^cb(\d+) (.*) -> (keep|drop|throw)$/);
    if (!cb) continue;
    const id = Number(cb[1]);
    const isLast = cb[2] === "interestEnd" || cb[2].startsWith("exception") ||
      cb[2].endsWith(" last");
    if (gone.has(id)) {
      throw new AssertionError(`cb${id} called after it was removed: ${line}`);
    }
    if (isLast) {
      if (lastSeen.has(id)) {
        throw new AssertionError(`cb${id} got a second isLast event`);
      }
      lastSeen.add(id);
      gone.add(id);
    }
    if (cb[3] !== "keep") gone.add(id);
    if (cb[2] !== "interestEnd") {
      if (deliveryOrder.length && deliveryOrder.at(-1)! >= id) {
        throw new AssertionError(`delivery out of order at cb${id}`);
      }
      deliveryOrder.push(id);
    }
  }
  for (const step of ops) {
    if (step.op !== "interestEnd") continue;
    const count = hooksCalled.get(step.id) ?? 0;
    if (count > 1) {
      throw new AssertionError(`hook${step.id} ran ${count} times`);
    }
    if (ended && count !== 1) {
      throw new AssertionError(`hook${step.id} never ran on an ended pipe`);
    }
  }
}

test("Pipe matches the model on 3000 seeded random sequences", async () => {
  await captureReported((reported) => {
    let checked = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const random = seededRandom(seed);
      const ops = randomOps(random, 5 + Math.floor(random() * 40));
      reported.length = 0;
      try {
        const real = runReal(seed, ops);
        assertEquals(real, runModel(seed, ops));
        checkInvariants(real, ops);
        const throws = real.filter((l) => l.endsWith("-> throw")).length;
        assertEquals(reported.length, throws, "every throw is reported");
      } catch (error) {
        throw new AssertionError(
          `Model test failed for seed ${seed}: ${(error as Error).message}\n` +
            `ops: ${JSON.stringify(ops)}`,
          { cause: error },
        );
      }
      checked++;
    }
    assertEquals(checked, 3000);
  });
});

test("Pipe model test's invariant checks catch broken traces", () => {
  const ops: Op[] = [{ op: "interestEnd", id: 1 }];
  const broken: [string, string[]][] = [
    ["call after removal", ["unregistered cb0", "cb0 response a -> keep"]],
    ["second isLast", [
      "cb0 response a last -> keep",
      "-- ended=true",
      "cb0 interestEnd -> keep",
    ]],
    ["out of order", ["cb2 response a -> keep", "cb1 response a -> keep"]],
    ["hook twice", ["hook1", "hook1"]],
    ["hook missing", ["-- ended=true"]],
    ["pipe came back", ["-- ended=true", "hook1", "-- ended=false"]],
  ];
  const failures: string[] = [];
  for (const [name, trace] of broken) {
    try {
      checkInvariants(trace, ops);
    } catch (error) {
      if (error instanceof AssertionError) failures.push(name);
    }
  }
  assertEquals(failures, broken.map(([name]) => name));
});
