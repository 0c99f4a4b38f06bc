import { assert, assertEquals, assertRejects } from "@std/assert";
import {
  CertificateError,
  checkChain,
  ecdsaFromDer,
  ecdsaToDer,
  importPrivateKey,
  parseCertificate,
  pemBlocks,
  verifySignature,
} from "./x509.ts";
import {
  CA,
  SERVER,
  SERVER_KEY_PKCS8,
  SERVER_KEY_SEC1,
  STRANGER,
} from "./testing/pki_fixtures.ts";

const der = (pem: string) => pemBlocks(pem, "CERTIFICATE")[0];

Deno.test("parseCertificate() reads OpenSSL's certificates: names, validity, key, CA flag, subjectAltName", () => {
  const server = parseCertificate(der(SERVER));
  const ca = parseCertificate(der(CA));
  assertEquals(
    [
      server.commonName,
      server.keyType,
      server.signatureAlgorithm,
      server.isCa,
      server.ipAddresses,
      server.dnsNames,
      new Date(server.notAfter).getUTCFullYear() -
      new Date(server.notBefore).getUTCFullYear(),
    ],
    ["127.0.0.1", "P-256", "ECDSA-SHA256", false, ["127.0.0.1"], [
      "localhost",
    ], 100],
  );
  assertEquals([ca.commonName, ca.isCa], ["Test CA", true]);
});

Deno.test("checkChain() accepts a chain to the given CA for its host, and refuses an unknown CA, another host, an expired time and a changed signature, each saying why", async () => {
  const leaf = await checkChain([der(SERVER)], {
    cas: [der(CA)],
    host: "127.0.0.1",
  });
  assertEquals(leaf.commonName, "127.0.0.1");
  await checkChain([der(SERVER)], { cas: [der(CA)], host: "localhost" });
  const failures: string[] = [];
  const attempt = async (
    chain: Uint8Array[],
    cas: Uint8Array[],
    host?: string,
    now?: number,
  ) => {
    const error = await assertRejects(
      () => checkChain(chain, { cas, host, now }),
      CertificateError,
    );
    failures.push(`${error.reason}: ${error.message}`);
  };
  await attempt([der(STRANGER)], [der(CA)], "127.0.0.1");
  await attempt([der(SERVER)], [], "127.0.0.1");
  await attempt([der(SERVER)], [der(CA)], "10.0.0.1");
  await attempt([der(SERVER)], [der(CA)], "127.0.0.1", Date.UTC(2200, 0, 1));
  const changed = der(SERVER).slice();
  changed[changed.length - 10] ^= 1; // inside the signature
  await attempt([changed], [der(CA)], "127.0.0.1");
  await attempt([], [der(CA)]);
  assertEquals(failures.map((f) => f.replace(/\(\d{4}.*?\)/, "(…)")), [
    "unknown_ca: The certificate was not issued by a CA this side trusts",
    "unknown_ca: The certificate was not issued by a CA this side trusts",
    "bad_certificate: The certificate does not name 10.0.0.1 (it names localhost, 127.0.0.1)",
    "expired: A certificate of the chain is not valid now (…)",
    "bad_certificate: A certificate's signature does not verify with the CA's key",
    "bad_certificate: The peer sent no certificate",
  ]);
});

Deno.test("importPrivateKey() takes SEC1 and PKCS #8 P-256 keys; what it signs verifies with the certificate's key", async () => {
  const certificate = parseCertificate(der(SERVER));
  for (const pem of [SERVER_KEY_SEC1, SERVER_KEY_PKCS8]) {
    const { key, spki } = await importPrivateKey(pem);
    assertEquals(spki, certificate.publicKey);
    const data = new TextEncoder().encode("the handshake");
    const raw = new Uint8Array(
      await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, data),
    );
    const encoded = ecdsaToDer(raw);
    assertEquals(ecdsaFromDer(encoded), raw);
    assert(await verifySignature(spki, "ECDSA-SHA256", encoded, data));
    assert(
      !(await verifySignature(spki, "ECDSA-SHA256", encoded, data.slice(1))),
    );
  }
  await assertRejects(
    () => importPrivateKey("no key here"),
    CertificateError,
    "No PRIVATE KEY or EC PRIVATE KEY block",
  );
});

Deno.test("parseCertificate() refuses bytes that are not a certificate with a CertificateError, never anything else", () => {
  let seed = 99;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const base = der(SERVER);
  const kinds = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    const bytes = base.slice(0, next() % (base.length + 1));
    if (bytes.length > 0) bytes[next() % bytes.length] ^= 1 << (next() % 8);
    try {
      parseCertificate(bytes);
      kinds.add("parsed");
    } catch (error) {
      kinds.add(
        error instanceof CertificateError
          ? "CertificateError"
          : `other: ${error}`,
      );
    }
  }
  assertEquals([...kinds].filter((k) => k.startsWith("other")), []);
});
