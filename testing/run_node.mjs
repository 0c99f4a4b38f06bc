// Runs the bundled suite (dist/suite.mjs, from `deno task bundle:suite`) on
// Node.js: node --expose-gc testing/run_node.mjs
import { cases, report, runCases } from "../dist/suite.mjs";

if (cases.length === 0) {
  console.error("node: no test cases found");
  process.exit(1);
}
const result = await runCases(cases);
console.log(report("node", result));
process.exit(result.failed === 0 && result.passed > 0 ? 0 : 1);
