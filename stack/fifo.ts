// This module is browser compatible.

/**
 * The queue the stack's flow control keeps messages in: the connection's
 * held messages and a server connection's outbox.
 *
 * @module
 */

/** A FIFO with O(1) push and shift, and no growth with its history. */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** How many items wait. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Adds an item at the end. */
  push(item: T): void {
    this.#items.push(item);
  }

  /**
   * An item left in place: the first, or the one `at` places after it;
   * `undefined` past the last.
   */
  peek(at = 0): T | undefined {
    return this.#items[this.#head + at];
  }

  /** Takes the first item, or `undefined` when there is none. */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) this.clear();
    else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Lets every item go. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
