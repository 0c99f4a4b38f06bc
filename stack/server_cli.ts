// The demo server on 127.0.0.1, with the aiocoap peer's resources:
//   deno task coap:server [--port 8683] [--origin URL ...] [--token TOKEN]
//     [--allowed-host NAME ...] [--limit NAME=VALUE ...]
// Browsers are let in from the server's own origin and each --origin;
// requests must name it by an IP address, a localhost name, the name it
// listens on or an --allowed-host (no DNS rebinding);
// with --token, every client must present it as a bearer token; with
// --cert and --key (PEM files) it serves TLS, for coaps+ws:// clients.
// Prints "listening on PORT" once it accepts connections, "observers: N"
// whenever the number of observations of /counter changes, and how each
// of those observations' drivers ended: 100 such lines a second at most
// (a flood's are left out, then counted, with the last count).

import { serveCoap } from "./deno_server.ts";
import { flagReader } from "./cli_args.ts";
import { serveCoapUdp } from "./udp_node.ts";
import { serveCoapTcp } from "./tcp_node.ts";
import { loadCertificate, loadPublicKeys, serveCoapDtls } from "./dtls_node.ts";
import type { DtlsCertificate } from "./dtls.ts";
import { pemBlocks } from "./x509.ts";
import { bearerToken } from "./upgrade.ts";
import { demoResources, printingHooks } from "./resources.ts";
import { CoapServer, type Resources } from "./server.ts";
import type { SecurityContext } from "./oscore.ts";
import { loadSecurityContext } from "./oscore_file.ts";

/**
 * What this server uses of `cluster/shared.ts`'s `SharedStore`, which is
 * loaded through a specifier in a variable (see below); shared.ts checks
 * that it has all of it.
 */
export interface SharedStoreLike {
  readonly resource: Resources[string];
  readonly observations: number;
  readonly subscriptions: number;
  readonly engine: string;
  readonly up: boolean;
  ready(): Promise<boolean>;
}

const usage =
  "usage: deno task coap:server [--port N] [--hostname H] [--origin URL ...] [--allowed-host NAME ...] [--token TOKEN] [--cert FILE --key FILE] [--limit NAME=VALUE ...] [--engine URL [--engine-ca FILE]] [--udp-port N [--udp-amplification F|off]] [--tcp-port N] [--reuse-port] [--transport ws|deno] [--no-explorer] [--name NAME] [--oscore FILE.json ... [--oscore-state FILE]] [--dtls-port N [--psk-file FILE [--psk-hint HINT]] [--dtls-cert FILE --dtls-key FILE [--dtls-ca FILE] | --dtls-rpk FILE [--dtls-trust-key FILE]]]";
