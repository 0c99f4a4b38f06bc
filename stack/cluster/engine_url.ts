/**
 * The cluster's engine URL: where the engine is, as whom, and how it is
 * named in logs (never with its credentials). No dependencies, so that
 * `coap:cluster` can read the URL without loading the engine's client.
 *
 * @module
 */

/** Where the engine is, read from its URL. */
export interface EngineAddress {
  /** Whether the connection is TLS (`rediss://`). */
  tls: boolean;
  /** The host name or address (an IPv6 address without brackets). */
  host: string;
  /** The TCP port. */
  port: number;
  /** The ACL user, when the URL names one. */
  username?: string;
  /** The password (`requirepass`, or the ACL user's). */
  password?: string;
  /** The database number (`/N` in the URL). */
  database: number;
}

const USAGE =
  "expected redis://[[user]:password@]host[:port][/db] or rediss://…";

/**
 * Reads an engine URL: `redis://host:port`, with `user:password@` or
 * `:password@` for an engine that requires a password, `/N` for a database
 * other than 0, and `rediss://` for TLS. The host defaults to 127.0.0.1,
 * the port to 6379.
 *
 * A URL that cannot be used is a `TypeError` that does not repeat the URL,
 * since it may hold a password.
 *
 * @param url The engine's URL.
 * @returns Where to connect, and as whom.
 * @throws {TypeError} If it is not such a URL.
 */
export function parseEngineUrl(url: string): EngineAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Cannot use the engine URL: ${USAGE}`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new TypeError(
      `Cannot use the engine URL: its scheme is ${
        JSON.stringify(parsed.protocol.slice(0, 16))
      }; ${USAGE}`,
    );
  }
  if (parsed.search !== "" || parsed.hash !== "") {
    throw new TypeError(
      `Cannot use the engine URL: it has a query or a fragment; ${USAGE}`,
    );
  }
  const path = parsed.pathname.replace(/^\/+/, "");
  if (path !== "" && !/^\d{1,5}$/.test(path)) {
    throw new TypeError(
      `Cannot use the engine URL: the database must be a number, as in /2; ${USAGE}`,
    );
  }
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw new TypeError(
        "Cannot use the engine URL: its user or password is not well percent-encoded",
      );
    }
  };
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  return {
    tls: parsed.protocol === "rediss:",
    host,
    port: parsed.port === "" ? 6379 : Number(parsed.port),
    ...(parsed.username === "" ? {} : { username: decode(parsed.username) }),
    ...(parsed.password === "" ? {} : { password: decode(parsed.password) }),
    database: path === "" ? 0 : Number(path),
  };
}

/**
 * Names the engine for a log line, without its credentials: for example
 * `rediss://10.0.0.5:6380/2 (with a user and password)`.
 *
 * @param address The engine.
 * @returns Its name.
 */
export function describeEngine(address: EngineAddress): string {
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  const credentials = address.username !== undefined
    ? " (with a user and password)"
    : address.password !== undefined
    ? " (with a password)"
    : "";
  return `${address.tls ? "rediss" : "redis"}://${host}:${address.port}${
    address.database === 0 ? "" : `/${address.database}`
  }${credentials}`;
}
