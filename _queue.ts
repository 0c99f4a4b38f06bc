// This module is browser compatible.
// Internal: the FIFO behind IterablePipe; not part of the public API.

/** Items per chunk: big enough to amortize, small enough to free early. */
const CHUNK = 1024;

interface Chunk<T> {
  items: (T | undefined)[];
  next: Chunk<T> | undefined;
}

/**
 * A FIFO queue of fixed-size chunks: `push` and `shift` are O(1) however
 * long the queue gets, nothing is ever copied, and drained chunks are let go
 * at once, so a queue that never runs empty does not grow with its history
 * (unlike `Array.prototype.shift`, or an array with a moving head index).
 */
export class Queue<T> {
  #head: Chunk<T> = { items: [], next: undefined };
  #tail: Chunk<T> = this.#head;
  /** Index of the next item to shift from `#head.items`. */
  #read = 0;
  #size = 0;

  /** The number of items in the queue. */
  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    let tail = this.#tail;
    if (tail.items.length === CHUNK) {
      tail = this.#tail = tail.next = { items: [], next: undefined };
    }
    tail.items.push(item);
    this.#size++;
  }

  /** Removes and returns the oldest item; the queue must not be empty. */
  shift(): T {
    const head = this.#head;
    const item = head.items[this.#read] as T;
    head.items[this.#read++] = undefined;
    this.#size--;
    if (this.#read === head.items.length) {
      if (head.next !== undefined) {
        this.#head = head.next;
      } else {
        head.items = [];
      }
      this.#read = 0;
    }
    return item;
  }

  clear(): void {
    this.#head = this.#tail = { items: [], next: undefined };
    this.#read = 0;
    this.#size = 0;
  }
}
