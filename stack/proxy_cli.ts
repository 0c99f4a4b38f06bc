// A CoAP forward cross-proxy on 127.0.0.1: coap+ws:// (and coaps+ws://
// with --cert and --key) in front, coap:// (UDP) and coap+ws:// behind:
//   deno task coap:proxy --port 8684 --allow 127.0.0.1:5683 [--allow ...]
// Forwards requests that carry Proxy-Uri (or Proxy-Scheme and Uri-Host) to
// the targets named with --allow, and only to them; serves the CoAP
// explorer at its own / so that a browser page can reach UDP devices.
// Prints "proxy listening on PORT" once it accepts connections.

import { flagReader, keyFileBytes } from "./cli_args.ts";
import { serveCoap } from "./deno_server.ts";
import type { DtlsCertificate, PskCredentials } from "./dtls.ts";
import { loadCertificate, loadPublicKeys } from "./dtls_node.ts";
import { pemBlocks } from "./x509.ts";
import { CoapProxy } from "./proxy.ts";
import { CoapServer } from "./server.ts";

const usage =
  "usage: deno task coap:proxy [--port N] [--hostname H] --allow HOST:PORT [--allow ...] [--origin URL ...] [--allowed-host NAME ...] [--cert FILE --key FILE] [--timeout MS] [--max-reassembly BYTES] [--cache-bytes BYTES] [--psk-identity ID --psk-key-file FILE] [--psk-credentials FILE.json] [--ca FILE] [--dtls-cert FILE --dtls-key FILE] [--server-key FILE] [--no-explorer]";
