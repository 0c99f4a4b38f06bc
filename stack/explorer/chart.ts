// This module is browser compatible.

/**
 * The geometry of the explorer's live chart: numbers in, SVG polyline
 * points out. Pure, so it is tested without a page.
 *
 * @module
 */

/** A chart of numbers, ready for an SVG `<polyline>`. */
export interface ChartLine {
  /** The `points` attribute: `"x,y x,y …"`, left to right, oldest first. */
  readonly points: string;
  /** The smallest value shown. */
  readonly min: number;
  /** The largest value shown. */
  readonly max: number;
}

/**
 * Lays values out across a `width` × `height` box, evenly spaced, the
 * newest at the right edge, the smallest value at the bottom and the
 * largest at the top (all at mid-height when they are equal). Coordinates
 * are rounded to tenths.
 *
 * @param values The values, oldest first.
 * @param width The box's width.
 * @param height The box's height.
 * @returns The points and the range, or `undefined` without values.
 * @throws {RangeError} If the box is not at least 1 × 1.
 *
 * @example
 * ```ts
 * import { chartLine } from "./chart.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(chartLine([1, 3, 2], 100, 10), {
 *   points: "0,10 50,0 100,5",
 *   min: 1,
 *   max: 3,
 * });
 * ```
 */
export function chartLine(
  values: readonly number[],
  width: number,
  height: number,
): ChartLine | undefined {
  if (!(width >= 1 && height >= 1)) {
    throw new RangeError(
      `Cannot draw a chart in a ${width} × ${height} box: both must be at least 1`,
    );
  }
  const shown = values.filter(Number.isFinite);
  if (shown.length === 0) return undefined;
  let min = Infinity;
  let max = -Infinity;
  for (const value of shown) {
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const step = shown.length === 1 ? 0 : width / (shown.length - 1);
  const y = (value: number) =>
    max === min ? height / 2 : height - (value - min) / (max - min) * height;
  const round = (n: number) => Math.round(n * 10) / 10;
  const points = shown.map((value, i) =>
    `${round(shown.length === 1 ? width : i * step)},${round(y(value))}`
  ).join(" ");
  return { points, min, max };
}
