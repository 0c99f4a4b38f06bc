// The CoAP explorer page, used by a person's clicks in headless Chromium
// (driven by playwright-core from npm, a test-only dependency) against the
// aiocoap peer (../shared/peers or COAP_PEERS):
//
//   deno task test:explorer
//
// Needs Debian's chromium (or CHROMIUM=/path) and python3-websockets; it
// installs nothing and names what is missing. It bundles the page's script
// as `deno task coap:explorer` does, serves the page, and saves a screenshot
// of each state under dist/explorer/screenshots/.

import { assertEquals, assertMatch } from "@std/assert";
// deno-lint-ignore no-import-prefix -- test-only browser driver, pinned here on purpose
import { chromium, type Page } from "npm:playwright-core@1.65.1";
import { chromiumArgs } from "../../../testing/chromium.ts";
import { serveCoap } from "../deno_server.ts";
import { serveExplorer } from "../explorer/serve.ts";
import { demoResources } from "../resources.ts";
import { type Running, startPeer } from "./peers.ts";

const root = new URL("../../../", import.meta.url);
const shots = new URL("dist/explorer/screenshots/", root);
const CHROMIUM = Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

/** Bundles the page's script; returns its size, raw and gzipped. */
async function bundlePage(): Promise<[number, number]> {
  const out = new URL("dist/explorer/explorer.js", root);
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      new URL("examples/coap_ws/explorer/explorer.ts", root).pathname,
      "-o",
      out.pathname,
    ],
  }).output();
  if (!built.success) throw new Error(new TextDecoder().decode(built.stderr));
  const bytes = await Deno.readFile(out);
  const gzipped = await new Response(
    new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")),
  ).arrayBuffer();
  return [bytes.length, gzipped.byteLength];
}

/**
 * Waits until the page's `predicate` (an expression) holds, naming `what` on
 * a timeout. It polls through the DevTools protocol: Playwright's own
 * waiting evaluates strings inside the page, which the page's content
 * security policy (no eval) rightly refuses.
 */
