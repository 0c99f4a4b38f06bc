// Runs the bundled suite (dist/suite.mjs) in workerd, Cloudflare's runtime:
//   deno run --allow-read --allow-write --allow-net=127.0.0.1 --allow-run \
//     --allow-env testing/run_workerd.ts
// A worker listening on 127.0.0.1 runs every case when asked; the last line
// printed is `workerd: N passed, N failed`. Exits non-zero when workerd is
// missing, a case fails or none ran. WORKERD names the binary.

import { workerdConfig } from "./workerd_config.ts";

const WORKERD = Deno.env.get("WORKERD") ?? "workerd";
const here = new URL(".", import.meta.url);

function fail(message: string): never {
  console.error(`workerd: ${message}`);
  console.log("workerd: 0 passed, 1 failed");
  Deno.exit(1);
}

const dir = await Deno.makeTempDir({ prefix: "workerd-suite-" });
await Deno.copyFile(new URL("../dist/suite.mjs", here), `${dir}/suite.mjs`)
  .catch(() => fail("dist/suite.mjs is missing (deno task bundle:suite)"));
await Deno.copyFile(new URL("workerd_worker.mjs", here), `${dir}/worker.mjs`);

// A free port: bind one, note it, let it go.
const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (probe.addr as Deno.NetAddr).port;
probe.close();

await Deno.writeTextFile(
  `${dir}/config.capnp`,
  workerdConfig(port, ["worker.mjs", "suite.mjs"], ["--expose-gc"]),
);

let child: Deno.ChildProcess;
try {
  child = new Deno.Command(WORKERD, {
    args: ["serve", `${dir}/config.capnp`],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
} catch (error) {
  fail(`cannot start ${WORKERD}: ${error}`);
}
const output = Promise.all([
  new Response(child.stdout).text(),
  new Response(child.stderr).text(),
]);

async function request(path: string, init?: RequestInit): Promise<Response> {
  const deadline = Date.now() + 30_000;
  while (true) {
    try {
      return await fetch(`http://127.0.0.1:${port}${path}`, init);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Reads three notifications of an observation the worker streams into its
 * response body, cancels the body, and checks that the worker's driver saw
 * its signal abort and cleaned up.
 */
async function streamedObservation(): Promise<boolean> {
  const response = await request("/observe");
  const lines = response.body!.pipeThrough(new TextDecoderStream());
  const reader = lines.getReader();
  let text = "";
  while (text.split("\n").length <= 3) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
  }
  await reader.cancel();
  const got = text.split("\n").slice(0, 3);
  console.log(`workerd: streamed ${got.join(" ")}, then cancelled the body`);
  const deadline = Date.now() + 10_000;
  let log: string[] = [];
  while (Date.now() < deadline) {
    log = await (await request("/observe/log")).json();
    if (log.includes("driver cleaned up")) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const after = log.slice(log.findIndex((l) => l.startsWith("driver aborted")));
  console.log(`workerd: the worker's driver: ${log.join(", ")}`);
  const ok = got.join(" ") === '{"n":1} {"n":2} {"n":3}' &&
    after[0] === "driver aborted: AbortError" &&
    after.at(-1) === "driver cleaned up";
  if (!ok) {
    console.error("workerd: the streamed observation did not end as expected");
  }
  return ok;
}

let exitCode = 1;
try {
  const response = await request("/suite");
  const result = await response.json() as {
    count: number;
    passed: number;
    failed: number;
    skipped: number;
    skips?: { name: string; reason: string }[];
    features?: string;
    failures: { name: string; error: string }[];
  };
  for (const { name, error } of result.failures) {
    console.log(`FAILED ${name}\n  ${error.replaceAll("\n", "\n  ")}`);
  }
  for (const { name, reason } of result.skips ?? []) {
    console.log(`SKIPPED ${name}: ${reason}`);
  }
  console.log(`workerd features: ${result.features}`);
  const streamed = await streamedObservation();
  console.log(
    `workerd: ${result.passed} passed, ${result.failed} failed` +
      (result.skipped ? `, ${result.skipped} skipped` : ""),
  );
  if (result.count === 0 || result.passed === 0) {
    console.error("workerd: no test case ran");
  } else if (result.failed === 0 && streamed) {
    exitCode = 0;
  }
} catch (error) {
  console.error(`workerd: ${error}`);
} finally {
  child.kill("SIGTERM");
  await child.status;
  const [out, err] = await output;
  if (exitCode !== 0) console.error(out + err);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
Deno.exit(exitCode);
