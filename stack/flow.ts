// This module is browser compatible.

/**
 * Flow control for one server connection: what goes out waits while the
 * transport's queue is above a high-water mark, requests that arrive wait
 * while responses are not being read or too many are being answered, and
 * work is done in slices so that no connection's burst holds the event
 * loop for long. Sans-I/O: it reads the queue size from the connection,
 * keeps time with a {@linkcode Clock}, and never touches a socket.
 *
 * @module
 */

import type { Clock } from "./connection.ts";
import { Fifo } from "./fifo.ts";
import type { CoapMessage } from "./message.ts";

/**
 * The limits of one server connection (and of the server, for
 * observations). Every queue is bounded; each bound has a default.
 */
export interface FlowLimits {
  /**
   * Bytes queued in the transport (a WebSocket's `bufferedAmount`) above
   * which the connection counts as not draining: each observation then
   * holds only its latest notification, final responses wait their turn,
   * and no new request is taken up.
   *
   * @default {65536}
   */
  highWaterMark?: number;
  /**
   * Bytes queued in the transport above which the connection is aborted
   * once they have stayed there for `queueGrace` milliseconds.
   *
   * @default {1048576}
   */
  queueLimit?: number;
  /**
   * How long the queue may stay above `queueLimit`, in milliseconds.
   *
   * @default {5000}
   */
  queueGrace?: number;
  /**
   * Requests answered at once on one connection, observations not counted
   * (they have their own limits). Past it, further requests are held
   * unread until one is answered.
   *
   * @default {256}
   */
  maxConcurrentRequests?: number;
  /**
   * Messages held unread on one connection (while its responses are not
   * read, `maxConcurrentRequests` are being answered, or its slice is
   * used up). One more aborts the connection: a WebSocket cannot stop
   * reading, so a peer that sends without reading would make this side
   * keep all it sends. Held messages stay undecoded, a few hundred bytes
   * each.
   *
   * @default {32768}
   */
  maxHeldMessages?: number;
  /**
   * Observations one connection may hold; past it a registration is
   * answered as a plain GET, without Observe (RFC 7641 §4.1).
   *
   * @default {100}
   */
  maxObservationsPerConnection?: number;
  /**
   * Observations the server holds over all its connections; past it, as
   * past the per-connection limit.
   *
   * @default {20000}
   */
  maxObservations?: number;
  /**
   * The longest a connection's work runs before it yields to others, in
   * milliseconds: the rest of its burst goes on in a later task.
   *
   * @default {4}
   */
  sliceMs?: number;
  /**
   * Bytes of messages held unread over all of the server's connections
   * (`maxHeldMessages` bounds each one's count). Past it, the connection
   * holding the most is aborted, and what it held let go.
   *
   * @default {33554432} (32 MiB)
   */
  maxHeldBytes?: number;
  /**
   * Connections the server serves at once; an adapter refuses the upgrade
   * of one more with 503.
   *
   * @default {4096}
   */
  maxConnections?: number;
  /**
   * Connections from one address at once, where the adapter knows the
   * address (Deno's does); past it, 503.
   *
   * @default {256}
   */
  maxConnectionsPerAddress?: number;
  /**
   * The largest request body a block-wise upload (Block1, RFC 7959 §2.5)
   * reassembles to, in bytes: past it, or when Size1 announces more, the
   * upload is answered 4.13 Request Entity Too Large with this as Size1.
   *
   * @default {1048576} (1 MiB)
   */
  maxBodySize?: number;
  /**
   * Block-wise uploads in progress on one connection (one peer, over
   * UDP). One more replaces the connection's oldest, whose next block is
   * then answered 4.08 Request Entity Incomplete.
   *
   * @default {4}
   */
  maxUploadsPerConnection?: number;
  /**
   * Bytes that uploads in progress, and answers kept for their block-wise
   * follow-ups (a POST's or PUT's answer fetched block by block), hold
   * over all of the server's connections. Past it, a block that would
   * hold more is answered 5.03 Service Unavailable, and an answer that is
   * not kept is made again for each block asked.
   *
   * @default {16777216} (16 MiB)
   */
  maxUploadBytes?: number;
  /**
   * How long an upload waits for its next block, and a kept answer for
   * its next follow-up, in milliseconds, before it is let go.
   *
   * @default {60000}
   */
  uploadTimeout?: number;
}

/** The limits with every default filled in. */
export type ResolvedLimits = Readonly<Required<FlowLimits>>;

/** The defaults of {@linkcode FlowLimits}. */
export const DEFAULT_LIMITS: ResolvedLimits = Object.freeze({
  highWaterMark: 65_536,
  queueLimit: 1_048_576,
  queueGrace: 5_000,
  maxConcurrentRequests: 256,
  maxHeldMessages: 32_768,
  maxObservationsPerConnection: 100,
  maxObservations: 20_000,
  sliceMs: 4,
  maxHeldBytes: 33_554_432,
  maxConnections: 4_096,
  maxConnectionsPerAddress: 256,
  maxBodySize: 1_048_576,
  maxUploadsPerConnection: 4,
  maxUploadBytes: 16_777_216,
  uploadTimeout: 60_000,
});

