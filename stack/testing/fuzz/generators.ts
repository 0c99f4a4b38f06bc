// Structure-aware generators of what a CoAP-over-WebSocket peer may send
// (fast-check arbitraries), and byte-level mutations of valid frames.
// Each generated message is a frame's bytes: most are encoded from a
// structure (codes, tokens, options at the length boundaries of the
// option encoding, Block1/Block2 with every SZX, Observe register and
// cancel, CSM with odd Max-Message-Size values, Ping, Release, Abort), the
// rest are those bytes mutated (flipped, cut, extended, spliced).

import fc from "fast-check";
import {
  type CoapMessage,
  type CoapOption,
  Code,
  encodeBlock,
  encodeMessage,
  Option,
  SignalingOption,
  uint,
  utf8,
} from "../../message.ts";

/** Paths the fuzzing servers serve, and a few they do not. */
export const PATHS = [
  "",
  "echo",
  "big",
  "obs",
  "task",
  "fail",
  "bad",
  "async",
  ".well-known/core",
  "missing",
] as const;

/** The lengths at which the option encoding changes form (RFC 7252 §3.1). */
const BOUNDARY_LENGTHS = [0, 1, 12, 13, 14, 268, 269, 270, 1024, 65804];

/** Option numbers: the known ones, their neighbours, and any. */
const optionNumber = fc.oneof(
  fc.constantFrom(
    Option.IF_MATCH,
    Option.URI_HOST,
    Option.ETAG,
    Option.IF_NONE_MATCH,
    Option.OBSERVE,
    Option.URI_PORT,
    Option.LOCATION_PATH,
    Option.URI_PATH,
    Option.CONTENT_FORMAT,
    Option.MAX_AGE,
    Option.URI_QUERY,
    Option.ACCEPT,
    Option.BLOCK2,
    Option.BLOCK1,
    Option.SIZE2,
    Option.PROXY_URI,
    Option.PROXY_SCHEME,
    Option.SIZE1,
    Option.HOP_LIMIT,
    Option.ECHO,
    Option.NO_RESPONSE,
    Option.REQUEST_TAG,
    2,
    9,
    13,
    268,
    269,
    2048,
    2049,
    65535,
  ),
  fc.integer({ min: 0, max: 65535 }),
);

/** An option value: short, at a length boundary, or a number. */
const optionValue = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 8 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(...BOUNDARY_LENGTHS).map((n) =>
      new Uint8Array(n).fill(0x61)
    ),
  },
  {
    weight: 2,
    arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map((n) => uint(n)),
  },
);

/** Block1 or Block2: any number, either More, every SZX (7 is BERT). */
const block = fc.record({
  number: fc.constantFrom(Option.BLOCK1, Option.BLOCK2),
  num: fc.oneof(
    fc.integer({ min: 0, max: 4 }),
    fc.integer({ min: 0, max: 0xfffff }),
  ),
  more: fc.boolean(),
  szx: fc.integer({ min: 0, max: 7 }),
}).map(({ number, num, more, szx }): CoapOption => ({
  number,
  value: encodeBlock({ num, more, szx }),
}));

const anyOption = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ number: optionNumber, value: optionValue }),
  },
  { weight: 2, arbitrary: block },
  {
    weight: 2,
    arbitrary: fc.constantFrom(0, 1, 2, 0xffffff).map((n): CoapOption => ({
      number: Option.OBSERVE,
      value: uint(n),
    })),
  },
);

/** A token: from a small set, so that tokens are reused, or any. */
const token = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, 1, 2, 3).map((n) => uint(n)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) },
);

const payload = fc.oneof(
  { weight: 3, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(1024, 1100, 1152, 2000).map((n) =>
      new Uint8Array(n).fill(0x78)
    ),
  },
);

/** A request to one of the fuzzing servers' paths, with options added. */
const request = fc.record({
  code: fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom(Code.GET, Code.POST, Code.PUT, Code.DELETE),
    },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 31 }) },
  ),
  token,
  path: fc.constantFrom(...PATHS),
  query: fc.option(fc.constantFrom("a=1", "", "x".repeat(300)), {
    nil: undefined,
  }),
  extra: fc.array(anyOption, { maxLength: 4 }),
  payload,
}).map(({ code, token, path, query, extra, payload }): CoapMessage => ({
  code,
  token,
  options: [
    ...path.split("/").filter((s) => s !== "").map((s) => ({
      number: Option.URI_PATH,
      value: utf8(s),
    })),
    ...(query === undefined
      ? []
      : [{ number: Option.URI_QUERY, value: utf8(query) }]),
    ...extra,
  ],
  payload,
}));

