// A command line client in the spirit of aiocoap-client:
//   deno task coap:client [-m METHOD] [--payload TEXT | -f FILE] [--content-format N]
//     [--accept N] [--observe] [--count N] [--token TOKEN]
//     coap+ws://HOST:PORT/PATH?QUERY
// Prints the payload (the code when a success has none), or the code on
// an error response (exiting 1); with
// --observe, one line per notification, stopping after --count of them.

import { CoapClient, parseCoapUri } from "./client.ts";
import { connectCoapUdp, parseUdpUri } from "./udp_node.ts";
import { connectCoapTcp, parseTcpUri } from "./tcp_node.ts";
import { type Method, METHODS, text } from "./message.ts";

const usage =
  "usage: deno task coap:client [-m METHOD] [--payload TEXT | -f FILE] [--block-size N] [--content-format N] [--accept N] [--observe] [--count N] [--reconnect] [--token TOKEN] [--non] [--proxy coap+ws://HOST:PORT] URI";

function fail(message: string, code = 2): never {
  console.error(message);
  Deno.exit(code);
}

let method: Method = "GET";
let payload: string | Uint8Array | undefined;
let blockSize: number | undefined;
let contentFormat: number | undefined;
let accept: number | undefined;
let observe = false;
let count = Infinity;
let uri: string | undefined;
let accessToken: string | undefined;
let reconnect = false;
let nonConfirmable = false;
let proxy: string | undefined;
let caFile: string | undefined;
const args = [...Deno.args];
if (args.includes("-h") || args.includes("--help")) {
  // Asked for: the usage goes to stdout, and it is not an error.
  console.log(`${usage}

Sends one request over CoAP over WebSocket (RFC 8323), or over UDP (RFC
7252) for a coap:// URI, and prints the response's payload; an error
response prints its code and exits 1.
  -m, --method METHOD     GET (default), POST, PUT, DELETE, FETCH, PATCH, iPATCH
  --payload TEXT          the request's payload
  -f, --payload-file FILE the request's payload, read from FILE ("-" reads
                          standard input); a body larger than a block goes
                          block-wise (Block1, RFC 7959)
  --block-size N          the largest block to send a body in: 16, 32, 64,
                          128, 256, 512 or 1024 (the default)
  --content-format N      its Content-Format (0 text/plain, 50 application/json)
  --accept N              the Accept option
  --observe               observe (RFC 7641): one line per notification
  --count N               with --observe, stop after N notifications
  --reconnect             when the server goes away, connect again (up to 10
                          attempts) and register the observation again
  --token TOKEN           a bearer token for a server started with --token
  --non                   over UDP, send the request non-confirmable (NON)
  --proxy URL             send the request through the forward proxy at URL
                          (coap+ws://HOST:PORT, as coap:proxy serves), which
                          forwards it to URI (coap:// or coap+ws://)
  URI                     coap+ws://HOST:PORT/PATH?QUERY, coaps+ws://,
                          coap://HOST[:PORT]/PATH?QUERY (UDP, port 5683),
                          coap+tcp://HOST[:PORT]/PATH?QUERY (TCP, port
                          5683) or coaps+tcp:// (TLS, port 5684)
  --ca FILE               for coaps+tcp://, trust the certificates in FILE
                          (PEM) instead of the system's, such as a test
                          server's own CA

Example: deno task coap:client --observe --count 3 coap+ws://127.0.0.1:8683/counter`);
  Deno.exit(0);
}
const number = (name: string): number => {
  const value = args.shift();
  if (value === undefined || !/^\d+$/.test(value)) {
    fail(
      `${name} needs a number${
        value === undefined ? "" : `, got ${JSON.stringify(value)}`
      }\n${usage}`,
    );
  }
  return Number(value);
};
while (args.length > 0) {
  const arg = args.shift()!;
  if (arg === "-m" || arg === "--method") {
    const methods = Object.keys(METHODS).join(", ");
    const given = args.shift();
    if (given === undefined) {
      fail(`${arg} needs a method: ${methods}\n${usage}`);
    }
    const known = Object.keys(METHODS).find((m) =>
      m.toUpperCase() === given.toUpperCase()
    );
    if (known === undefined) {
      fail(`unknown method ${JSON.stringify(given)}: ${methods}\n${usage}`);
    }
    method = known as Method;
  } else if (arg === "--payload") {
    payload = args.shift() ?? fail(`--payload needs a value\n${usage}`);
  } else if (arg === "-f" || arg === "--payload-file") {
    const file = args.shift() ?? fail(`${arg} needs a file\n${usage}`);
    try {
      payload = file === "-"
        ? new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer())
        : await Deno.readFile(file);
    } catch (error) {
      fail(`Cannot read ${file}: ${(error as Error).message}`);
    }
  } else if (arg === "--block-size") blockSize = number(arg);
  else if (arg === "--content-format") contentFormat = number(arg);
  else if (arg === "--accept") accept = number(arg);
  else if (arg === "--observe") observe = true;
  else if (arg === "--reconnect") reconnect = true;
  else if (arg === "--non") nonConfirmable = true;
  else if (arg === "--proxy") {
    proxy = args.shift() ||
      fail(`--proxy needs a URL (coap+ws://HOST:PORT)\n${usage}`);
  } else if (arg === "--ca") {
    caFile = args.shift() || fail(`--ca needs a PEM file\n${usage}`);
  } else if (arg === "--count") count = number(arg);
  else if (arg === "--token") {
    accessToken = args.shift() || fail(`--token needs a token\n${usage}`);
  } else if (arg.startsWith("-")) {
    fail(`unknown option ${JSON.stringify(arg)}\n${usage}`);
  } else if (uri !== undefined) {
    fail(
      `one URI only: ${JSON.stringify(uri)}, then ${
        JSON.stringify(arg)
      }\n${usage}`,
    );
  } else uri = arg;
}
if (uri === undefined) {
  fail(`a URI is needed (coap+ws://HOST:PORT/PATH)\n${usage}`);
}
if (count !== Infinity && !observe) {
  fail(`--count goes with --observe: it counts notifications\n${usage}`);
}

