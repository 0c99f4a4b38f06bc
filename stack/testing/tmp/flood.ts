import dgram from "node:dgram";
import { DtlsEndpoint } from "../../dtls.ts";
import { rss } from "../proc.ts";
import { freeUdpPort, startOurServer } from "../peers.ts";
const dir = await Deno.makeTempDir();
await Deno.writeTextFile(`${dir}/psk`, "user:secretPSK\n");
const port = await freeUdpPort();
const server = await startOurServer([
  "--no-explorer",
  "--dtls-port",
  String(port),
  "--psk-file",
  `${dir}/psk`,
  "--name",
  "flood",
]);
const hello = await new Promise<Uint8Array>((resolve) => {
  const probe = new DtlsEndpoint((d) => resolve(d), () => {}, {
    psk: { identity: "u", key: "k" },
  });
  probe.connect({ hostname: "127.0.0.1", port }).catch(() => {});
  setTimeout(() => probe.close(), 10);
});
const sockets: dgram.Socket[] = [];
let answers = 0;
for (let i = 0; i < 200; i++) {
  const s = dgram.createSocket("udp4");
  s.on("message", () => answers++);
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", r));
  sockets.push(s);
}
for (let f = 0; f < 6; f++) {
  for (let round = 0; round < 100; round++) {
    for (const s of sockets) s.send(hello, port, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 1000));
  console.log(
    `flood ${f}: answers ${answers}, RSS ${
      ((await rss(server.pid)) / 2 ** 20).toFixed(1)
    } MiB`,
  );
}
for (const s of sockets) s.close();
await server.stop();
