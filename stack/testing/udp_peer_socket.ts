// A UDP socket on 127.0.0.1 that talks to one server port, for the load
// generators of `bench:udp` (udp_load.ts, udp_observers.ts): Bun's own
// `Bun.udpSocket` on Bun, where it costs least, else `node:dgram`.

import dgram from "node:dgram";

/** A socket that sends to one port of 127.0.0.1. */
export interface PeerSocket {
  send(bytes: Uint8Array): void;
  close(): void;
}

declare const Bun: {
  udpSocket(options: {
    hostname: string;
    socket: { data(socket: unknown, data: Uint8Array): void };
  }): Promise<{
    send(data: Uint8Array, port: number, address: string): boolean;
    close(): void;
  }>;
} | undefined;

/**
 * Binds a socket to a free port of 127.0.0.1 that sends to `port` there.
 *
 * @param port Where it sends.
 * @param onMessage Told of every datagram it gets.
 * @returns The socket, once bound.
 */
export async function openPeerSocket(
  port: number,
  onMessage: (bytes: Uint8Array) => void,
): Promise<PeerSocket> {
  if (typeof Bun !== "undefined") {
    const socket = await Bun.udpSocket({
      hostname: "127.0.0.1",
      socket: { data: (_socket, data) => onMessage(data) },
    });
    return {
      send: (bytes) => socket.send(bytes, port, "127.0.0.1"),
      close: () => socket.close(),
    };
  }
  const socket = dgram.createSocket("udp4");
  socket.on("message", (message: Uint8Array) => onMessage(message));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    send: (bytes) => socket.send(bytes, port, "127.0.0.1"),
    close: () => socket.close(),
  };
}
