// Runs the bundled suite (dist/suite.mjs) in a headless browser:
//   deno run --allow-read --allow-write --allow-net=127.0.0.1 --allow-run \
//     --allow-env testing/run_browser.ts [chromium|firefox]
// A page served on 127.0.0.1 imports the bundle, runs every case and posts
// the results back; the last line printed is `chromium: N passed, N failed`
// (or `firefox: …`, with `, N skipped` and each skip's reason when cases
// need what the browser lacks). Exits non-zero when the browser is missing,
// a case fails or none ran. CHROMIUM and FIREFOX name the binaries.

import { chromiumArgs } from "./chromium.ts";

const BROWSER = Deno.args[0] ?? "chromium";
if (BROWSER !== "chromium" && BROWSER !== "firefox") {
  console.error(`unknown browser ${BROWSER}: chromium or firefox`);
  Deno.exit(2);
}
const BINARY = BROWSER === "chromium"
  ? Deno.env.get("CHROMIUM") ?? "chromium"
  : Deno.env.get("FIREFOX") ?? "firefox-esr";
const TIMEOUT_MS = 120_000;

interface PageResult {
  count: number;
  passed: number;
  failed: number;
  skipped: number;
  failures: { name: string; error: string }[];
  skips: { name: string; reason: string }[];
  features: string;
  userAgent: string;
}

const bundle = await Deno.readTextFile(
  new URL("../dist/suite.mjs", import.meta.url),
).catch(() => {
  console.error(
    `${BROWSER}: dist/suite.mjs is missing (deno task bundle:suite)`,
  );
  Deno.exit(1);
});

const page = `<!doctype html>
<meta charset="utf-8">
<title>@coap/pipe suite</title>
<pre id="out">running</pre>
<script type="module">
  try {
    const { cases, runCases, report } = await import("./suite.mjs");
    const result = await runCases(cases);
    document.getElementById("out").textContent = report("${BROWSER}", result);
    await fetch("/result", {
      method: "POST",
      body: JSON.stringify({
        count: cases.length,
        userAgent: navigator.userAgent,
        ...result,
      }),
    });
  } catch (error) {
    await fetch("/fatal", { method: "POST", body: String(error?.stack ?? error) });
  }
</script>
`;

let settle!: (outcome: PageResult | Error) => void;
const outcome = new Promise<PageResult | Error>((resolve) => settle = resolve);

const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  async (request) => {
    const { pathname } = new URL(request.url);
    if (request.method === "GET" && pathname === "/") {
      return new Response(page, { headers: { "content-type": "text/html" } });
    }
    if (request.method === "GET" && pathname === "/suite.mjs") {
      return new Response(bundle, {
        headers: { "content-type": "text/javascript" },
      });
    }
    if (request.method === "POST" && pathname === "/result") {
      settle(await request.json());
      return new Response("ok");
    }
    if (request.method === "POST" && pathname === "/fatal") {
      settle(new Error(`page error: ${await request.text()}`));
      return new Response("ok");
    }
    return new Response("not found", { status: 404 });
  },
);

const profile = await Deno.makeTempDir({ prefix: `${BROWSER}-profile-` });
const url = `http://127.0.0.1:${server.addr.port}/`;
let args: string[];
if (BROWSER === "chromium") {
  args = [
    "--js-flags=--expose-gc",
    "--enable-precise-memory-info",
    ...chromiumArgs(profile, url),
  ];
} else {
  // A fresh profile that asks nothing of the network and shows nothing first.
  await Deno.writeTextFile(
    `${profile}/user.js`,
    [
      'user_pref("browser.shell.checkDefaultBrowser", false);',
      'user_pref("browser.startup.homepage_override.mstone", "ignore");',
      'user_pref("datareporting.policy.dataSubmissionEnabled", false);',
      'user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);',
      'user_pref("app.update.auto", false);',
      'user_pref("app.normandy.enabled", false);',
      'user_pref("network.captive-portal-service.enabled", false);',
      'user_pref("network.connectivity-service.enabled", false);',
      'user_pref("browser.safebrowsing.malware.enabled", false);',
      'user_pref("browser.safebrowsing.phishing.enabled", false);',
      'user_pref("extensions.update.enabled", false);',
      'user_pref("browser.newtabpage.enabled", false);',
    ].join("\n"),
  );
  args = ["-headless", "-no-remote", "-profile", profile, url];
}
let child: Deno.ChildProcess;
try {
  child = new Deno.Command(BINARY, {
    args,
    stdout: "null",
    stderr: "piped",
  }).spawn();
} catch (error) {
  console.error(`${BROWSER}: cannot start ${BINARY}: ${error}`);
  await server.shutdown();
  Deno.exit(1);
}
const stderr = new Response(child.stderr).text();

let timer: ReturnType<typeof setTimeout> | undefined;
const result = await Promise.race([
  outcome,
  child.status.then((status) =>
    new Error(`${BROWSER} exited early (code ${status.code})`)
  ),
  new Promise<Error>((resolve) => {
    timer = setTimeout(
      () => resolve(new Error(`no result within ${TIMEOUT_MS} ms`)),
      TIMEOUT_MS,
    );
  }),
]);
clearTimeout(timer);
try {
  child.kill("SIGKILL");
} catch { /* already gone */ }
await child.status;
await server.shutdown();
await Deno.remove(profile, { recursive: true }).catch(() => {});

if (result instanceof Error) {
  console.error(`${BROWSER}: ${result.message}`);
  console.error((await stderr).split("\n").slice(-20).join("\n"));
  console.log(`${BROWSER}: 0 passed, 1 failed`);
  Deno.exit(1);
}
for (const { name, error } of result.failures) {
  console.log(`FAILED ${name}\n  ${error.replaceAll("\n", "\n  ")}`);
}
for (const { name, reason } of result.skips ?? []) {
  console.log(`SKIPPED ${name}: ${reason}`);
}
console.log(`${BROWSER} user agent: ${result.userAgent}`);
console.log(`${BROWSER} features: ${result.features}`);
console.log(
  `${BROWSER}: ${result.passed} passed, ${result.failed} failed` +
    (result.skipped ? `, ${result.skipped} skipped` : ""),
);
if (result.count === 0 || result.passed === 0) {
  console.error(`${BROWSER}: no test case ran`);
  Deno.exit(1);
}
Deno.exit(result.failed === 0 ? 0 : 1);
