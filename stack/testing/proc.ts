// What a process costs, read from /proc (Linux) for the benchmarks. Deno
// reads /proc only with every permission, so `cat` does.

async function procFile(pid: number, name: string): Promise<string> {
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/${name}`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout);
}

/**
 * A process's CPU time (user + system) in milliseconds, in clock ticks of
 * 10 ms.
 *
 * @param pid The process.
 * @returns Its CPU time so far.
 */
export async function cpuMs(pid: number): Promise<number> {
  const stat = await procFile(pid, "stat");
  // The command name may hold spaces; fields count from after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * A process's resident set in bytes, or NaN when it cannot be read.
 *
 * @param pid The process.
 * @returns Its RSS now.
 */
export async function rss(pid: number): Promise<number> {
  const kb = /VmRSS:\s+(\d+) kB/.exec(await procFile(pid, "status"))?.[1];
  return kb === undefined ? NaN : Number(kb) * 1024;
}