/**
 * Checks limits and fills in the defaults.
 *
 * @param limits The limits given.
 * @returns Every limit.
 * @throws {RangeError} If a limit is not a positive number (an integer,
 * for counts and byte sizes).
 */
export function resolveLimits(limits: FlowLimits = {}): ResolvedLimits {
  const out: Record<string, number> = { ...DEFAULT_LIMITS };
  for (const [name, value] of Object.entries(limits)) {
    if (!(name in DEFAULT_LIMITS)) {
      throw new TypeError(`Cannot use limits: unknown limit ${name}`);
    }
    if (value === undefined) continue;
    const integer = name !== "sliceMs" && name !== "queueGrace" &&
      name !== "uploadTimeout";
    if (
      typeof value !== "number" || !(value > 0) ||
      (integer && !Number.isInteger(value) && value !== Infinity)
    ) {
      throw new RangeError(
        `Cannot use limits: ${name} must be a positive ${
          integer ? "integer" : "number"
        }, got ${String(value)}`,
      );
    }
    out[name] = value;
  }
  return Object.freeze(out) as ResolvedLimits;
}

/** Something waiting to go out: it sends what it holds when flushed. */
export interface Outgoing {
  /** Sends the pending message, if it still has one. */
  flush(): void;
}

/** What the flow needs of its connection. */
export interface FlowLink {
  /** Bytes queued in the transport. */
  readonly queued: number;
  /**
   * Bytes handed to the transport so far. With it, the flow reads `queued`
   * only when what was queued at the last read plus what was written since
   * could have reached the high-water mark; without it, at every check.
   */
  readonly written?: number;
  /** Whether the connection has closed. */
  readonly closed: boolean;
  /** The most messages held at once while paused. */
  readonly mostHeld: number;
  /** Aborts the connection with a diagnostic. */
  abort(diagnostic: string): void;
  /**
   * Contains an error that escaped the flow's work on a timer: logs it and
   * aborts the connection.
   */
  fault(error: unknown): void;
  /** Takes up a request (it was held, or may be taken at once). */
  process(message: CoapMessage): void;
  /** Stops taking up what arrives: it is held, undecoded. */
  pause(): void;
  /** Takes up what was held, until paused again. */
  resume(): void;
}

/** What one connection's flow did, for its closing log line. */
export interface FlowReport {
  /** Notifications replaced by a newer one before they went out. */
  skipped: number;
  /** Registrations answered without Observe, past a limit. */
  unobserved: number;
  /** How often reading paused. */
  pauses: number;
  /** The most messages held at once. */
  mostHeld: number;
  /** The most bytes the transport had queued when the flow looked. */
  mostQueued: number;
}

/** How often a connection that does not drain is looked at again. */
const POLL_MS = 10;
/** A pause longer than this between two pieces of work starts a new burst. */
const IDLE_MS = 1;

/**
 * One server connection's flow control: an outbox of responses waiting for
 * the transport to drain, the request that paused reading (the connection
 * holds what came after it), and the slices both are worked off in.
 */
export class Flow {
  readonly #link: FlowLink;
  readonly #limits: ResolvedLimits;
  readonly #clock: Clock;
  /** The transport's queue at the last read, and `written` then. */
  #queuedAtRead = 0;
  #writtenAtRead = 0;
  readonly #outbox = new Fifo<Outgoing>();
  /** The request that paused reading, taken up first when it resumes. */
  #inHand: CoapMessage | undefined;
  #timer: unknown;
  #scheduled = false;
  #closed = false;
  /**
   * When the current burst of work began, and when it last did work: at
   * first long ago, as small integers (-Infinity made V8 box the fields).
   */
  #burstStart = -(2 ** 30);
  #lastWork = -(2 ** 30);
  /** Since when the queue has been above `queueLimit`. */
  #overSince: number | undefined;
  /** One-shot requests being answered. */
  #active = 0;
  /** Observations this connection holds (the server counts them). */
  observations = 0;
  /** What this connection's flow did, for its closing log line. */
  readonly report: FlowReport = {
    skipped: 0,
    unobserved: 0,
    pauses: 0,
    mostHeld: 0,
    mostQueued: 0,
  };

  /**
   * Creates the flow of one connection.
   *
   * @param link The connection.
   * @param limits The limits, defaults filled in.
   * @param clock The timers.
   */
  constructor(link: FlowLink, limits: ResolvedLimits, clock: Clock) {
    this.#link = link;
    this.#limits = limits;
    this.#clock = clock;
  }

