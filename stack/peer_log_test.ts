import { assertEquals, assertThrows } from "@std/assert";
import { ConnectionLog, escapeText } from "./peer_log.ts";

Deno.test("escapeText() writes control characters, backslashes and Unicode line and direction controls as escapes", () => {
  assertEquals(escapeText("plain text, é and 日本"), "plain text, é and 日本");
  assertEquals(
    escapeText("a\nb\rc\td\\e\x00\x1b[31m\x7f\x85\u2028\u2029\u202e\u2066"),
    "a\\nb\\rc\\td\\\\e\\x00\\x1b[31m\\x7f\\x85\\u2028\\u2029\\u202e\\u2066",
  );
});

Deno.test("escapeText() cuts text longer than its limit, never inside a surrogate pair, and says how much it left out", () => {
  assertEquals(escapeText("x".repeat(300)), "x".repeat(300));
  assertEquals(
    escapeText("x".repeat(301)),
    "x".repeat(300) + "… (1 more characters)",
  );
  assertEquals(escapeText("ab😀cd", 3), "ab… (4 more characters)");
  // Cut first, then escaped: an escape is never cut in half.
  assertEquals(escapeText("\n\n\n\n", 2), "\\n\\n… (2 more characters)");
});

function sink() {
  const lines: unknown[][] = [];
  return {
    lines,
    log: {
      debug: (...data: unknown[]) => lines.push(["debug", ...data]),
      info: (...data: unknown[]) => lines.push(["info", ...data]),
      warn: (...data: unknown[]) => lines.push(["warn", ...data]),
      error: (...data: unknown[]) => lines.push(["error", ...data]),
    },
  };
}

Deno.test("ConnectionLog passes an error on as it is unless its message or cause holds what a log line must not; then its escaped text and its frames", () => {
  const { lines, log } = sink();
  const connectionLog = new ConnectionLog(log);
  const plain = new Error("sensor unplugged", { cause: new Error("EIO") });
  connectionLog.error("failed", plain, 42);
  const forged = new Error("no such path: /x\nerror: FORGED");
  connectionLog.error("failed", forged);
  const hidden = new Error("wrapped", { cause: "peer said \x1b[2J" });
  connectionLog.warn(hidden);
  assertEquals(lines[0], ["error", "failed", plain, 42]);
  const [level, what, text] = lines[1] as [string, string, string];
  assertEquals([level, what], ["error", "failed"]);
  const [first, ...frames] = text.split("\n");
  assertEquals(first, "Error: no such path: /x\\nerror: FORGED");
  assertEquals(
    frames.length > 0 && frames.every((f) => /^\s+at /.test(f)),
    true,
  );
  assertEquals((lines[2][1] as string).split("\n")[0], "Error: wrapped");
});

Deno.test("ConnectionLog.repeated() logs each kind of event once and tells each count as the log closes; close() tells nothing twice", () => {
  const { lines, log } = sink();
  const connectionLog = new ConnectionLog(log);
  for (let i = 0; i < 3; i++) {
    connectionLog.repeated("a", "stray responses", "warn", `stray ${i}`);
  }
  connectionLog.repeated("b", "shortened responses", "debug", "short");
  connectionLog.close();
  connectionLog.close();
  assertEquals(lines, [
    ["warn", "stray 0"],
    ["debug", "short"],
    ["warn", "And 2 more stray responses on this connection"],
  ]);
});

Deno.test("ConnectionLog keeps to linesPerMinute and starts a new minute with the count of what it left out; debug lines have a budget of their own", () => {
  const { lines, log } = sink();
  let now = 0;
  const connectionLog = new ConnectionLog(log, {
    linesPerMinute: 2,
    now: () => now,
  });
  for (let i = 0; i < 5; i++) connectionLog.debug(`detail ${i}`);
  for (let i = 0; i < 5; i++) connectionLog.info(`line ${i}`);
  now = 59_999;
  connectionLog.warn("still the first minute");
  now = 60_000;
  connectionLog.error("the second minute");
  assertEquals(lines, [
    ["debug", "detail 0"],
    ["debug", "detail 1"],
    ["info", "line 0"],
    ["info", "line 1"],
    [
      "warn",
      "Left out 4 more log lines of this connection (at most 2 a minute)",
    ],
    [
      "debug",
      "Left out 3 more debug lines of this connection (at most 2 a minute)",
    ],
    ["error", "the second minute"],
  ]);
});

Deno.test("ConnectionLog goes on when its logger throws, and refuses a budget that is not a positive integer", () => {
  const failing = {
    debug() {
      throw new Error("disk full");
    },
    info() {
      throw new Error("disk full");
    },
    warn() {
      throw new Error("disk full");
    },
    error() {
      throw new Error("disk full");
    },
  };
  const connectionLog = new ConnectionLog(failing);
  connectionLog.warn("nobody hears this");
  connectionLog.repeated("a", "things", "error", "nor this");
  connectionLog.close();
  for (const bad of [0, -1, 1.5, NaN]) {
    assertThrows(
      () => new ConnectionLog(failing, { linesPerMinute: bad }),
      RangeError,
      `Cannot create a connection log: linesPerMinute must be a positive integer, got ${bad}`,
    );
  }
});
