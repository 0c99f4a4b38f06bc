// Writes the minified browser ESM bundle of mod.ts to dist/pipe.min.js and
// reports its size raw and gzipped (the platform's CompressionStream at its
// default level), and the size of what an application that imports only one
// class gets after tree-shaking. Fails when the whole module gzips to more
// than BUDGET bytes, or when a one-class bundle holds the other class.
// Usage: deno run --allow-read --allow-write --allow-run --allow-env \
//          testing/bundle_size.ts

const root = new URL("../", import.meta.url);
const dist = new URL("dist/", root);
await Deno.mkdir(dist, { recursive: true });

async function bundle(entry: string, out: URL): Promise<Uint8Array> {
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      entry,
      "-o",
      out.pathname,
    ],
    cwd: root.pathname,
    stderr: "piped",
  }).output();
  if (!success) throw new Error(new TextDecoder().decode(stderr));
  return await Deno.readFile(out);
}

async function gzipSize(bytes: Uint8Array): Promise<number> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return (await new Response(stream).arrayBuffer()).byteLength;
}

const kib = (n: number) => `${n} bytes (${(n / 1024).toFixed(2)} KiB)`;

/**
 * The whole module's budget, gzipped: what it measured when the work on its
 * cost per exchange began (issue 15), which that work was not to exceed
 * (4,204 bytes), and the 55 bytes issue 34 added on purpose: a driver that
 * declares no parameter runs without an AbortController (about 5 µs a
 * request in Node.js 20), and one whose length cannot be read still runs.
 */
const BUDGET = 4259;

async function report(label: string, entry: string, out: URL) {
  const bytes = await bundle(entry, out);
  const gzipped = await gzipSize(bytes);
  console.log(`${label}: ${kib(bytes.length)} raw, ${kib(gzipped)} gzipped`);
  return { text: new TextDecoder().decode(bytes), gzipped };
}

/**
 * What only the other class has: a bundle of one class that holds it was
 * not tree-shaken (a class definition with a side effect, such as a static
 * block, keeps it).
 */
const ONLY_IN: Record<string, string> = {
  Pipe: "Cannot iterate an IterablePipe",
  IterablePipe: "Cannot call Pipe.onEvent()",
};

const whole = await report(
  "mod.ts, dist/pipe.min.js",
  "mod.ts",
  new URL("pipe.min.js", dist),
);
if (whole.gzipped > BUDGET) {
  console.error(
    `the whole module gzips to ${whole.gzipped} bytes, over its budget of ${BUDGET}`,
  );
  Deno.exitCode = 1;
}
for (const name of ["Pipe", "IterablePipe"]) {
  const entry = new URL(`_only_${name}.ts`, dist);
  await Deno.writeTextFile(entry, `export { ${name} } from "../mod.ts";\n`);
  try {
    const { text } = await report(
      `only ${name}, tree-shaken`,
      entry.pathname,
      new URL(`only_${name}.min.js`, dist),
    );
    if (text.includes(ONLY_IN[name])) {
      console.error(
        `the bundle of only ${name} holds the other class: it was not tree-shaken`,
      );
      Deno.exitCode = 1;
    }
  } finally {
    await Deno.remove(entry);
  }
}
