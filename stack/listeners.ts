// This module is browser compatible.

/**
 * The `addEventListener` side of the sockets this stack makes itself
 * (`UdpPeerSocket`, `TcpFrameSocket`): listeners by event type, `once`
 * honoured, and a listener that throws contained, never passed on to what
 * delivered the event (a socket's read, which would end the process).
 *
 * @module
 */

/** Listeners by event type. */
export class Listeners {
  readonly #byType = new Map<
    string,
    Set<{ listener: (event: Event) => void; once: boolean }>
  >();

  /**
   * Adds a listener.
   *
   * @param type The event type.
   * @param listener Called with each event.
   * @param options `once` is honoured.
   */
  add(
    type: string,
    listener: (event: Event) => void,
    options?: AddEventListenerOptions,
  ): void {
    let set = this.#byType.get(type);
    if (set === undefined) this.#byType.set(type, set = new Set());
    set.add({ listener, once: options?.once === true });
  }

  /**
   * Calls every listener of the event's type, in the order they were added.
   *
   * @param event The event.
   * @param onError Told of a listener that threw; the others still run.
   */
  dispatch(event: Event, onError: (error: unknown) => void): void {
    const set = this.#byType.get(event.type);
    if (set === undefined) return;
    for (const entry of [...set]) {
      if (entry.once) set.delete(entry);
      try {
        entry.listener(event);
      } catch (error) {
        onError(error);
      }
    }
  }
}
