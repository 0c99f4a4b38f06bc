// Every test file, for runtimes that run the cases through runner.ts.
import "../pipe_test.ts";
import "../pipe_model_test.ts";
import "../iterable_pipe_test.ts";
import "../iterable_pipe_model_test.ts";
import "../hostile_test.ts";
import "../driving_test.ts";
import "../_queue_test.ts";
import "../_util_test.ts";
import "../soak_test.ts";

export { cases } from "./suite.ts";
export { report, runCases, summaryLine } from "./runner.ts";
export * from "../mod.ts";
