import { assertEquals, assertThrows } from "@std/assert";
import { siphash24 } from "./siphash.ts";

const KEY = Uint8Array.from({ length: 16 }, (_, i) => i);
const message = (n: number) => Uint8Array.from({ length: n }, (_, i) => i);
const hex = (bytes: Uint8Array) =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("siphash24() gives the reference's test vectors: key 00..0f, messages 00..(n-1) across the 8-byte block boundary", () => {
  const vectors: [number, string][] = [
    [0, "310e0edd47db6f72"],
    [1, "fd67dc93c539f874"],
    [2, "5a4fa9d909806c0d"],
    [7, "37d1018bf50002ab"],
    [8, "6224939a79f5f593"],
    [9, "b0e4a90bdf82009e"],
    [15, "e545be4961ca29a1"],
  ];
  assertEquals(
    vectors.map(([n]) => [n, hex(siphash24(KEY, message(n)))]),
    vectors,
  );
});

Deno.test("siphash24() refuses a key that is not 16 bytes, naming its length", () => {
  assertThrows(
    () => siphash24(new Uint8Array(8), message(1)),
    RangeError,
    "SipHash takes a 16-byte key, got 8",
  );
});
