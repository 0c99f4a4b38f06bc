import { DtlsEndpoint } from "../../dtls.ts";
const psk = { identity: "me", key: "k" };
const hello = await new Promise<Uint8Array>((resolve) => {
  const probe = new DtlsEndpoint((d) => resolve(d), () => {}, { psk });
  probe.connect({ hostname: "127.0.0.1", port: 1 }).catch(() => {});
  setTimeout(() => probe.close(), 10);
});
let n = 0;
const server = new DtlsEndpoint(() => n++, () => {}, {
  pskLookup: () => undefined,
});
const gc = (globalThis as { gc?: () => void }).gc!;
for (let i = 0; i < 1000; i++) {
  server.receive(hello, { hostname: "10.0.0.1", port: i });
}
gc();
const before = Deno.memoryUsage().heapUsed;
const t = performance.now();
for (let i = 0; i < 100000; i++) {
  server.receive(hello, {
    hostname: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
    port: 1000 + (i & 0x7fff),
  });
}
const us = (performance.now() - t) * 1000 / 100000;
gc();
const after = Deno.memoryUsage().heapUsed;
console.log(
  `100,000 ClientHellos: ${us.toFixed(1)} µs each, ${n - 1000} cookies, heap ${
    after - before
  } bytes kept, sessions ${server.sessions}`,
);