async function until(
  page: Page,
  what: string,
  predicate: string,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await page.evaluate(predicate))) {
    if (Date.now() > deadline) {
      const state = await page.locator("#state").textContent();
      throw new Error(
        `The page did not show ${what} within ${ms} ms (state: ${state})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({
    path: new URL(name, shots).pathname,
    fullPage: true,
  });
  console.log(`  screenshot dist/explorer/screenshots/${name}`);
}

function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: chromiumArgs("", "").filter((a) =>
      a.startsWith("--") && a !== "--headless" &&
      !a.startsWith("--user-data-dir")
    ),
  });
}

const text = async (page: Page, selector: string) =>
  (await page.locator(selector).first().textContent())?.trim() ?? "";

Deno.test({
  name:
    "CoAP explorer in headless Chromium: discover, GET, observe, stop, errors, a dropped connection",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(
        `chromium is missing (${CHROMIUM}): apt-get install chromium, or set CHROMIUM`,
      );
    }
    const [size, gzipped] = await bundlePage();
    console.log(
      `  page script: ${size} bytes minified, ${gzipped} bytes gzipped`,
    );
    await Deno.mkdir(shots, { recursive: true });
    let peer: Running | undefined = await startPeer();
    const http = serveExplorer({ port: 0 });
    const browser = await launch();
    const problems: string[] = [];
    try {
      const page = await browser.newPage({
        viewport: { width: 1200, height: 860 },
      });
      page.on("pageerror", (error) => problems.push(`page error: ${error}`));
      page.on("console", (message) => {
        if (message.type() === "error" || message.type() === "warning") {
          problems.push(`console ${message.type()}: ${message.text()}`);
        }
      });
      const server = `coap+ws://127.0.0.1:${peer.port}`;
      await page.goto(`http://127.0.0.1:${http.addr.port}/`);

      // A malformed URL is refused at once, in words.
      await page.fill("#server", "http://127.0.0.1:1/");
      await page.click("#connect");
      await until(
        page,
        "the URL error",
        "document.querySelector('#state').dataset.state === 'error'",
      );
      assertEquals(
        await text(page, "#state"),
        'Cannot connect to "http://127.0.0.1:1/": the scheme must be coap+ws:// or coaps+ws:// with a host',
      );
      await shot(page, "1-malformed-url.png");

      // Connect: the peer's CSM values, and its resources listed.
      await page.fill("#server", server);
      await page.click("#connect");
      await until(
        page,
        "the connection",
        "document.querySelector('#state').dataset.state === 'connected'",
      );
      assertEquals(
        await text(page, "#state"),
        `Connected to ${server}. The server's CSM: Max-Message-Size 1048576 bytes, block-wise transfer with BERT supported.`,
      );
      // Disconnect releases the connection; Connect opens a new one.
      await page.click("#disconnect");
      await until(
        page,
        "the released connection",
        "document.querySelector('#state').dataset.state === 'closed'",
      );
      assertEquals(
        await text(page, "#state"),
        "Connection released by this side",
      );
      await page.click("#connect");
      await until(
        page,
        "the second connection",
        "document.querySelector('#state').dataset.state === 'connected'",
      );
      await until(
        page,
        "the resource list",
        "document.querySelectorAll('#resource-list li').length > 0",
      );
      const listed = await page.$$eval(
        "#resource-list li",
        (items) =>
          items.map((li) =>
            [
              li.getAttribute("data-path"),
              [...li.querySelectorAll(".badge")].map((b) => b.textContent),
            ] as const
          ),
      );
      assertEquals(listed, [
        ["/.well-known/core", ["ct: 40 (application/link-format)"]],
        ["/", []],
        ["/time", ["observable"]],
        ["/other/block", []],
        ["/other/separate", ["title: A large resource"]],
        ["/whoami", []],
        ["/counter", ["observable"]],
        ["/observers", []],
        ["/echo", []],
        ["/fail", []],
        ["/slow", []],
        ["/big", []],
        [null, ["elsewhere", "rel: impl-info"]],
      ]);
      assertEquals(
        await text(page, "#discovery"),
        "12 resources, 2 observable.",
      );
      await shot(page, "2-connected-resources.png");

      // GET / by clicking it in the list.
      await page.click('#resource-list li[data-path="/"] button.target');
      await until(
        page,
        "the response to GET /",
        "document.querySelector('#response-code').textContent === '2.05 Content'",
      );
      assertEquals(
        await text(page, "#response-payload"),
        "Welcome to the demo server",
      );
      assertMatch(
        await text(page, "#response-time"),
        /^GET \/ took \d+\.\d ms$/,
      );
      assertEquals(
        await page.$$eval(
          "#response-options tr",
          (rows) => rows.map((r) => r.textContent),
        ),
        ["Content-Format0 (text/plain; charset=utf-8)"],
      );
      await shot(page, "3-get-root.png");

      // Observe /counter: notifications arrive and the chart is drawn.
      await page.click(
        '#resource-list li[data-path="/counter"] button.observe',
      );
      await peer.waitFor(/^observers: 1$/);
      await until(
        page,
        "five notifications",
        "Number(document.querySelector('.observation')?.dataset.count) >= 5",
      );
      await until(
        page,
        "the chart",
        "(document.querySelector('.observation polyline')?.getAttribute('points') ?? '').split(' ').length >= 5",
      );
      assertEquals(await text(page, ".observation .status"), "observing");
      const first = await page.$$eval(
        ".observation .notifications li",
        (items) =>
          items.map((li) =>
            [...li.children].map((part) => part.textContent).join("|")
          ),
      );
      for (const line of first) {
        assertMatch(line, /^\d\d:\d\d:\d\d\.\d\d\d\|#\d+\|2\.05\|\d+$/);
      }
      // Ping through the observation's pipe: its poke, and the Pong's time.
      await page.click("#ping");
      await until(
        page,
        "the round-trip time",
        "/^Pong after [0-9.]+ ms, poking 1 open observation$/.test(document.querySelector('#rtt').textContent)",
      );
      await shot(page, "4-observing-counter.png");

      // Stop: the loop is left, and the peer forgets the observer.
      await page.click(".observation button.stop");
      await until(
        page,
        "the stopped observation",
        "document.querySelector('.observation')?.dataset.state === 'stopped'",
      );
      assertEquals(
        await text(page, ".observation .status"),
        "stopped: deregistered at the server",
      );
      await peer.waitFor(/^observers: 0$/, 5000);
      await page.click(
        '#resource-list li[data-path="/observers"] button.target',
      );
      await until(
        page,
        "GET /observers",
        "document.querySelector('#response-code').textContent === '2.05 Content' && document.querySelector('#response-payload').textContent === '0'",
      );
      assertEquals(
        await text(page, "#response-kind"),
        "Payload: 1 byte, shown as text",
      );
      await page.click("#ping");
      await until(
        page,
        "the connection's ping",
        "/^Pong after [0-9.]+ ms \\(no observation open to poke: a Ping on the connection\\)$/.test(document.querySelector('#rtt').textContent)",
      );
      await shot(page, "5-stopped-observers-0.png");

      // GET /fail: 5.00 shown as an error.
      await page.click('#resource-list li[data-path="/fail"] button.target');
      await until(
        page,
        "the 5.00",
        "document.querySelector('#response-code').textContent === '5.00 Internal Server Error'",
      );
      assertEquals(
        await page.getAttribute("#response-code", "class"),
        "code failed",
      );
      assertEquals(
        await text(page, "#response-error"),
        "The server answered with an error: 5.00 Internal Server Error (the server failed)",
      );
      await shot(page, "6-fail-5.00.png");

      // POST and PUT with a payload and a content format; DELETE.
      await page.fill("#path", "/echo");
      assertEquals(
        await page.$$eval(
          "#resource-list li.selected",
          (items) => items.map((li) => li.getAttribute("data-path")),
        ),
        ["/echo"],
      );
      await page.selectOption("#method", "POST");
      await page.fill("#payload", '{"t":21.5,"tags":["a","b"]}');
      await page.selectOption("#content-format", "50");
      await page.click("#send");
      await until(
        page,
        "the POST's answer",
        "document.querySelector('#response-code').textContent === '2.04 Changed'",
      );
      assertEquals(
        await text(page, "#response-payload"),
        '{\n  "t": 21.5,\n  "tags": [\n    "a",\n    "b"\n  ]\n}',
      );
      assertEquals(
        await text(page, "#response-kind"),
        "Payload: 27 bytes, shown as json",
      );
      await shot(page, "7-post-json.png");
      await page.selectOption("#method", "PUT");
      await page.fill("#payload", "plain words");
      await page.selectOption("#content-format", "0");
      await page.click("#send");
      await until(
        page,
        "the PUT's answer",
        "document.querySelector('#response-payload').textContent === 'plain words'",
      );
      assertEquals(await text(page, "#response-code"), "2.04 Changed");
      await page.selectOption("#method", "DELETE");
      await page.click("#send");
      await until(
        page,
        "the DELETE's answer",
        "document.querySelector('#response-code').textContent === '4.05 Method Not Allowed'",
      );
      assertEquals(
        await text(page, "#response-error"),
        "The server answered with an error: 4.05 Method Not Allowed (the request was refused)",
      );
      // A large resource arrives block-wise and is shown whole.
      await page.click('#resource-list li[data-path="/big"] button.target');
      await until(
        page,
        "/big",
        "document.querySelector('#response-kind').textContent === 'Payload: 4200 bytes, reassembled from its blocks, shown as text'",
      );
      assertEquals(
        (await text(page, "#response-payload")).split("\n").at(-1),
        "line 0139 of a large resource",
      );

      // Several observations at once, each stoppable on its own: stopping
      // /time leaves both of /counter's running.
      await page.click('#resource-list li[data-path="/time"] button.observe');
      await page.click(
        '#resource-list li[data-path="/counter"] button.observe',
      );
      await page.click(
        '#resource-list li[data-path="/counter"] button.observe',
      );
      await until(
        page,
        "three observations",
        "document.querySelectorAll('.observation[data-state=observing]').length === 3",
      );
      await peer.waitFor(/^observers: 2$/);
      await page.click('.observation[data-path="/time"] button.stop');
      await until(
        page,
        "/time stopped",
        "document.querySelector('.observation[data-path=\"/time\"]')?.dataset.state === 'stopped'",
      );
      const counts = () =>
        page.$$eval(
          '.observation[data-path="/counter"][data-state=observing]',
          (cards) => cards.map((c) => Number(c.getAttribute("data-count"))),
        );
      const before = await counts();
      await until(
        page,
        "both /counter observations going on",
        `[...document.querySelectorAll('.observation[data-path="/counter"][data-state=observing]')].map((c) => Number(c.dataset.count)).every((n, i) => n >= ${
          JSON.stringify(before)
        }[i] + 2)`,
      );
      assertEquals(before.length, 2);

      // The peer dies: the page says the connection closed, and each open
      // observation says it ended.
      await peer.stop();
      peer = undefined;
      await until(
        page,
        "the closed connection",
        "document.querySelector('#state').dataset.state === 'closed'",
      );
      assertMatch(await text(page, "#state"), /^Connection closed by the peer/);
      const ended = await page.$$eval(
        ".observation",
        (cards) =>
          cards.map((c) => [
            c.getAttribute("data-path"),
            c.getAttribute("data-state"),
            c.querySelector(".status")?.textContent,
          ]),
      );
      const reason = await text(page, "#state");
      assertEquals(ended, [
        ["/counter", "failed", `ended: ${reason}`],
        ["/counter", "failed", `ended: ${reason}`],
        ["/time", "stopped", "stopped: deregistered at the server"],
        ["/counter", "stopped", "stopped: deregistered at the server"],
      ]);
      assertEquals(
        await page.$$eval(
          "#send, #observe, #ping, #disconnect",
          (buttons) => buttons.map((b) => b.hasAttribute("disabled")),
        ),
        [true, true, true, true],
      );
      assertEquals(
        await page.$$eval(
          "#resource-list button",
          (buttons) => buttons.every((b) => b.hasAttribute("disabled")),
        ),
        true,
      );
      await shot(page, "8-peer-gone.png");
      console.log(`  closed: ${reason}`);

      // Connecting to a server that is not there says so; Remove clears an
      // ended observation's card.
      await page.click("#connect");
      await until(
        page,
        "the failed connect",
        "document.querySelector('#state').dataset.state === 'closed' && document.querySelector('#state').textContent.startsWith('Cannot connect')",
      );
      assertMatch(
        await text(page, "#state"),
        new RegExp(
          `^Cannot connect to ${
            server.replaceAll("+", "\\+")
          }: Connection failed before it opened \\(1006\\)$`,
        ),
      );
      await page.click(".observation button.stop");
      assertEquals(await page.locator(".observation").count(), 3);
      await shot(page, "9-cannot-connect.png");
      // The page logs nothing as an error or warning on the way, but the
      // browser's own note about the socket that died with the peer.
      assertEquals(
        problems.filter((p) => !/WebSocket connection to .* failed/.test(p)),
        [],
      );
    } finally {
      await browser.close();
      await http.shutdown();
      await peer?.stop();
    }
  },
});