  /** Whether the transport's queue is above the high-water mark. */
  get congested(): boolean {
    const mark = this.#limits.highWaterMark;
    const written = this.#link.written;
    // The queue grows by no more than what is written. Below the mark by
    // that bound, it is below the mark in fact and need not be read: a read
    // is an op call in Deno, and the flow looks up to three times a request.
    if (
      written !== undefined &&
      this.#queuedAtRead + (written - this.#writtenAtRead) < mark
    ) {
      return false;
    }
    const queued = this.#link.queued;
    this.#queuedAtRead = queued;
    this.#writtenAtRead = written ?? 0;
    if (queued > this.report.mostQueued) this.report.mostQueued = queued;
    return queued >= mark;
  }

  /**
   * Sends `item` now if the connection drains and this burst has time
   * left, or queues it. An item must not be offered again while queued;
   * it replaces what it holds instead (an observation keeps its latest).
   *
   * @param item What to send.
   * @returns Whether it was sent now.
   */
  offer(item: Outgoing): boolean {
    if (this.#closed) return false;
    if (this.#outbox.size === 0 && this.#mayWork() && !this.congested) {
      item.flush();
      this.#watch();
      return true;
    }
    this.#outbox.push(item);
    this.#schedule();
    return false;
  }

  /**
   * A request arrived: it is taken up now, or reading pauses (and the
   * connection holds what arrives after it) while responses are not read,
   * `maxConcurrentRequests` are being answered, responses wait to go out,
   * or this burst has used its slice.
   *
   * @param message The request.
   */
  request(message: CoapMessage): void {
    if (this.#closed) return;
    if (
      this.#inHand === undefined && this.#outbox.size === 0 &&
      this.#active < this.#limits.maxConcurrentRequests &&
      this.#mayWork() && !this.congested
    ) {
      this.#link.process(message);
      return;
    }
    this.#inHand = message;
    this.#link.pause();
    this.report.pauses++;
    this.#schedule();
  }

  /** A one-shot request is being answered. */
  started(): void {
    this.#active++;
  }

  /** A one-shot request was answered: a held one may be taken up. */
  finished(): void {
    this.#active--;
    if (this.#inHand !== undefined) this.#schedule();
  }

  /** Stops everything: queued items and held requests are let go. */
  close(): void {
    this.report.mostHeld = this.#link.mostHeld;
    this.#closed = true;
    this.#outbox.clear();
    this.#inHand = undefined;
    if (this.#scheduled) {
      this.#clock.clearTimeout(this.#timer);
      this.#scheduled = false;
    }
  }

  /** Whether this burst may do more work now (it has not used its slice). */
  #mayWork(): boolean {
    const now = this.#clock.now();
    if (now - this.#lastWork > IDLE_MS) this.#burstStart = now;
    this.#lastWork = now;
    return now - this.#burstStart < this.#limits.sliceMs;
  }

  /** Keeps looking at a queue that is above the high-water mark. */
  #watch(): void {
    if (this.congested) this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    this.#timer = this.#clock.setTimeout(
      this.#run,
      this.congested ? POLL_MS : 0,
    );
  }

  readonly #run = (): void => {
    this.#scheduled = false;
    if (this.#closed || this.#link.closed) return;
    // A timer's callback: whatever escapes would reach the process.
    try {
      this.#work();
    } catch (error) {
      this.#link.fault(error);
    }
  };

  #work(): void {
    const now = this.#clock.now();
    this.#burstStart = this.#lastWork = now;
    if (!this.#checkLimit(now)) return;
    const { maxConcurrentRequests, sliceMs } = this.#limits;
    for (;;) {
      if (this.congested) break;
      if (this.#outbox.size > 0) {
        this.#outbox.shift()!.flush();
      } else if (
        this.#inHand !== undefined && this.#active < maxConcurrentRequests
      ) {
        const message = this.#inHand;
        this.#inHand = undefined;
        this.#link.process(message);
        // What was held comes through request(), in this slice's time.
        this.#link.resume();
      } else break;
      if (this.#closed || this.#link.closed) return;
      if (this.#clock.now() - now >= sliceMs) break;
    }
    this.#lastWork = this.#clock.now();
    const more = this.#outbox.size > 0 ||
      (this.#inHand !== undefined && this.#active < maxConcurrentRequests);
    if (more || this.congested) this.#schedule();
  }

  /** Aborts a connection whose queue stayed above the limit too long. */
  #checkLimit(now: number): boolean {
    const queued = this.#link.queued;
    if (queued < this.#limits.queueLimit) {
      this.#overSince = undefined;
      return true;
    }
    this.#overSince ??= now;
    if (now - this.#overSince < this.#limits.queueGrace) return true;
    this.#link.abort(
      `${queued} bytes of responses not read for ${
        Math.round(now - this.#overSince)
      } ms (limit ${this.#limits.queueLimit} bytes)`,
    );
    return false;
  }
}
