// This module is browser compatible.

/**
 * Requests and responses as users of the stack see them, and their
 * conversion to and from {@linkcode CoapMessage}s: paths and queries become
 * Uri-Path and Uri-Query options, content formats and observe numbers become
 * integers, and options are checked against RFC 7252's table (§5.10) so an
 * unknown critical option is found before anything acts on the message.
 *
 * @module
 */

import { pathOf, ROOT_PATH } from "./shared_paths.ts";
import {
  type Block,
  type CoapFormatError,
  type CoapMessage,
  type CoapOption,
  Code,
  codeKind,
  codeToString,
  decodeBlock,
  getOption,
  isCritical,
  keyToken,
  type Method,
  METHODS,
  Option,
  type OutgoingMessage,
  parseCode,
  readUint,
  strictText,
  tokenKey,
  uint,
  utf8,
} from "./message.ts";

/** A request as a client makes it. */
export interface CoapRequest {
  /** The method. */
  readonly method: Method;
  /** The path, `/` for the root; segments are percent-decoded. */
  readonly path: string;
  /** Query parameters: `"ms=50"`, or several (an array, or `&`-joined). */
  readonly query?: string | readonly string[];
  /** The payload; text is sent as UTF-8. */
  readonly payload?: Uint8Array | string;
  /** The payload's content format (0 is text/plain). */
  readonly contentFormat?: number;
  /** The content format wanted in the response. */
  readonly accept?: number;
  /** Whether to observe the resource (RFC 7641): GET with Observe 0. */
  readonly observe?: boolean;
  /**
   * Ask the server, a forward proxy, for this absolute URI instead
   * (`coap://device:5683/temp`): the request carries it as Proxy-Uri, and
   * `path` must then be `/` and `query` empty.
   */
  readonly proxyUri?: string;
  /**
   * Further options, sent as given: If-Match, ETag, If-None-Match
   * (conditional requests, RFC 7252 §5.10.8), No-Response (RFC 7967),
   * Uri-Host, or any other. Not those the request's fields make (Uri-Path,
   * Uri-Query, Observe, Content-Format, Accept, Proxy-Uri) nor the
   * block-wise ones the client sets itself (Block1, Block2, Size1).
   */
  readonly options?: readonly CoapOption[];
}

/** Options a request's own fields or the client make; not in `options`. */
const MADE_BY_THE_CLIENT: ReadonlySet<number> = new Set([
  Option.URI_PATH,
  Option.URI_QUERY,
  Option.OBSERVE,
  Option.CONTENT_FORMAT,
  Option.ACCEPT,
  Option.PROXY_URI,
  Option.BLOCK1,
  Option.BLOCK2,
  Option.SIZE1,
]);

/** A response as a client receives it, or a server's resource produces it. */
export interface CoapResponse {
  /** The code as CoAP writes it: `"2.05"`, `"4.04"`. */
  readonly code: string;
  /** The payload (reassembled, when it came block-wise). */
  readonly payload: Uint8Array;
  /** The payload's content format, if given. */
  readonly contentFormat?: number;
  /** The Observe number of a notification. */
  readonly observe?: number;
  /** Max-Age in seconds, if given. */
  readonly maxAge?: number;
  /** Every option of the (first block of the) response. */
  readonly options: readonly CoapOption[];
}

/** What a resource answers: a code and optional payload and options. */
export interface ResponseInit {
  /** The code; `"2.05"` when left out. */
  readonly code?: string;
  /** The payload; text is sent as UTF-8. */
  readonly payload?: Uint8Array | string;
  /** The payload's content format. */
  readonly contentFormat?: number;
  /** Max-Age in seconds. */
  readonly maxAge?: number;
  /** Further options. */
  readonly options?: readonly CoapOption[];
}

