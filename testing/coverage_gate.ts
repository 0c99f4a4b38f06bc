// Reads an lcov report and fails unless every runtime file (the .ts files at
// the project root that are not tests or benchmarks) has at least the given
// line coverage. Usage: deno run --allow-read testing/coverage_gate.ts FILE MIN

const [file, minText] = Deno.args;
const min = Number(minText);
if (!file || !Number.isFinite(min)) {
  console.error("usage: coverage_gate.ts LCOV_FILE MIN_PERCENT");
  Deno.exit(2);
}
const root = new URL("../", import.meta.url).pathname;
const runtime = /^[a-z_]+\.ts$/;
let found = 0, hit = 0, files = 0;
const rows: string[] = [];
for (const record of (await Deno.readTextFile(file)).split("end_of_record")) {
  const source = record.match(/^SF:(.*)$/m)?.[1];
  if (!source?.startsWith(root)) continue;
  const name = source.slice(root.length);
  if (!runtime.test(name) || /_(test|bench)\.ts$/.test(name)) continue;
  const lf = Number(record.match(/^LF:(\d+)$/m)?.[1] ?? 0);
  const lh = Number(record.match(/^LH:(\d+)$/m)?.[1] ?? 0);
  found += lf;
  hit += lh;
  files++;
  rows.push(`  ${name.padEnd(18)} ${(lf ? 100 * lh / lf : 100).toFixed(1)}%`);
}
const total = found ? 100 * hit / found : 0;
console.log(rows.join("\n"));
console.log(
  `line coverage of ${files} runtime files: ${
    total.toFixed(1)
  }% (${hit}/${found} lines, minimum ${min}%)`,
);
if (files === 0 || total < min) Deno.exit(1);
