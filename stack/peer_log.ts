// This module is browser compatible.

/**
 * Logging what a peer causes, so that no peer can forge, flood or slow the
 * log. Every connection logs through a {@linkcode ConnectionLog}: text is
 * escaped (control characters as escapes, as Go's `%q` does) and cut to a
 * length, an event that repeats is logged once and then counted, and each
 * connection has a budget of lines a minute.
 *
 * @module
 */

import type { Logger } from "@coap/pipe";

/** Characters a log line must not carry raw: C0, DEL, C1, and the Unicode
 * line separators and direction overrides that rearrange what a terminal
 * shows. */
const UNSAFE =
  // deno-lint-ignore no-control-regex -- these are the characters escaped
  /[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** The longest text a log line takes from one value, by default. */
export const DEFAULT_TEXT_LIMIT = 300;

function escapeChar(c: string): string {
  switch (c) {
    case "\\":
      return "\\\\";
    case "\n":
      return "\\n";
    case "\r":
      return "\\r";
    case "\t":
      return "\\t";
  }
  const code = c.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Makes text safe for one log line: control characters (a newline, an ANSI
 * escape), backslashes and the Unicode line and direction controls become
 * escapes, and text longer than `limit` characters is cut, saying how much
 * was left out.
 *
 * @param text Text that may come from a peer.
 * @param limit The most characters kept.
 * @returns The text, escaped and cut.
 *
 * @example
 * ```ts
 * import { escapeText } from "./peer_log.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(escapeText("ok\nerror: FORGED\x1b[31m"), "ok\\nerror: FORGED\\x1b[31m");
 * assertEquals(escapeText("abcdef", 3), "abc… (3 more characters)");
 * ```
 */
export function escapeText(text: string, limit = DEFAULT_TEXT_LIMIT): string {
  let kept = text;
  let cut = "";
  if (text.length > limit) {
    let end = limit;
    // Never half a surrogate pair.
    const last = text.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end--;
    kept = text.slice(0, end);
    cut = `… (${text.length - end} more characters)`;
  }
  return kept.replace(UNSAFE, escapeChar) + cut;
}

/** Whether an error's text, and its causes', can go into a log as it is. */
function isSafeError(error: Error, depth = 0): boolean {
  const message = String(error.message);
  if (message.length > DEFAULT_TEXT_LIMIT || escapeText(message) !== message) {
    return false;
  }
  const cause = error.cause;
  if (cause === undefined) return true;
  if (typeof cause === "string") return escapeText(cause) === cause;
  return cause instanceof Error && depth < 4 && isSafeError(cause, depth + 1);
}

/**
 * One value made safe for a log line. An error is passed on as it is (a
 * logger shows its stack and cause) unless its message could hold what a
 * log line must not: then its name and escaped message, and its stack's
 * frames, which are this program's own.
 */
function safeValue(value: unknown): unknown {
  if (typeof value === "string") return escapeText(value);
  if (value instanceof Error && !isSafeError(value)) {
    const frames = (value.stack ?? "").split("\n").filter((line) =>
      /^\s+at /.test(line)
    );
    return [`${value.name}: ${escapeText(String(value.message))}`, ...frames]
      .join("\n");
  }
  return value;
}

/** Options for {@linkcode ConnectionLog}. */
export interface ConnectionLogOptions {
  /**
   * Lines one connection may log a minute; past it lines are counted, and
   * the count is logged when the minute is over (or the connection closes).
   * Debug lines have a budget of the same size of their own, and their
   * count is a debug line: lines an operator does not see never use up the
   * budget of those they do.
   *
   * @default {20}
   */
  linesPerMinute?: number;
  /**
   * The clock: milliseconds from any fixed point.
   *
   * @default {() => performance.now()}
   */
  now?: () => number;
}

const MINUTE = 60_000;
/** The level of a log line: a {@linkcode Logger}'s method. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * One connection's logger: what it logs goes to `log` escaped and cut, at
 * most `linesPerMinute` lines a minute, and a repeated event
 * ({@linkcode ConnectionLog.prototype.repeated}) once with a count at the
 * end. Debug lines have a budget of their own; a connection can only use up
 * its own.
 *
 * @example A flood of one event is one line, and a count at the end
 * ```ts
 * import { ConnectionLog } from "./peer_log.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const lines: string[] = [];
 * const sink = { debug() {}, info() {}, error() {}, warn: (line: string) => lines.push(line) };
 * const log = new ConnectionLog(sink);
 * for (let i = 0; i < 1000; i++) {
 *   log.repeated("unknown token", "responses with unknown tokens", "warn", `Ignoring a response with unknown token ${i}`);
 * }
 * log.close();
 * assertEquals(lines, [
 *   "Ignoring a response with unknown token 0",
 *   "And 999 more responses with unknown tokens on this connection",
 * ]);
 * ```
 */
export class ConnectionLog implements Logger {
  readonly #log: Logger;
  readonly #budget: number;
  readonly #now: () => number;
  /** The minute under way, and what was logged and left out in it. */
  // Long ago, as a small integer: -Infinity made V8 box the field.
  #windowStart = -(2 ** 30);
  #lines = 0;
  #suppressed = 0;
  #debugLines = 0;
  #debugSuppressed = 0;
  /** Repeated events: how often each was seen after its first line. */
  /** Repeated lines by kind; a table only once a line repeats. */
  #repeats:
    | Map<string, { what: string; level: LogLevel; count: number }>
    | undefined;

  /**
   * Wraps a logger for one connection.
   *
   * @param log Where the lines go.
   * @param options The budget of lines, and the clock.
   * @throws {RangeError} If `linesPerMinute` is not a positive integer.
   */
  constructor(log: Logger, options: ConnectionLogOptions = {}) {
    const { linesPerMinute = 20, now = () => performance.now() } = options;
    if (!Number.isInteger(linesPerMinute) || linesPerMinute < 1) {
      throw new RangeError(
        `Cannot create a connection log: linesPerMinute must be a positive integer, got ${linesPerMinute}`,
      );
    }
    this.#log = log;
    this.#budget = linesPerMinute;
    this.#now = now;
  }

  /** Logs detail that is only useful while debugging. */
  debug(...data: unknown[]): void {
    this.#emit("debug", data);
  }

  /** Logs an expected, noteworthy occurrence. */
  info(...data: unknown[]): void {
    this.#emit("info", data);
  }

  /** Logs something that should not happen but was handled. */
  warn(...data: unknown[]): void {
    this.#emit("warn", data);
  }

  /** Logs an error. */
  error(...data: unknown[]): void {
    this.#emit("error", data);
  }

  /**
   * Logs an event the first time it happens on this connection; later
   * occurrences are only counted, and the count is logged by
   * {@linkcode ConnectionLog.prototype.close}.
   *
   * @param key What kind of event it is.
   * @param what The events in the plural, for the count's line.
   * @param level The level of both lines.
   * @param data The first occurrence's line.
   */
  repeated(
    key: string,
    what: string,
    level: LogLevel,
    ...data: unknown[]
  ): void {
    const repeats = this.#repeats ??= new Map();
    const seen = repeats.get(key);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    repeats.set(key, { what, level, count: 0 });
    this.#emit(level, data);
  }

  /**
   * Logs what was counted and not yet told: each repeated event's count and
   * the lines left out over the budget. The connection calls it as it
   * closes.
   */
  close(): void {
    for (const { what, level, count } of this.#repeats?.values() ?? []) {
      if (count > 0) {
        this.#write(level, [
          `And ${count} more ${what} on this connection`,
        ]);
      }
    }
    this.#repeats?.clear();
    this.#tellSuppressed();
  }

  #emit(level: LogLevel, data: unknown[]): void {
    const now = this.#now();
    if (now - this.#windowStart >= MINUTE) {
      this.#tellSuppressed();
      this.#windowStart = now;
      this.#lines = this.#debugLines = 0;
    }
    if (level === "debug") {
      if (this.#debugLines >= this.#budget) {
        this.#debugSuppressed++;
        return;
      }
      this.#debugLines++;
    } else {
      if (this.#lines >= this.#budget) {
        this.#suppressed++;
        return;
      }
      this.#lines++;
    }
    this.#write(level, data.map(safeValue));
  }

  #tellSuppressed(): void {
    const tell = (level: LogLevel, count: number, what: string) => {
      if (count === 0) return;
      this.#write(level, [
        `Left out ${count} more ${what} of this connection (at most ${this.#budget} a minute)`,
      ]);
    };
    tell("warn", this.#suppressed, "log lines");
    tell("debug", this.#debugSuppressed, "debug lines");
    this.#suppressed = this.#debugSuppressed = 0;
  }

  #write(level: LogLevel, data: unknown[]): void {
    try {
      this.#log[level](...data);
    } catch { /* a logger's failure changes nothing */ }
  }
}
