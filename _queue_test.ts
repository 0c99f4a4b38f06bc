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

test("Queue grows its chunks from 16, doubling up to 1024, and lets drained chunks go", () => {
  const queue = new Queue<number>();
  assertEquals(queue.chunks, []);
  for (let i = 0; i < 16; i++) queue.push(i);
  assertEquals(queue.chunks, [16]);
  queue.push(16);
  assertEquals(queue.chunks, [16, 32]);
  for (let i = 17; i < 5000; i++) queue.push(i);
  assertEquals(queue.chunks, [
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    1024,
    1024,
    1024,
  ]);
  for (let i = 0; i < 16; i++) queue.shift();
  assertEquals(queue.chunks.slice(0, 2), [32, 64]);
  while (queue.size > 0) queue.shift();
  // The last chunk stays, emptied, for the next push.
  assertEquals(queue.chunks, [1024]);
  queue.clear();
  assertEquals(queue.chunks, []);
});

test("Queue instances never share a chunk", () => {
  const a = new Queue<string>(), b = new Queue<string>();
  a.push("a1");
  b.push("b1");
  a.push("a2");
  assertEquals([a.shift(), b.shift(), a.shift()], ["a1", "b1", "a2"]);
  assertEquals([a.size, b.size], [0, 0]);
});
