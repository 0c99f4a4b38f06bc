import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  AlertDescription,
  DtlsEndpoint,
  type DtlsEndpointOptions,
  DtlsError,
  prf,
  readRecords,
} from "./dtls.ts";
import {
  CA,
  SERVER as SERVER_PEM,
  SERVER_KEY_SEC1,
  STRANGER,
} from "./testing/pki_fixtures.ts";
import { importPrivateKey, pemBlocks } from "./x509.ts";
import { ManualClock } from "./testing/manual_clock.ts";
import type { PeerAddress } from "./udp.ts";

const KEY = new TextEncoder().encode("secretPSK");
const SERVER: PeerAddress = { hostname: "127.0.0.1", port: 5684 };
const CLIENT: PeerAddress = { hostname: "127.0.0.1", port: 40000 };
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** Waits until WebCrypto's calls (in other threads) and their work are done. */
async function quiet(ms = 30): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A client and a server endpoint wired in memory; `drop` decides, for each
 * datagram in order, whether the network loses it.
 */
function pair(
  options: {
    server?: Partial<DtlsEndpointOptions>;
    client?: Partial<DtlsEndpointOptions>;
    drop?: (n: number, datagram: Uint8Array, toServer: boolean) => boolean;
  } = {},
) {
  const wire: { toServer: boolean; bytes: Uint8Array }[] = [];
  const got: string[] = [];
  let n = 0;
  const server: DtlsEndpoint = new DtlsEndpoint(
    (datagram) => {
      wire.push({ toServer: false, bytes: datagram });
      if (options.drop?.(n++, datagram, false)) return;
      queueMicrotask(() => client.receive(datagram, SERVER));
    },
    (data) => got.push(`server got ${decode(data)}`),
    {
      pskLookup: (identity) => decode(identity) === "me" ? KEY : undefined,
      ...options.server,
    },
  );
  const client: DtlsEndpoint = new DtlsEndpoint(
    (datagram) => {
      wire.push({ toServer: true, bytes: datagram });
      if (options.drop?.(n++, datagram, true)) return;
      queueMicrotask(() => server.receive(datagram, CLIENT));
    },
    (data) => got.push(`client got ${decode(data)}`),
    { psk: { identity: "me", key: KEY }, ...options.client },
  );
  return { server, client, wire, got };
}

/** What each datagram on the wire held: its records' content types. */
function shapes(wire: { toServer: boolean; bytes: Uint8Array }[]): string[] {
  const names: Record<number, string> = {
    20: "ccs",
    21: "alert",
    22: "handshake",
    23: "data",
  };
  return wire.map(({ toServer, bytes }) =>
    `${toServer ? ">" : "<"} ${
      readRecords(bytes).map((r) =>
        r.type === 22 && r.epoch === 0
          ? `hs${r.fragment[0]}`
          : `${names[r.type]}@${r.epoch}`
      ).join(",")
    }`
  );
}

Deno.test("prf() is TLS 1.2's PRF with SHA-256: the test vector's 100 bytes", async () => {
  const h = (s: string) =>
    new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
  const out = await prf(
    h("9bbe436ba940f017b17652849a71db35"),
    "test label",
    h("a0ba9f936cda311827a6f796ffd5198c"),
    100,
  );
  assertEquals(
    [...out].map((b) => b.toString(16).padStart(2, "0")).join(""),
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66",
  );
});

Deno.test("DtlsEndpoint: a PSK handshake in its flights (cookie first), then data both ways", async () => {
  const { server, client, wire, got } = pair({
    server: { pskHint: "hint" },
  });
  const session = await client.connect(SERVER);
  session.send(new TextEncoder().encode("ping"));
  await quiet();
  server.send(new TextEncoder().encode("pong"), CLIENT);
  await quiet();
  assertEquals(got, ["server got ping", "client got pong"]);
  assertEquals(shapes(wire), [
    "> hs1", // ClientHello
    "< hs3", // HelloVerifyRequest
    "> hs1", // ClientHello with the cookie
    "< hs2,hs12,hs14", // ServerHello, ServerKeyExchange (hint), Done
    "> hs16,ccs@0,handshake@1", // ClientKeyExchange, CCS, Finished
    "< ccs@0,handshake@1", // CCS, Finished
    "> data@1",
    "< data@1",
  ]);
  assertEquals([server.sessions, server.handshakes, server.cookiesSent], [
    1,
    0,
    1,
  ]);
  client.close();
  await quiet();
  // The close_notify ended the server's session too.
  assertEquals([client.sessions, server.sessions], [0, 0]);
});

