/**
 * CoAP over WebSocket (RFC 8323) on the pipes of `@coap/pipe`: the codec,
 * one connection type for both roles, a browser-compatible client, a server
 * with Deno and workerd adapters, and the resources of the aiocoap test
 * peer. Not published with the package: it is the module doing its real
 * job.
 *
 * @example A client and a server over an in-memory socket pair
 * ```ts
 * import { attachWebSocket, CoapClient, CoapServer, text } from "./mod.ts";
 * import { socketPair } from "./testing/socket_pair.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const server = new CoapServer({
 *   "/hello": { GET: (request) => ({ payload: `hi ${request.query[0]}` }) },
 * });
 * const [near, far] = socketPair();
 * server.accept(far);
 * const client = new CoapClient(attachWebSocket(near));
 * await client.connection.ready;
 * const pipe = client.request({ method: "GET", path: "/hello", query: "you" });
 * const got: string[] = [];
 * for await (const event of pipe) {
 *   if (event.kind === "response") got.push(text(event.message.payload));
 * }
 * assertEquals(got, ["hi you"]);
 * client.close();
 * ```
 *
 * @module
 */

export * from "./message.ts";
export * from "./exchange.ts";
export * from "./connection.ts";
export * from "./websocket.ts";
export * from "./client.ts";
export * from "./server.ts";
export * from "./upgrade.ts";
export * from "./workerd_server.ts";
export { type DemoHooks, demoResources } from "./resources.ts";
