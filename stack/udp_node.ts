/**
 * CoAP over UDP on a socket: `node:dgram` (Node.js, Deno and Bun have it),
 * or Deno's own `Deno.listenDatagram` where Deno runs with
 * `--unstable-net`. {@linkcode serveCoapUdp} serves a `CoapServer`'s
 * resources over UDP; {@linkcode connectCoapUdp} makes a `CoapClient` for
 * one `coap://` server.
 *
 * @module
 */

import dgram from "node:dgram";
import dns from "node:dns";
import { isIP } from "node:net";
import { CLIENT_LOG, type ClientOptions, CoapClient } from "./client.ts";
import { attachWebSocket } from "./websocket.ts";
import type { CoapServer } from "./server.ts";
import {
  CoapUdpEndpoint,
  type PeerAddress,
  servePeers,
  type UdpOptions,
} from "./udp.ts";

/** A bound UDP socket, whichever platform API made it. */
export interface BoundUdp {
  /** The port it is bound to. */
  readonly port: number;
  /** Sends one datagram. */
  send(bytes: Uint8Array, to: PeerAddress): void;
  /** Closes the socket. */
  close(): void;
}

/** Options for binding a UDP socket. */
export interface BindOptions {
  /**
   * The address to bind to.
   *
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * The port; 0 for any free one.
   *
   * @default {0}
   */
  port?: number;
  /**
   * Which API: `node:dgram` (Node.js, Deno and Bun have it), Deno's
   * `Deno.listenDatagram` (needs `--unstable-net`), or Bun's
   * `Bun.udpSocket`. Under `bench:udp`'s load, Bun's own API costs a fifth
   * less a datagram than its `node:dgram` (a bare echo server: 6.4 against
   * 8.1 µs of CPU a request), so it is the default on Bun for a socket that
   * is not `connect`ed. In Deno 2.9 the two cost about the same (24 and 28
   * µs; a whole server 49 and 53 µs), and `node:dgram` needs no flag.
   *
   * @default {"bun" on Bun without `connect`, else "node"}
   */
  api?: "node" | "deno" | "bun";
  /**
   * With `node:dgram`: connect the socket to this one peer, so that the
   * platform may report an ICMP port unreachable from it (Node.js does,
   * as `ECONNREFUSED`; Deno 2.9's `node:dgram` does not) to `onError`.
   * Datagrams then go only to it.
   */
  connect?: PeerAddress;
  /**
   * The largest datagram read whole, in bytes: more is cut off. Only Deno's
   * `node:dgram` heeds it: it reads every datagram into a fresh, zeroed
   * buffer of 64 KiB unless told (Deno 2.9), which was half of a bare echo
   * server's CPU a request (30 against 15 µs) and most of its garbage.
   * {@linkcode serveCoapUdp} and {@linkcode connectCoapUdp} set it to twice
   * the endpoint's `maxMessageSize`: a datagram cut there is over
   * `maxMessageSize` still, and refused whole as it would be.
   *
   * @default {65536}
   */
  readSize?: number;
  /** Told of a socket error after binding (`ECONNREFUSED`, say). */
  onError?: (error: Error & { code?: string }) => void;
}

/**
 * Binds a UDP socket and hands every datagram to `onDatagram`.
 *
 * @param onDatagram Called with each datagram and its sender.
 * @param options Where to bind, and with which API.
 * @returns The socket, once bound.
 * @throws {Error} If the address cannot be bound (in use, say).
 */
