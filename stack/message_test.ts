import {
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import {
  CoapFormatError,
  type CoapMessage,
  Code,
  codeKind,
  codeToString,
  decodeBlock,
  decodeMessage,
  encodeBlock,
  encodeMessage,
  keyToken,
  Option,
  parseCode,
  readUint,
  strictText,
  tokenKey,
  uint,
  utf8,
  utf8Length,
} from "./message.ts";
import { responseMessage } from "./exchange.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

function message(partial: Partial<CoapMessage>): CoapMessage {
  return {
    code: Code.GET,
    token: bytes(),
    options: [],
    payload: bytes(),
    ...partial,
  };
}

Deno.test("encodeMessage() writes RFC 8323 §3.2 framing: Len 0, TKL, code, token, options, marker, payload", () => {
  const encoded = encodeMessage(message({
    code: Code.CONTENT,
    token: bytes(0xaa, 0xbb),
    options: [
      { number: 12, value: bytes() },
      { number: 6, value: bytes(5) },
    ],
    payload: utf8("ok"),
  }));
  assertEquals([...encoded], [
    0x02, // Len 0, TKL 2
    0x45, // 2.05
    0xaa,
    0xbb,
    0x61,
    5, // Observe (6): delta 6, length 1
    0x60, // Content-Format (12): delta 6, length 0
    0xff,
    111,
    107,
  ]);
});

Deno.test("encodeMessage() uses 1- and 2-byte extensions for deltas and lengths of 13 and 269 and more", () => {
  const long = new Uint8Array(300).fill(7);
  const encoded = encodeMessage(message({
    options: [
      { number: 13, value: bytes(1) },
      { number: 13 + 269, value: long },
    ],
  }));
  assertEquals([...encoded.slice(0, 9)], [
    0x00,
    0x01,
    0xd1, // delta 13 (ext 0), length 1
    0x00,
    1,
    0xee, // delta 269 (ext 2 bytes: 0), length 269+ (ext 2 bytes: 31)
    0x00,
    0x00,
    0x00,
  ]);
  assertEquals(encoded[9], 31);
  assertEquals(encoded.length, 2 + 3 + 5 + 300);
  const decoded = decodeMessage(encoded);
  assertEquals(decoded.options.map((o) => [o.number, o.value.length]), [
    [13, 1],
    [282, 300],
  ]);
});

Deno.test("encodeMessage() keeps repeated options in their order and sorts by number", () => {
  const decoded = decodeMessage(encodeMessage(message({
    options: [
      { number: 15, value: utf8("b=2") },
      { number: 11, value: utf8("x") },
      { number: 15, value: utf8("a=1") },
      { number: 11, value: utf8("y") },
    ],
  })));
  assertEquals(
    decoded.options.map((o) =>
      `${o.number}:${new TextDecoder().decode(o.value)}`
    ),
    ["11:x", "11:y", "15:b=2", "15:a=1"],
  );
});

Deno.test("encodeMessage() rejects what cannot be framed, naming it", () => {
  const cases: [Partial<CoapMessage>, string][] = [
    [{ code: 256 }, "Cannot encode the code 256"],
    [{ code: 1.5 }, "Cannot encode the code 1.5"],
    [{ token: new Uint8Array(9) }, "token of 9 bytes"],
    [{ options: [{ number: -1, value: bytes() }] }, "option number -1"],
    [{ options: [{ number: 70000, value: bytes() }] }, "option number 70000"],
  ];
  for (const [partial, text] of cases) {
    const error = assertThrows(() => encodeMessage(message(partial)));
    assertInstanceOf(error, CoapFormatError);
    assertStringIncludes(error.message, text);
  }
});

Deno.test("decodeMessage() reads a message without options or payload", () => {
  assertEquals(decodeMessage(bytes(0x00, 0xe2)), {
    code: Code.PING,
    token: bytes(),
    options: [],
    payload: bytes(),
  });
});

Deno.test("decodeMessage() rejects every malformed input with a CoapFormatError naming the fault", () => {
  const cases: [number[], string][] = [
    [[], "0 bytes, a message has at least 2"],
    [[0x00], "1 byte, a message has at least 2"],
    [[0x10, 0x01], "length nibble is 1, over WebSocket it must be 0"],
    [[0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9], "token length 9 is reserved"],
    [[0x0f, 0x01], "token length 15 is reserved"],
    [[0x03, 0x01, 1, 2], "ends inside its 3-byte token"],
    [[0x00, 0x01, 0xff], "payload marker with no payload"],
    [[0x00, 0x01, 0xf0], "option delta nibble 15 is reserved"],
    [[0x00, 0x01, 0x0f], "option length nibble 15 is reserved"],
    [[0x00, 0x01, 0xd0], "ends inside an option header"],
    [[0x00, 0x01, 0xe0, 0x01], "ends inside an option header"],
    [[0x00, 0x01, 0x0d], "ends inside an option header"],
    [[0x00, 0x01, 0x03, 1, 2], "value of option 0 (3 bytes) runs past the end"],
    [[0x00, 0x01, 0xe0, 0xff, 0xff], "option number 65804 exceeds 65535"],
  ];
  for (const [input, text] of cases) {
    const error = assertThrows(() => decodeMessage(new Uint8Array(input)));
    assertInstanceOf(error, CoapFormatError, `for ${input}`);
    assertStringIncludes(error.message, text, `for ${input}`);
  }
});

Deno.test("decodeMessage() returns views of the input, not copies", () => {
  const input = bytes(0x01, 0x45, 9, 0x61, 3, 0xff, 1);
  const decoded = decodeMessage(input);
  assertEquals([decoded.token, decoded.options[0].value, decoded.payload], [
    bytes(9),
    bytes(3),
    bytes(1),
  ]);
  assertEquals(
    [decoded.token, decoded.options[0].value, decoded.payload].every((v) =>
      v.buffer === input.buffer
    ),
    true,
  );
});

Deno.test("tokenKey() tells tokens apart by value and length", () => {
  const tokens = [[], [0], [0, 0], [1], [0, 1], [1, 0], [255, 255, 255, 255], [
    0,
    0,
    0,
    0,
    1,
  ], [0, 0, 0, 0, 0, 1]];
  const keys = new Set(tokens.map((t) => tokenKey(new Uint8Array(t))));
  assertEquals(keys.size, tokens.length);
  assertEquals(
    tokenKey(new Uint8Array([1, 2])),
    tokenKey(new Uint8Array([1, 2])),
  );
});

Deno.test("keyToken() gives back the token of every length from its tokenKey()", () => {
  const tokens = [
    [],
    [0],
    [255],
    [0, 0],
    [1, 0],
    [0x12, 0x34, 0x56],
    [255, 255, 255, 255],
    [0x80, 0, 0, 1],
    [0, 0, 0, 0, 1],
    [1, 2, 3, 4, 5, 6, 7, 0xff],
  ];
  for (const bytes of tokens) {
    const token = new Uint8Array(bytes);
    assertEquals(keyToken(tokenKey(token)), token, String(bytes));
  }
});

Deno.test("decodeMessage() on random bytes either throws CoapFormatError or returns a message that re-encodes to the same bytes", () => {
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const input = new Uint8Array(Math.floor(random() * 24));
    for (let j = 0; j < input.length; j++) {
      input[j] = Math.floor(random() * 256);
    }
    // Bias towards well-formed starts so the option paths are exercised.
    if (input.length > 0 && random() < 0.7) input[0] &= 0x07;
    let message: CoapMessage;
    try {
      message = decodeMessage(input);
    } catch (error) {
      assertInstanceOf(error, CoapFormatError);
      continue;
    }
    decoded++;
    // Options arrive sorted (deltas are never negative) and encoding is
    // canonical except for over-long extensions, which only a peer writes.
    const again = decodeMessage(encodeMessage(message));
    assertEquals(again, message);
  }
  assertEquals(decoded > 1000, true, `only ${decoded} inputs decoded`);
});