let port = 8684;
let hostname = "127.0.0.1";
const allow: string[] = [];
const origins: string[] = [];
const allowedHosts: string[] = [];
let certFile: string | undefined, keyFile: string | undefined;
let timeout: number | undefined;
let maxReassemblyBytes: number | undefined;
let cacheBytes: number | undefined;
let explorer = true;
let pskIdentity: string | undefined;
let pskKeyFile: string | undefined;
let pskCredentials: string | undefined;
let caFile: string | undefined;
let dtlsCert: string | undefined;
let dtlsKey: string | undefined;
let serverKey: string | undefined;
const args = [...Deno.args];
if (args.includes("-h") || args.includes("--help")) {
  console.log(`${usage}

A forward cross-proxy (RFC 7252 §5.7, RFC 8323 §7): clients speak CoAP over
WebSocket to it, and it forwards each request that names a target with
Proxy-Uri (coap://HOST:PORT/PATH, coap+tcp://… or coap+ws://…) to that
target, over UDP, TCP or WebSocket. One upstream observation serves every
observer of a resource, and GET responses are cached while fresh (Max-Age).
It forwards only to the targets named with --allow: a forward proxy is an
amplifier and a door into the network behind it.
  --port N                the port (default 8684)
  --hostname H            the address to listen on (default 127.0.0.1)
  --allow HOST:PORT       a device it may forward to over coap:// (UDP);
                          repeatable; none by default: anything else gets
                          4.03 Forbidden
  --allow coap+ws://HOST:PORT
                          a WebSocket server it may forward to
  --allow coap+tcp://HOST:PORT
                          a server over TCP (coaps+tcp:// for TLS)
  --allow coaps://HOST:PORT
                          a device over DTLS with a pre-shared key
  --psk-identity ID --psk-key-file FILE
                          the identity and key (the file's bytes, one line
                          end dropped) for coaps:// targets
  --psk-credentials FILE.json
                          each coaps:// target's own: {"HOST:PORT":
                          {"identity": "…", "key": "…"}, …} ("key_hex" for
                          bytes; "*" for every other target)
  --ca FILE               for coaps:// targets without a key: the CAs (PEM)
                          their certificates must chain to
  --server-key FILE       … or their raw public keys (PEM)
  --dtls-cert FILE --dtls-key FILE
                          the proxy's own certificate, for targets that ask
  --origin URL            also let web pages from URL in (repeatable)
  --allowed-host NAME     also answer requests that name the proxy NAME
  --cert FILE --key FILE  serve TLS (PEM), for coaps+ws:// clients
  --timeout MS            how long a forwarded request may wait for its
                          response (default 15000; 5.04 past it)
  --max-reassembly BYTES  bytes of block-wise responses held at once across
                          every device (default 16777216; 5.03 past it)
  --cache-bytes BYTES     bytes of GET responses cached (RFC 7252 §5.6),
                          served while fresh (Max-Age) and revalidated with
                          their ETag once stale (default 8388608; 0: none)
  --no-explorer           do not serve the CoAP explorer page at /

Example:
  coap-server-notls -A 127.0.0.1 -p 5683 &
  deno task coap:proxy --allow 127.0.0.1:5683
  deno task coap:client --proxy coap+ws://127.0.0.1:8684 coap://127.0.0.1:5683/time`);
  Deno.exit(0);
}
const cli = flagReader(args, usage);
/** Ends with the reason and the usage line, exit code 2. */
function fail(message: string): never {
  return cli.fail(message);
}
const value = cli.value;
while (args.length > 0) {
  const arg = args.shift()!;
  if (arg === "--port") {
    port = Number(
      value(
        arg,
        "a port number from 0 to 65535",
        (v) => /^\d{1,5}$/.test(v) && Number(v) < 65536,
      ),
    );
  } else if (arg === "--hostname") hostname = value(arg, "an address");
  else if (arg === "--allow") allow.push(value(arg, "HOST:PORT"));
  else if (arg === "--origin") origins.push(value(arg, "an origin"));
  else if (arg === "--allowed-host") allowedHosts.push(value(arg, "a host"));
  else if (arg === "--cert") certFile = value(arg, "a PEM file");
  else if (arg === "--key") keyFile = value(arg, "a PEM file");
  else if (arg === "--timeout") {
    timeout = Number(value(arg, "milliseconds", (v) => /^\d+$/.test(v)));
  } else if (arg === "--max-reassembly") {
    maxReassemblyBytes = Number(
      value(arg, "a number of bytes", (v) => /^\d+$/.test(v)),
    );
  } else if (arg === "--cache-bytes") {
    cacheBytes = Number(
      value(arg, "a number of bytes", (v) => /^\d+$/.test(v)),
    );
  } else if (arg === "--no-explorer") explorer = false;
  else if (arg === "--psk-identity") pskIdentity = value(arg, "an identity");
  else if (arg === "--psk-key-file") pskKeyFile = value(arg, "a file");
  else if (arg === "--ca") caFile = value(arg, "a PEM file");
  else if (arg === "--dtls-cert") dtlsCert = value(arg, "a PEM file");
  else if (arg === "--dtls-key") dtlsKey = value(arg, "a PEM file");
  else if (arg === "--server-key") serverKey = value(arg, "a PEM file");
  else if (arg === "--psk-credentials") {
    pskCredentials = value(arg, "a JSON file");
  } else fail(`unknown option ${JSON.stringify(arg)}`);
}
if ((certFile === undefined) !== (keyFile === undefined)) {
  fail("--cert and --key go together");
}
if (allow.length === 0) {
  console.error(
    "warn: no --allow HOST:PORT: every forwarded request gets 4.03 Forbidden",
  );
}

