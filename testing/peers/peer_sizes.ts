// The smallest browser bundle of each peer's one class, minified and
// gzipped the way testing/bundle_size.ts measures ours:
//   deno task bench:peers (after the benchmark)

const entries: Record<string, string> = {
  "RxJS Subject":
    'import { Subject } from "npm:rxjs@7.8.2"; globalThis.x = Subject;',
  "it-pushable":
    'import { pushable } from "npm:it-pushable@3.2.4"; globalThis.x = pushable;',
  "@coap/pipe Pipe":
    'import { Pipe } from "ROOT/pipe.ts"; globalThis.x = Pipe;',
  "@coap/pipe IterablePipe":
    'import { IterablePipe } from "ROOT/iterable_pipe.ts"; globalThis.x = IterablePipe;',
};
const root = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const dir = await Deno.makeTempDir({ prefix: "peer-sizes-" });
try {
  for (const [name, source] of Object.entries(entries)) {
    await Deno.writeTextFile(`${dir}/entry.ts`, source.replace("ROOT", root));
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        // The peers' own configuration and lock: the module's has no npm.
        "--config",
        `${root}/testing/peers/deno.json`,
        "--quiet",
        "--platform=browser",
        "--minify",
        `${dir}/entry.ts`,
        "-o",
        `${dir}/out.js`,
      ],
      cwd: dir,
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    const bytes = await Deno.readFile(`${dir}/out.js`);
    const gzipped = await new Response(
      new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer();
    console.log(
      `${name.padEnd(26)} ${String(bytes.length).padStart(7)} bytes minified, ${
        String(gzipped.byteLength).padStart(6)
      } gzipped`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
