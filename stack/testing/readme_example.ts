// The README's CoapContext example, run as it is written there (part of
// `deno task test:coap`): its code block is written to a file beside this
// one and imported, so the program a user copies is the program checked.
// It needs the network (127.0.0.1), which `deno task test` does not have,
// so the block is marked `ignore` for the doc tests.

Deno.test({
  name:
    "stack/README.md's CoapContext example (a device over UDP and a server over WebSocket, in one program) runs as written",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const readme = await Deno.readTextFile(
      new URL("../README.md", import.meta.url),
    );
    const section = readme.split("## One client for everything")[1];
    const block = section?.split("```ts ignore\n")[1]?.split("\n```")[0];
    if (block === undefined || !block.includes("new CoapContext(")) {
      throw new Error("stack/README.md has no CoapContext example to run");
    }
    const file = new URL("./_readme_example.ts", import.meta.url);
    await Deno.writeTextFile(file, block);
    try {
      await import(file.href);
    } finally {
      await Deno.remove(file);
    }
  },
});