/** A GET that registers (Observe 0) or cancels (Observe 1) an observation. */
const observe = fc.record({
  token,
  path: fc.constantFrom("obs", "task", "", "missing"),
  register: fc.boolean(),
}).map(({ token, path, register }): CoapMessage => ({
  code: Code.GET,
  token,
  options: [
    { number: Option.OBSERVE, value: uint(register ? 0 : 1) },
    ...(path === "" ? [] : [{ number: Option.URI_PATH, value: utf8(path) }]),
  ],
  payload: new Uint8Array(0),
}));

/** Max-Message-Size values a peer may announce, sensible or not. */
const MAX_MESSAGE_SIZES = [0, 1, 2, 11, 63, 64, 65, 100, 1152, 0xffffffff];

/** A CSM, at the start or in the middle of a connection. */
export const csm: fc.Arbitrary<CoapMessage> = fc.record({
  size: fc.option(
    fc.oneof(
      fc.constantFrom(...MAX_MESSAGE_SIZES).map((n) => uint(n)),
      fc.uint8Array({ maxLength: 6 }),
    ),
    { nil: undefined },
  ),
  blockWise: fc.boolean(),
  other: fc.array(fc.record({ number: optionNumber, value: optionValue }), {
    maxLength: 2,
  }),
}).map(({ size, blockWise, other }): CoapMessage => ({
  code: Code.CSM,
  token: new Uint8Array(0),
  options: [
    ...(size === undefined
      ? []
      : [{ number: SignalingOption.MAX_MESSAGE_SIZE, value: size }]),
    ...(blockWise
      ? [{
        number: SignalingOption.BLOCK_WISE_TRANSFER,
        value: new Uint8Array(0),
      }]
      : []),
    ...other,
  ],
  payload: new Uint8Array(0),
}));

/** Ping, Pong, Release, Abort, an unknown signal, or a stray response. */
const other = fc.record({
  code: fc.oneof(
    fc.constantFrom(
      Code.PING,
      Code.PONG,
      Code.RELEASE,
      Code.ABORT,
      0xe6,
      0xe0,
      Code.EMPTY,
    ),
    fc.constantFrom(
      Code.CONTENT,
      Code.CHANGED,
      Code.NOT_FOUND,
      0x20,
      0x3f,
      0xff,
    ),
  ),
  token,
  options: fc.array(anyOption, { maxLength: 2 }),
  payload: fc.oneof(
    payload,
    fc.constant(utf8("bye\nerror: FORGED \x1b[31mred\x1b[0m")),
  ),
}).map((m): CoapMessage => m);

/** One structured message, encoded; `undefined` if it cannot be encoded. */
const structured = fc.oneof(
  { weight: 6, arbitrary: request },
  { weight: 2, arbitrary: observe },
  { weight: 1, arbitrary: csm },
  { weight: 2, arbitrary: other },
).map((message) => {
  try {
    return encodeMessage(message);
  } catch {
    return undefined;
  }
}).filter((bytes): bytes is Uint8Array => bytes !== undefined);

/** A byte-level change to a valid frame. */
export const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({
    kind: fc.constant("set" as const),
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("append" as const),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }),
  }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** Applies `change` to a copy of `bytes`. */
export function mutate(bytes: Uint8Array, change: Mutation): Uint8Array {
  const out = bytes.slice();
  const at = (n: number) => out.length === 0 ? 0 : n % out.length;
  switch (change.kind) {
    case "flip":
      if (out.length > 0) out[at(change.at)] ^= 1 << change.bit;
      return out;
    case "set":
      if (out.length > 0) out[at(change.at)] = change.byte;
      return out;
    case "cut":
      return out.subarray(0, at(change.at));
    case "append": {
      const longer = new Uint8Array(out.length + change.bytes.length);
      longer.set(out);
      longer.set(change.bytes, out.length);
      return longer;
    }
    case "insert": {
      const i = at(change.at);
      const longer = new Uint8Array(out.length + change.bytes.length);
      longer.set(out.subarray(0, i));
      longer.set(change.bytes, i);
      longer.set(out.subarray(i), i + change.bytes.length);
      return longer;
    }
  }
}

