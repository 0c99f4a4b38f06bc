import { assertEquals } from "@std/assert";
import {
  codeName,
  contentFormatName,
  describeOptions,
  isError,
  numericValue,
  renderPayload,
} from "./render.ts";
import { encodeBlock, Option, uint, utf8 } from "../message.ts";

Deno.test("codeName() and isError() name codes and tell failures from successes", () => {
  assertEquals(
    ["2.05", "2.04", "4.04", "4.02", "5.00", "5.03", "4.99", "7.01"].map((
      c,
    ) => [
      codeName(c),
      isError(c),
    ]),
    [
      ["2.05 Content", false],
      ["2.04 Changed", false],
      ["4.04 Not Found", true],
      ["4.02 Bad Option", true],
      ["5.00 Internal Server Error", true],
      ["5.03 Service Unavailable", true],
      ["4.99", true],
      ["7.01", false],
    ],
  );
});

Deno.test("contentFormatName() names registered formats and shows the rest as numbers", () => {
  assertEquals([0, 40, 60, 112, 65000].map(contentFormatName), [
    "0 (text/plain; charset=utf-8)",
    "40 (application/link-format)",
    "60 (application/cbor)",
    "112 (application/senml+cbor)",
    "65000",
  ]);
});

Deno.test("describeOptions() shows every option by name and meaning, malformed values as bytes", () => {
  assertEquals(
    describeOptions([
      { number: Option.ETAG, value: new Uint8Array([0xab, 0x01]) },
      { number: Option.OBSERVE, value: new Uint8Array(0) },
      { number: Option.URI_PATH, value: utf8("a b") },
      { number: Option.CONTENT_FORMAT, value: uint(50) },
      { number: Option.MAX_AGE, value: uint(60) },
      { number: Option.ACCEPT, value: uint(9999) },
      {
        number: Option.BLOCK2,
        value: encodeBlock({ num: 2, more: true, szx: 6 }),
      },
      {
        number: Option.BLOCK2,
        value: encodeBlock({ num: 0, more: false, szx: 7 }),
      },
      { number: Option.BLOCK1, value: new Uint8Array([1, 2, 3, 4]) },
      { number: Option.SIZE2, value: uint(4200) },
      { number: Option.IF_NONE_MATCH, value: new Uint8Array(0) },
      { number: 2049, value: new Uint8Array([7]) },
    ]),
    [
      ["ETag", "0xab01"],
      ["Observe", "0"],
      ["Uri-Path", '"a b"'],
      ["Content-Format", "50 (application/json)"],
      ["Max-Age", "60 s"],
      ["Accept", "9999"],
      ["Block2", "block 2, more follow, 1024 bytes each"],
      ["Block2", "block 0, BERT: 1024-byte units"],
      ["Block1", "0x01020304"],
      ["Size2", "4200"],
      ["If-None-Match", "(empty)"],
      ["Option 2049", "0x07"],
    ],
  );
});

Deno.test("renderPayload() reads each payload by its content format and says when it cannot", () => {
  const cases: [Uint8Array, number | undefined][] = [
    [new Uint8Array(0), 50],
    [utf8("Welcome"), 0],
    [utf8("Welcome"), undefined],
    [utf8("tab\tand\nnewline"), undefined],
    [utf8("bell\u0007"), undefined],
    [utf8("bell\u0007"), 0],
    [new Uint8Array([0xff, 0xfe]), 0],
    [utf8('{"a":[1,2],"b":"x"}'), 50],
    [utf8("{oops"), 50],
    [new Uint8Array([0xc3]), 110],
    [new Uint8Array([0xa1, 0x61, 0x74, 0xf9, 0x4d, 0x60]), 60],
    [new Uint8Array([0xa1, 0x61]), 60],
    [new Uint8Array(20).map((_, i) => i), 42],
    [utf8("</a>;obs"), 40],
  ];
  assertEquals(cases.map(([p, cf]) => renderPayload(p, cf)), [
    { kind: "empty", text: "" },
    { kind: "text", text: "Welcome" },
    { kind: "text", text: "Welcome" },
    { kind: "text", text: "tab\tand\nnewline" },
    { kind: "hex", text: "62 65 6c 6c 07" },
    { kind: "text", text: "bell\u0007" },
    { kind: "hex", text: "ff fe", note: "Not valid UTF-8" },
    { kind: "json", text: '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "x"\n}' },
    {
      kind: "text",
      text: "{oops",
      note: `Not valid JSON (${errorOf(() => JSON.parse("{oops"))})`,
    },
    { kind: "hex", text: "c3", note: "Not valid UTF-8, so not JSON" },
    { kind: "cbor", text: '{"t": 21.5}' },
    {
      kind: "hex",
      text: "a1 61",
      note: "Not valid CBOR (Truncated data item at byte 1)",
    },
    {
      kind: "hex",
      text: "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n10 11 12 13",
    },
    { kind: "text", text: "</a>;obs" },
  ]);
});

Deno.test("numericValue() takes plain numbers only", () => {
  const values = [
    "42",
    " -3.5e2\n",
    ".5",
    "7.",
    "+1",
    "",
    "1 2",
    "0x10",
    "Infinity",
    "1e999",
    "12 °C",
    "1".repeat(65),
  ].map((s) => numericValue(utf8(s)));
  assertEquals(values, [
    42,
    -350,
    0.5,
    7,
    1,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  assertEquals(numericValue(new Uint8Array([0x31, 0xff])), undefined);
});

function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    return (error as Error).message;
  }
  return "no error";
}
