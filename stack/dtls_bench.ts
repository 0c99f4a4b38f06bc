// What DTLS costs, beside plain UDP, each group measured in one run:
// deno bench stack/dtls_bench.ts
//   - a PSK handshake between two endpoints in memory (six flights, the
//     PRF, two AES-CCM keys each side), beside one GET over plain UDP;
//   - one GET between our client and server over CoAP over UDP in memory,
//     and the same over DTLS (each datagram sealed and opened).

import { CoapClient } from "./client.ts";
import { DtlsEndpoint } from "./dtls.ts";
import { CoapServer } from "./server.ts";
import { CoapUdpEndpoint, type PeerAddress, servePeers } from "./udp.ts";
import { attachWebSocket } from "./websocket.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const KEY = new TextEncoder().encode("secretPSK");
const SERVER: PeerAddress = { hostname: "127.0.0.1", port: 5684 };
const CLIENT: PeerAddress = { hostname: "127.0.0.1", port: 40000 };

async function handshake(): Promise<void> {
  const server: DtlsEndpoint = new DtlsEndpoint(
    (d) => queueMicrotask(() => client.receive(d, SERVER)),
    () => {},
    { pskLookup: () => KEY },
  );
  const client: DtlsEndpoint = new DtlsEndpoint(
    (d) => queueMicrotask(() => server.receive(d, CLIENT)),
    () => {},
    { psk: { identity: "me", key: KEY } },
  );
  await client.connect(SERVER);
  client.close();
  server.close();
}

/** A client and a server over CoAP over UDP in memory, DTLS or not. */
async function connected(secure: boolean): Promise<CoapClient> {
  const coap = new CoapServer({
    "/temperature": { GET: () => ({ payload: "21.5 C" }) },
  }, { log: quiet });
  const holder: {
    server?: CoapUdpEndpoint;
    client?: CoapUdpEndpoint;
    dtlsServer?: DtlsEndpoint;
    dtlsClient?: DtlsEndpoint;
  } = {};
  if (secure) {
    holder.dtlsServer = new DtlsEndpoint(
      (d) => queueMicrotask(() => holder.dtlsClient!.receive(d, SERVER)),
      (data, from) => holder.server!.receive(data, from),
      { pskLookup: () => KEY },
    );
    holder.dtlsClient = new DtlsEndpoint(
      (d) => queueMicrotask(() => holder.dtlsServer!.receive(d, CLIENT)),
      (data, from) => holder.client!.receive(data, from),
      { psk: { identity: "me", key: KEY } },
    );
  }
  holder.server = new CoapUdpEndpoint(
    (bytes, to) =>
      secure
        ? holder.dtlsServer!.send(bytes, to)
        : queueMicrotask(() => holder.client!.receive(bytes, SERVER)),
    { log: quiet, amplificationFactor: false, onPeer: servePeers(coap) },
  );
  holder.client = new CoapUdpEndpoint(
    (bytes, to) =>
      secure
        ? holder.dtlsClient!.send(bytes, to)
        : queueMicrotask(() => holder.server!.receive(bytes, CLIENT)),
    { log: quiet },
  );
  if (secure) await holder.dtlsClient!.connect(SERVER);
  const connection = attachWebSocket(holder.client.connect(SERVER), {
    log: quiet,
  });
  await connection.ready;
  return new CoapClient(connection, { log: quiet });
}

async function get(client: CoapClient): Promise<void> {
  for await (
    const event of client.request({ method: "GET", path: "/temperature" })
  ) {
    if (event.kind !== "response") throw new Error("no response");
  }
}

const plain = await connected(false);
const secure = await connected(true);

Deno.bench({
  name: "one GET over plain UDP",
  group: "the handshake",
  baseline: true,
  async fn() {
    await get(plain);
  },
});

Deno.bench({
  name: "a DTLS PSK handshake",
  group: "the handshake",
  async fn() {
    await handshake();
  },
});

Deno.bench({
  name: "a GET over CoAP over UDP, in memory",
  group: "a request",
  baseline: true,
  async fn() {
    await get(plain);
  },
});

Deno.bench({
  name: "the same GET over DTLS",
  group: "a request",
  async fn() {
    await get(secure);
  },
});
