import { siphash24 as a } from "../../siphash.ts";
import { siphash24 as b } from "./siphash_old.ts";
let bad = 0;
for (let i = 0; i < 5000; i++) {
  const k = crypto.getRandomValues(new Uint8Array(16));
  const m = crypto.getRandomValues(new Uint8Array(i % 300));
  if (a(k, m).join() !== b(k, m).join()) bad++;
}
console.log("mismatches", bad);
