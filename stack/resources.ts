// This module is browser compatible.

/**
 * The resources of the aiocoap test peer (`../shared/peers`), served by this
 * stack's server so that every client check runs against both.
 *
 * @module
 */

import type { IncomingRequest, ResponseInit } from "./exchange.ts";
import { CoapError, Observers, type Resources } from "./server.ts";

/** Hooks for watching the demo resources (the server command prints them). */
export interface DemoHooks {
  /** Called whenever the number of observations of `/counter` changes. */
  onObservers?(count: number): void;
  /** Called when an observation of `/counter` ends. */
  onObservationEnd?(): void;
}

/** Options for {@linkcode printingHooks}. */
export interface PrintingOptions {
  /**
   * Lines printed in a second at most; past it the rest of the second's are
   * left out, and its end prints the last count and how many were left out.
   *
   * @default {100}
   */
  linesPerSecond?: number;
  /** The time in milliseconds, and a timer (tests pass their own). */
  clock?: {
    now(): number;
    setTimeout(fn: () => void, ms: number): unknown;
  };
}

/**
 * Hooks that print what the aiocoap peer prints (`observers: N`) and each
 * end of an observation: the server command and the workerd worker use
 * them, and the interop checks read the lines. A flood of observations
 * does not flood the output: past `linesPerSecond` (100) in a second, the
 * rest of its lines are left out, and the second's end prints the last
 * count (`observers: N`) and how many lines were left out.
 *
 * @param print Where the lines go.
 * @param options The budget, and a clock for tests.
 * @returns The hooks.
 * @throws {RangeError} If `linesPerSecond` is not a positive integer.
 */
export function printingHooks(
  print: (line: string) => void,
  options: PrintingOptions = {},
): DemoHooks {
  const budget = options.linesPerSecond ?? 100;
  if (!Number.isSafeInteger(budget) || budget < 1) {
    throw new RangeError(
      `Cannot print: linesPerSecond must be a positive integer, got ${budget}`,
    );
  }
  const clock = options.clock ?? {
    now: () => Date.now(),
    setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
  };
  let since = -Infinity;
  let printed = 0;
  let left = 0;
  let count: number | undefined;
  let waiting = false;
  const flush = () => {
    waiting = false;
    since = clock.now();
    printed = 0;
    if (count !== undefined) print(`observers: ${count}`);
    print(
      `(${left} more ${left === 1 ? "line" : "lines"} in that second left out)`,
    );
    left = 0;
    count = undefined;
  };
  const say = (line: string, observers?: number) => {
    const now = clock.now();
    if (!waiting && now - since >= 1000) {
      since = now;
      printed = 0;
    }
    if (!waiting && printed < budget) {
      printed++;
      print(line);
      return;
    }
    left++;
    if (observers !== undefined) count = observers;
    if (!waiting) {
      waiting = true;
      clock.setTimeout(flush, Math.max(0, since + 1000 - now));
    }
  };
  return {
    onObservers: (n) => say(`observers: ${n}`, n),
    onObservationEnd: () =>
      say("observation of /counter ended: interest ended"),
  };
}

const TEXT = 0;
const LINK_FORMAT = 40;

/** The 4200-byte body of `/big`, as the aiocoap peer builds it. */
export const BIG: string = Array.from(
  { length: 140 },
  (_, i) => `line ${String(i).padStart(4, "0")} of a large resource\n`,
).join("");

/** Resolves after `ms`, or rejects with the signal's reason on abort. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** `/`'s answer, encoded once: a response is only ever read. */
const WELCOME: ResponseInit = Object.freeze({
  payload: new TextEncoder().encode("Welcome to the demo server"),
  contentFormat: TEXT,
});

function plain(text: string): ResponseInit {
  return { payload: text, contentFormat: TEXT };
}

/**
 * A ticking value and its observers: a new value every `interval` ms while
 * anyone observes, as the peer's `/counter` does. The observations are an
 * {@linkcode Observers} table: no task is kept for each.
 */
class Ticker {
  value = 0;
  readonly observers: Observers;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly interval: number,
    hooks: { onCount?(count: number): void; onEnd?(): void } = {},
  ) {
    this.observers = new Observers({
      onCount: (count) => {
        hooks.onCount?.(count);
        this.#changed(count);
      },
      onEnd: () => hooks.onEnd?.(),
    });
  }

  #changed(count: number): void {
    if (count > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => {
        this.value++;
        this.observers.updated();
      }, this.interval);
    } else if (count === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}

