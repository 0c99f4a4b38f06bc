/**
 * CoAP over DTLS (`coaps://`, RFC 7252 §9) on a UDP socket, for Deno,
 * Node.js and Bun: {@linkcode serveCoapDtls} serves a `CoapServer`'s
 * resources to clients with a pre-shared key, {@linkcode connectCoapDtls}
 * is a client of one `coaps://` server. The DTLS itself is `dtls.ts`
 * (sans-I/O, WebCrypto); the messages above it are CoAP over UDP's
 * (`udp.ts`), unchanged. A session that ends ends its peer's exchanges
 * and observations with it.
 *
 * @module
 */

import { CLIENT_LOG, type ClientOptions, CoapClient } from "./client.ts";
import type { CoapServer } from "./server.ts";
import { attachWebSocket } from "./websocket.ts";
import {
  CoapUdpEndpoint,
  type PeerAddress,
  servePeers,
  type UdpOptions,
} from "./udp.ts";
import {
  type DtlsCertificate,
  DtlsEndpoint,
  type DtlsEndpointOptions,
  type DtlsError,
  type PskCredentials,
} from "./dtls.ts";
import { importPrivateKey, parseCertificate, pemBlocks } from "./x509.ts";
import {
  bindClientUdp,
  type BindOptions,
  bindUdp,
  type BoundUdp,
  parseDatagramUri,
  resolvePeer,
} from "./udp_node.ts";

/** Options for {@linkcode serveCoapDtls}. */
export interface ServeDtlsOptions extends BindOptions, UdpOptions {
  /**
   * The port to serve on.
   *
   * @default {5684}
   */
  port?: number;
  /** Pre-shared keys by identity (text), or a lookup of an identity's key. */
  psk?:
    | Readonly<Record<string, Uint8Array | string>>
    | ((identity: Uint8Array) => Uint8Array | undefined);
  /**
   * The server's certificate and key (see {@linkcode loadCertificate}), for
   * `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`; with `rawPublicKey`, its key is
   * presented raw (RFC 7250).
   */
  certificate?: DtlsCertificate;
  /** Present the key raw (RFC 7250) rather than the certificate. */
  rawPublicKey?: boolean;
  /** Ask every client for a certificate, checked against `cas`. */
  requireClientCertificate?: boolean;
  /** The CAs (DER) a client's certificate must chain to. */
  cas?: readonly Uint8Array[];
  /** Raw public keys (SubjectPublicKeyInfo, DER) a client may present. */
  trustedKeys?: readonly Uint8Array[];
  /** The identity hint to send (libcoap's `-h`). */
  pskHint?: string;
  /**
   * The DTLS bounds and timers: `maxHandshakes` (256),
   * `maxHandshakesPerAddress` (4), `maxSessions` (10,000),
   * `handshakeTimeout` (30 s), `retransmitTimeout` (1 s), `mtu` (1200).
   */
  dtls?: Omit<DtlsEndpointOptions, "psk" | "pskLookup" | "pskHint">;
}

/** A server's DTLS side, as {@linkcode serveCoapDtls} returns it. */
export interface DtlsServing {
  /** The port it serves on. */
  readonly port: number;
  /** The CoAP message layer above DTLS. */
  readonly endpoint: CoapUdpEndpoint;
  /** The DTLS sessions. */
  readonly dtls: DtlsEndpoint;
  /** Stops serving; every session gets a close_notify. */
  close(): void;
}

function lookupOf(
  psk: NonNullable<ServeDtlsOptions["psk"]>,
): (identity: Uint8Array) => Uint8Array | undefined {
  if (typeof psk === "function") return psk;
  const keys = new Map<string, Uint8Array>();
  for (const [identity, key] of Object.entries(psk)) {
    keys.set(
      identity,
      typeof key === "string" ? new TextEncoder().encode(key) : key,
    );
  }
  const decoder = new TextDecoder();
  return (identity) => keys.get(decoder.decode(identity));
}

