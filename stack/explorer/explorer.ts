/// <reference lib="dom" />
// The CoAP explorer's page script (browser only): connects to a CoAP server
// over WebSocket with the client of ../client.ts, lists its resources from
// /.well-known/core, sends requests and runs observations. Everything a
// server sends is put into the page as text, never as markup.

import type { PipeEvent } from "@coap/pipe";
import { CoapClient, parseCoapUri } from "../client.ts";
import type { CoapRequest, CoapResponse } from "../exchange.ts";
import {
  decodeBlock,
  getOption,
  type Method,
  Option,
  text,
} from "../message.ts";
import {
  parseContextJson,
  SecurityContext,
  WebStorageStore,
} from "../oscore.ts";
import { chartLine } from "./chart.ts";
import {
  type Link,
  LinkFormatError,
  localPath,
  parseLinkFormat,
} from "./link_format.ts";
import {
  codeName,
  contentFormatName,
  describeOptions,
  isError,
  numericValue,
  renderPayload,
} from "./render.ts";

const CHART_POINTS = 60;
const NOTIFICATIONS_KEPT = 100;
const SVG = "http://www.w3.org/2000/svg";

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`The page lacks #${id}`);
  return element as T;
}

function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  content?: string,
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (content !== undefined) element.textContent = content;
  return element;
}

const ui = {
  connectForm: byId<HTMLFormElement>("connect-form"),
  server: byId<HTMLInputElement>("server"),
  target: byId<HTMLInputElement>("target"),
  connect: byId<HTMLButtonElement>("connect"),
  disconnect: byId<HTMLButtonElement>("disconnect"),
  ping: byId<HTMLButtonElement>("ping"),
  state: byId<HTMLParagraphElement>("state"),
  rtt: byId<HTMLParagraphElement>("rtt"),
  discover: byId<HTMLButtonElement>("discover"),
  discovery: byId<HTMLParagraphElement>("discovery"),
  filter: byId<HTMLInputElement>("filter"),
  resourceList: byId<HTMLUListElement>("resource-list"),
  requestForm: byId<HTMLFormElement>("request-form"),
  method: byId<HTMLSelectElement>("method"),
  path: byId<HTMLInputElement>("path"),
  payload: byId<HTMLTextAreaElement>("payload"),
  contentFormat: byId<HTMLSelectElement>("content-format"),
  send: byId<HTMLButtonElement>("send"),
  observe: byId<HTMLButtonElement>("observe"),
  response: byId<HTMLDivElement>("response"),
  responseCode: byId<HTMLSpanElement>("response-code"),
  responseTime: byId<HTMLSpanElement>("response-time"),
  responseError: byId<HTMLParagraphElement>("response-error"),
  responseOptions: byId<HTMLTableElement>("response-options"),
  responseKind: byId<HTMLParagraphElement>("response-kind"),
  responsePayload: byId<HTMLPreElement>("response-payload"),
  noObservations: byId<HTMLParagraphElement>("no-observations"),
  oscore: byId<HTMLDetailsElement>("oscore"),
  oscoreState: byId<HTMLSpanElement>("oscore-state"),
  oscoreContext: byId<HTMLTextAreaElement>("oscore-context"),
  oscoreFile: byId<HTMLInputElement>("oscore-file"),
  oscoreUse: byId<HTMLButtonElement>("oscore-use"),
  oscoreForget: byId<HTMLButtonElement>("oscore-forget"),
  observationList: byId<HTMLDivElement>("observation-list"),
};

/** The connected client, if any. */
let client: CoapClient | undefined;
/** Which request's answer the response panel shows (the newest sent). */
let shownRequest = 0;
/** What the next Pong answers, for the round-trip line. */
let pingVia = "";
const observations = new Set<Observation>();

type State = "idle" | "connecting" | "connected" | "closed" | "error";

function setState(state: State, message: string): void {
  ui.state.dataset.state = state;
  ui.state.textContent = message;
  const connected = state === "connected";
  for (
    const button of [ui.disconnect, ui.ping, ui.discover, ui.send, ui.observe]
  ) {
    button.disabled = !connected;
  }
  for (const button of ui.resourceList.querySelectorAll("button")) {
    button.disabled = !connected;
  }
  ui.connect.disabled = state === "connecting";
}

