// This module is browser compatible.
// Internal: the FIFO behind IterablePipe; not part of the public API.

/** The first chunk's size; each further chunk doubles, up to the largest. */
const FIRST = 16;
const LARGEST = 1024;

/** A class, so every chunk shares one shape and property access stays fast. */
class Chunk<T> {
  readonly items: (T | undefined)[];
  /** The next slot to shift from. */
  read = 0;
  /** The next slot to push into. */
  write = 0;
  next: Chunk<T> | undefined = undefined;

  constructor(size: number) {
    this.items = new Array(size);
  }
}

/** Where an empty queue starts; it is full, so the first push replaces it. */
const NO_CHUNK = /* @__PURE__ */ new Chunk<never>(0);

/**
 * A FIFO queue of preallocated chunks: `push` and `shift` are O(1) however
 * long the queue gets, nothing is ever copied, and drained chunks are let go
 * at once, so a queue that never runs empty does not grow with its history
 * (unlike `Array.prototype.shift`, or an array with a moving head index).
 */
export class Queue<T> {
  #head: Chunk<T> = NO_CHUNK;
  #tail: Chunk<T> = NO_CHUNK;
  #size = 0;

  /** The number of items in the queue. */
  get size(): number {
    return this.#size;
  }

  /** The capacity of each chunk in use, head first (for tests). */
  get chunks(): number[] {
    const sizes: number[] = [];
    for (
      let chunk: Chunk<T> | undefined = this.#head;
      chunk !== undefined && chunk !== NO_CHUNK;
      chunk = chunk.next
    ) {
      sizes.push(chunk.items.length);
    }
    return sizes;
  }

  push(item: T): void {
    let tail = this.#tail;
    if (tail.write === tail.items.length) {
      const chunk = new Chunk<T>(
        tail.write === 0
          ? FIRST
          : tail.write < LARGEST
          ? tail.write * 2
          : LARGEST,
      );
      if (this.#size === 0) this.#head = chunk;
      else tail.next = chunk;
      tail = this.#tail = chunk;
    }
    tail.items[tail.write++] = item;
    this.#size++;
  }

  /** Removes and returns the oldest item; the queue must not be empty. */
  shift(): T {
    const head = this.#head;
    const item = head.items[head.read] as T;
    head.items[head.read++] = undefined;
    this.#size--;
    if (head.read === head.write) {
      // A drained chunk that is not the last is full: drop it. The last one
      // is reused from its start.
      if (head.next !== undefined) this.#head = head.next;
      else head.read = head.write = 0;
    }
    return item;
  }

  clear(): void {
    this.#head = this.#tail = NO_CHUNK;
    this.#size = 0;
  }
}
