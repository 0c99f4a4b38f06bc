// Reading the command lines of coap:server and coap:proxy: a flag's value,
// or a message naming the flag and what it needs, with the usage line and
// exit code 2.

/** Reads flag values off `args`; stops the process on a bad one. */
export function flagReader(args: string[], usage: string): {
  /** Ends with the reason and the usage line, exit code 2. */
  fail(message: string): never;
  /** The value after a flag, or a message saying which flag needs what. */
  value(flag: string, what: string, valid?: (value: string) => boolean): string;
} {
  const fail = (message: string): never => {
    console.error(`${message}\n${usage}`);
    Deno.exit(2);
  };
  return {
    fail,
    value(flag, what, valid = (v) => v !== "") {
      const next = args.shift();
      if (next === undefined || next.startsWith("--") || !valid(next)) {
        fail(
          next === undefined || next.startsWith("--")
            ? `${flag} needs ${what}`
            : `${flag} needs ${what}, got ${JSON.stringify(next)}`,
        );
      }
      return next!;
    },
  };
}
