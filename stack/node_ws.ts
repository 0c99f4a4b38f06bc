/**
 * The Deno adapter on Node's `ws` library (npm) over Deno's `node:http`,
 * for a server that must hold against peers that mean harm: a WebSocket
 * frame larger than the server's Max-Message-Size is refused as soon as its
 * header arrives (close 1009), where `Deno.upgradeWebSocket` buffers a
 * message of up to 64 MiB before any of this stack's code sees it. The
 * HTTP side is the one every adapter shares ({@linkcode refuseUpgrade}):
 * Host, path, handshake, subprotocol and Origin checks, the `authorize`
 * hook, and 503 past the server's connection limits.
 *
 * It delivers each message in a task of its own, so that one connection's
 * flood of frames does not hold the others up, and writes the frames a
 * connection sends in one turn of the event loop together (one `writev`,
 * where each frame was one): it costs about the CPU a request of
 * `serveCoap` on `Deno.serve` (median 1.00 times in plain text, 1.26 over
 * TLS; 1.35 and 2.0 before the frames were batched; `deno task
 * bench:transport [--tls]`). `deno task coap:server` uses it unless told
 * `--transport deno`. Given `tls`, it serves `coaps+ws://` on
 * `node:https`, offering ALPN `http/1.1` only: without that, Deno's
 * `node:https` answers a client that offers ALPN (Deno's own WebSocket
 * client, browsers) with a fatal `no_application_protocol` alert.
 *
 * @module
 */

import http from "node:http";
import https from "node:https";
import type { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { batchWrites, type FrameSender } from "./batch_writes.ts";
import { escapeText } from "./peer_log.ts";
import { refusalLog } from "./deno_server.ts";
import { CoapServer, type Resources } from "./server.ts";
import {
  authorizeUpgrade,
  fullRefusal,
  type Refusal,
  refuseHost,
  refuseUpgrade,
  type UpgradeOptions,
} from "./upgrade.ts";
import type { WebSocketLike } from "./websocket.ts";

/** What {@linkcode serveCoapWs} uses of a `ws` WebSocket. */
export interface NodeWebSocket {
  /** Listens for the socket's errors (a frame over `maxPayload`, say). */
  on(event: "error", listener: (error: Error) => void): unknown;
}

/** What {@linkcode serveCoapWs} uses of `ws`'s `WebSocketServer`. */
export interface NodeWebSocketServer {
  /** Completes a WebSocket handshake on a socket the HTTP server gave up. */
  handleUpgrade(
    request: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    callback: (ws: NodeWebSocket) => void,
  ): void;
}

/** The options {@linkcode serveCoapWs} makes `ws`'s `WebSocketServer` with. */
export interface NodeWebSocketServerOptions {
  /** Upgrades are handed over by the HTTP server's `upgrade` event. */
  noServer: true;
  /** Sockets are not kept in a set of the server's. */
  clientTracking: false;
  /** No compression. */
  perMessageDeflate: false;
  /** Each message in a task of its own. */
  allowSynchronousEvents: false;
  /** The largest message; a frame announcing more is refused with 1009. */
  maxPayload: number;
  /** Picks the subprotocol: `coap`, or none (refused). */
  handleProtocols: (protocols: Set<string>) => string | false;
}

/** `ws`'s `WebSocketServer` class: `import { WebSocketServer } from "npm:ws"`. */
export type NodeWebSocketServerClass = new (
  options: NodeWebSocketServerOptions,
) => NodeWebSocketServer;

/** Options for {@linkcode serveCoapWs}. */
export interface ServeCoapWsOptions extends UpgradeOptions {
  /**
   * `ws`'s `WebSocketServer` (npm's `ws`, 8.x): this package depends on
   * nothing, so the server that uses it brings it.
   */
  WebSocketServer: NodeWebSocketServerClass;
  /** The port; 0 picks a free one. */
  port: number;
  /**
   * The address to listen on.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Let other processes listen on the same port, the kernel spreading
   * connections between them (Linux), as `deno task coap:cluster` does.
   *
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * The largest WebSocket message accepted; a frame announcing more is
   * refused as its header arrives.
   *
   * @default {the server's Max-Message-Size (1152)}
   */
  maxPayload?: number;
  /**
   * A certificate and its key (PEM), to serve TLS (`coaps+ws://`) on
   * `node:https`, which offers ALPN `http/1.1` only: without that, Deno's
   * `node:https` answers a client that offers ALPN (Deno's WebSocket,
   * browsers) with a fatal `no_application_protocol` alert.
   */
  tls?: { cert: string; key: string };
}

/** A running {@linkcode serveCoapWs} server. */
export interface CoapWsServer {
  /** The port it listens on. */
  readonly port: number;
  /** The CoAP server behind it. */
  readonly coap: CoapServer;
  /** Stops listening and closes every connection. */
  shutdown(): Promise<void>;
}

/** A request whose Host or path no URL can hold. */
const MALFORMED: Refusal = Object.freeze({
  status: 400,
  key: "malformed request",
  reason: "The request's Host or path is not one a URL can hold",
});

/** How long a closed connection's socket waits for the peer's close. */
const CLOSE_GRACE_MS = 1000;

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  426: "Upgrade Required",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** An HTTP/1.1 response in bytes, for a socket that will not be upgraded. */
function rawResponse(
  status: number,
  body: string,
  headers: Readonly<Record<string, string>> = {},
): string {
  const bytes = new TextEncoder().encode(body).length;
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ""}\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
    `content-type: text/plain;charset=utf-8\r\ncontent-length: ${bytes}\r\n` +
    `connection: close\r\n\r\n${body}`;
}

