/**
 * CoAP over TCP and TLS (RFC 8323) on `node:net` and `node:tls`, which
 * Node.js, Deno and Bun all have: {@linkcode serveCoapTcp} serves a
 * `CoapServer`'s resources on a TCP port (with TLS, `coaps+tcp://`, ALPN
 * `coap`); {@linkcode connectCoapTcp} makes a `CoapClient` for a
 * `coap+tcp://` or `coaps+tcp://` server. The framing is `tcp.ts`'s; the
 * connection, server and client are the WebSocket side's.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";
import {
  CLIENT_LOG,
  type ClientOptions,
  CoapClient,
  peerReady,
} from "./client.ts";
import { ConnectionError } from "./connection.ts";
import type { CoapServer } from "./server.ts";
import { TcpFrameSocket } from "./tcp.ts";
import { attachWebSocket } from "./websocket.ts";

/** Options for {@linkcode serveCoapTcp}. */
export interface ServeTcpOptions {
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port; 0 for any free one.
   *
   * @default {5683} (5684 with `tls`)
   */
  port?: number;
  /** Serve TLS (`coaps+tcp://`) with this certificate chain and key (PEM). */
  tls?: { cert: string; key: string };
  /**
   * How long a new connection may take to send its CSM (and, with TLS, to
   * finish its handshake), in milliseconds: one that sends nothing is
   * closed then, rather than holding a place among `maxConnections`.
   *
   * @default {10000}
   */
  handshakeTimeout?: number;
}

/** A server's TCP side, as {@linkcode serveCoapTcp} returns it. */
export interface TcpServing {
  /** The port it serves on. */
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** A `node:net` or `node:tls` socket's stream, for {@linkcode TcpFrameSocket}. */
function streamOf(socket: net.Socket) {
  return {
    write(bytes: Uint8Array) {
      socket.write(
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      );
    },
    end() {
      socket.end();
      // A peer that never closes its side is not waited for.
      setTimeout(() => socket.destroy(), 1000).unref?.();
    },
    get bufferedAmount() {
      return socket.writableLength;
    },
  };
}

/**
 * Feeds a socket's reads to its frame socket, and its end. Nothing a read
 * brings may throw past here, where it would end the process: a failure
 * (a bug) ends that connection alone.
 */
function wire(socket: net.Socket, frames: TcpFrameSocket): void {
  socket.on("data", (chunk: Uint8Array) => {
    try {
      frames.receive(
        new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
    } catch (error) {
      socket.destroy();
      frames.streamClosed(`Reading failed: ${(error as Error)?.message}`);
    }
  });
  let why = "";
  socket.on("error", (error: Error) => {
    why = error.message;
  });
  socket.on("close", () => frames.streamClosed(why));
}

/**
 * Serves `server`'s resources over CoAP over TCP (RFC 8323 §3), or over
 * TLS with `tls` (§4, ALPN `coap`). Each connection is one of the
 * server's, counted against `maxConnections` and
 * `maxConnectionsPerAddress` (one past them is closed at once, with a log
 * line a second at most), and reads at most the server's
 * `maxMessageSize` a message.
 *
 * @param server The server.
 * @param options Where to listen, and TLS.
 * @returns Once listening.
 * @throws {Error} If the port cannot be bound.
 */
export function serveCoapTcp(
  server: CoapServer,
  options: ServeTcpOptions = {},
): Promise<TcpServing> {
  const sockets = new Set<net.Socket>();
  let refusedAt = -Infinity;
  // One line a second at most for streams aborted for what they sent; the
  // next line counts those left out.
  let abortedAt = -Infinity;
  let unsaid = 0;
  const aborted = (address: string | undefined, reason: string) => {
    if (Date.now() - abortedAt < 1000) {
      unsaid++;
      return;
    }
    abortedAt = Date.now();
    server.log.warn(
      `Aborting a CoAP-over-TCP connection from ${
        JSON.stringify(address ?? "an unknown address")
      }: ${reason}${
        unsaid === 0 ? "" : ` (and ${unsaid} more since the last line)`
      }`,
    );
    unsaid = 0;
  };
  const onSocket = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.setNoDelay(true);
    const address = socket.remoteAddress;
    const refusal = server.admit(address);
    if (refusal !== undefined) {
      if (Date.now() - refusedAt > 1000) {
        refusedAt = Date.now();
        server.log.warn(`Refused a CoAP-over-TCP connection: ${refusal}`);
      }
      socket.destroy();
      return;
    }
    const frames = new TcpFrameSocket(streamOf(socket), {
      maxMessageSize: server.maxMessageSize,
      onAbort: (reason) => aborted(address, reason),
    });
    wire(socket, frames);
    const connection = server.accept(
      frames,
      address === undefined ? {} : { address },
    );
    // Through the frame socket, not the connection: its log line is the
    // server's one a second, not one a connection (a flood of silent
    // connections would be a flood of lines).
    const timer = setTimeout(() => {
      frames.abort(`No CSM within ${handshakeTimeout} ms`);
    }, handshakeTimeout);
    connection.ready.then(() => clearTimeout(timer), () => clearTimeout(timer));
    connection.closed.then(() => clearTimeout(timer));
  };
  const handshakeTimeout = options.handshakeTimeout ?? 10_000;
  const listener = options.tls === undefined
    ? net.createServer(onSocket)
    : tls.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: ["coap"],
      handshakeTimeout,
    }, onSocket);
  // A handshake that fails is that connection's end, nothing more.
  listener.on("tlsClientError", () => {});
  return new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(
      options.port ?? (options.tls === undefined ? 5683 : 5684),
      options.hostname ?? "127.0.0.1",
      () => {
        listener.off("error", reject);
        listener.on("error", (error: Error) => server.log.error(error));
        const bound = listener.address() as net.AddressInfo;
        resolve({
          port: bound.port,
          get connections() {
            return sockets.size;
          },
          close: () =>
            new Promise<void>((done) => {
              for (const socket of sockets) socket.destroy();
              listener.close(() => done());
            }),
        });
      },
    );
  });
}

