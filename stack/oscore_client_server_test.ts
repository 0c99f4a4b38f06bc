import { assertEquals } from "@std/assert";
import { CoapClient } from "./client.ts";
import type { CoapResponse } from "./exchange.ts";
import { decodeMessage, encodeMessage, text } from "./message.ts";
import {
  encodeOscoreOption,
  MemoryStore,
  OSCORE_OPTION,
  SecurityContext,
} from "./oscore.ts";
import { CoapServer, Observers } from "./server.ts";
import { attachWebSocket, type WebSocketLike } from "./websocket.ts";
import { socketPair } from "./testing/socket_pair.ts";

const h = (s: string) =>
  new Uint8Array((s.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const SECRET = h("0102030405060708090a0b0c0d0e0f10");
const SALT = h("9e7ca92223786340");

function contexts(
  serverStore = new MemoryStore(),
  clientStore = new MemoryStore(),
) {
  return Promise.all([
    SecurityContext.create({
      masterSecret: SECRET,
      masterSalt: SALT,
      senderId: h(""),
      recipientId: h("01"),
      store: clientStore,
    }),
    SecurityContext.create({
      masterSecret: SECRET,
      masterSalt: SALT,
      senderId: h("01"),
      recipientId: h(""),
      store: serverStore,
    }),
  ]);
}

/** Frames as they cross the socket, decoded: what a proxy would see. */
function tap(socket: WebSocketLike, seen: string[]): WebSocketLike {
  const send = socket.send.bind(socket);
  socket.send = (data: Uint8Array) => {
    {
      const bytes = data;
      try {
        const m = decodeMessage(bytes);
        if (m.code !== 0xe1) {
          seen.push(
            `${m.code >> 5}.${String(m.code & 31).padStart(2, "0")} [${
              m.options.map((o) => o.number).join(",")
            }] ${new TextDecoder().decode(m.payload)}`,
          );
        }
      } catch { /* not a message */ }
    }
    send(data);
  };
  return socket;
}

async function setup(
  resources: ConstructorParameters<typeof CoapServer>[0],
  options: {
    required?: boolean;
    server?: SecurityContext;
    client?: SecurityContext;
  } = {},
) {
  const [client, server] = options.server
    ? [options.client!, options.server]
    : await contexts();
  const coap = new CoapServer(resources, {
    oscore: [server],
    oscoreRequired: options.required,
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  const [near, far] = socketPair();
  const wire: string[] = [];
  coap.accept(tap(far, wire));
  const connection = attachWebSocket(tap(near, wire));
  await connection.ready;
  return {
    client: new CoapClient(connection, { oscore: client }),
    plain: new CoapClient(connection),
    coap,
    wire,
    contexts: { client, server },
  };
}

async function one(
  pipe: AsyncIterable<
    { kind: string; message?: CoapResponse; exception?: unknown }
  >,
) {
  const got: string[] = [];
  for await (const event of pipe) {
    if (event.kind === "response") {
      got.push(`${event.message!.code} ${text(event.message!.payload)}`);
    } else if (event.kind === "exception") {
      got.push(
        `${(event.exception as Error).name}: ${
          (event.exception as Error).message
        }`,
      );
    }
  }
  return got;
}

Deno.test("CoapServer with oscore: a protected GET and POST are served, the wire holds no path, payload or code of theirs, and a plain request gets 4.01", async () => {
  const { client, plain, wire } = await setup({
    "/secret": { GET: () => ({ payload: "the plans" }) },
    "/echo": {
      POST: (request) => ({
        code: "2.04",
        payload: `got ${text(request.payload)}`,
      }),
    },
  }, { required: true });
  assertEquals(await one(client.request({ method: "GET", path: "/secret" })), [
    "2.05 the plans",
  ]);
  assertEquals(
    await one(
      client.request({ method: "POST", path: "/echo", payload: "hush" }),
    ),
    ["2.04 got hush"],
  );
  assertEquals(await one(plain.request({ method: "GET", path: "/secret" })), [
    "4.01 OSCORE required",
  ]);
  // What crossed: outer POSTs and 2.04s with the OSCORE option; never the
  // path, the payloads or the inner codes.
  const shapes = wire.map((line) => line.split(" ").slice(0, 2).join(" "));
  assertEquals(shapes, [
    "0.02 [9]",
    "2.04 [9]",
    "0.02 [9]",
    "2.04 [9]",
    "0.01 [11]",
    "4.01 []",
  ]);
  for (const secret of ["secret", "the plans", "hush", "echo"]) {
    assertEquals(
      wire.slice(0, 4).some((line) => line.includes(secret)),
      false,
      secret,
    );
  }
  client.close();
});

Deno.test("CoapServer with oscore: an observation goes as FETCH, each notification protected with its own Partial IV; leaving the loop ends it at the server", async () => {
  let value = 0;
  const observers = new Observers();
  const { client, coap, wire } = await setup({
    "/counter": {
      observable: observers,
      GET: () => ({ payload: String(value) }),
    },
  });
  const got: string[] = [];
  for await (
    const event of client.request({
      method: "GET",
      path: "/counter",
      observe: true,
    })
  ) {
    if (event.kind !== "response") break;
    got.push(
      `${event.message.code} ${
        text(event.message.payload)
      } observe=${event.message.observe}`,
    );
    if (got.length === 3) break;
    value++;
    observers.updated();
  }
  // The server's own Observe numbers, from outside, in order.
  assertEquals(got, [
    "2.05 0 observe=0",
    "2.05 1 observe=1",
    "2.05 2 observe=2",
  ]);
  // Outer FETCH with Observe; outer 2.05 with Observe, the OSCORE option
  // empty for the first (the request's nonce) and with a Partial IV after.
  assertEquals(
    wire.slice(0, 4).map((l) => l.split(" ").slice(0, 2).join(" ")),
    ["0.05 [6,9]", "2.05 [6,9]", "2.05 [6,9]", "2.05 [6,9]"],
  );
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals([coap.observations, observers.count], [0, 0]);
  client.close();
});

Deno.test("CoapServer with oscore: a replayed request is refused with 4.01 and not served; a forged Partial IV gets 4.00, an unknown kid 4.01, a malformed option 4.02", async () => {
  let served = 0;
  const [clientContext, serverContext] = await contexts();
  const coap = new CoapServer({
    "/act": {
      POST: () => {
        served++;
        return { code: "2.04" };
      },
    },
  }, {
    oscore: [serverContext],
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  const [near, far] = socketPair();
  const wire: string[] = [];
  coap.accept(tap(far, wire));
  const frames: Uint8Array[] = [];
  const send = near.send.bind(near);
  near.send = (data: Uint8Array) => {
    frames.push(data.slice());
    send(data);
  };
  const connection = attachWebSocket(near);
  await connection.ready;
  const client = new CoapClient(connection, { oscore: clientContext });
  assertEquals(
    await one(client.request({ method: "POST", path: "/act", payload: "go" })),
    ["2.04 "],
  );
  const request = frames.find((f) => decodeMessage(f).code === 0x02)!;
  const m = decodeMessage(request);
  const withOption = (value: Uint8Array, payload = m.payload) =>
    encodeMessage({
      ...m,
      options: [{ number: OSCORE_OPTION, value }],
      payload,
    });
  const option = m.options.find((o) => o.number === OSCORE_OPTION)!.value;
  send(request);
  send(withOption(new Uint8Array([0x09, 0x50])));
  send(
    withOption(
      encodeOscoreOption({
        piv: new Uint8Array([0x51]),
        kid: new Uint8Array([7]),
      }),
    ),
  );
  send(withOption(new Uint8Array([0x20])));
  send(withOption(option, m.payload.map((b, i) => i === 0 ? b ^ 1 : b)));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(served, 1);
  // Refusals before decryption go out first; the order is not the point.
  assertEquals(wire.slice(1).sort(), [
    "4.00 [] Decryption failed",
    "4.01 [] Replay detected",
    "4.01 [] Replay detected",
    "4.01 [] Security context not found",
    "4.02 [] Malformed OSCORE option: reserved bits are set",
  ]);
  client.close();
});

Deno.test("CoapServer with oscore after a restart: the client's first request is answered 4.01 with Echo, and the client sends it again with the Echo, served once", async () => {
  let served = 0;
  // The server's store held a number: it restarted, its replay window is lost.
  const [client, server] = await contexts(new MemoryStore(128));
  const { client: coap, wire } = await setup({
    "/act": {
      POST: () => {
        served++;
        return { code: "2.04", payload: "done" };
      },
    },
  }, { client, server });
  assertEquals(await one(coap.request({ method: "POST", path: "/act" })), [
    "2.04 done",
  ]);
  assertEquals(await one(coap.request({ method: "POST", path: "/act" })), [
    "2.04 done",
  ]);
  assertEquals(served, 2);
  // The challenge is protected (a Partial IV of the server's own: option
  // 9 with 2 or more bytes); the retry and the next request are served.
  assertEquals(wire.map((l) => l.split(" ").slice(0, 2).join(" ")), [
    "0.02 [9]",
    "2.04 [9]",
    "0.02 [9]",
    "2.04 [9]",
    "0.02 [9]",
    "2.04 [9]",
  ]);
  assertEquals(server.replay.lost, false);
  coap.close();
});

Deno.test("CoapServer with oscore: block-wise is inside, each block its own OSCORE exchange, both ways", async () => {
  const big = "0123456789".repeat(300);
  let uploaded = "";
  const { client, wire } = await setup({
    "/big": { GET: () => ({ payload: big }) },
    "/up": {
      PUT: (request) => {
        uploaded = text(request.payload);
        return { code: "2.04" };
      },
    },
  });
  const got = await one(client.request({ method: "GET", path: "/big" }));
  assertEquals(got, [`2.05 ${big}`]);
  assertEquals(
    await one(client.request({ method: "PUT", path: "/up", payload: big })),
    ["2.04 "],
  );
  assertEquals(uploaded, big);
  // 3000 bytes in three 1024-byte blocks a way (they fit 1152 with
  // OSCORE's bytes), and never an outer Block option.
  const exchanges = wire.filter((l) => l.startsWith("0.02"));
  assertEquals(exchanges.length, 6);
  assertEquals(wire.every((l) => /^\d\.\d\d \[9\]/.test(l)), true);
  client.close();
});

Deno.test("CoapServer: a resource marked oscore answers a plain request 4.01 and a protected one; the others answer both", async () => {
  const { client, plain } = await setup({
    "/private": { oscore: true, GET: () => ({ payload: "p" }) },
    "/public": { GET: () => ({ payload: "q" }) },
  });
  assertEquals([
    ...await one(plain.request({ method: "GET", path: "/private" })),
    ...await one(client.request({ method: "GET", path: "/private" })),
    ...await one(plain.request({ method: "GET", path: "/public" })),
    ...await one(client.request({ method: "GET", path: "/public" })),
  ], ["4.01 OSCORE required", "2.05 p", "2.05 q", "2.05 q"]);
  client.close();
});

Deno.test("CoapServer with oscore: a connection that sends 200 protected requests at once has 64 unprotected at a time; the others get 5.03, and every one an answer", async () => {
  const [client, server] = await contexts();
  const coap = new CoapServer({ "/": { GET: () => ({ payload: "ok" }) } }, {
    oscore: [server],
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  const [near, far] = socketPair();
  const codes: number[] = [];
  near.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    if (data instanceof ArrayBuffer) {
      const m = decodeMessage(new Uint8Array(data));
      if (m.code !== 0xe1) codes.push(m.code);
    }
  });
  coap.accept(far);
  near.send(
    encodeMessage({
      code: 0xe1,
      token: new Uint8Array(0),
      options: [],
      payload: new Uint8Array(0),
    }),
  );
  const frames: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    const { message } = await client.protectRequest({
      code: 0x01,
      token: new Uint8Array([i >> 8, i & 255]),
      options: [],
      payload: new Uint8Array(0),
    });
    frames.push(encodeMessage(message));
  }
  for (const frame of frames) near.send(frame);
  for (let i = 0; i < 100 && codes.length < 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const changed = codes.filter((c) => c === 0x44).length;
  const busy = codes.filter((c) => c === 0xa3).length;
  assertEquals([codes.length, changed + busy], [200, 200]);
  assertEquals(
    changed >= 64 && busy > 0,
    true,
    `${changed} served, ${busy} 5.03`,
  );
  near.close();
});
