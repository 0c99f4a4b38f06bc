// Helpers used only by the tests: a recording logger, a capture of errors
// reported by callbacks, microtask flushing and a seeded random generator.

import type { Logger, ResponderPipe } from "../pipe.ts";

/** One call to a {@linkcode RecordingLogger} method. */
export type LogEntry = [
  level: "debug" | "info" | "warn" | "error",
  ...data: unknown[],
];

/** A logger that records every call instead of printing. */
export class RecordingLogger implements Logger {
  /** The calls, in order. */
  readonly entries: LogEntry[] = [];
  debug(...data: unknown[]): void {
    this.entries.push(["debug", ...data]);
  }
  info(...data: unknown[]): void {
    this.entries.push(["info", ...data]);
  }
  warn(...data: unknown[]): void {
    this.entries.push(["warn", ...data]);
  }
  error(...data: unknown[]): void {
    this.entries.push(["error", ...data]);
  }
  /** The levels of the calls, in order. */
  levels(): string[] {
    return this.entries.map(([level]) => level);
  }
}

type ReportError = (error: unknown) => void;

/**
 * Replaces `globalThis.reportError` with a recorder while `fn` runs, so tests
 * can see what callbacks threw; restores it afterwards.
 */
export async function captureReported<T>(
  fn: (reported: unknown[]) => T | Promise<T>,
): Promise<T> {
  const g = globalThis as { reportError?: ReportError };
  const had = Object.prototype.hasOwnProperty.call(g, "reportError");
  const original = g.reportError;
  const reported: unknown[] = [];
  g.reportError = (error) => reported.push(error);
  try {
    return await fn(reported);
  } finally {
    if (had) g.reportError = original;
    else delete g.reportError;
  }
}

