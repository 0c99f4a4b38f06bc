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

/**
 * A pre-shared key as a key file holds it, the way libcoap's `-k` takes a
 * key: the file's bytes, less one line end (`\n` or `\r\n`).
 *
 * @param bytes The file's bytes.
 * @returns The key, or `undefined` if nothing is left.
 */
export function keyFileBytes(bytes: Uint8Array): Uint8Array | undefined {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return end === 0 ? undefined : bytes.subarray(0, end);
}
