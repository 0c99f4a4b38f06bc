// Runs the README's TypeScript examples the way its "From a clone" install
// says: each in a project of its own, outside the clone, whose deno.json maps
// `@coap/pipe` to the clone's mod.ts (and `@std/assert` to the local
// stand-in). Needs no registry:
//   deno run --allow-read --allow-write --allow-run --allow-env testing/readme_from_clone.ts

const root = new URL("..", import.meta.url);
const readme = await Deno.readTextFile(new URL("README.md", root));
const examples: { line: number; code: string }[] = [];
const lines = readme.split("\n");
for (let i = 0; i < lines.length; i++) {
  if (lines[i] !== "```ts") continue;
  const start = i + 1;
  let end = start;
  while (lines[end] !== "```") end++;
  examples.push({ line: start + 1, code: lines.slice(start, end).join("\n") });
  i = end;
}
if (examples.length === 0) throw new Error("README.md has no ```ts example");
const project = await Deno.makeTempDir({ prefix: "coap-pipe-user-" });
let failed = 0;
try {
  await Deno.writeTextFile(
    `${project}/deno.json`,
    JSON.stringify({
      imports: {
        "@coap/pipe": new URL("mod.ts", root).pathname,
        "@std/assert": new URL("testing/assert.ts", root).pathname,
      },
    }),
  );
  for (const [n, { line, code }] of examples.entries()) {
    const file = `${project}/example_${n + 1}.ts`;
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", file],
      cwd: project,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const what = `README example ${n + 1} (line ${line})`;
    if (out.success) console.log(`${what}: ran from a project of its own`);
    else {
      failed++;
      console.log(
        `${what}: FAILED\n${new TextDecoder().decode(out.stderr)}`,
      );
    }
  }
} finally {
  await Deno.remove(project, { recursive: true });
}
if (failed > 0) Deno.exit(1);
