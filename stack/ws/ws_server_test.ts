// The published ws adapter (`@coap/stack/ws`, node_ws.ts) with `ws`
// injected, in process, plain and over TLS: a GET is served, and a frame
// announcing more than the Max-Message-Size is refused with 1009 as its
// header arrives, the connection let go at once over TLS.

import { assertEquals } from "@std/assert";
import { serveCoapWs } from "./ws_server.ts";
import { CSM, frame, get, RawWebSocket, read } from "../testing/raw_ws.ts";
import { testCertificates } from "../testing/certificates.ts";
import { text } from "../message.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const network = { sanitizeOps: false, sanitizeResources: false };

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

for (const secure of [false, true]) {
  Deno.test({
    name: `serveCoapWs ${
      secure ? "over TLS (ALPN http/1.1)" : "in plain text"
    }: a GET is served; a 60 MiB frame is refused with 1009 as its header arrives`,
    ...network,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "coap-ws-" });
      const { ca, cert, key } = await testCertificates(dir);
      const caCerts = secure ? [await Deno.readTextFile(ca)] : undefined;
      const { CoapServer } = await import("../server.ts");
      const coap = new CoapServer({
        "/": { GET: () => ({ payload: "hello" }) },
      }, { log: quiet });
      const server = await serveCoapWs(coap, {
        port: 0,
        ...(secure ? { tls: { cert, key } } : {}),
      });
      try {
        const got: ReturnType<typeof read>[] = [];
        const client = await RawWebSocket.connect(
          server.port,
          (payload) => got.push(read(payload.slice())),
          {},
          "/.well-known/coap",
          caCerts,
        );
        await client.send([CSM, get(1, "/")]);
        await until(() => got.some((m) => m?.token[0] === 1));
        assertEquals(
          text(got.find((m) => m?.token[0] === 1)!.payload),
          "hello",
        );
        client.close();
        const hostile = await RawWebSocket.connect(
          server.port,
          undefined,
          {},
          "/.well-known/coap",
          caCerts,
        );
        const header = new Uint8Array(14);
        header[0] = 0x82;
        header[1] = 0x80 | 127;
        new DataView(header.buffer).setBigUint64(2, BigInt(60 << 20));
        await hostile.sendBytes(frame(new Uint8Array([0x00, 0xe1])));
        await hostile.sendBytes(header);
        let cut = false;
        try {
          for (let i = 0; i < 60; i++) {
            await hostile.sendBytes(new Uint8Array(1 << 20));
          }
        } catch {
          cut = true;
        }
        await until(() => hostile.closeFrame !== undefined);
        assertEquals(hostile.closeFrame?.code, 1009);
        // Over TLS the socket goes as soon as its close frame is out.
        if (secure) assertEquals(cut, true);
        hostile.close();
        await until(() => coap.connections === 0);
      } finally {
        await server.shutdown();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