Deno.test("DtlsEndpoint: application data is sealed (no plaintext on the wire), and a changed or replayed record is dropped", async () => {
  const { server, client, wire, got } = pair();
  const session = await client.connect(SERVER);
  session.send(new TextEncoder().encode("the secret reading"));
  await quiet();
  const record = wire.at(-1)!.bytes;
  assert(!decode(record).includes("secret"));
  server.receive(record, CLIENT); // replayed
  const changed = record.slice();
  changed[changed.length - 1] ^= 1;
  server.receive(changed, CLIENT);
  await quiet();
  assertEquals(got, ["server got the secret reading"]);
  client.close();
  server.close();
});

Deno.test("DtlsEndpoint: lost flights are sent again on the timer, doubling, and the handshake completes", async () => {
  const clock = new ManualClock();
  const lost = new Set([1, 3, 5]); // the HVR, the server's flight, the client's
  const { server, client, wire } = pair({
    server: { clock },
    client: { clock },
    drop: (n) => lost.has(n),
  });
  const connecting = client.connect(SERVER);
  let open = false;
  connecting.then(() => open = true);
  for (let i = 0; i < 12 && !open; i++) {
    await quiet(10);
    await clock.advance(1000 * 2 ** Math.min(i, 5));
  }
  assertEquals(open, true);
  assert(wire.length > 8, shapes(wire).join(" "));
  client.close();
  server.close();
});

Deno.test("DtlsEndpoint: handshake messages larger than the MTU go in fragments and are reassembled", async () => {
  const { server, client, wire, got } = pair({
    // The server's side only: a ClientHello must come whole (§4.2.1's
    // stateless cookie needs it in one datagram).
    server: { mtu: 60, pskHint: "h".repeat(100) },
  });
  const session = await client.connect(SERVER);
  session.send(new TextEncoder().encode("through"));
  await quiet();
  assertEquals(got, ["server got through"]);
  // The server's ServerKeyExchange (a 100-byte hint) crossed in pieces.
  assert(
    wire.some(({ toServer, bytes }) =>
      !toServer && readRecords(bytes).some((r) =>
        r.fragment[0] === 12 &&
        (r.fragment[9] | r.fragment[10] | r.fragment[11]) !== 0
      )
    ),
  );
  client.close();
  server.close();
});

Deno.test("DtlsEndpoint: an unknown identity gets unknown_psk_identity; a wrong key never opens and says why", async () => {
  const unknown = pair({ client: { psk: { identity: "stranger", key: KEY } } });
  const error = await assertRejects(
    () => unknown.client.connect(SERVER),
    DtlsError,
  );
  assertEquals(
    [error.message, error.alert, error.sent],
    [
      "The peer sent a fatal alert: unknown_psk_identity",
      AlertDescription.UNKNOWN_PSK_IDENTITY,
      false,
    ],
  );
  const clock = new ManualClock();
  const wrong = pair({
    server: { clock },
    client: { psk: { identity: "me", key: "not it" }, clock },
  });
  const failing = wrong.client.connect(SERVER);
  const outcome = failing.then(() => "opened", (e: DtlsError) => e.message);
  for (let i = 0; i < 8; i++) {
    await quiet(10);
    await clock.advance(5000);
  }
  assertEquals(
    await outcome,
    "The server did not answer the Finished within 30000 ms: it could not verify it (a wrong pre-shared key, or an identity it does not know)",
  );
  assertEquals([wrong.server.sessions, wrong.server.handshakes], [0, 0]);
});

Deno.test("DtlsEndpoint as a server: a ClientHello without a cookie costs a cookie and nothing more; bounds on handshakes hold", async () => {
  // The largest answer, not the answers: this test keeps nothing either.
  let largest = 0;
  const server = new DtlsEndpoint(
    (d) => {
      largest = Math.max(largest, d.length);
    },
    () => {},
    {
      pskLookup: () => KEY,
      maxHandshakesPerAddress: 2,
    },
  );
  // A real client's first ClientHello, sent from 1,000 spoofed sources.
  const hello: Uint8Array[] = [];
  const probe = new DtlsEndpoint((d) => hello.push(d), () => {}, {
    psk: { identity: "me", key: KEY },
  });
  probe.connect(SERVER).catch(() => {});
  await quiet();
  const spoofed = (i: number) => ({
    hostname: `10.0.${i >> 8}.${i & 255}`,
    port: 1000 + i,
  });
  for (let i = 0; i < 1000; i++) server.receive(hello[0], spoofed(i));
  // Answered within receive(): nothing waits, nothing is kept.
  assertEquals(
    [server.sessions, server.handshakes, server.cookiesSent],
    [0, 0, 1000],
  );
  // What 20,000 more keep, on the heap after a collection: nothing.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) {
    gc();
    const before = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < 20_000; i++) server.receive(hello[0], spoofed(i));
    gc();
    const kept = Deno.memoryUsage().heapUsed - before;
    assert(kept < 256 * 1024, `${kept} bytes kept by 20,000 ClientHellos`);
  }
  // Each answer is no larger than what it answers: no amplification.
  assert(
    largest > 0 && largest <= hello[0].length,
    `${largest} > ${hello[0].length}`,
  );
  probe.close();
  server.close();
  assertThrows(
    () => new DtlsEndpoint(() => {}, () => {}, { maxSessions: 0 }),
    RangeError,
    "maxSessions must be a positive integer, got 0",
  );
});

