// This module is browser compatible.

/**
 * DTLS 1.2 (RFC 6347) as CoAP uses it (RFC 7252 §9), sans-I/O: datagrams
 * and a clock in, datagrams out, on WebCrypto. No maintained DTLS library
 * runs where this stack runs (Deno's `node:crypto` has no AES-CCM, and the
 * JavaScript DTLS packages speak neither PSK with CCM_8 as servers nor on
 * Deno), so this is written here, sharing AES-CCM with OSCORE.
 *
 * A {@linkcode DtlsSession} is one association: the record layer (epochs,
 * 48-bit sequence numbers, a 64-record replay window, AES-128-CCM-8), the
 * handshake with its flights, retransmission timer, fragmentation and
 * reassembly, and alerts. Cipher suite: `TLS_PSK_WITH_AES_128_CCM_8`
 * (RFC 6655, CoAP's mandatory one), with the extended master secret (RFC
 * 7627) and an empty renegotiation_info. A {@linkcode DtlsEndpoint} is a
 * socket's side: it answers a ClientHello without a valid cookie with a
 * HelloVerifyRequest and keeps nothing (§4.2.1), keeps a session per peer
 * after that, and bounds handshakes per address and in total, sessions,
 * and each handshake's time.
 *
 * @module
 */

import { concat, equalBytes as equal } from "./bytes.ts";
import { AesCcm } from "./ccm.ts";
import { type Clock, systemClock } from "./connection.ts";
import { ReplayWindow } from "./oscore.ts";
import { siphash24 } from "./siphash.ts";
import {
  CertificateError,
  checkChain,
  ecdsaToDer,
  verifySignature,
} from "./x509.ts";
import type { PeerAddress } from "./udp.ts";

// Content types (RFC 5246 §6.2.1).
const CHANGE_CIPHER_SPEC = 20;
const ALERT = 21;
const HANDSHAKE = 22;
const APPLICATION_DATA = 23;

// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
const CLIENT_HELLO = 1;
const SERVER_HELLO = 2;
const HELLO_VERIFY_REQUEST = 3;
const CERTIFICATE = 11;
const SERVER_KEY_EXCHANGE = 12;
const CERTIFICATE_REQUEST = 13;
const SERVER_HELLO_DONE = 14;
const CLIENT_KEY_EXCHANGE = 16;
const FINISHED = 20;

/** `TLS_PSK_WITH_AES_128_CCM_8` (RFC 6655). */
export const TLS_PSK_WITH_AES_128_CCM_8 = 0xc0a8;
/** `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8` (RFC 7251). */
export const TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xc0ae;
const CERTIFICATE_VERIFY = 15;
const EXT_SUPPORTED_GROUPS = 10;
const EXT_EC_POINT_FORMATS = 11;
const EXT_SIGNATURE_ALGORITHMS = 13;
const EXT_CLIENT_CERTIFICATE_TYPE = 19;
const EXT_SERVER_CERTIFICATE_TYPE = 20;
const SECP256R1 = 23;
const ECDSA_SECP256R1_SHA256 = 0x0403;
const CERT_TYPE_X509 = 0;
const CERT_TYPE_RAW_PUBLIC_KEY = 2;

const EXT_RENEGOTIATION_INFO = 0xff01;
const TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00ff;
const EXT_EXTENDED_MASTER_SECRET = 0x0017;

/** Alert descriptions (RFC 5246 §7.2). */
export const AlertDescription = {
  CLOSE_NOTIFY: 0,
  UNEXPECTED_MESSAGE: 10,
  BAD_RECORD_MAC: 20,
  RECORD_OVERFLOW: 22,
  HANDSHAKE_FAILURE: 40,
  BAD_CERTIFICATE: 42,
  UNSUPPORTED_CERTIFICATE: 43,
  CERTIFICATE_EXPIRED: 45,
  CERTIFICATE_UNKNOWN: 46,
  ILLEGAL_PARAMETER: 47,
  UNKNOWN_CA: 48,
  ACCESS_DENIED: 49,
  DECODE_ERROR: 50,
  DECRYPT_ERROR: 51,
  PROTOCOL_VERSION: 70,
  INSUFFICIENT_SECURITY: 71,
  INTERNAL_ERROR: 80,
  UNKNOWN_PSK_IDENTITY: 115,
} as const;

const ALERT_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(AlertDescription).map((
    [name, n],
  ) => [n, name.toLowerCase()]),
);

/** The name of an alert description, as RFC 5246 writes it. */
export function alertName(description: number): string {
  return ALERT_NAMES[description] ?? `alert ${description}`;
}

/**
 * Why a session ended, or could not begin: `alert` is the description sent
 * or received, `sent` whether this side sent it.
 */
export class DtlsError extends Error {
  /** The alert's description (`AlertDescription`). */
  readonly alert: number;
  /** Whether this side sent the alert (else the peer did, or none went). */
  readonly sent: boolean;

  /**
   * Creates the error.
   *
   * @param message What happened, in words.
   * @param alert The alert description.
   * @param sent Whether this side sent the alert.
   */
  constructor(message: string, alert: number, sent = true) {
    super(message);
    this.name = "DtlsError";
    this.alert = alert;
    this.sent = sent;
  }
}

/** A pre-shared key and the identity it goes with. */
export interface PskCredentials {
  /** The identity (libcoap's `-u`), as bytes or UTF-8 text. */
  readonly identity: Uint8Array | string;
  /** The key (libcoap's `-k`), as bytes or UTF-8 text. */
  readonly key: Uint8Array | string;
}

/** A certificate (or raw public key) and the key that goes with it. */
export interface DtlsCertificate {
  /** The chain, DER, this side's own first (empty for a raw public key). */
  readonly chain: readonly Uint8Array[];
  /** The P-256 ECDSA private key. */
  readonly key: CryptoKey;
  /** Its public key (SubjectPublicKeyInfo, DER). */
  readonly spki: Uint8Array;
}

/** The options of a {@linkcode DtlsSession}. */
export interface DtlsSessionOptions {
  /** Client: the identity and key to offer. */
  psk?: PskCredentials;
  /**
   * Server: the key of an identity, or `undefined` for one it does not
   * know (the handshake then fails with unknown_psk_identity).
   */
  pskLookup?: (identity: Uint8Array) => Uint8Array | undefined;
  /** Server: the identity hint to send (libcoap's `-h`). */
  pskHint?: Uint8Array | string;
  /**
   * This side's certificate and key, for `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`:
   * the chain (DER, its own first; empty with `rawPublicKey`), the P-256
   * signing key and its public key (SubjectPublicKeyInfo). A server needs
   * it for that suite; a client sends it when asked.
   */
  certificate?: DtlsCertificate;
  /** The CAs (DER) the peer's certificate must chain to. */
  cas?: readonly Uint8Array[];
  /**
   * Raw public keys (RFC 7250; SubjectPublicKeyInfo, DER) the peer may
   * present instead of a certificate.
   */
  trustedKeys?: readonly Uint8Array[];
  /** Present this side's key raw (RFC 7250) rather than a certificate. */
  rawPublicKey?: boolean;
  /** Client: the host the server's certificate must name. */
  host?: string;
  /** Server: ask every client for a certificate, and refuse one without. */
  requireClientCertificate?: boolean;
  /** The time certificates are checked at (ms since the epoch). */
  now?: () => number;
  /**
   * The first retransmission timeout of a flight, doubled each time up to
   * 60 s (RFC 6347 §4.2.4.1).
   *
   * @default {1000}
   */
  retransmitTimeout?: number;
  /**
   * How long a handshake may take in all, in milliseconds.
   *
   * @default {30000}
   */
  handshakeTimeout?: number;
  /**
   * The largest datagram to send: handshake messages are fragmented to
   * fit it.
   *
   * @default {1200}
   */
  mtu?: number;
  /** The timers. */
  clock?: Clock;
}

// ---------------------------------------------------------------------------
// Bytes

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

function bytesOf(value: Uint8Array | string): Uint8Array {
  return typeof value === "string" ? encoder.encode(value) : value;
}

function u8(n: number): Uint8Array {
  return new Uint8Array([n & 0xff]);
}

function u16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