export function bindUdp(
  onDatagram: (bytes: Uint8Array, from: PeerAddress) => void,
  options: BindOptions = {},
): Promise<BoundUdp> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  if (options.api === "deno") return bindDeno(onDatagram, hostname, port);
  const bun = (globalThis as { Bun?: BunUdp }).Bun;
  if (
    options.api === "bun" ||
    (options.api === undefined && bun !== undefined &&
      options.connect === undefined)
  ) {
    return bindBun(bun, onDatagram, hostname, port, options.onError);
  }
  return new Promise((resolve, reject) => {
    const type = hostname.includes(":") ? "udp6" : "udp4";
    const socket = NOT_DENO
      ? dgram.createSocket({ type, lookup: literalLookup })
      : dgram.createSocket(type);
    socket.once("error", reject);
    socket.on("message", (message: Uint8Array, rinfo) => {
      onDatagram(
        new Uint8Array(message.buffer, message.byteOffset, message.byteLength),
        { hostname: rinfo.address, port: rinfo.port },
      );
    });
    const connect = options.connect;
    socket.bind(port, hostname, () => {
      socket.off("error", reject);
      if (
        options.readSize !== undefined &&
        (globalThis as { Deno?: unknown }).Deno !== undefined
      ) {
        // Deno's node:dgram takes this as the size of its read buffer, not
        // the kernel's (and doubles it on Linux, as Node.js's kernel does).
        try {
          socket.setRecvBufferSize(options.readSize);
        } catch { /* the default stays */ }
      }
      // Later socket errors (an ICMP unreachable on some platforms) are no
      // reason to stop: whoever asked is told.
      socket.on("error", (error: Error) => {
        try {
          options.onError?.(error);
        } catch { /* a listener's failure changes nothing */ }
      });
      let closed = false;
      const bound = () =>
        resolve({
          port: socket.address().port,
          send(bytes, to) {
            // What a layer above still sends once the socket closed (a
            // DTLS close_notify sealed meanwhile) goes nowhere, quietly.
            if (closed) return;
            // A Uint8Array as it is: node:dgram takes any TypedArray.
            // A connected socket sends to its peer only, named or not.
            if (connect !== undefined) socket.send(bytes);
            else socket.send(bytes, to.port, to.hostname);
          },
          close() {
            closed = true;
            try {
              socket.close();
            } catch { /* closed already */ }
          },
        });
      if (connect === undefined) bound();
      else socket.connect(connect.port, connect.hostname, bound);
    });
  });
}

/**
 * The address a client's socket binds to for talking to `host`: the
 * loopback address for a loopback peer, so that its traffic stays on this
 * host, else every address of the peer's family (`0.0.0.0` or `::`), so
 * that the kernel picks the source its route to the peer needs. A socket
 * bound to 127.0.0.1 cannot reach another host: Linux refuses its sends
 * (`EINVAL`).
 *
 * @example A loopback peer, a device, a name
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { clientBindAddress } from "@coap/stack/udp";
 *
 * assertEquals(clientBindAddress("127.0.0.1"), "127.0.0.1");
 * assertEquals(clientBindAddress("192.0.2.7"), "0.0.0.0");
 * assertEquals(clientBindAddress("::1"), "::1");
 * assertEquals(clientBindAddress("2001:db8::7"), "::");
 * assertEquals(clientBindAddress("sensor.example"), "0.0.0.0");
 * ```
 *
 * @param host The peer's address or name.
 * @returns The address to bind to.
 */