/**
 * Serves `server`'s resources over CoAP over DTLS with pre-shared keys.
 * The cookie exchange verifies every client's address before the server
 * keeps anything for it, so the message layer's amplification limit is
 * off here.
 *
 * @param server The server.
 * @param options The keys, where to listen, and the bounds.
 * @returns Once listening.
 */
export async function serveCoapDtls(
  server: CoapServer,
  options: ServeDtlsOptions,
): Promise<DtlsServing> {
  if (options.psk === undefined && options.certificate === undefined) {
    throw new TypeError(
      "Cannot serve DTLS: give psk (pre-shared keys) or a certificate",
    );
  }
  const socket: { bound?: BoundUdp } = {};
  const holder: { endpoint?: CoapUdpEndpoint } = {};
  const dtls = new DtlsEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    (data, from) => holder.endpoint?.receive(data, from),
    {
      ...options.dtls,
      server: true,
      pskLookup: options.psk === undefined ? undefined : lookupOf(options.psk),
      pskHint: options.pskHint,
      certificate: options.certificate,
      rawPublicKey: options.rawPublicKey,
      requireClientCertificate: options.requireClientCertificate,
      cas: options.cas,
      trustedKeys: options.trustedKeys,
      onClose: (address: PeerAddress, reason: DtlsError, wasOpen: boolean) => {
        if (wasOpen) {
          holder.endpoint?.disconnect(
            address,
            `DTLS session ended: ${reason.message}`,
          );
        }
        options.dtls?.onClose?.(address, reason, wasOpen);
      },
    },
  );
  const endpoint = holder.endpoint = new CoapUdpEndpoint(
    (bytes, to) => dtls.send(bytes, to),
    {
      ...options,
      log: options.log ?? server.log,
      amplificationFactor: false,
      onPeer: servePeers(server),
    },
  );
  const bound = socket.bound = await bindUdp(
    (bytes, from) => dtls.receive(bytes, from),
    { ...options, port: options.port ?? 5684 },
  );
  return {
    port: bound.port,
    endpoint,
    dtls,
    close() {
      dtls.close();
      endpoint.close();
      bound.close();
    },
  };
}

/**
 * Reads a `coaps://host[:port]/path?query` URI (port 5684 unless given).
 *
 * @param uri The URI.
 * @returns The server's address, and the path and query to request.
 * @throws {TypeError} If it is not a `coaps://` URI.
 */
export function parseDtlsUri(
  uri: string,
): { address: PeerAddress; path: string; query: string[] } {
  return parseDatagramUri(uri, "coaps", 5684);
}

/** Options for {@linkcode connectCoapDtls}. */
export interface ConnectDtlsOptions extends ClientOptions {
  /** The identity and key to offer (libcoap's `-u` and `-k`). */
  psk?: PskCredentials;
  /**
   * The CAs (DER) the server's certificate must chain to; it must name the
   * URI's host too. Nothing is accepted unchecked: without `cas` or
   * `trustedKeys`, only a pre-shared key is offered.
   */
  cas?: readonly Uint8Array[];
  /** The server's raw public key(s) (RFC 7250; SubjectPublicKeyInfo, DER). */
  trustedKeys?: readonly Uint8Array[];
  /** This client's certificate and key, sent when the server asks. */
  certificate?: DtlsCertificate;
  /** Present this client's key raw (RFC 7250). */
  rawPublicKey?: boolean;
  /** The message layer's settings. */
  udp?: UdpOptions;
  /**
   * Where to bind the client's socket: by default any free port on the
   * address `clientBindAddress` (`@coap/stack/udp`) picks for the server
   * (127.0.0.1 for a loopback server, else `0.0.0.0` or `::`), never the
   * server's own.
   */
  bind?: BindOptions;
  /** DTLS timers: `handshakeTimeout` (30 s), `retransmitTimeout`, `mtu`. */
  dtls?: Omit<DtlsEndpointOptions, "psk" | "pskLookup" | "pskHint">;
}