/** A request as a server receives it. */
export interface IncomingRequest {
  /** The method name, or the code (`"0.08"`) for a method this stack lacks. */
  readonly method: Method | string;
  /** The path: `/` and the percent-encoded Uri-Path segments. */
  readonly path: string;
  /** The decoded Uri-Path segments. */
  readonly segments: readonly string[];
  /** The Uri-Query values. */
  readonly query: readonly string[];
  /** The payload. */
  readonly payload: Uint8Array;
  /** The payload's content format, if given. */
  readonly contentFormat?: number;
  /** The Accept option, if given. */
  readonly accept?: number;
  /** The Observe option: 0 registers, 1 deregisters. */
  readonly observe?: number;
  /** The Block2 option, if given. */
  readonly block2?: Block;
  /** The token, for logs. */
  readonly token: Uint8Array;
  /**
   * The absolute URI of the resource a forward proxy is asked for, from
   * Proxy-Uri, or from Proxy-Scheme with Uri-Host, Uri-Port, Uri-Path and
   * Uri-Query (RFC 7252 §5.7.2, §6.5); only on a server with a proxy.
   */
  readonly proxyUri?: string;
  /** Which option named the target: Proxy-Uri, or Proxy-Scheme. */
  readonly proxyVia?: "Proxy-Uri" | "Proxy-Scheme";
  /**
   * For a forward proxy: the request's end-to-end options that its other
   * fields do not carry (If-Match, If-None-Match, ETag, and any unknown
   * elective one that is safe to forward, RFC 7252 §5.7.1), to send on.
   */
  readonly forwardOptions?: readonly CoapOption[];
  /** For a forward proxy: the Hop-Limit option (RFC 8768), if given. */
  readonly hopLimit?: number;
}

/**
 * Options a forward proxy does not pass on as they are: those the
 * request's fields carry or the proxy makes again (the target, Observe,
 * block-wise, content formats, Hop-Limit), and hop-by-hop ones (Echo,
 * Request-Tag, No-Response, which the proxy's own server honours).
 */
const NOT_FORWARDED: ReadonlySet<number> = new Set([
  Option.URI_HOST,
  Option.OBSERVE,
  Option.URI_PORT,
  Option.URI_PATH,
  Option.CONTENT_FORMAT,
  Option.URI_QUERY,
  Option.HOP_LIMIT,
  Option.ACCEPT,
  Option.BLOCK2,
  Option.BLOCK1,
  Option.SIZE2,
  Option.PROXY_URI,
  Option.PROXY_SCHEME,
  Option.SIZE1,
  Option.ECHO,
  Option.NO_RESPONSE,
  Option.REQUEST_TAG,
]);

/**
 * The options a proxy sends on: the known ones it does not make itself,
 * and unknown elective ones that are safe to forward (RFC 7252 §5.7.1;
 * unknown critical ones were refused already).
 */
function forwarded(
  known: readonly CoapOption[],
  all: readonly CoapOption[],
): CoapOption[] {
  const out = known.filter((option) => !NOT_FORWARDED.has(option.number));
  for (const option of all) {
    if (!FORMATS.has(option.number) && safeToForward(option.number)) {
      out.push(option);
    }
  }
  return out;
}

/** Whether an option may pass a proxy that does not know it (§5.4.2). */
function safeToForward(number: number): boolean {
  return (number & 2) === 0;
}

/** Method names by code. */
const METHOD_NAMES = Object.fromEntries(
  Object.entries(METHODS).map(([name, code]) => [code, name]),
) as Readonly<Record<number, Method>>;

/** A request that a server must reject: `code` says how. */
export class RequestError extends Error {
  /** The response code to answer with, such as `"4.02"`. */
  readonly code: string;
  /**
   * Creates the error.
   *
   * @param code The response code.
   * @param message The diagnostic, sent as the payload.
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "RequestError";
    this.code = code;
  }

  /**
   * The error response (for {@linkcode errorToMessage}).
   *
   * @returns The code and the diagnostic payload.
   */
  toMessage(): ResponseInit {
    return { code: this.code, payload: this.message };
  }
}

interface Format {
  readonly min: number;
  readonly max: number;
  readonly repeatable: boolean;
}

/**
 * RFC 7252 §5.10, RFC 7641 §2, RFC 7959 §2.1, RFC 7967 §2, RFC 8768 §3,
 * RFC 9175 §3.2: length bounds, repeatable.
 */
