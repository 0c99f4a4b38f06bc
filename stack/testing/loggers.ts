// Loggers for the stack's tests: one that says nothing, and one that keeps
// the first argument of each warning and error as a line.

import type { Logger } from "@coap/pipe";

/** A logger that drops everything. */
export const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A logger that keeps warnings and errors as `"warn …"` and `"error …"`
 * lines (their first argument), and drops the rest.
 *
 * @param logs Where the lines go.
 * @returns The logger.
 */
export function recorder(logs: string[]): Logger {
  return {
    debug() {},
    info() {},
    warn: (...data) => logs.push(`warn ${data[0]}`),
    error: (...data) => logs.push(`error ${data[0]}`),
  };
}
