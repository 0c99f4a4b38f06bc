// This module is browser compatible.

/**
 * A parser for the CoRE Link Format (RFC 6690) that a CoAP server serves at
 * `/.well-known/core`: the list of its resources with their attributes.
 * Pure functions; nothing here touches the network or the page.
 *
 * @module
 */

/** One link of a link-format document. */
export interface Link {
  /** The target as written between `<` and `>`: `/sensors/temp`. */
  readonly target: string;
  /**
   * Every parameter in order, as written: a value, or `true` for a
   * parameter without one (`obs`).
   */
  readonly params: readonly (readonly [name: string, value: string | true])[];
  /** Resource types (`rt`), split at spaces. */
  readonly resourceTypes: readonly string[];
  /** Interface descriptions (`if`), split at spaces. */
  readonly interfaces: readonly string[];
  /** Content formats (`ct`, RFC 7252 §7.2.1), split at spaces. */
  readonly contentFormats: readonly number[];
  /** Whether the resource is observable (`obs`, RFC 7641 §6). */
  readonly observable: boolean;
  /** The human-readable title, if given. */
  readonly title?: string;
  /** The estimated size in bytes (`sz`), if given. */
  readonly size?: number;
}

/** The error a malformed link-format document raises. */
export class LinkFormatError extends Error {
  /** Where in the document the fault is (a UTF-16 offset). */
  readonly offset: number;
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   * @param offset Where.
   */
  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.name = "LinkFormatError";
    this.offset = offset;
  }
}

// RFC 5988's ptoken, without the characters that end a value here.
const PTOKEN = /^[!#$&+\-.\/0-9:<=>?@A-Z\[\]^_`a-z{|}~*%'()]+/;
const PARMNAME = /^[A-Za-z0-9!#$&+\-.^_`|~]+\*?/;

/**
 * Parses a link-format document.
 *
 * Strict about structure (a missing `<`, an unterminated target or quoted
 * string, junk between links are errors naming the offset), lenient about
 * content: unknown parameters are kept in `params`, whitespace around the
 * separators is allowed, and a `ct` that is not a number is ignored.
 *
 * @param text The document, as text.
 * @returns Its links, in order.
 * @throws {LinkFormatError} If the document is not link format.
 *
 * @example Parsing what a server lists
 * ```ts
 * import { parseLinkFormat } from "./link_format.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const [time, title] = parseLinkFormat(
 *   '</time>;obs;rt="clock tick";ct=0,</s>;title="A, B"',
 * );
 * assertEquals(
 *   [time.target, time.observable, time.resourceTypes, time.contentFormats],
 *   ["/time", true, ["clock", "tick"], [0]],
 * );
 * assertEquals(title.title, "A, B");
 * ```
 */
export function parseLinkFormat(text: string): Link[] {
  if (typeof text !== "string") {
    throw new TypeError(
      `Cannot parse link format: expected a string, got ${typeof text}`,
    );
  }
  const links: Link[] = [];
  let at = skipSpace(text, 0);
  if (at === text.length) return links;
  for (;;) {
    if (text[at] !== "<") {
      throw new LinkFormatError('Expected "<" to start a link', at);
    }
    const close = text.indexOf(">", at + 1);
    if (close === -1) {
      throw new LinkFormatError("Unterminated link target", at);
    }
    const target = text.slice(at + 1, close);
    if (/[\s<"]/.test(target)) {
      throw new LinkFormatError("Invalid character in link target", at + 1);
    }
    at = close + 1;
    const params: [string, string | true][] = [];
    for (;;) {
      at = skipSpace(text, at);
      if (text[at] !== ";") break;
      at = skipSpace(text, at + 1);
      const name = PARMNAME.exec(text.slice(at))?.[0];
      if (name === undefined) {
        throw new LinkFormatError("Expected a parameter name", at);
      }
      at = skipSpace(text, at + name.length);
      if (text[at] !== "=") {
        params.push([name.toLowerCase(), true]);
        continue;
      }
      at = skipSpace(text, at + 1);
      let value: string;
      if (text[at] === '"') {
        [value, at] = quoted(text, at);
      } else {
        const token = PTOKEN.exec(text.slice(at))?.[0];
        if (token === undefined) {
          throw new LinkFormatError(`Expected a value for ${name}`, at);
        }
        value = token;
        at += token.length;
      }
      params.push([name.toLowerCase(), value]);
    }
    links.push(link(target, params));
    if (at === text.length) return links;
    if (text[at] !== ",") {
      throw new LinkFormatError('Expected "," or ";" after a link', at);
    }
    at = skipSpace(text, at + 1);
  }
}

/**
 * Where a link's target is, seen from the server that listed it: the path
 * (and query) on that server for a target on it, `undefined` for one
 * elsewhere (`<https://example.com/>`, `<coap://other/x>`).
 *
 * @param target A link's target.
 * @returns The path on the listing server, or `undefined`.
 *
 * @example
 * ```ts
 * import { localPath } from "./link_format.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(localPath("/sensors/temp"), "/sensors/temp");
 * assertEquals(localPath("temp"), "/.well-known/temp");
 * assertEquals(localPath("https://example.com/"), undefined);
 * ```
 */
export function localPath(target: string): string | undefined {
  // A scheme or an authority names another place; any other reference is
  // resolved against the document's own URI (RFC 3986 §5).
  if (/^[A-Za-z][A-Za-z0-9+.\-]*:/.test(target) || target.startsWith("//")) {
    return undefined;
  }
  const resolved = new URL(target, "coap://server/.well-known/core");
  return resolved.pathname + resolved.search;
}

function skipSpace(text: string, at: number): number {
  while (at < text.length && /[ \t\r\n]/.test(text[at])) at++;
  return at;
}

function quoted(text: string, start: number): [string, number] {
  let value = "";
  let at = start + 1;
  while (at < text.length) {
    const char = text[at];
    if (char === '"') return [value, at + 1];
    if (char === "\\") {
      if (at + 1 === text.length) break;
      value += text[at + 1];
      at += 2;
    } else {
      value += char;
      at++;
    }
  }
  throw new LinkFormatError("Unterminated quoted string", start);
}

function link(target: string, params: [string, string | true][]): Link {
  const first = (name: string) => params.find(([n]) => n === name)?.[1];
  const words = (name: string) =>
    params.flatMap(([n, v]) =>
      n === name && v !== true ? v.split(/\s+/).filter(Boolean) : []
    );
  const title = first("title");
  const size = first("sz");
  return {
    target,
    params,
    resourceTypes: words("rt"),
    interfaces: words("if"),
    contentFormats: words("ct").filter((w) => /^\d{1,5}$/.test(w)).map(Number)
      .filter((n) => n <= 65535),
    observable: params.some(([n]) => n === "obs"),
    ...(typeof title === "string" ? { title } : {}),
    ...(typeof size === "string" && /^\d+$/.test(size)
      ? { size: Number(size) }
      : {}),
  };
}