/**
 * A client of one `coaps://` server: binds a socket of its own, completes
 * the DTLS handshake, then speaks CoAP over it. `client.close()` sends a
 * close_notify and closes the socket.
 *
 * @param uri `coaps://HOST[:PORT]` (a path is ignored here).
 * @param options The identity and key, client and socket settings.
 * @returns The client, once the handshake is done.
 * @throws {TypeError} If `uri` is not a `coaps://` URI.
 * @throws {Error} If its host name does not resolve.
 * @throws {DtlsError} If the handshake fails: the server's alert (an
 * unknown identity), or no answer to the Finished (a wrong key).
 */
export async function connectCoapDtls(
  uri: string,
  options: ConnectDtlsOptions,
): Promise<CoapClient> {
  const named = parseDtlsUri(uri).address;
  if (
    options.psk === undefined && options.cas === undefined &&
    options.trustedKeys === undefined
  ) {
    throw new TypeError(
      "Cannot connect over DTLS: give psk, or cas (or trustedKeys) to check the server with",
    );
  }
  // The certificate must name the URI's host; datagrams come from its
  // address.
  const address = await resolvePeer(named);
  const socket: { bound?: BoundUdp } = {};
  const holder: { endpoint?: CoapUdpEndpoint } = {};
  const dtls = new DtlsEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    (data, from) => holder.endpoint?.receive(data, from),
    {
      ...options.dtls,
      psk: options.psk,
      cas: options.cas,
      trustedKeys: options.trustedKeys,
      certificate: options.certificate,
      rawPublicKey: options.rawPublicKey,
      host: named.hostname,
      server: false,
      onClose: (peer, reason, wasOpen) => {
        if (wasOpen) {
          holder.endpoint?.disconnect(
            peer,
            `DTLS session ended: ${reason.message}`,
          );
        }
      },
    },
  );
  const endpoint = holder.endpoint = new CoapUdpEndpoint(
    (bytes, to) => dtls.send(bytes, to),
    { ...options.udp, log: options.udp?.log ?? options.log ?? CLIENT_LOG },
  );
  const bound = socket.bound = await bindClientUdp(
    (bytes, from) => dtls.receive(bytes, from),
    address,
    options.bind,
  );
  try {
    await dtls.connect(address);
  } catch (error) {
    endpoint.close();
    bound.close();
    throw error;
  }
  const peer = endpoint.connect(address);
  peer.addEventListener("close", () => {
    dtls.close();
    endpoint.close();
    // The close_notify goes first.
    setTimeout(() => bound.close(), 50);
  });
  const connection = attachWebSocket(peer, {
    log: options.log ?? CLIENT_LOG,
    maxMessageSize: options.maxMessageSize,
    onPong: options.onPong,
  });
  await connection.ready;
  return new CoapClient(connection, options);
}

/**
 * A certificate and its key from PEM text, as DTLS presents them: the
 * chain's `CERTIFICATE` blocks (none for a raw public key) and a P-256 key
 * (`PRIVATE KEY` or `EC PRIVATE KEY`).
 *
 * @param certificatePem The certificate chain, its own first ("" for a
 * raw public key).
 * @param keyPem The private key.
 * @returns The certificate for `serveCoapDtls` and `connectCoapDtls`.
 * @throws {Error} If the key is not a P-256 key, or does not go with the
 * certificate.
 */
export async function loadCertificate(
  certificatePem: string,
  keyPem: string,
): Promise<DtlsCertificate> {
  const chain = pemBlocks(certificatePem, "CERTIFICATE");
  const { key, spki } = await importPrivateKey(keyPem);
  if (chain.length > 0) {
    const leaf = parseCertificate(chain[0]);
    if (
      leaf.publicKey.length !== spki.length ||
      leaf.publicKey.some((b, i) => b !== spki[i])
    ) {
      throw new Error("The key does not go with the certificate");
    }
  }
  return { chain, key, spki };
}

/**
 * Public keys (SubjectPublicKeyInfo, DER) from PEM: `PUBLIC KEY` blocks,
 * or the public halves of private keys.
 *
 * @param pem PEM text.
 * @returns The keys.
 */
export async function loadPublicKeys(pem: string): Promise<Uint8Array[]> {
  const keys = pemBlocks(pem, "PUBLIC KEY");
  if (keys.length > 0) return keys;
  return [(await importPrivateKey(pem)).spki];
}
