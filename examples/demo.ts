// A small CoAP-flavoured server and client wired together with pipes.
//
//   deno task demo
//
// The server serves resources through errorToMessage() and runDrivingPipe();
// the client sends a one-shot request answered through Pipe callbacks,
// observes a sensor with `for await` over an IterablePipe and stops after a
// few notifications (the driver sees its signal abort and cleans up), and
// asks a failing resource, whose error comes back as a 5.00 response.

import {
  errorToMessage,
  IterablePipe,
  type Logger,
  Pipe,
  type ResponderPipe,
  runDrivingPipe,
} from "../mod.ts";

/** A request and a response, as simple as CoAP's. */
interface Request {
  method: "GET";
  path: string;
  observe?: boolean;
}
interface Response {
  code: string;
  payload: string;
}

const started = performance.now();
function say(who: string, text: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(3);
  console.log(`[${t}s] ${who.padEnd(8)} ${text}`);
}

/** The server's logger: prints what errorToMessage() reports. */
const serverLog: Logger = {
  debug: () => {},
  // The library logs one argument or two; print what it gave.
  info: (...data: unknown[]) => say("server", `(log info) ${data.join(": ")}`),
  warn: (message: unknown) => say("server", `(log warn) ${message}`),
  error: (message: unknown, error: unknown) =>
    say("server", `(log error) ${message}: ${error}`),
};

/** Resolves after `ms`, or rejects with the signal's reason on abort. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** An error that knows its CoAP response, like aiocoap's RenderableError. */
class NotFound extends Error {
  override name = "NotFound";
  toMessage(): Response {
    return { code: "4.04", payload: `Not Found: ${this.message}` };
  }
}

type Render = (
  pipe: ResponderPipe<Request, Response>,
  signal: AbortSignal,
) => Promise<void> | void;

/** The server's resources. Each fills the pipe it is given. */
const resources: Record<string, Render> = {
  "/hello": (pipe) => {
    pipe.addResponse({ code: "2.05", payload: "Hello, pipes!" }, true);
  },

  // A sensor whose value changes every 100 ms; observers get every change.
  "/temperature": async (pipe, signal) => {
    let value = 21.0;
    say("sensor", "started sampling every 100 ms");
    try {
      while (true) {
        const final = !pipe.request.observe;
        pipe.addResponse(
          { code: "2.05", payload: `${value.toFixed(1)} °C` },
          final,
        );
        if (final) return;
        await sleep(100, signal);
        value += 0.3;
      }
    } catch (error) {
      say(
        "sensor",
        `signal aborted (${(error as Error).name}: ${
          (error as Error).message
        })`,
      );
      throw error; // the expected way for a driver to stop
    } finally {
      say("sensor", "stopped sampling, timer cleared");
    }
  },

  "/broken": async () => {
    await Promise.resolve();
    throw new Error("sensor bus not responding");
  },
};

/** The server: every request pipe gets its resource as a driver. */
function serve(pipe: ResponderPipe<Request, Response>): Promise<void> {
  const { path } = pipe.request;
  const inner = errorToMessage(pipe, {
    internalServerError: () => ({
      code: "5.00",
      payload: "Internal Server Error",
    }),
    log: serverLog,
  });
  const render = resources[path] ?? (() => {
    throw new NotFound(path);
  });
  return runDrivingPipe(inner, (signal) => render(inner, signal), path);
}

function show(response: Response): string {
  return `${response.code} ${JSON.stringify(response.payload)}`;
}

// 1. A one-shot request, answered through Pipe callbacks.
console.log("\n1. One-shot GET /hello, answered through Pipe callbacks");
{
  const pipe = new Pipe<Request, Response>({ method: "GET", path: "/hello" });
  const answered = new Promise<void>((resolve) => {
    pipe.onEvent((event) => {
      if (event.kind === "response") {
        say("client", `got ${show(event.message)}`);
      }
      if (event.isLast) resolve();
      return !event.isLast;
    });
  });
  pipe.onInterestEnd(() => say("server", "interest ended: request complete"));
  say("client", "GET /hello");
  await serve(pipe);
  await answered;
}

// 2. An observation, consumed with for await; the client stops after four.
console.log("\n2. Observing /temperature with for await over an IterablePipe");
{
  const pipe = new IterablePipe<Request, Response>({
    method: "GET",
    path: "/temperature",
    observe: true,
  });
  say("client", "GET /temperature (observe)");
  const served = serve(pipe);
  let count = 0;
  for await (const event of pipe) {
    if (event.kind !== "response") break;
    count++;
    say("client", `notification ${count}: ${show(event.message)}`);
    if (count === 4) {
      say("client", "seen enough; leaving the loop");
      break;
    }
  }
  await served;
  say("server", "driver settled; nothing left running");
}

// 3. Errors become responses: a missing resource and a failing one.
console.log("\n3. Errors become final responses through errorToMessage()");
for (const path of ["/missing", "/broken"]) {
  const pipe = new IterablePipe<Request, Response>({ method: "GET", path });
  say("client", `GET ${path}`);
  const served = serve(pipe);
  for await (const event of pipe) {
    if (event.kind === "response") say("client", `got ${show(event.message)}`);
  }
  await served;
}

console.log(
  `\nDone in ${((performance.now() - started) / 1000).toFixed(2)} s.`,
);
