import { assertEquals, assertThrows } from "@std/assert";
import { chartLine } from "./chart.ts";

Deno.test("chartLine() spreads values across the box, largest at the top", () => {
  assertEquals(chartLine([10, 20, 15, 30, 10], 200, 50), {
    points: "0,50 50,25 100,37.5 150,0 200,50",
    min: 10,
    max: 30,
  });
  assertEquals(chartLine([-1, -3], 10, 4), {
    points: "0,0 10,4",
    min: -3,
    max: -1,
  });
});

Deno.test("chartLine() puts one value or equal values at mid-height, the newest at the right", () => {
  assertEquals(chartLine([7], 120, 40), { points: "120,20", min: 7, max: 7 });
  assertEquals(chartLine([2, 2, 2], 30, 10), {
    points: "0,5 15,5 30,5",
    min: 2,
    max: 2,
  });
});

Deno.test("chartLine() skips values that are not finite and has nothing to draw without values", () => {
  assertEquals(chartLine([1, NaN, Infinity, 3], 10, 10), {
    points: "0,10 10,0",
    min: 1,
    max: 3,
  });
  assertEquals(chartLine([], 10, 10), undefined);
  assertEquals(chartLine([NaN], 10, 10), undefined);
});

Deno.test("chartLine() rounds to tenths and refuses an empty box", () => {
  assertEquals(chartLine([0, 1, 2], 10, 3)?.points, "0,3 5,1.5 10,0");
  assertEquals(chartLine([0, 1, 0, 1], 10, 1)?.points, "0,1 3.3,0 6.7,1 10,0");
  for (const [w, h] of [[0, 10], [10, 0], [NaN, 10], [10, -1]]) {
    assertThrows(
      () => chartLine([1], w, h),
      RangeError,
      `Cannot draw a chart in a ${w} × ${h} box: both must be at least 1`,
    );
  }
});
