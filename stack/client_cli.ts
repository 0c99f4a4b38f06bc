// A command line client in the spirit of aiocoap-client and libcoap's
// coap-client:
//   deno task coap:client [-m METHOD] [--payload TEXT|@FILE|- | -f FILE]
//     [--content-format NAME|N] [--accept NAME|N] [--observe] [--count N]
//     [--timeout SECONDS] [-v] [-o FILE] [--pretty] URI
// Prints the payload (the code when a success has none; bytes that are not
// text as hex, CBOR in diagnostic notation), or the code on an error
// response (exiting 1); with --observe, one line per notification,
// stopping after --count of them, or at Ctrl-C, deregistering first.

import { CoapClient, parseCoapUri } from "./client.ts";
import { keyFileBytes } from "./cli_args.ts";
import { connectCoapUdp, parseUdpUri } from "./udp_node.ts";
import { connectCoapTcp, parseTcpUri } from "./tcp_node.ts";
import {
  connectCoapDtls,
  loadCertificate,
  loadPublicKeys,
  parseDtlsUri,
} from "./dtls_node.ts";
import { pemBlocks } from "./x509.ts";
import {
  type CoapOption,
  type Method,
  METHODS,
  Option,
  text,
  uint,
  utf8,
} from "./message.ts";
import type { CoapResponse } from "./exchange.ts";
import type { SecurityContext } from "./oscore.ts";
import { loadSecurityContext } from "./oscore_file.ts";
import {
  CONTENT_FORMATS,
  describeOptions,
  renderPayload,
} from "./explorer/render.ts";