/** Splits what the path field holds into a path and its query. */
function target(field: string): { path: string; query: string[] } {
  const trimmed = field.trim();
  const [path, query = ""] = trimmed.split(/\?(.*)/s, 2);
  return {
    path: path.startsWith("/") ? path : `/${path}`,
    query: query === "" ? [] : query.split("&"),
  };
}

function describeTarget(
  request: { path: string; query?: readonly string[] | string },
): string {
  const query = typeof request.query === "string"
    ? request.query
    : (request.query ?? []).join("&");
  return request.path + (query ? `?${query}` : "");
}

function reasonOf(exception: unknown): string {
  const reason = exception instanceof Error
    ? exception.message
    : String(exception);
  // A browser says nothing of why: a refused upgrade and a port where
  // nothing listens look the same.
  return /Connection failed before it opened/.test(reason)
    ? `${reason}. Nothing may be listening there, or the server refused this page: a CoAP server checks a page's Origin (start ours with --origin ${location.origin} to let this page in)`
    : reason;
}

// --- Connection ---------------------------------------------------------

/** Counts connects: a connect overtaken by a later one lets go of its own. */
let attempt = 0;

async function connect(uri: string): Promise<void> {
  const mine = ++attempt;
  try {
    parseCoapUri(uri);
  } catch (error) {
    setState("error", reasonOf(error));
    return;
  }
  client?.close();
  client = undefined;
  setState("connecting", `Connecting to ${uri}…`);
  ui.rtt.textContent = "";
  let connected: CoapClient;
  try {
    connected = await CoapClient.connect(uri, {
      onPong: (rtt) => {
        ui.rtt.textContent = `Pong after ${rtt.toFixed(1)} ms${pingVia}`;
      },
    });
  } catch (error) {
    if (mine === attempt) setState("closed", reasonOf(error));
    return;
  }
  if (mine !== attempt) {
    connected.close();
    return;
  }
  client = connected;
  const { maxMessageSize, blockWise } = connected.peer;
  setState(
    "connected",
    `Connected to ${uri}. The server's CSM: Max-Message-Size ${maxMessageSize} bytes; ${
      blockWise
        ? "Block-Wise-Transfer offered: blocks, and BERT"
        : "no Block-Wise-Transfer option: blocks, but no BERT"
    }.`,
  );
  connected.closed.then((reason) => {
    if (client !== connected) return;
    client = undefined;
    // The reasons read as sentences: "Connection closed by the peer (1006)".
    setState("closed", reason.message);
    ui.rtt.textContent = "";
  });
  await discover();
}

function ping(): void {
  if (client === undefined) return;
  const open = [...observations].filter((o) => o.open);
  ui.rtt.textContent = "Ping sent…";
  if (open.length > 0) {
    // A poke asks each observation's responder (the connection) for a life
    // sign; the connection sends one Ping for them all and reports its Pong.
    pingVia = `, poking ${open.length} open observation${
      open.length === 1 ? "" : "s"
    }`;
    for (const observation of open) observation.poke();
  } else {
    pingVia = " (no observation open to poke: a Ping on the connection)";
    client.ping().catch((error) => {
      ui.rtt.textContent = `Ping failed: ${reasonOf(error)}`;
    });
  }
}

// --- Through a proxy ----------------------------------------------------

/**
 * The request as it goes out: with a target in the field, to the proxy,
 * naming the target's resource as Proxy-Uri (RFC 7252 §5.7).
 */
function viaProxy(request: CoapRequest): CoapRequest {
  const through = ui.target.value.trim().replace(/\/+$/, "");
  if (through === "") return request;
  const query = typeof request.query === "string"
    ? request.query
    : (request.query ?? []).join("&");
  return {
    ...request,
    path: "/",
    query: [],
    proxyUri: `${through}${request.path}${query ? `?${query}` : ""}`,
  };
}

// --- OSCORE ---------------------------------------------------------------

/** The security context requests are protected with, if one is in use. */
let security: SecurityContext | undefined;
const OSCORE_KEY = "coap-explorer:oscore";

/** The request's options: its OSCORE context, when one is in use. */
function protection(): { oscore?: SecurityContext } {
  return security === undefined ? {} : { oscore: security };
}

