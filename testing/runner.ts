// Runs the registered cases in any runtime and summarizes them in one line
// of the form `chromium: 42 passed, 0 failed`.

import { watchGlobal } from "./helpers.ts";
import type { Case } from "./suite.ts";

/** The outcome of a run. */
export interface RunResult {
  passed: number;
  failed: number;
  skipped: number;
  failures: { name: string; error: string }[];
  /** Each skipped case and why. */
  skips: { name: string; reason: string }[];
  /** Which optional platform features the module can use here. */
  features: string;
}

/** The optional features the module uses where the platform has them. */
export function features(): string {
  const g = globalThis as Record<string, unknown> & {
    Bun?: { gc?: unknown };
  };
  const has = (ok: boolean) => ok ? "yes" : "no";
  return [
    `Symbol.dispose ${has("dispose" in Symbol)}`,
    `Symbol.asyncDispose ${has("asyncDispose" in Symbol)}`,
    `reportError ${has(typeof g.reportError === "function")}`,
    `ReadableStream ${has(typeof g.ReadableStream === "function")}`,
    `a collector for tests ${
      has(typeof g.gc === "function" || typeof g.Bun?.gc === "function")
    }`,
  ].join(", ");
}

/** How long one case may take before it counts as hanging. */
const CASE_TIMEOUT_MS = 10_000;

/** Runs `cases` one after another; a case that throws or hangs fails. */
export async function runCases(
  cases: readonly Case[],
  onResult?: (name: string, error: string | undefined) => void,
): Promise<RunResult> {
  const result: RunResult = {
    passed: 0,
    failed: 0,
    skipped: 0,
    failures: [],
    skips: [],
    features: features(),
  };
  const unhandled: unknown[] = [];
  const stopWatching = watchUnhandledRejections(unhandled);
  try {
    for (const { name, fn, ignore, reason } of cases) {
      if (ignore) {
        result.skipped++;
        result.skips.push({ name, reason: reason ?? "skipped" });
        continue;
      }
      let error: string | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(fn),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`timed out after ${CASE_TIMEOUT_MS} ms`)),
              CASE_TIMEOUT_MS,
            );
          }),
        ]);
        // Let rejections that surface a tick late be counted against it.
        await new Promise((resolve) => setTimeout(resolve, 0));
        if (unhandled.length) {
          error = `unhandled rejection: ${describe(unhandled.splice(0)[0])}`;
        }
      } catch (e) {
        error = describe(e);
      } finally {
        clearTimeout(timer);
      }
      if (error === undefined) {
        result.passed++;
      } else {
        result.failed++;
        result.failures.push({ name, error });
      }
      onResult?.(name, error);
    }
  } finally {
    stopWatching();
  }
  return result;
}

/** The one closing line: `runtime: N passed, N failed`. */
export function summaryLine(runtime: string, result: RunResult): string {
  const skipped = result.skipped ? `, ${result.skipped} skipped` : "";
  return `${runtime}: ${result.passed} passed, ${result.failed} failed${skipped}`;
}

/** A readable report: failures first, then the closing line. */
export function report(runtime: string, result: RunResult): string {
  const lines = result.failures.map(({ name, error }) =>
    `FAILED ${name}\n  ${error.replaceAll("\n", "\n  ")}`
  );
  for (const { name, reason } of result.skips) {
    lines.push(`SKIPPED ${name}: ${reason}`);
  }
  lines.push(`${runtime} features: ${result.features}`);
  lines.push(summaryLine(runtime, result));
  return lines.join("\n");
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.stack ?? `${error.name}: ${error.message}`;
  }
  return String(error);
}

function watchUnhandledRejections(into: unknown[]): () => void {
  return watchGlobal(
    "unhandledrejection",
    "unhandledRejection",
    (reason) => into.push(reason),
  ) ?? (() => {});
}