function u24(n: number): Uint8Array {
  return new Uint8Array([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function u48(n: number): Uint8Array {
  const out = new Uint8Array(6);
  for (let i = 5; i >= 0; i--) {
    out[i] = n % 256;
    n = Math.floor(n / 256);
  }
  return out;
}

/** A vector with a length prefix of `size` bytes. */
function vector(size: 1 | 2 | 3, body: Uint8Array): Uint8Array {
  const head = size === 1
    ? u8(body.length)
    : size === 2
    ? u16(body.length)
    : u24(body.length);
  return concat(head, body);
}

/** Reads fields of a message in order; any overrun is a decode_error. */
class Reader {
  #at = 0;
  readonly #bytes: Uint8Array;
  readonly #what: string;

  constructor(bytes: Uint8Array, what: string) {
    this.#bytes = bytes;
    this.#what = what;
  }

  get left(): number {
    return this.#bytes.length - this.#at;
  }

  #need(n: number): void {
    if (this.#at + n > this.#bytes.length) {
      throw new DtlsError(
        `Malformed ${this.#what}: it ends early`,
        AlertDescription.DECODE_ERROR,
      );
    }
  }

  u8(): number {
    this.#need(1);
    return this.#bytes[this.#at++];
  }

  u16(): number {
    this.#need(2);
    const n = (this.#bytes[this.#at] << 8) | this.#bytes[this.#at + 1];
    this.#at += 2;
    return n;
  }

  u24(): number {
    this.#need(3);
    const b = this.#bytes;
    const n = (b[this.#at] << 16) | (b[this.#at + 1] << 8) | b[this.#at + 2];
    this.#at += 3;
    return n;
  }

  bytes(n: number): Uint8Array {
    this.#need(n);
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  vector(size: 1 | 2 | 3): Uint8Array {
    const n = size === 1 ? this.u8() : size === 2 ? this.u16() : this.u24();
    return this.bytes(n);
  }

  rest(): Uint8Array {
    return this.bytes(this.left);
  }

  end(): void {
    if (this.left !== 0) {
      throw new DtlsError(
        `Malformed ${this.#what}: ${this.left} bytes after its end`,
        AlertDescription.DECODE_ERROR,
      );
    }
  }
}

// ---------------------------------------------------------------------------
// Crypto: HMAC-SHA-256, the TLS 1.2 PRF (RFC 5246 §5)

async function sha256(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data.slice()));
}

/**
 * The TLS 1.2 PRF with SHA-256: P_SHA256(secret, label + seed), cut to
 * `length` bytes.
 *
 * @param secret The secret.
 * @param label The label, such as `"master secret"`.
 * @param seed The seed.
 * @param length How many bytes.
 * @returns The bytes.
 *
 * @example RFC 5246's PRF, the published SHA-256 test vector
 * ```ts
 * import { prf } from "./dtls.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const h = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
 * const out = await prf(
 *   h("9bbe436ba940f017b17652849a71db35"),
 *   "test label",
 *   h("a0ba9f936cda311827a6f796ffd5198c"),
 *   16,
 * );
 * assertEquals(out, h("e3f229ba727be17b8d122620557cd453"));
 * ```
 */
export async function prf(
  secret: Uint8Array,
  label: string,
  seed: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    secret.slice(),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = async (data: Uint8Array) =>
    new Uint8Array(await crypto.subtle.sign("HMAC", key, data.slice()));
  const labelled = concat(encoder.encode(label), seed);
  const out = new Uint8Array(length);
  let a = labelled as Uint8Array;
  let at = 0;
  while (at < length) {
    a = await mac(a);
    const block = await mac(concat(a, labelled));
    out.set(block.subarray(0, Math.min(block.length, length - at)), at);
    at += block.length;
  }
  return out;
}

/** The PSK premaster secret (RFC 4279 §2): zeros as long as the key, then it. */
function pskPremaster(key: Uint8Array): Uint8Array {
  return concat(u16(key.length), new Uint8Array(key.length), vector(2, key));
}

// ---------------------------------------------------------------------------
// Records (RFC 6347 §4.1)

const RECORD_HEADER = 13;
const HANDSHAKE_HEADER = 12;
const DTLS_1_2 = new Uint8Array([0xfe, 0xfd]);
const DTLS_1_0 = new Uint8Array([0xfe, 0xff]);
/** The largest record plaintext (RFC 5246 §6.2.1). */
const MAX_PLAINTEXT = 16384;

/** One record read from a datagram, as it came. */
export interface DtlsRecord {
  /** The content type: 20 ChangeCipherSpec, 21 alert, 22 handshake, 23 data. */
  readonly type: number;
  /** The version field (254, 253 for DTLS 1.2). */
  readonly version: Uint8Array;
  /** The epoch: 0 in the clear, 1 once keys are in use. */
  readonly epoch: number;
  /** The record's 48-bit sequence number. */
  readonly sequence: number;
  /** The record's body, as it came (sealed from epoch 1). */
  readonly fragment: Uint8Array;
  /** The bytes of the whole record (header and fragment). */
  readonly raw: Uint8Array;
}

/**
 * Splits a datagram into its records (RFC 6347 §4.1.1: several may share
 * one). What does not parse ends the list: the rest of the datagram is
 * dropped, as §4.1.2.7 asks.
 *
 * @param datagram The datagram.
 * @returns The records.
 */
export function readRecords(datagram: Uint8Array): DtlsRecord[] {
  const records: DtlsRecord[] = [];
  let at = 0;
  while (at + RECORD_HEADER <= datagram.length) {
    const type = datagram[at];
    const version = datagram.subarray(at + 1, at + 3);
    const epoch = (datagram[at + 3] << 8) | datagram[at + 4];
    let sequence = 0;
    for (let i = 5; i < 11; i++) sequence = sequence * 256 + datagram[at + i];
    const length = (datagram[at + 11] << 8) | datagram[at + 12];
    if (
      at + RECORD_HEADER + length > datagram.length ||
      version[0] !== 0xfe || type < CHANGE_CIPHER_SPEC ||
      type > APPLICATION_DATA
    ) {
      break;
    }
    records.push({
      type,
      version,
      epoch,
      sequence,
      fragment: datagram.subarray(
        at + RECORD_HEADER,
        at + RECORD_HEADER + length,
      ),
      raw: datagram.subarray(at, at + RECORD_HEADER + length),
    });
    at += RECORD_HEADER + length;
  }
  return records;
}

/** A direction's keys in an epoch: AES-128-CCM-8 and its 4-byte salt. */
interface Cipher {
  readonly ccm: AesCcm;
  readonly salt: Uint8Array;
}

function recordHeader(
  type: number,
  epoch: number,
  sequence: number,
  length: number,
  version: Uint8Array = DTLS_1_2,
): Uint8Array {
  return concat(u8(type), version, u16(epoch), u48(sequence), u16(length));
}

/** The AAD of a record (RFC 5246 §6.2.3.3): sequence, type, version, length. */
function recordAad(
  type: number,
  epoch: number,
  sequence: number,
  length: number,
): Uint8Array {
  return concat(u16(epoch), u48(sequence), u8(type), DTLS_1_2, u16(length));
}

async function seal(
  cipher: Cipher,
  type: number,
  epoch: number,
  sequence: number,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const explicit = concat(u16(epoch), u48(sequence));
  const sealed = await cipher.ccm.encrypt(
    concat(cipher.salt, explicit),
    plaintext,
    recordAad(type, epoch, sequence, plaintext.length),
  );
  const fragment = concat(explicit, sealed);
  return concat(
    recordHeader(type, epoch, sequence, fragment.length),
    fragment,
  );
}

async function open(
  cipher: Cipher,
  record: DtlsRecord,
): Promise<Uint8Array | undefined> {
  const { fragment } = record;
  if (fragment.length < 8 + 8) return undefined;
  const explicit = fragment.subarray(0, 8);
  return await cipher.ccm.decrypt(
    concat(cipher.salt, explicit),
    fragment.subarray(8),
    recordAad(
      record.type,
      record.epoch,
      record.sequence,
      fragment.length - 16,
    ),
  );
}

// ---------------------------------------------------------------------------
// Handshake messages (RFC 6347 §4.2.2)

/** A whole handshake message: its type, message_seq and body. */
export interface HandshakeMessage {
  /** The handshake type (1 ClientHello, 2 ServerHello, …). */
  readonly type: number;
  /** Its message_seq. */
  readonly seq: number;
  /** Its body, reassembled. */
  readonly body: Uint8Array;
}

/** A handshake message as the transcript has it: whole, not fragmented. */
function handshakeBytes(type: number, seq: number, body: Uint8Array) {
  return concat(
    u8(type),
    u24(body.length),
    u16(seq),
    u24(0),
    u24(body.length),
    body,
  );
}

/** Reassembles a handshake message from its fragments (§4.2.3). */
class Reassembly {
  readonly type: number;
  readonly length: number;
  readonly #body: Uint8Array;
  /** Bytes received, as [from, to) ranges, merged. */
  #ranges: [number, number][] = [];

  constructor(type: number, length: number) {
    this.type = type;
    this.length = length;
    this.#body = new Uint8Array(length);
  }

  add(offset: number, fragment: Uint8Array): void {
    this.#body.set(fragment, offset);
    const ranges = [...this.#ranges, [offset, offset + fragment.length]]
      .sort((a, b) => a[0] - b[0]) as [number, number][];
    const merged: [number, number][] = [];
    for (const range of ranges) {
      const last = merged.at(-1);
      if (last !== undefined && range[0] <= last[1]) {
        last[1] = Math.max(last[1], range[1]);
      } else merged.push([...range]);
    }
    this.#ranges = merged;
  }

  get complete(): boolean {
    return this.length === 0 ||
      (this.#ranges.length === 1 && this.#ranges[0][0] === 0 &&
        this.#ranges[0][1] === this.length);
  }

  get body(): Uint8Array {
    return this.#body;
  }
}

/**
 * Datagrams a session holds while WebCrypto works on those before them
 * (each record is opened in turn); past it, datagrams are dropped.
 */
const MAX_PENDING = 64;

/** The largest handshake message taken (a certificate chain fits). */
const MAX_HANDSHAKE_MESSAGE = 16384;
/** Handshake messages held ahead of the next expected one. */
const MAX_HELD_MESSAGES = 8;

// ---------------------------------------------------------------------------
// ClientHello (RFC 5246 §7.4.1.2, RFC 6347 §4.2.1)

/** A ClientHello, read (RFC 5246 §7.4.1.2, RFC 6347 §4.2.1). */
export interface ClientHello {
  /** The version it offers. */
  readonly version: Uint8Array;
  /** Its 32 random bytes. */
  readonly random: Uint8Array;
  /** A session to resume (never resumed here). */
  readonly sessionId: Uint8Array;
  /** The cookie of a HelloVerifyRequest, or empty. */
  readonly cookie: Uint8Array;
  /** The cipher suites it offers. */
  readonly suites: number[];
  /** Its extensions, by type. */
  readonly extensions: Map<number, Uint8Array>;
}

function readExtensions(
  reader: Reader,
  what: string,
): Map<number, Uint8Array> {
  const extensions = new Map<number, Uint8Array>();
  if (reader.left === 0) return extensions;
  const block = new Reader(reader.vector(2), `${what}'s extensions`);
  while (block.left > 0) {
    const type = block.u16();
    const data = block.vector(2);
    if (extensions.has(type)) {
      throw new DtlsError(
        `Malformed ${what}: extension ${type} twice`,
        AlertDescription.DECODE_ERROR,
      );
    }
    extensions.set(type, data);
  }
  return extensions;
}

function readClientHello(body: Uint8Array): ClientHello {
  const reader = new Reader(body, "ClientHello");
  const version = reader.bytes(2);
  const random = reader.bytes(32);
  const sessionId = reader.vector(1);
  const cookie = reader.vector(1);
  const suiteBytes = reader.vector(2);
  if (suiteBytes.length % 2 !== 0 || sessionId.length > 32) {
    throw new DtlsError(
      "Malformed ClientHello",
      AlertDescription.DECODE_ERROR,
    );
  }
  const suites: number[] = [];
  for (let i = 0; i < suiteBytes.length; i += 2) {
    suites.push((suiteBytes[i] << 8) | suiteBytes[i + 1]);
  }
  reader.vector(1); // compression methods: null is the only one used
  const extensions = readExtensions(reader, "ClientHello");
  reader.end();
  return { version, random, sessionId, cookie, suites, extensions };
}

/**
 * Makes the cookie of a HelloVerifyRequest (§4.2.1): a MAC over the
 * client's address and its hello's parameters, under a secret that
 * changes, so that the server keeps nothing for a ClientHello it has not
 * seen answered from that address. Two SipHash-2-4 outputs under the two
 * halves of the secret: synchronous, a few microseconds, so that a flood of
 * ClientHellos is answered as it comes, with nothing waiting on WebCrypto.
 */
function cookieOf(
  secret: Uint8Array,
  from: PeerAddress,
  hello: ClientHello,
): Uint8Array {
  const suites = new Uint8Array(hello.suites.length * 2);
  hello.suites.forEach((suite, i) => suites.set(u16(suite), i * 2));
  const input = concat(
    encoder.encode(`${from.hostname}|${from.port}|`),
    hello.version,
    hello.random,
    hello.sessionId,
    suites,
  );
  return concat(
    siphash24(secret.subarray(0, 16), input),
    siphash24(secret.subarray(16, 32), input),
  );
}

// ---------------------------------------------------------------------------
// The session

/** What a session tells its owner. */
export interface DtlsSessionHooks {
  /** A datagram to send to the peer. */
  send(datagram: Uint8Array): void;
  /** The handshake finished: application data may flow. */
  onOpen?(): void;
  /** Application data from the peer. */
  onData?(data: Uint8Array): void;
  /** The session ended; it was open if `onOpen` ran. */
  onClose?(reason: DtlsError): void;
}

type State =
  | "idle"
  | "waitServerHello"
  | "waitServerHelloDone"
  | "waitServerFinished"
  | "waitClientKeyExchange"
  | "waitCertificateVerify"
  | "waitClientFinished"
  | "open"
  | "closed";

/**
 * One DTLS 1.2 association, client or server. Feed it the peer's
 * datagrams with {@linkcode DtlsSession.prototype.receive}; it sends
 * through its hooks. A server session starts from a ClientHello that
 * carried a valid cookie ({@linkcode DtlsEndpoint} checks it).
 *
 * @example A client and a server with a pre-shared key, in memory
 * ```ts
 * import { DtlsEndpoint } from "./dtls.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const key = new TextEncoder().encode("secretPSK");
 * const got: string[] = [];
 * const at = { hostname: "127.0.0.1", port: 5684 };
 * const from = { hostname: "127.0.0.1", port: 40000 };
 * const server: DtlsEndpoint = new DtlsEndpoint(
 *   (datagram) => queueMicrotask(() => client.receive(datagram, at)),
 *   (data) => got.push(new TextDecoder().decode(data)),
 *   { pskLookup: (id) => new TextDecoder().decode(id) === "me" ? key : undefined },
 * );
 * const client: DtlsEndpoint = new DtlsEndpoint(
 *   (datagram) => queueMicrotask(() => server.receive(datagram, from)),
 *   () => {},
 *   { psk: { identity: "me", key } },
 * );
 * const session = await client.connect(at);
 * session.send(new TextEncoder().encode("hello"));
 * await new Promise((resolve) => setTimeout(resolve, 50));
 * assertEquals([session.state, server.cookiesSent, got], ["open", 1, ["hello"]]);
 * client.close();
 * server.close();
 * ```
 */
export class DtlsSession {
  /** `"client"` or `"server"`. */
  readonly role: "client" | "server";
  readonly #hooks: DtlsSessionHooks;
  readonly #options: DtlsSessionOptions;
  readonly #clock: Clock;
  #state: State = "idle";
  // Write side.
  #writeEpoch = 0;
  #writeSequence = [0, 0];
  #writeCipher: Cipher | undefined;
  // Read side.
  #readEpoch = 0;
  #readCipher: Cipher | undefined;
  #pendingReadCipher: Cipher | undefined;
  #pendingWriteCipher: Cipher | undefined;
  readonly #windows = [new ReplayWindow(64), new ReplayWindow(64)];
  // Handshake.
  #sendSeq = 0;
  #receiveSeq = 0;
  readonly #held = new Map<number, Reassembly>();
  #transcript: Uint8Array[] = [];
  #clientRandom: Uint8Array = EMPTY;
  #serverRandom: Uint8Array = EMPTY;
  #cookie: Uint8Array = EMPTY;
  #ems = false;
  #masterSecret: Uint8Array = EMPTY;
  #premaster: Uint8Array = EMPTY;
  /** The last flight sent: its records, to send again. */
  #flight: { type: number; epoch: number; body: Uint8Array }[] = [];
  #retransmit: unknown;
  #timeout: number;
  #deadline: unknown;
  /** Work in order: every datagram's records go through one chain. */
  #tail: Promise<void> = Promise.resolve();
  #identity: Uint8Array = EMPTY;
  #pending = 0;
  #dropped = 0;
  /** Whether a record of the peer's was taken (for the timeout's words). */
  #heard = false;
  #suite = 0;
  /** The peer presents a raw public key (RFC 7250), not a certificate. */
  #peerRpk = false;
  /** This side presents a raw public key. */
  #ownRpk = false;
  /** The peer's public key, once its certificate was checked. */
  #peerKey: Uint8Array | undefined;
  #peerPoint: Uint8Array | undefined;
  #ecdh: CryptoKeyPair | undefined;
  #certificateRequested = false;
  #clientCertificateSeen = false;

  /**
   * Makes a session; a client's starts with {@linkcode DtlsSession.prototype.start},
   * a server's with the cookie-checked ClientHello.
   *
   * @param role Which side this is.
   * @param hooks Where datagrams, data and the end go.
   * @param options Credentials and timers.
   * @throws {TypeError} If a client has no `psk`, or a server no
   * `pskLookup`.
   */
  constructor(
    role: "client" | "server",
    hooks: DtlsSessionHooks,
    options: DtlsSessionOptions = {},
  ) {
    if (
      role === "client" && options.psk === undefined &&
      options.cas === undefined && options.trustedKeys === undefined
    ) {
      throw new TypeError(
        "Cannot create a DTLS client: psk (an identity and key), or cas or trustedKeys to check the server's key, is needed",
      );
    }
    if (
      role === "server" && options.pskLookup === undefined &&
      options.certificate === undefined
    ) {
      throw new TypeError(
        "Cannot create a DTLS server: pskLookup or a certificate is needed",
      );
    }
    this.role = role;
    this.#hooks = hooks;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#timeout = options.retransmitTimeout ?? 1000;
  }

  /** Where the handshake is: `"open"` once done, `"closed"` at the end. */
  get state(): string {
    return this.#state;
  }

  /** Server: the PSK identity the client used, once known. */
  get identity(): Uint8Array {
    return this.#identity;
  }

  /** Client: sends the first ClientHello. */
  start(): void {
    if (this.role !== "client" || this.#state !== "idle") return;
    this.#armDeadline();
    this.#clientRandom = random32();
    this.#state = "waitServerHello";
    this.#sendFlight([this.#clientHello()]);
  }

  /**
   * Server: begins with a ClientHello whose cookie the endpoint checked.
   *
   * @param record The record that carried it (its sequence number is
   * mirrored, §4.2.1).
   * @param message The ClientHello handshake message.
   * @param hello The ClientHello, read.
   */
  acceptHello(
    record: DtlsRecord,
    message: HandshakeMessage,
    hello: ClientHello,
  ): void {
    if (this.role !== "server" || this.#state !== "idle") return;
    this.#armDeadline();
    this.#writeSequence[0] = record.sequence;
    this.#receiveSeq = message.seq + 1;
    this.#sendSeq = message.seq;
    this.#windows[0].accept(record.sequence);
    this.#run(() => this.#serverHello(message, hello));
  }

  /**
   * Takes a datagram from the peer.
   *
   * @param datagram The datagram.
   */
  receive(datagram: Uint8Array): void {
    if (this.#state === "closed") return;
    // Each datagram waits for WebCrypto behind the ones before it: past
    // MAX_PENDING waiting, one more is dropped, as a full socket would.
    if (this.#pending >= MAX_PENDING) {
      this.#dropped++;
      return;
    }
    const records = readRecords(datagram);
    this.#pending++;
    this.#run(async () => {
      try {
        for (const record of records) {
          if (this.#state === "closed") return;
          await this.#record(record);
        }
      } finally {
        this.#pending--;
      }
    });
  }

  /** Datagrams dropped because `MAX_PENDING` were waiting. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Sends application data (one datagram's worth: a CoAP message).
   *
   * @param data The bytes.
   * @returns Whether it went (only an open session sends).
   */
  send(data: Uint8Array): boolean {
    if (this.#state !== "open" || data.length > MAX_PLAINTEXT) return false;
    const sequence = this.#nextSequence();
    const epoch = this.#writeEpoch;
    const cipher = this.#writeCipher!;
    this.#run(async () => {
      this.#hooks.send(
        await seal(cipher, APPLICATION_DATA, epoch, sequence, data),
      );
    });
    return true;
  }

  /** Ends the session with a close_notify alert. */
  close(): void {
    if (this.#state === "closed") return;
    this.#fail(
      new DtlsError("Closed by this side", AlertDescription.CLOSE_NOTIFY),
      1,
    );
  }

  /** Runs work after what is under way, failing the session on a throw. */
  #run(work: () => void | Promise<void>): void {
    this.#tail = this.#tail.then(work).catch((error) => {
      if (error instanceof DtlsError) this.#fail(error, 2);
      else {
        this.#fail(
          new DtlsError(
            `Internal error: ${(error as Error)?.message ?? error}`,
            AlertDescription.INTERNAL_ERROR,
          ),
          2,
        );
      }
    });
  }

  #armDeadline(): void {
    const ms = this.#options.handshakeTimeout ?? 30_000;
    this.#deadline = this.#clock.setTimeout(() => {
      if (this.#state !== "open" && this.#state !== "closed") {
        const why = this.#state === "waitServerHello" && !this.#heard
          ? `No answer to the ClientHello within ${ms} ms: nothing speaks DTLS there`
          : this.#state === "waitServerFinished"
          ? `The server did not answer the Finished within ${ms} ms: it could not verify it (a wrong pre-shared key, or an identity it does not know)`
          : `The handshake did not finish within ${ms} ms`;
        this.#fail(
          new DtlsError(why, AlertDescription.HANDSHAKE_FAILURE, false),
          0,
        );
      }
    }, ms);
  }

  #nextSequence(): number {
    const epoch = this.#writeEpoch;
    const sequence = this.#writeSequence[epoch]++;
    if (sequence >= 2 ** 48 - 1) {
      throw new DtlsError(
        "Record sequence numbers used up",
        AlertDescription.INTERNAL_ERROR,
      );
    }
    return sequence;
  }

  /** Ends the session: an alert of `level` (0: none), then closed. */
  #fail(reason: DtlsError, level: 0 | 1 | 2): void {
    if (this.#state === "closed") return;
    if (level !== 0 && reason.sent) {
      const alert = new Uint8Array([level, reason.alert]);
      // Sent with what protects this side's records now.
      const epoch = this.#writeEpoch;
      const cipher = this.#writeCipher;
      const sequence = this.#writeSequence[epoch]++;
      const datagram = cipher === undefined
        ? concat(recordHeader(ALERT, epoch, sequence, 2), alert)
        : undefined;
      if (datagram !== undefined) this.#hooks.send(datagram);
      else {
        seal(cipher!, ALERT, epoch, sequence, alert).then(
          (sealed) => this.#hooks.send(sealed),
          () => {},
        );
      }
    }
    this.#state = "closed";
    this.#clock.clearTimeout(this.#retransmit);
    this.#clock.clearTimeout(this.#deadline);
    this.#flight = [];
    this.#held.clear();
    this.#transcript = [];
    this.#hooks.onClose?.(reason);
  }

  // --- Records in ---------------------------------------------------------

  async #record(record: DtlsRecord): Promise<void> {
    const epoch = record.epoch;
    if (epoch > 1) return;
    const window = this.#windows[epoch];
    if (!window.valid(record.sequence)) return;
    let fragment: Uint8Array | undefined;
    if (epoch === 0) {
      // Epoch 0 is in the clear; once the peer moved to epoch 1, only a
      // retransmitted handshake message of its earlier flight may come.
      if (record.type === APPLICATION_DATA) return;
      fragment = record.fragment;
    } else {
      const cipher = this.#readEpoch === 1
        ? this.#readCipher
        : this.#pendingReadCipher;
      if (cipher === undefined) return; // not yet: dropped, resent later
      fragment = await open(cipher, record);
      // §4.1.2.7: an invalid record is dropped, not answered.
      if (fragment === undefined) return;
      if (this.#readEpoch === 0) {
        // A record of epoch 1 before its ChangeCipherSpec: not ours yet.
        return;
      }
    }
    window.accept(record.sequence);
    this.#heard = true;
    if (fragment.length > MAX_PLAINTEXT) {
      throw new DtlsError(
        "A record over 2^14 bytes",
        AlertDescription.RECORD_OVERFLOW,
      );
    }
    switch (record.type) {
      case CHANGE_CIPHER_SPEC:
        this.#changeCipherSpec(fragment);
        return;
      case ALERT:
        this.#alert(fragment);
        return;
      case HANDSHAKE:
        await this.#handshakeFragments(fragment);
        return;
      case APPLICATION_DATA:
        if (this.#state === "open" && epoch === 1) {
          this.#hooks.onData?.(fragment);
        }
        return;
    }
  }

  #changeCipherSpec(fragment: Uint8Array): void {
    if (fragment.length !== 1 || fragment[0] !== 1) {
      throw new DtlsError(
        "Malformed ChangeCipherSpec",
        AlertDescription.DECODE_ERROR,
      );
    }
    const expected = this.role === "client"
      ? this.#state === "waitServerFinished"
      : this.#state === "waitClientFinished";
    if (!expected || this.#pendingReadCipher === undefined) {
      // A retransmitted one, or early: ignored (it may be reordered).
      return;
    }
    this.#readEpoch = 1;
    this.#readCipher = this.#pendingReadCipher;
  }

  #alert(fragment: Uint8Array): void {
    if (fragment.length !== 2) return;
    const [level, description] = fragment;
    if (description === AlertDescription.CLOSE_NOTIFY) {
      this.#fail(
        new DtlsError(
          "The peer closed the session (close_notify)",
          description,
          false,
        ),
        0,
      );
      return;
    }
    if (level === 2) {
      this.#fail(
        new DtlsError(
          `The peer sent a fatal alert: ${alertName(description)}`,
          description,
          false,
        ),
        0,
      );
    }
  }

  async #handshakeFragments(fragment: Uint8Array) {
    let at = 0;
    while (at + HANDSHAKE_HEADER <= fragment.length) {
      const reader = new Reader(
        fragment.subarray(at, at + HANDSHAKE_HEADER),
        "handshake header",
      );
      const type = reader.u8();
      const length = reader.u24();
      const seq = reader.u16();
      const offset = reader.u24();
      const fragmentLength = reader.u24();
      const start = at + HANDSHAKE_HEADER;
      if (
        start + fragmentLength > fragment.length ||
        offset + fragmentLength > length || length > MAX_HANDSHAKE_MESSAGE
      ) {
        throw new DtlsError(
          "Malformed handshake fragment",
          AlertDescription.DECODE_ERROR,
        );
      }
      at = start + fragmentLength;
      const piece = fragment.subarray(start, start + fragmentLength);
      if (seq < this.#receiveSeq) {
        // The peer sends its earlier flight again: it lost ours.
        this.#resendSoon();
        continue;
      }
      if (seq >= this.#receiveSeq + MAX_HELD_MESSAGES) continue;
      let held = this.#held.get(seq);
      if (held === undefined) {
        held = new Reassembly(type, length);
        this.#held.set(seq, held);
      } else if (held.type !== type || held.length !== length) {
        throw new DtlsError(
          "Handshake fragments that disagree",
          AlertDescription.ILLEGAL_PARAMETER,
        );
      }
      held.add(offset, piece);
    }
    // Process what is whole, in order.
    for (;;) {
      const next = this.#held.get(this.#receiveSeq);
      if (next === undefined || !next.complete) return;
      this.#held.delete(this.#receiveSeq);
      const message: HandshakeMessage = {
        type: next.type,
        seq: this.#receiveSeq,
        body: next.body,
      };
      this.#receiveSeq++;
      await this.#handshake(message);
      if (this.#state === "closed") return;
    }
  }

  /** A retransmission of the peer's last flight: ours again, once a while. */
  #resendSoon(): void {
    if (this.#flight.length === 0) return;
    if (this.#state === "open" && this.role === "client") return;
    this.#transmit();
  }

  // --- Flights out ----------------------------------------------------------

  #message(type: number, body: Uint8Array): {
    type: number;
    epoch: number;
    body: Uint8Array;
    whole: Uint8Array;
  } {
    const seq = this.#sendSeq++;
    const whole = handshakeBytes(type, seq, body);
    return { type: HANDSHAKE, epoch: this.#writeEpoch, body: whole, whole };
  }

  /** Sends a flight (its handshake messages, CCS), and keeps it to resend. */
  #sendFlight(
    flight: { type: number; epoch: number; body: Uint8Array }[],
  ): void {
    this.#flight = flight;
    this.#timeout = this.#options.retransmitTimeout ?? 1000;
    this.#transmit();
  }

  #transmit(): void {
    this.#clock.clearTimeout(this.#retransmit);
    const flight = this.#flight;
    const mtu = this.#options.mtu ?? 1200;
    this.#run(async () => {
      const datagrams: Uint8Array[] = [];
      let current: Uint8Array[] = [];
      let size = 0;
      const push = (record: Uint8Array) => {
        if (size + record.length > mtu && current.length > 0) {
          datagrams.push(concat(...current));
          current = [];
          size = 0;
        }
        current.push(record);
        size += record.length;
      };
      for (const item of flight) {
        const pieces = item.type === HANDSHAKE
          ? fragments(item.body, mtu - RECORD_HEADER - 16 - HANDSHAKE_HEADER)
          : [item.body];
        for (const piece of pieces) {
          const sequence = this.#writeSequence[item.epoch]++;
          if (item.epoch === 0) {
            push(
              concat(
                recordHeader(item.type, 0, sequence, piece.length),
                piece,
              ),
            );
          } else {
            const cipher = this.#writeCipher ?? this.#pendingWriteCipher!;
            push(await seal(cipher, item.type, 1, sequence, piece));
          }
        }
      }
      if (current.length > 0) datagrams.push(concat(...current));
      for (const datagram of datagrams) this.#hooks.send(datagram);
    });
    // The last flight of a handshake is resent only when the peer asks
    // (by sending its own again): the server's after it finished.
    if (this.#state === "open") return;
    this.#retransmit = this.#clock.setTimeout(() => {
      if (this.#state === "open" || this.#state === "closed") return;
      this.#timeout = Math.min(this.#timeout * 2, 60_000);
      this.#transmit();
    }, this.#timeout);
  }

  // --- The handshake ----------------------------------------------------------

  /** Whether this client offers ECDHE_ECDSA: it can check a server's key. */
  #offersEcdhe(): boolean {
    const o = this.#options;
    return o.cas !== undefined || o.trustedKeys !== undefined;
  }

  #clientHello(): { type: number; epoch: number; body: Uint8Array } {
    const o = this.#options;
    const suites: Uint8Array[] = [];
    if (this.#offersEcdhe()) {
      suites.push(u16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8));
    }
    if (o.psk !== undefined) suites.push(u16(TLS_PSK_WITH_AES_128_CCM_8));
    let extensions = concat(
      u16(EXT_RENEGOTIATION_INFO),
      vector(2, vector(1, EMPTY)),
      u16(EXT_EXTENDED_MASTER_SECRET),
      vector(2, EMPTY),
    );
    if (this.#offersEcdhe()) {
      extensions = concat(
        extensions,
        u16(EXT_SUPPORTED_GROUPS),
        vector(2, vector(2, u16(SECP256R1))),
        u16(EXT_EC_POINT_FORMATS),
        vector(2, vector(1, u8(0))),
        u16(EXT_SIGNATURE_ALGORITHMS),
        vector(2, vector(2, u16(ECDSA_SECP256R1_SHA256))),
      );
      if (o.trustedKeys !== undefined) {
        // RFC 7250 §4.1: the types this side takes from the server, and
        // the one it can send, best first.
        const types = o.cas !== undefined
          ? concat(u8(CERT_TYPE_RAW_PUBLIC_KEY), u8(CERT_TYPE_X509))
          : u8(CERT_TYPE_RAW_PUBLIC_KEY);
        extensions = concat(
          extensions,
          u16(EXT_SERVER_CERTIFICATE_TYPE),
          vector(2, vector(1, types)),
        );
      }
      if (o.certificate !== undefined && o.rawPublicKey) {
        extensions = concat(
          extensions,
          u16(EXT_CLIENT_CERTIFICATE_TYPE),
          vector(2, vector(1, u8(CERT_TYPE_RAW_PUBLIC_KEY))),
        );
      }
    }
    const body = concat(
      DTLS_1_2,
      this.#clientRandom,
      vector(1, EMPTY), // no session to resume
      vector(1, this.#cookie),
      vector(2, concat(...suites)),
      vector(1, u8(0)), // null compression
      vector(2, extensions),
    );
    const message = this.#message(CLIENT_HELLO, body);
    this.#transcript = [message.whole];
    return message;
  }

  async #handshake(message: HandshakeMessage): Promise<void> {
    const whole = handshakeBytes(message.type, message.seq, message.body);
    if (this.role === "client") await this.#clientStep(message, whole);
    else await this.#serverStep(message, whole);
  }

  #unexpected(message: HandshakeMessage): DtlsError {
    return new DtlsError(
      `Unexpected handshake message ${message.type} in state ${this.#state}`,
      AlertDescription.UNEXPECTED_MESSAGE,
    );
  }

  /** A Certificate message's body: a chain, or one raw public key. */
  #certificateBody(): Uint8Array {
    const own = this.#options.certificate;
    if (own === undefined) return vector(3, EMPTY);
    if (this.#ownRpk) return vector(3, own.spki);
    return vector(3, concat(...own.chain.map((c) => vector(3, c))));
  }

  /**
   * Reads and checks the peer's Certificate message: a chain to one of
   * `cas` (naming `host`, for a server), or a raw public key among
   * `trustedKeys`. Returns its public key, or `undefined` if it is empty.
   */
  async #peerCertificate(
    body: Uint8Array,
    rpk: boolean,
  ): Promise<Uint8Array | undefined> {
    const o = this.#options;
    const peer = this.role === "client" ? "server" : "client";
    const reader = new Reader(body, "Certificate");
    const list = reader.vector(3);
    reader.end();
    if (list.length === 0) return undefined;
    if (rpk) {
      const spki = list.slice();
      if (!(o.trustedKeys ?? []).some((key) => equal(key, spki))) {
        throw new DtlsError(
          `The ${peer}'s raw public key is not one this side trusts`,
          AlertDescription.BAD_CERTIFICATE,
        );
      }
      return spki;
    }
    const chain: Uint8Array[] = [];
    const entries = new Reader(list, "certificate_list");
    while (entries.left > 0) chain.push(entries.vector(3).slice());
    if (o.cas === undefined) {
      throw new DtlsError(
        `The ${peer} sent a certificate, and this side was given no CA to check it with`,
        AlertDescription.UNKNOWN_CA,
      );
    }
    try {
      const leaf = await checkChain(chain, {
        cas: o.cas,
        host: this.role === "client" ? o.host : undefined,
        now: o.now?.(),
      });
      if (leaf.keyType !== "P-256") {
        throw new CertificateError(
          "Its key is not a P-256 key (ECDHE_ECDSA needs one)",
          "unsupported",
        );
      }
      return leaf.publicKey;
    } catch (error) {
      if (!(error instanceof CertificateError)) throw error;
      const alert = {
        expired: AlertDescription.CERTIFICATE_EXPIRED,
        unknown_ca: AlertDescription.UNKNOWN_CA,
        bad_certificate: AlertDescription.BAD_CERTIFICATE,
        unsupported: AlertDescription.UNSUPPORTED_CERTIFICATE,
      }[error.reason];
      throw new DtlsError(`The ${peer}'s certificate: ${error.message}`, alert);
    }
  }

  async #sign(data: Uint8Array): Promise<Uint8Array> {
    const raw = new Uint8Array(
      await crypto.subtle.sign(
        { name: "ECDSA", hash: "SHA-256" },
        this.#options.certificate!.key,
        data.slice(),
      ),
    );
    return concat(u16(ECDSA_SECP256R1_SHA256), vector(2, ecdsaToDer(raw)));
  }

  /** A fresh P-256 ECDH key pair and its public point (65 bytes). */
  async #ecdhKey(): Promise<Uint8Array> {
    this.#ecdh = await crypto.subtle.generateKey(
      { name: "ECDH", namedCurve: "P-256" },
      false,
      ["deriveBits"],
    ) as CryptoKeyPair;
    return new Uint8Array(
      await crypto.subtle.exportKey("raw", this.#ecdh.publicKey),
    );
  }

  /** The ECDH premaster secret with the peer's point (RFC 8422 §5.10). */
  async #ecdhSecret(point: Uint8Array): Promise<Uint8Array> {
    let peer: CryptoKey;
    try {
      if (point.length !== 65 || point[0] !== 4) throw new Error("not a point");
      peer = await crypto.subtle.importKey(
        "raw",
        point.slice(),
        { name: "ECDH", namedCurve: "P-256" },
        false,
        [],
      );
    } catch {
      throw new DtlsError(
        "The peer's ECDH point is not a P-256 point",
        AlertDescription.ILLEGAL_PARAMETER,
      );
    }
    return new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "ECDH", public: peer },
        this.#ecdh!.privateKey,
        256,
      ),
    );
  }

  async #clientStep(message: HandshakeMessage, whole: Uint8Array) {
    switch (this.#state) {
      case "waitServerHello": {
        if (message.type === HELLO_VERIFY_REQUEST) {
          const reader = new Reader(message.body, "HelloVerifyRequest");
          reader.bytes(2);
          const cookie = reader.vector(1);
          reader.end();
          if (cookie.length > 32 || this.#cookie.length > 0) {
            throw new DtlsError(
              "A second or oversized HelloVerifyRequest",
              AlertDescription.ILLEGAL_PARAMETER,
            );
          }
          this.#cookie = cookie.slice();
          this.#sendFlight([this.#clientHello()]);
          return;
        }
        if (message.type !== SERVER_HELLO) throw this.#unexpected(message);
        this.#transcript.push(whole);
        const reader = new Reader(message.body, "ServerHello");
        const version = reader.bytes(2);
        if (!equal(version, DTLS_1_2)) {
          throw new DtlsError(
            "The server does not speak DTLS 1.2",
            AlertDescription.PROTOCOL_VERSION,
          );
        }
        this.#serverRandom = reader.bytes(32).slice();
        reader.vector(1);
        const suite = reader.u16();
        const compression = reader.u8();
        const extensions = readExtensions(reader, "ServerHello");
        reader.end();
        const offered = (suite === TLS_PSK_WITH_AES_128_CCM_8 &&
          this.#options.psk !== undefined) ||
          (suite === TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 && this.#offersEcdhe());
        if (!offered || compression !== 0) {
          throw new DtlsError(
            `The server chose cipher suite 0x${
              suite.toString(16)
            }, which was not offered`,
            AlertDescription.ILLEGAL_PARAMETER,
          );
        }
        this.#suite = suite;
        this.#ems = extensions.has(EXT_EXTENDED_MASTER_SECRET);
        const serverType = extensions.get(EXT_SERVER_CERTIFICATE_TYPE);
        this.#peerRpk = serverType?.length === 1 &&
          serverType[0] === CERT_TYPE_RAW_PUBLIC_KEY;
        if (!this.#peerRpk && this.#options.cas === undefined) {
          if (suite === TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8) {
            throw new DtlsError(
              "The server presents a certificate, and this side takes only raw public keys (no CA given)",
              AlertDescription.UNSUPPORTED_CERTIFICATE,
            );
          }
        }
        const clientType = extensions.get(EXT_CLIENT_CERTIFICATE_TYPE);
        this.#ownRpk = clientType?.length === 1 &&
          clientType[0] === CERT_TYPE_RAW_PUBLIC_KEY;
        this.#state = "waitServerHelloDone";
        return;
      }
      case "waitServerHelloDone": {
        const ecdhe = this.#suite === TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8;
        if (message.type === CERTIFICATE && ecdhe && !this.#peerKey) {
          this.#peerKey = await this.#peerCertificate(
            message.body,
            this.#peerRpk,
          );
          if (this.#peerKey === undefined) {
            throw new DtlsError(
              "The server sent no certificate",
              AlertDescription.HANDSHAKE_FAILURE,
            );
          }
          this.#transcript.push(whole);
          return;
        }
        if (message.type === SERVER_KEY_EXCHANGE) {
          const reader = new Reader(message.body, "ServerKeyExchange");
          if (!ecdhe) {
            // The PSK identity hint: read, not needed.
            reader.vector(2);
            reader.end();
          } else {
            if (this.#peerKey === undefined) throw this.#unexpected(message);
            const curveType = reader.u8();
            const curve = reader.u16();
            const point = reader.vector(1);
            const params = message.body.subarray(0, 4 + point.length);
            const algorithm = reader.u16();
            const signature = reader.vector(2);
            reader.end();
            if (curveType !== 3 || curve !== SECP256R1) {
              throw new DtlsError(
                "The server's ECDH parameters are not secp256r1",
                AlertDescription.ILLEGAL_PARAMETER,
              );
            }
            if (
              algorithm !== ECDSA_SECP256R1_SHA256 ||
              !(await verifySignature(
                this.#peerKey,
                "ECDSA-SHA256",
                signature,
                concat(this.#clientRandom, this.#serverRandom, params),
              ))
            ) {
              throw new DtlsError(
                "The server's key exchange is not signed by its certificate's key",
                AlertDescription.DECRYPT_ERROR,
              );
            }
            this.#peerPoint = point.slice();
          }
          this.#transcript.push(whole);
          return;
        }
        if (message.type === CERTIFICATE_REQUEST && ecdhe) {
          const reader = new Reader(message.body, "CertificateRequest");
          reader.vector(1);
          reader.vector(2);
          reader.vector(2);
          reader.end();
          this.#certificateRequested = true;
          this.#transcript.push(whole);
          return;
        }
        if (message.type !== SERVER_HELLO_DONE) {
          throw message.type === CERTIFICATE ||
              message.type === CERTIFICATE_REQUEST
            ? new DtlsError(
              "The server asks for certificates in a PSK handshake",
              AlertDescription.UNEXPECTED_MESSAGE,
            )
            : this.#unexpected(message);
        }
        if (message.body.length !== 0) {
          throw new DtlsError(
            "Malformed ServerHelloDone",
            AlertDescription.DECODE_ERROR,
          );
        }
        if (ecdhe && this.#peerPoint === undefined) {
          throw new DtlsError(
            "The server sent no key exchange",
            AlertDescription.HANDSHAKE_FAILURE,
          );
        }
        this.#transcript.push(whole);
        const flight: { type: number; epoch: number; body: Uint8Array }[] = [];
        const sendsCertificate = this.#certificateRequested &&
          this.#options.certificate !== undefined;
        if (this.#certificateRequested) {
          const certificate = this.#message(
            CERTIFICATE,
            this.#certificateBody(),
          );
          flight.push(certificate);
          this.#transcript.push(certificate.whole);
        }
        let keyExchange;
        if (ecdhe) {
          const point = await this.#ecdhKey();
          keyExchange = this.#message(CLIENT_KEY_EXCHANGE, vector(1, point));
          this.#premaster = await this.#ecdhSecret(this.#peerPoint!);
        } else {
          const psk = this.#options.psk!;
          keyExchange = this.#message(
            CLIENT_KEY_EXCHANGE,
            vector(2, bytesOf(psk.identity)),
          );
          this.#premaster = pskPremaster(bytesOf(psk.key));
        }
        flight.push(keyExchange);
        this.#transcript.push(keyExchange.whole);
        await this.#deriveKeys();
        if (sendsCertificate) {
          const verify = this.#message(
            CERTIFICATE_VERIFY,
            await this.#sign(concat(...this.#transcript)),
          );
          flight.push(verify);
          this.#transcript.push(verify.whole);
        }
        const finished = this.#message(
          FINISHED,
          await this.#verifyData("client finished"),
        );
        this.#transcript.push(finished.whole);
        this.#writeEpoch = 1;
        this.#writeCipher = this.#pendingWriteCipher;
        this.#sendFlight([
          ...flight,
          { type: CHANGE_CIPHER_SPEC, epoch: 0, body: u8(1) },
          { ...finished, epoch: 1 },
        ]);
        this.#state = "waitServerFinished";
        return;
      }
      case "waitServerFinished": {
        if (message.type !== FINISHED || this.#readEpoch !== 1) {
          throw this.#unexpected(message);
        }
        const expected = await this.#verifyData("server finished");
        if (!equal(message.body, expected)) {
          throw new DtlsError(
            "The server's Finished does not verify (a different key?)",
            AlertDescription.DECRYPT_ERROR,
          );
        }
        this.#opened();
        return;
      }
      default:
        throw this.#unexpected(message);
    }
  }

  async #serverHello(message: HandshakeMessage, hello: ClientHello) {
    const o = this.#options;
    const ecdhe = o.certificate !== undefined &&
      hello.suites.includes(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8);
    if (
      !ecdhe &&
      !(o.pskLookup !== undefined &&
        hello.suites.includes(TLS_PSK_WITH_AES_128_CCM_8))
    ) {
      throw new DtlsError(
        `The client offers no cipher suite this server has (${
          [
            o.certificate && "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
            o.pskLookup && "TLS_PSK_WITH_AES_128_CCM_8",
          ].filter(Boolean).join(", ")
        })`,
        AlertDescription.HANDSHAKE_FAILURE,
      );
    }
    this.#suite = ecdhe
      ? TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
      : TLS_PSK_WITH_AES_128_CCM_8;
    this.#clientRandom = hello.random.slice();
    this.#serverRandom = random32();
    this.#ems = hello.extensions.has(EXT_EXTENDED_MASTER_SECRET);
    this.#transcript = [
      handshakeBytes(CLIENT_HELLO, message.seq, message.body),
    ];
    let extensions: Uint8Array = EMPTY;
    // RFC 5746 §3.6: the extension, or the SCSV in the suites, asks for an
    // empty renegotiation_info (OpenSSL refuses a server without it).
    if (
      hello.extensions.has(EXT_RENEGOTIATION_INFO) ||
      hello.suites.includes(TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
    ) {
      extensions = concat(
        extensions,
        u16(EXT_RENEGOTIATION_INFO),
        vector(2, vector(1, EMPTY)),
      );
    }
    if (this.#ems) {
      extensions = concat(
        extensions,
        u16(EXT_EXTENDED_MASTER_SECRET),
        vector(2, EMPTY),
      );
    }
    if (ecdhe) {
      // RFC 7250 §4.2: which kind of key each side presents.
      const offered = (type: number) => {
        const list = hello.extensions.get(type);
        return list === undefined ? [CERT_TYPE_X509] : [...list.subarray(1)];
      };
      const serverType = o.rawPublicKey
        ? CERT_TYPE_RAW_PUBLIC_KEY
        : CERT_TYPE_X509;
      if (!offered(EXT_SERVER_CERTIFICATE_TYPE).includes(serverType)) {
        throw new DtlsError(
          `The client takes no ${
            o.rawPublicKey ? "raw public key" : "certificate"
          } from the server`,
          AlertDescription.UNSUPPORTED_CERTIFICATE,
        );
      }
      this.#ownRpk = o.rawPublicKey === true;
      if (hello.extensions.has(EXT_SERVER_CERTIFICATE_TYPE)) {
        extensions = concat(
          extensions,
          u16(EXT_SERVER_CERTIFICATE_TYPE),
          vector(2, u8(serverType)),
        );
      }
      if (o.requireClientCertificate) {
        const clientTypes = offered(EXT_CLIENT_CERTIFICATE_TYPE);
        this.#peerRpk = o.trustedKeys !== undefined &&
          clientTypes.includes(CERT_TYPE_RAW_PUBLIC_KEY);
        if (hello.extensions.has(EXT_CLIENT_CERTIFICATE_TYPE)) {
          extensions = concat(
            extensions,
            u16(EXT_CLIENT_CERTIFICATE_TYPE),
            vector(
              2,
              u8(this.#peerRpk ? CERT_TYPE_RAW_PUBLIC_KEY : CERT_TYPE_X509),
            ),
          );
        }
      }
    }
    const serverHello = this.#message(
      SERVER_HELLO,
      concat(
        DTLS_1_2,
        this.#serverRandom,
        vector(1, EMPTY), // sessions are not resumed
        u16(this.#suite),
        u8(0),
        extensions.length === 0 ? EMPTY : vector(2, extensions),
      ),
    );
    const flight = [serverHello];
    this.#transcript.push(serverHello.whole);
    const add = (type: number, body: Uint8Array) => {
      const next = this.#message(type, body);
      flight.push(next);
      this.#transcript.push(next.whole);
    };
    if (ecdhe) {
      add(CERTIFICATE, this.#certificateBody());
      const point = await this.#ecdhKey();
      const params = concat(u8(3), u16(SECP256R1), vector(1, point));
      add(
        SERVER_KEY_EXCHANGE,
        concat(
          params,
          await this.#sign(
            concat(this.#clientRandom, this.#serverRandom, params),
          ),
        ),
      );
      if (o.requireClientCertificate) {
        this.#certificateRequested = true;
        add(
          CERTIFICATE_REQUEST,
          concat(
            vector(1, u8(64)), // ecdsa_sign
            vector(2, u16(ECDSA_SECP256R1_SHA256)),
            vector(2, EMPTY),
          ),
        );
      }
    } else if (o.pskHint !== undefined) {
      add(SERVER_KEY_EXCHANGE, vector(2, bytesOf(o.pskHint)));
    }
    add(SERVER_HELLO_DONE, EMPTY);
    this.#state = "waitClientKeyExchange";
    this.#sendFlight(flight);
  }

  async #serverStep(message: HandshakeMessage, whole: Uint8Array) {
    const ecdhe = this.#suite === TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8;
    switch (this.#state) {
      case "waitClientKeyExchange": {
        if (
          message.type === CERTIFICATE && this.#certificateRequested &&
          !this.#clientCertificateSeen
        ) {
          this.#clientCertificateSeen = true;
          this.#peerKey = await this.#peerCertificate(
            message.body,
            this.#peerRpk,
          );
          if (this.#peerKey === undefined) {
            throw new DtlsError(
              "The client sent no certificate, and this server requires one",
              AlertDescription.HANDSHAKE_FAILURE,
            );
          }
          this.#transcript.push(whole);
          return;
        }
        if (message.type !== CLIENT_KEY_EXCHANGE) {
          throw this.#unexpected(message);
        }
        if (this.#certificateRequested && this.#peerKey === undefined) {
          throw new DtlsError(
            "The client sent no certificate, and this server requires one",
            AlertDescription.HANDSHAKE_FAILURE,
          );
        }
        const reader = new Reader(message.body, "ClientKeyExchange");
        if (ecdhe) {
          const point = reader.vector(1);
          reader.end();
          this.#premaster = await this.#ecdhSecret(point);
        } else {
          const identity = reader.vector(2);
          reader.end();
          this.#identity = identity.slice();
          const key = this.#options.pskLookup!(this.#identity);
          if (key === undefined) {
            throw new DtlsError(
              "Unknown PSK identity",
              AlertDescription.UNKNOWN_PSK_IDENTITY,
            );
          }
          this.#premaster = pskPremaster(key);
        }
        this.#transcript.push(whole);
        await this.#deriveKeys();
        this.#state = this.#peerKey !== undefined
          ? "waitCertificateVerify"
          : "waitClientFinished";
        return;
      }
      case "waitCertificateVerify": {
        if (message.type !== CERTIFICATE_VERIFY) {
          throw this.#unexpected(message);
        }
        const reader = new Reader(message.body, "CertificateVerify");
        const algorithm = reader.u16();
        const signature = reader.vector(2);
        reader.end();
        if (
          algorithm !== ECDSA_SECP256R1_SHA256 ||
          !(await verifySignature(
            this.#peerKey!,
            "ECDSA-SHA256",
            signature,
            concat(...this.#transcript),
          ))
        ) {
          throw new DtlsError(
            "The client's CertificateVerify does not verify with its certificate's key",
            AlertDescription.DECRYPT_ERROR,
          );
        }
        this.#transcript.push(whole);
        this.#state = "waitClientFinished";
        return;
      }
      case "waitClientFinished": {
        if (message.type !== FINISHED || this.#readEpoch !== 1) {
          throw this.#unexpected(message);
        }
        const expected = await this.#verifyData("client finished");
        if (!equal(message.body, expected)) {
          throw new DtlsError(
            "The client's Finished does not verify (a different key?)",
            AlertDescription.DECRYPT_ERROR,
          );
        }
        this.#transcript.push(whole);
        const finished = this.#message(
          FINISHED,
          await this.#verifyData("server finished"),
        );
        this.#writeEpoch = 1;
        this.#writeCipher = this.#pendingWriteCipher;
        this.#opened();
        this.#sendFlight([
          { type: CHANGE_CIPHER_SPEC, epoch: 0, body: u8(1) },
          { ...finished, epoch: 1 },
        ]);
        return;
      }
      case "open":
        // A retransmitted Finished of the client: ours again (above).
        return;
      default:
        throw this.#unexpected(message);
    }
  }

  #opened(): void {
    this.#state = "open";
    this.#clock.clearTimeout(this.#retransmit);
    this.#clock.clearTimeout(this.#deadline);
    this.#held.clear();
    this.#premaster = EMPTY;
    this.#hooks.onOpen?.();
  }

  /** The master secret and the epoch-1 keys (RFC 5246 §8.1, §6.3). */
  async #deriveKeys(): Promise<void> {
    const premaster = this.#premaster;
    this.#masterSecret = this.#ems
      ? await prf(
        premaster,
        "extended master secret",
        await sha256(concat(...this.#transcript)),
        48,
      )
      : await prf(
        premaster,
        "master secret",
        concat(this.#clientRandom, this.#serverRandom),
        48,
      );
    const block = await prf(
      this.#masterSecret,
      "key expansion",
      concat(this.#serverRandom, this.#clientRandom),
      40,
    );
    const clientKey = block.subarray(0, 16);
    const serverKey = block.subarray(16, 32);
    const clientSalt = block.slice(32, 36);
    const serverSalt = block.slice(36, 40);
    const options = { tagLength: 8, nonceLength: 12 };
    const [client, server] = await Promise.all([
      AesCcm.create(clientKey, options),
      AesCcm.create(serverKey, options),
    ]);
    const mine = this.role === "client"
      ? { ccm: client, salt: clientSalt }
      : { ccm: server, salt: serverSalt };
    const theirs = this.role === "client"
      ? { ccm: server, salt: serverSalt }
      : { ccm: client, salt: clientSalt };
    this.#pendingWriteCipher = mine;
    this.#pendingReadCipher = theirs;
  }

  async #verifyData(label: string): Promise<Uint8Array> {
    return await prf(
      this.#masterSecret,
      label,
      await sha256(concat(...this.#transcript)),
      12,
    );
  }
}

/** Cuts a whole handshake message into fragments of at most `room` bytes. */
function fragments(whole: Uint8Array, room: number): Uint8Array[] {
  const type = whole[0];
  const body = whole.subarray(HANDSHAKE_HEADER);
  const seq = (whole[4] << 8) | whole[5];
  if (body.length <= room) return [whole];
  const out: Uint8Array[] = [];
  for (let offset = 0; offset < body.length; offset += room) {
    const piece = body.subarray(offset, Math.min(body.length, offset + room));
    out.push(
      concat(
        u8(type),
        u24(body.length),
        u16(seq),
        u24(offset),
        u24(piece.length),
        piece,
      ),
    );
  }
  return out;
}

/** A hello's 32 random bytes (gmt_unix_time random too, as most do now). */
function random32(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

// ---------------------------------------------------------------------------
// The endpoint

/** The options of a {@linkcode DtlsEndpoint}. */
export interface DtlsEndpointOptions extends DtlsSessionOptions {
  /**
   * Whether this endpoint answers ClientHellos (a server). By default it
   * does when it has `pskLookup`, or a certificate and nothing to check a
   * server with.
   */
  server?: boolean;
  /**
   * Handshakes under way at once, over all peers; a ClientHello with a
   * valid cookie past it is dropped (the client sends it again).
   *
   * @default {256}
   */
  maxHandshakes?: number;
  /**
   * Handshakes under way at once from one IP address.
   *
   * @default {4}
   */
  maxHandshakesPerAddress?: number;
  /**
   * Open sessions; one more than this evicts the one idle longest.
   *
   * @default {10000}
   */
  maxSessions?: number;
  /** Told of each session that opens, with the peer's address. */
  onOpen?: (address: PeerAddress, session: DtlsSession) => void;
  /** Told of each session that ends. */
  onClose?: (address: PeerAddress, reason: DtlsError, wasOpen: boolean) => void;
}

interface Peer {
  readonly address: PeerAddress;
  readonly session: DtlsSession;
  open: boolean;
  lastHeard: number;
}

/**
 * The DTLS side of a UDP socket: sessions by peer address, made by the
 * client ({@linkcode DtlsEndpoint.prototype.connect}) or, on a server, by
 * a ClientHello that came back with the cookie of a HelloVerifyRequest.
 * A ClientHello without a valid cookie costs one HMAC and one small
 * datagram, about as large as itself (no amplification), and nothing is
 * kept. Application data goes through {@linkcode DtlsEndpoint.prototype.send}
 * and comes out at `deliver`.
 */
export class DtlsEndpoint {
  readonly #send: (datagram: Uint8Array, to: PeerAddress) => void;
  readonly #deliver: (data: Uint8Array, from: PeerAddress) => void;
  readonly #options: DtlsEndpointOptions;
  readonly #clock: Clock;
  readonly #peers = new Map<string, Peer>();
  readonly #handshakesByHost = new Map<string, number>();
  #handshakes = 0;
  /** The cookie secret now, and the one before it (it changes each minute). */
  #secrets: Uint8Array[] = [crypto.getRandomValues(new Uint8Array(32))];
  #secretsAt = 0;
  #cookies = 0;
  #closed = false;
  readonly #isServer: boolean;

  /**
   * Makes the endpoint.
   *
   * @param send Sends a datagram on the socket.
   * @param deliver Takes decrypted application data from a peer.
   * @param options Credentials, timers and bounds.
   * @throws {RangeError} If a bound is not a positive integer.
   */
  constructor(
    send: (datagram: Uint8Array, to: PeerAddress) => void,
    deliver: (data: Uint8Array, from: PeerAddress) => void,
    options: DtlsEndpointOptions = {},
  ) {
    for (
      const name of [
        "maxHandshakes",
        "maxHandshakesPerAddress",
        "maxSessions",
      ] as const
    ) {
      const value = options[name];
      if (value !== undefined && !(Number.isInteger(value) && value > 0)) {
        throw new RangeError(
          `Cannot create a DtlsEndpoint: ${name} must be a positive integer, got ${
            String(value)
          }`,
        );
      }
    }
    this.#send = send;
    this.#deliver = deliver;
    this.#options = options;
    this.#isServer = options.server ??
      (options.pskLookup !== undefined ||
        (options.certificate !== undefined && options.psk === undefined &&
          options.cas === undefined && options.trustedKeys === undefined));
    this.#clock = options.clock ?? systemClock;
    this.#secretsAt = this.#clock.now();
  }

  /** Sessions open or opening. */
  get sessions(): number {
    return this.#peers.size;
  }

  /** Handshakes under way. */
  get handshakes(): number {
    return this.#handshakes;
  }

  /** HelloVerifyRequests sent (one for each ClientHello without a cookie). */
  get cookiesSent(): number {
    return this.#cookies;
  }

  /**
   * Client: opens a session to `address`; resolves once it is open.
   *
   * @param address The server.
   * @returns The session.
   * @throws {DtlsError} If the handshake fails (a wrong key: the server's
   * alert, or its silence until `handshakeTimeout`).
   */
  connect(address: PeerAddress): Promise<DtlsSession> {
    return new Promise((resolve, reject) => {
      const session = this.#session("client", address, {
        onOpen: resolve,
        onFail: reject,
      });
      session.start();
    });
  }

  /**
   * Takes a datagram from the socket.
   *
   * @param datagram The datagram.
   * @param from Where it came from.
   */
  receive(datagram: Uint8Array, from: PeerAddress): void {
    if (this.#closed) return;
    const peer = this.#peers.get(keyOf(from));
    if (peer !== undefined) {
      peer.lastHeard = this.#clock.now();
      peer.session.receive(datagram);
      return;
    }
    if (!this.#isServer) return;
    this.#hello(datagram, from);
  }

  /**
   * Sends application data to a peer whose session is open.
   *
   * @param data The bytes (a CoAP message).
   * @param to The peer.
   * @returns Whether it went.
   */
  send(data: Uint8Array, to: PeerAddress): boolean {
    const peer = this.#peers.get(keyOf(to));
    return peer !== undefined && peer.open && peer.session.send(data);
  }

  /**
   * Ends the session with a peer (a close_notify).
   *
   * @param address The peer.
   */
  disconnect(address: PeerAddress): void {
    this.#peers.get(keyOf(address))?.session.close();
  }

  /** Ends every session. */
  close(): void {
    this.#closed = true;
    for (const peer of [...this.#peers.values()]) peer.session.close();
  }

  /** A ClientHello from a peer without a session: cookie, or a session. */
  #hello(datagram: Uint8Array, from: PeerAddress): void {
    const record = readRecords(datagram)[0];
    if (
      record === undefined || record.type !== HANDSHAKE || record.epoch !== 0 ||
      record.fragment.length < HANDSHAKE_HEADER
    ) {
      return;
    }
    const head = new Reader(record.fragment, "handshake header");
    const type = head.u8();
    const length = head.u24();
    const seq = head.u16();
    const offset = head.u24();
    const fragmentLength = head.u24();
    // A ClientHello in one fragment; anything else from a stranger is
    // dropped without a word.
    if (
      type !== CLIENT_HELLO || offset !== 0 || fragmentLength !== length ||
      head.left < length
    ) {
      return;
    }
    const body = head.bytes(length);
    let hello: ClientHello;
    try {
      hello = readClientHello(body);
    } catch {
      return;
    }
    this.#rotateSecrets();
    // A first ClientHello has no cookie: one HMAC, for the one to send.
    let valid = false;
    if (hello.cookie.length > 0) {
      for (const secret of this.#secrets) {
        if (equal(hello.cookie, cookieOf(secret, from, hello))) {
          valid = true;
        }
      }
    }
    if (!valid) {
      // §4.2.1: the HelloVerifyRequest, stateless; its record sequence
      // number mirrors the ClientHello's.
      const cookie = cookieOf(this.#secrets[0], from, hello);
      const verify = concat(DTLS_1_0, vector(1, cookie));
      const message = concat(
        u8(HELLO_VERIFY_REQUEST),
        u24(verify.length),
        u16(seq),
        u24(0),
        u24(verify.length),
        verify,
      );
      this.#cookies++;
      this.#send(
        concat(
          recordHeader(HANDSHAKE, 0, record.sequence, message.length, DTLS_1_0),
          message,
        ),
        from,
      );
      return;
    }
    const key = keyOf(from);
    if (this.#peers.has(key)) return;
    const host = from.hostname;
    const limit = this.#options.maxHandshakesPerAddress ?? 4;
    if (
      this.#handshakes >= (this.#options.maxHandshakes ?? 256) ||
      (this.#handshakesByHost.get(host) ?? 0) >= limit
    ) {
      return;
    }
    if (this.#peers.size >= (this.#options.maxSessions ?? 10_000)) {
      if (!this.#evictIdle()) return;
    }
    const session = this.#session("server", from, {});
    session.acceptHello(record, { type, seq, body }, hello);
  }

  #session(
    role: "client" | "server",
    address: PeerAddress,
    waiting: {
      onOpen?: (session: DtlsSession) => void;
      onFail?: (error: DtlsError) => void;
    },
  ): DtlsSession {
    const key = keyOf(address);
    const host = address.hostname;
    this.#handshakes++;
    this.#handshakesByHost.set(
      host,
      (this.#handshakesByHost.get(host) ?? 0) + 1,
    );
    let handshaking = true;
    const done = () => {
      if (!handshaking) return;
      handshaking = false;
      this.#handshakes--;
      const left = this.#handshakesByHost.get(host)! - 1;
      if (left === 0) this.#handshakesByHost.delete(host);
      else this.#handshakesByHost.set(host, left);
    };
    const peer: Peer = {
      address,
      open: false,
      lastHeard: this.#clock.now(),
      session: new DtlsSession(role, {
        send: (datagram) => this.#send(datagram, address),
        onOpen: () => {
          done();
          peer.open = true;
          this.#options.onOpen?.(address, peer.session);
          waiting.onOpen?.(peer.session);
        },
        onData: (data) => this.#deliver(data, address),
        onClose: (reason) => {
          done();
          if (this.#peers.get(key) === peer) this.#peers.delete(key);
          this.#options.onClose?.(address, reason, peer.open);
          if (!peer.open) waiting.onFail?.(reason);
        },
      }, this.#options),
    };
    this.#peers.set(key, peer);
    return peer.session;
  }

  /** Ends the open session heard from least recently; false if none. */
  #evictIdle(): boolean {
    let oldest: Peer | undefined;
    for (const peer of this.#peers.values()) {
      if (
        peer.open && (oldest === undefined || peer.lastHeard < oldest.lastHeard)
      ) {
        oldest = peer;
      }
    }
    oldest?.session.close();
    return oldest !== undefined;
  }

  #rotateSecrets(): void {
    const now = this.#clock.now();
    if (now - this.#secretsAt < 60_000) return;
    this.#secretsAt = now;
    this.#secrets = [
      crypto.getRandomValues(new Uint8Array(32)),
      this.#secrets[0],
    ];
  }
}

function keyOf(address: PeerAddress): string {
  return `${address.hostname}|${address.port}`;
}
