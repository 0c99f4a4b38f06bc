/**
 * Serves the CoAP explorer page on 127.0.0.1:
 *
 *     deno task coap:explorer [--port N]
 *
 * The task first bundles `explorer.ts` to `dist/explorer/explorer.js`; this
 * serves that, `index.html` and `explorer.css`, with a content security
 * policy that lets the page run only its own script and open WebSockets.
 *
 * @module
 */

/** Where the page's files are. */
export interface ExplorerFiles {
  /** The folder with `index.html` and `explorer.css`. */
  page: URL;
  /** The bundled script. */
  script: URL;
}

const HERE = new URL(".", import.meta.url);

/** The files of this checkout: the page beside this file, the bundle in dist/. */
export const DEFAULT_FILES: ExplorerFiles = {
  page: HERE,
  script: new URL("../../dist/explorer/explorer.js", HERE),
};

const POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  // The browser's own request for /favicon.ico (answered 204).
  "img-src 'self'",
  "connect-src ws: wss:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const HEADERS = {
  "content-security-policy": POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/**
 * A `Deno.serve` handler for the explorer's files.
 *
 * @param files Where the files are.
 * @returns The handler.
 *
 * @example
 * ```ts
 * import { DEFAULT_FILES, explorerHandler } from "./serve.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const handler = explorerHandler(DEFAULT_FILES);
 * const missing = await handler(new Request("http://127.0.0.1/x"));
 * assertEquals(missing.status, 404);
 * assertEquals(
 *   missing.headers.get("content-security-policy")?.startsWith("default-src 'none'"),
 *   true,
 * );
 * await missing.body?.cancel();
 * ```
 */
export function explorerHandler(
  files: ExplorerFiles,
): (request: Request) => Promise<Response> {
  const routes: Record<string, [URL, string]> = {
    "/": [new URL("index.html", files.page), "text/html; charset=utf-8"],
    "/index.html": [
      new URL("index.html", files.page),
      "text/html; charset=utf-8",
    ],
    "/explorer.css": [
      new URL("explorer.css", files.page),
      "text/css; charset=utf-8",
    ],
    "/explorer.js": [files.script, "text/javascript; charset=utf-8"],
  };
  return async (request) => {
    const { pathname } = new URL(request.url);
    if (pathname === "/favicon.ico") {
      return new Response(null, { status: 204, headers: HEADERS });
    }
    const route = routes[pathname];
    if (route === undefined) {
      return new Response("Not found\n", { status: 404, headers: HEADERS });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed\n", {
        status: 405,
        headers: { ...HEADERS, allow: "GET, HEAD" },
      });
    }
    const [file, type] = route;
    let body: Uint8Array;
    try {
      body = await Deno.readFile(file);
    } catch {
      const missing = file === files.script
        ? "The page's script is not bundled: run `deno task coap:explorer`, which bundles it first\n"
        : `Missing ${file.pathname}\n`;
      return new Response(missing, { status: 500, headers: HEADERS });
    }
    return new Response(request.method === "HEAD" ? null : body as BodyInit, {
      headers: { ...HEADERS, "content-type": type },
    });
  };
}

/**
 * The explorer as a CoAP server's own page (`UpgradeOptions.page`): its
 * files, and `/` without a `?server=` sent on to `/?server=` the server's
 * own address (every other parameter kept, `target` among them), which the
 * page fills in and connects to. On the server's own origin the page needs
 * no `allowedOrigins`.
 *
 * @param scheme The server's scheme: `coaps+ws` over TLS.
 * @param files Where the files are.
 * @returns The page handler.
 *
 * @example
 * ```ts
 * import { explorerOnServer } from "./serve.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const page = explorerOnServer("coap+ws");
 * const response = await page(new Request("http://127.0.0.1:8683/"));
 * assertEquals(response.status, 302);
 * assertEquals(
 *   response.headers.get("location"),
 *   "/?server=coap%2Bws%3A%2F%2F127.0.0.1%3A8683",
 * );
 * ```
 */
export function explorerOnServer(
  scheme: "coap+ws" | "coaps+ws",
  files: ExplorerFiles = DEFAULT_FILES,
): (request: Request) => Promise<Response> {
  const serve = explorerHandler(files);
  return (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/" && !url.searchParams.has("server")) {
      // Every other parameter stays: a link's `target` names a device.
      const to = new URL(url);
      to.searchParams.set("server", `${scheme}://${url.host}`);
      return Promise.resolve(
        new Response(null, {
          status: 302,
          headers: { ...HEADERS, location: `${to.pathname}${to.search}` },
        }),
      );
    }
    return serve(request);
  };
}

/**
 * Serves the explorer on 127.0.0.1.
 *
 * @param options The port (0 picks a free one), the files, and what to do
 * once listening.
 * @returns The HTTP server.
 */
export function serveExplorer(
  options: {
    port: number;
    files?: ExplorerFiles;
    onListen?: (port: number) => void;
  },
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({
    port: options.port,
    hostname: "127.0.0.1",
    onListen: ({ port }) => options.onListen?.(port),
  }, explorerHandler(options.files ?? DEFAULT_FILES));
}

if (import.meta.main) {
  const usage = "usage: deno task coap:explorer [--port N]";
  let port = 8000;
  const args = [...Deno.args];
  while (args.length > 0) {
    const arg = args.shift()!;
    const value = arg === "--port" ? args.shift() : undefined;
    if (value === undefined || !/^\d{1,5}$/.test(value) || +value > 65535) {
      console.error(usage);
      Deno.exit(2);
    }
    port = Number(value);
  }
  serveExplorer({
    port,
    onListen: (listening) => {
      console.log(`CoAP explorer on http://127.0.0.1:${listening}/`);
      console.log(
        "Point it at any CoAP-over-WebSocket server (aiocoap's, say). Ours " +
          "serves this page itself, on its own origin, where it needs " +
          "nothing more: `deno task coap:server`, then " +
          "http://127.0.0.1:8683/. To use this page with ours instead, " +
          "let its origin in: `deno task coap:server --origin " +
          `http://127.0.0.1:${listening}\`.`,
      );
    },
  });
}