const log = {
  debug() {},
  info: (...data: unknown[]) => console.error("info:", ...data),
  warn: (...data: unknown[]) => console.error("warn:", ...data),
  error: (...data: unknown[]) => console.error("error:", ...data),
};
if ((pskIdentity === undefined) !== (pskKeyFile === undefined)) {
  fail("--psk-identity and --psk-key-file go together");
}
const psk: Record<string, PskCredentials> = {};
try {
  if (pskCredentials !== undefined) {
    Object.assign(psk, readCredentials(Deno.readTextFileSync(pskCredentials)));
  }
  if (pskIdentity !== undefined) {
    const key = keyFileBytes(Deno.readFileSync(pskKeyFile!));
    if (key === undefined) {
      throw new Error(`the key file ${pskKeyFile} is empty`);
    }
    psk["*"] ??= { identity: pskIdentity, key };
  }
} catch (error) {
  fail(`Cannot read the pre-shared keys: ${(error as Error).message}`);
}
if ((dtlsCert === undefined) !== (dtlsKey === undefined)) {
  fail("--dtls-cert and --dtls-key go together");
}
const trust: {
  cas?: Uint8Array[];
  trustedKeys?: Uint8Array[];
  certificate?: DtlsCertificate;
} = {};
try {
  if (caFile !== undefined) {
    trust.cas = pemBlocks(Deno.readTextFileSync(caFile), "CERTIFICATE");
  }
  if (serverKey !== undefined) {
    trust.trustedKeys = await loadPublicKeys(Deno.readTextFileSync(serverKey));
  }
  if (dtlsCert !== undefined) {
    trust.certificate = await loadCertificate(
      Deno.readTextFileSync(dtlsCert),
      Deno.readTextFileSync(dtlsKey!),
    );
  }
} catch (error) {
  fail(
    `Cannot read the DTLS certificates or keys: ${(error as Error).message}`,
  );
}
let proxy: CoapProxy;
try {
  proxy = new CoapProxy({
    dtls: trust,
    allow,
    timeout,
    log,
    maxReassemblyBytes,
    cacheBytes,
    psk,
  });
} catch (error) {
  fail(`--allow: ${(error as Error).message}`);
}
let tls: { cert: string; key: string } | undefined;
try {
  tls = certFile === undefined ? undefined : {
    cert: Deno.readTextFileSync(certFile),
    key: Deno.readTextFileSync(keyFile!),
  };
} catch (error) {
  fail(`Cannot read the certificate or key: ${(error as Error).message}`);
}
const server = new CoapServer({
  "/": {
    GET: () => ({
      payload:
        `A CoAP forward proxy: send requests with Proxy-Uri. It forwards to ${
          allow.length === 0 ? "no target" : allow.join(", ")
        }.`,
    }),
  },
  "/proxy": {
    GET: () => ({
      payload: JSON.stringify({
        allow,
        upstreams: proxy.upstreams,
        upstreamObservations: proxy.upstreamObservations,
        observers: proxy.observers,
        cache: proxy.cache,
      }),
      contentFormat: 50,
    }),
  },
}, { log, proxy: proxy.resource });
try {
  serveCoap(server, {
    port,
    hostname,
    allowedOrigins: origins,
    allowedHosts,
    ...(explorer
      ? {
        page: (await import("./explorer/serve.ts")).explorerOnServer(
          tls === undefined ? "coap+ws" : "coaps+ws",
        ),
      }
      : {}),
    ...(tls ?? {}),
    onListen: (listening) => {
      // The page's URL first: "proxy listening on" ends the start.
      if (explorer) {
        // The page through the proxy, at the first device it may reach.
        const host = hostname.includes(":") ? `[${hostname}]` : hostname;
        const device = allow[0] === undefined
          ? ""
          : `?target=${
            encodeURIComponent(
              allow[0].includes("://") ? allow[0] : `coap://${allow[0]}`,
            )
          }`;
        console.log(
          `the explorer: ${
            tls === undefined ? "http" : "https"
          }://${host}:${listening}/${device}`,
        );
      }
      console.log(`proxy listening on ${listening}`);
    },
  });
} catch (error) {
  const where = `${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${port}`;
  const code = (error as { code?: unknown })?.code;
  console.error(
    error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE"
      ? `Cannot listen on ${where}: the port is already in use`
      : error instanceof Deno.errors.AddrNotAvailable
      ? `Cannot listen on ${where}: no interface of this machine has that address`
      : `Cannot start the proxy on ${where}: ${(error as Error).message}`,
  );
  Deno.exit(2);
}

/**
 * A credentials file: each coaps:// target (`host:port`, or `*`) to its
 * identity and key (`key` as text, or `key_hex`).
 */
function readCredentials(text: string): Record<string, PskCredentials> {
  const json = JSON.parse(text);
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error("the credentials file is not a JSON object");
  }
  const out: Record<string, PskCredentials> = {};
  for (const [target, entry] of Object.entries(json)) {
    const { identity, key, key_hex } = (entry ?? {}) as Record<
      string,
      unknown
    >;
    if (
      typeof identity !== "string" ||
      (typeof key !== "string") === (typeof key_hex !== "string") ||
      (typeof key_hex === "string" && !/^(?:[0-9a-fA-F]{2})+$/.test(key_hex))
    ) {
      throw new Error(
        `the entry for ${
          JSON.stringify(target)
        } needs "identity" and one of "key" or "key_hex" (hex digits)`,
      );
    }
    out[target.toLowerCase()] = {
      identity,
      key: typeof key === "string" ? key : new Uint8Array(
        (key_hex as string).match(/../g)!.map((b) => parseInt(b, 16)),
      ),
    };
  }
  return out;
}