Deno.test("DtlsEndpoint: malformed and hostile datagrams are dropped without a session or a throw", async () => {
  const { server, client } = pair();
  const session = await client.connect(SERVER);
  let seed = 7;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const stranger = { hostname: "127.0.0.9", port: 9 };
  for (let i = 0; i < 2000; i++) {
    const bytes = new Uint8Array(next() % 80).map(() => next() & 0xff);
    if (i % 2 === 0 && bytes.length > 13) {
      bytes.set([22, 0xfe, 0xfd, 0, 0], 0); // a plausible record header
    }
    server.receive(bytes, i % 3 === 0 ? CLIENT : stranger);
  }
  await quiet(100);
  assertEquals([session.state, server.sessions], ["open", 1]);
  client.close();
  server.close();
});

// --- ECDHE_ECDSA: certificates and raw public keys ---------------------------

const cert = (pem: string) => pemBlocks(pem, "CERTIFICATE")[0];

async function serverCertificate(pem = SERVER_PEM) {
  const { key, spki } = await importPrivateKey(SERVER_KEY_SEC1);
  return { chain: [cert(pem)], key, spki };
}

Deno.test("DtlsEndpoint with ECDHE_ECDSA: a certificate checked against the CA and the host, then data; mutual with a client certificate", async () => {
  const certificate = await serverCertificate();
  const { server, client, wire, got } = pair({
    server: { pskLookup: undefined, certificate, server: true },
    client: {
      psk: undefined,
      cas: [cert(CA)],
      host: "127.0.0.1",
    },
  });
  const session = await client.connect(SERVER);
  session.send(new TextEncoder().encode("signed"));
  await quiet();
  assertEquals(got, ["server got signed"]);
  assertEquals(shapes(wire).slice(3, 6), [
    "< hs2,hs11,hs12,hs14", // ServerHello, Certificate, ServerKeyExchange, Done
    "> hs16,ccs@0,handshake@1",
    "< ccs@0,handshake@1",
  ]);
  client.close();
  server.close();
  // Mutual: the server asks, the client sends its own (the same test
  // certificate here), checked against the CA.
  const mutual = pair({
    server: {
      pskLookup: undefined,
      certificate,
      server: true,
      requireClientCertificate: true,
      cas: [cert(CA)],
    },
    client: { psk: undefined, cas: [cert(CA)], certificate },
  });
  await mutual.client.connect(SERVER);
  assertEquals(shapes(mutual.wire).slice(3, 5), [
    "< hs2,hs11,hs12,hs13,hs14",
    "> hs11,hs16,hs15,ccs@0,handshake@1",
  ]);
  mutual.client.close();
  mutual.server.close();
});

Deno.test("DtlsEndpoint with ECDHE_ECDSA refuses an unknown CA, another host, an expired certificate and a client without one, each in words with its alert", async () => {
  const outcomes: string[] = [];
  const attempt = async (
    server: Partial<DtlsEndpointOptions>,
    client: Partial<DtlsEndpointOptions>,
  ) => {
    const p = pair({
      server: { pskLookup: undefined, server: true, ...server },
      client: { psk: undefined, ...client },
    });
    try {
      await p.client.connect(SERVER);
      outcomes.push("opened");
    } catch (error) {
      const e = error as DtlsError;
      outcomes.push(`${e.alert} ${e.message}`);
    }
    p.client.close();
    p.server.close();
  };
  const certificate = await serverCertificate();
  await attempt({ certificate: await serverCertificate(STRANGER) }, {
    cas: [cert(CA)],
    host: "127.0.0.1",
  });
  await attempt({ certificate }, { cas: [cert(CA)], host: "10.1.2.3" });
  await attempt({ certificate }, {
    cas: [cert(CA)],
    host: "127.0.0.1",
    now: () => Date.UTC(2200, 0, 1),
  });
  await attempt({
    certificate,
    requireClientCertificate: true,
    cas: [cert(CA)],
  }, { cas: [cert(CA)] });
  assertEquals(outcomes.map((o) => o.replace(/\(\d{4}.*?\)/, "(…)")), [
    "48 The server's certificate: The certificate was not issued by a CA this side trusts",
    "42 The server's certificate: The certificate does not name 10.1.2.3 (it names localhost, 127.0.0.1)",
    "45 The server's certificate: A certificate of the chain is not valid now (…)",
    "40 The peer sent a fatal alert: handshake_failure",
  ]);
});

