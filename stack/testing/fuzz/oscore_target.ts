// The fuzzer's OSCORE target: a server with a security context (RFC 8613
// C.1.2) over an in-memory socket pair, sent protected requests made by
// the other half of the context (GETs, POSTs, an observation and its end,
// block-wise follow-ups), replays of them, their mutations (a bit of the
// ciphertext, the OSCORE option, the token, the code), and plain frames.
// Defects: anything thrown to the platform; a protected request answered
// with a plain success (a leak); a request left unanswered on an open
// connection; anything left after the peer went.

import fc from "fast-check";
import {
  Code,
  codeKind,
  decodeMessage,
  encodeMessage,
  Option,
  tokenKey,
  uint,
  utf8,
} from "../../message.ts";
import {
  MemoryStore,
  OSCORE_OPTION,
  SecurityContext,
  type SecurityContextInit,
} from "../../oscore.ts";
import { CoapServer } from "../../server.ts";
import { socketPair } from "../socket_pair.ts";
import { csm, frame, mutate, mutation } from "./generators.ts";
import {
  asksNoResponse,
  escaped,
  escapedSince,
  fuzzResources,
  leftOf,
  quiet,
} from "./targets.ts";

const h = (text: string) =>
  new Uint8Array((text.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const BASE = {
  masterSecret: h("0102030405060708090a0b0c0d0e0f10"),
  masterSalt: h("9e7ca92223786340"),
};
const CLIENT: SecurityContextInit = {
  ...BASE,
  senderId: h(""),
  recipientId: h("01"),
};
const SERVER: SecurityContextInit = {
  ...BASE,
  senderId: h("01"),
  recipientId: h(""),
};

/** Protected requests, made once: the fuzzer's arbitraries are sync. */
const POOL: Uint8Array[] = await (async () => {
  const client = await SecurityContext.create({
    ...CLIENT,
    store: new MemoryStore(),
  });
  const plain = [
    { path: ["obs"], code: Code.GET, observe: 0 },
    { path: [], code: Code.GET },
    { path: ["echo"], code: Code.POST, payload: "hello" },
    { path: ["big"], code: Code.GET },
    { path: ["big"], code: Code.GET, block2: 0x16 },
    { path: ["obs"], code: Code.GET, observe: 1 },
    { path: ["obs"], code: Code.PUT },
    { path: ["task"], code: Code.GET, observe: 0 },
    { path: ["fail"], code: Code.GET },
    { path: ["missing"], code: Code.PUT, payload: "x" },
    { path: ["async"], code: Code.GET, query: "a=1" },
  ];
  const frames: Uint8Array[] = [];
  for (let round = 0; round < 3; round++) {
    for (const [i, r] of plain.entries()) {
      const { message } = await client.protectRequest({
        code: r.code,
        token: new Uint8Array([i % 4]),
        options: [
          ...(r.observe === undefined
            ? []
            : [{ number: Option.OBSERVE, value: uint(r.observe) }]),
          ...r.path.map((s) => ({ number: Option.URI_PATH, value: utf8(s) })),
          ...(r.query === undefined
            ? []
            : [{ number: Option.URI_QUERY, value: utf8(r.query) }]),
          ...(r.block2 === undefined
            ? []
            : [{ number: Option.BLOCK2, value: uint(r.block2) }]),
        ],
        payload: utf8(r.payload ?? ""),
      });
      frames.push(encodeMessage(message));
    }
  }
  return frames;
})();

/** One frame: protected (as made, or mutated), or anything else. */
const oscoreFrame: fc.Arbitrary<Uint8Array> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.nat({ max: POOL.length - 1 }).map((i) => POOL[i]),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.nat({ max: POOL.length - 1 }),
      fc.array(mutation, { minLength: 1, maxLength: 2 }),
    ).map(([i, changes]) => changes.reduce(mutate, POOL[i])),
  },
  { weight: 1, arbitrary: frame },
);

/** A session: a CSM, then protected requests, replays and noise. */
export const oscoreSession: fc.Arbitrary<Uint8Array[]> = fc.tuple(
  csm.map((m) => encodeMessage(m)),
  fc.array(oscoreFrame, { minLength: 1, maxLength: 16 }),
).map(([first, rest]) => [first, ...rest]);

/** Lets microtasks and WebCrypto's calls (in other threads) finish. */
async function quietDown(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** The target: see the module's comment. */
export async function oscore(frames: Uint8Array[]): Promise<string[]> {
  const defects: string[] = [];
  const before = escaped.length;
  const context = await SecurityContext.create({
    ...SERVER,
    store: new MemoryStore(),
  });
  const coap = new CoapServer(fuzzResources(), {
    log: quiet,
    oscore: [context],
  });
  const [near, far] = socketPair();
  const connection = coap.accept(far);
  const protectedTokens = new Set<number | string>();
  const unanswered = new Set<number | string>();
  near.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    if (!(data instanceof ArrayBuffer)) return;
    let message;
    try {
      message = decodeMessage(new Uint8Array(data));
    } catch (error) {
      defects.push(`the server sent bytes that do not decode: ${error}`);
      return;
    }
    if (codeKind(message.code) !== "response") return;
    const key = tokenKey(message.token);
    unanswered.delete(key);
    const sealed = message.options.some((o) => o.number === OSCORE_OPTION);
    if (protectedTokens.has(key) && !sealed && message.code >> 5 === 2) {
      defects.push(
        `a protected request on token ${key} was answered ${
          message.code.toString(16)
        } in the clear`,
      );
    }
  });
  for (const bytes of frames) {
    try {
      const message = decodeMessage(bytes);
      if (codeKind(message.code) === "request") {
        const key = tokenKey(message.token);
        // A plain request with No-Response may rightly go unanswered (a
        // protected one's is inside, where the fuzzer does not look).
        if (asksNoResponse(message)) unanswered.delete(key);
        else unanswered.add(key);
        if (message.options.some((o) => o.number === OSCORE_OPTION)) {
          protectedTokens.add(key);
        } else protectedTokens.delete(key);
      }
    } catch { /* malformed: the server aborts */ }
    if (near.readyState !== 1) break;
    near.send(bytes);
    await quietDown();
  }
  await quietDown();
  // WebCrypto works in other threads: on a busy machine what is owed can
  // come after those turns (a CI run's fuzz pass, at 18 inputs a second
  // against 24, saw one answer late). It may take 2 s at most.
  const deadline = performance.now() + 2000;
  while (
    connection.state !== "closed" &&
    unanswered.size > coap.observations && performance.now() < deadline
  ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  // An observation's registration stays open by design; the rest is owed.
  if (connection.state !== "closed" && unanswered.size > 0) {
    const open = coap.observations;
    if (unanswered.size > open) {
      defects.push(
        `requests on tokens ${
          [...unanswered].join(", ")
        } were not answered (${open} observations open) and the connection is open`,
      );
    }
  }
  near.close();
  await quietDown();
  defects.push(...leftOf(coap, "the peer went"), ...escapedSince(before));
  return defects;
}
