// This module is browser compatible.

/**
 * The X.509 a DTLS client and server need (RFC 5280), on WebCrypto: PEM
 * read into DER, certificates parsed (names, validity, key, extensions),
 * and a chain checked up to a given CA: each signature (ECDSA P-256 or
 * RSA PKCS #1 v1.5, with SHA-256), each validity period, each issuer a
 * CA, and the leaf naming the host (subjectAltName, else the common
 * name). Nothing is accepted unchecked: with no CA there is no trust.
 * Private keys (PKCS #8, or SEC1 "EC PRIVATE KEY") become WebCrypto keys.
 *
 * @module
 */

import { concat, equalBytes as equal } from "./bytes.ts";

/** A certificate that cannot be trusted; `reason` says why, for an alert. */
export class CertificateError extends Error {
  /** `"expired"`, `"unknown_ca"`, `"bad_certificate"`, `"unsupported"`. */
  readonly reason:
    | "expired"
    | "unknown_ca"
    | "bad_certificate"
    | "unsupported";

  /**
   * Creates the error.
   *
   * @param message What is wrong, in words.
   * @param reason Which alert it calls for.
   */
  constructor(
    message: string,
    reason: "expired" | "unknown_ca" | "bad_certificate" | "unsupported",
  ) {
    super(message);
    this.name = "CertificateError";
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------
// DER

/** One DER element: its tag, its content, and all its bytes. */
export interface Der {
  /** The tag byte (0x30 SEQUENCE, 0x02 INTEGER, 0xa0 [0] …). */
  readonly tag: number;
  /** The content octets. */
  readonly content: Uint8Array;
  /** The whole element, tag and length included. */
  readonly raw: Uint8Array;
}

function bad(what: string): CertificateError {
  return new CertificateError(`Malformed ${what}`, "bad_certificate");
}

/**
 * Reads one DER element at `at`.
 *
 * @param bytes The bytes.
 * @param at Where the element starts.
 * @returns The element and where the next one starts.
 * @throws {CertificateError} If the length runs past the end or is not DER.
 */
export function readDer(bytes: Uint8Array, at = 0): [Der, number] {
  if (at + 2 > bytes.length) throw bad("DER: it ends early");
  const tag = bytes[at];
  if ((tag & 0x1f) === 0x1f) throw bad("DER: a long tag");
  let length = bytes[at + 1];
  let head = 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || at + 2 + count > bytes.length) {
      throw bad("DER: a length that is not DER");
    }
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[at + 2 + i];
    head += count;
  }
  const end = at + head + length;
  if (end > bytes.length) throw bad("DER: an element runs past the end");
  return [{
    tag,
    content: bytes.subarray(at + head, end),
    raw: bytes.subarray(at, end),
  }, end];
}

/** The elements inside a constructed element, in order. */
export function derChildren(element: Der): Der[] {
  const out: Der[] = [];
  let at = 0;
  while (at < element.content.length) {
    const [child, next] = readDer(element.content, at);
    out.push(child);
    at = next;
  }
  return out;
}

function oid(content: Uint8Array): string {
  if (content.length === 0) throw bad("OID");
  const parts = [Math.floor(content[0] / 40), content[0] % 40];
  let n = 0;
  for (let i = 1; i < content.length; i++) {
    n = n * 128 + (content[i] & 0x7f);
    if ((content[i] & 0x80) === 0) {
      parts.push(n);
      n = 0;
    }
  }
  return parts.join(".");
}

const OID = {
  EC_PUBLIC_KEY: "1.2.840.10045.2.1",
  P256: "1.2.840.10045.3.1.7",
  RSA: "1.2.840.113549.1.1.1",
  ECDSA_SHA256: "1.2.840.10045.4.3.2",
  RSA_SHA256: "1.2.840.113549.1.1.11",
  COMMON_NAME: "2.5.4.3",
  SUBJECT_ALT_NAME: "2.5.29.17",
  BASIC_CONSTRAINTS: "2.5.29.19",
} as const;

