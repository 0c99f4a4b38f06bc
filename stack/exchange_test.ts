import { assertEquals, assertThrows } from "@std/assert";
import { readRequest } from "./exchange.ts";
import { sharedPathCount } from "./shared_paths.ts";
import { type CoapOption, Code, utf8 } from "./message.ts";

function get(...segments: string[]) {
  const options: CoapOption[] = segments.map((segment) => ({
    number: 11,
    value: utf8(segment),
  }));
  return readRequest({
    code: Code.GET,
    token: new Uint8Array([1]),
    options,
    payload: new Uint8Array(0),
  });
}

Deno.test("readRequest(): requests for one path share its string and its frozen segments (an observation keeps its request for its life); another path has its own", () => {
  const a = get("sensors", "temp"), b = get("sensors", "temp");
  const c = get("sensors/temp");
  assertEquals(
    [a.path, b.path, c.path, a.segments, c.segments],
    ["/sensors/temp", "/sensors/temp", "/sensors%2Ftemp", [
      "sensors",
      "temp",
    ], ["sensors/temp"]],
  );
  assertEquals(
    [a.segments === b.segments, a.segments === c.segments],
    [true, false],
  );
  assertEquals(Object.isFrozen(a.segments), true);
  assertThrows(() => (a.segments as string[]).push("x"), TypeError);
  assertEquals(get().segments, []);
});

Deno.test("readRequest(): the shared paths are bounded (256): after 1,000 distinct paths, each request still reads its own path and segments", () => {
  const paths = Array.from({ length: 1000 }, (_, i) => {
    const request = get("p", String(i));
    if (sharedPathCount() > 256) throw new Error("unbounded");
    return request;
  });
  assertEquals(
    paths.every((r, i) =>
      r.path === `/p/${i}` && r.segments.length === 2 &&
      r.segments[1] === String(i)
    ),
    true,
  );
  // Still shared after the table started afresh.
  assertEquals(get("p", "999").segments === get("p", "999").segments, true);
});