const FORMATS: ReadonlyMap<number, Format> = new Map([
  [Option.IF_MATCH, { min: 0, max: 8, repeatable: true }],
  [Option.URI_HOST, { min: 1, max: 255, repeatable: false }],
  [Option.ETAG, { min: 1, max: 8, repeatable: true }],
  [Option.IF_NONE_MATCH, { min: 0, max: 0, repeatable: false }],
  [Option.OBSERVE, { min: 0, max: 3, repeatable: false }],
  [Option.URI_PORT, { min: 0, max: 2, repeatable: false }],
  [Option.LOCATION_PATH, { min: 0, max: 255, repeatable: true }],
  [Option.URI_PATH, { min: 0, max: 255, repeatable: true }],
  [Option.CONTENT_FORMAT, { min: 0, max: 2, repeatable: false }],
  [Option.MAX_AGE, { min: 0, max: 4, repeatable: false }],
  [Option.URI_QUERY, { min: 0, max: 255, repeatable: true }],
  [Option.ACCEPT, { min: 0, max: 2, repeatable: false }],
  [Option.LOCATION_QUERY, { min: 0, max: 255, repeatable: true }],
  [Option.HOP_LIMIT, { min: 1, max: 1, repeatable: false }],
  [Option.BLOCK2, { min: 0, max: 3, repeatable: false }],
  [Option.BLOCK1, { min: 0, max: 3, repeatable: false }],
  [Option.SIZE2, { min: 0, max: 4, repeatable: false }],
  [Option.SIZE1, { min: 0, max: 4, repeatable: false }],
  [Option.PROXY_URI, { min: 1, max: 1034, repeatable: false }],
  [Option.PROXY_SCHEME, { min: 1, max: 255, repeatable: false }],
  [Option.OSCORE, { min: 0, max: 255, repeatable: false }],
  [Option.NO_RESPONSE, { min: 0, max: 1, repeatable: false }],
  [Option.REQUEST_TAG, { min: 0, max: 8, repeatable: true }],
]);

/**
 * Critical options a server of this stack does not act on, although RFC
 * 7252 knows them: answered 4.02 like unknown ones (proxying).
 */
const UNSUPPORTED_IN_REQUESTS: ReadonlySet<number> = new Set([
  Option.PROXY_URI,
  Option.PROXY_SCHEME,
  // A server with OSCORE contexts unprotects before it reads a request;
  // one without refuses a protected request (RFC 8613 §8.2).
  Option.OSCORE,
]);

/**
 * Critical options a plain response may not carry: an OSCORE response is
 * for whoever protected the request (a proxy passes it on: `forwarded`).
 */
const UNSUPPORTED_IN_RESPONSES: ReadonlySet<number> = new Set([
  Option.OSCORE,
]);

/** The same, for a server that forwards requests (it has a proxy). */
const UNSUPPORTED_IN_PROXY_REQUESTS: ReadonlySet<number> = new Set();

/**
 * Whether a request names another server with Proxy-Uri or Proxy-Scheme
 * (RFC 7252 §5.7.2): a request for a forward proxy.
 *
 * @param message The request.
 * @returns Whether it does.
 */
export function isProxyRequest(message: CoapMessage): boolean {
  return getOption(message, Option.PROXY_URI) !== undefined ||
    getOption(message, Option.PROXY_SCHEME) !== undefined;
}

/**
 * Checks a message's options against the table of known options: returns
 * the options to use, with elective options that are unknown, malformed or
 * wrongly repeated left out (RFC 7252 §5.4.1, §5.4.3, §5.4.5).
 *
 * @param message The message.
 * @param what `"request"` or `"response"`, for the error.
 * @param unsupported Critical options to reject although known.
 * @returns The options that count.
 * @throws {RequestError} 4.02, if a critical option is unknown, unsupported,
 * malformed or repeated where it may not be.
 */
