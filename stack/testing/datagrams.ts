// A CoAP-over-UDP request as raw bytes, for the checks that play a peer by
// hand (udp_test.ts in memory, udp_hostile.ts over raw sockets).

import {
  type CoapOption,
  Code,
  encodeMessage,
  Option,
  utf8,
} from "../message.ts";
import { encodeDatagram, type MessageType, Type } from "../udp.ts";

/**
 * A request datagram: a GET unless `code` says otherwise, CON unless
 * `type` does, with `path` as its Uri-Path options, `token` (none by
 * default) and more `options`.
 *
 * @param messageId The message ID.
 * @param path The path, `""` or `"a/b"`.
 * @param more The token, type, code and options.
 * @returns The datagram.
 */
export function requestDatagram(
  messageId: number,
  path: string,
  more: {
    token?: number[];
    type?: MessageType;
    options?: CoapOption[];
    code?: number;
  } = {},
): Uint8Array {
  return encodeDatagram(
    more.type ?? Type.CON,
    messageId,
    encodeMessage({
      code: more.code ?? Code.GET,
      token: new Uint8Array(more.token ?? []),
      options: [
        ...path.split("/").filter((s) => s !== "").map((segment) => ({
          number: Option.URI_PATH,
          value: utf8(segment),
        })),
        ...(more.options ?? []),
      ],
      payload: new Uint8Array(0),
    }),
  );
}
