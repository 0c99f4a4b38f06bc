import { assertEquals, assertRejects } from "@std/assert";
import {
  bindClientUdp,
  type BindOptions,
  type BoundUdp,
  clientBindAddress,
  resolvePeer,
} from "./udp_node.ts";

/** A bind that hands out `ports` in turn and writes what happens. */
function fakeBind(ports: number[], trace: string[]) {
  return (_onDatagram: unknown, options: BindOptions = {}) => {
    const port = ports.shift()!;
    trace.push(`bind ${options.hostname}:${options.port} -> ${port}`);
    const bound: BoundUdp = {
      port,
      send() {},
      close() {
        trace.push(`close ${port}`);
      },
    };
    return Promise.resolve(bound);
  };
}

const ignore = () => {};

Deno.test("CoAP over UDP, the client's socket: bound on loopback for a loopback server, on every address of the family for any other (a 127.0.0.1 socket cannot reach a device)", () => {
  assertEquals(
    [
      "127.0.0.1",
      "127.0.0.2",
      "192.0.2.7",
      "10.0.0.1",
      "sensor.example",
      "::1",
      "2001:db8::7",
      "::ffff:127.0.0.1",
    ].map(clientBindAddress),
    [
      "127.0.0.1",
      "127.0.0.1",
      "0.0.0.0",
      "0.0.0.0",
      "0.0.0.0",
      "::1",
      "::",
      "::",
    ],
  );
});

Deno.test("CoAP over UDP, the client's socket: an ephemeral port that is the server's own is closed and drawn again, so the client never hears its own requests; a port that is not is kept at once", async () => {
  const trace: string[] = [];
  const peer = { hostname: "127.0.0.1", port: 40000 };
  const bound = await bindClientUdp(
    ignore,
    peer,
    {},
    fakeBind([40000, 40000, 40001], trace),
  );
  assertEquals(bound.port, 40001);
  assertEquals(trace, [
    "bind 127.0.0.1:0 -> 40000",
    "close 40000",
    "bind 127.0.0.1:0 -> 40000",
    "close 40000",
    "bind 127.0.0.1:0 -> 40001",
  ]);
  const first: string[] = [];
  const kept = await bindClientUdp(
    ignore,
    { hostname: "192.0.2.7", port: 5683 },
    {},
    fakeBind([5684], first),
  );
  assertEquals([kept.port, first], [5684, ["bind 0.0.0.0:0 -> 5684"]]);
});

Deno.test("CoAP over UDP, the client's socket: given the server's port 8 times, binding fails in words, every socket closed", async () => {
  const trace: string[] = [];
  await assertRejects(
    () =>
      bindClientUdp(
        ignore,
        { hostname: "::1", port: 5683 },
        {},
        fakeBind(Array(9).fill(5683), trace),
      ),
    Error,
    "Cannot bind the client's socket: the system gave it the port it talks to (::1:5683) 8 times",
  );
  assertEquals(
    trace,
    Array.from({ length: 8 }, () => ["bind ::1:0 -> 5683", "close 5683"])
      .flat(),
  );
});

Deno.test("CoAP over UDP, the client's socket: a named address and port that are the server's own fail before binding; the same port on another address, or a remote server's port, is the caller's to name", async () => {
  const trace: string[] = [];
  const bind = fakeBind([5683, 5683, 5683], trace);
  for (
    const [hostname, port] of [
      ["127.0.0.1", "127.0.0.1"],
      ["0.0.0.0", "127.0.0.1"],
      ["::", "::1"],
    ]
  ) {
    await assertRejects(
      () =>
        bindClientUdp(ignore, { hostname: port, port: 5683 }, {
          hostname,
          port: 5683,
        }, bind),
      Error,
      `Cannot bind the client's socket to ${hostname}:5683: it talks to ${port}:5683, and would hear its own requests`,
    );
  }
  assertEquals(trace, []);
  await bindClientUdp(ignore, { hostname: "127.0.0.1", port: 5683 }, {
    hostname: "127.0.0.2",
    port: 5683,
  }, bind);
  await bindClientUdp(ignore, { hostname: "192.0.2.7", port: 5683 }, {
    port: 5683,
  }, bind);
  await bindClientUdp(ignore, { hostname: "192.0.2.7", port: 5683 }, {
    hostname: "0.0.0.0",
    port: 5683,
  }, bind);
  assertEquals(trace, [
    "bind 127.0.0.2:5683 -> 5683",
    "bind 0.0.0.0:5683 -> 5683",
    "bind 0.0.0.0:5683 -> 5683",
  ]);
});

Deno.test("CoAP over UDP, the client's peer: a host name is resolved once, to the address its answers come from; an IP address is kept without a lookup; a name that does not resolve fails in words", async () => {
  const asked: string[] = [];
  const lookup = (name: string) => {
    asked.push(name);
    return name === "sensor.example"
      ? Promise.resolve({ address: "192.0.2.7" })
      : Promise.reject(new Error(`getaddrinfo ENOTFOUND ${name}`));
  };
  assertEquals(
    await resolvePeer({ hostname: "sensor.example", port: 5683 }, lookup),
    { hostname: "192.0.2.7", port: 5683 },
  );
  assertEquals(
    await resolvePeer({ hostname: "10.0.0.1", port: 1 }, lookup),
    { hostname: "10.0.0.1", port: 1 },
  );
  assertEquals(
    await resolvePeer({ hostname: "2001:db8::7", port: 2 }, lookup),
    { hostname: "2001:db8::7", port: 2 },
  );
  await assertRejects(
    () => resolvePeer({ hostname: "nowhere.example", port: 5683 }, lookup),
    Error,
    "Cannot resolve nowhere.example: getaddrinfo ENOTFOUND nowhere.example",
  );
  assertEquals(asked, ["sensor.example", "nowhere.example"]);
});