let port = 8683;
const origins: string[] = [];
const allowedHosts: string[] = [];
const limits: Record<string, number> = {};
let token: string | undefined;
let certFile: string | undefined, keyFile: string | undefined;
let engine: string | undefined;
let engineCa: string | undefined;
let hostname = "127.0.0.1";
let reusePort = false;
let udpPort: number | undefined;
let tcpPort: number | undefined;
let amplificationFactor: number | false = 3;
let transport: string | undefined;
let explorer = true;
let name: string | undefined;
const oscoreFiles: string[] = [];
let dtlsPort: number | undefined;
let pskFile: string | undefined;
let pskHint: string | undefined;
let dtlsCert: string | undefined;
let dtlsKey: string | undefined;
let dtlsCa: string | undefined;
let dtlsRpk: string | undefined;
let dtlsTrustKey: string | undefined;
let oscoreState: string | undefined;
const args = [...Deno.args];
if (args.includes("-h") || args.includes("--help")) {
  // Asked for: the usage goes to stdout, and it is not an error.
  console.log(`${usage}

Serves the demo resources over CoAP over WebSocket (RFC 8323) on 127.0.0.1:
/, /counter (observable), /observers, /echo, /fail, /slow?ms=N, /big,
/other/separate, /other/block, /time (observable), /.well-known/core.
  --port N                the port (default 8683)
  --origin URL            also let web pages from URL in (repeatable; the
                          server's own origin is always allowed)
  --allowed-host NAME     also answer requests that name the server NAME
                          (repeatable; .example.com allows every name
                          under it). IP addresses, localhost names and the
                          --hostname are always answered; other names are
                          refused with 403, which keeps DNS-rebinding pages
                          out
  --token TOKEN           require this bearer token of every client
  --cert FILE --key FILE  serve TLS (PEM files), for coaps+ws:// clients
  --limit NAME=VALUE      change a flow limit (repeatable), for example
                          --limit maxObservationsPerConnection=1000
  --engine URL            serve /shared/{name} from Redis at URL: PUT,
                          GET, Observe, DELETE, shared by every server on
                          that engine. URL is redis://HOST[:PORT][/DB],
                          with USER:PASSWORD@ or :PASSWORD@ before the host
                          for an engine that requires one, and rediss://
                          for TLS. The environment variable
                          COAP_ENGINE_URL is read when --engine is not
                          given: a password there is not shown by ps.
                          Log lines and /process name the engine without
                          its credentials
  --engine-ca FILE        trust the CA certificates in FILE (PEM) for a
                          rediss:// engine, instead of the system's
  --hostname H            the address to listen on (default 127.0.0.1)
  --udp-port N            also serve the same resources over CoAP over UDP
                          (RFC 7252, coap://) on port N of --hostname;
                          prints "udp on N" once it listens
  --tcp-port N            also serve them over CoAP over TCP (RFC 8323,
                          coap+tcp://) on port N of --hostname, or over TLS
                          (coaps+tcp://, ALPN coap) with --cert; prints
                          "tcp on N" once it listens
  --udp-amplification F   to a UDP source whose address is not verified,
                          send at most F times the bytes it sent (RFC 9175
                          §2.4; default 3); "off" on a network whose
                          source addresses can be trusted
  --reuse-port            share the port with other servers (Linux; run
                          with --unstable-net), as coap:cluster does
  --no-explorer           do not serve the CoAP explorer page at / (it is
                          served by default, with its server field set to
                          this server, so a browser on the page's own
                          origin connects without --origin)
  --transport ws|deno     the WebSocket server: ws (the default), Node's
                          library over node:http (node:https with --cert),
                          refuses a frame larger than the Max-Message-Size
                          as its header arrives; deno (Deno.upgradeWebSocket)
                          costs less CPU a request but buffers a message of
                          up to 64 MiB before the server sees it
  --oscore FILE.json      serve every resource only under OSCORE (RFC 8613),
                          with the security context in FILE.json (aiocoap's
                          settings.json form); repeatable, one per client
                          (by its Sender ID); a plain request gets 4.01
  --oscore-state FILE     where the context's sequence number is kept
                          (default FILE.json.seq); after a restart the
                          first request of a client is answered 4.01 with
                          Echo (RFC 8613 B.1.2) and served on its retry
  --dtls-port N           also serve them over CoAP over DTLS (coaps://,
                          RFC 7252 §9) on port N, with the pre-shared keys
                          of --psk-file (TLS_PSK_WITH_AES_128_CCM_8)
  --psk-file FILE         the keys: a line identity:key each, the key as
                          libcoap's -k takes it
  --psk-hint HINT         the identity hint to send (libcoap's -h)
  --dtls-cert FILE --dtls-key FILE
                          a certificate (PEM, P-256) and its key, for
                          TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 clients; with
                          neither, --cert and --key serve DTLS too
  --dtls-ca FILE          ask every DTLS client for a certificate, checked
                          against the CAs in FILE (PEM)
  --dtls-rpk FILE         present the P-256 key in FILE raw (RFC 7250)
                          instead of a certificate
  --dtls-trust-key FILE   with --dtls-rpk, ask every client for its raw
                          public key, one of those in FILE (PEM)
  --name NAME             a name for this process in its log lines; also
                          serves /process (its name, pid and shared counts)`);
  Deno.exit(0);
}
/** Whether the environment variable may be read (no prompt, no throw). */
function envAllowed(variable: string): boolean {
  return Deno.permissions.querySync({ name: "env", variable }).state ===
    "granted";
}
const cli = flagReader(args, usage);
/** Ends with the reason and the usage line, exit code 2. */
function fail(message: string): never {
  return cli.fail(message);
}
const value = cli.value;
// scheme://host[:port], nothing more: what a browser sends as Origin.
const ORIGIN =
  /^[a-z][a-z0-9+.-]*:\/\/(\[[0-9a-f:.]+\]|[^\s/:?#@[\]]+)(:\d{1,5})?$/i;
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
  } else if (arg === "--origin") {
    origins.push(
      value(
        arg,
        "an origin, scheme://host[:port] (http://127.0.0.1:8000)",
        (v) => ORIGIN.test(v),
      ),
    );
  } else if (arg === "--allowed-host") {
    allowedHosts.push(value(arg, "a host name"));
  } else if (arg === "--token") token = value(arg, "a token");
  else if (arg === "--cert") certFile = value(arg, "a PEM file");
  else if (arg === "--key") keyFile = value(arg, "a PEM file");
  else if (arg === "--engine") {
    engine = value(arg, "a URL (redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
  } else if (arg === "--engine-ca") engineCa = value(arg, "a PEM file");
  else if (arg === "--hostname") hostname = value(arg, "an address");
  else if (arg === "--name") name = value(arg, "a name");
  else if (arg === "--dtls-port") {
    dtlsPort = Number(value(arg, "a port", (v) => /^\d{1,5}$/.test(v)));
  } else if (arg === "--psk-file") pskFile = value(arg, "a file");
  else if (arg === "--psk-hint") pskHint = value(arg, "a hint");
  else if (arg === "--dtls-cert") dtlsCert = value(arg, "a PEM file");
  else if (arg === "--dtls-key") dtlsKey = value(arg, "a PEM file");
  else if (arg === "--dtls-ca") dtlsCa = value(arg, "a PEM file");
  else if (arg === "--dtls-rpk") dtlsRpk = value(arg, "a PEM file");
  else if (arg === "--dtls-trust-key") {
    dtlsTrustKey = value(arg, "a PEM file");
  } else if (arg === "--oscore") {
    oscoreFiles.push(value(arg, "a context file (JSON)"));
  } else if (arg === "--oscore-state") {
    oscoreState = value(arg, "a file");
  } else if (arg === "--transport") {
    transport = value(arg, "ws or deno", (v) => v === "ws" || v === "deno");
  } else if (arg === "--no-explorer") explorer = false;
  else if (arg === "--reuse-port") reusePort = true;
  else if (arg === "--udp-amplification") {
    const given = value(
      arg,
      'a factor of at least 1, or "off"',
      (v) => v === "off" || (/^\d+(\.\d+)?$/.test(v) && Number(v) >= 1),
    );
    amplificationFactor = given === "off" ? false : Number(given);
  } else if (arg === "--tcp-port") {
    tcpPort = Number(
      value(
        arg,
        "a port number",
        (v) => /^\d{1,5}$/.test(v) && Number(v) < 65536,
      ),
    );
  } else if (arg === "--udp-port") {
    udpPort = Number(
      value(
        arg,
        "a port number",
        (v) => /^\d{1,5}$/.test(v) && Number(v) < 65536,
      ),
    );
  } else if (arg === "--limit") {
    const [name, number] = value(
      arg,
      "NAME=VALUE (maxObservationsPerConnection=1000)",
      (v) => /^\w+=[\d.]+$/.test(v),
    ).split("=");
    limits[name] = Number(number);
  } else fail(`unknown option ${JSON.stringify(arg)}`);
}

const log = {
  debug() {},
  info: (...data: unknown[]) => console.error("info:", ...data),
  warn: (...data: unknown[]) => console.error("warn:", ...data),
  error: (...data: unknown[]) => console.error("error:", ...data),
};
if ((certFile === undefined) !== (keyFile === undefined)) {
  console.error(`--cert and --key go together\n${usage}`);
  Deno.exit(2);
}
let tls: { cert: string; key: string } | undefined;
try {
  tls = certFile === undefined ? undefined : {
    cert: Deno.readTextFileSync(certFile),
    key: Deno.readTextFileSync(keyFile!),
  };
} catch (error) {
  console.error(
    `Cannot read the certificate or key: ${(error as Error).message}`,
  );
  Deno.exit(2);
}
let shared: SharedStoreLike | undefined;
const resources: Record<string, Resources[string]> = {
  ...demoResources(printingHooks(console.log)),
};
if (engine === undefined && envAllowed("COAP_ENGINE_URL")) {
  engine = Deno.env.get("COAP_ENGINE_URL") || undefined;
}
if (engineCa !== undefined && engine === undefined) {
  fail("--engine-ca goes with --engine (or COAP_ENGINE_URL)");
}
if (engine !== undefined) {
  let ca: string | undefined;
  try {
    ca = engineCa === undefined ? undefined : Deno.readTextFileSync(engineCa);
  } catch (error) {
    fail(`--engine-ca: cannot read ${engineCa}: ${(error as Error).message}`);
  }
  try {
    // Loaded only when asked for, and only under stack/ws/deno.json, whose
    // lock file has the engine's client (node-redis): a server without an
    // engine does without it. A specifier in a variable: the workspace's
    // own checks do not follow it into npm.
    const store = "./cluster/shared.ts";
    const { SharedStore } = await import(store) as {
      SharedStore: new (
        url: string,
        options: { log: typeof log; ca?: string },
      ) => SharedStoreLike;
    };
    shared = new SharedStore(engine, { log, ca });
  } catch (error) {
    // A TypeError that does not repeat the URL, which may hold a password.
    fail((error as Error).message);
  }
  resources["/shared/*"] = shared.resource;
}
if (name !== undefined) {
  // Which process a connection landed on, and what it holds: for the
  // cluster's checks and for people.
  resources["/process"] = {
    GET: () => ({
      payload: JSON.stringify({
        name,
        pid: Deno.pid,
        sharedObservations: shared?.observations ?? 0,
        subscriptions: shared?.subscriptions ?? 0,
        ...(shared === undefined ? {} : {
          engine: shared.engine,
          engineUp: shared.up,
        }),
        heapUsed: Deno.memoryUsage().heapUsed,
      }),
      contentFormat: 50,
    }),
  };
}
const dtlsCredentials = [pskFile, dtlsCert, dtlsRpk].filter((f) =>
  f !== undefined
);
if (
  dtlsPort !== undefined && dtlsCert === undefined && dtlsRpk === undefined &&
  certFile !== undefined && keyFile !== undefined
) {
  // The server's certificate serves DTLS too, where it has a P-256 key and
  // no DTLS certificate of its own was given.
  dtlsCert = certFile;
  dtlsKey = keyFile;
}
if (
  dtlsPort !== undefined && pskFile === undefined && dtlsCert === undefined &&
  dtlsRpk === undefined
) {
  fail(
    "--dtls-port needs --psk-file, --dtls-cert and --dtls-key (or --cert and --key), or --dtls-rpk",
  );
}
if (dtlsPort === undefined && dtlsCredentials.length > 0) {
  fail("--psk-file, --dtls-cert and --dtls-rpk go with --dtls-port");
}
if ((dtlsCert === undefined) !== (dtlsKey === undefined)) {
  fail("--dtls-cert and --dtls-key go together");
}
if (dtlsCert !== undefined && dtlsRpk !== undefined) {
  fail("--dtls-cert and --dtls-rpk: one or the other");
}
if (dtlsCa !== undefined && dtlsCert === undefined) {
  fail("--dtls-ca goes with --dtls-cert");
}
if (dtlsTrustKey !== undefined && dtlsRpk === undefined) {
  fail("--dtls-trust-key goes with --dtls-rpk");
}
let dtlsCertificate: DtlsCertificate | undefined;
let dtlsCas: Uint8Array[] | undefined;
let dtlsTrusted: Uint8Array[] | undefined;
try {
  if (dtlsCert !== undefined) {
    dtlsCertificate = await loadCertificate(
      Deno.readTextFileSync(dtlsCert),
      Deno.readTextFileSync(dtlsKey!),
    );
  }
  if (dtlsRpk !== undefined) {
    dtlsCertificate = await loadCertificate("", Deno.readTextFileSync(dtlsRpk));
  }
  if (dtlsCa !== undefined) {
    dtlsCas = pemBlocks(Deno.readTextFileSync(dtlsCa), "CERTIFICATE");
    if (dtlsCas.length === 0) throw new Error(`no CERTIFICATE in ${dtlsCa}`);
  }
  if (dtlsTrustKey !== undefined) {
    dtlsTrusted = await loadPublicKeys(Deno.readTextFileSync(dtlsTrustKey));
  }
} catch (error) {
  fail(`Cannot read the DTLS certificate or keys: ${(error as Error).message}`);
}
if (pskHint !== undefined && dtlsPort === undefined) {
  fail("--psk-hint goes with --dtls-port");
}
let pskKeys: Record<string, Uint8Array> | undefined;
if (pskFile !== undefined) {
  try {
    pskKeys = readPskFile(Deno.readTextFileSync(pskFile));
  } catch (error) {
    fail(`--psk-file ${pskFile}: ${(error as Error).message}`);
  }
}
if (oscoreState !== undefined && oscoreFiles.length !== 1) {
  fail("--oscore-state goes with one --oscore");
}
const oscore: SecurityContext[] = [];
for (const file of oscoreFiles) {
  try {
    oscore.push(await loadSecurityContext(file, { statePath: oscoreState }));
  } catch (error) {
    fail((error as Error).message);
  }
}
let server: CoapServer;
try {
  server = new CoapServer(resources, {
    log,
    limits,
    // As aiocoap's OSCORE server: with contexts, every resource is served
    // only under OSCORE.
    ...(oscore.length === 0 ? {} : { oscore, oscoreRequired: true }),
  });
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  Deno.exit(2);
}
// The engine's connections log their own trouble; the server starts
// either way, and /shared answers 5.03 until the engine is there.
await shared?.ready();
const listening = (port: number) => {
  // The page's URL first: "listening on" is the last line of the start.
  if (explorer) {
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    console.log(
      `the explorer: ${
        tls === undefined ? "http" : "https"
      }://${host}:${port}/`,
    );
  }
  console.log(
    `listening on ${port}${
      name === undefined ? "" : ` (${name}, pid ${Deno.pid})`
    }`,
  );
};
const serving = {
  // The explorer page at /, on the server's own origin.
  ...(explorer
    ? {
      page: (await import("./explorer/serve.ts")).explorerOnServer(
        tls === undefined ? "coap+ws" : "coaps+ws",
      ),
    }
    : {}),
  port,
  hostname,
  reusePort,
  allowedOrigins: origins,
  allowedHosts,
  ...(token === undefined ? {} : { authorize: bearerToken(token) }),
  ...(tls ?? {}),
};
// UDP and TCP first: a port in use there is said before anything listens.
if (udpPort !== undefined) {
  try {
    const udp = await serveCoapUdp(server, {
      hostname,
      port: udpPort,
      amplificationFactor,
    });
    console.log(`udp on ${udp.port}`);
  } catch (error) {
    console.error(startError(error, true));
    Deno.exit(2);
  }
}

if (dtlsPort !== undefined) {
  try {
    const serving = await serveCoapDtls(server, {
      hostname,
      port: dtlsPort,
      psk: pskKeys,
      pskHint,
      certificate: dtlsCertificate,
      rawPublicKey: dtlsRpk !== undefined,
      cas: dtlsCas,
      trustedKeys: dtlsTrusted,
      requireClientCertificate: dtlsCas !== undefined ||
        dtlsTrusted !== undefined,
    });
    console.log(`dtls on ${serving.port}`);
  } catch (error) {
    console.error(startError(error, "DTLS"));
    Deno.exit(2);
  }
}

if (tcpPort !== undefined) {
  try {
    const tcp = await serveCoapTcp(server, { hostname, port: tcpPort, tls });
    console.log(`tcp on ${tcp.port}`);
  } catch (error) {
    console.error(startError(error, "TCP"));
    Deno.exit(2);
  }
}

transport ??= "ws";
try {
  if (transport === "deno") {
    serveCoap(server, { ...serving, onListen: listening });
  } else {
    if (tls !== undefined) {
      // node:https reads the certificate and key only at a client's
      // handshake: a TLS listener of Deno's, opened and closed on a port of
      // its own, says at once whether they are PEM and belong together.
      Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...tls }).close();
    }
    // Loaded only when used, and only under stack/ws/deno.json, whose lock
    // file has ws (coap:server runs with it): ws reads two environment
    // variables as it loads, which --transport deno, --help and a usage
    // error do without. A specifier in a variable: the workspace's own
    // checks do not follow it into npm.
    const adapter = "./ws/ws_server.ts";
    const { serveCoapWs } = await import(adapter) as {
      serveCoapWs(
        coap: CoapServer,
        options: typeof serving & { tls?: { cert: string; key: string } },
      ): Promise<{ port: number }>;
    };
    listening((await serveCoapWs(server, { ...serving, tls })).port);
  }
} catch (error) {
  // One line naming the cause, not a stack: the start failed.
  console.error(startError(error));
  Deno.exit(2);
}
/**
 * The keys of a PSK file: a line `identity:key` each (the key is what
 * follows the first colon, as bytes of its text); blank lines and lines
 * starting with # are skipped.
 */
