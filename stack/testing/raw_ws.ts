// A WebSocket client over a raw TCP socket, for load probes that must
// behave as no well-mannered client does: pipeline thousands of frames in
// one write, or stop reading altogether so that the server's queue fills.
// 127.0.0.1 only. Frames go out masked with a zero key (valid framing; a
// real client would pick random keys), and the server's frames are parsed
// only as far as needed to hand binary payloads on.

import { Code, decodeMessage, encodeMessage, uint } from "../message.ts";
import type { CoapMessage } from "../message.ts";

/** One raw WebSocket connection with the `coap` subprotocol. */
export class RawWebSocket {
  readonly #conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);
  #paused = false;
  #resume: (() => void) | undefined;
  #closed = false;
  /** Binary messages received (server frames of opcode 2). */
  received = 0;
  /** Bytes of WebSocket frames received. */
  bytes = 0;
  /** Set when the server closed the TCP connection. */
  readonly ended: Promise<void>;
  /** The code and reason of the server's close frame, once it sent one. */
  closeFrame: { code: number; reason: string } | undefined;
  #onMessage: ((payload: Uint8Array) => void) | undefined;

  private constructor(
    conn: Deno.Conn,
    rest: Uint8Array,
    onMessage: ((payload: Uint8Array) => void) | undefined,
  ) {
    this.#conn = conn;
    this.#buffer = rest;
    // Set before the first read: frames that came with the 101 are parsed
    // at once.
    this.#onMessage = onMessage;
    this.ended = this.#read();
  }

  /**
   * Connects to `127.0.0.1:port`, upgrades, and starts reading.
   *
   * @param port The server's port.
   * @param onMessage Called with every binary message while reading.
   * @param headers More request headers (an Origin, a Host of its own).
   * @param path The request's path.
   * @param caCerts For TLS: the CA certificates (PEM) to trust.
   * @returns The socket.
   */
  static async connect(
    port: number,
    onMessage?: (payload: Uint8Array) => void,
    headers: Record<string, string> = {},
    path = "/.well-known/coap",
    caCerts?: string[],
  ): Promise<RawWebSocket> {
    let conn: Deno.Conn;
    if (caCerts === undefined) {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      tcp.setNoDelay(true);
      conn = tcp;
    } else {
      conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts,
        alpnProtocols: ["http/1.1"],
      });
    }
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(
      new Uint8Array(16),
    )));
    // A Host among `headers` replaces the usual one.
    const host =
      Object.entries(headers).find(([k]) => k.toLowerCase() === "host")?.[1] ??
        `127.0.0.1:${port}`;
    await writeAll(
      conn,
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n` +
          Object.entries(headers).filter(([k]) => k.toLowerCase() !== "host")
            .map(([k, v]) => `${k}: ${v}\r\n`).join("") +
          `Upgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Protocol: coap\r\n\r\n`,
      ),
    );
    let head: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error("Upgrade failed: connection closed");
      head = concat(head, chunk.subarray(0, n));
      const end = indexOfCrlfCrlf(head);
      if (end < 0) continue;
      const status = new TextDecoder().decode(head.subarray(0, end));
      if (!status.startsWith("HTTP/1.1 101")) {
        conn.close();
        throw new Error(`Upgrade refused: ${status.split("\r\n")[0]}`);
      }
      return new RawWebSocket(conn, head.slice(end + 4), onMessage);
    }
  }

  /** Sends CoAP messages, each as one binary frame, in few writes. */
  async send(messages: CoapMessage[]): Promise<void> {
    await this.sendBytes(frames(messages));
  }

  /**
   * Writes bytes made by {@linkcode frames} in 64 KiB writes, so that
   * the load generator's own event loop is free between them.
   */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    const CHUNK = 1 << 16;
    for (let at = 0; at < bytes.length; at += CHUNK) {
      await writeAll(this.#conn, bytes.subarray(at, at + CHUNK));
    }
  }

  /** Stops reading: the kernel buffers fill, then the server's queue. */
  pause(): void {
    this.#paused = true;
  }

  /** Reads again. */
  resume(): void {
    this.#paused = false;
    this.#resume?.();
    this.#resume = undefined;
  }

  /** Closes the TCP connection at once, without a close frame. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.resume();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async #read(): Promise<void> {
    const chunk = new Uint8Array(1 << 16);
    try {
      this.#parse();
      for (;;) {
        if (this.#paused) {
          await new Promise<void>((resolve) => this.#resume = resolve);
          if (this.#closed) return;
        }
        const n = await this.#conn.read(chunk);
        if (n === null) return;
        this.bytes += n;
        this.#buffer = this.#buffer.length === 0
          ? chunk.slice(0, n)
          : concat(this.#buffer, chunk.subarray(0, n));
        this.#parse();
      }
    } catch {
      // Closed by us or reset by the server: either way, ended.
    } finally {
      this.#closed = true;
    }
  }

  #parse(): void {
    let at = 0;
    const b = this.#buffer;
    while (b.length - at >= 2) {
      const opcode = b[at] & 0x0f;
      let length = b[at + 1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (b.length - at < 4) break;
        length = (b[at + 2] << 8) | b[at + 3];
        header = 4;
      } else if (length === 127) {
        if (b.length - at < 10) break;
        length = Number(
          new DataView(b.buffer, b.byteOffset + at + 2, 8).getBigUint64(0),
        );
        header = 10;
      }
      if (b.length - at < header + length) break;
      if (opcode === 2) {
        this.received++;
        this.#onMessage?.(b.subarray(at + header, at + header + length));
      } else if (opcode === 8 && this.closeFrame === undefined) {
        const body = b.subarray(at + header, at + header + length);
        this.closeFrame = {
          code: body.length >= 2 ? (body[0] << 8) | body[1] : 1005,
          reason: new TextDecoder().decode(body.subarray(2)),
        };
      }
      at += header + length;
    }
    this.#buffer = at === 0 ? b : b.slice(at);
  }
}

/** Frames messages into one buffer, ahead of sending them. */
export function frames(messages: CoapMessage[]): Uint8Array {
  const parts = messages.map((m) => frame(encodeMessage(m)));
  return join(parts);
}

/** A masked binary frame (zero mask key) carrying `payload`. */
export function frame(payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const header = n < 126 ? 6 : n < 65536 ? 8 : 14;
  const out = new Uint8Array(header + n);
  out[0] = 0x82;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  out.set(payload, header);
  return out;
}

/** A client's CSM. */
export const CSM: CoapMessage = {
  code: Code.CSM,
  token: new Uint8Array(0),
  options: [],
  payload: new Uint8Array(0),
};

/** A GET of `path` on `token`, registering an observation with `observe`. */
export function get(
  token: number,
  path: string,
  observe = false,
): CoapMessage {
  const options = [];
  if (observe) options.push({ number: 6, value: uint(0) });
  for (const segment of path.split("/").filter((s) => s !== "")) {
    options.push({ number: 11, value: new TextEncoder().encode(segment) });
  }
  return {
    code: Code.GET,
    token: uint(token),
    options,
    payload: new Uint8Array(0),
  };
}

/** Decodes a received message, or `undefined` if it is not CoAP. */
export function read(payload: Uint8Array): CoapMessage | undefined {
  try {
    return decodeMessage(payload);
  } catch {
    return undefined;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return join(parts);
}

/** The parts one after another, in one buffer. */
export function join(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function indexOfCrlfCrlf(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}
