// Small helpers the interop checks share: one request and its answer, a
// request's answers as lines, waiting for a condition with a bound, and a
// body to upload.

import type { CoapClient } from "../client.ts";
import type { CoapRequest } from "../exchange.ts";
import { text } from "../message.ts";

/**
 * One request and its first response, as code and text; an exception
 * event is thrown.
 */
export async function one(
  client: CoapClient,
  request: CoapRequest,
): Promise<{ code: string; payload: string }> {
  for await (const event of client.request(request)) {
    if (event.kind !== "response") throw event.exception;
    return { code: event.message.code, payload: text(event.message.payload) };
  }
  throw new Error("no response");
}

/**
 * A request's first `count` responses as `"code payload"` lines; an
 * exception ends the list with `"exception …"`.
 */
export async function ask(
  client: CoapClient,
  request: CoapRequest,
  count = 1,
): Promise<string[]> {
  const got: string[] = [];
  for await (const event of client.request(request)) {
    if (event.kind !== "response") {
      got.push(`exception ${(event.exception as Error)?.message}`);
      break;
    }
    got.push(`${event.message.code} ${text(event.message.payload)}`);
    if (got.length >= count) break;
  }
  return got;
}

/**
 * Waits until `probe` holds, looking every 10 ms; past `ms` it fails,
 * naming `what` and what `state` says then.
 */
export async function eventually(
  what: string,
  probe: () => boolean | Promise<boolean>,
  ms = 10_000,
  state: () => unknown = () => "",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what} ${JSON.stringify(state())}`.trim(),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A body of `length` printable bytes that differ from block to block
 * (`0:a;1:b;…`), for uploads whose blocks must not be mixed up unseen.
 */
export function uploadBody(length: number): string {
  let text = "";
  for (let i = 0; text.length < length; i++) {
    text += `${i}:${"abcdefgh"[i % 8]};`;
  }
  return text.slice(0, length);
}