export function checkOptions(
  message: CoapMessage,
  what: string,
  unsupported: ReadonlySet<number> = NONE_UNSUPPORTED,
): CoapOption[] {
  const kept: CoapOption[] = [];
  // Only a message with two options or more can repeat one.
  const seen = message.options.length > 1 ? new Set<number>() : undefined;
  for (const option of message.options) {
    const format = FORMATS.get(option.number);
    let problem: string | undefined;
    if (format === undefined) {
      problem = `unknown option ${option.number}`;
    } else if (unsupported.has(option.number)) {
      // Known, but not acted on here: say which, and why.
      problem = option.number === Option.OSCORE && what === "response"
        ? `unknown option ${option.number}`
        : option.number === Option.OSCORE
        ? `unknown option ${option.number} (OSCORE: this server has no security context)`
        : `unknown option ${option.number} (${
          option.number === Option.PROXY_URI ? "Proxy-Uri" : "Proxy-Scheme"
        }: this server is not a forward proxy)`;
    } else if (
      option.value.length < format.min || option.value.length > format.max
    ) {
      problem =
        `option ${option.number} has ${option.value.length} bytes (${format.min}-${format.max} allowed)`;
    } else if (!format.repeatable && seen?.has(option.number)) {
      problem = `option ${option.number} is repeated`;
    }
    seen?.add(option.number);
    if (problem === undefined) kept.push(option);
    else if (isCritical(option.number)) {
      throw new RequestError(
        "4.02",
        `Bad Option: the ${what} has a critical ${problem}`,
      );
    }
  }
  return kept;
}

const NO_PAYLOAD = new Uint8Array(0);
const NONE_UNSUPPORTED: ReadonlySet<number> = new Set();

function bytesOf(payload: Uint8Array | string | undefined): Uint8Array {
  const checked = payloadOf(payload);
  return typeof checked === "string" ? utf8(checked) : checked;
}

/** A payload as a message to encode carries it: text stays text. */
function payloadOf(
  payload: Uint8Array | string | undefined,
): Uint8Array | string {
  if (payload === undefined) return NO_PAYLOAD;
  if (typeof payload === "string" || payload instanceof Uint8Array) {
    return payload;
  }
  throw new TypeError(
    `Cannot send a payload of type ${typeof payload}: use a Uint8Array or a string`,
  );
}

function uintOption(
  number: number,
  value: number | undefined,
  name: string,
  max: number,
): CoapOption[] {
  return value === undefined ? [] : [oneUintOption(number, value, name, max)];
}

function oneUintOption(
  number: number,
  value: number,
  name: string,
  max: number,
): CoapOption {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(
      `Cannot send ${name} ${value}: it must be an integer from 0 to ${max}`,
    );
  }
  return { number, value: shared(value) };
}

/** `uint(n)`, from {@linkcode SMALL} when it is there. */
function shared(n: number): Uint8Array {
  return n < SMALL.length ? SMALL[n] : uint(n);
}

/**
 * The encodings of 0 to 255, shared by every response that sends one of
 * them (a content format, a small Max-Age, an early Observe number): option
 * values the stack builds are only ever read, to be encoded. Never hand one
 * to code that may write to it.
 */
const SMALL: readonly Uint8Array[] = Array.from(
  { length: 256 },
  (_, n) => uint(n),
);

/** Response codes by their text, parsed once each. */
const CODES = new Map<string, number>();

/** The code byte of a response's `code`, checked. */
function responseCode(text: string): number {
  let code = CODES.get(text);
  if (code !== undefined) return code;
  try {
    code = parseCode(text);
  } catch (error) {
    throw new TypeError((error as Error).message);
  }
  if (codeKind(code) !== "response") {
    throw new TypeError(
      `Cannot send a response with code ${text}: not a response code`,
    );
  }
  // At most the 256 code bytes' texts: the map stays small.
  CODES.set(text, code);
  return code;
}

/**
 * Splits a path into percent-decoded segments: `/a/b%20c` is `["a", "b c"]`,
 * `/` and `""` are `[]`.
 *
 * @param path The path.
 * @returns The segments.
 * @throws {TypeError} If the path does not start with `/`, or a segment's
 * percent-encoding is invalid.
 */
