// This module is browser compatible.

/**
 * How the explorer shows CoAP to a person: codes with their names, options
 * with their meaning, payloads as text, pretty JSON, CBOR diagnostic
 * notation or hex. Pure functions; the page puts their strings into the
 * document as text, never as markup.
 *
 * @module
 */

import { cborDiagnostic } from "./cbor.ts";
import {
  type CoapOption,
  decodeBlock,
  hex,
  Option,
  readUint,
} from "../message.ts";

/** Content formats a person is likely to meet, by number (IANA registry). */
export const CONTENT_FORMATS: Readonly<Record<number, string>> = {
  0: "text/plain; charset=utf-8",
  40: "application/link-format",
  41: "application/xml",
  42: "application/octet-stream",
  47: "application/exi",
  50: "application/json",
  51: "application/json-patch+json",
  52: "application/merge-patch+json",
  60: "application/cbor",
  61: "application/cwt",
  110: "application/senml+json",
  112: "application/senml+cbor",
};

/**
 * Names a content format: `"50 (application/json)"`, or the number alone
 * for one not in {@linkcode CONTENT_FORMATS}.
 *
 * @param format A content format number.
 * @returns A label.
 *
 * @example
 * ```ts
 * import { contentFormatName } from "./render.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(contentFormatName(50), "50 (application/json)");
 * assertEquals(contentFormatName(9999), "9999");
 * ```
 */
export function contentFormatName(format: number): string {
  const name = CONTENT_FORMATS[format];
  return name === undefined ? String(format) : `${format} (${name})`;
}

const CODE_NAMES: Readonly<Record<string, string>> = {
  "2.01": "Created",
  "2.02": "Deleted",
  "2.03": "Valid",
  "2.04": "Changed",
  "2.05": "Content",
  "2.31": "Continue",
  "4.00": "Bad Request",
  "4.01": "Unauthorized",
  "4.02": "Bad Option",
  "4.03": "Forbidden",
  "4.04": "Not Found",
  "4.05": "Method Not Allowed",
  "4.06": "Not Acceptable",
  "4.08": "Request Entity Incomplete",
  "4.09": "Conflict",
  "4.12": "Precondition Failed",
  "4.13": "Request Entity Too Large",
  "4.15": "Unsupported Content-Format",
  "4.22": "Unprocessable Entity",
  "4.29": "Too Many Requests",
  "5.00": "Internal Server Error",
  "5.01": "Not Implemented",
  "5.02": "Bad Gateway",
  "5.03": "Service Unavailable",
  "5.04": "Gateway Timeout",
  "5.05": "Proxying Not Supported",
  "5.08": "Hop Limit Reached",
};

/**
 * Names a response code (RFC 7252 §12.1.2 and later registrations).
 *
 * @param code A code as CoAP writes it.
 * @returns The code and its name: `"4.04 Not Found"`; the code alone if it
 * has no registered name.
 *
 * @example
 * ```ts
 * import { codeName } from "./render.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(codeName("5.00"), "5.00 Internal Server Error");
 * ```
 */
export function codeName(code: string): string {
  const name = CODE_NAMES[code];
  return name === undefined ? code : `${code} ${name}`;
}

/**
 * Whether a response code says the request failed: a client error (4.xx)
 * or a server error (5.xx).
 *
 * @param code A code as CoAP writes it.
 * @returns `true` for 4.xx and 5.xx.
 *
 * @example
 * ```ts
 * import { isError } from "./render.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals([isError("2.05"), isError("4.04"), isError("5.00")], [false, true, true]);
 * ```
 */
export function isError(code: string): boolean {
  return code.startsWith("4.") || code.startsWith("5.");
}

const OPTION_NAMES: Readonly<Record<number, string>> = {
  [Option.IF_MATCH]: "If-Match",
  [Option.URI_HOST]: "Uri-Host",
  [Option.ETAG]: "ETag",
  [Option.IF_NONE_MATCH]: "If-None-Match",
  [Option.OBSERVE]: "Observe",
  [Option.URI_PORT]: "Uri-Port",
  [Option.LOCATION_PATH]: "Location-Path",
  [Option.URI_PATH]: "Uri-Path",
  [Option.CONTENT_FORMAT]: "Content-Format",
  [Option.MAX_AGE]: "Max-Age",
  [Option.URI_QUERY]: "Uri-Query",
  [Option.ACCEPT]: "Accept",
  [Option.LOCATION_QUERY]: "Location-Query",
  [Option.BLOCK2]: "Block2",
  [Option.BLOCK1]: "Block1",
  [Option.SIZE2]: "Size2",
  [Option.PROXY_URI]: "Proxy-Uri",
  [Option.PROXY_SCHEME]: "Proxy-Scheme",
  [Option.SIZE1]: "Size1",
  [Option.HOP_LIMIT]: "Hop-Limit",
  [Option.ECHO]: "Echo",
  [Option.NO_RESPONSE]: "No-Response",
  [Option.REQUEST_TAG]: "Request-Tag",
};

/**
 * Describes options as a person reads them: name and value, in order.
 *
 * @param options A message's options.
 * @returns One `[name, value]` row per option.
 *
 * @example
 * ```ts
 * import { describeOptions } from "./render.ts";
 * import { Option, uint } from "../message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(
 *   describeOptions([
 *     { number: Option.OBSERVE, value: uint(12) },
 *     { number: Option.CONTENT_FORMAT, value: uint(0) },
 *   ]),
 *   [["Observe", "12"], ["Content-Format", "0 (text/plain; charset=utf-8)"]],
 * );
 * ```
 */
