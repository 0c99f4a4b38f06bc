import { assertEquals } from "@std/assert";
import { PokeHandlers } from "./_util.ts";
import { test } from "./testing/suite.ts";

test("PokeHandlers compacts removed handlers once they are more than half of those held", () => {
  const handlers = new PokeHandlers();
  const called: number[] = [];
  const offs = Array.from(
    { length: 10 },
    (_, i) => handlers.add(() => called.push(i)),
  );
  for (const i of [7, 2, 9, 0, 4]) offs[i]();
  assertEquals(handlers.held, 10); // 5 removed of 10: not more than half
  offs[5]();
  assertEquals(handlers.held, 4); // 6 of 10: compacted to the 4 left
  handlers.fire();
  assertEquals(called, [1, 3, 6, 8]);
  offs[1]();
  offs[3]();
  assertEquals(handlers.held, 4); // 2 of 4: not more than half
  offs[6]();
  assertEquals(handlers.held, 1);
  handlers.fire();
  assertEquals(called, [1, 3, 6, 8, 8]);
});

test("PokeHandlers removers are idempotent: a second call counts nothing", () => {
  const handlers = new PokeHandlers();
  const offs = [1, 2, 3].map(() => handlers.add(() => {}));
  offs[0]();
  offs[0]();
  offs[0]();
  assertEquals(handlers.held, 3); // one removal of three, however often called
  offs[1]();
  assertEquals(handlers.held, 1);
});

test("PokeHandlers.clear() lets go of every handler, also those a remover points at", () => {
  const handlers = new PokeHandlers();
  let calls = 0;
  const off = handlers.add(() => calls++);
  handlers.add(() => calls++);
  handlers.clear();
  assertEquals(handlers.held, 0);
  handlers.fire();
  off();
  assertEquals([calls, handlers.held], [0, 0]);
});