export function pathSegments(path: string): string[] {
  if (typeof path !== "string" || (path !== "" && !path.startsWith("/"))) {
    throw new TypeError(
      `Cannot send a request: path must be a string starting with "/", got ${
        JSON.stringify(path)
      }`,
    );
  }
  if (path === "" || path === "/") return [];
  return path.slice(1).split("/").map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      throw new TypeError(
        `Cannot send a request: invalid percent-encoding in path segment ${
          JSON.stringify(segment)
        }`,
      );
    }
  });
}

/**
 * Builds the message for a request.
 *
 * @param request The request.
 * @param token The token to send it with.
 * @param extra More options (Block2 of a follow-up request, Observe 1).
 * @returns The message.
 * @throws {TypeError} If the method, path, query or payload is not of the
 * documented form.
 * @throws {RangeError} If a content format or accept is out of range.
 *
 * @example
 * ```ts
 * import { requestMessage } from "./exchange.ts";
 * import { Code } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const message = requestMessage(
 *   { method: "GET", path: "/slow", query: "ms=5" },
 *   new Uint8Array([1]),
 * );
 * assertEquals(message.code, Code.GET);
 * assertEquals(message.options.map((o) => o.number), [11, 15]);
 * ```
 */
export function requestMessage(
  request: CoapRequest,
  token: Uint8Array,
  extra: readonly CoapOption[] = [],
): CoapMessage {
  if (typeof request !== "object" || request === null) {
    throw new TypeError("Cannot send a request: it must be an object");
  }
  const code = Object.hasOwn(METHODS, request.method)
    ? METHODS[request.method]
    : undefined;
  if (code === undefined) {
    throw new TypeError(
      `Cannot send a request: unknown method ${
        JSON.stringify(request.method)
      } (use one of ${Object.keys(METHODS).join(", ")})`,
    );
  }
  const options: CoapOption[] = [];
  for (const segment of pathSegments(request.path)) {
    options.push({ number: Option.URI_PATH, value: utf8(segment) });
  }
  for (const item of querySegments(request.query)) {
    options.push({ number: Option.URI_QUERY, value: utf8(item) });
  }
  if (request.proxyUri !== undefined) {
    if (typeof request.proxyUri !== "string" || options.length > 0) {
      throw new TypeError(
        "Cannot send a request: proxyUri must be a string, with path / and no query (the URI names them)",
      );
    }
    const value = utf8(request.proxyUri);
    if (value.length < 1 || value.length > 1034) {
      throw new TypeError(
        `Cannot send a request: proxyUri has ${value.length} bytes (1 to 1034 allowed)`,
      );
    }
    options.push({ number: Option.PROXY_URI, value });
  }
  if (request.observe !== undefined && typeof request.observe !== "boolean") {
    throw new TypeError("Cannot send a request: observe must be a boolean");
  }
  if (request.observe) {
    options.push({ number: Option.OBSERVE, value: uint(0) });
  }
  options.push(
    ...uintOption(
      Option.CONTENT_FORMAT,
      request.contentFormat,
      "content format",
      0xffff,
    ),
    ...uintOption(Option.ACCEPT, request.accept, "accept", 0xffff),
    ...extraOptions(request.options),
    ...extra,
  );
  for (const option of options) {
    if (option.number !== Option.OBSERVE && option.value.length > 255) {
      throw new RangeError(
        `Cannot send a request: option ${option.number} is longer than 255 bytes`,
      );
    }
  }
  return { code, token, options, payload: bytesOf(request.payload) };
}

function extraOptions(options: CoapRequest["options"]): readonly CoapOption[] {
  if (options === undefined) return [];
  if (!Array.isArray(options)) {
    throw new TypeError(
      "Cannot send a request: options must be an array of { number, value }",
    );
  }
  for (const option of options as readonly CoapOption[]) {
    const number = (option as CoapOption | null)?.number as number;
    if (
      !Number.isInteger(number) || number < 0 || number > 0xffff ||
      !((option as CoapOption).value instanceof Uint8Array)
    ) {
      throw new TypeError(
        "Cannot send a request: each of options must be { number: an integer from 0 to 65535, value: a Uint8Array }",
      );
    }
    if (MADE_BY_THE_CLIENT.has(number)) {
      throw new TypeError(
        `Cannot send a request: option ${number} is made from the request's fields or by the client, not given in options`,
      );
    }
  }
  return options;
}

