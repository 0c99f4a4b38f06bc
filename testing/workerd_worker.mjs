// The worker that testing/run_workerd.ts starts in workerd. GET /suite runs
// every case and answers with the results as JSON.
import { cases, runCases } from "./suite.mjs";

export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/suite") {
      const result = await runCases(cases);
      return Response.json({ count: cases.length, ...result });
    }
    return new Response("not found", { status: 404 });
  },
};