// Through a proxy, the client speaks WebSocket to the proxy, whatever URI
// names.
const udp = proxy === undefined && uri.startsWith("coap://");
const tcp = proxy === undefined && /^coaps?\+tcp:\/\//.test(uri);
if (proxy !== undefined && !/^coaps?\+ws:\/\//.test(proxy)) {
  fail(`--proxy needs a coap+ws:// or coaps+ws:// URL\n${usage}`);
}
if (nonConfirmable && !udp) fail(`--non goes with a coap:// URI\n${usage}`);
if ((udp || tcp) && (reconnect || accessToken !== undefined)) {
  fail(`--reconnect and --token go with coap+ws:// URIs\n${usage}`);
}
let target: { path: string; query: string[] };
try {
  if (proxy !== undefined) {
    // Checked here, sent whole as Proxy-Uri.
    if (!/^(coap|coap\+ws|coaps\+ws):\/\/[^/]/.test(uri)) {
      throw new TypeError(
        `Cannot ask the proxy for ${
          JSON.stringify(uri)
        }: expected coap:// or coap+ws://`,
      );
    }
    target = { path: "/", query: [] };
  } else {
    target = udp
      ? parseUdpUri(uri)
      : tcp
      ? parseTcpUri(uri)
      : parseCoapUri(uri);
  }
} catch (error) {
  fail((error as Error).message);
}
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let client: CoapClient;
try {
  client = tcp
    ? await connectCoapTcp(uri, {
      log: quiet,
      blockSize,
      ...(caFile === undefined
        ? {}
        : { caCerts: [Deno.readTextFileSync(caFile)] }),
    })
    : udp
    ? await connectCoapUdp(uri, {
      log: quiet,
      blockSize,
      udp: { nonConfirmable },
    })
    : await CoapClient.connect(proxy ?? uri, {
      log: quiet,
      blockSize,
      accessToken,
      ...(reconnect
        ? {
          reconnect: {
            onReconnect: (attempt: number) =>
              console.error(`reconnected (attempt ${attempt})`),
          },
        }
        : {}),
    });
} catch (error) {
  fail((error as Error).message, 1);
}

Deno.addSignalListener("SIGINT", () => {
  client.close();
  Deno.exit(0);
});

let status = 0;
let seen = 0;
const pipe = client.request({
  method,
  path: target.path,
  query: target.query,
  ...(proxy === undefined ? {} : { proxyUri: uri }),
  payload,
  contentFormat,
  accept,
  observe,
});
for await (const event of pipe) {
  if (event.kind === "exception") {
    console.error(String(event.exception));
    status = 1;
    break;
  }
  if (event.kind !== "response") break;
  const response = event.message;
  if (response.code.startsWith("2.")) {
    // A success without a body (2.01 Created, 2.04 Changed) says its code.
    console.log(
      response.payload.length > 0 ? text(response.payload) : response.code,
    );
  } else {
    const diagnostic = text(response.payload);
    console.log(response.code + (diagnostic ? ` ${diagnostic}` : ""));
    status = 1;
  }
  if (++seen >= count) break;
}
if (udp && observe) {
  // Leaving the loop deregistered the observation (a GET with Observe 1);
  // over UDP nothing closes, so give it a moment to reach the server.
  await new Promise((resolve) => setTimeout(resolve, 300));
}
client.close();
Deno.exit(status);