Deno.test("codeToString(), parseCode() and codeKind() agree on every code byte", () => {
  for (let code = 0; code < 256; code++) {
    assertEquals(parseCode(codeToString(code)), code);
  }
  assertEquals(codeToString(Code.NOT_FOUND), "4.04");
  assertEquals(
    [0, 1, 0x45, 0x84, 0xa0, 0xe1, 0x20, 0x60, 0xc0].map(codeKind),
    [
      "empty",
      "request",
      "response",
      "response",
      "response",
      "signaling",
      "reserved",
      "reserved",
      "reserved",
    ],
  );
  for (const bad of ["2.5", "8.00", "2.32", "x", "2.051"]) {
    assertThrows(
      () => parseCode(bad),
      CoapFormatError,
      "Cannot parse the code",
    );
  }
});

Deno.test("uint() and readUint() round-trip 0 to 2^32-1 in minimal bytes", () => {
  for (const n of [0, 1, 255, 256, 65535, 65536, 2 ** 24, 2 ** 32 - 1]) {
    const value = uint(n);
    assertEquals(readUint(value), n);
    assertEquals(value[0] !== 0 || value.length === 0, true);
  }
  assertEquals(uint(0).length, 0);
  assertThrows(() => uint(-1), CoapFormatError);
  assertThrows(() => uint(2 ** 32), CoapFormatError);
  assertThrows(() => readUint(new Uint8Array(5)), CoapFormatError, "5 bytes");
});

