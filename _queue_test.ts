import { assertEquals } from "@std/assert";
import { Queue } from "./_queue.ts";
import { test } from "./testing/suite.ts";

test("Queue keeps order across chunk boundaries", () => {
  const queue = new Queue<number>();
  const got: number[] = [];
  let next = 0;
  // Interleave pushes and shifts so the head crosses many chunks while the
  // queue never runs empty.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 300; i++) queue.push(next++);
    for (let i = 0; i < 250; i++) got.push(queue.shift());
  }
  assertEquals(queue.size, 50 * 50);
  while (queue.size) got.push(queue.shift());
  assertEquals(got, Array.from({ length: next }, (_, i) => i));
  queue.push(7);
  assertEquals([queue.size, queue.shift(), queue.size], [1, 7, 0]);
});

test("Queue.clear() empties the queue for reuse", () => {
  const queue = new Queue<string>();
  for (let i = 0; i < 3000; i++) queue.push(`${i}`);
  queue.clear();
  assertEquals(queue.size, 0);
  queue.push("a");
  queue.push("b");
  assertEquals([queue.shift(), queue.shift(), queue.size], ["a", "b", 0]);
});
