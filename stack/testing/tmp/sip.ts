import { siphash24 } from "../../siphash.ts";
const k = new Uint8Array(16);
const m = new Uint8Array(60);
let t = performance.now();
for (let i = 0; i < 20000; i++) siphash24(k, m);
console.log(
  `siphash 60B: ${((performance.now() - t) * 1000 / 20000).toFixed(2)} us`,
);
