// The fuzzer's DTLS target: a server endpoint with a pre-shared key, sent
// the datagrams of real handshakes (first and cookie'd ClientHellos, a
// key exchange with its ChangeCipherSpec and Finished, sealed application
// data), their mutations, alerts, records of every type and epoch, and
// noise, from a few sources. No cookie of this server's can be among them
// (its secret is new each run), so no session may start. Defects: anything
// thrown to the platform; a session or handshake started, or left after
// close; a datagram sent larger than what came in from that source
// (amplification).

import fc from "fast-check";
import { DtlsEndpoint } from "../../dtls.ts";
import type { PeerAddress } from "../../udp.ts";
import { mutate, mutation } from "./generators.ts";
import { escaped, escapedSince } from "./targets.ts";

const KEY = new TextEncoder().encode("secretPSK");
const SERVER: PeerAddress = { hostname: "127.0.0.1", port: 5684 };
const SOURCES: PeerAddress[] = [0, 1, 2].map((i) => ({
  hostname: "127.0.0.1",
  port: 40000 + i,
}));

/** A real handshake's client datagrams, and some sealed data after it. */
const POOL: Uint8Array[] = await (async () => {
  const captured: Uint8Array[] = [];
  const server: DtlsEndpoint = new DtlsEndpoint(
    (datagram) => queueMicrotask(() => client.receive(datagram, SERVER)),
    () => {},
    { pskLookup: () => KEY, pskHint: "hint" },
  );
  const client: DtlsEndpoint = new DtlsEndpoint(
    (datagram) => {
      captured.push(datagram);
      queueMicrotask(() => server.receive(datagram, SOURCES[0]));
    },
    () => {},
    { psk: { identity: "me", key: KEY } },
  );
  const session = await client.connect(SERVER);
  for (const text of ["a", "bb", "a CoAP message"]) {
    session.send(new TextEncoder().encode(text));
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  client.close();
  await new Promise((resolve) => setTimeout(resolve, 20));
  server.close();
  return captured;
})();

const datagram: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...POOL) },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constantFrom(...POOL),
      fc.array(mutation, { minLength: 1, maxLength: 3 }),
    ).map(([bytes, changes]) => changes.reduce(mutate, bytes)),
  },
  {
    weight: 1,
    // A record of any type, epoch and length field around its body.
    arbitrary: fc.record({
      type: fc.integer({ min: 19, max: 24 }),
      epoch: fc.integer({ min: 0, max: 2 }),
      claimed: fc.integer({ min: 0, max: 80 }),
      body: fc.uint8Array({ maxLength: 64 }),
    }).map(({ type, epoch, claimed, body }) =>
      new Uint8Array([
        type,
        0xfe,
        0xfd,
        0,
        epoch,
        0,
        0,
        0,
        0,
        0,
        1,
        claimed >> 8,
        claimed & 0xff,
        ...body,
      ])
    ),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
);

/** A session: datagrams from a few sources, in order. */
export const dtlsSession: fc.Arbitrary<{ from: number; bytes: Uint8Array }[]> =
  fc.array(
    fc.record({ from: fc.integer({ min: 0, max: 2 }), bytes: datagram }),
    { minLength: 1, maxLength: 20 },
  );

/** The target: see the module's comment. */
export async function dtls(
  inputs: { from: number; bytes: Uint8Array }[],
): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const received = new Map<number, number>();
  const server = new DtlsEndpoint(
    (datagram, to) => {
      const source = SOURCES.findIndex((s) => s.port === to.port);
      // Before a session exists, nothing sent may outgrow what came in.
      if (
        server.sessions === 0 && datagram.length > (received.get(source) ?? 0)
      ) {
        defects.push(
          `sent ${datagram.length} bytes to source ${source}, which sent ${
            received.get(source) ?? 0
          }`,
        );
      }
    },
    () => {},
    { pskLookup: () => KEY, handshakeTimeout: 50 },
  );
  for (const { from, bytes } of inputs) {
    received.set(from, (received.get(from) ?? 0) + bytes.length);
    server.receive(bytes, SOURCES[from]);
    if (server.sessions !== 0 || server.handshakes !== 0) {
      defects.push("a session started without a cookie of this server's");
      break;
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 1));
  server.close();
  if (server.sessions !== 0 || server.handshakes !== 0) {
    defects.push(
      `left after close: ${server.sessions} sessions, ${server.handshakes} handshakes`,
    );
  }
  defects.push(...escapedSince(before));
  return defects;
}