/** The web-standard request of a Node request: what the checks read. */
function toRequest(request: http.IncomingMessage): Request | undefined {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    try {
      for (const one of Array.isArray(value) ? value : [value]) {
        headers.append(name, one);
      }
    } catch { /* a value Headers refuses: left out */ }
  }
  try {
    return new Request(
      `http://${request.headers.host ?? "localhost"}${request.url ?? "/"}`,
      { method: request.method, headers },
    );
  } catch {
    return undefined; // a Host or path no URL can hold
  }
}

/**
 * Serves resources over CoAP over WebSocket with `ws` on `node:http`, on
 * 127.0.0.1 unless told otherwise.
 *
 * @param resources The resources, or a server.
 * @param options Port, address, allowed hosts and origins, an `authorize`
 * hook, and the largest message accepted.
 * @returns Once listening: the port, the CoAP server, and `shutdown()`; it
 * rejects if the port cannot be listened on (an error whose `code` is
 * `EADDRINUSE`, `EADDRNOTAVAIL` or `EACCES`).
 *
 * @example
 * ```ts ignore
 * import { serveCoapWs } from "@coap/stack/ws";
 * import { WebSocketServer } from "npm:ws@8";
 *
 * const server = await serveCoapWs({
 *   "/hello": { GET: () => ({ payload: "hi" }) },
 * }, { port: 8683, WebSocketServer });
 * console.log(`listening on ${server.port}`);
 * ```
 */
