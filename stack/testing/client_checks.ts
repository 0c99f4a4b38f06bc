// The interop checks of our client against a CoAP-over-WebSocket server
// that serves the aiocoap peer's resources (the peer itself, or ours). One
// list, run by Deno (testing/interop.ts) and bundled into a page for
// headless Chromium (testing/run_browser_interop.ts). Browser compatible.

import { CoapClient } from "../client.ts";
import type { CoapResponse } from "../exchange.ts";
import { decodeBlock, getOption, Option, text } from "../message.ts";
import { BIG } from "../resources.ts";

/** The outcome of one check. */
export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function one(
  client: CoapClient,
  request: Parameters<CoapClient["request"]>[0],
): Promise<CoapResponse> {
  const responses: CoapResponse[] = [];
  for await (const event of client.request(request)) {
    if (event.kind === "exception") throw event.exception;
    if (event.kind === "response") responses.push(event.message);
  }
  assert(
    responses.length === 1,
    `expected 1 response, got ${responses.length}`,
  );
  return responses[0];
}

async function withTimeout<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no result in ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function observersDrop(client: CoapClient): Promise<string> {
  const deadline = Date.now() + 3000;
  let seen = "";
  while (Date.now() < deadline) {
    seen = text(
      (await one(client, { method: "GET", path: "/observers" })).payload,
    );
    if (seen === "0") return seen;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`/observers still says ${seen}`);
}

/** The checks, in order: name and body (which returns a detail line). */
const checks: [string, (client: CoapClient) => Promise<string>][] = [
  ["GET / answers 2.05 with the welcome text", async (client) => {
    const r = await one(client, { method: "GET", path: "/" });
    assert(r.code === "2.05", `code ${r.code}`);
    assert(
      text(r.payload) === "Welcome to the demo server",
      `payload ${text(r.payload)}`,
    );
    return `${r.code} "${text(r.payload)}"`;
  }],
  [
    "POST /echo answers 2.04 with the same payload and content format",
    async (client) => {
      const r = await one(client, {
        method: "POST",
        path: "/echo",
        payload: "hello, pipes",
        contentFormat: 0,
      });
      assert(r.code === "2.04", `code ${r.code}`);
      assert(text(r.payload) === "hello, pipes", `payload ${text(r.payload)}`);
      assert(r.contentFormat === 0, `content format ${r.contentFormat}`);
      return `${r.code} "${text(r.payload)}" ct=${r.contentFormat}`;
    },
  ],
  ["GET /fail answers 5.00", async (client) => {
    const r = await one(client, { method: "GET", path: "/fail" });
    assert(r.code === "5.00", `code ${r.code}`);
    return r.code;
  }],
  ["GET of a missing path answers 4.04", async (client) => {
    const r = await one(client, { method: "GET", path: "/no/such/thing" });
    assert(r.code === "4.04", `code ${r.code}`);
    return r.code;
  }],
  [
    "GET /big arrives whole, reassembled from 1024-byte Block2 blocks",
    async (client) => {
      const r = await one(client, { method: "GET", path: "/big" });
      assert(r.code === "2.05", `code ${r.code}`);
      assert(
        text(r.payload) === BIG,
        `payload of ${r.payload.length} bytes differs`,
      );
      const block = getOption(r, Option.BLOCK2);
      assert(
        block !== undefined,
        "no Block2 option: it did not come block-wise",
      );
      const { num, more, szx } = decodeBlock(block);
      assert(
        num === 0 && more && szx === 6,
        `first block ${num} ${more} ${szx}`,
      );
      return `${r.payload.length} bytes, first block of ${16 << szx}`;
    },
  ],
  [
    "GET /other/separate (3 s) does not hold up faster requests",
    async (client) => {
      const order: string[] = [];
      const slow = one(client, { method: "GET", path: "/other/separate" })
        .then((r) => order.push(`separate ${r.code}`));
      await Promise.all(
        [10, 20, 30].map((ms) =>
          one(client, { method: "GET", path: "/slow", query: `ms=${ms}` })
            .then((r) => order.push(text(r.payload)))
        ),
      );
      await slow;
      assert(
        order.join(",") === "slept 10,slept 20,slept 30,separate 2.05",
        `order ${order}`,
      );
      return order.join(", ");
    },
  ],
  [
    "100 concurrent GET /slow requests each get their own response",
    async (client) => {
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          one(client, {
            method: "GET",
            path: "/slow",
            query: `ms=${(i * 7) % 50}`,
          })
            .then((r) => [i, text(r.payload)] as const)),
      );
      for (const [i, payload] of results) {
        assert(
          payload === `slept ${(i * 7) % 50}`,
          `request ${i} got ${payload}`,
        );
      }
      return "100 of 100 matched";
    },
  ],
  [
    "observing /counter yields 5 notifications; leaving deregisters (/observers 0)",
    async (client) => {
      const values: number[] = [];
      for await (
        const event of client.request({
          method: "GET",
          path: "/counter",
          observe: true,
        })
      ) {
        if (event.kind !== "response") throw event.exception;
        assert(
          event.message.observe !== undefined,
          "a response without Observe",
        );
        values.push(Number(text(event.message.payload)));
        if (values.length === 5) break;
      }
      for (let i = 1; i < values.length; i++) {
        assert(values[i] > values[i - 1], `values not increasing: ${values}`);
      }
      return `values ${values.join(" ")}; /observers ${await observersDrop(
        client,
      )}`;
    },
  ],
  ["a Ping is answered with a Pong", async (client) => {
    const rtt = await client.ping();
    assert(rtt >= 0, `rtt ${rtt}`);
    return `Pong after ${rtt.toFixed(1)} ms`;
  }],
];

/** The number of checks {@linkcode runClientChecks} runs. */
export const CHECK_COUNT: number = checks.length;

/**
 * Connects to `uri` and runs every check on one connection; a check that
 * fails or takes over 15 s is reported, and the rest still run.
 */
export async function runClientChecks(uri: string): Promise<CheckResult[]> {
  const client = await CoapClient.connect(uri, { log: quiet });
  const results: CheckResult[] = [];
  for (const [name, check] of checks) {
    try {
      results.push({
        name,
        ok: true,
        detail: await withTimeout(15_000, check(client)),
      });
    } catch (error) {
      results.push({
        name,
        ok: false,
        detail: String((error as Error)?.message ?? error),
      });
    }
  }
  const open = client.openRequests;
  results.push({
    name: "no request pipe is left open",
    ok: open === 0,
    detail: `${open} open`,
  });
  client.close();
  return results;
}
