// The CoAP explorer page, used the way a person uses it, in two browser
// engines: headless Chromium driven by playwright-core and headless Firefox
// ESR driven by puppeteer-core over WebDriver BiDi (both from npm, test-only,
// pinned below), against the aiocoap peer (../shared/peers or COAP_PEERS)
// and against our own server:
//
//   deno task test:explorer
//
// Needs Debian's chromium and firefox-esr (or CHROMIUM=/path, FIREFOX=/path)
// and python3-websockets; it installs nothing and names what is missing. It
// bundles the page's script as `deno task coap:explorer` does, serves the
// page, and saves a screenshot of each state under
// dist/explorer/screenshots/<browser>/. It lives in a folder of its own
// because puppeteer-core's types bring the DOM's globals, which clash with
// Deno's when checked in one program with the rest of testing/.

import { assertEquals, assertMatch } from "@std/assert";
// deno-lint-ignore no-import-prefix -- test-only browser driver, pinned here on purpose
import { chromium } from "npm:playwright-core@1.65.1";
// deno-lint-ignore no-import-prefix -- test-only browser driver, pinned here on purpose
import puppeteer from "npm:puppeteer-core@24.43.1";
import { chromiumArgs } from "../../../testing/chromium.ts";
import { serveCoap } from "../../deno_server.ts";
import { explorerOnServer, serveExplorer } from "../../explorer/serve.ts";
import { demoResources } from "../../resources.ts";
import { CoapServer, type Resources } from "../../server.ts";
import { CoapProxy } from "../../proxy.ts";
import {
  freePort,
  PEERS,
  type Running,
  spawn,
  startOscorePeer,
  startPeer,
} from "../peers.ts";
import { holds, relay } from "../udp_relay.ts";

const root = new URL("../../../", import.meta.url);
const BINARIES = {
  chromium: Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium",
  firefox: Deno.env.get("FIREFOX") ?? "/usr/bin/firefox-esr",
};
type Browser = keyof typeof BINARIES;
const VIEWPORT = { width: 1200, height: 860 };
/** The drivers as pinned in the imports above, named in what the test prints. */
const DRIVER_NAMES: Record<Browser, string> = {
  chromium: "playwright-core 1.65.1 over the DevTools protocol",
  firefox: "puppeteer-core 24.43.1 over WebDriver BiDi",
};
/**
 * How long one action (a click, a fill, a navigation) may wait for its
 * element before it fails; the drivers' own default is 30 s.
 */
const ACTION_MS = 10_000;

/** What the scenarios need of a browser page, whichever drives it. */
interface Driver {
  readonly browser: Browser;
  /** The browser's own name and version, as it reports them. */
  readonly version: string;
  /** Errors and warnings the page logged, and uncaught page errors. */
  readonly problems: string[];
  goto(url: string): Promise<void>;
  fill(selector: string, value: string): Promise<void>;
  click(selector: string): Promise<void>;
  select(selector: string, value: string): Promise<void>;
  /** Evaluates an expression in the page (not subject to its policy). */
  evaluate<T>(expression: string): Promise<T>;
  screenshot(path: string): Promise<void>;
  close(): Promise<void>;
}

async function requireBinary(browser: Browser): Promise<string> {
  const binary = BINARIES[browser];
  try {
    await Deno.stat(binary);
  } catch {
    const name = browser === "chromium" ? "CHROMIUM" : "FIREFOX";
    throw new Error(
      `${browser} is missing (${binary}): apt-get install ${
        browser === "chromium" ? "chromium" : "firefox-esr"
      }, or set ${name}`,
    );
  }
  return binary;
}

/** Headless Chromium through playwright-core. */
async function chromiumDriver(): Promise<Driver> {
  const browser = await chromium.launch({
    executablePath: await requireBinary("chromium"),
    args: chromiumArgs("", "").filter((a) =>
      a.startsWith("--") && a !== "--headless" &&
      !a.startsWith("--user-data-dir")
    ),
  });
  const page = await browser.newPage({ viewport: VIEWPORT });
  page.setDefaultTimeout(ACTION_MS);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error}`));
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      problems.push(`console ${message.type()}: ${message.text()}`);
    }
  });
  return explained({
    browser: "chromium",
    version: `Chromium ${browser.version()}`,
    problems,
    goto: async (url) => void await page.goto(url),
    fill: (selector, value) => page.fill(selector, value),
    click: (selector) => page.click(selector),
    select: async (selector, value) =>
      void await page.selectOption(selector, value),
    // Playwright's own waiting evaluates strings inside the page, which
    // the page's content security policy (no eval) rightly refuses;
    // evaluate() goes through the DevTools protocol instead.
    evaluate: (expression) => page.evaluate(expression),
    screenshot: async (path) =>
      void await page.screenshot({ path, fullPage: true }),
    close: () => browser.close(),
  });
}

/** Headless Firefox ESR through puppeteer-core over WebDriver BiDi. */
async function firefoxDriver(): Promise<Driver> {
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: await requireBinary("firefox"),
    headless: true,
    defaultViewport: VIEWPORT,
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(ACTION_MS);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error}`));
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warn") {
      problems.push(`console ${message.type()}: ${message.text()}`);
    }
  });
  const evaluate = <T>(expression: string) =>
    page.evaluate(expression) as Promise<T>;
  return explained({
    browser: "firefox",
    version: (await browser.version()).replace(/^firefox\//, "Firefox "),
    problems,
    goto: async (url) => void await page.goto(url),
    // A locator waits for its element to be enabled with waitForFunction,
    // whose poller compiles the predicate with Function() inside the page.
    // The explorer's policy (script-src 'self', no 'unsafe-eval') blocks
    // that, and Firefox ESR 140 applies it to WebDriver BiDi's scripts too
    // (153 does not): the wait never succeeded and fill timed out after
    // 30 s. Waiting here with plain expressions keeps the page's real
    // policy under test.
    fill: async (selector, value) => {
      await enabled(evaluate, selector);
      await page.locator(selector).setWaitForEnabled(false).fill(value);
    },
    click: (selector) => page.click(selector),
    select: async (selector, value) => void await page.select(selector, value),
    evaluate,
    screenshot: async (path) =>
      void await page.screenshot({
        path: path as `${string}.png`,
        fullPage: true,
      }),
    close: () => browser.close(),
  });
}