export async function serveCoapWs(
  resources: Resources | CoapServer,
  options: ServeCoapWsOptions,
): Promise<CoapWsServer> {
  const coap = resources instanceof CoapServer
    ? resources
    : new CoapServer(resources);
  const hostname = options.hostname ?? "127.0.0.1";
  const checks: UpgradeOptions = {
    ...options,
    allowedHosts: options.allowedHosts === true
      ? true
      : [...(options.allowedHosts ?? []), hostname],
  };
  const refused = refusalLog(coap.log);
  const wss = new options.WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // One message a task: a burst of frames in one read would otherwise be
    // delivered in one go, and hold every other connection up (a bystander
    // waited 320 to 460 ms behind 200,000 stray responses; 17 ms this way).
    allowSynchronousEvents: false,
    maxPayload: options.maxPayload ?? coap.maxMessageSize,
    handleProtocols: (protocols: Set<string>) =>
      protocols.has("coap") ? "coap" : false,
  });
  const sockets = new Set<Duplex>();
  const refuse = (socket: Duplex, refusal: Refusal) => {
    refused(refusal);
    socket.end(
      rawResponse(refusal.status, `${refusal.reason}\n`, refusal.headers),
    );
  };
  const onRequest = (
    request: http.IncomingMessage,
    response: http.ServerResponse,
  ) => {
    const web = toRequest(request);
    if (
      options.page !== undefined && web !== undefined &&
      !web.headers.has("upgrade")
    ) {
      const host = refuseHost(web, checks);
      if (host === undefined) {
        Promise.resolve(options.page(web)).then(async (page) => {
          const body = new Uint8Array(await page.arrayBuffer());
          response.writeHead(page.status, {
            ...Object.fromEntries(page.headers),
            "content-length": String(body.length),
          });
          response.end(body);
        }).catch((error) => {
          coap.log.error(
            `The page failed: ${escapeText(String(error?.message ?? error))}`,
          );
          response.destroy();
        });
        return;
      }
    }
    const refusal = web === undefined
      ? MALFORMED
      : refuseUpgrade(web, checks) ?? MALFORMED;
    refused(refusal);
    const body = new TextEncoder().encode(`${refusal.reason}\n`);
    response.writeHead(refusal.status, {
      "content-type": "text/plain;charset=utf-8",
      "content-length": String(body.length),
      ...refusal.headers,
    });
    response.end(body);
  };
  const server = options.tls === undefined
    ? http.createServer(onRequest)
    : https.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: ["http/1.1"],
    }, onRequest);
  server.on("upgrade", (request, socket: Duplex, head: Buffer) => {
    // Whatever happens to the socket from here on is this handler's.
    socket.on("error", () => socket.destroy());
    const web = toRequest(request);
    if (web === undefined) return refuse(socket, MALFORMED);
    const refusal = refuseUpgrade(web, checks);
    if (refusal !== undefined) return refuse(socket, refusal);
    const address = request.socket.remoteAddress;
    const upgrade = () => {
      const full = coap.admit(address);
      if (full !== undefined) return refuse(socket, fullRefusal(full));
      wss.handleUpgrade(request, socket, head, (ws) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        // A turn's frames in one write (the transport's cost was 1.35 times
        // Deno.serve's a request, a writev each; 1.00 so).
        batchWrites(ws as unknown as FrameSender, socket);
        const connection = coap.accept(ws as unknown as WebSocketLike, {
          address,
        });
        // An emitter's "error" with no listener would be thrown: a frame
        // over maxPayload, a malformed one. ws then sends its close frame
        // (1009, 1002), resumes reading, and waits up to 30 s for the
        // peer's (found by the fuzzer's loopback pass: 256 such sessions
        // from one address left the next one refused with 503 until ws's
        // timers ran out). Instead the connection is told at once, so that
        // whatever ws still delivers is not read as the peer's (a CI run
        // saw an empty message after a refused frame over TLS), and the
        // socket goes as soon as the close frame is written (a second at
        // most): what the peer still sends is not read. Over TLS it matters
        // most, since Deno's node:tls reads on into memory however the
        // socket is paused (4 peers each sending most of a 60 MiB frame
        // grew the process by 258 MB within that second).
        ws.on("error", (error) => {
          connection.transportClosed(
            1009,
            `ws refused a frame: ${
              escapeText(String(error?.message ?? error))
            }`,
          );
          const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
          socket.write(new Uint8Array(0), () => {
            clearTimeout(timer);
            socket.destroy();
          });
        });
        // Once the connection is over (released, aborted, refused by ws),
        // nothing the peer still sends is read: a flood stops costing the
        // process at once, and the socket goes after a second, whether or
        // not the peer answers the close handshake (ws would wait 30 s).
        connection.closed.then(() => {
          // ws resumes a paused socket whenever its parser drains: take its
          // reader away first.
          socket.removeAllListeners("data");
          socket.pause();
          setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
        });
      });
    };
    if (options.authorize === undefined) return upgrade();
    authorizeUpgrade(web, options).then((no) => {
      if (no === undefined) return upgrade();
      no.text().then((body) =>
        refuse(socket, {
          status: no.status,
          key: `authorize ${no.status}`,
          reason: body.trim(),
          headers: Object.fromEntries(no.headers),
        })
      );
    }).catch((error) => {
      coap.log.error(
        `A CoAP upgrade failed: ${escapeText(String(error?.message ?? error))}`,
      );
      socket.destroy();
    });
  });
  server.on("clientError", (_error, socket: Duplex) => {
    // Bytes that are not HTTP: a 400, and the socket closed; no stack.
    if (socket.writable) {
      socket.end(rawResponse(400, "Malformed HTTP request\n"));
    } else socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({
      port: options.port,
      host: hostname,
      ...(options.reusePort === true ? { reusePort: true } : {}),
    }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) =>
    coap.log.error(
      `The CoAP server's listener failed: ${
        escapeText(String(error?.message ?? error))
      }`,
    ));
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : 0,
    coap,
    shutdown: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
