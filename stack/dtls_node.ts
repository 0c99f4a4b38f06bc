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
  DtlsEndpoint,
  type DtlsEndpointOptions,
  type DtlsError,
  type PskCredentials,
} from "./dtls.ts";
import { type BindOptions, bindUdp, type BoundUdp } from "./udp_node.ts";

/** Options for {@linkcode serveCoapDtls}. */
export interface ServeDtlsOptions extends BindOptions, UdpOptions {
  /**
   * The port to serve on.
   *
   * @default {5684}
   */
  port?: number;
  /** Pre-shared keys by identity (text), or a lookup of an identity's key. */
  psk:
    | Readonly<Record<string, Uint8Array | string>>
    | ((identity: Uint8Array) => Uint8Array | undefined);
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
  psk: ServeDtlsOptions["psk"],
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
  const socket: { bound?: BoundUdp } = {};
  const holder: { endpoint?: CoapUdpEndpoint } = {};
  const dtls = new DtlsEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    (data, from) => holder.endpoint?.receive(data, from),
    {
      ...options.dtls,
      pskLookup: lookupOf(options.psk),
      pskHint: options.pskHint,
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
      log: server.log,
      ...options,
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
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TypeError(
      `Cannot use ${JSON.stringify(uri)}: expected coaps://HOST[:PORT]/PATH`,
    );
  }
  if (url.protocol !== "coaps:") {
    throw new TypeError(
      `Cannot use ${JSON.stringify(uri)}: expected coaps://HOST[:PORT]/PATH`,
    );
  }
  let hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (hostname === "localhost") hostname = "127.0.0.1";
  return {
    address: { hostname, port: url.port === "" ? 5684 : Number(url.port) },
    path: decodeURIComponent(url.pathname) || "/",
    query: url.search === ""
      ? []
      : url.search.slice(1).split("&").map((part) => decodeURIComponent(part)),
  };
}

/** Options for {@linkcode connectCoapDtls}. */
export interface ConnectDtlsOptions extends ClientOptions {
  /** The identity and key to offer (libcoap's `-u` and `-k`). */
  psk: PskCredentials;
  /** The message layer's settings. */
  udp?: UdpOptions;
  /** Where to bind the client's socket (any free port on 127.0.0.1). */
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
 * @throws {DtlsError} If the handshake fails: the server's alert (an
 * unknown identity), or no answer to the Finished (a wrong key).
 */
export async function connectCoapDtls(
  uri: string,
  options: ConnectDtlsOptions,
): Promise<CoapClient> {
  const { address } = parseDtlsUri(uri);
  const socket: { bound?: BoundUdp } = {};
  const holder: { endpoint?: CoapUdpEndpoint } = {};
  const dtls = new DtlsEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    (data, from) => holder.endpoint?.receive(data, from),
    {
      ...options.dtls,
      psk: options.psk,
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
    { log: options.log ?? CLIENT_LOG, ...options.udp },
  );
  const bound = socket.bound = await bindUdp(
    (bytes, from) => dtls.receive(bytes, from),
    {
      hostname: address.hostname.includes(":") ? "::1" : "127.0.0.1",
      ...options.bind,
    },
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