function idText(id: Uint8Array): string {
  return id.length === 0
    ? "(empty)"
    : [...id].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Takes a context in aiocoap's settings.json form: derived here (WebCrypto),
 * its sequence number kept in localStorage under a key of its own, and the
 * context itself kept for the next visit.
 */
async function useContext(json: string): Promise<void> {
  let context: SecurityContext;
  try {
    const init = parseContextJson(JSON.parse(json));
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode(json)),
    );
    context = await SecurityContext.create({
      ...init,
      store: new WebStorageStore(
        localStorage,
        `${OSCORE_KEY}:sequence:${idText(digest.subarray(0, 8))}`,
      ),
    });
  } catch (error) {
    ui.oscoreState.textContent = `not used: ${reasonOf(error)}`;
    ui.oscoreState.dataset.state = "error";
    return;
  }
  security = context;
  localStorage.setItem(OSCORE_KEY, json);
  ui.oscoreContext.value = json;
  ui.oscoreState.dataset.state = "on";
  ui.oscoreState.textContent = `on: Sender ID ${
    idText(context.senderId)
  }, Recipient ID ${
    idText(context.recipientId)
  }; requests are protected end to end (from sequence number ${context.sequence})`;
}

function forgetContext(): void {
  security = undefined;
  localStorage.removeItem(OSCORE_KEY);
  ui.oscoreContext.value = "";
  ui.oscoreState.dataset.state = "off";
  ui.oscoreState.textContent = "off: requests go as they are";
}

/** Where requests go, for the page's lines: "" or " on coap://…". */
function onTarget(): string {
  const through = ui.target.value.trim();
  return through === "" ? "" : ` of ${through}, through the proxy`;
}

// --- Discovery ----------------------------------------------------------

/** One request, one answer: the response, or the exception that ended it. */
async function once(
  request: CoapRequest,
): Promise<{ response: CoapResponse } | { exception: unknown }> {
  if (client === undefined) {
    return { exception: new Error("Not connected") };
  }
  for await (
    const event of client.request(viaProxy(request), protection())
  ) {
    if (event.kind === "response") return { response: event.message };
    if (event.kind === "exception") return { exception: event.exception };
  }
  return { exception: new Error("The request ended without a response") };
}

async function discover(): Promise<void> {
  ui.discovery.className = "muted";
  // RFC 6690 §4.1: one name=value filter the server applies.
  const filter = ui.filter.value.trim();
  const query = filter === "" ? [] : [filter];
  ui.discovery.textContent = `Asking GET /.well-known/core${
    filter === "" ? "" : `?${filter}`
  }${onTarget()}…`;
  ui.resourceList.replaceChildren();
  const asked = client;
  const outcome = await once({
    method: "GET",
    path: "/.well-known/core",
    query,
  });
  // A listing that arrives after its connection was replaced is stale.
  if (client !== asked) return;
  if ("exception" in outcome) {
    showDiscoveryError(`Discovery failed: ${reasonOf(outcome.exception)}`);
    return;
  }
  const { response } = outcome;
  if (isError(response.code)) {
    // A diagnostic that begins with the code's name ("Forbidden: …") is
    // not made to say it twice.
    const name = codeName(response.code);
    const diagnostic = text(response.payload);
    const rest = diagnostic.startsWith(`${name.slice(5)}: `)
      ? diagnostic.slice(name.length - 5 + 2)
      : diagnostic;
    showDiscoveryError(
      `GET /.well-known/core answered ${name}${rest ? `: ${rest}` : ""}`,
    );
    return;
  }
  let links: Link[];
  try {
    links = parseLinkFormat(text(response.payload));
  } catch (error) {
    showDiscoveryError(
      error instanceof LinkFormatError
        ? `The server's /.well-known/core is not link format: ${error.message}`
        : reasonOf(error),
    );
    return;
  }
  const local = links.filter((link) => localPath(link.target) !== undefined);
  ui.discovery.textContent = `${local.length} resource${
    local.length === 1 ? "" : "s"
  }, ${local.filter((l) => l.observable).length} observable${
    query.length === 0 ? "" : `, matching ${filter}`
  }.`;
  ui.resourceList.replaceChildren(...links.map(resourceItem));
}

