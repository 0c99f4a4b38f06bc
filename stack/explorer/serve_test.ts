import { assertEquals } from "@std/assert";
import { explorerHandler, explorerOnServer } from "./serve.ts";

const handler = explorerHandler({
  page: new URL("file:///nonexistent/explorer/"),
  script: new URL("file:///nonexistent/dist/explorer.js"),
});

async function fetchOne(
  path: string,
  method = "GET",
): Promise<[number, string, string | null, string | null]> {
  const response = await handler(
    new Request(`http://127.0.0.1${path}`, { method }),
  );
  return [
    response.status,
    await response.text(),
    response.headers.get("allow"),
    response.headers.get("content-security-policy"),
  ];
}

const POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

Deno.test("explorerHandler() answers unknown paths 404, other methods 405, the icon 204, all under the policy", async () => {
  assertEquals(await fetchOne("/x"), [404, "Not found\n", null, POLICY]);
  assertEquals(await fetchOne("/explorer.ts"), [
    404,
    "Not found\n",
    null,
    POLICY,
  ]);
  assertEquals(await fetchOne("/", "POST"), [
    405,
    "Method not allowed\n",
    "GET, HEAD",
    POLICY,
  ]);
  assertEquals(await fetchOne("/favicon.ico"), [204, "", null, POLICY]);
});

Deno.test("explorerHandler() says how to build the script when its bundle is missing", async () => {
  assertEquals(await fetchOne("/explorer.js"), [
    500,
    "The page's script is not bundled: run `deno task coap:explorer`, which bundles it first\n",
    null,
    POLICY,
  ]);
  const [status, body] = await fetchOne("/");
  assertEquals([status, body], [
    500,
    "Missing /nonexistent/explorer/index.html\n",
  ]);
});

Deno.test("explorerOnServer() sends / on to /?server= the server's own address, keeping every other parameter (a link's target)", async () => {
  const page = explorerOnServer("coap+ws");
  const redirect = async (path: string) => {
    const response = await page(new Request(`http://127.0.0.1:8683${path}`));
    return [response.status, response.headers.get("location")];
  };
  assertEquals(await redirect("/?target=coap://127.0.0.1:5683&x=1"), [
    302,
    "/?target=coap%3A%2F%2F127.0.0.1%3A5683&x=1&server=coap%2Bws%3A%2F%2F127.0.0.1%3A8683",
  ]);
  assertEquals(await redirect("/"), [
    302,
    "/?server=coap%2Bws%3A%2F%2F127.0.0.1%3A8683",
  ]);
});
