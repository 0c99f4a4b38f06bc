// A small stand-in for `jsr:@std/assert`, which this project's machines
// cannot download. It has the same names, signatures and failure behaviour
// (throwing `AssertionError`) for the functions the tests use; pointing the
// `@std/assert` entry of deno.json's import map at `jsr:@std/assert@^1`
// gives the upstream module instead. It uses no Deno API, so the same tests
// can run in other runtimes.

/** Thrown when an assertion fails. */
export class AssertionError extends Error {
  /** Creates an assertion error with the given message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AssertionError";
  }
}

/** Fails with the given message. */
export function fail(msg?: string): never {
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(`Failed assertion${suffix}`);
}

/** Asserts that `expr` is truthy. */
export function assert(expr: unknown, msg = ""): asserts expr {
  if (!expr) throw new AssertionError(msg);
}

/** A value that is falsy. */
export type Falsy = false | 0 | 0n | "" | null | undefined;

/** Asserts that `expr` is falsy. */
export function assertFalse(expr: unknown, msg = ""): asserts expr is Falsy {
  if (expr) throw new AssertionError(msg);
}

/** Asserts that `actual` is neither `null` nor `undefined`. */
export function assertExists<T>(
  actual: T,
  msg?: string,
): asserts actual is NonNullable<T> {
  if (actual === undefined || actual === null) {
    const suffix = msg ? `: ${msg}` : ".";
    throw new AssertionError(
      `Expected actual: "${actual}" to not be null or undefined${suffix}`,
    );
  }
}

/** Deep equality as `@std/assert`'s `equal` defines it, for plain data. */
export function equal(a: unknown, b: unknown): boolean {
  const seen = new Map<unknown, unknown>();
  return compare(a, b);

  function compare(a: unknown, b: unknown): boolean {
    if (Object.is(a, b)) return true;
    if (
      typeof a !== "object" || typeof b !== "object" || a === null ||
      b === null
    ) {
      return false;
    }
    if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
    if (a instanceof Date && b instanceof Date) {
      return Object.is(a.getTime(), b.getTime());
    }
    if (a instanceof RegExp && b instanceof RegExp) {
      return String(a) === String(b);
    }
    if (a instanceof Error && b instanceof Error) {
      if (a.name !== b.name || a.message !== b.message) return false;
    }
    if (seen.get(a) === b) return true;
    seen.set(a, b);
    if (a instanceof Map && b instanceof Map) {
      if (a.size !== b.size) return false;
      for (const [key, value] of a) {
        if (!b.has(key) || !compare(value, b.get(key))) return false;
      }
      return true;
    }
    if (a instanceof Set && b instanceof Set) {
      if (a.size !== b.size) return false;
      for (const value of a) if (!b.has(value)) return false;
      return true;
    }
    if (Array.isArray(a) && Array.isArray(b) && a.length !== b.length) {
      return false;
    }
    const keysA = ownKeys(a);
    const keysB = ownKeys(b);
    if (keysA.length !== keysB.length) return false;
    for (const key of keysA) {
      if (!Object.prototype.hasOwnProperty.call(b, key)) return false;
      if (
        !compare(
          (a as Record<PropertyKey, unknown>)[key],
          (b as Record<PropertyKey, unknown>)[key],
        )
      ) {
        return false;
      }
    }
    return true;
  }
}

function ownKeys(value: object): PropertyKey[] {
  return [
    ...Object.keys(value),
    ...Object.getOwnPropertySymbols(value).filter((symbol) =>
      Object.prototype.propertyIsEnumerable.call(value, symbol)
    ),
  ];
}

/** Formats a value for failure messages, without any runtime's inspector. */
export function format(value: unknown): string {
  const seen = new Set<unknown>();
  return show(value, 0);

  function show(value: unknown, depth: number): string {
    switch (typeof value) {
      case "string":
        return JSON.stringify(value);
      case "bigint":
        return `${value}n`;
      case "symbol":
        return value.toString();
      case "function":
        return `[Function: ${value.name || "(anonymous)"}]`;
      case "undefined":
        return "undefined";
      case "number":
        return Object.is(value, -0) ? "-0" : String(value);
      case "boolean":
        return String(value);
    }
    if (value === null) return "null";
    if (seen.has(value)) return "[Circular]";
    if (depth > 6) return "[Object]";
    seen.add(value);
    try {
      if (value instanceof Error) return `${value.name}: ${value.message}`;
      if (value instanceof Date) return value.toISOString();
      if (value instanceof RegExp) return String(value);
      if (Array.isArray(value)) {
        return `[${value.map((v) => show(v, depth + 1)).join(", ")}]`;
      }
      if (value instanceof Map) {
        const entries = [...value].map(([k, v]) =>
          `${show(k, depth + 1)} => ${show(v, depth + 1)}`
        );
        return `Map(${value.size}) {${entries.join(", ")}}`;
      }
      if (value instanceof Set) {
        const items = [...value].map((v) => show(v, depth + 1));
        return `Set(${value.size}) {${items.join(", ")}}`;
      }
      const proto = Object.getPrototypeOf(value);
      const name = proto === null || proto === Object.prototype
        ? ""
        : `${proto.constructor?.name ?? "Object"} `;
      const fields = ownKeys(value as object).map((key) =>
        `${String(key)}: ${
          show((value as Record<PropertyKey, unknown>)[key], depth + 1)
        }`
      );
      return `${name}{ ${fields.join(", ")} }`;
    } finally {
      seen.delete(value);
    }
  }
}

/** Asserts that `actual` and `expected` are deeply equal. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (equal(actual, expected)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Values are not equal${suffix}\n\n    [Actual]   ${
      format(actual)
    }\n    [Expected] ${format(expected)}\n`,
  );
}

/** Asserts that `actual` and `expected` are not deeply equal. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!equal(actual, expected)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Expected actual: ${format(actual)} not to be: ${
      format(expected)
    }${suffix}`,
  );
}

/** Asserts that `actual` and `expected` are the same value (`Object.is`). */
export function assertStrictEquals<T>(
  actual: unknown,
  expected: T,
  msg?: string,
): asserts actual is T {
  if (Object.is(actual, expected)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Values are not strictly equal${suffix}\n\n    [Actual]   ${
      format(actual)
    }\n    [Expected] ${format(expected)}\n`,
  );
}

/** Asserts that `actual` is not the same value as `expected`. */
export function assertNotStrictEquals<T>(
  actual: T,
  expected: T,
  msg?: string,
): void {
  if (!Object.is(actual, expected)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Expected "actual" to not be strictly equal to: ${
      format(expected)
    }${suffix}\n`,
  );
}

/** Asserts that `actual` includes `expected`. */
export function assertStringIncludes(
  actual: string,
  expected: string,
  msg?: string,
): void {
  if (actual.includes(expected)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Expected actual: "${actual}" to contain: "${expected}"${suffix}`,
  );
}

/** Asserts that `actual` matches `expected`. */
export function assertMatch(
  actual: string,
  expected: RegExp,
  msg?: string,
): void {
  if (expected.test(actual)) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Expected actual: "${actual}" to match: "${expected}"${suffix}`,
  );
}

// deno-lint-ignore no-explicit-any
type AnyConstructor = abstract new (...args: any[]) => any;

/** Asserts that `actual` is an instance of `expectedType`. */
export function assertInstanceOf<T extends AnyConstructor>(
  actual: unknown,
  expectedType: T,
  msg = "",
): asserts actual is InstanceType<T> {
  if (actual instanceof expectedType) return;
  const suffix = msg ? `: ${msg}` : ".";
  throw new AssertionError(
    `Expected object to be an instance of "${
      expectedType.name ?? "(anonymous)"
    }" but was ${format(actual)}${suffix}`,
  );
}

function checkError(
  error: unknown,
  ErrorClass: AnyConstructor | undefined,
  msgIncludes: string | undefined,
  msg: string | undefined,
): void {
  const suffix = msg ? `: ${msg}` : ".";
  if (ErrorClass === undefined) return;
  if (!(error instanceof ErrorClass)) {
    throw new AssertionError(
      `Expected error to be instance of "${ErrorClass.name}", but was ${
        format(error)
      }${suffix}`,
    );
  }
  if (
    msgIncludes !== undefined &&
    !(error instanceof Error && error.message.includes(msgIncludes))
  ) {
    throw new AssertionError(
      `Expected error message to include ${
        JSON.stringify(msgIncludes)
      }, but got ${
        format(error instanceof Error ? error.message : error)
      }${suffix}`,
    );
  }
}

/** Asserts that `fn` throws, and returns what it threw. */
export function assertThrows(fn: () => unknown, msg?: string): unknown;
/** Asserts that `fn` throws an instance of `ErrorClass`, and returns it. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
): E;
export function assertThrows(
  fn: () => unknown,
  errorClassOrMsg?: AnyConstructor | string,
  msgIncludesOrMsg?: string,
  msg?: string,
): unknown {
  const ErrorClass = typeof errorClassOrMsg === "function"
    ? errorClassOrMsg
    : undefined;
  const message = typeof errorClassOrMsg === "string" ? errorClassOrMsg : msg;
  const msgIncludes = ErrorClass ? msgIncludesOrMsg : undefined;
  try {
    fn();
  } catch (error) {
    checkError(error, ErrorClass, msgIncludes, message);
    return error;
  }
  const suffix = message ? `: ${message}` : ".";
  throw new AssertionError(`Expected function to throw${suffix}`);
}

/** Asserts that `fn` returns a promise that rejects, and returns the reason. */
export function assertRejects(
  fn: () => PromiseLike<unknown>,
  msg?: string,
): Promise<unknown>;
/** Asserts that `fn` rejects with an instance of `ErrorClass`. */
export function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
): Promise<E>;
export async function assertRejects(
  fn: () => PromiseLike<unknown>,
  errorClassOrMsg?: AnyConstructor | string,
  msgIncludesOrMsg?: string,
  msg?: string,
): Promise<unknown> {
  const ErrorClass = typeof errorClassOrMsg === "function"
    ? errorClassOrMsg
    : undefined;
  const message = typeof errorClassOrMsg === "string" ? errorClassOrMsg : msg;
  const msgIncludes = ErrorClass ? msgIncludesOrMsg : undefined;
  const suffix = message ? `: ${message}` : ".";
  let promise: PromiseLike<unknown>;
  try {
    promise = fn();
  } catch {
    throw new AssertionError(
      `Function throws when expected to reject${suffix}`,
    );
  }
  if (
    promise === null || typeof promise !== "object" ||
    typeof promise.then !== "function"
  ) {
    throw new AssertionError(
      `Function throws when expected to reject${suffix}`,
    );
  }
  try {
    await promise;
  } catch (error) {
    checkError(error, ErrorClass, msgIncludes, message);
    return error;
  }
  throw new AssertionError(`Expected function to reject${suffix}`);
}