export function clientBindAddress(host: string): string {
  const v6 = host.includes(":");
  if (isLoopback(host)) return v6 ? "::1" : "127.0.0.1";
  return v6 ? "::" : "0.0.0.0";
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1). */
function isLoopback(host: string): boolean {
  return host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Binds a client's socket for talking to `peer`, never on the peer's own
 * address and port: the kernel may give a socket bound to port 0 the very
 * port it then sends to, where nothing else listens, and such a socket
 * hears its own requests (a client serving nothing answers them 4.04, and
 * takes that for the answer). An ephemeral port that is the peer's is
 * closed and drawn again, up to 8 times; a port named in `options` that
 * would be the peer's own address fails at once.
 *
 * @param onDatagram Called with each datagram and its sender.
 * @param peer The address the socket talks to.
 * @param options Where to bind ({@linkcode clientBindAddress} of the peer
 * and any free port unless given), and with which API.
 * @param bind What binds a socket ({@linkcode bindUdp}; a test passes its
 * own).
 * @returns The socket, once bound.
 * @throws {Error} If the named address and port are the peer's, or every
 * draw was.
 */
export async function bindClientUdp(
  onDatagram: (bytes: Uint8Array, from: PeerAddress) => void,
  peer: PeerAddress,
  options: BindOptions = {},
  bind: typeof bindUdp = bindUdp,
): Promise<BoundUdp> {
  const hostname = options.hostname ?? clientBindAddress(peer.hostname);
  const port = options.port ?? 0;
  const self = `${peer.hostname}:${peer.port}`;
  const wildcard = hostname === "0.0.0.0" || hostname === "::";
  if (
    port !== 0 && port === peer.port &&
    (hostname === peer.hostname || (wildcard && isLoopback(peer.hostname)))
  ) {
    throw new Error(
      `Cannot bind the client's socket to ${hostname}:${port}: it talks to ${self}, and would hear its own requests`,
    );
  }
  for (let draw = 1;; draw++) {
    const bound = await bind(onDatagram, { ...options, hostname, port });
    if (port !== 0 || bound.port !== peer.port) return bound;
    bound.close();
    if (draw === 8) {
      throw new Error(
        `Cannot bind the client's socket: the system gave it the port it talks to (${self}) 8 times`,
      );
    }
  }
}

/**
 * The peer's address with its name resolved: an endpoint knows a peer by
 * the address its datagrams come from, so a client of `coap://sensor.local`
 * must know the device by the address that name stands for (its answers
 * come from that address, not from a name). An IP address is kept as it is.
 *
 * @example An address needs no lookup
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { resolvePeer } from "@coap/stack/udp";
 *
 * const peer = { hostname: "192.0.2.7", port: 5683 };
 * assertEquals(await resolvePeer(peer), peer);
 * ```
 *
 * @param address The peer's name or address, and port.
 * @param lookup Resolves a name to one address (`dns.lookup`; a test
 * passes its own).
 * @returns The address to talk to.
 * @throws {Error} If the name does not resolve.
 */
export async function resolvePeer(
  address: PeerAddress,
  lookup: (name: string) => Promise<{ address: string }> = (name) =>
    dns.promises.lookup(name),
): Promise<PeerAddress> {
  if (isIP(address.hostname) !== 0) return address;
  let found: string;
  try {
    found = (await lookup(address.hostname)).address;
  } catch (error) {
    throw new Error(
      `Cannot resolve ${address.hostname}: ${(error as Error).message}`,
    );
  }
  return { hostname: found, port: address.port };
}

/** Not Deno, whose `node:dgram` fares worse with {@linkcode literalLookup}. */
const NOT_DENO = (globalThis as { Deno?: unknown }).Deno === undefined;

/**
 * `node:dgram`'s address lookup on Node.js and Bun, answering an IP
 * address at once: the default (`dns.lookup`) answers even one a tick
 * later, so that each datagram sent to an address cost a `process.nextTick`
 * and its closures (1.5 µs of CPU a datagram in Node.js 20: 100,000 sent to
 * 10,000 sockets took 271 and 221 ms of user CPU, 101 and 80 ms this way),
 * a burst left only after the code that sent it, and a datagram sent just
 * before `close()` was lost (on Bun too). A name is still looked up. Deno's
 * `node:dgram` fared worse with it (a fan-out of 100,000 notifications took
 * 2.7 to 2.9 s against 1.7 to 2.6 s without), so Deno keeps its default.
 */
function literalLookup(
  address: string,
  options: number | string | { family?: number | string },
  callback: (error: Error | null, address: string, family: number) => void,
): void {
  // Node.js passes the socket's family as a number (4, 6); its types say
  // an options object, whose family may be a name.
  const given = typeof options === "object" ? options?.family : options;
  const wanted = given === 6 || given === "IPv6"
    ? 6
    : given === 4 || given === "IPv4"
    ? 4
    : 0;
  const literal = isIP(address);
  if (literal !== 0 && (wanted === 0 || wanted === literal)) {
    callback(null, address, literal);
  } else {
    dns.lookup(
      address,
      { family: wanted },
      (error, found, family) => callback(error, found, family),
    );
  }
}

/** What the stack uses of Bun's `Bun.udpSocket`. */
interface BunUdp {
  udpSocket(options: {
    hostname: string;
    port: number;
    socket: {
      data(
        socket: unknown,
        data: Uint8Array,
        port: number,
        address: string,
      ): void;
      error?(socket: unknown, error: Error): void;
    };
  }): Promise<{
    readonly port: number;
    send(data: Uint8Array, port: number, address: string): boolean;
    close(): void;
  }>;
}

async function bindBun(
  bun: BunUdp | undefined,
  onDatagram: (bytes: Uint8Array, from: PeerAddress) => void,
  hostname: string,
  port: number,
  onError: BindOptions["onError"],
): Promise<BoundUdp> {
  if (bun?.udpSocket === undefined) {
    throw new Error(
      "Bun.udpSocket is missing: this is not Bun, use the node:dgram API",
    );
  }
  const socket = await bun.udpSocket({
    hostname,
    port,
    socket: {
      data(_socket, data, port, address) {
        onDatagram(data, { hostname: address, port });
      },
      error(_socket, error) {
        try {
          onError?.(error);
        } catch { /* a listener's failure changes nothing */ }
      },
    },
  });
  let closed = false;
  return {
    port: socket.port,
    send(bytes, to) {
      if (closed) return;
      // false: the kernel's buffer is full, and the datagram is lost, as
      // one dropped on the way would be.
      socket.send(bytes, to.port, to.hostname);
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        socket.close();
      } catch { /* closed already */ }
    },
  };
}

