import { assertEquals, assertThrows } from "@std/assert";
import { cborDiagnostic, CborError } from "./cbor.ts";

const bytes = (hex: string) =>
  new Uint8Array(hex.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);

// RFC 8949 Appendix A: encodings and their diagnostic notation.
const APPENDIX_A: [string, string][] = [
  ["00", "0"],
  ["17", "23"],
  ["1818", "24"],
  ["1903e8", "1000"],
  ["1a000f4240", "1000000"],
  ["1b000000e8d4a51000", "1000000000000"],
  ["1bffffffffffffffff", "18446744073709551615"],
  ["3bffffffffffffffff", "-18446744073709551616"],
  ["20", "-1"],
  ["3863", "-100"],
  ["3903e7", "-1000"],
  ["f90000", "0.0"],
  ["f98000", "-0.0"],
  ["f93c00", "1.0"],
  ["fb3ff199999999999a", "1.1"],
  ["f93e00", "1.5"],
  ["f97bff", "65504.0"],
  ["fa47c35000", "100000.0"],
  ["fa7f7fffff", "3.4028234663852886e+38"],
  ["fb7e37e43c8800759c", "1e+300"],
  ["f90001", "5.960464477539063e-8"],
  ["f90400", "0.00006103515625"],
  ["f9c400", "-4.0"],
  ["fbc010666666666666", "-4.1"],
  ["f97c00", "Infinity"],
  ["f97e00", "NaN"],
  ["f9fc00", "-Infinity"],
  ["fa7f800000", "Infinity"],
  ["fb7ff8000000000000", "NaN"],
  ["f4", "false"],
  ["f5", "true"],
  ["f6", "null"],
  ["f7", "undefined"],
  ["f0", "simple(16)"],
  ["f8ff", "simple(255)"],
  ["c074323031332d30332d32315432303a30343a30305a", '0("2013-03-21T20:04:00Z")'],
  ["c11a514b67b0", "1(1363896240)"],
  ["d74401020304", "23(h'01020304')"],
  ["40", "h''"],
  ["4401020304", "h'01020304'"],
  ["60", '""'],
  ["6161", '"a"'],
  ["6449455446", '"IETF"'],
  ["62225c", '"\\"\\\\"'],
  ["62c3bc", '"ü"'],
  ["63e6b0b4", '"水"'],
  ["80", "[]"],
  ["83010203", "[1, 2, 3]"],
  ["8301820203820405", "[1, [2, 3], [4, 5]]"],
  ["a0", "{}"],
  ["a201020304", "{1: 2, 3: 4}"],
  ["a26161016162820203", '{"a": 1, "b": [2, 3]}'],
  ["826161a161626163", '["a", {"b": "c"}]'],
  ["5f42010243030405ff", "(_ h'0102', h'030405')"],
  ["7f657374726561646d696e67ff", '(_ "strea", "ming")'],
  ["5fff", "''_"],
  ["7fff", '""_'],
  ["9fff", "[_ ]"],
  ["9f018202039f0405ffff", "[_ 1, [2, 3], [_ 4, 5]]"],
  ["bf61610161629f0203ffff", '{_ "a": 1, "b": [_ 2, 3]}'],
];

Deno.test("cborDiagnostic() writes RFC 8949 Appendix A's examples as it does", () => {
  const got = APPENDIX_A.map(([hex]) => [hex, cborDiagnostic(bytes(hex))]);
  assertEquals(got, APPENDIX_A);
});

Deno.test("cborDiagnostic() reads a subarray at its own offset", () => {
  const buffer = bytes("ff83010203ff");
  assertEquals(cborDiagnostic(buffer.subarray(1, 5)), "[1, 2, 3]");
});

Deno.test("cborDiagnostic() names each malformation and its offset", () => {
  const cases: [string, string][] = [
    ["", "Truncated data item at byte 0"],
    ["18", "Truncated data item at byte 0"],
    ["1b0000", "Truncated data item at byte 0"],
    ["1c", "Reserved additional information 28 at byte 0"],
    ["fc", "Reserved additional information 28 at byte 0"],
    ["f818", "Simple value 24 must be encoded in the initial byte at byte 0"],
    ["1f", "Major type 0 cannot have an indefinite length at byte 0"],
    ["df00", "Major type 6 cannot have an indefinite length at byte 0"],
    ["ff", "Unexpected break at byte 0"],
    ["81ff", "Unexpected break at byte 1"],
    ["4401", "Truncated data item at byte 0"],
    ["62c3", "Truncated data item at byte 0"],
    ["61ff", "Text string is not valid UTF-8 at byte 0"],
    ["83", "Truncated data item at byte 0"],
    ["8301", "Truncated data item at byte 0"],
    ["a1", "Truncated data item at byte 0"],
    ["9b00000001000000000102", "Truncated data item at byte 0"],
    ["5b0000000100000000", "Truncated data item at byte 0"],
    [
      "5f01ff",
      "A chunk of an indefinite-length string must be a definite string of the same type at byte 1",
    ],
    [
      "5f6161ff",
      "A chunk of an indefinite-length string must be a definite string of the same type at byte 1",
    ],
    [
      "5f5fffff",
      "A chunk of an indefinite-length string must be a definite string of the same type at byte 1",
    ],
    ["9f01", "Truncated data item at byte 2"],
    ["bf01ff", "A map ends between a key and its value at byte 0"],
    ["0000", "1 bytes after the data item at byte 1"],
    ["c1", "Truncated data item at byte 1"],
  ];
  const got = cases.map(([hex]) => {
    try {
      return [hex, `returned ${cborDiagnostic(bytes(hex))}`];
    } catch (error) {
      return [
        hex,
        error instanceof CborError ? error.message : `threw ${error}`,
      ];
    }
  });
  assertEquals(got, cases);
});

Deno.test("cborDiagnostic() refuses nesting past 256 levels instead of exhausting the stack", () => {
  const deep = new Uint8Array(100_000).fill(0x81);
  const error = assertThrows(() => cborDiagnostic(deep), CborError);
  assertEquals(error.message, "Nested deeper than 256 levels at byte 257");
  const ok = new Uint8Array(257).fill(0x81);
  ok[256] = 0x00;
  assertEquals(cborDiagnostic(ok), "[".repeat(256) + "0" + "]".repeat(256));
});

Deno.test("cborDiagnostic() decodes or rejects every mutated input, never anything else", () => {
  let seed = 7;
  const random = (n: number) =>
    Math.floor((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 * n);
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    // One of Appendix A's encodings with one byte changed, and sometimes
    // cut short or extended.
    const input = [...bytes(APPENDIX_A[random(APPENDIX_A.length)][0])];
    input[random(input.length)] = random(256);
    const cut = random(4);
    if (cut === 0) input.length = random(input.length);
    if (cut === 1) input.push(random(256));
    try {
      assertEquals(typeof cborDiagnostic(new Uint8Array(input)), "string");
      decoded++;
    } catch (error) {
      if (!(error instanceof CborError)) throw error;
    }
  }
  // Both outcomes occur: the inputs exercise the decoder, not just its guard.
  assertEquals([decoded > 2000, decoded < 18_000], [true, true]);
});