/** One frame a peer sends: structured, or structured and then mutated. */
export const frame: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: structured },
  {
    weight: 1,
    arbitrary: fc.tuple(
      structured,
      fc.array(mutation, { minLength: 1, maxLength: 3 }),
    )
      .map(([bytes, changes]) => changes.reduce(mutate, bytes)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }) },
);

/**
 * A block-wise upload (RFC 7959 §2.5) to /echo: its Block1 blocks in
 * order, of a size exponent 0 to 2, with Size1 on the first; sometimes a
 * block left out, repeated, resized, or tagged with a Request-Tag, and
 * sometimes a Block2 follow-up after it.
 */
const upload: fc.Arbitrary<Uint8Array[]> = fc.record({
  code: fc.constantFrom(Code.PUT, Code.POST),
  szx: fc.integer({ min: 0, max: 2 }),
  length: fc.integer({ min: 0, max: 200 }),
  token: fc.integer({ min: 0, max: 3 }),
  tag: fc.option(fc.uint8Array({ maxLength: 2 }), { nil: undefined }),
  change: fc.constantFrom("none", "none", "skip", "repeat", "resize"),
  at: fc.nat(),
  followUp: fc.boolean(),
}).map(({ code, szx, length, token, tag, change, at, followUp }) => {
  const size = 16 << szx;
  const count = Math.max(1, Math.ceil(length / size));
  const blocks: Uint8Array[] = [];
  const pick = at % count;
  for (let num = 0; num < count; num++) {
    if (change === "skip" && num === pick && count > 1) continue;
    const more = num < count - 1;
    const payload = new Uint8Array(
      Math.min(size, length - num * size) +
        (change === "resize" && num === pick ? 1 : 0),
    ).fill(0x61 + num % 26);
    const message = encodeMessage({
      code,
      token: new Uint8Array([token + num % 2]),
      options: [
        { number: Option.URI_PATH, value: utf8("echo") },
        { number: Option.BLOCK1, value: encodeBlock({ num, more, szx }) },
        ...(num === 0 ? [{ number: Option.SIZE1, value: uint(length) }] : []),
        ...(tag === undefined
          ? []
          : [{ number: Option.REQUEST_TAG, value: tag }]),
      ],
      payload,
    });
    blocks.push(message);
    if (change === "repeat" && num === pick) blocks.push(message);
  }
  if (followUp) {
    blocks.push(encodeMessage({
      code,
      token: new Uint8Array([token]),
      options: [
        { number: Option.URI_PATH, value: utf8("echo") },
        {
          number: Option.BLOCK2,
          value: encodeBlock({ num: 1, more: false, szx }),
        },
      ],
      payload: new Uint8Array(0),
    }));
  }
  return blocks;
});

/**
 * What one connection sends: usually a CSM first (as RFC 8323 requires;
 * sometimes not, or a malformed one), then frames, among them block-wise
 * uploads.
 */
export const session: fc.Arbitrary<Uint8Array[]> = fc.tuple(
  fc.oneof(
    { weight: 6, arbitrary: csm.map((m) => [encodeMessage(m)]) },
    { weight: 1, arbitrary: fc.constant([] as Uint8Array[]) },
  ),
  fc.array(
    fc.oneof(
      { weight: 6, arbitrary: frame.map((bytes) => [bytes]) },
      { weight: 1, arbitrary: upload },
    ),
    { minLength: 1, maxLength: 24 },
  ),
).map(([first, rest]) => [...first, ...rest.flat()]);

/**
 * What sources send a CoAP-over-UDP endpoint: structured messages and
 * their mutations as datagrams of every type, with message IDs from a
 * small set (so that ACKs and RSTs meet what was sent), raw bytes, empty
 * ACKs and RSTs, from a few sources, with the clock moving between them.
 */
export const udpSession: fc.Arbitrary<
  { from: number; bytes: Uint8Array; wait: number }[]