function showDiscoveryError(message: string): void {
  ui.discovery.className = "error";
  ui.discovery.textContent = message;
}

function resourceItem(link: Link): HTMLLIElement {
  const item = make("li");
  const path = localPath(link.target);
  if (path === undefined) {
    item.append(make("span", "elsewhere", link.target));
    item.append(make("span", "badge", "elsewhere"));
  } else {
    item.dataset.path = path;
    const button = make("button", "target", path);
    button.type = "button";
    button.title = `GET ${path}`;
    button.addEventListener("click", () => {
      select(path);
      void send();
    });
    item.append(button);
  }
  if (link.observable) item.append(make("span", "badge obs", "observable"));
  const attributes: [string, string][] = [
    ...(link.title === undefined
      ? []
      : [["title", link.title]] as [string, string][]),
    ...link.resourceTypes.map((rt) => ["rt", rt] as [string, string]),
    ...link.interfaces.map((i) => ["if", i] as [string, string]),
    ...link.contentFormats.map((ct) =>
      ["ct", contentFormatName(ct)] as [string, string]
    ),
    ...(link.size === undefined
      ? []
      : [["sz", `${link.size} bytes`]] as [string, string][]),
    ...link.params.filter(([name]) =>
      !["title", "rt", "if", "ct", "obs", "sz"].includes(name)
    ).map(([name, value]) =>
      [name, value === true ? "" : value] as [string, string]
    ),
  ];
  for (const [name, value] of attributes) {
    item.append(
      make("span", "badge", value === "" ? name : `${name}: ${value}`),
    );
  }
  if (link.observable && path !== undefined) {
    const observe = make("button", "observe", "Observe");
    observe.type = "button";
    observe.addEventListener("click", () => {
      select(path);
      startObservation(path);
    });
    item.append(observe);
  }
  return item;
}

function select(path: string): void {
  ui.path.value = path;
  ui.method.value = "GET";
  highlight(path);
}

/** Marks the listed resource whose path the path field holds, if any. */
function highlight(path: string): void {
  for (const li of ui.resourceList.children) {
    (li as HTMLElement).classList.toggle(
      "selected",
      (li as HTMLElement).dataset.path === path,
    );
  }
}

// --- Requests -----------------------------------------------------------

function requestFromForm(): CoapRequest {
  const { path, query } = target(ui.path.value);
  const method = ui.method.value as Method;
  const withBody = method === "POST" || method === "PUT";
  const format = ui.contentFormat.value;
  return {
    method,
    path,
    query,
    ...(withBody ? { payload: ui.payload.value } : {}),
    ...(withBody && format !== "" ? { contentFormat: Number(format) } : {}),
  };
}

async function send(): Promise<void> {
  if (client === undefined) return;
  const request = requestFromForm();
  const number = ++shownRequest;
  ui.response.hidden = false;
  ui.responseCode.textContent = `${request.method} ${describeTarget(request)}…`;
  ui.responseCode.className = "code";
  ui.responseTime.textContent = "";
  ui.responseError.hidden = true;
  ui.responseOptions.replaceChildren();
  ui.responseKind.textContent = "";
  ui.responsePayload.textContent = "";
  const started = performance.now();
  let outcome: Awaited<ReturnType<typeof once>>;
  try {
    outcome = await once(request);
  } catch (error) {
    // A request the client refuses (a payload too large, say).
    outcome = { exception: error };
  }
  if (number !== shownRequest) return;
  const took = `${request.method} ${describeTarget(request)} took ${
    (performance.now() - started).toFixed(1)
  } ms`;
  ui.responseTime.textContent = took;
  if ("exception" in outcome) {
    ui.responseCode.textContent = "No response";
    ui.responseCode.className = "code failed";
    ui.responseError.hidden = false;
    ui.responseError.textContent = `The request failed: ${
      reasonOf(outcome.exception)
    }`;
    return;
  }
  showResponse(outcome.response);
}

