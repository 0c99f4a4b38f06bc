/**
 * OSCORE contexts from files, for Deno, Node.js and Bun: a
 * {@linkcode FileSequenceStore} that keeps a context's sender sequence
 * number in a file (RFC 8613 Appendix B.1.1), and
 * {@linkcode loadSecurityContext}, which reads a context in aiocoap's
 * `settings.json` form and persists it beside the file.
 *
 * @module
 */

import { readFile, rename, writeFile } from "node:fs/promises";
import {
  checkStored,
  parseContextJson,
  SecurityContext,
  type SequenceStore,
} from "./oscore.ts";

/**
 * A {@linkcode SequenceStore} in a file: the number as text, replaced
 * whole (written beside it, then renamed over it) so that a crash leaves
 * the old number or the new one, never half of one.
 *
 * @example (Needs --allow-read and --allow-write: `deno task test:coap`
 * checks the file through `coap:client --oscore`.)
 * ```ts ignore
 * import { FileSequenceStore } from "./oscore_file.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const dir = await Deno.makeTempDir();
 * const store = new FileSequenceStore(`${dir}/context.seq`);
 * assertEquals(await store.load(), undefined);
 * await store.save(64);
 * assertEquals(await new FileSequenceStore(`${dir}/context.seq`).load(), 64);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class FileSequenceStore implements SequenceStore {
  /** Always `true`: the file outlives the process. */
  readonly durable = true;
  /** The file's path. */
  readonly path: string;

  /**
   * Makes the store; nothing is read or written yet.
   *
   * @param path The file.
   */
  constructor(path: string) {
    this.path = path;
  }

  /**
   * Reads the number.
   *
   * @returns It, or `undefined` when the file does not exist.
   * @throws {Error} If the file holds something else, or cannot be read.
   */
  async load(): Promise<number | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as { code?: string }).code === "ENOENT") return undefined;
      throw error;
    }
    return checkStored(
      text.trim() === "" ? NaN : Number(text.trim()),
      this.path,
    );
  }

  /**
   * Writes the number.
   *
   * @param sequence The number.
   */
  async save(sequence: number): Promise<void> {
    const partial = `${this.path}.${crypto.randomUUID()}.partial`;
    await writeFile(partial, `${sequence}\n`, { flush: true });
    await rename(partial, this.path);
  }
}

/** Options of {@linkcode loadSecurityContext}. */
export interface LoadContextOptions {
  /**
   * Where the sender sequence number is kept.
   *
   * @default {`${path}.seq`}
   */
  statePath?: string;
  /**
   * Sequence numbers reserved with each write of the state file.
   *
   * @default {64}
   */
  persistStep?: number;
  /** Send the ID Context in requests (when the file has one). */
  sendIdContext?: boolean;
}

/**
 * Reads a security context in aiocoap's `settings.json` form (see
 * `parseContextJson`) and derives it, its sequence number kept in a file.
 *
 * @param path The JSON file.
 * @param options Where the state goes, and the step.
 * @returns The context.
 * @throws {Error} If the file cannot be read, is not JSON, or is not a
 * context in that form; the message names the file.
 *
 * @example
 * ```ts ignore
 * import { loadSecurityContext } from "@coap/stack/oscore-file";
 * const context = await loadSecurityContext("oscore-client.json");
 * ```
 */
export async function loadSecurityContext(
  path: string,
  options: LoadContextOptions = {},
): Promise<SecurityContext> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new Error(
      `Cannot read the OSCORE context in ${path}: ${(error as Error).message}`,
    );
  }
  try {
    return await SecurityContext.create({
      ...parseContextJson(json),
      store: new FileSequenceStore(options.statePath ?? `${path}.seq`),
      persistStep: options.persistStep,
      sendIdContext: options.sendIdContext,
    });
  } catch (error) {
    throw new Error(
      `Cannot use the OSCORE context in ${path}: ${(error as Error).message}`,
    );
  }
}
