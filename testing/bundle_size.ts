// Prints a bundle's size, raw and gzipped with the platform's CompressionStream
// (default level), in bytes and KiB.
// Usage: deno run --allow-read testing/bundle_size.ts FILE [MAX_GZIP_BYTES]

const [file, maxText] = Deno.args;
const bytes = await Deno.readFile(file);
const gzipped = await new Response(
  new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip")),
).arrayBuffer();
const kib = (n: number) => (n / 1024).toFixed(2);
console.log(
  `${file}: ${bytes.length} bytes (${kib(bytes.length)} KiB) raw, ` +
    `${gzipped.byteLength} bytes (${kib(gzipped.byteLength)} KiB) gzipped`,
);
if (maxText !== undefined && gzipped.byteLength > Number(maxText)) {
  console.error(`gzipped size exceeds ${maxText} bytes`);
  Deno.exit(1);
}
