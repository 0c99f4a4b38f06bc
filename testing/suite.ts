// The test registry. Test files call `test()` instead of `Deno.test()` so the
// same cases can run in any runtime: under Deno each case is also registered
// with `Deno.test` (and its leak sanitizers); elsewhere a runner in this
// folder imports the test files and runs `cases` itself.

/** One named behaviour test. */
export interface Case {
  /** States the symbol and the behaviour. */
  name: string;
  /** Resolves when the case passes; throws or rejects when it fails. */
  fn: () => void | Promise<void>;
  /** Set when this runtime lacks what the case needs: it is skipped. */
  ignore: boolean;
  /** Why it is skipped: the missing feature, named. */
  reason?: string;
}

/** Every case registered so far, in registration order. */
export const cases: Case[] = [];

interface DenoTest {
  test(
    options: { name: string; fn: () => void | Promise<void>; ignore: boolean },
  ): void;
}

/**
 * Registers a test case. With `ignore` set (because this runtime lacks what
 * the case needs), it is reported as ignored or skipped, never as passed;
 * a string `ignore` is the reason, printed with the skip.
 */
export function test(
  name: string,
  fn: () => void | Promise<void>,
  options: { ignore?: boolean | string } = {},
): void {
  if (cases.some((c) => c.name === name)) {
    throw new Error(`Cannot register test case twice: ${name}`);
  }
  const ignore = options.ignore !== undefined && options.ignore !== false;
  const reason = typeof options.ignore === "string"
    ? options.ignore
    : ignore
    ? "this runtime lacks what the case needs"
    : undefined;
  cases.push({ name, fn, ignore, ...(reason ? { reason } : {}) });
  const deno = (globalThis as { Deno?: DenoTest }).Deno;
  if (typeof deno?.test === "function") deno.test({ name, fn, ignore });
}

/**
 * The reason to skip a case that needs `feature`, or `false` where the
 * runtime has it: `{ ignore: lacking("Symbol.dispose", !("dispose" in Symbol)) }`.
 */
export function lacking(feature: string, missing: boolean): string | false {
  return missing ? `needs ${feature}, which this runtime lacks` : false;
}
