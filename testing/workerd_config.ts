// The workerd configuration this project serves a worker with, shared by
// the suite's runner and the CoAP interop checks: one service on
// 127.0.0.1:`port`, the first module its entry point.

/** A capnp config serving `modules` (embedded files) on 127.0.0.1:`port`. */
export function workerdConfig(
  port: number,
  modules: string[],
  v8Flags: string[] = [],
): string {
  const flags = v8Flags.length
    ? `\n  v8Flags = [${v8Flags.map((f) => JSON.stringify(f)).join(", ")}],`
    : "";
  const embedded = modules.map((name) =>
    `(name = "${name}", esModule = embed "${name}")`
  ).join(",\n    ");
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],${flags}
);
const worker :Workerd.Worker = (
  modules = [
    ${embedded},
  ],
  compatibilityDate = "2025-09-01",
);
`;
}