/** Lets every queued microtask (and the ones they queue) run. */
export async function flush(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

/** A small seeded generator (mulberry32): same seed, same sequence. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A short, exact description of an event for traces. */
export function show(
  event: {
    kind: string;
    message?: unknown;
    exception?: unknown;
    isLast: boolean;
  },
): string {
  switch (event.kind) {
    case "response":
      return `response ${String(event.message)}${event.isLast ? " last" : ""}`;
    case "exception":
      return `exception ${
        event.exception instanceof Error
          ? event.exception.message
          : String(event.exception)
      }`;
    default:
      return event.kind;
  }
}

/**
 * Calls `onValue` for what reaches the runtime's global error reporting: a
 * `domEvent` on the global scope (its `error` or `reason`, with the default
 * action prevented so the run goes on), or Node's `nodeEvent` on `process`.
 * Returns the function that stops watching, or `undefined` where the runtime
 * offers neither.
 */
export function watchGlobal(
  domEvent: "error" | "unhandledrejection",
  nodeEvent: "uncaughtException" | "unhandledRejection",
  onValue: (value: unknown) => void,
): (() => void) | undefined {
  const g = globalThis as unknown as {
    addEventListener?: EventTarget["addEventListener"];
    removeEventListener?: EventTarget["removeEventListener"];
    process?: {
      on(event: string, fn: (value: unknown) => void): void;
      off(event: string, fn: (value: unknown) => void): void;
    };
  };
  // Bun has a global addEventListener but reports uncaught errors and
  // rejections only to process.on(); elsewhere the global event comes first.
  const bun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  if (!bun && typeof g.addEventListener === "function") {
    const listener = (event: Event) => {
      event.preventDefault();
      const e = event as Partial<ErrorEvent & PromiseRejectionEvent>;
      onValue(domEvent === "error" ? e.error : e.reason);
    };
    g.addEventListener(domEvent, listener);
    return () => g.removeEventListener!(domEvent, listener);
  }
  if (typeof g.process?.on === "function") {
    g.process.on(nodeEvent, onValue);
    return () => g.process!.off(nodeEvent, onValue);
  }
  return undefined;
}

/**
 * A full garbage collection, where the runtime exposes one: V8's `gc` (with
 * --expose-gc), or Bun's `Bun.gc(true)`; `undefined` elsewhere.
 */
export const gc: (() => void) | undefined = (() => {
  const g = globalThis as {
    gc?: () => void;
    Bun?: { gc(force: boolean): void };
  };
  if (typeof g.gc === "function") return g.gc;
  const bun = g.Bun;
  if (typeof bun?.gc === "function") return () => bun.gc(true);
  return undefined;
})();

/** Watches errors that reach the runtime uncaught; see `watchGlobal`. */
export function observeUncaught(
  onError: (error: unknown) => void,
): (() => void) | undefined {
  return watchGlobal("error", "uncaughtException", onError);
}

/**
 * The bytes of JavaScript heap in use after a full collection, or
 * `undefined` where the runtime exposes no collector or no heap figure
 * (workerd has neither; Chromium needs --enable-precise-memory-info).
 */
export function settledHeap(): number | undefined {
  const g = globalThis as unknown as {
    Deno?: { memoryUsage(): { heapUsed: number } };
    process?: { memoryUsage?(): { heapUsed: number } };
    performance?: { memory?: { usedJSHeapSize: number } };
  };
  if (gc === undefined) return undefined;
  gc();
  gc();
  if (g.Deno) return g.Deno.memoryUsage().heapUsed;
  if (typeof g.process?.memoryUsage === "function") {
    return g.process.memoryUsage().heapUsed;
  }
  return g.performance?.memory?.usedJSHeapSize;
}

/** A Proxy whose every trap throws: the most hostile opaque value. */
export function throwingProxy(): object {
  const fail = () => {
    throw new Error("trap called on a hostile Proxy");
  };
  return new Proxy({}, {
    get: fail,
    set: fail,
    has: fail,
    deleteProperty: fail,
    ownKeys: fail,
    getPrototypeOf: fail,
    setPrototypeOf: fail,
    isExtensible: fail,
    preventExtensions: fail,
    getOwnPropertyDescriptor: fail,
    defineProperty: fail,
    apply: fail,
    construct: fail,
  });
}

/** A revoked Proxy: any operation on it throws a TypeError. */
export function revokedProxy(): object {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

/** A logger whose every method throws; it records the calls it refused. */
export class ThrowingLogger {
  /** The levels that were called, in order. */
  readonly calls: string[] = [];
  debug(): void {
    this.calls.push("debug");
    throw new Error("logger broke (debug)");
  }
  info(): void {
    this.calls.push("info");
    throw new Error("logger broke (info)");
  }
  warn(): void {
    this.calls.push("warn");
    throw new Error("logger broke (warn)");
  }
  error(): void {
    this.calls.push("error");
    throw new Error("logger broke (error)");
  }
}

/** The Node.js `util.inspect` hook's signature, which Deno and Bun call too. */
export type NodeInspect = (
  depth: number,
  options: unknown,
  inspect?: (value: unknown, options?: unknown) => string,
) => string;

/**
 * A responder as the contract describes one that awaits an engine: it
 * reads `ended` through the `ResponderPipe` interface only, once before and
 * once after awaiting `engine`, and registers its interest-end hook and adds
 * a response only if interest is still there. Every step goes to `trace`.
 */
export async function awaitingResponder(
  pipe: ResponderPipe<string, string>,
  engine: Promise<void>,
  trace: string[],
): Promise<void> {
  trace.push(`before the engine: ended ${pipe.ended}`);
  await engine;
  trace.push(`after the engine: ended ${pipe.ended}`);
  if (pipe.ended) return;
  pipe.onInterestEnd(() => trace.push("hook: interest ended"));
  pipe.addResponse("value");
}

/**
 * Counts the `AbortController`s made from now until `restore()`: the global
 * class is replaced by a subclass that notes each one it makes.
 *
 * @returns `made`, the count so far, and `restore()`, which puts the
 * platform's class back.
 */
export function countAbortControllers(): {
  readonly made: number;
  restore(): void;
} {
  const original = globalThis.AbortController;
  let made = 0;
  globalThis.AbortController = class extends original {
    constructor() {
      super();
      made++;
    }
  };
  return {
    get made() {
      return made;
    },
    restore() {
      globalThis.AbortController = original;
    },
  };
}
