// Run first by `deno task test:coap`: says in one line each which of the
// peers the checks need is missing here and how to get it, and exits 1,
// instead of letting the first check that needs one end in a stack trace.

import { requireLibcoap, requireOscorePeer, requirePeer } from "./peers.ts";

const missing: string[] = [];
for (const need of [requirePeer, requireLibcoap, requireOscorePeer]) {
  try {
    await need();
  } catch (error) {
    missing.push((error as Error).message);
  }
}
const tools: [string, string][] = [
  ["openssl", "apt-get install -y openssl (the TLS checks make certificates)"],
  [
    Deno.env.get("CHROMIUM") ?? "chromium",
    "apt-get install -y chromium, or set CHROMIUM (a browser check)",
  ],
  [
    Deno.env.get("WORKERD") ?? "workerd",
    "npm install workerd and put its node_modules/.bin on PATH, or set WORKERD (an edge-runtime check)",
  ],
];
for (const [tool, how] of tools) {
  try {
    await new Deno.Command(tool, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
  } catch {
    missing.push(`${tool} is missing: ${how}`);
  }
}
if (missing.length > 0) {
  console.error(
    `deno task test:coap needs what is not here:\n${
      [...new Set(missing)].map((line) => `  - ${line}`).join("\n")
    }\n(see ../shared/peers/README.md)`,
  );
  Deno.exit(1);
}