function querySegments(query: CoapRequest["query"]): readonly string[] {
  if (query === undefined) return [];
  if (typeof query === "string") return query === "" ? [] : query.split("&");
  if (Array.isArray(query) && query.every((q) => typeof q === "string")) {
    return query;
  }
  throw new TypeError(
    "Cannot send a request: query must be a string or an array of strings",
  );
}

/**
 * Reads a response message into a {@linkcode CoapResponse}.
 *
 * @param message A message whose code is a response code.
 * @param forwarded Whether its request was protected with OSCORE by someone
 * else (a proxy forwards it): the OSCORE option is passed on, not refused.
 * @returns The response.
 * @throws {RequestError} If it has an unknown critical option or a
 * malformed one.
 *
 * @example
 * ```ts
 * import { readResponse } from "./exchange.ts";
 * import { Code, utf8 } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const response = readResponse({
 *   code: Code.CONTENT,
 *   token: new Uint8Array(0),
 *   options: [{ number: 12, value: new Uint8Array(0) }],
 *   payload: utf8("hi"),
 * });
 * assertEquals([response.code, response.contentFormat], ["2.05", 0]);
 * ```
 */
export function readResponse(
  message: CoapMessage,
  forwarded = false,
): CoapResponse {
  const options = checkOptions(
    message,
    "response",
    forwarded ? NONE_UNSUPPORTED : UNSUPPORTED_IN_RESPONSES,
  );
  const known = { options };
  const contentFormat = optionalUint(known, Option.CONTENT_FORMAT);
  const observe = optionalUint(known, Option.OBSERVE);
  const maxAge = optionalUint(known, Option.MAX_AGE);
  return {
    code: codeToString(message.code),
    payload: message.payload,
    ...(contentFormat === undefined ? {} : { contentFormat }),
    ...(observe === undefined ? {} : { observe }),
    ...(maxAge === undefined ? {} : { maxAge }),
    options: message.options,
  };
}

function optionalUint(
  message: { readonly options: readonly CoapOption[] },
  number: number,
): number | undefined {
  const value = getOption(message, number);
  return value === undefined ? undefined : readUint(value);
}

/**
 * Reads a request message into an {@linkcode IncomingRequest}.
 *
 * @param message A message whose code is a request code.
 * @returns The request.
 * @throws {RequestError} 4.02 for an unknown, unsupported or malformed
 * critical option; 4.00 for a Uri-Path or Uri-Query that is not UTF-8.
 *
 * @example
 * ```ts
 * import { readRequest } from "./exchange.ts";
 * import { Code, utf8 } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const request = readRequest({
 *   code: Code.GET,
 *   token: new Uint8Array([7]),
 *   options: [{ number: 11, value: utf8("a b") }],
 *   payload: new Uint8Array(0),
 * });
 * assertEquals([request.method, request.path], ["GET", "/a%20b"]);
 * ```
 */
