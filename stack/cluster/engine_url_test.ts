import { assertEquals, assertThrows } from "@std/assert";
import { describeEngine, parseEngineUrl } from "./engine_url.ts";

Deno.test("parseEngineUrl() reads host, port, database, credentials and TLS", () => {
  assertEquals(parseEngineUrl("redis://127.0.0.1:6379"), {
    tls: false,
    host: "127.0.0.1",
    port: 6379,
    database: 0,
  });
  assertEquals(parseEngineUrl("redis://db.example"), {
    tls: false,
    host: "db.example",
    port: 6379,
    database: 0,
  });
  assertEquals(parseEngineUrl("redis://:s%40cret@127.0.0.1:7000/3"), {
    tls: false,
    host: "127.0.0.1",
    port: 7000,
    password: "s@cret",
    database: 3,
  });
  assertEquals(parseEngineUrl("rediss://app:pw@[::1]:6380/"), {
    tls: true,
    host: "::1",
    port: 6380,
    username: "app",
    password: "pw",
    database: 0,
  });
});

Deno.test("parseEngineUrl() refuses what it cannot use, without repeating the URL", () => {
  const cases: [string, string][] = [
    ["not a url :secret@", "Cannot use the engine URL: expected redis://"],
    ["http://:secret@127.0.0.1", 'its scheme is "http:"'],
    ["redis://:secret@127.0.0.1/x", "the database must be a number"],
    ["redis://:secret@127.0.0.1?db=1", "a query or a fragment"],
    ["redis://:%E0%A4%A@127.0.0.1", "not well percent-encoded"],
  ];
  for (const [url, part] of cases) {
    const error = assertThrows(() => parseEngineUrl(url), TypeError, part);
    assertEquals(
      (error as Error).message.includes("secret") ||
        (error as Error).message.includes("%E0"),
      false,
      (error as Error).message,
    );
  }
});

Deno.test("describeEngine() names the engine without its credentials", () => {
  assertEquals(
    describeEngine(parseEngineUrl("redis://127.0.0.1:6379")),
    "redis://127.0.0.1:6379",
  );
  assertEquals(
    describeEngine(parseEngineUrl("redis://:hunter2@127.0.0.1:6379/2")),
    "redis://127.0.0.1:6379/2 (with a password)",
  );
  assertEquals(
    describeEngine(parseEngineUrl("rediss://ops:hunter2@[::1]:6380")),
    "rediss://[::1]:6380 (with a user and password)",
  );
});
