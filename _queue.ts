// This module is browser compatible.
// Internal: the FIFO behind IterablePipe; not part of the public API.

/** What an empty queue holds: shared, never written to. */
const NONE: never[] = [];

/**
 * A FIFO queue: an array read from a moving head. `push` and `shift` are
 * amortized O(1): once the read part is at least half of the array, the
 * unread rest is copied to a new array (each item is copied at most once per
 * halving), so a queue that never runs empty does not grow with its history,
 * unlike `Array.prototype.shift` (O(n) each) or a head that never moves back.
 * An empty queue holds no array of its own.
 */
export class Queue<T> {
  #items: (T | undefined)[] = NONE;
  #head = 0;

  /** The number of items in the queue. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** The length of the array in use, read part included (for tests). */
  get held(): number {
    return this.#items.length;
  }

  push(item: T): void {
    if (this.#items === NONE) this.#items = [item];
    else this.#items.push(item);
  }

  /** Removes and returns the oldest item; the queue must not be empty. */
  shift(): T {
    const items = this.#items;
    const item = items[this.#head] as T;
    items[this.#head++] = undefined;
    if (this.#head * 2 >= items.length) {
      this.#items = this.#head === items.length
        ? NONE
        : items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}