/**
 * Waits until `selector` matches a form control that is not disabled,
 * polling with plain expressions (nothing the page's policy refuses).
 */
async function enabled(
  evaluate: <T>(expression: string) => Promise<T>,
  selector: string,
): Promise<void> {
  const query = `document.querySelector(${JSON.stringify(selector)})`;
  const deadline = Date.now() + ACTION_MS;
  while (!(await evaluate<boolean>(`${query}?.disabled === false`))) {
    if (Date.now() > deadline) {
      throw new Error(
        (await evaluate<boolean>(`${query} === null`))
          ? `no element matches ${selector}`
          : `${selector} stayed disabled`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What the page showed: its state line and the focused element. */
async function pageState(driver: Driver): Promise<string> {
  const described = driver.evaluate<string>(`(() => {
    const state = document.querySelector("#state")?.textContent?.trim();
    const focus = document.activeElement;
    const name = focus === null || focus === document.body
      ? "nothing"
      : focus.tagName.toLowerCase() + (focus.id ? "#" + focus.id : "") +
        ("value" in focus ? " holding " + JSON.stringify(focus.value) : "");
    return "state " + JSON.stringify(state ?? "(no #state)") +
      ", focus on " + name + ", at " + location.href;
  })()`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("the page did not answer"), 5_000);
  });
  try {
    return await Promise.race([described, late]);
  } catch (error) {
    return `the page could not be read (${error})`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The driver with every action's failure explained: the error names the
 * action and says what the page showed at that moment, so a timeout tells
 * its own story.
 */
function explained(driver: Driver): Driver {
  const act = <A extends unknown[]>(
    what: (...args: A) => string,
    action: (...args: A) => Promise<void>,
  ) =>
  async (...args: A): Promise<void> => {
    try {
      await action(...args);
    } catch (error) {
      throw new Error(
        `${driver.browser}: ${
          what(...args)
        } failed (${error}); the page showed ${await pageState(
          driver,
        )}`,
        { cause: error },
      );
    }
  };
  return {
    ...driver,
    goto: act((url) => `going to ${url}`, driver.goto),
    fill: act((selector) => `filling ${selector}`, driver.fill),
    click: act((selector) => `clicking ${selector}`, driver.click),
    select: act(
      (selector, value) => `selecting ${value} in ${selector}`,
      driver.select,
    ),
  };
}

/** Bundles the page's script; returns its size, raw and gzipped. */
async function bundlePage(): Promise<[number, number]> {
  const out = new URL("dist/explorer/explorer.js", root);
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      new URL("stack/explorer/explorer.ts", root).pathname,
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

let bundled: Promise<void> | undefined;
/** Bundles once per run, before the first test that needs the page. */
function ensureBundle(): Promise<void> {
  bundled ??= bundlePage().then(([size, gzipped]) =>
    console.log(
      `  page script: ${size} bytes minified, ${gzipped} bytes gzipped`,
    )
  );
  return bundled;
}

/** Waits until the page's `predicate` (an expression) holds. */
async function until(
  driver: Driver,
  what: string,
  predicate: string,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await driver.evaluate<boolean>(predicate))) {
    if (Date.now() > deadline) {
      throw new Error(
        `${driver.browser}: the page did not show ${what} within ${ms} ms; it showed ${await pageState(
          driver,
        )}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The trimmed text of the first element `selector` matches. */
function text(driver: Driver, selector: string): Promise<string> {
  return driver.evaluate(
    `(document.querySelector(${
      JSON.stringify(selector)
    })?.textContent ?? "").trim()`,
  );
}

/** For each element `selector` matches, what `of` (an expression of `e`) is. */
function each<T>(driver: Driver, selector: string, of: string): Promise<T[]> {
  return driver.evaluate(
    `[...document.querySelectorAll(${
      JSON.stringify(selector)
    })].map((e) => ${of})`,
  );
}

/** Each listed resource's path and the badges shown beside it. */
function listing(driver: Driver): Promise<[string | null, string[]][]> {
  return each(
    driver,
    "#resource-list li",
    "[e.getAttribute('data-path'), [...e.querySelectorAll('.badge')].map((b) => b.textContent)]",
  );
}

/** Clicks /observers in the list and waits for its answer, 0. */
async function observersAnswerZero(driver: Driver): Promise<void> {
  await driver.click(item("/observers", "target"));
  await until(
    driver,
    "GET /observers answering 0",
    `${
      code("2.05 Content")
    } && document.querySelector('#response-payload').textContent === '0'`,
  );
}

async function shot(driver: Driver, name: string): Promise<void> {
  const folder = new URL(
    `dist/explorer/screenshots/${driver.browser}/`,
    root,
  );
  await Deno.mkdir(folder, { recursive: true });
  await driver.screenshot(new URL(name, folder).pathname);
  console.log(
    `  screenshot dist/explorer/screenshots/${driver.browser}/${name}`,
  );
}

const state = (value: string) =>
  `document.querySelector('#state').dataset.state === '${value}'`;
/** How the page shows `ct="0"`. */
const TEXT = "ct: 0 (text/plain; charset=utf-8)";
const code = (value: string) =>
  `document.querySelector('#response-code').textContent === '${value}'`;
const item = (path: string, button: "target" | "observe") =>
  `#resource-list li[data-path="${path}"] button.${button}`;

/** The browser's own line about a WebSocket that could not connect. */
const SOCKET_FAILED =
  /WebSocket connection to .* failed|can.t establish a connection to the server at ws:|connection to ws:.* was interrupted/;

/** The walk through the page, against the aiocoap peer. */
async function againstAiocoap(driver: Driver): Promise<void> {
  let peer: Running | undefined = await startPeer();
  const http = serveExplorer({ port: 0 });
  try {
    const server = `coap+ws://127.0.0.1:${peer.port}`;
    await driver.goto(`http://127.0.0.1:${http.addr.port}/`);

    // A malformed URL is refused at once, in words.
    await driver.fill("#server", "http://127.0.0.1:1/");
    await driver.click("#connect");
    await until(driver, "the URL error", state("error"));
    assertEquals(
      await text(driver, "#state"),
      'Cannot connect to "http://127.0.0.1:1/": the scheme must be coap+ws:// or coaps+ws:// with a host',
    );
    await shot(driver, "1-malformed-url.png");

    // Connect: the peer's CSM values.
    await driver.fill("#server", server);
    await driver.click("#connect");
    await until(driver, "the connection", state("connected"));
    assertEquals(
      await text(driver, "#state"),
      `Connected to ${server}. The server's CSM: Max-Message-Size 1048576 bytes; Block-Wise-Transfer offered: blocks, and BERT.`,
    );
    // Disconnect releases the connection; Connect opens a new one.
    await driver.click("#disconnect");
    await until(driver, "the released connection", state("closed"));
    assertEquals(
      await text(driver, "#state"),
      "Connection released by this side",
    );
    await driver.click("#connect");
    await until(driver, "the second connection", state("connected"));

    // The resources of /.well-known/core, with their attributes.
    await until(
      driver,
      "the resource list",
      "document.querySelectorAll('#resource-list li').length > 0",
    );
    assertEquals(
      await listing(driver),
      [
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
      ],
    );
    assertEquals(
      await text(driver, "#discovery"),
      "12 resources, 2 observable.",
    );
    await shot(driver, "2-connected-resources.png");

    // GET / by clicking it in the list.
    await driver.click(item("/", "target"));
    await until(driver, "the response to GET /", code("2.05 Content"));
    assertEquals(
      await text(driver, "#response-payload"),
      "Welcome to the demo server",
    );
    assertMatch(
      await text(driver, "#response-time"),
      /^GET \/ took \d+\.\d ms$/,
    );
    assertEquals(
      await each(driver, "#response-options tr", "e.textContent"),
      ["Content-Format0 (text/plain; charset=utf-8)"],
    );
    await shot(driver, "3-get-root.png");

    // Observe /counter: notifications arrive and the chart is drawn.
    await driver.click(item("/counter", "observe"));
    await peer.waitFor(/^observers: 1$/);
    await until(
      driver,
      "five notifications",
      "Number(document.querySelector('.observation')?.dataset.count) >= 5",
    );
    await until(
      driver,
      "the chart",
      "(document.querySelector('.observation polyline')?.getAttribute('points') ?? '').split(' ').length >= 5",
    );
    assertEquals(await text(driver, ".observation .status"), "observing");
    for (
      const line of await each<string>(
        driver,
        ".observation .notifications li",
        "[...e.children].map((part) => part.textContent).join('|')",
      )
    ) {
      assertMatch(line, /^\d\d:\d\d:\d\d\.\d\d\d\|#\d+\|2\.05\|\d+$/);
    }
    // Ping through the observation's pipe: its poke, and the Pong's time.
    await driver.click("#ping");
    await until(
      driver,
      "the round-trip time",
      "/^Pong after [0-9.]+ ms, poking 1 open observation$/.test(document.querySelector('#rtt').textContent)",
    );
    await shot(driver, "4-observing-counter.png");

    // Stop: the loop is left, and the peer forgets the observer.
    await driver.click(".observation button.stop");
    await until(
      driver,
      "the stopped observation",
      "document.querySelector('.observation')?.dataset.state === 'stopped'",
    );
    assertEquals(
      await text(driver, ".observation .status"),
      "stopped: deregistered at the server",
    );
    await peer.waitFor(/^observers: 0$/, 5000);
    await observersAnswerZero(driver);
    assertEquals(
      await text(driver, "#response-kind"),
      "Payload: 1 byte, shown as text",
    );
    await driver.click("#ping");
    await until(
      driver,
      "the connection's ping",
      "/^Pong after [0-9.]+ ms \\(no observation open to poke: a Ping on the connection\\)$/.test(document.querySelector('#rtt').textContent)",
    );
    await shot(driver, "5-stopped-observers-0.png");

    // GET /fail: 5.00 shown as an error.
    await driver.click(item("/fail", "target"));
    await until(driver, "the 5.00", code("5.00 Internal Server Error"));
    assertEquals(
      await driver.evaluate(
        "document.querySelector('#response-code').className",
      ),
      "code failed",
    );
    assertEquals(
      await text(driver, "#response-error"),
      "The server answered with an error: 5.00 Internal Server Error (the server failed)",
    );
    await shot(driver, "6-fail-5.00.png");

    // POST and PUT with a payload and a content format; DELETE. Typing a
    // path marks the listed resource.
    await driver.fill("#path", "/echo");
    assertEquals(
      await each(driver, "#resource-list li.selected", "e.dataset.path"),
      ["/echo"],
    );
    await driver.select("#method", "POST");
    await driver.fill("#payload", '{"t":21.5,"tags":["a","b"]}');
    await driver.select("#content-format", "50");
    await driver.click("#send");
    await until(driver, "the POST's answer", code("2.04 Changed"));
    assertEquals(
      await text(driver, "#response-payload"),
      '{\n  "t": 21.5,\n  "tags": [\n    "a",\n    "b"\n  ]\n}',
    );
    assertEquals(
      await text(driver, "#response-kind"),
      "Payload: 27 bytes, shown as json",
    );
    await shot(driver, "7-post-json.png");
    await driver.select("#method", "PUT");
    await driver.fill("#payload", "plain words");
    await driver.select("#content-format", "0");
    await driver.click("#send");
    await until(
      driver,
      "the PUT's answer",
      "document.querySelector('#response-payload').textContent === 'plain words'",
    );
    assertEquals(await text(driver, "#response-code"), "2.04 Changed");
    await driver.select("#method", "DELETE");
    await driver.click("#send");
    await until(
      driver,
      "the DELETE's answer",
      code("4.05 Method Not Allowed"),
    );
    assertEquals(
      await text(driver, "#response-error"),
      "The server answered with an error: 4.05 Method Not Allowed (the request was refused)",
    );
    // A large resource arrives block-wise and is shown whole.
    await driver.click(item("/big", "target"));
    await until(
      driver,
      "/big",
      "document.querySelector('#response-kind').textContent === 'Payload: 4200 bytes, reassembled from its blocks, shown as text'",
    );
    assertEquals(
      (await text(driver, "#response-payload")).split("\n").at(-1),
      "line 0139 of a large resource",
    );

    // Several observations at once, each stoppable on its own: stopping
    // /time leaves both of /counter's running.
    await driver.click(item("/time", "observe"));
    await driver.click(item("/counter", "observe"));
    await driver.click(item("/counter", "observe"));
    await until(
      driver,
      "three observations",
      "document.querySelectorAll('.observation[data-state=observing]').length === 3",
    );
    await peer.waitFor(/^observers: 2$/);
    await driver.click('.observation[data-path="/time"] button.stop');
    await until(
      driver,
      "/time stopped",
      "document.querySelector('.observation[data-path=\"/time\"]')?.dataset.state === 'stopped'",
    );
    const observing =
      '.observation[data-path="/counter"][data-state=observing]';
    const before = await each<number>(
      driver,
      observing,
      "Number(e.dataset.count)",
    );
    assertEquals(before.length, 2);
    await until(
      driver,
      "both /counter observations going on",
      `[...document.querySelectorAll('${observing}')].map((c) => Number(c.dataset.count)).every((n, i) => n >= ${
        JSON.stringify(before)
      }[i] + 2)`,
    );

    // The peer dies: the page says the connection closed, and each open
    // observation says it ended.
    await peer.stop();
    peer = undefined;
    await until(driver, "the closed connection", state("closed"));
    const reason = await text(driver, "#state");
    assertMatch(reason, /^Connection closed by the peer/);
    assertEquals(
      await each(
        driver,
        ".observation",
        "[e.dataset.path, e.dataset.state, e.querySelector('.status')?.textContent]",
      ),
      [
        ["/counter", "failed", `ended: ${reason}`],
        ["/counter", "failed", `ended: ${reason}`],
        ["/time", "stopped", "stopped: deregistered at the server"],
        ["/counter", "stopped", "stopped: deregistered at the server"],
      ],
    );
    assertEquals(
      await each(driver, "#send, #observe, #ping, #disconnect", "e.disabled"),
      [true, true, true, true],
    );
    assertEquals(
      (await each(driver, "#resource-list button", "e.disabled")).every(
        Boolean,
      ),
      true,
    );
    await shot(driver, "8-peer-gone.png");
    console.log(`  ${driver.browser}: ${reason}`);

    // Connecting to a server that is not there says so; Remove clears an
    // ended observation's card.
    await driver.click("#connect");
    await until(
      driver,
      "the failed connect",
      `${
        state("closed")
      } && document.querySelector('#state').textContent.startsWith('Cannot connect')`,
    );
    assertMatch(
      await text(driver, "#state"),
      new RegExp(
        `^Cannot connect to ${
          server.replaceAll("+", "\\+")
        }: Connection failed before it opened \\(\\d+\\)\\. Nothing may be listening there, or the server refused this page: a CoAP server checks a page's Origin \\(start ours with --origin http://127\\.0\\.0\\.1:\\d+ to let this page in\\)$`,
      ),
    );
    await driver.click(".observation button.stop");
    assertEquals(
      await driver.evaluate("document.querySelectorAll('.observation').length"),
      3,
    );
    await shot(driver, "9-cannot-connect.png");
    // The page logs no error or warning on the way, but the browser's own
    // line about the socket that could not connect.
    assertEquals(driver.problems.filter((p) => !SOCKET_FAILED.test(p)), []);
  } finally {
    await http.shutdown();
    await peer?.stop();
  }
}

/**
 * Serves `resources` with our server and the page, opens the page with
 * `?server=` naming that server (which fills in the field), connects, runs
 * `walk`, and checks the page logged nothing on the way.
 */
async function connectedTo(
  driver: Driver,
  resources: Resources,
  walk: (server: string) => Promise<void>,
): Promise<void> {
  const http = serveExplorer({ port: 0 });
  // The page comes from another port, so another origin: let it in.
  const coap = serveCoap(resources, {
    port: 0,
    allowedOrigins: [`http://127.0.0.1:${http.addr.port}`],
  });
  try {
    const server = `coap+ws://127.0.0.1:${coap.http.addr.port}`;
    await driver.goto(
      `http://127.0.0.1:${http.addr.port}/?server=${
        encodeURIComponent(server)
      }`,
    );
    assertEquals(
      await driver.evaluate("document.querySelector('#server').value"),
      server,
    );
    // A link that names a server connects by itself.
    await until(driver, "the connection", state("connected"));
    await walk(server);
    assertEquals(driver.problems, []);
  } finally {
    await http.shutdown();
    await coap.http.shutdown();
  }
}

/** A shorter walk against our own server, with markup in its resources. */
async function againstOurServer(driver: Driver): Promise<void> {
  const observers: number[] = [];
  // The demo resources, and one whose text is markup: the page must show it
  // as text, never build elements from it.
  const markup = '<img src="x" onerror="document.title=\'pwned\'">';
  const resources: Resources = {
    ...demoResources({ onObservers: (n) => observers.push(n) }),
    "/markup": {
      GET: () => ({ payload: markup, contentFormat: 0 }),
      link: { title: markup, rt: "<script>" },
    },
  };
  await connectedTo(driver, resources, async (server) => {
    assertEquals(
      await text(driver, "#state"),
      `Connected to ${server}. The server's CSM: Max-Message-Size 1152 bytes; no Block-Wise-Transfer option: blocks, but no BERT.`,
    );
    await until(
      driver,
      "the resource list",
      "document.querySelectorAll('#resource-list li').length > 0",
    );
    assertEquals(
      await listing(driver),
      [
        ["/", [
          "title: General Info",
          TEXT,
          "ct: 40 (application/link-format)",
        ]],
        ["/counter", [
          "observable",
          "title: A counter",
          "rt: count",
          "if: core.s",
          TEXT,
        ]],
        ["/observers", ["title: Observers of /counter", "if: core.s", TEXT]],
        ["/echo", ["title: Echoes what is POSTed or PUT", "if: core.a"]],
        ["/fail", ["title: Always fails (5.00)"]],
        ["/slow", ["title: Answers after ?ms=N milliseconds", TEXT]],
        ["/big", ["title: A large resource", TEXT, "sz: 4200 bytes"]],
        ["/other/separate", ["title: A large resource"]],
        ["/other/block", ["title: A resource to PUT a body to", "if: core.p"]],
        ["/time", [
          "observable",
          "title: Internal Clock",
          "rt: ticks",
          "if: clock",
          TEXT,
        ]],
        ["/markup", [`title: ${markup}`, "rt: <script>"]],
        ["/.well-known/core", ["ct: 40 (application/link-format)"]],
      ],
    );
    // A discovery filter (RFC 6690 §4.1) the server applies.
    await driver.fill("#filter", "rt=tick*");
    await driver.click("#discover");
    await until(
      driver,
      "the filtered list",
      "document.querySelector('#discovery').textContent.endsWith('matching rt=tick*.')",
    );
    assertEquals(await listing(driver), [["/time", [
      "observable",
      "title: Internal Clock",
      "rt: ticks",
      "if: clock",
      TEXT,
    ]]]);
    await driver.fill("#filter", "");
    await driver.click("#discover");
    await until(
      driver,
      "the whole list again",
      "document.querySelectorAll('#resource-list li').length === 12",
    );
    await driver.click(item("/markup", "target"));
    await until(driver, "GET /markup", code("2.05 Content"));
    assertEquals(await text(driver, "#response-payload"), markup);
    assertEquals(
      await driver.evaluate(
        "[document.querySelectorAll('img, script:not([src])').length, document.title]",
      ),
      [0, "CoAP explorer"],
    );
    await driver.click(item("/counter", "observe"));
    await until(
      driver,
      "five notifications",
      "Number(document.querySelector('.observation')?.dataset.count) >= 5",
    );
    await driver.click(".observation button.stop");
    await until(
      driver,
      "the stopped observation",
      "document.querySelector('.observation')?.dataset.state === 'stopped'",
    );
    await observersAnswerZero(driver);
    assertEquals(observers, [1, 0]);
    await driver.click(item("/fail", "target"));
    await until(driver, "the 5.00", code("5.00 Internal Server Error"));
    await driver.click("#disconnect");
    await until(driver, "the released connection", state("closed"));
    assertEquals(
      await text(driver, "#state"),
      "Connection released by this side",
    );
    await shot(driver, "10-our-server.png");
  });
}

/**
 * A server the page must cope with in words: a listing that is not link
 * format, CBOR and bytes, a resource that does not observe, and an
 * observation whose payloads are not numbers.
 */
async function againstUnusualServer(driver: Driver): Promise<void> {
  const resources: Resources = {
    "/.well-known/core": {
      GET: () => ({ payload: '</a>;title="unterminated', contentFormat: 40 }),
    },
    // {"t": 21.5, "on": true}
    "/cbor": {
      GET: () => ({
        payload: new Uint8Array([
          0xa2,
          0x61,
          0x74,
          0xf9,
          0x4d,
          0x60,
          0x62,
          0x6f,
          0x6e,
          0xf5,
        ]),
        contentFormat: 60,
      }),
    },
    "/bytes": {
      GET: () => ({
        payload: new Uint8Array([0, 1, 2, 255]),
        contentFormat: 42,
      }),
    },
    "/plain": {
      GET: () => ({ payload: "no observing here", contentFormat: 0 }),
    },
    "/words": {
      observable: true,
      GET: async (request, pipe, signal) => {
        if (request.observe !== 0) return { payload: "calm" };
        const words = ["calm", "windy", "stormy"];
        let n = 0;
        const next = () =>
          pipe.addResponse({ payload: words[n++ % 3], contentFormat: 0 });
        next();
        const timer = setInterval(next, 50);
        await new Promise((resolve) =>
          signal.addEventListener("abort", resolve, { once: true })
        );
        clearInterval(timer);
      },
    },
  };
  await connectedTo(driver, resources, async () => {
    await until(
      driver,
      "the discovery error",
      "document.querySelector('#discovery').className === 'error'",
    );
    assertEquals(
      await text(driver, "#discovery"),
      "The server's /.well-known/core is not link format: Unterminated quoted string at offset 11",
    );
    assertEquals(
      await driver.evaluate(
        "document.querySelectorAll('#resource-list li').length",
      ),
      0,
    );

    // Paths typed by hand: CBOR as diagnostic notation, bytes as hex.
    await driver.fill("#path", "/cbor");
    await driver.click("#send");
    await until(driver, "GET /cbor", code("2.05 Content"));
    assertEquals(
      [
        await text(driver, "#response-kind"),
        await text(driver, "#response-payload"),
      ],
      ["Payload: 10 bytes, shown as cbor", '{"t": 21.5, "on": true}'],
    );
    await shot(driver, "11-cbor.png");
    await driver.fill("#path", "/bytes");
    await driver.click("#send");
    await until(
      driver,
      "GET /bytes",
      "document.querySelector('#response-kind').textContent === 'Payload: 4 bytes, shown as hex'",
    );
    assertEquals(await text(driver, "#response-payload"), "00 01 02 ff");

    // Observing what does not observe ends the card at once, in words; an
    // observation of words has notifications but no chart.
    await driver.fill("#path", "/plain");
    await driver.click("#observe");
    await driver.fill("#path", "/words");
    await driver.click("#observe");
    await until(
      driver,
      "the /plain card ended",
      "document.querySelector('.observation[data-path=\"/plain\"]')?.dataset.state === 'stopped'",
    );
    assertEquals(
      await text(driver, '.observation[data-path="/plain"] .status'),
      "ended: the server answered 2.05 Content without observing",
    );
    await until(
      driver,
      "three notifications of /words",
      "Number(document.querySelector('.observation[data-path=\"/words\"]')?.dataset.count) >= 3",
    );
    assertEquals(
      await driver.evaluate(
        "[document.querySelector('.observation[data-path=\"/words\"] svg').getAttribute('class'), document.querySelector('.observation[data-path=\"/words\"] .range').textContent]",
      ),
      ["chart empty", ""],
    );
    assertEquals(
      (await each<string>(
        driver,
        '.observation[data-path="/words"] .notifications .value',
        "e.textContent",
      )).slice(-3),
      ["stormy", "windy", "calm"],
    );
    await driver.click('.observation[data-path="/words"] button.stop');
    await until(
      driver,
      "/words stopped",
      "document.querySelector('.observation[data-path=\"/words\"]')?.dataset.state === 'stopped'",
    );
    await shot(driver, "12-unusual-server.png");
  });
}

/**
 * The explorer as our server serves it, on the server's own origin (as
 * `deno task coap:server` does): `/` fills in the server field with the
 * server's own address, and Connect works under the default Origin policy.
 */
async function onItsOwnOrigin(driver: Driver): Promise<void> {
  const coap = serveCoap(demoResources(), {
    port: 0,
    page: explorerOnServer("coap+ws"),
  });
  try {
    const server = `coap+ws://127.0.0.1:${coap.http.addr.port}`;
    // The server's own page, as the documented link names it (with a
    // target kept through the redirect): it connects by itself.
    await driver.goto(`http://127.0.0.1:${coap.http.addr.port}/?target=`);
    assertEquals(
      await driver.evaluate(
        "[document.querySelector('#server').value, new URLSearchParams(location.search).has('target')]",
      ),
      [server, true],
    );
    await until(driver, "the connection", state("connected"));
    await until(
      driver,
      "the resource list",
      "document.querySelectorAll('#resource-list li').length > 0",
    );
    await driver.click(item("/", "target"));
    await until(driver, "GET /", code("2.05 Content"));
    assertEquals(
      await text(driver, "#response-payload"),
      "Welcome to the demo server",
    );
    await shot(driver, "13-served-by-the-server.png");
    await driver.click("#disconnect");
    await until(driver, "the released connection", state("closed"));
    assertEquals(driver.problems, []);
  } finally {
    await coap.http.shutdown();
  }
}

/**
 * The page through the cross-proxy (`coap:proxy` as the server, serving the
 * page on its own origin) to libcoap's coap-server over UDP: the device's
 * resources listed from its /.well-known/core, GET /, and /time observed.
 */
async function throughTheProxy(driver: Driver): Promise<void> {
  const devicePort = freePort();
  const device = spawn(
    Deno.env.get("LIBCOAP_SERVER") ?? "coap-server-notls",
    // -d: resources may be made by PUT.
    ["-A", "127.0.0.1", "-p", String(devicePort), "-d", "10"],
    devicePort,
  );
  const proxy = new CoapProxy({ allow: [`127.0.0.1:${devicePort}`] });
  const coap = serveCoap(
    new CoapServer({}, { proxy: proxy.resource }),
    { port: 0, page: explorerOnServer("coap+ws") },
  );
  try {
    const server = `coap+ws://127.0.0.1:${coap.http.addr.port}`;
    const target = `coap://127.0.0.1:${devicePort}`;
    // The link the README gives: the proxy's own page with a target; the
    // redirect adds the server and keeps the target. The device prints
    // nothing when ready: the page's own discovery is tried again until it
    // lists something.
    await driver.goto(
      `http://127.0.0.1:${coap.http.addr.port}/?target=${
        encodeURIComponent(target)
      }`,
    );
    assertEquals(
      await driver.evaluate("document.querySelector('#server').value"),
      server,
    );
    assertEquals(
      await driver.evaluate("document.querySelector('#target').value"),
      target,
    );
    await until(driver, "the connection", state("connected"));
    // A discovery still under way (a request the device was not up for
    // yet, retransmitted) is waited for, not asked again over.
    for (let i = 0; i < 60; i++) {
      const [listed, asking] = await driver.evaluate<[number, boolean]>(
        "[document.querySelectorAll('#resource-list li').length, document.querySelector('#discovery').textContent.startsWith('Asking')]",
      );
      if (listed > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (!asking) await driver.click("#discover");
    }
    assertEquals(await listing(driver), [
      ["/", ["title: General Info", "ct: 0 (text/plain; charset=utf-8)"]],
      [
        "/time",
        [
          "observable",
          "title: Internal Clock",
          "rt: ticks",
          "if: clock",
          "ct: 0 (text/plain; charset=utf-8)",
        ],
      ],
      ["/async", ["ct: 0 (text/plain; charset=utf-8)"]],
      [
        "/example_data",
        [
          "observable",
          "title: Example Data",
          "ct: 0 (text/plain; charset=utf-8)",
        ],
      ],
    ]);
    await driver.click(item("/", "target"));
    await until(driver, "GET /", code("2.05 Content"));
    assertMatch(
      await text(driver, "#response-payload"),
      /^This is a test server made with libcoap/,
    );
    await driver.click(item("/time", "observe"));
    await until(
      driver,
      "three notifications of /time",
      "Number(document.querySelector('.observation')?.dataset.count) >= 3",
    );
    for (
      const line of await each<string>(
        driver,
        ".observation .notifications li",
        "[...e.children].map((part) => part.textContent).join('|')",
      )
    ) {
      assertMatch(
        line,
        /^\d\d:\d\d:\d\d\.\d\d\d\|#\d+\|2\.05\|\w{3} \d\d \d\d:\d\d:\d\d$/,
      );
    }
    assertEquals(proxy.upstreamObservations, 1);
    await shot(driver, "14-through-the-proxy.png");
    await driver.click(".observation button.stop");
    await until(
      driver,
      "the card to say it stopped",
      "document.querySelector('.observation .status').textContent.startsWith('stopped')",
    );
    for (let i = 0; i < 40 && proxy.upstreamObservations !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assertEquals(
      proxy.upstreamObservations,
      0,
      "the upstream observation ended",
    );
    // A 100,000-byte PUT from the page: up to the proxy in 1024-byte
    // blocks over the WebSocket, on to the device in blocks over UDP; then
    // read back whole the same way.
    assertEquals(
      await driver.evaluate<number>(`(() => {
        const body = Array.from({ length: 100000 }, (_, i) =>
          String.fromCharCode(97 + (i * 7 + (i >> 10)) % 26)).join("");
        globalThis.uploaded = body;
        document.querySelector("#payload").value = body;
        return body.length;
      })()`),
      100_000,
    );
    await driver.fill("#path", "/upload");
    await driver.select("#method", "PUT");
    await driver.click("#send");
    await until(driver, "the 100 KB PUT's answer", code("2.01 Created"));
    await driver.select("#method", "GET");
    await driver.click("#send");
    await until(
      driver,
      "the 100 KB body read back",
      "document.querySelector('#response-payload').textContent === globalThis.uploaded",
    );
    assertEquals(
      await text(driver, "#response-kind"),
      "Payload: 100000 bytes, reassembled from its blocks, shown as text",
    );
    await driver.click("#disconnect");
    await until(driver, "the released connection", state("closed"));
    assertEquals(driver.problems, []);
  } finally {
    proxy.close();
    await coap.http.shutdown();
    await device.stop();
  }
}

/**
 * OSCORE from the page, end to end through coap:proxy to aiocoap's OSCORE
 * server: refused without a context, the context pasted, then discovery,
 * GET, POST and an observation; the context kept across a reload; and
 * what the proxy sent and got (a relay in front of the device) holds none
 * of it.
 */
async function oscoreThroughTheProxy(driver: Driver): Promise<void> {
  const peer = await startOscorePeer();
  const tap = await relay(peer.port);
  const proxy = new CoapProxy({ allow: [`127.0.0.1:${tap.port}`] });
  const coap = serveCoap(
    new CoapServer({}, { proxy: proxy.resource }),
    { port: 0, page: explorerOnServer("coap+ws") },
  );
  try {
    const target = `coap://127.0.0.1:${tap.port}`;
    const page = `http://127.0.0.1:${coap.http.addr.port}/?target=${
      encodeURIComponent(target)
    }`;
    await driver.goto(page);
    await until(driver, "the connection", state("connected"));
    // No context yet: the device answers the plain discovery 4.01.
    await until(
      driver,
      "the refused discovery",
      "document.querySelector('#discovery').textContent.includes('4.01')",
    );
    assertEquals(
      await text(driver, "#discovery"),
      "GET /.well-known/core answered 4.01 Unauthorized: OSCORE required",
    );
    const context = (await Deno.readTextFile(`${PEERS}/oscore-client.json`))
      .trim();
    // What crossed in the clear so far: the plain discovery and its 4.01.
    const [plainUp, plainDown] = [tap.up.length, tap.down.length];
    await driver.evaluate("document.querySelector('#oscore').open = true");
    await driver.fill("#oscore-context", context);
    await driver.click("#oscore-use");
    await until(
      driver,
      "the context in use",
      "document.querySelector('#oscore-state').dataset.state === 'on'",
    );
    assertEquals(
      await text(driver, "#oscore-state"),
      "on: Sender ID (empty), Recipient ID 01; requests are protected end to end (from sequence number 0)",
    );
    await driver.click("#discover");
    await until(
      driver,
      "the protected listing",
      "document.querySelectorAll('#resource-list li').length > 0",
    );
    const paths = (await listing(driver)).map(([path]) => path);
    for (const path of ["/", "/echo", "/counter", "/big"]) {
      assertEquals(paths.includes(path), true, `${path} in ${paths}`);
    }
    await driver.click(item("/", "target"));
    await until(driver, "GET /", code("2.05 Content"));
    assertEquals(
      await text(driver, "#response-payload"),
      "Welcome to the OSCORE demo server",
    );
    await driver.fill("#path", "/echo");
    await driver.select("#method", "POST");
    await driver.fill("#payload", "open the valve");
    await driver.click("#send");
    await until(driver, "the POST's answer", code("2.04 Changed"));
    assertEquals(await text(driver, "#response-payload"), "open the valve");
    await driver.select("#method", "GET");
    await driver.click(item("/counter", "observe"));
    await until(
      driver,
      "three protected notifications of /counter",
      "Number(document.querySelector('.observation')?.dataset.count) >= 3",
    );
    await shot(driver, "15-oscore-through-the-proxy.png");
    await driver.click(".observation button.stop");
    await until(
      driver,
      "the card to say it stopped",
      "document.querySelector('.observation .status').textContent.startsWith('stopped')",
    );
    // Kept in the browser: after a reload the context is used again, its
    // sequence number on from the step reserved in localStorage (64).
    await driver.goto(page);
    await until(driver, "the connection again", state("connected"));
    await until(
      driver,
      "the kept context",
      "document.querySelector('#oscore-state').dataset.state === 'on'",
    );
    assertMatch(
      await text(driver, "#oscore-state"),
      /^on: Sender ID \(empty\), Recipient ID 01; requests are protected end to end \(from sequence number 64\)$/,
    );
    await until(
      driver,
      "the listing after the reload",
      "document.querySelectorAll('#resource-list li').length > 0",
    );
    await driver.click(item("/", "target"));
    await until(driver, "GET / after the reload", code("2.05 Content"));
    // The proxy's side once the context was in use: outer POST and FETCH
    // and ciphertext; no path, no payload, no answer.
    const up = tap.up.slice(plainUp);
    const down = tap.down.slice(plainDown);
    for (
      const secret of [
        "Welcome",
        "open the valve",
        "echo",
        "counter",
        "well-known",
        "</",
      ]
    ) {
      assertEquals(holds(up, secret) || holds(down, secret), false, secret);
    }
    assertEquals(driver.problems, []);
  } finally {
    proxy.close();
    await coap.http.shutdown();
    tap.close();
    await peer.stop();
  }
}

/**
 * A DTLS device (libcoap's OpenSSL server with a pre-shared key) through
 * coap:proxy, which holds the key: the page lists its resources, GETs and
 * observes, over WebSocket to the proxy and DTLS beyond it.
 */
async function dtlsThroughTheProxy(driver: Driver): Promise<void> {
  let port = 0;
  let device: Running | undefined;
  for (let attempt = 0; attempt < 5 && device === undefined; attempt++) {
    port = freePort();
    device = spawn("coap-server-openssl", [
      "-A",
      "127.0.0.1",
      "-p",
      String(port),
      "-k",
      "secretPSK",
      "-d",
      "10",
    ], port);
  }
  const proxy = new CoapProxy({
    allow: [`coaps://127.0.0.1:${port + 1}`],
    psk: { "*": { identity: "user", key: "secretPSK" } },
  });
  const coap = serveCoap(
    new CoapServer({}, { proxy: proxy.resource }),
    { port: 0, page: explorerOnServer("coap+ws") },
  );
  try {
    const target = `coaps://127.0.0.1:${port + 1}`;
    await driver.goto(
      `http://127.0.0.1:${coap.http.addr.port}/?target=${
        encodeURIComponent(target)
      }`,
    );
    await until(driver, "the connection", state("connected"));
    for (let i = 0; i < 60; i++) {
      const [listed, asking] = await driver.evaluate<[number, boolean]>(
        "[document.querySelectorAll('#resource-list li').length, document.querySelector('#discovery').textContent.startsWith('Asking')]",
      );
      if (listed > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (!asking) await driver.click("#discover");
    }
    const paths = (await listing(driver)).map(([path]) => path);
    assertEquals(paths.slice(0, 2), ["/", "/time"]);
    await driver.click(item("/", "target"));
    await until(driver, "GET /", code("2.05 Content"));
    assertMatch(
      await text(driver, "#response-payload"),
      /^This is a test server made with libcoap/,
    );
    await driver.click(item("/time", "observe"));
    await until(
      driver,
      "three notifications of /time over DTLS",
      "Number(document.querySelector('.observation')?.dataset.count) >= 3",
    );
    await shot(driver, "16-dtls-through-the-proxy.png");
    await driver.click(".observation button.stop");
    await until(
      driver,
      "the card to say it stopped",
      "document.querySelector('.observation .status').textContent.startsWith('stopped')",
    );
    assertEquals(driver.problems, []);
  } finally {
    proxy.close();
    await coap.http.shutdown();
    await device?.stop();
  }
}

const DRIVERS: Record<Browser, () => Promise<Driver>> = {
  chromium: chromiumDriver,
  firefox: firefoxDriver,
};

for (const browser of ["chromium", "firefox"] as const) {
  for (
    const [against, walk] of [
      [
        "the aiocoap peer: discover, GET, observe, stop, errors, a dropped connection",
        againstAiocoap,
      ],
      [
        "our own server: discover, markup shown as text, observe, stop, Disconnect",
        againstOurServer,
      ],
      [
        "a server with a broken listing, CBOR, bytes and observations that do not fit",
        againstUnusualServer,
      ],
      [
        "our own server, served by it on its own origin: the server field filled in and connected by itself, GET /",
        onItsOwnOrigin,
      ],
      [
        "libcoap's coap-server over UDP, through coap:proxy: the device's resources, GET /, Observe /time",
        throughTheProxy,
      ],
      [
        "aiocoap's OSCORE server through coap:proxy, end to end: a pasted context, discovery, GET, POST, Observe, kept across a reload",
        oscoreThroughTheProxy,
      ],
      [
        "libcoap's OpenSSL server over DTLS with a pre-shared key, through coap:proxy: the device's resources, GET /, Observe /time",
        dtlsThroughTheProxy,
      ],
    ] as const
  ) {
    Deno.test({
      name: `CoAP explorer in headless ${browser} against ${against}`,
      sanitizeOps: false,
      sanitizeResources: false,
      async fn() {
        await ensureBundle();
        const driver = await DRIVERS[browser]();
        console.log(`  drove ${driver.version} with ${DRIVER_NAMES[browser]}`);
        try {
          await walk(driver);
        } finally {
          await driver.close();
        }
      },
    });
  }
}