interface DenoDatagramConn {
  readonly addr: { port: number };
  send(data: Uint8Array, addr: unknown): Promise<number>;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<
    [Uint8Array, { hostname: string; port: number }]
  >;
}

function bindDeno(
  onDatagram: (bytes: Uint8Array, from: PeerAddress) => void,
  hostname: string,
  port: number,
): Promise<BoundUdp> {
  const listen = (globalThis as {
    Deno?: { listenDatagram?: (options: unknown) => DenoDatagramConn };
  }).Deno?.listenDatagram;
  if (listen === undefined) {
    return Promise.reject(
      new Error(
        "Deno.listenDatagram is missing: run Deno with --unstable-net, or use the node:dgram API",
      ),
    );
  }
  let conn: DenoDatagramConn;
  try {
    conn = listen({ transport: "udp", hostname, port });
  } catch (error) {
    return Promise.reject(error);
  }
  let closed = false;
  (async () => {
    try {
      for await (const [bytes, from] of conn) {
        onDatagram(bytes, { hostname: from.hostname, port: from.port });
      }
    } catch {
      // Closed.
    }
  })();
  return Promise.resolve({
    port: conn.addr.port,
    send(bytes, to) {
      if (closed) return;
      conn.send(bytes, { transport: "udp", ...to }).catch(() => {});
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* closed already */ }
    },
  });
}

/**
 * The endpoint's `sendBurst` unless one is given: Deno sends a turn's
 * datagrams once the turn is over, all at once, and lost a third of a
 * burst of 100,000 (none at 256 a turn); Node.js and Bun send each at once
 * (libuv queues what the kernel cannot take yet), and pacing them only
 * made a fan-out slower (100,000 notifications to 10,000 peers in Node.js
 * 20: 1.0 s at 65,536 a turn, 1.4 s at 256).
 */
const SEND_BURST = (globalThis as { Deno?: unknown }).Deno !== undefined
  ? 256
  : 65_536;

/** Options for {@linkcode serveCoapUdp}. */
export interface ServeUdpOptions extends BindOptions, UdpOptions {
  /**
   * The port to serve on.
   *
   * @default {5683}
   */
  port?: number;
}

/** A server's UDP side, as {@linkcode serveCoapUdp} returns it. */
export interface UdpServing {
  /** The port it serves on. */
  readonly port: number;
  /** The endpoint: its peers and options. */
  readonly endpoint: CoapUdpEndpoint;
  /** Stops serving over UDP; what was open ends. */
  close(): void;
}

/**
 * Serves `server`'s resources over CoAP over UDP (RFC 7252): every peer
 * (address and port) that sends a request is accepted as a connection of
 * the server, counted against its `maxConnections` and
 * `maxConnectionsPerAddress` (see {@linkcode servePeers}). The endpoint's
 * `sendBurst` is 256 on Deno, which sends a turn's datagrams all at once
 * after it, and 65,536 on Node.js and Bun, which send each at once.
 *
 * @param server The server.
 * @param options Where to listen, and the message layer's settings.
 * @returns Once listening.
 */
export async function serveCoapUdp(
  server: CoapServer,
  options: ServeUdpOptions = {},
): Promise<UdpServing> {
  const socket: { bound?: BoundUdp } = {};
  const endpoint = new CoapUdpEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    {
      // A default stands where an option is given as undefined too.
      ...options,
      log: options.log ?? server.log,
      sendBurst: options.sendBurst ?? SEND_BURST,
      onPeer: servePeers(server),
    },
  );
  const bound = socket.bound = await bindUdp(
    (bytes, from) => endpoint.receive(bytes, from),
    {
      ...options,
      readSize: options.readSize ?? 2 * endpoint.options.maxMessageSize,
      port: options.port ?? 5683,
    },
  );
  return {
    port: bound.port,
    endpoint,
    close() {
      endpoint.close();
      bound.close();
    },
  };
}