function showResponse(response: CoapResponse): void {
  const failed = isError(response.code);
  ui.responseCode.textContent = codeName(response.code);
  ui.responseCode.className = failed ? "code failed" : "code";
  if (failed) {
    ui.responseError.hidden = false;
    ui.responseError.textContent = `The server answered with an error: ${
      codeName(response.code)
    }${
      response.code.startsWith("4.")
        ? " (the request was refused)"
        : " (the server failed)"
    }`;
  }
  ui.responseOptions.replaceChildren(
    ...describeOptions(response.options).map(([name, value]) => {
      const row = make("tr");
      row.append(make("td", undefined, name), make("td", undefined, value));
      return row;
    }),
  );
  const rendered = renderPayload(response.payload, response.contentFormat);
  // The options are the first block's; say that the body is whole.
  const block = getOption(response, Option.BLOCK2);
  const blocks = block !== undefined && decodeBlock(block).more
    ? ", reassembled from its blocks"
    : "";
  ui.responseKind.textContent = rendered.kind === "empty"
    ? "No payload"
    : `Payload: ${response.payload.length} byte${
      response.payload.length === 1 ? "" : "s"
    }${blocks}, shown as ${rendered.kind}${
      rendered.note ? ` (${rendered.note})` : ""
    }`;
  ui.responsePayload.textContent = rendered.text;
  ui.responsePayload.hidden = rendered.kind === "empty";
}

// --- Observations -------------------------------------------------------