// ---------------------------------------------------------------------------
// PEM

/**
 * The DER of every PEM block of `label` in `text` (`"CERTIFICATE"`,
 * `"PRIVATE KEY"`, `"EC PRIVATE KEY"`, `"PUBLIC KEY"`).
 *
 * @param text PEM text.
 * @param label The block label.
 * @returns The blocks' bytes, in order.
 */
export function pemBlocks(text: string, label: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const pattern = new RegExp(
    `-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`,
    "g",
  );
  for (const match of text.matchAll(pattern)) {
    const base64 = match[1].replace(/\s+/g, "");
    out.push(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Certificates

/** A certificate, parsed. */
export interface Certificate {
  /** The whole certificate (DER). */
  readonly der: Uint8Array;
  /** The signed part (tbsCertificate, DER). */
  readonly tbs: Uint8Array;
  /** The issuer's name (DER), to match a CA's subject. */
  readonly issuer: Uint8Array;
  /** The subject's name (DER). */
  readonly subject: Uint8Array;
  /** The subject's common name, if any. */
  readonly commonName: string | undefined;
  /** Not valid before this time (ms since the epoch). */
  readonly notBefore: number;
  /** Not valid after this time (ms since the epoch). */
  readonly notAfter: number;
  /** The subject's public key (SubjectPublicKeyInfo, DER). */
  readonly publicKey: Uint8Array;
  /** Its algorithm: `"P-256"` or `"RSA"`. */
  readonly keyType: "P-256" | "RSA";
  /** The signature's algorithm: `"ECDSA-SHA256"` or `"RSA-SHA256"`. */
  readonly signatureAlgorithm: "ECDSA-SHA256" | "RSA-SHA256";
  /** The signature (for ECDSA: DER, as X.509 writes it). */
  readonly signature: Uint8Array;
  /** Whether basicConstraints says it is a CA. */
  readonly isCa: boolean;
  /** subjectAltName's DNS names. */
  readonly dnsNames: string[];
  /** subjectAltName's IP addresses, as text. */
  readonly ipAddresses: string[];
}

function time(element: Der): number {
  const text = new TextDecoder().decode(element.content);
  const match = element.tag === 0x17
    ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text)
    : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text);
  if (match === null) throw bad("certificate: a time");
  let year = Number(match[1]);
  if (element.tag === 0x17) year += year < 50 ? 2000 : 1900;
  return Date.UTC(
    year,
    Number(match[2]) - 1,
    Number(match[3]),
    Number(match[4]),
    Number(match[5]),
    Number(match[6]),
  );
}

function keyTypeOf(spki: Der): "P-256" | "RSA" {
  const [algorithm] = derChildren(spki);
  const parts = derChildren(algorithm);
  const kind = oid(parts[0].content);
  if (kind === OID.RSA) return "RSA";
  if (
    kind === OID.EC_PUBLIC_KEY && parts[1]?.tag === 0x06 &&
    oid(parts[1].content) === OID.P256
  ) {
    return "P-256";
  }
  throw new CertificateError(
    `A public key of an algorithm this stack does not verify (${kind})`,
    "unsupported",
  );
}

/**
 * Parses a certificate (DER).
 *
 * @param der The certificate.
 * @returns What it says.
 * @throws {CertificateError} If it is not a certificate this stack reads.
 */
export function parseCertificate(der: Uint8Array): Certificate {
  const [certificate] = readDer(der);
  if (certificate.tag !== 0x30) throw bad("certificate");
  const [tbs, algorithm, signatureBits] = derChildren(certificate);
  if (tbs?.tag !== 0x30 || signatureBits?.tag !== 0x03) {
    throw bad("certificate");
  }
  const fields = derChildren(tbs);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version
  i++; // serialNumber
  i++; // signature (the same algorithm as outside)
  const issuer = fields[i++];
  const validity = derChildren(fields[i++]);
  const subject = fields[i++];
  const spki = fields[i++];
  if (issuer === undefined || subject === undefined || spki === undefined) {
    throw bad("certificate");
  }
  const signatureOid = oid(derChildren(algorithm)[0].content);
  const signatureAlgorithm = signatureOid === OID.ECDSA_SHA256
    ? "ECDSA-SHA256"
    : signatureOid === OID.RSA_SHA256
    ? "RSA-SHA256"
    : undefined;
  if (signatureAlgorithm === undefined) {
    throw new CertificateError(
      `A certificate signed with an algorithm this stack does not verify (${signatureOid})`,
      "unsupported",
    );
  }
  let commonName: string | undefined;
  for (const set of derChildren(subject)) {
    for (const pair of derChildren(set)) {
      const [type, value] = derChildren(pair);
      if (oid(type.content) === OID.COMMON_NAME) {
        commonName = new TextDecoder().decode(value.content);
      }
    }
  }
  let isCa = false;
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (; i < fields.length; i++) {
    if (fields[i].tag !== 0xa3) continue;
    const [extensions] = derChildren(fields[i]);
    for (const extension of derChildren(extensions)) {
      const parts = derChildren(extension);
      const id = oid(parts[0].content);
      const value = parts[parts.length - 1];
      const [inner] = readDer(value.content);
      if (id === OID.BASIC_CONSTRAINTS) {
        const flags = derChildren(inner);
        isCa = flags[0]?.tag === 0x01 && flags[0].content[0] !== 0;
      } else if (id === OID.SUBJECT_ALT_NAME) {
        for (const name of derChildren(inner)) {
          if (name.tag === 0x82) {
            dnsNames.push(new TextDecoder().decode(name.content));
          } else if (name.tag === 0x87 && name.content.length === 4) {
            ipAddresses.push([...name.content].join("."));
          } else if (name.tag === 0x87 && name.content.length === 16) {
            const groups: string[] = [];
            for (let g = 0; g < 16; g += 2) {
              groups.push(
                ((name.content[g] << 8) | name.content[g + 1]).toString(16),
              );
            }
            ipAddresses.push(groups.join(":"));
          }
        }
      }
    }
  }
  const bits = signatureBits.content;
  return {
    der: certificate.raw,
    tbs: tbs.raw,
    issuer: issuer.raw,
    subject: subject.raw,
    commonName,
    notBefore: time(validity[0]),
    notAfter: time(validity[1]),
    publicKey: spki.raw,
    keyType: keyTypeOf(spki),
    signatureAlgorithm,
    signature: bits.subarray(1),
    isCa,
    dnsNames,
    ipAddresses,
  };
}

// ---------------------------------------------------------------------------
// Signatures

/**
 * An ECDSA signature from DER (X.509, TLS) to the 64 bytes r‖s WebCrypto
 * takes.
 *
 * @param der The DER signature.
 * @returns r and s, 32 bytes each.
 * @throws {CertificateError} If it is not one.
 */
export function ecdsaFromDer(der: Uint8Array): Uint8Array<ArrayBuffer> {
  const [sequence] = readDer(der);
  const [r, s] = derChildren(sequence);
  if (sequence.tag !== 0x30 || r?.tag !== 0x02 || s?.tag !== 0x02) {
    throw bad("ECDSA signature");
  }
  const out = new Uint8Array(64);
  for (const [index, part] of [r.content, s.content].entries()) {
    let value = part;
    while (value.length > 32 && value[0] === 0) value = value.subarray(1);
    if (value.length > 32) throw bad("ECDSA signature");
    out.set(value, index * 32 + 32 - value.length);
  }
  return out;
}

/**
 * An ECDSA signature r‖s (WebCrypto's) to DER (what TLS sends).
 *
 * @param raw 64 bytes.
 * @returns The DER signature.
 */
export function ecdsaToDer(raw: Uint8Array): Uint8Array {
  const integer = (bytes: Uint8Array) => {
    let at = 0;
    while (at < bytes.length - 1 && bytes[at] === 0) at++;
    const trimmed = bytes.subarray(at);
    const pad = trimmed[0] & 0x80 ? 1 : 0;
    const out = new Uint8Array(2 + pad + trimmed.length);
    out[0] = 0x02;
    out[1] = pad + trimmed.length;
    out.set(trimmed, 2 + pad);
    return out;
  };
  const r = integer(raw.subarray(0, 32));
  const s = integer(raw.subarray(32, 64));
  const out = new Uint8Array(2 + r.length + s.length);
  out[0] = 0x30;
  out[1] = r.length + s.length;
  out.set(r, 2);
  out.set(s, 2 + r.length);
  return out;
}

/**
 * Verifies a signature over `data` with a public key (SubjectPublicKeyInfo).
 *
 * @param spki The key.
 * @param algorithm The signature's algorithm.
 * @param signature The signature (ECDSA: DER).
 * @param data What was signed.
 * @returns Whether it verifies.
 */
export async function verifySignature(
  spki: Uint8Array,
  algorithm: "ECDSA-SHA256" | "RSA-SHA256",
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  try {
    if (algorithm === "ECDSA-SHA256") {
      const key = await crypto.subtle.importKey(
        "spki",
        spki.slice(),
        { name: "ECDSA", namedCurve: "P-256" },
        false,
        ["verify"],
      );
      return await crypto.subtle.verify(
        { name: "ECDSA", hash: "SHA-256" },
        key,
        ecdsaFromDer(signature),
        data.slice(),
      );
    }
    const key = await crypto.subtle.importKey(
      "spki",
      spki.slice(),
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      "RSASSA-PKCS1-v1_5",
      key,
      signature.slice(),
      data.slice(),
    );
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Chains

/** What a chain is checked for. */
export interface ChainCheck {
  /** The trusted CAs (DER). */
  readonly cas: readonly Uint8Array[];
  /** The host the leaf must name; left out, no name is checked. */
  readonly host?: string;
  /** The time to check validity at (ms since the epoch). */
  readonly now?: number;
}

function names(certificate: Certificate, host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (certificate.dnsNames.length > 0 || certificate.ipAddresses.length > 0) {
    return certificate.ipAddresses.includes(bare) ||
      certificate.dnsNames.some((name) => {
        const n = name.toLowerCase();
        return n === bare ||
          (n.startsWith("*.") && bare.endsWith(n.slice(1)) &&
            bare.split(".").length === n.split(".").length);
      });
  }
  return certificate.commonName?.toLowerCase() === bare;
}

/**
 * Checks a chain as a peer sent it (its own certificate first) against the
 * trusted CAs: every signature up to one of them, every validity period,
 * every issuer a CA, and the leaf naming `host`.
 *
 * @param chain The certificates (DER), leaf first.
 * @param check The CAs, the host and the time.
 * @returns The leaf, parsed.
 * @throws {CertificateError} Saying what fails: `expired`, `unknown_ca`
 * (no path to a given CA), `bad_certificate` (a signature, a name).
 */
export async function checkChain(
  chain: readonly Uint8Array[],
  check: ChainCheck,
): Promise<Certificate> {
  if (chain.length === 0) {
    throw new CertificateError(
      "The peer sent no certificate",
      "bad_certificate",
    );
  }
  const now = check.now ?? Date.now();
  const certificates = chain.map(parseCertificate);
  const cas = check.cas.map(parseCertificate);
  const leaf = certificates[0];
  for (const certificate of [...certificates, ...cas]) {
    if (now < certificate.notBefore || now > certificate.notAfter) {
      throw new CertificateError(
        `A certificate of the chain is not valid now (${
          new Date(certificate.notBefore).toISOString()
        } to ${new Date(certificate.notAfter).toISOString()}${
          certificate.commonName === undefined
            ? ""
            : `, ${certificate.commonName}`
        })`,
        "expired",
      );
    }
  }
  if (check.host !== undefined && !names(leaf, check.host)) {
    throw new CertificateError(
      `The certificate does not name ${check.host} (it names ${
        [...leaf.dnsNames, ...leaf.ipAddresses].join(", ") ||
        leaf.commonName || "nothing"
      })`,
      "bad_certificate",
    );
  }
  // Walk up: each certificate signed by the next one sent, or by a CA.
  let current = leaf;
  for (let depth = 0; depth < 8; depth++) {
    const trusted = cas.find((ca) => equal(ca.subject, current.issuer));
    if (trusted !== undefined) {
      if (
        !(await verifySignature(
          trusted.publicKey,
          current.signatureAlgorithm,
          current.signature,
          current.tbs,
        ))
      ) {
        throw new CertificateError(
          "A certificate's signature does not verify with the CA's key",
          "bad_certificate",
        );
      }
      return leaf;
    }
    const next = certificates.find((c) =>
      c !== current && equal(c.subject, current.issuer)
    );
    if (next === undefined || !next.isCa) break;
    if (
      !(await verifySignature(
        next.publicKey,
        current.signatureAlgorithm,
        current.signature,
        current.tbs,
      ))
    ) {
      throw new CertificateError(
        "A certificate's signature does not verify with its issuer's key",
        "bad_certificate",
      );
    }
    current = next;
  }
  throw new CertificateError(
    "The certificate was not issued by a CA this side trusts",
    "unknown_ca",
  );
}

// ---------------------------------------------------------------------------
// Private keys

/**
 * A P-256 private key from PEM: PKCS #8 (`PRIVATE KEY`) or SEC1 (`EC
 * PRIVATE KEY`, what `openssl ecparam -genkey` writes), as a WebCrypto
 * ECDSA signing key, with its public key (SubjectPublicKeyInfo).
 *
 * @param pem The PEM text.
 * @returns The key and its public half.
 * @throws {CertificateError} If there is no P-256 key in it.
 */
export async function importPrivateKey(
  pem: string,
): Promise<{ key: CryptoKey; spki: Uint8Array }> {
  let pkcs8 = pemBlocks(pem, "PRIVATE KEY")[0];
  if (pkcs8 === undefined) {
    const sec1 = pemBlocks(pem, "EC PRIVATE KEY")[0];
    if (sec1 === undefined) {
      throw new CertificateError(
        "No PRIVATE KEY or EC PRIVATE KEY block in the key file",
        "unsupported",
      );
    }
    // PrivateKeyInfo { 0, { id-ecPublicKey, prime256v1 }, OCTET STRING }.
    const algorithm = Uint8Array.from([
      0x30,
      0x13,
      0x06,
      0x07,
      0x2a,
      0x86,
      0x48,
      0xce,
      0x3d,
      0x02,
      0x01,
      0x06,
      0x08,
      0x2a,
      0x86,
      0x48,
      0xce,
      0x3d,
      0x03,
      0x01,
      0x07,
    ]);
    const octets = derWrap(0x04, sec1);
    pkcs8 = derWrap(
      0x30,
      concat(Uint8Array.from([0x02, 0x01, 0x00]), algorithm, octets),
    );
  }
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8.slice(),
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign"],
    );
  } catch (error) {
    throw new CertificateError(
      `The key is not a P-256 key WebCrypto takes (${
        (error as Error).message
      })`,
      "unsupported",
    );
  }
  // The public half, through JWK (pkcs8 keys have no "spki" export).
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const publicKey = await crypto.subtle.importKey(
    "jwk",
    { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["verify"],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
  return { key, spki };
}

function derWrap(tag: number, content: Uint8Array): Uint8Array {
  const length = content.length;
  const head = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : [tag, 0x82, length >> 8, length & 0xff];
  return concat(Uint8Array.from(head), content);
}
