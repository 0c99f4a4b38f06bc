import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  Code,
  decodeMessage,
  encodeMessage,
  Option,
  uint,
  utf8,
} from "./message.ts";
import {
  decodeOscoreOption,
  deriveKeys,
  encodeOscoreOption,
  MemoryStore,
  OSCORE_OPTION,
  OscoreContexts,
  OscoreError,
  parseContextJson,
  ReplayWindow,
  SecurityContext,
  type SecurityContextInit,
} from "./oscore.ts";
import { decodeDatagram, encodeDatagram, type MessageType } from "./udp.ts";

const h = (text: string): Uint8Array =>
  new Uint8Array((text.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const x = (bytes: Uint8Array): string =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

// RFC 8613 Appendix C.1 to C.3: the inputs.
const SECRET = h("0102030405060708090a0b0c0d0e0f10");
const SALT = h("9e7ca92223786340");
const C1_CLIENT = {
  masterSecret: SECRET,
  masterSalt: SALT,
  senderId: h(""),
  recipientId: h("01"),
};
const C1_SERVER = {
  masterSecret: SECRET,
  masterSalt: SALT,
  senderId: h("01"),
  recipientId: h(""),
};
const C2_CLIENT = {
  masterSecret: SECRET,
  senderId: h("00"),
  recipientId: h("01"),
};
const C2_SERVER = {
  masterSecret: SECRET,
  senderId: h("01"),
  recipientId: h("00"),
};
const C3_CLIENT = { ...C1_CLIENT, idContext: h("37cbf3210017a2d3") };

/** A context whose next sender sequence number is `sequence`. */
function at(init: SecurityContextInit, sequence: number, extra = {}) {
  return SecurityContext.create({
    ...init,
    store: new MemoryStore(sequence),
    persistStep: 1,
    ...extra,
  });
}

/** A UDP datagram as the message the connection sees, and back. */
function fromWire(hex: string) {
  const d = decodeDatagram(h(hex));
  return { type: d.type, id: d.messageId, message: d.message };
}
function toWire(
  type: MessageType,
  id: number,
  message: Parameters<typeof encodeMessage>[0],
) {
  return x(encodeDatagram(type, id, encodeMessage(message)));
}

Deno.test("deriveKeys() gives RFC 8613 C.1, C.2 and C.3's keys and common IVs, and nonce() their nonces", async () => {
  const rows: string[] = [];
  for (
    const init of [C1_CLIENT, C1_SERVER, C2_CLIENT, C2_SERVER, C3_CLIENT]
  ) {
    const keys = await deriveKeys(init);
    const context = await SecurityContext.create(init);
    rows.push([
      x(keys.senderKey),
      x(keys.recipientKey),
      x(keys.commonIv),
      x(context.nonce(init.senderId, h("00"))),
      x(context.nonce(init.recipientId, h("00"))),
    ].join(" "));
  }
  assertEquals(rows, [
    // C.1.1: client, sender key, recipient key, common IV, sender nonce, recipient nonce
    "f0910ed7295e6ad4b54fc793154302ff ffb14e093c94c9cac9471648b4f98710 4622d4dd6d944168eefb54987c 4622d4dd6d944168eefb54987c 4722d4dd6d944169eefb54987c",
    // C.1.2: server
    "ffb14e093c94c9cac9471648b4f98710 f0910ed7295e6ad4b54fc793154302ff 4622d4dd6d944168eefb54987c 4722d4dd6d944169eefb54987c 4622d4dd6d944168eefb54987c",
    // C.2.1: no salt
    "321b26943253c7ffb6003b0b64d74041 e57b5635815177cd679ab4bcec9d7dda be35ae297d2dace910c52e99f9 bf35ae297d2dace910c52e99f9 bf35ae297d2dace810c52e99f9",
    // C.2.2: its server
    "e57b5635815177cd679ab4bcec9d7dda 321b26943253c7ffb6003b0b64d74041 be35ae297d2dace910c52e99f9 bf35ae297d2dace810c52e99f9 bf35ae297d2dace910c52e99f9",
    // C.3.1: an ID Context
    "af2a1300a5e95788b356336eeecd2b92 e39a0c7c77b43f03b4b39ab9a268699f 2ca58fb85ff1b81c0b7181b85e 2ca58fb85ff1b81c0b7181b85e 2da58fb85ff1b81d0b7181b85e",
  ]);
});

Deno.test("SecurityContext.protectRequest() reproduces RFC 8613 C.4, C.5 and C.6 byte for byte", async () => {
  const cases = [
    [
      C1_CLIENT,
      {},
      "44015d1f00003974396c6f63616c686f737483747631",
      "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e",
    ],
    [
      C2_CLIENT,
      {},
      "440171c30000b932396c6f63616c686f737483747631",
      "440271c30000b932396c6f63616c686f737463091400ff4ed339a5a379b0b8bc731fffb0",
    ],
    [
      C3_CLIENT,
      { sendIdContext: true },
      "44012f8eef9bbf7a396c6f63616c686f737483747631",
      "44022f8eef9bbf7a396c6f63616c686f73746b19140837cbf3210017a2d3ff72cd7273fd331ac45cffbe55c3",
    ],
  ] as const;
  const got: string[] = [];
  for (const [init, extra, plainHex] of cases) {
    const context = await at(init, 20, extra);
    const { type, id, message } = fromWire(plainHex);
    const { message: outer, binding } = await context.protectRequest(message);
    got.push(toWire(type, id, outer));
    assertEquals([x(binding.piv), binding.fetch, context.sequence], [
      "14",
      false,
      21,
    ]);
  }
  assertEquals(got, cases.map((c) => c[3]));
});

Deno.test("SecurityContext: RFC 8613 C.7 and C.8, the server's response reusing the request's nonce and with its own Partial IV, and the client reads both", async () => {
  const server = await SecurityContext.create(C1_SERVER);
  const client = await at(C1_CLIENT, 20);
  const request = fromWire("44015d1f00003974396c6f63616c686f737483747631");
  const sent = await client.protectRequest(request.message);
  const arrived = decodeMessage(encodeMessage(sent.message));
  const option = arrived.options.find((o) => o.number === OSCORE_OPTION)!;
  const { message: inner, binding, echo } = await server.unprotectRequest(
    arrived,
    decodeOscoreOption(option.value),
  );
  // The server sees the plain request again, Uri-Host from outside.
  assertEquals([
    echo,
    inner.code,
    inner.options.map((o) => [o.number, new TextDecoder().decode(o.value)]),
  ], [
    false,
    Code.GET,
    [[Option.URI_PATH, "tv1"], [Option.URI_HOST, "localhost"]],
  ]);
  const response = fromWire("64455d1f00003974ff48656c6c6f20576f726c6421");
  const c7 = await server.protectResponse(response.message, binding);
  assertEquals(
    toWire(response.type, response.id, c7),
    "64445d1f0000397490ffdbaad1e9a7e7b2a813d3c31524378303cdafae119106",
  );
  // C.8: the same response with the server's own Partial IV (its number 0).
  const c8 = await server.protectResponse(response.message, binding);
  assertEquals(
    toWire(response.type, response.id, c8),
    "64445d1f00003974920100ff4d4c13669384b67354b2b6175ff4b8658c666a6cf88e",
  );
  const read = [];
  for (const outer of [c7, c8]) {
    const plain = await client.unprotectResponse(outer, sent.binding);
    read.push([plain.code, new TextDecoder().decode(plain.payload)]);
  }
  assertEquals(read, [[Code.CONTENT, "Hello World!"], [
    Code.CONTENT,
    "Hello World!",
  ]]);
  // Either again is a replay.
  const again = [];
  for (const outer of [c7, c8]) {
    const error = await assertRejects(
      () => client.unprotectResponse(outer, sent.binding),
      OscoreError,
    );
    again.push(error.message);
  }
  assertEquals(again, [
    "A second response without a Partial IV: a replay, or a reused nonce",
    "Replayed or reordered notification (Partial IV 0 after 0)",
  ]);
});

Deno.test("SecurityContext.unprotectRequest() refuses a replayed request with 4.01 and a changed one with 4.00, and serves the next", async () => {
  const server = await SecurityContext.create(C1_SERVER);
  const client = await SecurityContext.create(C1_CLIENT);
  const get = {
    code: Code.GET,
    token: h("01"),
    options: [],
    payload: new Uint8Array(0),
  };
  const first = (await client.protectRequest(get)).message;
  const second = (await client.protectRequest(get)).message;
  const fields = (m: typeof first) =>
    decodeOscoreOption(
      m.options.find((o) => o.number === OSCORE_OPTION)!.value,
    );
  const outcomes: string[] = [];
  const attempt = async (m: typeof first) => {
    try {
      const { binding } = await server.unprotectRequest(m, fields(m));
      outcomes.push(`served ${x(binding.piv)}`);
    } catch (error) {
      const e = error as OscoreError;
      outcomes.push(`${e.code >> 5}.0${e.code & 31} ${e.message}`);
    }
  };
  const third = (await client.protectRequest(get)).message;
  await attempt(second);
  await attempt(first);
  await attempt(first);
  const changed = {
    ...third,
    payload: third.payload.map((b, i) => i === 0 ? b ^ 1 : b),
  };
  await attempt(changed);
  await attempt(third);
  await attempt(second);
  // A changed request does not use up its number: the real one is served.
  assertEquals(outcomes, [
    "served 01",
    "served 00",
    "4.01 Replay detected",
    "4.00 Decryption failed",
    "served 02",
    "4.01 Replay detected",
  ]);
});

Deno.test("SecurityContext after a restart: sequence numbers go on past the stored step, and the server serves only a request with its Echo (B.1.1, B.1.2)", async () => {
  const clientStore = new MemoryStore();
  const serverStore = new MemoryStore();
  let client = await SecurityContext.create({
    ...C1_CLIENT,
    store: clientStore,
    persistStep: 10,
  });
  let server = await SecurityContext.create({
    ...C1_SERVER,
    store: serverStore,
    persistStep: 10,
  });
  const get = {
    code: Code.GET,
    token: h("02"),
    options: [{ number: Option.URI_PATH, value: utf8("x") }],
    payload: new Uint8Array(0),
  };
  const fields = (
    m: { options: readonly { number: number; value: Uint8Array }[] },
  ) =>
    decodeOscoreOption(
      m.options.find((o) => o.number === OSCORE_OPTION)!.value,
    );
  const captured = [];
  for (let i = 0; i < 3; i++) {
    const { message } = await client.protectRequest(get);
    captured.push(message);
    await server.unprotectRequest(message, fields(message));
  }
  assertEquals([
    client.sequence,
    await clientStore.load(),
    await serverStore.load(),
  ], [3, 10, 0]);
  // Both restart from their stores.
  client = await SecurityContext.create({
    ...C1_CLIENT,
    store: clientStore,
    persistStep: 10,
  });
  server = await SecurityContext.create({
    ...C1_SERVER,
    store: serverStore,
    persistStep: 10,
  });
  assertEquals([client.sequence, server.replay.lost], [10, true]);
  // A captured request is not served: it gets a challenge instead.
  const replayed = await server.unprotectRequest(
    captured[0],
    fields(captured[0]),
  );
  assertEquals(replayed.echo, true);
  const challenge = await server.echoChallenge(
    captured[0].token,
    replayed.binding,
  );
  assertEquals(fields(challenge).piv !== undefined, true); // its own Partial IV
  // The client's next request, without the Echo, is challenged as well.
  const sent = await client.protectRequest(get);
  const plain = await server.unprotectRequest(
    sent.message,
    fields(sent.message),
  );
  const answer = await server.echoChallenge(sent.message.token, plain.binding);
  const read = await client.unprotectResponse(answer, sent.binding);
  const echo = read.options.find((o) => o.number === Option.ECHO)!;
  assertEquals([plain.echo, read.code, echo.value.length], [
    true,
    Code.UNAUTHORIZED,
    8,
  ]);
  // With it, the request is served and the window starts again from it.
  const retry = await client.protectRequest({
    ...get,
    options: [...get.options, echo],
  });
  const served = await server.unprotectRequest(
    retry.message,
    fields(retry.message),
  );
  assertEquals([
    served.echo,
    x(served.binding.piv),
    server.replay.lost,
    served.binding.reuse,
    // After a lost window, not even the first answer reuses the nonce.
  ], [false, "0b", false, false]);
  await assertRejects(
    () => server.unprotectRequest(retry.message, fields(retry.message)),
    OscoreError,
    "Replay detected",
  );
});

Deno.test("SecurityContext.protectRequest() splits a Proxy-Uri: scheme, host and port outside, path and query inside; Observe goes both ways as FETCH", async () => {
  const client = await SecurityContext.create(C1_CLIENT);
  const server = await SecurityContext.create(C1_SERVER);
  const { message, binding } = await client.protectRequest({
    code: Code.GET,
    token: h("aa"),
    options: [
      { number: Option.OBSERVE, value: uint(0) },
      {
        number: Option.PROXY_URI,
        value: utf8("coap://127.0.0.1:5683/sensors/t%2Fx?unit=C"),
      },
    ],
    payload: new Uint8Array(0),
  });
  const shown = (options: readonly { number: number; value: Uint8Array }[]) =>
    options.map((o) =>
      `${o.number}=${
        o.number === OSCORE_OPTION
          ? x(o.value)
          : new TextDecoder().decode(o.value)
      }`
    );
  assertEquals([message.code, binding.fetch, shown(message.options)], [
    Code.FETCH,
    true,
    ["3=127.0.0.1", "6=", "7=\u00163", "9=0900", "39=coap"],
  ]);
  const { message: inner, binding: serverBinding } = await server
    .unprotectRequest(
      message,
      decodeOscoreOption(
        message.options.find((o) => o.number === OSCORE_OPTION)!.value,
      ),
    );
  assertEquals(shown(inner.options), [
    "6=",
    "11=sensors",
    "11=t/x",
    "15=unit=C",
    "3=127.0.0.1",
    "7=\u00163",
    "39=coap",
  ]);
  // The answers: outer 2.05 with Observe; the first reuses the request's
  // nonce, the next (a notification) takes a Partial IV of its own.
  const served = await server.unprotectRequest(
    message,
    decodeOscoreOption(
      message.options.find((o) => o.number === OSCORE_OPTION)!.value,
    ),
  ).catch((e) => e);
  assertEquals(served.message, "Replay detected");
  const trace: string[] = [];
  for (const n of [0, 1]) {
    const outer = await server.protectResponse({
      code: Code.CONTENT,
      token: h("aa"),
      options: [{ number: Option.OBSERVE, value: uint(n) }],
      payload: utf8(String(n)),
    }, serverBinding);
    const plain = await client.unprotectResponse(outer, binding);
    trace.push(
      `${outer.code === Code.CONTENT} ${shown(outer.options)} ${
        new TextDecoder().decode(plain.payload)
      }`,
    );
  }
  assertEquals(trace, ["true 6=,9= 0", "true 6=\u0001,9=0100 1"]);
});

Deno.test("OSCORE option: decodeOscoreOption() refuses reserved bits, lengths 6 and 7, and fields past the end with 4.02; encode and decode agree", () => {
  const bad = ["20", "06", "0f", "0201", "10", "1105aa", "0a"];
  const messages = bad.map((hex) => {
    const error = assertThrows(() => decodeOscoreOption(h(hex)), OscoreError);
    return `${error.code === Code.BAD_OPTION} ${error.message}`;
  });
  assertEquals(messages, [
    "true Malformed OSCORE option: reserved bits are set",
    "true Malformed OSCORE option: Partial IV length 6 is reserved",
    "true Malformed OSCORE option: Partial IV length 7 is reserved",
    "true Malformed OSCORE option: the Partial IV runs past the end",
    "true Malformed OSCORE option: the kid context's length is missing",
    "true Malformed OSCORE option: the kid context runs past the end",
    "true Malformed OSCORE option: the Partial IV runs past the end",
  ]);
  for (
    const fields of [
      {},
      { piv: h("01") },
      { piv: h("0102030405"), kid: h("") },
      { kid: h("0a0b"), kidContext: h("") },
      { piv: h("ff"), kidContext: h("c0"), kid: h("01") },
    ]
  ) {
    const decoded = decodeOscoreOption(encodeOscoreOption(fields));
    assertEquals(
      [decoded.piv, decoded.kidContext, decoded.kid].map((v) => v && x(v)),
      [
        fields.piv,
        (fields as { kidContext?: Uint8Array }).kidContext,
        (fields as { kid?: Uint8Array }).kid,
      ].map((v) => v && x(v)),
    );
  }
  assertThrows(
    () => decodeOscoreOption(h("0001")),
    OscoreError,
    "bytes after its last field",
  );
});

Deno.test("ReplayWindow: numbers seen, numbers too old, a jump past the window, and a lost window", () => {
  const window = new ReplayWindow(32);
  const trace: string[] = [];
  for (const n of [0, 1, 2, 1, 40, 8, 9, 9, 39, 100]) {
    const ok = window.valid(n);
    if (ok) window.accept(n);
    trace.push(`${n}:${ok ? "new" : "refused"}`);
  }
  assertEquals(trace, [
    "0:new",
    "1:new",
    "2:new",
    "1:refused",
    "40:new",
    "8:refused",
    "9:new",
    "9:refused",
    "39:new",
    "100:new",
  ]);
  const lost = new ReplayWindow(32, true);
  assertEquals([lost.lost, lost.valid(0), lost.valid(1000)], [
    true,
    false,
    false,
  ]);
  lost.accept(500);
  assertEquals([
    lost.lost,
    lost.valid(500),
    lost.valid(499),
    lost.valid(468),
    lost.valid(501),
  ], [false, false, true, false, true]);
  assertThrows(
    () => new ReplayWindow(0),
    RangeError,
    "its size must be an integer from 1 to 4096, got 0",
  );
});

Deno.test("SecurityContext.create() refuses IDs over 7 bytes, other algorithms and bad steps; parseContextJson() reads aiocoap's settings.json and refuses what it cannot use", async () => {
  await assertRejects(
    () => SecurityContext.create({ ...C1_CLIENT, senderId: new Uint8Array(8) }),
    RangeError,
    "senderId must be at most 7 bytes, got 8",
  );
  await assertRejects(
    () => SecurityContext.create({ ...C1_CLIENT, algorithm: 1 }),
    RangeError,
    "only algorithm 10 (AES-CCM-16-64-128) is implemented, got 1",
  );
  await assertRejects(
    () => SecurityContext.create({ ...C1_CLIENT, persistStep: 0 }),
    RangeError,
    "persistStep must be a positive integer, got 0",
  );
  await assertRejects(
    () =>
      SecurityContext.create({
        ...C1_CLIENT,
        masterSecret: "secret" as unknown as Uint8Array,
      }),
    TypeError,
    "masterSecret must be a Uint8Array",
  );
  const json = JSON.parse(
    await Deno.readTextFile(
      new URL("../../shared/peers/oscore-client.json", import.meta.url),
    ).catch(() =>
      '{"secret_hex": "0102030405060708090a0b0c0d0e0f10", "salt_hex": "9e7ca92223786340", "sender-id_hex": "", "recipient-id_hex": "01", "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256"}'
    ),
  );
  const keys = await deriveKeys(parseContextJson(json));
  assertEquals(x(keys.senderKey), "f0910ed7295e6ad4b54fc793154302ff");
  assertThrows(
    () => parseContextJson({ ...json, algorithm: "AES-CCM-16-128-128" }),
    RangeError,
    'got "AES-CCM-16-128-128"',
  );
  assertThrows(
    () => parseContextJson({ ...json, "kdf-hashfun": "sha512" }),
    RangeError,
    'only kdf-hashfun "sha256"',
  );
  assertThrows(
    () => parseContextJson({ ...json, secret_hex: "xyz" }),
    TypeError,
    "secret_hex must be a string of hex digits",
  );
  assertThrows(
    () => parseContextJson({ ...json, extra: 1 }),
    TypeError,
    'unknown field "extra"',
  );
  assertThrows(() => parseContextJson([]), TypeError, "not a JSON object");
  const { "sender-id_hex": _, ...missing } = json;
  assertThrows(
    () => parseContextJson(missing),
    TypeError,
    "sender-id_hex is missing",
  );
});

Deno.test("OscoreContexts.find() picks by kid, and by kid context where two share a kid; refuses two the same", async () => {
  const a = await SecurityContext.create({
    ...C1_SERVER,
    recipientId: h("0a"),
    idContext: h("01"),
  });
  const b = await SecurityContext.create({
    ...C1_SERVER,
    recipientId: h("0a"),
    idContext: h("02"),
  });
  const c = await SecurityContext.create(C1_SERVER);
  const contexts = new OscoreContexts([a, b, c]);
  assertEquals(
    [
      contexts.find({ kid: h("0a"), kidContext: h("02") }),
      contexts.find({ kid: h("0a") }),
      contexts.find({ kid: h("") }),
      contexts.find({}),
      contexts.size,
    ],
    [b, undefined, c, undefined, 3],
  );
  assertThrows(
    () => new OscoreContexts([c, c]),
    RangeError,
    "two contexts have the Recipient ID (empty) and the same ID Context",
  );
});

Deno.test("SecurityContext.unprotectRequest() and unprotectResponse() meet 2,000 hostile messages with an OscoreError each, and nothing else", async () => {
  // Deterministic noise (xorshift): options, Partial IVs, kids and
  // ciphertexts of every length, near-valid ones among them.
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const bytes = (max: number) =>
    new Uint8Array(next() % (max + 1)).map(() => next() & 0xff);
  const server = await SecurityContext.create(C1_SERVER);
  const client = await SecurityContext.create(C1_CLIENT);
  const { message: valid, binding } = await client.protectRequest({
    code: Code.GET,
    token: h("01"),
    options: [],
    payload: new Uint8Array(0),
  });
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 2000; i++) {
    const flip = next() % valid.payload.length;
    // A valid ciphertext with one bit changed, or noise.
    const payload = i % 3 === 0
      ? valid.payload.map((b, at) => at === flip ? b ^ 1 : b)
      : bytes(40);
    const option = i % 5 === 0
      ? valid.options.find((o) => o.number === OSCORE_OPTION)!.value
      : bytes(12);
    const message = {
      code: i % 2 ? Code.POST : Code.CHANGED,
      token: bytes(8),
      options: [{ number: OSCORE_OPTION, value: option }],
      payload,
    };
    for (
      const attempt of [
        async () =>
          await server.unprotectRequest(message, decodeOscoreOption(option)),
        async () =>
          await client.unprotectResponse(message, {
            ...binding,
            reuse: true,
            lastPiv: -1,
          }),
      ]
    ) {
      try {
        await attempt();
        outcomes.set("accepted", (outcomes.get("accepted") ?? 0) + 1);
      } catch (error) {
        const kind = error instanceof OscoreError
          ? "OscoreError"
          : `other: ${error}`;
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
      }
    }
  }
  assertEquals([...outcomes.keys()], ["OscoreError"]);
});