function clock(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${
    pad(date.getSeconds())
  }.${pad(date.getMilliseconds(), 3)}`;
}

/** One observation and its card on the page. */
class Observation {
  readonly #events: AsyncIterableIterator<PipeEvent<CoapResponse>>;
  readonly #poke: () => void;
  readonly #card = make("article", "observation");
  readonly #status = make("span", "status");
  readonly #count = make("span", "count muted");
  readonly #button = make("button", "stop", "Stop");
  readonly #chart = document.createElementNS(SVG, "svg");
  readonly #line = document.createElementNS(SVG, "polyline");
  readonly #range = make("span", "range");
  readonly #list = make("ol", "notifications");
  readonly #values: number[] = [];
  #notifications = 0;
  #stopped = false;
  #open = true;

  constructor(active: CoapClient, path: string, query: string[]) {
    const pipe = active.request(
      viaProxy({ method: "GET", path, query, observe: true }),
      protection(),
    );
    this.#events = pipe[Symbol.asyncIterator]();
    this.#poke = () => pipe.poke();
    const where = describeTarget({ path, query });
    this.#card.dataset.path = where;
    const header = make("header");
    this.#button.type = "button";
    this.#button.addEventListener("click", () => this.stop());
    header.append(
      make("span", "path", where),
      this.#status,
      this.#count,
      this.#button,
    );
    this.#chart.setAttribute("class", "chart empty");
    this.#chart.setAttribute("viewBox", "0 0 300 80");
    this.#chart.setAttribute("preserveAspectRatio", "none");
    this.#chart.setAttribute("role", "img");
    this.#chart.setAttribute("aria-label", `Numeric values of ${where}`);
    this.#chart.append(this.#line);
    this.#card.append(header, this.#chart, this.#range, this.#list);
    this.#setStatus("observing", "observing");
    this.#showCount();
    ui.observationList.prepend(this.#card);
    ui.noObservations.hidden = true;
    observations.add(this);
    void this.#run();
  }

  get open(): boolean {
    return this.#open;
  }

  poke(): void {
    this.#poke();
  }

  /** Leaves the loop: interest ends, and the client deregisters. */
  stop(): void {
    if (!this.#open) {
      this.#card.remove();
      observations.delete(this);
      ui.noObservations.hidden = observations.size !== 0;
      return;
    }
    this.#stopped = true;
    // return() settles the next() the loop waits on with done.
    void this.#events.return?.();
  }

  async #run(): Promise<void> {
    let ending = "";
    let last: CoapResponse | undefined;
    try {
      for await (const event of this.#events) {
        if (event.kind === "exception") {
          ending = `ended: ${reasonOf(event.exception)}`;
          break;
        }
        if (event.kind !== "response") continue;
        last = event.message;
        this.#notify(event.message);
      }
    } catch (error) {
      // Showing a notification failed; leaving the loop deregistered.
      ending = `ended: the page failed to show a notification (${
        reasonOf(error)
      })`;
    }
    if (ending !== "") this.#setStatus("failed", ending);
    this.#open = false;
    this.#button.textContent = "Remove";
    if (ending !== "") return;
    if (this.#stopped) {
      this.#setStatus("stopped", "stopped: deregistered at the server");
    } else if (last !== undefined && last.observe === undefined) {
      this.#setStatus(
        isError(last.code) ? "failed" : "stopped",
        `ended: the server answered ${codeName(last.code)} without observing`,
      );
    } else {
      this.#setStatus("stopped", "ended by the server");
    }
  }

  #notify(response: CoapResponse): void {
    this.#notifications++;
    this.#showCount();
    const rendered = renderPayload(response.payload, response.contentFormat);
    const item = make("li");
    const shown = rendered.text.length > 200
      ? `${rendered.text.slice(0, 200)}…`
      : rendered.text;
    item.append(
      make("time", undefined, clock(new Date())),
      make(
        "span",
        "seq",
        response.observe === undefined ? "" : `#${response.observe}`,
      ),
      make("span", "code", response.code),
      make("span", "value", shown),
    );
    if (isError(response.code)) item.className = "error";
    this.#list.prepend(item);
    while (this.#list.children.length > NOTIFICATIONS_KEPT) {
      this.#list.lastElementChild!.remove();
    }
    const value = numericValue(response.payload);
    if (value === undefined) return;
    this.#values.push(value);
    if (this.#values.length > CHART_POINTS) this.#values.shift();
    const line = chartLine(this.#values, 300, 80)!;
    this.#line.setAttribute("points", line.points);
    this.#chart.setAttribute("class", "chart");
    this.#card.dataset.points = String(this.#values.length);
    this.#range.textContent =
      `last ${value} · min ${line.min} · max ${line.max} (${this.#values.length} values)`;
  }

  #showCount(): void {
    this.#count.textContent = `${this.#notifications} notification${
      this.#notifications === 1 ? "" : "s"
    }`;
    this.#card.dataset.count = String(this.#notifications);
  }

  #setStatus(state: string, message: string): void {
    this.#status.dataset.state = state;
    this.#status.textContent = message;
    this.#card.dataset.state = state;
  }
}

function startObservation(field: string): void {
  if (client === undefined) return;
  const { path, query } = target(field);
  try {
    new Observation(client, path, query);
  } catch (error) {
    // A request the client refuses before sending (a path segment that
    // does not fit an option, say).
    ui.response.hidden = false;
    ui.responseCode.textContent = "Not sent";
    ui.responseCode.className = "code failed";
    ui.responseTime.textContent = "";
    ui.responseError.hidden = false;
    ui.responseError.textContent = `Cannot observe ${
      describeTarget({ path, query })
    }: ${reasonOf(error)}`;
  }
}

// --- Wiring -------------------------------------------------------------

ui.connectForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void connect(ui.server.value.trim());
});
ui.disconnect.addEventListener("click", () => client?.close());
ui.ping.addEventListener("click", ping);
ui.discover.addEventListener("click", () => void discover());
ui.filter.addEventListener("change", () => {
  if (!ui.discover.disabled) void discover();
});
ui.requestForm.addEventListener("submit", (event) => {
  event.preventDefault();
  void send();
});
ui.observe.addEventListener("click", () => startObservation(ui.path.value));
ui.path.addEventListener("input", () => highlight(target(ui.path.value).path));
ui.oscoreUse.addEventListener("click", () => {
  void useContext(ui.oscoreContext.value.trim());
});
ui.oscoreForget.addEventListener("click", forgetContext);
ui.oscoreFile.addEventListener("change", async () => {
  const file = ui.oscoreFile.files?.[0];
  if (file !== undefined) await useContext((await file.text()).trim());
});
// A context kept from an earlier visit is used again.
const kept = localStorage.getItem(OSCORE_KEY);
if (kept !== null) await useContext(kept);

const preset = new URLSearchParams(location.search).get("server");
if (preset !== null) ui.server.value = preset;
const presetTarget = new URLSearchParams(location.search).get("target");
if (presetTarget !== null) ui.target.value = presetTarget;
setState("idle", "Not connected");
// A link that names a server is a link to that server: connect at once.
if (preset !== null && preset !== "") void connect(preset);