Deno.test("DtlsEndpoint with raw public keys (RFC 7250): the server's key trusted by value; another key refused", async () => {
  const { key, spki } = await importPrivateKey(SERVER_KEY_SEC1);
  const rpk = { chain: [], key, spki };
  const ok = pair({
    server: {
      pskLookup: undefined,
      server: true,
      certificate: rpk,
      rawPublicKey: true,
    },
    client: { psk: undefined, trustedKeys: [spki] },
  });
  const session = await ok.client.connect(SERVER);
  assertEquals(session.state, "open");
  ok.client.close();
  ok.server.close();
  const other = (await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign"],
  )) as CryptoKeyPair;
  const otherSpki = new Uint8Array(
    await crypto.subtle.exportKey("spki", other.publicKey),
  );
  const refused = pair({
    server: {
      pskLookup: undefined,
      server: true,
      certificate: rpk,
      rawPublicKey: true,
    },
    client: { psk: undefined, trustedKeys: [otherSpki] },
  });
  const error = await assertRejects(
    () => refused.client.connect(SERVER),
    DtlsError,
  );
  assertEquals(
    [error.alert, error.message],
    [42, "The server's raw public key is not one this side trusts"],
  );
  refused.client.close();
  refused.server.close();
});

Deno.test("DtlsSession holds at most 64 datagrams waiting on WebCrypto: a burst of 500 at once keeps 64, drops the rest, and the session goes on", async () => {
  // The network keeps the client's data records from the server; they are
  // then given to it all at once.
  const { server, client, wire, got } = pair({
    drop: (_n, datagram, toServer) =>
      toServer && readRecords(datagram)[0]?.type === 23,
  });
  const session = await client.connect(SERVER);
  for (let i = 0; i < 500; i++) {
    session.send(new TextEncoder().encode(`#${i}`));
  }
  await quiet(100);
  const sealed = wire.filter((w) =>
    w.toServer && readRecords(w.bytes)[0]?.type === 23
  );
  assertEquals(sealed.length, 500);
  for (const { bytes } of sealed) server.receive(bytes, CLIENT);
  await quiet(200);
  assertEquals(got.length, 64);
  assertEquals(got.slice(0, 2), ["server got #0", "server got #1"]);
  // Later ones still come through: the session goes on.
  session.send(new TextEncoder().encode("after"));
  await quiet();
  const last = wire.at(-1)!.bytes;
  server.receive(last, CLIENT);
  await quiet();
  assertEquals(got.at(-1), "server got after");
  client.close();
  server.close();
});

Deno.test("DtlsEndpoint as a client: a server that answers only with HelloVerifyRequests ends the handshake at its timeout, saying it answered", async () => {
  const clock = new ManualClock();
  const hvr = (cookie: number) => {
    const body = new Uint8Array([0xfe, 0xff, 1, cookie]);
    const message = new Uint8Array([
      3,
      0,
      0,
      4,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      4,
      ...body,
    ]);
    return new Uint8Array([
      22,
      0xfe,
      0xff,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      cookie,
      0,
      message.length,
      ...message,
    ]);
  };
  let n = 0;
  const client: DtlsEndpoint = new DtlsEndpoint(
    () => queueMicrotask(() => client.receive(hvr(++n & 0xff), SERVER)),
    () => {},
    { psk: { identity: "me", key: KEY }, clock },
  );
  const outcome = client.connect(SERVER).then(
    () => "opened",
    (e: DtlsError) => e.message,
  );
  for (let i = 0; i < 8; i++) {
    await quiet(5);
    await clock.advance(5000);
  }
  assertEquals(await outcome, "The handshake did not finish within 30000 ms");
  assertEquals(client.sessions, 0);
});
