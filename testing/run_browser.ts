// Runs the bundled suite (dist/suite.mjs) in headless Chromium:
//   deno run --allow-read --allow-net=127.0.0.1 --allow-run --allow-env \
//     testing/run_browser.ts
// A page served on 127.0.0.1 imports the bundle, runs every case and posts
// the results back; the last line printed is `chromium: N passed, N failed`.
// Exits non-zero when Chromium is missing, a case fails or none ran.

const CHROMIUM = Deno.env.get("CHROMIUM") ?? "chromium";
const TIMEOUT_MS = 120_000;

interface PageResult {
  count: number;
  passed: number;
  failed: number;
  skipped: number;
  failures: { name: string; error: string }[];
}

const bundle = await Deno.readTextFile(
  new URL("../dist/suite.mjs", import.meta.url),
).catch(() => {
  console.error("chromium: dist/suite.mjs is missing (deno task bundle:suite)");
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
    document.getElementById("out").textContent = report("chromium", result);
    await fetch("/result", {
      method: "POST",
      body: JSON.stringify({ count: cases.length, ...result }),
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

const profile = await Deno.makeTempDir({ prefix: "chromium-profile-" });
let child: Deno.ChildProcess;
try {
  child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      "--js-flags=--expose-gc",
      "--enable-precise-memory-info",
      `http://127.0.0.1:${server.addr.port}/`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
} catch (error) {
  console.error(`chromium: cannot start ${CHROMIUM}: ${error}`);
  await server.shutdown();
  Deno.exit(1);
}
const stderr = new Response(child.stderr).text();

let timer: ReturnType<typeof setTimeout> | undefined;
const result = await Promise.race([
  outcome,
  child.status.then((status) =>
    new Error(`Chromium exited early (code ${status.code})`)
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
  console.error(`chromium: ${result.message}`);
  console.error((await stderr).split("\n").slice(-20).join("\n"));
  console.log("chromium: 0 passed, 1 failed");
  Deno.exit(1);
}
for (const { name, error } of result.failures) {
  console.log(`FAILED ${name}\n  ${error.replaceAll("\n", "\n  ")}`);
}
console.log(
  `chromium: ${result.passed} passed, ${result.failed} failed` +
    (result.skipped ? `, ${result.skipped} skipped` : ""),
);
if (result.count === 0 || result.passed === 0) {
  console.error("chromium: no test case ran");
  Deno.exit(1);
}
Deno.exit(result.failed === 0 ? 0 : 1);