> = fc.array(
  fc.record({
    from: fc.integer({ min: 0, max: 5 }),
    wait: fc.constantFrom(0, 0, 5, 120, 2500),
    bytes: fc.oneof(
      {
        weight: 6,
        arbitrary: fc.tuple(
          frame,
          fc.integer({ min: 0, max: 3 }),
          fc.integer({ min: 0, max: 7 }),
        ).map(([frameBytes, type, id]) => {
          // An RFC 8323 frame's token length and code, under a UDP header.
          const out = new Uint8Array(Math.max(4, frameBytes.length + 2));
          out[0] = 0x40 | (type << 4) | ((frameBytes[0] ?? 0) & 0x0f);
          out[1] = frameBytes[1] ?? 0;
          out[2] = 0;
          out[3] = id;
          out.set(frameBytes.subarray(2), 4);
          return out;
        }),
      },
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.constantFrom(0x60, 0x70, 0x40),
          fc.integer({ min: 0, max: 0xffff }),
        ).map(([head, id]) => Uint8Array.of(head, 0, id >> 8, id & 0xff)),
      },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
    ),
  }),
  { minLength: 1, maxLength: 30 },
);

/**
 * What a hostile device answers a proxy with: datagrams whose message ID
 * and token are either those of something the proxy sent (by index, so
 * that they meet it) or any; codes of every class, a response's options and
 * request-only ones, ETags of odd lengths, Block2 that never ends, payloads
 * up to past the Max-Message-Size; some mutated byte by byte.
 */
export interface DeviceDatagram {
  type: number;
  /** The index of a message ID the proxy sent, or a message ID of its own. */
  mid: { sent: number } | { own: number };
  token: { sent: number } | { own: Uint8Array };
  code: number;
  options: CoapOption[];
  payload: number;
  mutations: Mutation[];
  /** Milliseconds the clock moves on after it. */
  wait: number;
}

/** See {@linkcode DeviceDatagram}. */
export const deviceSession: fc.Arbitrary<DeviceDatagram[]> = fc.array(
  fc.record({
    type: fc.integer({ min: 0, max: 3 }),
    mid: fc.oneof(
      { weight: 4, arbitrary: fc.record({ sent: fc.nat({ max: 40 }) }) },
      {
        weight: 1,
        arbitrary: fc.record({ own: fc.integer({ min: 0, max: 0xffff }) }),
      },
    ),
    token: fc.oneof(
      { weight: 4, arbitrary: fc.record({ sent: fc.nat({ max: 40 }) }) },
      { weight: 1, arbitrary: fc.record({ own: token }) },
    ),
    code: fc.constantFrom(
      Code.CONTENT,
      Code.CONTENT,
      Code.VALID,
      Code.CHANGED,
      Code.NOT_FOUND,
      0xa3,
      Code.CSM,
      Code.PING,
      Code.GET,
      0x25,
      0x65,
      Code.EMPTY,
    ),
    options: fc.array(
      fc.oneof(
        fc.record({
          number: fc.constantFrom(
            Option.OBSERVE,
            Option.ETAG,
            Option.BLOCK2,
            Option.CONTENT_FORMAT,
            Option.MAX_AGE,
            Option.IF_MATCH,
            Option.URI_HOST,
            Option.URI_QUERY,
            Option.ACCEPT,
            Option.PROXY_URI,
            Option.ECHO,
            Option.SIZE2,
            2,
          ),
          value: fc.oneof(
            optionValue,
            fc.constantFrom(
              new Uint8Array(0),
              new Uint8Array(9),
              encodeBlock({ num: 0, more: true, szx: 6 }),
              encodeBlock({ num: 1, more: true, szx: 6 }),
              encodeBlock({ num: 0, more: true, szx: 0 }),
              uint(5),
            ),
          ),
        }),
        anyOption,
      ),
      { maxLength: 4 },
    ),
    payload: fc.constantFrom(0, 1, 16, 1024, 1100, 1300),
    mutations: fc.oneof(
      { weight: 5, arbitrary: fc.constant([] as Mutation[]) },
      {
        weight: 1,
        arbitrary: fc.array(mutation, { minLength: 1, maxLength: 2 }),
      },
    ),
    wait: fc.constantFrom(0, 0, 5, 300, 2500),
  }),
  { minLength: 1, maxLength: 24 },
);
