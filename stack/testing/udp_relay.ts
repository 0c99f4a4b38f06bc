// A UDP relay in front of a device, keeping what passes each way: what an
// on-path observer, or a proxy in front of the relay, sees. For the OSCORE
// checks (stack/testing/oscore_interop.ts, the explorer's browser walk).

import dgram from "node:dgram";

/** A running relay: its port, what went up and down, and its end. */
export interface Relay {
  readonly port: number;
  /** Datagrams from the client side, as they went to the device. */
  readonly up: Uint8Array[];
  /** Datagrams from the device, as they went back. */
  readonly down: Uint8Array[];
  close(): void;
}

/**
 * A UDP relay in front of `target`: what passes each way is kept, as an
 * on-path observer (or the proxy itself) sees it.
 */
export async function relay(target: number): Promise<Relay> {
  const front = dgram.createSocket("udp4");
  const back = dgram.createSocket("udp4");
  const up: Uint8Array[] = [];
  const down: Uint8Array[] = [];
  let client: { address: string; port: number } | undefined;
  front.on("message", (bytes, from) => {
    client = { address: from.address, port: from.port };
    up.push(new Uint8Array(bytes));
    back.send(bytes, target, "127.0.0.1");
  });
  back.on("message", (bytes) => {
    down.push(new Uint8Array(bytes));
    if (client !== undefined) front.send(bytes, client.port, client.address);
  });
  await new Promise<void>((resolve) => front.bind(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => back.bind(0, "127.0.0.1", resolve));
  return {
    port: front.address().port,
    up,
    down,
    close: () => {
      front.close();
      back.close();
    },
  };
}

/** Whether any of `datagrams` holds `text` as bytes. */
export function holds(datagrams: Uint8Array[], text: string): boolean {
  const needle = new TextEncoder().encode(text);
  return datagrams.some((d) => {
    outer: for (let i = 0; i + needle.length <= d.length; i++) {
      for (let j = 0; j < needle.length; j++) {
        if (d[i + j] !== needle[j]) continue outer;
      }
      return true;
    }
    return false;
  });
}
