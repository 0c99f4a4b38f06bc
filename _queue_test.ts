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

test("Queue lets the read part go once it is half the array, and holds nothing when empty", () => {
  const queue = new Queue<number>();
  assertEquals(queue.held, 0);
  for (let i = 0; i < 1000; i++) queue.push(i);
  assertEquals(queue.held, 1000);
  for (let i = 0; i < 499; i++) queue.shift();
  assertEquals([queue.size, queue.held], [501, 1000]);
  assertEquals(queue.shift(), 499); // the read part reaches half: copied
  assertEquals([queue.size, queue.held], [500, 500]);
  // A queue that never runs empty stays within twice its size.
  let most = 0;
  for (let i = 0; i < 100_000; i++) {
    queue.push(i);
    queue.shift();
    most = Math.max(most, queue.held);
  }
  assertEquals([queue.size, most <= 2 * 500 + 1], [500, true]);
  while (queue.size > 0) queue.shift();
  assertEquals(queue.held, 0);
  queue.push(1);
  queue.shift();
  assertEquals([queue.size, queue.held], [0, 0]);
});
