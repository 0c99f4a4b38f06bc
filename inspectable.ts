// This module is browser compatible.

/** Formats a value for messages when no inspector is at hand. */
export function preview(value: unknown): string {
  return formatSafely(previewUnsafe, value);
}

/** What inspection shows for a value whose reading throws (a hostile Proxy). */
export const UNREADABLE = "[unreadable]";

/**
 * Formats `value` with `format`, or shows {@linkcode UNREADABLE} when that
 * throws: inspecting a pipe never throws, whatever its request is.
 */
export function formatSafely(
  format: (value: unknown) => string,
  value: unknown,
): string {
  try {
    return format(value);
  } catch {
    return UNREADABLE;
  }
}

function previewUnsafe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") {
    return `[Function ${value.name || "(anonymous)"}]`;
  }
  if (typeof value === "object" && value !== null) {
    const name = value.constructor?.name;
    return `[${name && name !== "Object" ? name : "object"}]`;
  }
  return typeof value === "bigint" ? `${value}n` : String(value);
}

/** A runtime's inspector, as passed to the inspection hooks. */
export type Inspect = (value: unknown, options?: unknown) => string;

/**
 * The base of this module's classes: it makes them show themselves in
 * `console.log`, `Deno.inspect` and Node's `util.inspect` (aiocoap's
 * `__repr__`) by calling the subclass's `toString(format)` with the
 * runtime's own inspector for nested values, such as a pipe's request.
 *
 * One hook serves them all: Node's `util.inspect.custom`
 * (`Symbol.for("nodejs.util.inspect.custom")`), which Deno's console and
 * `Deno.inspect` call as Node does, with the runtime's inspector (and so do
 * Bun's). Deno's own `Symbol.for("Deno.customInspect")` is not needed.
 *
 * The hook lives on a base class, rather than being defined on each
 * prototype when the module loads, so that bundlers can drop the classes an
 * application does not import.
 *
 * @example A class of your own that inspects like a pipe
 * ```ts
 * import { Inspectable } from "@coap/pipe";
 * import { assertEquals } from "@std/assert";
 *
 * class Token extends Inspectable {
 *   constructor(readonly bytes: string) {
 *     super();
 *   }
 *   override toString(format: (v: unknown) => string = String): string {
 *     return `Token { ${format(this.bytes)} }`;
 *   }
 * }
 * assertEquals(String(new Token("c0ffee")), "Token { c0ffee }");
 * ```
 */
export abstract class Inspectable {
  /**
   * Describes the object, formatting nested values with `format`.
   *
   * @param format Formats a nested value; subclasses default to a short
   * preview.
   * @returns The description.
   */
  abstract toString(format?: (value: unknown) => string): string;

  /**
   * The inspection hook of Node.js `util.inspect`, Deno and Bun.
   *
   * @param _depth Unused.
   * @param options The inspector's options, passed on for nested values.
   * @param inspect The runtime's inspector, where it passes one.
   * @returns The description from `toString`.
   */
  [Symbol.for("nodejs.util.inspect.custom") as typeof NODE_INSPECT](
    _depth: number,
    options: unknown,
    inspect?: Inspect,
  ): string {
    return this.toString(inspect ? (v) => inspect(v, options) : preview);
  }
}

declare const NODE_INSPECT: unique symbol;