Deno.test("encodeBlock() and decodeBlock() follow RFC 7959 §2.2", () => {
  assertEquals([...encodeBlock({ num: 0, more: true, szx: 6 })], [0x0e]);
  assertEquals([...encodeBlock({ num: 0, more: false, szx: 0 })], []);
  assertEquals(decodeBlock(encodeBlock({ num: 4095, more: true, szx: 2 })), {
    num: 4095,
    more: true,
    szx: 2,
  });
  assertThrows(
    () => encodeBlock({ num: 2 ** 20, more: false, szx: 0 }),
    CoapFormatError,
  );
  assertThrows(
    () => encodeBlock({ num: 0, more: false, szx: 8 }),
    CoapFormatError,
  );
  assertThrows(
    () => decodeBlock(new Uint8Array(4)),
    CoapFormatError,
    "4 bytes",
  );
});

Deno.test("strictText() rejects invalid UTF-8, naming the option", () => {
  assertEquals(strictText(utf8("ä"), "Uri-Path"), "ä");
  assertThrows(
    () => strictText(bytes(0xc3), "Uri-Query"),
    CoapFormatError,
    "Uri-Query is not valid UTF-8",
  );
});

Deno.test("utf8Length() counts what TextEncoder writes: 1 to 4 bytes a character, a lone surrogate as U+FFFD", () => {
  const samples = [
    "",
    "hi",
    "20 °C",
    "€",
    "日本語",
    "😀",
    "a😀b",
    "\ud800", // a lone high surrogate
    "\udc00x", // a lone low surrogate
    "\ud800\ud800\udc00", // a lone high one before a pair
    "😀\ud83d", // a pair, then a high surrogate at the end
    "\u007f\u0080\u07ff\u0800\uffff",
  ];
  for (const sample of samples) {
    assertEquals(
      utf8Length(sample),
      utf8(sample).length,
      JSON.stringify(sample),
    );
  }
  // And for random strings of every kind of code unit.
  let seed = 7;
  const random = () => (seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < 500; i++) {
    const units = Array.from({ length: Math.floor(random() * 12) }, () => {
      const kind = random();
      return kind < 0.3
        ? Math.floor(random() * 0x80)
        : kind < 0.5
        ? 0x80 + Math.floor(random() * 0x780)
        : kind < 0.7
        ? 0xd800 + Math.floor(random() * 0x800) // surrogates, paired or not
        : Math.floor(random() * 0x10000);
    });
    const sample = String.fromCharCode(...units);
    assertEquals(
      utf8Length(sample),
      utf8(sample).length,
      JSON.stringify(sample),
    );
  }
});

Deno.test("encodeMessage() writes a text payload as its UTF-8 bytes, the same frame as the bytes give", () => {
  for (
    const payload of [
      "",
      "Welcome",
      "20 °C",
      "a😀b",
      "\ud800 lone",
      "x".repeat(300),
    ]
  ) {
    const fields = {
      code: Code.CONTENT,
      token: bytes(1, 2),
      options: [{ number: 12, value: bytes() }],
    };
    assertEquals(
      encodeMessage({ ...fields, payload }),
      encodeMessage({ ...fields, payload: utf8(payload) }),
      JSON.stringify(payload),
    );
  }
});

Deno.test("responseMessage() lists Observe, Content-Format, Max-Age and then the resource's own options, exactly those", () => {
  const etag = { number: Option.ETAG, value: bytes(7) };
  const token = bytes(1);
  const full = responseMessage(
    { payload: "x", contentFormat: 0, maxAge: 60, options: [etag] },
    token,
    5,
  );
  assertEquals(full.options.map((o) => [o.number, [...o.value]]), [
    [Option.OBSERVE, [5]],
    [Option.CONTENT_FORMAT, []],
    [Option.MAX_AGE, [60]],
    [Option.ETAG, [7]],
  ]);
  assertEquals(full.options.length, 4);
  assertEquals(Object.keys(full.options), ["0", "1", "2", "3"]); // no holes
  assertEquals(responseMessage({ payload: "x" }, token).options, []);
  assertEquals(
    responseMessage({ maxAge: 1 }, token).options.map((o) => o.number),
    [Option.MAX_AGE],
  );
  // Any iterable of options, as the resource gives it.
  const fromSet = responseMessage(
    { options: new Set([etag]) as unknown as typeof etag[] },
    token,
  );
  assertEquals(fromSet.options.map((o) => o.number), [Option.ETAG]);
  // Text stays text until it is encoded.
  assertEquals(full.payload, "x");
});
