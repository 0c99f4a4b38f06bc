import { assertEquals, assertThrows } from "@std/assert";
import { LinkFormatError, localPath, parseLinkFormat } from "./link_format.ts";

// What aiocoap 0.4.11's peer (../shared/peers) serves at /.well-known/core.
const AIOCOAP =
  '</.well-known/core>;ct="40",</>,</time>;obs,</other/block>,</other/separate>;title="A large resource",</whoami>,</counter>;obs,</observers>,</echo>,</fail>,</slow>,</big>,<https://christian.amsuess.com/tools/aiocoap/#version-0.4.11>;rel="impl-info"';

Deno.test("parseLinkFormat() reads aiocoap's listing: targets, obs, ct, title, rel", () => {
  const links = parseLinkFormat(AIOCOAP);
  assertEquals(links.map((l) => l.target), [
    "/.well-known/core",
    "/",
    "/time",
    "/other/block",
    "/other/separate",
    "/whoami",
    "/counter",
    "/observers",
    "/echo",
    "/fail",
    "/slow",
    "/big",
    "https://christian.amsuess.com/tools/aiocoap/#version-0.4.11",
  ]);
  assertEquals(
    links.filter((l) => l.observable).map((l) => l.target),
    ["/time", "/counter"],
  );
  assertEquals(links[0].contentFormats, [40]);
  assertEquals(links[4].title, "A large resource");
  assertEquals(links[12].params, [["rel", "impl-info"]]);
  assertEquals(links[1], {
    target: "/",
    params: [],
    resourceTypes: [],
    interfaces: [],
    contentFormats: [],
    observable: false,
  });
});

Deno.test("parseLinkFormat() splits rt, if and ct lists and keeps every parameter in order", () => {
  const [link] = parseLinkFormat(
    '</s/t> ; rt="temperature-c oic.r.temp" ;if=sensor; ct="0 50  60"; obs ; sz=12; Foo=bar; title="say \\"hi\\", then go"',
  );
  assertEquals(link, {
    target: "/s/t",
    params: [
      ["rt", "temperature-c oic.r.temp"],
      ["if", "sensor"],
      ["ct", "0 50  60"],
      ["obs", true],
      ["sz", "12"],
      ["foo", "bar"],
      ["title", 'say "hi", then go'],
    ],
    resourceTypes: ["temperature-c", "oic.r.temp"],
    interfaces: ["sensor"],
    contentFormats: [0, 50, 60],
    observable: true,
    title: 'say "hi", then go',
    size: 12,
  });
});

Deno.test("parseLinkFormat() allows whitespace between links and ignores ct values that are not formats", () => {
  const links = parseLinkFormat(' </a>;ct=abc,\r\n  </b>;ct="1 99999 7" \n');
  assertEquals(links.map((l) => [l.target, l.contentFormats]), [
    ["/a", []],
    ["/b", [1, 7]],
  ]);
  assertEquals(parseLinkFormat(""), []);
  assertEquals(parseLinkFormat("  \n"), []);
});

Deno.test("parseLinkFormat() names the fault and where it is", () => {
  const cases: [string, string][] = [
    ["/a", 'Expected "<" to start a link at offset 0'],
    ["</a", "Unterminated link target at offset 0"],
    ["</a b>", "Invalid character in link target at offset 1"],
    ['</a>;title="x', "Unterminated quoted string at offset 11"],
    ['</a>;title="x\\', "Unterminated quoted string at offset 11"],
    ["</a>;=1", "Expected a parameter name at offset 5"],
    ["</a>;ct=", "Expected a value for ct at offset 8"],
    ["</a>;ct=,</b>", "Expected a value for ct at offset 8"],
    ["</a> </b>", 'Expected "," or ";" after a link at offset 5'],
    ["</a>,", 'Expected "<" to start a link at offset 5'],
    ["</a>,,</b>", 'Expected "<" to start a link at offset 5'],
  ];
  for (const [text, message] of cases) {
    const error = assertThrows(() => parseLinkFormat(text), LinkFormatError);
    assertEquals([text, error.message], [text, message]);
  }
  assertThrows(
    () => parseLinkFormat(42 as unknown as string),
    TypeError,
    "Cannot parse link format: expected a string, got number",
  );
});

Deno.test("localPath() resolves targets on the listing server and refuses the rest", () => {
  assertEquals(
    [
      "/time",
      "time",
      "/a/b?x=1",
      "../up",
      "",
      "https://example.com/",
      "coap://other/x",
      "//host/x",
    ].map(localPath),
    [
      "/time",
      "/.well-known/time",
      "/a/b?x=1",
      "/up",
      "/.well-known/core",
      undefined,
      undefined,
      undefined,
    ],
  );
});
