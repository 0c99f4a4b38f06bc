// The worker that testing/run_workerd.ts starts in workerd.
//   GET /suite        runs every case and answers with the results as JSON.
//   GET /observe      streams an observation straight into the response body:
//                     one JSON line per notification, every 20 ms, from a
//                     driver that runs until the client cancels the body.
//   GET /observe/log  what the observation's driver went through.
import { cases, IterablePipe, runCases, runDrivingPipe } from "./suite.mjs";

const driverLog = [];

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

function observe() {
  const pipe = new IterablePipe({ method: "GET", path: "/counter" });
  runDrivingPipe(pipe, async (signal) => {
    signal.addEventListener("abort", () => {
      driverLog.push(`driver aborted: ${signal.reason.name}`);
    });
    try {
      for (let n = 1;; n++) {
        pipe.addResponse({ n });
        driverLog.push(`sent ${n}`);
        await sleep(20, signal);
      }
    } finally {
      driverLog.push("driver cleaned up");
    }
  }, "observation of /counter");
  const encoder = new TextEncoder();
  const body = pipe.stream().pipeThrough(
    new TransformStream({
      transform(event, controller) {
        controller.enqueue(
          encoder.encode(JSON.stringify(event.message) + "\n"),
        );
      },
    }),
  );
  return new Response(body, {
    headers: { "content-type": "application/x-ndjson" },
  });
}

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/suite") {
      const result = await runCases(cases);
      return Response.json({ count: cases.length, ...result });
    }
    if (pathname === "/observe") return observe();
    if (pathname === "/observe/log") return Response.json(driverLog);
    return new Response("not found", { status: 404 });
  },
};
