// Runs the bundled suite (dist/suite.mjs, from `deno task bundle:suite`) on
// Node.js: node --expose-gc testing/run_node.mjs
// Then checks, with Node's own util.inspect, that pipes and events show
// themselves as they do in Deno.inspect.
import { inspect } from "node:util";
import { cases, IterablePipe, Pipe, report, runCases } from "../dist/suite.mjs";

if (cases.length === 0) {
  console.error("node: no test cases found");
  process.exit(1);
}
const result = await runCases(cases);

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const pipe = new Pipe({ path: "/x" }, quiet);
const events = [];
pipe.onEvent((event) => events.push(event));
const iterable = new IterablePipe("GET /y", { log: quiet });
iterable.addResponse(1);
const shown = [inspect(pipe)];
pipe.addResponse("a", true);
shown.push(inspect(events[0]), inspect(pipe), inspect(iterable));
const expected = [
  "Pipe { request: { path: '/x' }, callbacks: 1, interests: 1 }",
  "{ kind: 'response', message: 'a', exception: undefined, isLast: true }",
  "Pipe { request: { path: '/x' }, ended }",
  "IterablePipe { request: 'GET /y', interested, buffered: 1 }",
];
const inspectOk = JSON.stringify(shown) === JSON.stringify(expected);
console.log(
  inspectOk
    ? "node: util.inspect shows pipes and events"
    : `node: util.inspect showed ${JSON.stringify(shown)}`,
);

console.log(report("node", result));
process.exit(result.failed === 0 && result.passed > 0 && inspectOk ? 0 : 1);