const usage =
  "usage: deno task coap:client [-m METHOD] [--payload TEXT|@FILE|- | -f FILE] [--block-size N] [--content-format NAME|N] [--accept NAME|N] [--observe] [--count N] [--timeout SECONDS] [-v] [-o FILE] [--pretty] [--reconnect] [--token TOKEN] [--non] [--proxy coap+ws://HOST:PORT] [--ca FILE] [--oscore FILE.json [--oscore-state FILE]] [--psk-identity ID --psk-key-file FILE] [--cert FILE --key FILE] [--server-key FILE] [--rpk FILE] URI";

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
let timeout: number | undefined;
let verbose = false;
let output: string | undefined;
let pretty = false;
let oscoreFile: string | undefined;
let pskIdentity: string | undefined;
let certFile: string | undefined;
let keyFile: string | undefined;
let serverKeyFile: string | undefined;
let rpkFile: string | undefined;
let pskKeyFile: string | undefined;
let oscoreState: string | undefined;
const extraOptions: CoapOption[] = [];
const args = [...Deno.args];
if (args.includes("-h") || args.includes("--help")) {
  // Asked for: the usage goes to stdout, and it is not an error.
  console.log(`${usage}

Sends one request over CoAP over WebSocket (RFC 8323), or over UDP (RFC
7252) for a coap:// URI, and prints the response's payload; an error
response prints its code and exits 1.
  -m, --method METHOD     GET (default), POST, PUT, DELETE, FETCH, PATCH, iPATCH
  --payload TEXT          the request's payload; @FILE reads it from FILE,
                          "-" from standard input (bytes as they are)
  -f, --payload-file FILE the same as --payload @FILE; a body larger than a
                          block goes block-wise (Block1, RFC 7959)
  --block-size N          the largest block to send a body in: 16, 32, 64,
                          128, 256, 512 or 1024 (the default)
  --content-format F      the payload's Content-Format, by number or name:
                          text/plain (0), application/link-format (40),
                          application/octet-stream (42), application/json
                          (50), application/cbor (60), application/senml+json
                          (110), application/senml+cbor (112); or json, cbor,
                          text, link-format, octet-stream, senml+json …
  --accept F              the Accept option, the same way
  --observe               observe (RFC 7641): one line per notification;
                          Ctrl-C deregisters, then exits
  --count N               with --observe, stop after N notifications
  --timeout SECONDS       give up after SECONDS without a response (with
                          --observe, without the first), exiting 1
  -v, --verbose           on standard error, each response's code, its
                          options (Observe, Max-Age, ETag …) and the time
                          since the request
  -o, --output FILE       write the payload to FILE, bytes as they came (the
                          last notification's, with --observe)
  --pretty                JSON pretty-printed (CBOR is shown in diagnostic
                          notation anyway, bytes that are not text as hex)
  -O, --option NAME=VALUE another option, by name (If-Match, ETag,
                          If-None-Match, No-Response, Uri-Host, Hop-Limit …)
                          or number; VALUE is 0x and hex for raw bytes, a
                          number for a uint option, else text; repeatable
  --reconnect             when the server goes away, connect again (up to 10
                          attempts) and register the observation again
  --token TOKEN           a bearer token for a server started with --token
  --non                   over UDP, send the request non-confirmable (NON)
  --proxy URL             send the request through the forward proxy at URL
                          (coap+ws://HOST:PORT, as coap:proxy serves), which
                          forwards it to URI (coap:// or coap+ws://)
  URI                     coap+ws://HOST:PORT/PATH?QUERY, coaps+ws://,
                          coap://HOST[:PORT]/PATH?QUERY (UDP, port 5683),
                          coaps://HOST[:PORT]/PATH?QUERY (DTLS, port 5684),
                          coap+tcp://HOST[:PORT]/PATH?QUERY (TCP, port
                          5683) or coaps+tcp:// (TLS, port 5684)
  --oscore FILE.json      protect the request end to end with OSCORE (RFC
                          8613): the security context in aiocoap's
                          settings.json form (secret_hex, salt_hex,
                          sender-id_hex, recipient-id_hex …); also through
                          --proxy, which cannot read it
  --oscore-state FILE     where the context's sequence number is kept
                          (default FILE.json.seq beside the context)
  --psk-identity ID       for coaps:// (DTLS 1.2 with a pre-shared key,
                          TLS_PSK_WITH_AES_128_CCM_8): the identity
  --psk-key-file FILE     the key, as libcoap's -k takes it: the file's bytes
                          (one line end dropped); never on the command line
  --cert FILE --key FILE  for coaps://, this client's certificate and P-256
                          key (PEM), sent when the server asks
  --server-key FILE       for coaps://, the server's raw public key (RFC 7250;
                          PEM, a public or private key) to trust
  --rpk FILE              for coaps://, present the P-256 key in FILE raw
  --ca FILE               for coaps:// and coaps+tcp://, trust the certificates in FILE
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
/** A payload from a file, or standard input for "-", as bytes. */
async function readPayload(file: string): Promise<Uint8Array> {
  try {
    return file === "-"
      ? new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer())
      : await Deno.readFile(file);
  } catch (error) {
    fail(`Cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Short names of content formats, as people type them. */
const FORMAT_ALIASES: Readonly<Record<string, number>> = {
  text: 0,
  "text/plain": 0,
  "link-format": 40,
  xml: 41,
  "octet-stream": 42,
  exi: 47,
  json: 50,
  cbor: 60,
  cwt: 61,
  "senml+json": 110,
  "senml+cbor": 112,
};

/** A content format by number, full name or short name. */
function format(flag: string): number {
  const given = args.shift();
  if (given === undefined) fail(`${flag} needs a content format\n${usage}`);
  if (/^\d+$/.test(given) && Number(given) <= 0xffff) return Number(given);
  const name = given.toLowerCase();
  const alias = FORMAT_ALIASES[name] ??
    FORMAT_ALIASES[name.replace(/^application\//, "")];
  if (alias !== undefined) return alias;
  for (const [number, full] of Object.entries(CONTENT_FORMATS)) {
    if (full === name || full.split(";")[0] === name) return Number(number);
  }
  fail(
    `${flag}: unknown content format ${
      JSON.stringify(given)
    } (a number from 0 to 65535, or ${
      Object.values(CONTENT_FORMATS).map((f) => f.split(";")[0]).join(", ")
    })\n${usage}`,
  );
}

/** Option numbers by name: "if-match", "etag", "no-response" … */
const OPTION_NUMBERS: ReadonlyMap<string, number> = new Map(
  Object.entries(Option).map(([key, number]) => [
    key.toLowerCase().replace(/_/g, "-"),
    number,
  ]),
);
/** Options whose values are unsigned integers (RFC 7252 §3.2). */
const UINT_OPTIONS: ReadonlySet<number> = new Set([
  Option.OBSERVE,
  Option.URI_PORT,
  Option.CONTENT_FORMAT,
  Option.MAX_AGE,
  Option.ACCEPT,
  Option.SIZE1,
  Option.SIZE2,
  Option.HOP_LIMIT,
  Option.NO_RESPONSE,
]);

/** `NAME=VALUE` as an option: 0x… raw, a number for a uint one, else text. */
function namedOption(given: string): CoapOption {
  const at = given.indexOf("=");
  const name = (at < 0 ? given : given.slice(0, at)).trim().toLowerCase();
  const value = at < 0 ? "" : given.slice(at + 1);
  const number = /^\d+$/.test(name) ? Number(name) : OPTION_NUMBERS.get(name);
  if (number === undefined || number > 0xffff) {
    fail(
      `--option: unknown option ${JSON.stringify(name)} (a number, or one of ${
        [...OPTION_NUMBERS.keys()].join(", ")
      })\n${usage}`,
    );
  }
  if (/^0x([0-9a-f]{2})*$/i.test(value)) {
    const bytes = new Uint8Array((value.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = parseInt(value.slice(2 + 2 * i, 4 + 2 * i), 16);
    }
    return { number, value: bytes };
  }
  if (UINT_OPTIONS.has(number) && /^\d+$/.test(value)) {
    return { number, value: uint(Number(value)) };
  }
  return { number, value: utf8(value) };
}

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
    const given = args.shift() ?? fail(`--payload needs a value\n${usage}`);
    payload = given === "-" || given.startsWith("@")
      ? await readPayload(given === "-" ? "-" : given.slice(1))
      : given;
  } else if (arg === "-f" || arg === "--payload-file") {
    payload = await readPayload(
      args.shift() ?? fail(`${arg} needs a file\n${usage}`),
    );
  } else if (arg === "--block-size") blockSize = number(arg);
  else if (arg === "--content-format") contentFormat = format(arg);
  else if (arg === "--accept") accept = format(arg);
  else if (arg === "--timeout") {
    const given = args.shift();
    if (given === undefined || !/^\d+(\.\d+)?$/.test(given) || !(+given > 0)) {
      fail(`--timeout needs a number of seconds above 0\n${usage}`);
    }
    timeout = Number(given);
  } else if (arg === "-v" || arg === "--verbose") verbose = true;
  else if (arg === "-o" || arg === "--output") {
    output = args.shift() || fail(`${arg} needs a file\n${usage}`);
  } else if (arg === "--pretty") pretty = true;
  else if (arg === "-O" || arg === "--option") {
    extraOptions.push(
      namedOption(args.shift() ?? fail(`${arg} needs NAME=VALUE\n${usage}`)),
    );
  } else if (arg === "--observe") observe = true;
  else if (arg === "--reconnect") reconnect = true;
  else if (arg === "--non") nonConfirmable = true;
  else if (arg === "--proxy") {
    proxy = args.shift() ||
      fail(`--proxy needs a URL (coap+ws://HOST:PORT)\n${usage}`);
  } else if (arg === "--ca") {
    caFile = args.shift() || fail(`--ca needs a PEM file\n${usage}`);
  } else if (arg === "--oscore") {
    oscoreFile = args.shift() ||
      fail(`--oscore needs a context file (JSON)\n${usage}`);
  } else if (arg === "--cert") {
    certFile = args.shift() || fail(`--cert needs a PEM file\n${usage}`);
  } else if (arg === "--key") {
    keyFile = args.shift() || fail(`--key needs a PEM file\n${usage}`);
  } else if (arg === "--server-key") {
    serverKeyFile = args.shift() ||
      fail(`--server-key needs a PEM file\n${usage}`);
  } else if (arg === "--rpk") {
    rpkFile = args.shift() || fail(`--rpk needs a PEM file\n${usage}`);
  } else if (arg === "--psk-identity") {
    pskIdentity = args.shift() ??
      fail(`--psk-identity needs an identity\n${usage}`);
  } else if (arg === "--psk-key-file") {
    pskKeyFile = args.shift() ||
      fail(`--psk-key-file needs a file\n${usage}`);
  } else if (arg === "--oscore-state") {
    oscoreState = args.shift() ||
      fail(`--oscore-state needs a file\n${usage}`);
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
const dtls = proxy === undefined && uri.startsWith("coaps://");
const tcp = proxy === undefined && /^coaps?\+tcp:\/\//.test(uri);
if (proxy !== undefined && !/^coaps?\+ws:\/\//.test(proxy)) {
  fail(`--proxy needs a coap+ws:// or coaps+ws:// URL\n${usage}`);
}
if (nonConfirmable && !udp && !dtls) {
  fail(`--non goes with a coap:// or coaps:// URI\n${usage}`);
}
if (
  dtls && (pskIdentity === undefined || pskKeyFile === undefined) &&
  caFile === undefined && serverKeyFile === undefined
) {
  fail(
    `a coaps:// URI needs --psk-identity ID and --psk-key-file FILE, or --ca FILE (the server's certificate's CA), or --server-key FILE (its raw public key)\n${usage}`,
  );
}
if ((pskIdentity === undefined) !== (pskKeyFile === undefined)) {
  fail(`--psk-identity and --psk-key-file go together\n${usage}`);
}
if ((certFile === undefined) !== (keyFile === undefined)) {
  fail(`--cert and --key go together\n${usage}`);
}
if (!dtls && (certFile ?? serverKeyFile ?? rpkFile) !== undefined) {
  fail(
    `--cert, --key, --server-key and --rpk go with a coaps:// URI\n${usage}`,
  );
}
if (!dtls && (pskIdentity !== undefined || pskKeyFile !== undefined)) {
  fail(`--psk-identity and --psk-key-file go with a coaps:// URI\n${usage}`);
}
if ((udp || tcp) && (reconnect || accessToken !== undefined)) {
  fail(`--reconnect and --token go with coap+ws:// URIs\n${usage}`);
}
let target: { path: string; query: string[] };
try {
  if (proxy !== undefined) {
    // Checked here, sent whole as Proxy-Uri.
    if (!/^(coaps?|coaps?\+ws|coaps?\+tcp):\/\/[^/]/.test(uri)) {
      throw new TypeError(
        `Cannot ask the proxy for ${
          JSON.stringify(uri)
        }: expected coap://, coaps://, coap+ws:// or coap+tcp://`,
      );
    }
    target = { path: "/", query: [] };
  } else {
    target = dtls
      ? parseDtlsUri(uri)
      : udp
      ? parseUdpUri(uri)
      : tcp
      ? parseTcpUri(uri)
      : parseCoapUri(uri);
  }
} catch (error) {
  fail((error as Error).message);
}
if (oscoreState !== undefined && oscoreFile === undefined) {
  fail(`--oscore-state goes with --oscore\n${usage}`);
}
let oscore: SecurityContext | undefined;
if (oscoreFile !== undefined) {
  try {
    oscore = await loadSecurityContext(oscoreFile, { statePath: oscoreState });
  } catch (error) {
    fail((error as Error).message);
  }
}
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let client: CoapClient;
try {
  const connectTimeout = timeout === undefined ? undefined : timeout * 1000;
  client = dtls
    ? await connectCoapDtls(uri, {
      log: quiet,
      blockSize,
      oscore,
      udp: { nonConfirmable },
      ...(pskIdentity === undefined
        ? {}
        : { psk: { identity: pskIdentity, key: readKey(pskKeyFile!) } }),
      ...(caFile === undefined ? {} : {
        cas: pemBlocks(Deno.readTextFileSync(caFile), "CERTIFICATE"),
      }),
      ...(serverKeyFile === undefined ? {} : {
        trustedKeys: await loadPublicKeys(
          Deno.readTextFileSync(serverKeyFile),
        ),
      }),
      ...(certFile === undefined ? {} : {
        certificate: await loadCertificate(
          Deno.readTextFileSync(certFile),
          Deno.readTextFileSync(keyFile!),
        ),
      }),
      ...(rpkFile === undefined ? {} : {
        certificate: await loadCertificate(
          "",
          Deno.readTextFileSync(rpkFile),
        ),
        rawPublicKey: true,
      }),
      ...(connectTimeout === undefined
        ? {}
        : { dtls: { handshakeTimeout: connectTimeout } }),
    })
    : tcp
    ? await connectCoapTcp(uri, {
      log: quiet,
      blockSize,
      connectTimeout,
      oscore,
      ...(caFile === undefined
        ? {}
        : { caCerts: [Deno.readTextFileSync(caFile)] }),
    })
    : udp
    ? await connectCoapUdp(uri, {
      log: quiet,
      blockSize,
      oscore,
      udp: { nonConfirmable },
    })
    : await CoapClient.connect(proxy ?? uri, {
      log: quiet,
      blockSize,
      connectTimeout,
      accessToken,
      oscore,
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

// Ctrl-C ends the request the way leaving the loop does: an observation
// is deregistered (over UDP, a GET with Observe 1 that has to go out)
// before the client closes.
const interrupted = new AbortController();
Deno.addSignalListener("SIGINT", () => {
  if (interrupted.signal.aborted) Deno.exit(130);
  interrupted.abort(new DOMException("Interrupted", "AbortError"));
});

let status = 0;
let seen = 0;
const started = performance.now();
let pipe;
try {
  pipe = client.request({
    method,
    path: target.path,
    query: target.query,
    ...(proxy === undefined ? {} : { proxyUri: uri }),
    payload,
    contentFormat,
    accept,
    observe,
    ...(extraOptions.length === 0 ? {} : { options: extraOptions }),
  }, {
    signal: interrupted.signal,
    ...(timeout === undefined ? {} : { timeout: timeout * 1000 }),
  });
} catch (error) {
  client.close();
  fail((error as Error).message);
}
let last: Uint8Array | undefined;
for await (const event of pipe) {
  if (event.kind === "exception") {
    const exception = event.exception as Error;
    if (exception?.name === "AbortError") break;
    console.error(
      exception?.name === "TimeoutError"
        ? `No response from ${uri} within ${timeout} s`
        : String(exception),
    );
    status = 1;
    break;
  }
  if (event.kind !== "response") break;
  const response = event.message;
  if (verbose) console.error(describe(response, performance.now() - started));
  last = response.payload;
  if (response.code.startsWith("2.")) {
    // A success without a body (2.01 Created, 2.04 Changed) says its code.
    console.log(
      response.payload.length > 0 ? show(response) : response.code,
    );
  } else {
    const diagnostic = text(response.payload);
    console.log(response.code + (diagnostic ? ` ${diagnostic}` : ""));
    status = 1;
  }
  if (++seen >= count) break;
}
if (output !== undefined && last !== undefined) {
  try {
    await Deno.writeFile(output, last);
  } catch (error) {
    console.error(`Cannot write ${output}: ${(error as Error).message}`);
    status = 1;
  }
}
if (udp && observe) {
  // Leaving the loop deregistered the observation (a GET with Observe 1);
  // over UDP nothing closes, so give it a moment to reach the server.
  await new Promise((resolve) => setTimeout(resolve, 300));
}
client.close();
Deno.exit(status);

/**
 * A pre-shared key from a file, as libcoap's `-k` takes it: the file's
 * bytes, less one line end. Never from the command line, where other users
 * of the machine could read it.
 */
function readKey(file: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch (error) {
    fail(`Cannot read the key file ${file}: ${(error as Error).message}`);
  }
  return keyFileBytes(bytes) ?? fail(`The key file ${file} is empty`);
}

/** A payload for the terminal: text as it is, the rest rendered. */
function show(response: CoapResponse): string {
  const rendered = renderPayload(response.payload, response.contentFormat);
  if (rendered.kind === "json" && !pretty) return text(response.payload);
  return rendered.text;
}

/** `-v`'s line: code, time, options. */
function describe(response: CoapResponse, ms: number): string {
  const options = describeOptions(response.options)
    .map(([name, value]) => `${name}: ${value}`);
  return `${response.code} after ${
    ms.toFixed(1)
  } ms, ${response.payload.length} bytes${
    options.length === 0 ? "" : `; ${options.join("; ")}`
  }`;
}
