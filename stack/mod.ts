/**
 * CoAP over WebSocket (RFC 8323) on the pipes of `@coap/pipe`: the codec,
 * one connection type for both roles, a browser-compatible client, a server
 * with its flow control and limits, the HTTP side of accepting a `coap`
 * WebSocket, and the resources of the aiocoap test peer. Everything here
 * runs in browsers, Deno and workerd alike; the platform adapters are
 * `@coap/stack/deno` (`Deno.serve`) and `@coap/stack/workerd`
 * (`WebSocketPair`). CoAP over UDP (RFC 7252) is here too, sans-I/O
 * (`CoapUdpEndpoint`); `@coap/stack/udp` puts it on a socket (`node:dgram`,
 * or `Deno.listenDatagram`). Shared resources over Redis (`coap:cluster`) are part
 * of the demo server, not of this package, since they depend on an engine
 * client from npm.
 *
 * @example A client and a server over an in-memory socket pair
 * ```ts
 * import { attachWebSocket, CoapClient, CoapServer, text } from "@coap/stack";
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

// The module's types that the stack's API names, so that its docs can
// show them (and what they name in turn).
export type {
  ExceptionEvent,
  Inspect,
  Inspectable,
  InterestEndEvent,
  IterablePipe,
  Logger,
  PipeEvent,
  ResponderPipe,
  ResponseEvent,
} from "@coap/pipe";
export * from "./message.ts";
export * from "./exchange.ts";
export * from "./connection.ts";
export * from "./websocket.ts";
export * from "./client.ts";
export * from "./server.ts";
export * from "./upgrade.ts";
export * from "./flow.ts";
export * from "./peer_log.ts";
export * from "./udp.ts";
export * from "./tcp.ts";
export * from "./blockwise.ts";
export * from "./context.ts";
export * from "./oscore.ts";
export * from "./ccm.ts";
export * from "./dtls.ts";
export { type DemoHooks, demoResources } from "./resources.ts";