/**
 * Reads a `coap+tcp://` or `coaps+tcp://` URI (RFC 8323 §8.1, §8.2).
 *
 * @param uri The URI.
 * @returns Host, port (5683, or 5684 with TLS), TLS, path and query.
 * @throws {TypeError} If it is not such a URI.
 *
 * @example
 * ```ts
 * import { parseTcpUri } from "./tcp_node.ts";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(parseTcpUri("coaps+tcp://127.0.0.1/time?x=1"), {
 *   hostname: "127.0.0.1", port: 5684, tls: true, path: "/time", query: ["x=1"],
 * });
 * ```
 */
export function parseTcpUri(uri: string): {
  hostname: string;
  port: number;
  tls: boolean;
  path: string;
  query: string[];
} {
  let url: URL | undefined;
  try {
    url = new URL(uri);
  } catch { /* below */ }
  if (
    url === undefined ||
    (url.protocol !== "coap+tcp:" && url.protocol !== "coaps+tcp:") ||
    url.hostname === ""
  ) {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(uri)
      }: expected coap+tcp://HOST[:PORT]/PATH or coaps+tcp://`,
    );
  }
  const secure = url.protocol === "coaps+tcp:";
  return {
    hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? (secure ? 5684 : 5683) : Number(url.port),
    tls: secure,
    path: decodeURIComponent(url.pathname) || "/",
    query: url.search === ""
      ? []
      : url.search.slice(1).split("&").map((part) => decodeURIComponent(part)),
  };
}

/** Options for {@linkcode connectCoapTcp}. */
export interface ConnectTcpOptions extends ClientOptions {
  /**
   * For `coaps+tcp://`: the certificates (PEM) to trust instead of the
   * system's, such as a test server's own CA.
   */
  caCerts?: string[];
  /**
   * Where the client's end of the connection is bound: any address and a
   * free port unless given.
   */
  bind?: { hostname?: string; port?: number };
}

/**
 * Whether a TCP socket is connected to itself: a connection to a local
 * port where nothing listens can come back to the very socket that made it
 * when the system picked that port as its source (TCP's simultaneous open).
 * Such a socket reads its own CSM and requests, and a client would take its
 * own 4.04 for the server's answer.
 *
 * @param socket The connected socket's two ends.
 * @returns Whether they are one.
 */
export function selfConnected(socket: {
  readonly localAddress?: string;
  readonly localPort?: number;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
}): boolean {
  return socket.localPort !== undefined &&
    socket.localPort === socket.remotePort &&
    socket.localAddress === socket.remoteAddress;
}

/**
 * A client for one CoAP-over-TCP or -TLS server (RFC 8323): connects,
 * exchanges CSMs, and resolves once the server's has arrived.
 * `client.close()` sends a Release and ends the stream.
 *
 * @param uri `coap+tcp://HOST[:PORT]` or `coaps+tcp://` (a path is
 * ignored here).
 * @param options Client settings, and certificates to trust for TLS.
 * @returns The client.
 * @throws {TypeError} If `uri` is not such a URI.
 * @throws {ConnectionError} If the connection fails, came back to this
 * client ({@linkcode selfConnected}), or no CSM comes in `connectTimeout`.
 */
export async function connectCoapTcp(
  uri: string,
  options: ConnectTcpOptions = {},
): Promise<CoapClient> {
  const target = parseTcpUri(uri);
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const fail = (error: Error) =>
      reject(
        new ConnectionError(`Cannot connect to ${uri}: ${error.message}`),
      );
    const local = {
      ...(options.bind?.hostname === undefined
        ? {}
        : { localAddress: options.bind.hostname }),
      ...(options.bind?.port === undefined
        ? {}
        : { localPort: options.bind.port }),
    };
    const opened = target.tls
      ? tls.connect({
        ...local,
        host: target.hostname,
        port: target.port,
        ALPNProtocols: ["coap"],
        ...(options.caCerts === undefined ? {} : { ca: options.caCerts }),
        ...(net.isIP(target.hostname) ? {} : { servername: target.hostname }),
      }, () => {
        opened.off("error", fail);
        resolve(opened);
      })
      : net.connect({
        ...local,
        host: target.hostname,
        port: target.port,
      }, () => {
        opened.off("error", fail);
        resolve(opened);
      });
    opened.once("error", fail);
  });
  if (selfConnected(socket)) {
    socket.destroy();
    throw new ConnectionError(
      `Cannot connect to ${uri}: nothing listens there (the connection came back to this client's own port)`,
    );
  }
  socket.setNoDelay(true);
  const frames = new TcpFrameSocket(streamOf(socket), {
    maxMessageSize: options.maxMessageSize,
  });
  wire(socket, frames);
  const connection = attachWebSocket(frames, {
    log: options.log ?? CLIENT_LOG,
    maxMessageSize: options.maxMessageSize,
    pingTimeout: options.pingTimeout,
    onPong: options.onPong,
  });
  try {
    await peerReady(connection, options.connectTimeout ?? 10_000);
  } catch (error) {
    connection.abort((error as Error).message);
    socket.destroy();
    throw new ConnectionError(
      `Cannot connect to ${uri}: ${(error as Error).message}`,
    );
  }
  return new CoapClient(connection, options);
}