/**
 * Reads a `coap://host[:port]/path?query` URI.
 *
 * @param uri The URI.
 * @returns The server's address, and the path and query to request.
 * @throws {TypeError} If it is not a `coap://` URI.
 */
export function parseUdpUri(
  uri: string,
): { address: PeerAddress; path: string; query: string[] } {
  return parseDatagramUri(uri, "coap", 5683);
}

/**
 * Reads a `scheme://host[:port]/path?query` URI of a datagram transport
 * (`coap`, `coaps`).
 *
 * @param uri The URI.
 * @param scheme The scheme it must have.
 * @param port The port when it names none.
 * @returns The server's address, and the path and query to request.
 * @throws {TypeError} If it is not such a URI.
 */
export function parseDatagramUri(
  uri: string,
  scheme: string,
  port: number,
): { address: PeerAddress; path: string; query: string[] } {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(uri)
      }: expected ${scheme}://HOST[:PORT]/PATH`,
    );
  }
  if (url.protocol !== `${scheme}:`) {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(uri)
      }: expected ${scheme}://HOST[:PORT]/PATH`,
    );
  }
  let hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (hostname === "localhost") hostname = "127.0.0.1";
  return {
    address: {
      hostname,
      port: url.port === "" ? port : Number(url.port),
    },
    path: decodeURIComponent(url.pathname) || "/",
    query: url.search === ""
      ? []
      : url.search.slice(1).split("&").map((part) => decodeURIComponent(part)),
  };
}

/** Options for {@linkcode connectCoapUdp}. */
export interface ConnectUdpOptions extends ClientOptions {
  /** The message layer's settings (`nonConfirmable` for NON requests). */
  udp?: UdpOptions;
  /**
   * Where to bind the client's socket: by default any free port on the
   * address {@linkcode clientBindAddress} picks for the server (127.0.0.1
   * for a loopback server, else `0.0.0.0` or `::`), never the server's own.
   */
  bind?: BindOptions;
}

/**
 * A client for one CoAP-over-UDP server: binds a socket of its own, which
 * `client.close()` closes. A host name is resolved first
 * ({@linkcode resolvePeer}).
 *
 * @param uri `coap://HOST[:PORT]` (a path is ignored here).
 * @param options Client, message-layer and socket settings.
 * @returns The client.
 * @throws {TypeError} If `uri` is not a `coap://` URI.
 * @throws {Error} If its host name does not resolve.
 */
export async function connectCoapUdp(
  uri: string,
  options: ConnectUdpOptions = {},
): Promise<CoapClient> {
  const address = await resolvePeer(parseUdpUri(uri).address);
  const socket: { bound?: BoundUdp } = {};
  const endpoint = new CoapUdpEndpoint(
    (bytes, to) => socket.bound?.send(bytes, to),
    {
      ...options.udp,
      log: options.udp?.log ?? options.log ?? CLIENT_LOG,
      sendBurst: options.udp?.sendBurst ?? SEND_BURST,
    },
  );
  const holder: { peer?: ReturnType<CoapUdpEndpoint["connect"]> } = {};
  const bound = socket.bound = await bindClientUdp(
    (bytes, from) => endpoint.receive(bytes, from),
    address,
    {
      ...options.bind,
      readSize: options.bind?.readSize ??
        2 * endpoint.options.maxMessageSize,
      connect: options.bind?.connect ?? address,
      onError: options.bind?.onError ?? ((error) => {
        // An ICMP port unreachable (where the platform reports one): what
        // is waiting ends now, not after MAX_TRANSMIT_WAIT.
        if (error.code === "ECONNREFUSED") {
          holder.peer?.close(
            4000,
            `Nothing listens at ${address.hostname}:${address.port} (the port is unreachable, says ICMP)`,
          );
        }
      }),
    },
  );
  const peer = holder.peer = endpoint.connect(address);
  peer.addEventListener("close", () => {
    endpoint.close();
    bound.close();
  });
  const connection = attachWebSocket(peer, {
    log: options.log ?? CLIENT_LOG,
    maxMessageSize: options.maxMessageSize,
    onPong: options.onPong,
  });
  await connection.ready;
  return new CoapClient(connection, options);
}