function readPskFile(text: string): Record<string, Uint8Array> {
  const keys: Record<string, Uint8Array> = {};
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon <= 0 || colon === line.length - 1) {
      throw new Error(`line ${i + 1} is not identity:key`);
    }
    keys[line.slice(0, colon)] = new TextEncoder().encode(
      line.slice(colon + 1),
    );
  }
  if (Object.keys(keys).length === 0) throw new Error("it holds no key");
  return keys;
}

/** Why serving could not start, in one line. */
function startError(error: unknown, side?: true | "TCP" | "DTLS"): string {
  const where = `${side === true ? "UDP " : side ? `${side} ` : ""}${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${
    side === true
      ? udpPort
      : side === "TCP"
      ? tcpPort
      : side === "DTLS"
      ? dtlsPort
      : port
  }`;
  const message = String((error as Error)?.message ?? error);
  // Deno's own errors, and node:net's codes for the ws transport.
  const code = (error as { code?: unknown })?.code;
  if (error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
    return `Cannot listen on ${where}: the port is already in use`;
  }
  if (
    error instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL"
  ) {
    return `Cannot listen on ${where}: no interface of this machine has that address`;
  }
  if (error instanceof Deno.errors.PermissionDenied || code === "EACCES") {
    return `Cannot listen on ${where}: permission denied (${message})`;
  }
  if (error instanceof Deno.errors.NotCapable) {
    return `Cannot listen on ${where}: Deno was not given --allow-net for it (${message})`;
  }
  if (/KeyMismatch|not be consistent/.test(message)) {
    return `Cannot serve TLS: the key does not match the certificate (--cert ${certFile}, --key ${keyFile})`;
  }
  if (tls !== undefined && error instanceof Deno.errors.InvalidData) {
    return `Cannot serve TLS: ${message} (--cert ${certFile}, --key ${keyFile} must be PEM)`;
  }
  if (/lookup address/.test(message)) {
    return `Cannot listen on ${where}: ${message}`;
  }
  return `Cannot start the server on ${where}: ${message}`;
}