export function readRequest(
  message: CoapMessage,
  proxying = false,
): IncomingRequest {
  const options = checkOptions(
    message,
    "request",
    proxying ? UNSUPPORTED_IN_PROXY_REQUESTS : UNSUPPORTED_IN_REQUESTS,
  );
  const known = { options };
  // Made only for a request that has them (most have no query).
  let segments: string[] | undefined;
  let query: string[] | undefined;
  try {
    for (const option of options) {
      if (option.number === Option.URI_PATH) {
        (segments ??= []).push(strictText(option.value, "Uri-Path"));
      } else if (option.number === Option.URI_QUERY) {
        (query ??= []).push(strictText(option.value, "Uri-Query"));
      }
    }
  } catch (error) {
    throw new RequestError("4.00", (error as CoapFormatError).message);
  }
  const method = METHOD_NAMES[message.code] ?? codeToString(message.code);
  const block = getOption(known, Option.BLOCK2);
  // Nothing kept that an observation would hold on to for its whole life
  // without use: not the decoded options, and no view of the frame (a typed
  // array, and the frame's buffer with it) for an empty payload. The token's
  // view stays until forObservation() drops it.
  const path = segments === undefined ? ROOT_PATH : pathOf(segments);
  return new Request(
    method,
    path.path,
    path.segments,
    // An exact copy: a pushed-to array keeps room for more.
    query === undefined ? NONE : query.slice(),
    message.payload.length === 0 ? EMPTY : message.payload,
    optionalUint(known, Option.CONTENT_FORMAT),
    optionalUint(known, Option.ACCEPT),
    optionalUint(known, Option.OBSERVE),
    block === undefined ? undefined : decodeBlock(block),
    tokenKey(message.token),
    message.token,
    proxying ? proxyTarget(known, segments, query) : undefined,
    proxying
      ? getOption(known, Option.PROXY_URI) === undefined
        ? "Proxy-Scheme"
        : "Proxy-Uri"
      : undefined,
    proxying ? forwarded(options, message.options) : undefined,
    proxying ? optionalUint(known, Option.HOP_LIMIT) : undefined,
  );
}

/**
 * The URI a proxy request names (RFC 7252 §6.5): Proxy-Uri as it is, or one
 * made from Proxy-Scheme, Uri-Host, Uri-Port, Uri-Path and Uri-Query.
 */
function proxyTarget(
  known: { options: readonly CoapOption[] },
  segments: string[] | undefined,
  query: string[] | undefined,
): string | undefined {
  try {
    const uri = getOption(known, Option.PROXY_URI);
    if (uri !== undefined) return strictText(uri, "Proxy-Uri");
    const scheme = getOption(known, Option.PROXY_SCHEME);
    if (scheme === undefined) return undefined;
    const host = getOption(known, Option.URI_HOST);
    if (host === undefined) {
      throw new RequestError(
        "4.00",
        "Bad Request: Proxy-Scheme needs Uri-Host to name the server",
      );
    }
    const port = optionalUint(known, Option.URI_PORT);
    const name = strictText(host, "Uri-Host");
    return `${strictText(scheme, "Proxy-Scheme")}://${
      name.includes(":") ? `[${name}]` : name
    }${port === undefined ? "" : `:${port}`}/${
      (segments ?? []).map(encodeURIComponent).join("/")
    }${
      query === undefined
        ? ""
        : `?${
          query.map((item) => encodeURIComponent(item).replace(/%3D/g, "="))
            .join("&")
        }`
    }`;
  } catch (error) {
    if (error instanceof RequestError) throw error;
    throw new RequestError("4.00", (error as CoapFormatError).message);
  }
}

/**
 * Readies a request from {@linkcode readRequest} to be kept for an
 * observation's whole life: it drops the view of its frame that its token
 * was (a typed array, and the frame's buffer with it), and makes its token
 * from the key when asked. Other requests are left as they are.
 *
 * @param request The request.
 * @returns The same request.
 */
export function forObservation(request: IncomingRequest): IncomingRequest {
  if (request instanceof Request) request.dropView();
  return request;
}

/**
 * The same request without its Observe option: a registration the server
 * answers as a plain GET (RFC 7641 §4.1).
 *
 * @param request A request from {@linkcode readRequest}, or any other.
 * @returns A copy with `observe` undefined.
 */
export function withoutObserve(request: IncomingRequest): IncomingRequest {
  if (!(request instanceof Request)) return { ...request, observe: undefined };
  return request.without();
}

/**
 * The same request with another payload: the body a block-wise upload
 * reassembled (RFC 7959 §2.5).
 *
 * @param request A request from {@linkcode readRequest}, or any other.
 * @param payload The whole body.
 * @returns A copy with `payload`.
 */
export function withPayload(
  request: IncomingRequest,
  payload: Uint8Array,
): IncomingRequest {
  if (!(request instanceof Request)) return { ...request, payload };
  return request.copy(request.observe, payload);
}

const NONE: readonly string[] = Object.freeze([]);
const EMPTY = new Uint8Array(0);

