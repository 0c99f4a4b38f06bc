import { DtlsEndpoint } from "../../dtls.ts";
const psk = { identity: "user", key: "secretPSK" };
const hello = await new Promise<Uint8Array>((resolve) => {
  const probe = new DtlsEndpoint((d) => resolve(d), () => {}, { psk });
  probe.connect({ hostname: "127.0.0.1", port: 1 }).catch(() => {});
  setTimeout(() => probe.close(), 10);
});
let sent = 0;
const server = new DtlsEndpoint(() => sent++, () => {}, {
  pskLookup: () => undefined,
  maxPendingHellos: 100000,
});
const n = 20000;
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  server.receive(hello, {
    hostname: `10.0.${i >> 8 & 255}.${i & 255}`,
    port: i,
  });
}
while (sent < n) await new Promise((r) => setTimeout(r, 1));
const t1 = performance.now();
console.log(`${n} hellos: ${((t1 - t0) * 1000 / n).toFixed(1)} us each`);
const key = await crypto.subtle.importKey(
  "raw",
  new Uint8Array(32),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["sign"],
);
const t2 = performance.now();
await Promise.all(
  Array.from(
    { length: n },
    () => crypto.subtle.sign("HMAC", key, new Uint8Array(80)),
  ),
);
console.log(
  `${n} parallel HMACs: ${
    ((performance.now() - t2) * 1000 / n).toFixed(1)
  } us each`,
);
const t3 = performance.now();
for (let i = 0; i < 2000; i++) {
  await crypto.subtle.sign("HMAC", key, new Uint8Array(80));
}
console.log(
  `2000 sequential HMACs: ${
    ((performance.now() - t3) * 1000 / 2000).toFixed(1)
  } us each`,
);
