// Command-line flags for the benchmark scripts: `--name value` for numbers
// and strings (a number from 0), `--name` alone for booleans; anything else
// stops with usage.

/**
 * Reads `args` into a copy of `defaults`, by the defaults' types.
 *
 * @param args The command-line arguments.
 * @param defaults Every flag with its default.
 * @returns The flags.
 */
export function parseArgs<T extends Record<string, number | string | boolean>>(
  args: readonly string[],
  defaults: T,
): T {
  const out: Record<string, number | string | boolean> = { ...defaults };
  const usage = () => {
    const flags = Object.entries(defaults).map(([name, value]) =>
      typeof value === "boolean" ? `[--${name}]` : `[--${name} ${value}]`
    );
    console.error(`usage: ${flags.join(" ")}`);
    Deno.exit(2);
  };
  for (let i = 0; i < args.length; i++) {
    const name = args[i].replace(/^--/, "");
    if (!args[i].startsWith("--") || !(name in defaults)) usage();
    const kind = typeof defaults[name];
    if (kind === "boolean") {
      out[name] = true;
      continue;
    }
    const value = args[++i];
    if (value === undefined) usage();
    if (kind === "number") {
      const number = Number(value);
      if (!Number.isFinite(number) || number < 0) usage();
      out[name] = number;
    } else out[name] = value;
  }
  return out as T;
}
