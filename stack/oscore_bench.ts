// What OSCORE costs a request, beside the same request unprotected, each
// group measured in one run: deno bench stack/oscore_bench.ts
//   - the crypto alone: a request protected and unprotected, and its
//     response protected and unprotected (four AES-CCM passes, each two
//     WebCrypto calls);
//   - a whole GET between our client and server in memory, with and
//     without OSCORE.

import { CoapClient } from "./client.ts";
import { Code, Option, utf8 } from "./message.ts";
import {
  decodeOscoreOption,
  MemoryStore,
  OSCORE_OPTION,
  SecurityContext,
} from "./oscore.ts";
import { CoapServer } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import { socketPair } from "./testing/socket_pair.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const secret = new Uint8Array(16).map((_, i) => i + 1);
const pair = () =>
  Promise.all([
    SecurityContext.create({
      masterSecret: secret,
      senderId: new Uint8Array(0),
      recipientId: new Uint8Array([1]),
      store: new MemoryStore(),
      persistStep: 1_000_000,
    }),
    SecurityContext.create({
      masterSecret: secret,
      senderId: new Uint8Array([1]),
      recipientId: new Uint8Array(0),
      store: new MemoryStore(),
      persistStep: 1_000_000,
      replayWindow: 4096,
    }),
  ]);

const [client, server] = await pair();
const request = {
  code: Code.GET,
  token: new Uint8Array([1, 2, 3, 4]),
  options: [{ number: Option.URI_PATH, value: utf8("temperature") }],
  payload: new Uint8Array(0),
};
const response = {
  code: Code.CONTENT,
  token: request.token,
  options: [],
  payload: utf8("21.5 C"),
};

Deno.bench({
  name: "plain: the request and response as they are",
  group: "crypto per request",
  baseline: true,
  async fn() {
    // The same shape of work without the crypto: two awaited steps.
    await Promise.resolve(request);
    await Promise.resolve(response);
  },
});

Deno.bench({
  name: "OSCORE: protect and unprotect a request and its response",
  group: "crypto per request",
  async fn() {
    const sent = await client.protectRequest(request);
    const option = sent.message.options.find((o) =>
      o.number === OSCORE_OPTION
    )!;
    const got = await server.unprotectRequest(
      sent.message,
      decodeOscoreOption(option.value),
    );
    const answer = await server.protectResponse(response, got.binding);
    await client.unprotectResponse(answer, sent.binding);
  },
});

async function connected(oscore: boolean) {
  const [c, s] = await pair();
  const coap = new CoapServer({
    "/temperature": { GET: () => ({ payload: "21.5 C" }) },
  }, { log: quiet, ...(oscore ? { oscore: [s] } : {}) });
  const [near, far] = socketPair();
  coap.accept(far);
  const connection = attachWebSocket(near, { log: quiet });
  await connection.ready;
  return new CoapClient(connection, {
    log: quiet,
    ...(oscore ? { oscore: c } : {}),
  });
}

const plainClient = await connected(false);
const oscoreClient = await connected(true);

async function get(coap: CoapClient): Promise<void> {
  for await (
    const event of coap.request({ method: "GET", path: "/temperature" })
  ) {
    if (event.kind !== "response") throw new Error("no response");
  }
}

Deno.bench({
  name: "a GET between our client and server in memory",
  group: "a whole request",
  baseline: true,
  async fn() {
    await get(plainClient);
  },
});

Deno.bench({
  name: "the same GET under OSCORE",
  group: "a whole request",
  async fn() {
    await get(oscoreClient);
  },
});
