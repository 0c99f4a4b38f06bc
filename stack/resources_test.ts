import { assertEquals, assertThrows } from "@std/assert";
import { printingHooks } from "./resources.ts";

function manual() {
  const timers: { at: number; fn: () => void }[] = [];
  const clock = {
    time: 0,
    now: () => clock.time,
    setTimeout(fn: () => void, ms: number) {
      timers.push({ at: clock.time + ms, fn });
      return timers.length;
    },
    advance(ms: number) {
      clock.time += ms;
      for (const timer of timers.splice(0)) {
        if (timer.at <= clock.time) timer.fn();
        else timers.push(timer);
      }
    },
  };
  return { clock, timers };
}

Deno.test("printingHooks: every change printed as aiocoap's peer prints it while under linesPerSecond; a flood is left out past it, and the second's end prints the last count and how many lines were left out", () => {
  const lines: string[] = [];
  const { clock, timers } = manual();
  const hooks = printingHooks((line) => lines.push(line), {
    linesPerSecond: 3,
    clock,
  });
  hooks.onObservers!(1);
  hooks.onObservers!(2);
  hooks.onObservationEnd!();
  assertEquals(timers.length, 0);
  // Past the budget: held, one timer for the second's end.
  hooks.onObservers!(1);
  hooks.onObservers!(2);
  hooks.onObservationEnd!();
  hooks.onObservers!(1);
  assertEquals(timers.length, 1);
  clock.advance(400);
  hooks.onObservers!(0);
  assertEquals(lines, [
    "observers: 1",
    "observers: 2",
    "observation of /counter ended: interest ended",
  ]);
  clock.advance(600);
  assertEquals(lines.slice(3), [
    "observers: 0",
    "(5 more lines in that second left out)",
  ]);
  // A new second: printed again, and nothing waits.
  hooks.onObservers!(1);
  assertEquals(lines.at(-1), "observers: 1");
  assertEquals(timers.length, 0);
  // Ends only, left out: no count to print.
  const ends: string[] = [];
  const quiet = manual();
  const endHooks = printingHooks((line) => ends.push(line), {
    linesPerSecond: 1,
    clock: quiet.clock,
  });
  endHooks.onObservationEnd!();
  endHooks.onObservationEnd!();
  quiet.clock.advance(1000);
  assertEquals(ends, [
    "observation of /counter ended: interest ended",
    "(1 more line in that second left out)",
  ]);
});

Deno.test("printingHooks: linesPerSecond must be a positive integer", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assertThrows(
      () => printingHooks(() => {}, { linesPerSecond: bad }),
      RangeError,
      `linesPerSecond must be a positive integer, got ${bad}`,
    );
  }
});
