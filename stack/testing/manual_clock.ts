// A clock for tests that moves only when told.

import type { Clock } from "../connection.ts";

/** A clock that moves only when told; timers run in order of their time. */
export class ManualClock implements Clock {
  time = 0;
  #next = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time on by `ms`, running each timer due, with deliveries. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.timers) {
        if (
          entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)
        ) {
          due = entry;
        }
      }
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].fn();
      await settle();
    }
    this.time = Math.max(this.time, end);
    await settle();
  }
}

/** Lets queued microtasks (socket deliveries, drivers) run. */
export async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
