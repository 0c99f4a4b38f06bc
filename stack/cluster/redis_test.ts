import { assertEquals, assertInstanceOf, assertThrows } from "@std/assert";
import { encode, parseEngineUrl, Parser, ReplyError, text } from "./redis.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("encode() writes a command as a RESP array of bulk strings, bytes as they are", () => {
  assertEquals(
    new TextDecoder().decode(encode(["SET", "k", 12, bytes("é")])),
    "*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\né\r\n",
  );
  const binary = encode(["X", new Uint8Array([0, 13, 10, 255])]);
  assertEquals([...binary.subarray(binary.length - 6)], [
    0,
    13,
    10,
    255,
    13,
    10,
  ]);
});

Deno.test("Parser reads every reply type, across chunk boundaries, and waits for the rest", () => {
  const parser = new Parser();
  const wire = bytes(
    "+OK\r\n-ERR wrong\r\n:42\r\n$4\r\na\r\nb\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n*-1\r\n",
  );
  const replies: unknown[] = [];
  // One byte at a time: every reply must wait for its last byte.
  for (const byte of wire) {
    parser.feed(new Uint8Array([byte]));
    for (;;) {
      const reply = parser.next();
      if (reply === undefined) break;
      replies.push(reply);
    }
  }
  assertEquals(replies.length, 7);
  assertEquals(replies[0], "OK");
  assertInstanceOf(replies[1], ReplyError);
  assertEquals((replies[1] as Error).message, "ERR wrong");
  assertEquals(replies[2], 42);
  assertEquals(text(replies[3] as Uint8Array), "a\r\nb");
  assertEquals(replies[4], null);
  assertEquals((replies[5] as Uint8Array[]).map(text), ["message", "ch", "hi"]);
  assertEquals(replies[6], null);
});

Deno.test("parseEngineUrl() takes redis:// URLs with their defaults and names anything else", () => {
  assertEquals(parseEngineUrl("redis://10.0.0.2:7000"), {
    hostname: "10.0.0.2",
    port: 7000,
  });
  assertEquals(parseEngineUrl("redis://localhost"), {
    hostname: "localhost",
    port: 6379,
  });
  assertThrows(
    () => parseEngineUrl("nats://127.0.0.1:4222"),
    TypeError,
    "only redis:// is supported",
  );
  assertThrows(
    () => parseEngineUrl("not a url"),
    TypeError,
    "redis://host:port",
  );
});
