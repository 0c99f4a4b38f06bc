// Runs the bundled suite (dist/suite.mjs, from `deno task bundle:suite`) on
// Node.js or Bun, named by the first argument (the name the closing line
// starts with):
//   node --expose-gc testing/run_node.mjs [node|node24]
//   bun testing/run_node.mjs bun
// Then checks, with the runtime's own util.inspect, that pipes and events
// show themselves as they do in Deno.inspect.
import { inspect } from "node:util";
import { cases, IterablePipe, Pipe, report, runCases } from "../dist/suite.mjs";

const runtime = process.argv[2] ?? "node";
if (cases.length === 0) {
  console.error(`${runtime}: no test cases found`);
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
    ? `${runtime}: util.inspect shows pipes and events`
    : `${runtime}: util.inspect showed ${JSON.stringify(shown)}`,
);

console.log(report(runtime, result));
process.exit(result.failed === 0 && result.passed > 0 && inspectOk ? 0 : 1);