export function describeOptions(
  options: readonly CoapOption[],
): [name: string, value: string][] {
  return options.map(({ number, value }) => [
    OPTION_NAMES[number] ?? `Option ${number}`,
    optionValue(number, value),
  ]);
}

function optionValue(number: number, value: Uint8Array): string {
  try {
    switch (number) {
      case Option.CONTENT_FORMAT:
      case Option.ACCEPT:
        return contentFormatName(readUint(value));
      case Option.OBSERVE:
      case Option.HOP_LIMIT:
      case Option.URI_PORT:
      case Option.SIZE1:
      case Option.SIZE2:
        return String(readUint(value));
      case Option.MAX_AGE:
        return `${readUint(value)} s`;
      case Option.BLOCK1:
      case Option.BLOCK2: {
        const block = decodeBlock(value);
        const size = block.szx === 7
          ? "BERT: 1024-byte units" // RFC 8323 §6
          : `${16 << block.szx} bytes each`;
        return `block ${block.num}${
          block.more ? ", more follow" : ""
        }, ${size}`;
      }
      case Option.URI_HOST:
      case Option.URI_PATH:
      case Option.URI_QUERY:
      case Option.LOCATION_PATH:
      case Option.LOCATION_QUERY:
      case Option.PROXY_URI:
      case Option.PROXY_SCHEME:
        return JSON.stringify(new TextDecoder().decode(value));
    }
  } catch {
    // A malformed value is shown as bytes.
  }
  return value.length === 0 ? "(empty)" : `0x${hex(value)}`;
}

/** A payload as the page shows it. */
export interface RenderedPayload {
  /** How it was read: `empty`, `text`, `json`, `cbor` or `hex`. */
  readonly kind: "empty" | "text" | "json" | "cbor" | "hex";
  /** What to show. */
  readonly text: string;
  /** Why a payload was shown other than its content format says, if so. */
  readonly note?: string;
}

const JSON_FORMATS = new Set([50, 51, 52, 110]);
const CBOR_FORMATS = new Set([60, 61, 112]);
const TEXT_FORMATS = new Set([0, 40, 41]);

/**
 * Renders a payload for a person by its content format: JSON
 * pretty-printed, CBOR in diagnostic notation, text as text, anything else
 * (or anything that is not what its format says) as hex. Without a content
 * format, valid UTF-8 text without control characters is shown as text.
 *
 * @param payload The payload.
 * @param contentFormat Its content format, if given.
 * @returns What to show, and how it was read.
 *
 * @example
 * ```ts
 * import { renderPayload } from "./render.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const json = new TextEncoder().encode('{"t":21.5}');
 * assertEquals(renderPayload(json, 50), { kind: "json", text: '{\n  "t": 21.5\n}' });
 * assertEquals(renderPayload(new Uint8Array([0, 255]), 42), { kind: "hex", text: "00 ff" });
 * ```
 */
export function renderPayload(
  payload: Uint8Array,
  contentFormat?: number,
): RenderedPayload {
  if (payload.length === 0) return { kind: "empty", text: "" };
  const text = utf8(payload);
  if (contentFormat !== undefined && JSON_FORMATS.has(contentFormat)) {
    if (text !== undefined) {
      try {
        return {
          kind: "json",
          text: JSON.stringify(JSON.parse(text), null, 2),
        };
      } catch (error) {
        return {
          kind: "text",
          text,
          note: `Not valid JSON (${(error as Error).message})`,
        };
      }
    }
    return hexPayload(payload, "Not valid UTF-8, so not JSON");
  }
  if (contentFormat !== undefined && CBOR_FORMATS.has(contentFormat)) {
    try {
      return { kind: "cbor", text: cborDiagnostic(payload) };
    } catch (error) {
      return hexPayload(
        payload,
        `Not valid CBOR (${(error as Error).message})`,
      );
    }
  }
  if (contentFormat === undefined || TEXT_FORMATS.has(contentFormat)) {
    if (
      text !== undefined && (contentFormat !== undefined || printable(text))
    ) {
      return { kind: "text", text };
    }
    return hexPayload(
      payload,
      contentFormat === undefined ? undefined : "Not valid UTF-8",
    );
  }
  return hexPayload(payload);
}

function hexPayload(payload: Uint8Array, note?: string): RenderedPayload {
  const pairs = hex(payload).match(/../g)!;
  const lines: string[] = [];
  for (let i = 0; i < pairs.length; i += 16) {
    lines.push(pairs.slice(i, i + 16).join(" "));
  }
  const text = lines.join("\n");
  return note === undefined
    ? { kind: "hex", text }
    : { kind: "hex", text, note };
}

function utf8(payload: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return undefined;
  }
}

function printable(text: string): boolean {
  // Tabs and line breaks are text; other control characters are not.
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) {
      return false;
    }
  }
  return true;
}

/**
 * The number a notification's payload states, if it is one: text such as
 * `"42"` or `"-3.5e2"`, JSON or CBOR would need a schema, so only plain
 * numbers count.
 *
 * @param payload The payload.
 * @returns The number, or `undefined`.
 *
 * @example
 * ```ts
 * import { numericValue } from "./render.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const enc = (s: string) => new TextEncoder().encode(s);
 * assertEquals([numericValue(enc(" 17\n")), numericValue(enc("17 °C"))], [17, undefined]);
 * ```
 */
export function numericValue(payload: Uint8Array): number | undefined {
  if (payload.length === 0 || payload.length > 64) return undefined;
  const text = utf8(payload)?.trim();
  if (
    text === undefined || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)
  ) {
    return undefined;
  }
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}