/**
 * The demo resources: `/`, `/counter` (observable, a new integer every
 * 100 ms while observed), `/observers`, `/echo`, `/fail`, `/slow?ms=N`,
 * `/big` (4200 bytes), `/other/separate` (answers after 3 s),
 * `/other/block`, `/time` (observable, every 5 s); `/.well-known/core` is
 * the server's own.
 *
 * @param hooks Watch observations come and go.
 * @returns The resources, for {@linkcode CoapServer}.
 *
 * @example
 * ```ts
 * import { demoResources } from "./resources.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const resources = demoResources();
 * assertEquals(resources["/counter"].observable !== undefined, true);
 * ```
 */
export function demoResources(hooks: DemoHooks = {}): Resources {
  const counter = new Ticker(100, {
    onCount: (count) => hooks.onObservers?.(count),
    onEnd: () => hooks.onObservationEnd?.(),
  });
  const clock = new Ticker(5000);
  let block = "This is the resource's default content. It is padded " +
    "with numbers to be large enough to trigger blockwise transfer.\n";
  while (block.length <= 1024) block += "0123456789\n";
  let version = 1;

  return {
    "/": {
      link: { title: "General Info", ct: "0 40" },
      GET: (request) => {
        if (request.accept === undefined || request.accept === TEXT) {
          return WELCOME;
        }
        if (request.accept === LINK_FORMAT) {
          return {
            payload: "</.well-known/core>,ct=40",
            contentFormat: LINK_FORMAT,
          };
        }
        throw new CoapError("4.06", "Not Acceptable");
      },
    },
    "/counter": {
      link: { title: "A counter", rt: "count", if: "core.s", ct: "0" },
      observable: counter.observers,
      GET: () => plain(String(counter.value)),
    },
    "/observers": {
      link: { title: "Observers of /counter", if: "core.s", ct: "0" },
      GET: () => plain(String(counter.observers.count)),
    },
    "/echo": {
      link: { title: "Echoes what is POSTed or PUT", if: "core.a" },
      POST: echo,
      PUT: echo,
    },
    "/fail": {
      link: { title: "Always fails (5.00)" },
      GET: () => {
        throw new Error("this resource always fails");
      },
    },
    "/slow": {
      link: { title: "Answers after ?ms=N milliseconds", ct: "0" },
      GET: async (request, _pipe, signal) => {
        let ms = 0;
        for (const item of request.query) {
          if (item.startsWith("ms=")) ms = Number(item.slice(3));
        }
        if (!Number.isInteger(ms) || ms < 0 || ms > 600_000) {
          throw new CoapError("4.00", "ms must be an integer of milliseconds");
        }
        await sleep(ms, signal);
        return plain(`slept ${ms}`);
      },
    },
    "/big": {
      link: { title: "A large resource", ct: "0", sz: String(BIG.length) },
      GET: () => plain(BIG),
    },
    "/other/separate": {
      link: { title: "A large resource" },
      GET: async (_request, _pipe, signal) => {
        await sleep(3000, signal);
        return {
          payload: "Three rings for the elven kings under the sky, seven " +
            "rings for dwarven lords in their halls of stone, nine rings " +
            "for mortal men doomed to die, one ring for the dark lord on " +
            "his dark throne.",
        };
      },
    },
    "/other/block": {
      link: { title: "A resource to PUT a body to", if: "core.p" },
      // A new ETag with every PUT: If-Match makes a PUT conditional on
      // the version the client saw.
      etag: () => `v${version}`,
      GET: () => ({ payload: block }),
      PUT: (request) => {
        block = new TextDecoder().decode(request.payload);
        version++;
        while (block.length <= 1024) block += "0123456789\n";
        return { code: "2.04", payload: block };
      },
    },
    "/time": {
      link: { title: "Internal Clock", rt: "ticks", if: "clock", ct: "0" },
      observable: clock.observers,
      GET: () => plain(new Date().toISOString().slice(0, 16).replace("T", " ")),
    },
  };
}

function echo(request: IncomingRequest): ResponseInit {
  return {
    code: "2.04",
    payload: request.payload,
    ...(request.contentFormat === undefined
      ? {}
      : { contentFormat: request.contentFormat }),
  };
}