Deno.test({
  name:
    "CoAP explorer in headless Chromium against our own server: discover, observe, stop, Disconnect",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const observers: number[] = [];
    // The demo resources, and one whose text is markup: the page must show
    // it as text, never build elements from it.
    const markup = '<img src="x" onerror="document.title=\'pwned\'">';
    const coap = serveCoap(
      {
        ...demoResources({ onObservers: (n) => observers.push(n) }),
        "/markup": {
          GET: () => ({ payload: markup, contentFormat: 0 }),
          link: { title: markup, rt: "<script>" },
        },
      },
      { port: 0 },
    );
    const http = serveExplorer({ port: 0 });
    const browser = await launch();
    try {
      const page = await browser.newPage({
        viewport: { width: 1200, height: 860 },
      });
      const problems: string[] = [];
      page.on("pageerror", (error) => problems.push(`page error: ${error}`));
      page.on("console", (message) => {
        if (message.type() === "error" || message.type() === "warning") {
          problems.push(`console ${message.type()}: ${message.text()}`);
        }
      });
      const server = `coap+ws://127.0.0.1:${coap.http.addr.port}`;
      await page.goto(
        `http://127.0.0.1:${http.addr.port}/?server=${
          encodeURIComponent(server)
        }`,
      );
      assertEquals(await page.inputValue("#server"), server);
      await page.click("#connect");
      await until(
        page,
        "the connection",
        "document.querySelector('#state').dataset.state === 'connected'",
      );
      assertEquals(
        await text(page, "#state"),
        `Connected to ${server}. The server's CSM: Max-Message-Size 1152 bytes, block-wise transfer with BERT not offered.`,
      );
      await until(
        page,
        "the resource list",
        "document.querySelectorAll('#resource-list li').length > 0",
      );
      const listed = await page.$$eval(
        "#resource-list li",
        (items) =>
          items.map((li) =>
            [
              li.getAttribute("data-path"),
              [...li.querySelectorAll(".badge")].map((b) => b.textContent),
            ] as const
          ),
      );
      assertEquals(listed, [
        ["/", []],
        ["/counter", ["observable"]],
        ["/observers", []],
        ["/echo", []],
        ["/fail", []],
        ["/slow", []],
        ["/big", []],
        ["/other/separate", ["title: A large resource"]],
        ["/other/block", []],
        ["/time", ["observable"]],
        ["/markup", [`title: ${markup}`, "rt: <script>"]],
        ["/.well-known/core", ["ct: 40 (application/link-format)"]],
      ]);
      await page.click('#resource-list li[data-path="/markup"] button.target');
      await until(
        page,
        "GET /markup",
        "document.querySelector('#response-code').textContent === '2.05 Content'",
      );
      assertEquals(await text(page, "#response-payload"), markup);
      assertEquals(
        await page.evaluate(
          "[document.querySelectorAll('img, script:not([src])').length, document.title]",
        ),
        [0, "CoAP explorer"],
      );
      await page.click(
        '#resource-list li[data-path="/counter"] button.observe',
      );
      await until(
        page,
        "five notifications",
        "Number(document.querySelector('.observation')?.dataset.count) >= 5",
      );
      await page.click(".observation button.stop");
      await until(
        page,
        "the stopped observation",
        "document.querySelector('.observation')?.dataset.state === 'stopped'",
      );
      await page.click(
        '#resource-list li[data-path="/observers"] button.target',
      );
      await until(
        page,
        "GET /observers answering 0",
        "document.querySelector('#response-code').textContent === '2.05 Content' && document.querySelector('#response-payload').textContent === '0'",
      );
      assertEquals(observers, [1, 0]);
      // Our server's 5.00 carries a diagnostic payload; the page shows it.
      await page.click('#resource-list li[data-path="/fail"] button.target');
      await until(
        page,
        "the 5.00",
        "document.querySelector('#response-code').textContent === '5.00 Internal Server Error'",
      );
      await page.click("#disconnect");
      await until(
        page,
        "the released connection",
        "document.querySelector('#state').dataset.state === 'closed'",
      );
      assertEquals(
        await text(page, "#state"),
        "Connection released by this side",
      );
      await shot(page, "10-our-server.png");
      assertEquals(problems, []);
    } finally {
      await browser.close();
      await http.shutdown();
      await coap.http.shutdown();
    }
  },
});