/**
 * An {@linkcode IncomingRequest} of one shape, holding its token as a
 * {@linkcode tokenKey} once it is kept for an observation: an idle
 * observation keeps its request for its whole life, and a token view costs
 * more than the rest of the request.
 */
class Request implements IncomingRequest {
  #view: Uint8Array | undefined;

  constructor(
    readonly method: Method | string,
    readonly path: string,
    readonly segments: readonly string[],
    readonly query: readonly string[],
    readonly payload: Uint8Array,
    readonly contentFormat: number | undefined,
    readonly accept: number | undefined,
    readonly observe: number | undefined,
    readonly block2: Block | undefined,
    /** The token's {@linkcode tokenKey}. */
    readonly key: number | string,
    view: Uint8Array | undefined,
    readonly proxyUri?: string,
    readonly proxyVia?: "Proxy-Uri" | "Proxy-Scheme",
    readonly forwardOptions?: readonly CoapOption[],
    readonly hopLimit?: number,
  ) {
    this.#view = view;
  }

  /** The token: its view in the request's frame, or made from the key. */
  get token(): Uint8Array {
    return this.#view ?? keyToken(this.key);
  }

  dropView(): void {
    this.#view = undefined;
  }

  /** A copy without Observe. */
  without(): Request {
    return this.copy(undefined, this.payload);
  }

  /** A copy with this Observe and payload. */
  copy(observe: number | undefined, payload: Uint8Array): Request {
    return new Request(
      this.method,
      this.path,
      this.segments,
      this.query,
      payload,
      this.contentFormat,
      this.accept,
      observe,
      this.block2,
      this.key,
      this.#view,
      this.proxyUri,
      this.proxyVia,
      this.forwardOptions,
      this.hopLimit,
    );
  }
}

/**
 * Builds the message for a resource's answer.
 *
 * @param init What the resource answered.
 * @param token The request's token.
 * @param observe The Observe number of a notification (RFC 7641 §3.4).
 * @returns The message.
 * @throws {TypeError} If the code is not a response code, or the payload is
 * neither bytes nor text.
 *
 * @example
 * ```ts
 * import { responseMessage } from "./exchange.ts";
 * import { Code } from "./message.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const message = responseMessage({ payload: "hi" }, new Uint8Array([1]));
 * assertEquals(message.code, Code.CONTENT);
 * ```
 */
export function responseMessage(
  init: ResponseInit,
  token: Uint8Array,
  observe?: number,
): OutgoingMessage {
  if (typeof init !== "object" || init === null) {
    throw new TypeError("Cannot send a response: it must be an object");
  }
  let code: number = Code.CONTENT;
  if (init.code !== undefined) code = responseCode(init.code);
  // In option number order, in an array of the exact size (a pushed-to
  // array keeps room for 16 more): every response and notification passes
  // here.
  const observeOption = observe === undefined
    ? undefined
    : { number: Option.OBSERVE, value: shared(observe) };
  const format = init.contentFormat === undefined ? undefined : oneUintOption(
    Option.CONTENT_FORMAT,
    init.contentFormat,
    "content format",
    0xffff,
  );
  const maxAge = init.maxAge === undefined
    ? undefined
    : oneUintOption(Option.MAX_AGE, init.maxAge, "max-age", 0xffffffff);
  const more = init.options === undefined || Array.isArray(init.options)
    ? init.options
    : Array.from(init.options as Iterable<CoapOption>); // any iterable, as before
  const options = new Array<CoapOption>(
    (observeOption === undefined ? 0 : 1) + (format === undefined ? 0 : 1) +
      (maxAge === undefined ? 0 : 1) + (more === undefined ? 0 : more.length),
  );
  let at = 0;
  if (observeOption !== undefined) options[at++] = observeOption;
  if (format !== undefined) options[at++] = format;
  if (maxAge !== undefined) options[at++] = maxAge;
  if (more !== undefined) { for (const option of more) options[at++] = option; }
  // Text stays text: encodeMessage writes it into the frame.
  return { code, token, options, payload: payloadOf(init.payload) };
}
