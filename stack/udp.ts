// This module is browser compatible.

/**
 * CoAP over UDP (RFC 7252's message layer), sans-I/O: a state machine fed
 * datagrams and a clock, under the same connections, pipes, exchanges and
 * resources as CoAP over WebSocket.
 *
 * Each remote endpoint (address and port) is a {@linkcode UdpPeerSocket}, a
 * `WebSocketLike` that the server accepts (`CoapServer.accept`) or a client
 * attaches (`attachWebSocket`, then `new CoapClient`), just as it would a
 * WebSocket. The connection above speaks RFC 8323's reliable framing; this
 * layer turns it into RFC 7252's:
 *
 * - Requests go out confirmable (CON, or NON if asked), at most `nstart` a
 *   peer unacknowledged, retransmitted after ACK_TIMEOUT × a random factor,
 *   doubling, MAX_RETRANSMIT times. A peer that never acknowledges ends
 *   like a WebSocket that closed: the exchanges on it end with an error.
 * - A response to a CON request rides in its ACK when it is ready within
 *   `emptyAckDelay`; otherwise an empty ACK goes first and the response
 *   follows as a CON of its own (a separate response).
 * - Duplicates (the same message ID from the same peer within
 *   EXCHANGE_LIFETIME) are answered with what was sent the first time and
 *   are not handled again.
 * - Observe (RFC 7641): notifications go out NON, every `conEvery`-th one
 *   CON; an RST to one, or a CON notification never acknowledged, ends the
 *   observation. A notification for a token this side no longer wants gets
 *   an RST.
 * - The peer's "CSM" is made up: Max-Message-Size 1152 and no BERT, so the
 *   connection above uses block-wise transfer (RFC 7959) for anything
 *   larger, as over WebSocket. Ping (7.02) becomes a CoAP ping (an empty
 *   CON, answered by an RST).
 *
 * - Address validation (RFC 9175 §2.4): a peer's source address proves
 *   nothing until the peer answers what was sent there. Until then it is
 *   sent at most `amplificationFactor` (3) times the bytes received from
 *   it: a response that would be larger goes out as a smaller first block
 *   (Block2) of a GET or FETCH, or without its diagnostic payload, or as a
 *   4.01 with an Echo option (a MAC over the address and the time, so
 *   nothing is stored), which a client answers by repeating the request
 *   with that value, as this layer's own client side does. An ACK or RST
 *   for a CON sent to the peer, or a request with a valid Echo, verifies
 *   it. Notifications to an unverified observer go CON, one outstanding at
 *   a time (a newer one replaces it, RFC 7641 §4.5.2), and an observation
 *   whose CON notification goes unanswered, or whose budget runs out, ends.
 * - Peers not yet verified are held apart (`maxUnverifiedPeers`): one more
 *   evicts the one heard from least recently, never a verified peer, so a
 *   flood of new source ports from one address locks nobody out.
 *
 * Everything is bounded: peers (`maxPeers`, `maxUnverifiedPeers`),
 * remembered message IDs per peer (`maxRemembered`), requests waiting for
 * `nstart` (`maxWaiting`). Refusals are logged at most once a second per
 * kind, with the count.
 *
 * @module
 */

import type { Logger } from "@coap/pipe";
import type { Clock } from "./connection.ts";
import { systemClock } from "./connection.ts";
import {
  type Block,
  CoapFormatError,
  type CoapMessage,
  Code,
  codeToString,
  copyOf,
  decodeBlock,
  decodeMessage,
  encodeBlock,
  encodeMessage,
  getOption,
  keyToken,
  Option,
  type OutgoingMessage,
  SignalingOption,
  tokenKey,
  uint,
  utf8,
  utf8Length,
} from "./message.ts";
import { siphash24 } from "./siphash.ts";
import { Listeners } from "./listeners.ts";
import { Fifo } from "./fifo.ts";
import type { CoapServer } from "./server.ts";
import type { WebSocketLike } from "./websocket.ts";

/** RFC 7252 message types. */
export const Type = { CON: 0, NON: 1, ACK: 2, RST: 3 } as const;
/** A message type: 0 CON, 1 NON, 2 ACK, 3 RST. */
export type MessageType = 0 | 1 | 2 | 3;

/** Where a datagram comes from or goes to. */
export interface PeerAddress {
  /** An IP address. */
  readonly hostname: string;
  /** A UDP port. */
  readonly port: number;
}

/** A datagram's header, and the message in RFC 8323 form. */
export interface Datagram {
  /** CON, NON, ACK or RST. */
  readonly type: MessageType;
  /** The message ID, 0 to 65535. */
  readonly messageId: number;
  /** The message as the connection above reads it (no type, no ID). */
  readonly message: CoapMessage;
  /** The same message encoded in RFC 8323 form, for the connection. */
  readonly frame: Uint8Array;
}

/**
 * Reads a CoAP-over-UDP datagram (RFC 7252 §3).
 *
 * @param bytes The datagram.
 * @returns Its type, message ID and message.
 * @throws {CoapFormatError} If it is not a well-formed CoAP message; the
 * message says what is wrong.
 */
export function decodeDatagram(bytes: Uint8Array): Datagram {
  if (bytes.length < 4) {
    throw new CoapFormatError(
      `Malformed datagram: ${bytes.length} bytes, a CoAP header has 4`,
    );
  }
  const version = bytes[0] >> 6;
  if (version !== 1) {
    throw new CoapFormatError(
      `Malformed datagram: version ${version}, only 1 is defined`,
    );
  }
  const type = ((bytes[0] >> 4) & 3) as MessageType;
  const tkl = bytes[0] & 0x0f;
  const code = bytes[1];
  const messageId = (bytes[2] << 8) | bytes[3];
  if (code === Code.EMPTY && (tkl !== 0 || bytes.length !== 4)) {
    throw new CoapFormatError(
      "Malformed datagram: an empty message has no token and nothing after its ID",
    );
  }
  // Copied by a loop, and decoded into copies: a view of a small array
  // (subarray) made the engine move it out of its heap first.
  const frame = new Uint8Array(bytes.length - 2);
  frame[0] = tkl;
  frame[1] = code;
  if (bytes.length > 68) frame.set(bytes.subarray(4), 2);
  else for (let i = 4; i < bytes.length; i++) frame[i - 2] = bytes[i];
  return { type, messageId, message: decodeMessage(frame, true), frame };
}

/**
 * Writes a CoAP-over-UDP datagram from a message in RFC 8323 form.
 *
 * @param type The message type.
 * @param messageId The message ID (0 to 65535).
 * @param frame The message, RFC 8323 framed (as a connection sends it), or
 * `undefined` for an empty message.
 * @returns The datagram.
 */
export function encodeDatagram(
  type: MessageType,
  messageId: number,
  frame?: Uint8Array,
): Uint8Array {
  if (frame === undefined) {
    return new Uint8Array([
      0x40 | (type << 4),
      Code.EMPTY,
      messageId >> 8,
      messageId & 0xff,
    ]);
  }
  const out = new Uint8Array(frame.length + 2);
  out[0] = 0x40 | (type << 4) | (frame[0] & 0x0f);
  out[1] = frame[1];
  out[2] = messageId >> 8;
  out[3] = messageId & 0xff;
  // A loop for a small frame: a view of it (subarray) costs more.
  if (frame.length > 66) out.set(frame.subarray(2), 4);
  else for (let i = 2; i < frame.length; i++) out[i + 2] = frame[i];
  return out;
}

/** Options for {@linkcode CoapUdpEndpoint}. */
export interface UdpOptions {
  /**
   * ACK_TIMEOUT: the first wait for an ACK, in milliseconds.
   *
   * @default {2000}
   */
  ackTimeout?: number;
  /**
   * ACK_RANDOM_FACTOR: the first wait is ACK_TIMEOUT times a random
   * number from 1 to this.
   *
   * @default {1.5}
   */
  ackRandomFactor?: number;
  /**
   * MAX_RETRANSMIT: how often a CON is sent again before the peer is taken
   * for gone.
   *
   * @default {4}
   */
  maxRetransmit?: number;
  /**
   * NSTART: requests to one peer awaiting their ACK at once; more wait.
   *
   * @default {1}
   */
  nstart?: number;
  /**
   * How long a request's message ID is remembered to spot duplicates
   * (EXCHANGE_LIFETIME), in milliseconds.
   *
   * @default {247000}
   */
  exchangeLifetime?: number;
  /**
   * How long a response to a CON request may take to ride in its ACK; past
   * it an empty ACK goes first, in milliseconds.
   *
   * @default {100}
   */
  emptyAckDelay?: number;
  /**
   * Every how many notifications one goes out CON (RFC 7641 §4.5).
   *
   * @default {16}
   */
  conEvery?: number;
  /**
   * Whether requests go out NON instead of CON.
   *
   * @default {false}
   */
  nonConfirmable?: boolean;
  /**
   * The largest datagram taken or sent, in bytes: the peer's made-up CSM
   * says so to the connection above (block-wise transfer past it). A
   * request over it is answered 4.13 with Size1; a response over it fails
   * its request with a 5.02 made here; neither ends the peer.
   *
   * @default {1152}
   */
  maxMessageSize?: number;
  /**
   * Peers (address and port) known at once; a request from one more evicts
   * the unverified peer heard from least recently, or where every peer is
   * verified is answered with an RST (CON) or dropped (NON).
   *
   * @default {4096}
   */
  maxPeers?: number;
  /**
   * Peers whose address is not yet verified, known at once; one more
   * evicts the one heard from least recently (its open exchanges end; a
   * later datagram from it starts afresh). A verified peer is never
   * evicted for an unverified one.
   *
   * @default {256}
   */
  maxUnverifiedPeers?: number;
  /**
   * Address validation (RFC 9175 §2.4): what a peer whose address is not
   * yet verified may be sent, as a multiple of the bytes received from it.
   * Empty ACKs and RSTs (4 bytes, no larger than any datagram) and one
   * 4.01 with an Echo option a request are not held to it. `false` turns
   * validation off, for a network whose source addresses can be trusted.
   *
   * @default {3}
   */
  amplificationFactor?: number | false;
  /**
   * How long an Echo value this endpoint made stays good, in milliseconds.
   *
   * @default {60000}
   */
  echoLifetime?: number;
  /**
   * Message IDs remembered per peer for duplicate detection; the oldest
   * are forgotten first, a sixteenth of them at once when the table is
   * full.
   *
   * @default {1024}
   */
  maxRemembered?: number;
  /**
   * Requests waiting for `nstart`, per peer; one more closes the peer.
   *
   * @default {1000}
   */
  maxWaiting?: number;
  /**
   * Datagrams sent in one turn of the event loop (between two timers);
   * more wait for the next turns, this many each. A burst (one change
   * notified to many observers, RFC 7641 §4.5.1) is paced so: the kernel
   * charges what a socket sent on loopback to it until the receiver reads
   * it, and Deno 2.9, which sends once the turn is over, lost a third of
   * 100,000 notifications sent in one turn to 10,000 sockets (none at 256
   * a turn).
   *
   * @default {256}
   */
  sendBurst?: number;
  /**
   * Datagrams waiting for a later turn (see `sendBurst`); one more is
   * dropped (and counted in `dropped`): a lost datagram, which CON
   * retransmission covers.
   *
   * @default {131072}
   */
  maxQueued?: number;
  /**
   * How long a peer with nothing open is kept, in milliseconds.
   *
   * @default {exchangeLifetime}
   */
  idleTimeout?: number;
  /**
   * How long a peer that observes something here may stay silent before it
   * is sent a CoAP ping (an empty CON, which a live endpoint answers with an
   * RST), in milliseconds. One that does not answer it after
   * MAX_RETRANSMIT is taken for gone, and its observations end: an
   * observer that left without an RST is found out even when nothing it
   * observes changes (RFC 7641 §4.5).
   *
   * @default {120000}
   */
  keepAlive?: number;
  /** The timers. @default {systemClock} */
  clock?: Clock;
  /** A random number in [0, 1), for the first timeout and message IDs. */
  random?: () => number;
  /**
   * Where trouble is logged (never a peer's bytes unescaped).
   *
   * @default {console}
   */
  log?: Logger;
  /**
   * Called with a new peer that sent a request (the server role): accept
   * it (`server.accept(socket, { address })`), or close it to refuse.
   * Without it, requests from unknown peers get an RST.
   */
  onPeer?: (socket: UdpPeerSocket, address: PeerAddress) => void;
}

/** A CON of ours awaiting its ACK. */
interface Unacked {
  datagram: Uint8Array;
  what: "request" | "response" | "ping";
  token?: number | string;
  pingToken?: Uint8Array;
  timer: unknown;
  timeout: number;
  retransmits: number;
  /** When it first went out, in clock milliseconds. */
  sentAt: number;
  /** The message IDs it went out with (a replaced notification gets one). */
  ids: number[];
  /** A newer notification that replaces this one at its next sending. */
  next?: Uint8Array;
  /** Whether `next` ends the observation. */
  nextFinal?: boolean;
  /** Whether `next` went out already (as a NON). */
  nextSent?: boolean;
  /** The request a response answers. */
  incoming?: Incoming;
}

/** A request from the peer, until its final response went out. */
interface Incoming {
  messageId: number;
  type: MessageType;
  /** The request's method code. */
  method: number;
  /** The first message ID of its CON notification awaiting an ACK. */
  conPending?: number;
  /** Whether a response went out (a 4.01 with Echo can only be the first). */
  answered: boolean;
  acked: boolean;
  /**
   * When an empty ACK goes unless the response does first (a CON's); 0
   * once it need not. The endpoint's one timer looks, not a timer each.
   */
  ackDue: number;
  /** The request's message ID record, for the empty ACK to be repeated. */
  seen: Seen | undefined;
  /**
   * The request's frame, kept for an observation (an RST deregisters it),
   * packed: not the decoded message, whose views keep objects alive for
   * each of its options for the observation's life.
   */
  request?: string;
  notifications: number;
  /** Set when the client reset the observation: its final goes nowhere. */
  cancelled: boolean;
  /** Set when the request proved itself (OSCORE): no budget for answers. */
  vouched?: boolean;
}

/** A message ID seen from the peer, and what answered it. */
class Seen {
  /** When, in whole milliseconds (a small integer, not a boxed double). */
  readonly at: number;
  /** The answer, packed: a string of its bytes. */
  #reply: string | undefined;

  constructor(at: number) {
    this.at = Math.floor(at);
  }

  /** What answered the message, to be sent again for a duplicate. */
  get reply(): Uint8Array | undefined {
    return this.#reply === undefined ? undefined : unpack(this.#reply);
  }

  set reply(datagram: Uint8Array | undefined) {
    this.#reply = datagram === undefined ? undefined : pack(datagram);
  }
}

/**
 * A few bytes kept for long (a message ID's answer for EXCHANGE_LIFETIME,
 * an observation's request for its life) as a string of one byte a
 * character: 16 bytes and its length, where a Uint8Array is two objects
 * and a backing store, some 200 bytes.
 */
function pack(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** The bytes {@linkcode pack} made a string of. */
function unpack(packed: string): Uint8Array {
  const bytes = new Uint8Array(packed.length);
  for (let i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i);
  return bytes;
}

/** An Observe option's value (0 to 2^24 - 1). */
function readObserve(value: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < value.length && i < 3; i++) n = n * 256 + value[i];
  return n;
}

/**
 * Whether a notification with Observe `value`, arriving at `now`, is newer
 * than the last one passed on (RFC 7641 §3.4).
 */
function fresher(
  last: { value: number; at: number },
  value: number,
  now: number,
): boolean {
  const v1 = last.value, v2 = value;
  return (v1 < v2 && v2 - v1 < 2 ** 23) ||
    (v1 > v2 && v1 - v2 > 2 ** 23) ||
    now > last.at + 128_000;
}

/**
 * The one datagram an unverified peer may be sent past its budget, at
 * most this many bytes (a small response that no smaller block can carry).
 */
const SMALL_DATAGRAM = 64;

/** An Echo option's bytes in a message: its header, extended number and value. */
const ECHO_OPTION_SIZE = 14;

function randomId(random: () => number): number {
  return Math.floor(random() * 0x10000) & 0xffff;
}

/**
 * A 2.xx response cut to a smaller first block (RFC 7959 §2.4) whose
 * datagram is at most `room` bytes past its 4-byte header: the largest
 * block size that fits, counted in the original's block numbers if it was
 * a block already. `undefined` if no block fits or it cannot be cut.
 */
function smallerBlock(
  message: CoapMessage,
  room: number,
): Uint8Array | undefined {
  const value = getOption(message, Option.BLOCK2);
  let block: Block | undefined;
  try {
    block = value === undefined ? undefined : decodeBlock(value);
  } catch {
    return undefined;
  }
  if (block !== undefined && block.szx > 6) return undefined; // BERT
  const others = message.options.filter((option) =>
    option.number !== Option.BLOCK2
  );
  for (let szx = block === undefined ? 6 : block.szx - 1; szx >= 0; szx--) {
    const size = 16 << szx;
    if (block === undefined && size >= message.payload.length) continue;
    const num = block === undefined ? 0 : block.num << (block.szx - szx);
    if (num > 0xfffff) return undefined;
    const payload = message.payload.subarray(0, size);
    const frame = encodeMessage({
      ...message,
      options: [...others, {
        number: Option.BLOCK2,
        value: encodeBlock({
          num,
          more: payload.length < message.payload.length ||
            block?.more === true,
          szx,
        }),
      }],
      payload,
    });
    if (frame.length <= room) return frame;
  }
  return undefined;
}

/**
 * One CoAP-over-UDP endpoint: one socket's datagrams, for any number of
 * peers. The platform adapter hands it every datagram ({@linkcode receive})
 * and sends what it gives to `send`.
 */
export class CoapUdpEndpoint {
  readonly #send: (datagram: Uint8Array, to: PeerAddress) => void;
  readonly #options: Required<
    Omit<
      UdpOptions,
      "onPeer" | "log" | "clock" | "random" | "idleTimeout" | "keepAlive"
    >
  >;
  /** The Echo values' key, made per endpoint. */
  readonly #echoKey = crypto.getRandomValues(new Uint8Array(16));
  /** Unverified peers by key, the one heard from least recently first. */
  readonly #unverified = new Map<string, UdpPeerSocket>();
  /** Lines held back by {@linkcode warnOnce}, by kind. */
  readonly #told = new Map<string, { at: number; more: number }>();
  #toldTimer: unknown;
  #dropped = 0;
  readonly #idleTimeout: number;
  readonly #keepAlive: number;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #onPeer?: (socket: UdpPeerSocket, address: PeerAddress) => void;
  readonly #peers = new Map<string, UdpPeerSocket>();
  /**
   * CONs whose empty ACK is due unless their response goes first, in the
   * order they came (so, of when it is due): one timer for them all.
   */
  readonly #acks = new Fifo<UdpPeerSocket | Incoming>();
  #ackTimer: unknown;
  #messageId: number;
  #sweep: unknown;
  #closed = false;

  /**
   * Creates the endpoint.
   *
   * @param send Sends one datagram.
   * @param options See {@linkcode UdpOptions}.
   */
  constructor(
    send: (datagram: Uint8Array, to: PeerAddress) => void,
    options: UdpOptions = {},
  ) {
    this.#send = send;
    this.#options = {
      ackTimeout: options.ackTimeout ?? 2000,
      ackRandomFactor: options.ackRandomFactor ?? 1.5,
      maxRetransmit: options.maxRetransmit ?? 4,
      nstart: options.nstart ?? 1,
      exchangeLifetime: options.exchangeLifetime ?? 247_000,
      emptyAckDelay: options.emptyAckDelay ?? 100,
      conEvery: options.conEvery ?? 16,
      nonConfirmable: options.nonConfirmable ?? false,
      maxPeers: options.maxPeers ?? 4096,
      maxMessageSize: options.maxMessageSize ?? 1152,
      maxUnverifiedPeers: options.maxUnverifiedPeers ?? 256,
      amplificationFactor: options.amplificationFactor ?? 3,
      echoLifetime: options.echoLifetime ?? 60_000,
      maxRemembered: options.maxRemembered ?? 1024,
      maxWaiting: options.maxWaiting ?? 1000,
      sendBurst: options.sendBurst ?? 256,
      maxQueued: options.maxQueued ?? 131_072,
    };
    for (const [name, value] of Object.entries(this.#options)) {
      if (typeof value === "number" && !(value >= 0)) {
        throw new RangeError(
          `Cannot create a CoAP-over-UDP endpoint: ${name} must be a number from 0, got ${value}`,
        );
      }
    }
    if (
      this.#options.nstart < 1 || this.#options.ackRandomFactor < 1 ||
      this.#options.sendBurst < 1
    ) {
      throw new RangeError(
        "Cannot create a CoAP-over-UDP endpoint: nstart, ackRandomFactor and sendBurst must be at least 1",
      );
    }
    if (
      !Number.isInteger(this.#options.maxMessageSize) ||
      this.#options.maxMessageSize < 64
    ) {
      throw new RangeError(
        `Cannot create a CoAP-over-UDP endpoint: maxMessageSize must be an integer of at least 64, got ${this.#options.maxMessageSize}`,
      );
    }
    const factor = this.#options.amplificationFactor;
    if (factor !== false && !(typeof factor === "number" && factor >= 1)) {
      throw new RangeError(
        `Cannot create a CoAP-over-UDP endpoint: amplificationFactor must be a number from 1, or false, got ${factor}`,
      );
    }
    this.#idleTimeout = options.idleTimeout ?? this.#options.exchangeLifetime;
    this.#keepAlive = options.keepAlive ?? 120_000;
    if (!(this.#idleTimeout >= 0) || !(this.#keepAlive > 0)) {
      throw new RangeError(
        "Cannot create a CoAP-over-UDP endpoint: idleTimeout must be a number from 0, keepAlive above 0",
      );
    }
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = options.log ?? console;
    this.#onPeer = options.onPeer;
    this.#messageId = randomId(this.#random);
  }

  /** The options in force. */
  get options(): Readonly<
    Required<
      Omit<
        UdpOptions,
        "onPeer" | "log" | "clock" | "random" | "idleTimeout" | "keepAlive"
      >
    >
  > {
    return this.#options;
  }

  /** Peers known now. */
  get peers(): number {
    return this.#peers.size;
  }

  /**
   * Datagrams dropped since the endpoint was made: malformed, or not a
   * valid answer (a signalling or reserved code, an ACK that does not
   * match its request, a response over `maxMessageSize`), or a request
   * over it.
   */
  get dropped(): number {
    return this.#dropped;
  }

  /** @internal Counts a dropped datagram, and says so once a second a kind. */
  _drop(kind: string, line: string): void {
    this.#dropped++;
    this.warnOnce(kind, line);
  }

  /** Peers known now whose address is not yet verified. */
  get unverifiedPeers(): number {
    return this.#unverified.size;
  }

  /**
   * The socket for a peer, made if there is none: the client role. The
   * address was chosen here, so it counts as verified.
   *
   * @param address The peer.
   * @returns Its socket, open.
   */
  connect(address: PeerAddress): UdpPeerSocket {
    if (this.#closed) throw new Error("Cannot connect: the endpoint is closed");
    const peer = this.#peer(address) ?? this.#create(address);
    peer._verify();
    return peer;
  }

  /**
   * Ends the peer at `address`, if there is one: its connection closes with
   * `reason`, and what was open on it ends (a DTLS session under it ended).
   *
   * @param address The peer.
   * @param reason Why, for its close event.
   */
  disconnect(address: PeerAddress, reason: string): void {
    this.#peer(address)?._end(4000, reason);
  }

  /**
   * Logs `line` as a warning, at most once a second for each `kind`: the
   * first at once, and how many more came within the second in one line
   * after it. For refusals a flood would otherwise log once a datagram.
   *
   * @param kind What is refused (lines of one kind are counted together).
   * @param line The line, with nothing unescaped from a peer.
   */
  warnOnce(kind: string, line: string): void {
    if (this.#closed) return;
    const now = this.#clock.now();
    const told = this.#told.get(kind);
    if (told !== undefined && now - told.at < 1000) {
      told.more++;
      if (this.#toldTimer === undefined) {
        this.#toldTimer = this.#clock.setTimeout(() => this.#flushTold(), 1000);
      }
      return;
    }
    this.#told.set(kind, { at: now, more: 0 });
    this.#log.warn(line);
  }

  #flushTold(): void {
    this.#toldTimer = undefined;
    const now = this.#clock.now();
    for (const [kind, told] of this.#told) {
      if (told.more > 0) {
        this.#log.warn(
          `${told.more} more like it in the last second: ${kind}`,
        );
        told.more = 0;
        told.at = now;
      } else if (now - told.at >= 1000) this.#told.delete(kind);
    }
    if (this.#told.size > 0 && !this.#closed) {
      this.#toldTimer = this.#clock.setTimeout(() => this.#flushTold(), 1000);
    }
  }

  /**
   * Handles one datagram from the network. Nothing a peer sends throws:
   * malformed datagrams are answered with an RST (CON) or dropped.
   *
   * @param bytes The datagram.
   * @param from Where it came from.
   */
  receive(bytes: Uint8Array, from: PeerAddress): void {
    if (this.#closed) return;
    try {
      this.#receive(bytes, from);
    } catch (error) {
      // The last guard: a datagram never ends the process; the peer it
      // came from is forgotten, with one line (a second at most).
      this.warnOnce(
        "datagrams dropped by an internal error",
        `Dropped a datagram from ${from.hostname}:${from.port} and forgot that peer: ${
          (error as Error)?.message ?? error
        }`,
      );
      this.#peer(from)?._end(1011, "Internal error");
    }
  }

  #receive(bytes: Uint8Array, from: PeerAddress): void {
    if (
      bytes.length > 4 && bytes[1] === Code.EMPTY && bytes[0] >> 6 === 1 &&
      ((bytes[0] >> 4) & 3) >= Type.ACK
    ) {
      // An empty ACK or RST with bytes after its ID is malformed (RFC 7252
      // §4.1), but libcoap 4.3.1 sends its ACKs with the Echo value a
      // response offered: taken as the empty ACK or RST it is.
      bytes = Uint8Array.of(bytes[0] & 0xf0, 0, bytes[2], bytes[3]);
    }
    let datagram: Datagram;
    try {
      datagram = decodeDatagram(bytes);
    } catch (error) {
      // RFC 7252 §4.2/4.3: a malformed CON is rejected, anything else
      // ignored; a datagram too short for an ID is ignored.
      this._drop(
        "malformed datagrams",
        `Dropped a datagram from ${from.hostname}:${from.port}: ${
          (error as Error).message
        }`,
      );
      if (
        bytes.length >= 4 && bytes[0] >> 6 === 1 &&
        ((bytes[0] >> 4) & 3) === Type.CON
      ) {
        this._send(
          encodeDatagram(Type.RST, (bytes[2] << 8) | bytes[3]),
          from,
        );
      }
      return;
    }
    const { type, message } = datagram;
    const peer = this.#peer(from);
    if (message.code === Code.EMPTY) {
      if (type === Type.CON) {
        // A CoAP ping: an RST answers it.
        this._send(encodeDatagram(Type.RST, datagram.messageId), from);
      } else if (peer !== undefined) peer._empty(datagram);
      return;
    }
    if (peer !== undefined) {
      if (peer._early === undefined) peer._datagram(datagram);
      else if (peer._early.length < EARLY_DATAGRAMS) {
        // Its connection starts in a microtask: what comes before then
        // waits for it, in order.
        peer._early.push(datagram);
      } else {
        this._drop(
          "datagrams from a new peer before its connection started",
          `Dropped a datagram from ${from.hostname}:${from.port}: more than ${EARLY_DATAGRAMS} came before its connection started`,
        );
      }
      return;
    }
    const isRequest = message.code >> 5 === 0;
    if (isRequest && (type === Type.CON || type === Type.NON)) {
      if (this.#unverified.size >= this.#options.maxUnverifiedPeers) {
        this._evictUnverified();
      }
      if (this.#peers.size >= this.#options.maxPeers) this._evictUnverified();
      if (
        this.#onPeer === undefined || this.#peers.size >= this.#options.maxPeers
      ) {
        if (this.#onPeer !== undefined) {
          this.warnOnce(
            "requests refused: every peer is verified (maxPeers)",
            `Refused a request from ${from.hostname}:${from.port}: ${this.#peers.size} verified peers, the limit (maxPeers)`,
          );
        }
        if (type === Type.CON) {
          this._send(encodeDatagram(Type.RST, datagram.messageId), from);
        }
        return;
      }
      const created = this.#create(from);
      const early = created._early = [datagram];
      this.#onPeer(created, from);
      // After the peer's made-up CSM, which the connection waits for first
      // (it is queued as the connection starts).
      queueMicrotask(() => {
        created._early = undefined;
        try {
          for (const datagram of early) {
            if (created.readyState === 1) created._datagram(datagram);
            else if (datagram.type === Type.CON) {
              // Refused (a server's connection limits): said with an RST.
              this._send(encodeDatagram(Type.RST, datagram.messageId), from);
            }
          }
        } catch (error) {
          this.warnOnce(
            "datagrams dropped by an internal error",
            `Dropped a datagram from ${from.hostname}:${from.port} and forgot that peer: ${
              (error as Error)?.message ?? error
            }`,
          );
          created._end(1011, "Internal error");
        }
      });
      return;
    }
    // A response or notification nobody here waits for.
    if (type === Type.CON || type === Type.NON) {
      this._send(encodeDatagram(Type.RST, datagram.messageId), from);
    }
  }

  /** Closes every peer and forgets them. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const peer of [...this.#peers.values()]) {
      peer._end(1001, "The endpoint closed");
    }
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    if (this.#ackTimer !== undefined) {
      this.#clock.clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
    }
    this.#acks.clear();
    // What waited to be sent goes now: the socket may close after this.
    if (this.#pacer !== undefined) {
      this.#clock.clearTimeout(this.#pacer);
      this.#pacer = undefined;
    }
    while (this.#queued.size > 0) {
      const datagram = this.#queued.shift() as Uint8Array;
      this.#sendNow(datagram, this.#queued.shift() as PeerAddress);
    }
    if (this.#toldTimer !== undefined) {
      this.#clock.clearTimeout(this.#toldTimer);
    }
  }

  /**
   * @internal Ends the unverified peer heard from least recently, other
   * than `except`: from `hostname` if one is, else any. Returns whether
   * one was.
   */
  _evictUnverified(except?: UdpPeerSocket, hostname?: string): boolean {
    let victim: UdpPeerSocket | undefined;
    for (const peer of this.#unverified.values()) {
      if (peer === except) continue;
      if (hostname === undefined || peer.address.hostname === hostname) {
        victim = peer;
        break;
      }
      victim ??= peer;
    }
    if (victim === undefined) return false;
    victim._end(
      1001,
      "Evicted for a newer peer: its address was never verified (maxUnverifiedPeers)",
    );
    return true;
  }

  #key(address: PeerAddress): string {
    return `${address.hostname}|${address.port}`;
  }

  #peer(address: PeerAddress): UdpPeerSocket | undefined {
    // By host, then port: no key string made for every datagram.
    return this.#byHost.get(address.hostname)?.get(address.port);
  }

  /** The peers by host and port, as `#peers` has them by key. */
  readonly #byHost = new Map<string, Map<number, UdpPeerSocket>>();

  #create(address: PeerAddress): UdpPeerSocket {
    const key = this.#key(address);
    const { hostname, port } = address;
    const peer = new UdpPeerSocket(this, address, key, () => {
      if (this.#peers.get(key) === peer) this.#peers.delete(key);
      if (this.#unverified.get(key) === peer) this.#unverified.delete(key);
      const ports = this.#byHost.get(hostname);
      if (ports?.get(port) === peer) {
        ports.delete(port);
        if (ports.size === 0) this.#byHost.delete(hostname);
      }
    });
    this.#peers.set(key, peer);
    let ports = this.#byHost.get(hostname);
    if (ports === undefined) this.#byHost.set(hostname, ports = new Map());
    ports.set(port, peer);
    this.#unverified.set(key, peer);
    this.#armSweep();
    return peer;
  }

  /** @internal The peer was heard from: the newest of the unverified. */
  _heard(peer: UdpPeerSocket): void {
    if (this.#unverified.get(peer._key) !== peer) return;
    this.#unverified.delete(peer._key);
    this.#unverified.set(peer._key, peer);
  }

  /** @internal The peer's address is verified. */
  _verified(peer: UdpPeerSocket): void {
    if (this.#unverified.get(peer._key) === peer) {
      this.#unverified.delete(peer._key);
    }
  }

  /**
   * @internal An Echo value for `address` (RFC 9175 §2.2): the time in
   * seconds (4 bytes) and a MAC over it and the address (8 bytes).
   */
  _echo(address: PeerAddress, at: number = this.#clock.now()): Uint8Array {
    const seconds = Math.floor(at / 1000) >>> 0;
    const value = new Uint8Array(12);
    new DataView(value.buffer).setUint32(0, seconds);
    value.set(this.#mac(value.subarray(0, 4), address), 4);
    return value;
  }

  /** @internal Whether `value` is an Echo value made here for `address`, still good. */
  _echoGood(value: Uint8Array, address: PeerAddress): boolean {
    if (value.length !== 12) return false;
    const seconds = new DataView(value.buffer, value.byteOffset, 4).getUint32(
      0,
    );
    const age = Math.floor(this.#clock.now() / 1000) - seconds;
    if (age < 0 || age * 1000 > this.#options.echoLifetime) return false;
    const mac = this.#mac(value.subarray(0, 4), address);
    let differ = 0;
    for (let i = 0; i < 8; i++) differ |= mac[i] ^ value[4 + i];
    return differ === 0;
  }

  #mac(time: Uint8Array, address: PeerAddress): Uint8Array {
    const host = new TextEncoder().encode(address.hostname);
    const input = new Uint8Array(4 + 2 + host.length);
    input.set(time);
    input[4] = address.port >> 8;
    input[5] = address.port & 0xff;
    input.set(host, 6);
    return siphash24(this.#echoKey, input);
  }

  /** Forgets idle peers now and then, while there are any. */
  #armSweep(): void {
    if (this.#sweep !== undefined || this.#closed) return;
    const every = Math.max(
      1000,
      Math.min(this.#idleTimeout / 4, this.#keepAlive / 4, 30_000),
    );
    this.#sweep = this.#clock.setTimeout(() => {
      this.#sweep = undefined;
      const now = this.#clock.now();
      for (const peer of [...this.#peers.values()]) {
        if (
          peer._idleSince !== undefined &&
          now - peer._idleSince >= this.#idleTimeout
        ) {
          peer._end(1000, "Idle");
        } else if (now - peer._lastHeard >= this.#keepAlive) {
          peer._checkAlive();
        }
      }
      if (this.#peers.size > 0) this.#armSweep();
    }, every);
  }

  /** @internal Sends `incoming`'s empty ACK after `emptyAckDelay`, unless its response goes first. */
  _ackLater(peer: UdpPeerSocket, incoming: Incoming): void {
    // Whole milliseconds: a small integer in the object, not a boxed double.
    incoming.ackDue = Math.ceil(
      this.#clock.now() + this.#options.emptyAckDelay,
    );
    // Two entries, not an object: the peer, then the request.
    this.#acks.push(peer);
    this.#acks.push(incoming);
    if (this.#ackTimer === undefined) {
      this.#ackTimer = this.#clock.setTimeout(
        this.#acksDue,
        this.#options.emptyAckDelay,
      );
    }
  }

  readonly #acksDue = (): void => {
    this.#ackTimer = undefined;
    const now = this.#clock.now();
    const acks = this.#acks;
    while (acks.size > 0) {
      const incoming = acks.peek(1) as Incoming;
      const due = incoming.ackDue;
      if (due > now) {
        this.#ackTimer = this.#clock.setTimeout(this.#acksDue, due - now);
        return;
      }
      const peer = acks.shift() as UdpPeerSocket;
      acks.shift();
      if (due === 0) continue; // answered, or forgotten, meanwhile
      try {
        peer._ackNow(incoming);
      } catch (error) {
        this.#log.error("Cannot send an empty ACK", error);
      }
    }
  };

  /** @internal */
  _nextId(): number {
    this.#messageId = (this.#messageId + 1) & 0xffff;
    return this.#messageId;
  }

  /** @internal */
  _send(datagram: Uint8Array, to: PeerAddress): void {
    if (
      this.#queued.size === 0 &&
      this.#sentInTurn < this.#options.sendBurst
    ) {
      this.#sentInTurn++;
      // The count starts afresh once the event loop has turned: a timer's.
      if (this.#pacer === undefined) {
        this.#pacer = this.#clock.setTimeout(this.#pace, 0);
      }
      this.#sendNow(datagram, to);
      return;
    }
    if (this.#queued.size >= 2 * this.#options.maxQueued) {
      this._drop(
        "datagrams dropped: too many waiting to be sent (maxQueued)",
        `Dropped a datagram to ${to.hostname}:${to.port}: ${this.#options.maxQueued} wait to be sent already (maxQueued)`,
      );
      return;
    }
    // Two entries a datagram, not an object.
    this.#queued.push(datagram);
    this.#queued.push(to);
  }

  /**
   * The event loop turned: what waits goes, `sendBurst` of it, and the
   * count starts afresh while anything goes.
   */
  readonly #pace = (): void => {
    this.#pacer = undefined;
    this.#sentInTurn = 0;
    while (
      this.#queued.size > 0 && this.#sentInTurn < this.#options.sendBurst
    ) {
      const datagram = this.#queued.shift() as Uint8Array;
      const to = this.#queued.shift() as PeerAddress;
      this.#sentInTurn++;
      this.#sendNow(datagram, to);
    }
    if (this.#sentInTurn > 0) {
      this.#pacer = this.#clock.setTimeout(this.#pace, 0);
    }
  };

  /** Datagrams waiting for a later turn, and where each goes. */
  readonly #queued = new Fifo<Uint8Array | PeerAddress>();
  /** The timer that marks the event loop's turn, while datagrams go. */
  #pacer: unknown;
  /** Datagrams sent since the event loop last turned. */
  #sentInTurn = 0;

  /** Datagrams waiting to be sent (see `sendBurst`). */
  get queued(): number {
    return this.#queued.size / 2;
  }

  #sendNow(datagram: Uint8Array, to: PeerAddress): void {
    try {
      this.#send(datagram, to);
    } catch (error) {
      this.#log.warn(
        `Cannot send a datagram to ${to.hostname}:${to.port}: ${
          (error as Error)?.message ?? error
        }`,
      );
    }
  }

  /** @internal */
  get _clock(): Clock {
    return this.#clock;
  }

  /** @internal */
  get _random(): () => number {
    return this.#random;
  }

  /** @internal */
  get _log(): Logger {
    return this.#log;
  }
}

/**
 * The table a peer has until it first needs one of its own: empty for
 * ever, read but never written (a peer's every table cost some 190 bytes
 * while empty, and a server's peers leave most of them empty).
 */
// deno-lint-ignore no-explicit-any
const NONE_YET: Map<any, any> = new Map();

/**
 * How many datagrams from a new peer wait for its connection to start (they
 * came in the same turn as its first, as a batch of a socket's receives
 * does); more are dropped.
 */
const EARLY_DATAGRAMS = 64;

/** The made-up CSM of a UDP peer: its Max-Message-Size, no BERT. */
function peerCsm(maxMessageSize: number): Uint8Array {
  return encodeMessage({
    code: Code.CSM,
    token: new Uint8Array(0),
    options: [{
      number: SignalingOption.MAX_MESSAGE_SIZE,
      value: uint(maxMessageSize),
    }],
    payload: new Uint8Array(0),
  });
}

/** 5.02 Bad Gateway: a request this side ends for its peer's answer. */
const BAD_GATEWAY = 0xa2;

/**
 * One remote endpoint, seen by the connection above as a WebSocket that is
 * open from the start: `send` takes RFC 8323 frames, `message` events
 * deliver them, and `close` forgets the peer's state.
 */
export class UdpPeerSocket implements WebSocketLike {
  /** Where the peer is. */
  readonly address: PeerAddress;
  /** The endpoint it belongs to. */
  readonly endpoint: CoapUdpEndpoint;
  readonly protocol = "coap";
  binaryType = "arraybuffer";
  #readyState = 1;
  readonly #endpoint: CoapUdpEndpoint;
  readonly #forget: () => void;
  /** Requests from the peer, by token. */
  readonly #incoming = new Map<number | string, Incoming>();
  /** Message IDs seen from the peer, oldest first. */
  readonly #seen = new Map<number, Seen>();
  /** Our CONs awaiting their ACK, by message ID. */
  #unacked: Map<number, Unacked> = NONE_YET;
  /** Tokens of our requests that may still get responses. */
  #tokens: Set<number | string> | undefined;
  /** The newest notification passed on, per observed token. */
  #order:
    | Map<number | string, { value: number; at: number }>
    | undefined;
  /** Message IDs of recent NON notifications, so an RST finds its token. */
  #recentNon: Map<number, number | string> = NONE_YET;
  /** Our requests waiting for a free NSTART slot, with their tokens. */
  readonly #waiting: { key: number | string; frame: Uint8Array }[] = [];
  /** Our requests' frames by token, to repeat one with an Echo value. */
  #sentRequests: Map<number | string, Uint8Array> | undefined;
  /** Tokens of our requests already repeated with an Echo value. */
  #echoRetried: Set<number | string> | undefined;
  /** An Echo value the peer offered in a response, for our next request. */
  #peerEcho: Uint8Array | undefined;
  /** The Echo value offered to the peer, and when it was made. */
  #echoOffered: { value: Uint8Array; at: number } | undefined;
  #requestsUnacked = 0;
  /** Whether the peer answered something sent to its address. */
  #verified = false;
  /** Bytes received from the peer, and sent to it under the budget. */
  #received = 0;
  #sent = 0;
  /** Whether the one small datagram past the budget went. */
  #smallSent = false;
  /** @internal The endpoint's key for the peer. */
  readonly _key: string;
  /** When the peer last had nothing open; `undefined` while it has. */
  _idleSince: number | undefined;
  /** When a datagram last came from the peer. */
  _lastHeard: number;
  /**
   * @internal Datagrams that came before the peer's connection started
   * (in the same turn as its first), to be handled once it has; then
   * `undefined`.
   */
  _early: Datagram[] | undefined;

  /** @internal */
  constructor(
    endpoint: CoapUdpEndpoint,
    address: PeerAddress,
    key: string,
    forget: () => void,
  ) {
    this.#endpoint = endpoint;
    this.endpoint = endpoint;
    this.address = address;
    this._key = key;
    this.#forget = forget;
    this._idleSince = endpoint._clock.now();
    this._lastHeard = this._idleSince;
  }

  /**
   * Whether the peer's address is verified: it answered (ACK or RST) a CON
   * sent to it, repeated a request with an Echo value made for it, or was
   * chosen by this side (`connect`).
   */
  get verified(): boolean {
    return this.#verified;
  }

  /** @internal Marks the address verified. */
  _verify(): void {
    if (this.#verified) return;
    this.#verified = true;
    this.#endpoint._verified(this);
  }

  /** @internal A datagram of `size` bytes came from the peer. */
  #heard(size: number): void {
    this._lastHeard = this.#endpoint._clock.now();
    this.#received += size;
    if (!this.#verified) this.#endpoint._heard(this);
  }

  /** What may still be sent to the peer under its budget, in bytes. */
  #room(): number {
    const factor = this.#endpoint.options.amplificationFactor;
    if (this.#verified || factor === false) return Infinity;
    return factor * this.#received - this.#sent;
  }

  /**
   * Sends a datagram held to the budget; an empty one (4 bytes), and an
   * `exempt` one (a 4.01 with Echo), always go. Returns whether it went.
   */
  #emit(datagram: Uint8Array, exempt = false): boolean {
    if (datagram.length > 4) {
      if (!exempt && datagram.length > this.#room()) return false;
      // Counted even when exempt: what goes past the budget is owed.
      if (!this.#verified) this.#sent += datagram.length;
    }
    this.#endpoint._send(datagram, this.address);
    return true;
  }

  /**
   * @internal For a peer that observes something here and has been silent:
   * a CoAP ping, unless one is on its way; no answer after MAX_RETRANSMIT
   * ends the peer.
   */
  _checkAlive(): void {
    let observing = false;
    for (const incoming of this.#incoming.values()) {
      if (incoming.request !== undefined && !incoming.cancelled) {
        observing = true;
        break;
      }
    }
    if (!observing) return;
    for (const entry of this.#unacked.values()) {
      if (entry.what === "ping" || entry.what === "response") return;
    }
    const messageId = this.#newId();
    this.#confirmable(encodeDatagram(Type.CON, messageId), messageId, {
      what: "ping",
    });
  }

  /**
   * A message ID for a message of ours: the next in sequence to a verified
   * peer; to one that is not, one mixed with a random number, so that
   * nobody who watches the sequence elsewhere can acknowledge it blindly
   * to have a spoofed address verified.
   */
  #newId(): number {
    const next = this.#endpoint._nextId();
    if (this.#verified) return next;
    return (next ^ randomId(this.#endpoint._random)) & 0xffff;
  }

  readonly #listeners = new Listeners();

  /**
   * Listens for `message` and `close` (`open` never fires: the socket is
   * open from the start).
   *
   * @param type The event type.
   * @param listener Called with each event.
   * @param options `once` is honoured.
   */
  addEventListener(
    type: string,
    listener: (event: Event) => void,
    options?: AddEventListenerOptions,
  ): void {
    this.#listeners.add(type, listener, options);
  }

  #dispatch(event: Event): void {
    this.#listeners.dispatch(
      event,
      (error) =>
        this.#endpoint._log.error("A UDP peer's event listener threw", error),
    );
  }

  /** 1 while the peer is known, 3 once it was closed. */
  get readyState(): number {
    return this.#readyState;
  }

  /** Nothing is buffered: a datagram goes out as it is sent. */
  get bufferedAmount(): number {
    return 0;
  }

  /**
   * Takes one RFC 8323 frame from the connection above and sends it the
   * RFC 7252 way.
   *
   * @param data The frame.
   */
  send(data: Uint8Array): void {
    if (this.#readyState !== 1) return;
    let message: CoapMessage;
    try {
      message = decodeMessage(data);
    } catch {
      return; // the connection above never sends such a frame
    }
    this.#sendDecoded(data, message);
  }

  /**
   * Takes one RFC 8323 frame and the message it encodes, so that it need
   * not be decoded again.
   *
   * @param data The frame.
   * @param message What it encodes.
   */
  sendMessage(data: Uint8Array, message: OutgoingMessage): void {
    if (this.#readyState !== 1) return;
    const payload = message.payload;
    // A text payload is in the frame as UTF-8, last: its bytes are there.
    this.#sendDecoded(
      data,
      typeof payload === "string"
        ? {
          code: message.code,
          token: message.token,
          options: message.options,
          payload: payload === ""
            ? new Uint8Array(0)
            : copyOf(data, data.length - utf8Length(payload), data.length),
        }
        : message as CoapMessage,
    );
  }

  /**
   * Hands what the peer sends to `receive`, decoded, instead of as
   * `message` events (the connection above does so).
   *
   * @param receive Called with each RFC 8323 frame and its message.
   */
  deliverTo(
    receive: (data: Uint8Array, message?: CoapMessage) => void,
  ): void {
    this.#receiver = receive;
  }

  #receiver: ((data: Uint8Array, message?: CoapMessage) => void) | undefined;

  #sendDecoded(data: Uint8Array, message: CoapMessage): void {
    const kind = message.code >> 5;
    if (kind === 7) this.#signaling(message);
    else if (kind === 0) this.#request(data, message);
    else this.#response(data, message);
    this.#touch();
  }

  /**
   * Forgets the peer: what it had open ends, and a later datagram from it
   * starts afresh.
   *
   * @param code A WebSocket close code.
   * @param reason Why.
   */
  close(code = 1000, reason = ""): void {
    this._end(code, reason);
  }

  /** @internal */
  _end(code: number, reason: string): void {
    if (this.#readyState === 3) return;
    this.#readyState = 3;
    for (const entry of this.#unacked.values()) {
      this.#endpoint._clock.clearTimeout(entry.timer);
    }
    for (const entry of this.#incoming.values()) entry.ackDue = 0;
    this.#unacked.clear();
    this.#recentNon.clear();
    this.#order?.clear();
    this.#incoming.clear();
    this.#seen.clear();
    this.#sentRequests?.clear();
    this.#echoRetried?.clear();
    this.#waiting.length = 0;
    this.#forget();
    // `plain`: the reason says it all; there is no WebSocket close code to
    // speak of over UDP.
    this.#dispatch(
      Object.assign(new Event("close"), {
        code,
        reason,
        wasClean: true,
        plain: true,
      }),
    );
  }

  #deliver(frame: Uint8Array, message?: CoapMessage): void {
    if (this.#receiver !== undefined) {
      this.#receiver(frame, message);
      return;
    }
    const data =
      frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength
        ? frame.buffer
        : frame.slice().buffer;
    this.#dispatch(new MessageEvent("message", { data }));
  }

  #touch(): void {
    const open = this.#incoming.size + this.#unacked.size +
      (this.#tokens?.size ?? 0) +
      this.#waiting.length;
    this._idleSince = open === 0 ? this.#endpoint._clock.now() : undefined;
  }

  // --- Outgoing ----------------------------------------------------------

  #signaling(message: CoapMessage): void {
    switch (message.code) {
      case Code.CSM:
        // The connection's own CSM goes nowhere; the peer's is made up, a
        // moment later (the connection listens once it has sent its own).
        queueMicrotask(() => {
          if (this.#readyState === 1) {
            this.#deliver(peerCsm(this.#endpoint.options.maxMessageSize));
          }
        });
        return;
      case Code.PING: {
        const messageId = this.#newId();
        this.#confirmable(encodeDatagram(Type.CON, messageId), messageId, {
          what: "ping",
          pingToken: message.token,
        });
        return;
      }
      case Code.RELEASE:
      case Code.ABORT:
        this._end(1000, "Released");
        return;
      default:
        return; // Pong: this side never delivers a Ping to answer
    }
  }

  #request(frame: Uint8Array, message: CoapMessage): void {
    const key = tokenKey(message.token);
    if (
      this.#peerEcho !== undefined &&
      getOption(message, Option.ECHO) === undefined
    ) {
      // The server's offered Echo value goes with this request, once.
      message = {
        ...message,
        options: [...message.options, {
          number: Option.ECHO,
          value: this.#peerEcho,
        }],
      };
      frame = encodeMessage(message);
      this.#peerEcho = undefined;
    }
    (this.#tokens ??= new Set()).add(key);
    (this.#sentRequests ??= new Map()).set(key, frame);
    const { nstart, nonConfirmable, maxWaiting } = this.#endpoint.options;
    if (nonConfirmable) {
      this.#endpoint._send(
        encodeDatagram(Type.NON, this.#endpoint._nextId(), frame),
        this.address,
      );
      return;
    }
    if (this.#requestsUnacked >= nstart) {
      if (this.#waiting.length >= maxWaiting) {
        this._end(
          4000,
          `${maxWaiting} requests are waiting for the peer to acknowledge earlier ones (maxWaiting)`,
        );
        return;
      }
      this.#waiting.push({ key, frame });
      return;
    }
    this.#sendRequest(frame, message);
  }

  #sendRequest(frame: Uint8Array, message?: CoapMessage): void {
    const messageId = this.#endpoint._nextId();
    this.#requestsUnacked++;
    this.#confirmable(encodeDatagram(Type.CON, messageId, frame), messageId, {
      what: "request",
      token: tokenKey((message ?? decodeMessage(frame)).token),
    });
  }

  #requestAcked(): void {
    this.#requestsUnacked--;
    const next = this.#waiting.shift();
    if (next !== undefined) this.#sendRequest(next.frame);
  }

  /**
   * The requester of our request on `token` lost interest before its final
   * response: it leaves the NSTART queue, or stops being retransmitted and
   * frees its place for the next (a device that never answers holds its
   * route only for the request that is waiting for it). A late response
   * on the token gets an RST.
   *
   * @param token The request's token.
   */
  abandon(token: Uint8Array): void {
    const key = tokenKey(token);
    if (!this.#tokens?.delete(key)) return;
    this.#order?.delete(key);
    this.#sentRequests?.delete(key);
    this.#echoRetried?.delete(key);
    const waiting = this.#waiting.findIndex((entry) => entry.key === key);
    if (waiting >= 0) this.#waiting.splice(waiting, 1);
    for (const entry of this.#unacked.values()) {
      if (entry.what === "request" && entry.token === key) {
        this.#drop(entry);
        this.#requestAcked();
        break;
      }
    }
    this.#touch();
  }

  /**
   * The peer's request on `token` proved itself: an OSCORE request that
   * verified with a known context and was not a replay, which a spoofed
   * source cannot make anew. Its answers go whole past the amplification
   * budget; the address itself stays unverified (one captured request,
   * raced to the server from a spoofed source, reflects one answer).
   *
   * @param token The request's token.
   */
  vouch(token: Uint8Array): void {
    const incoming = this.#incoming.get(tokenKey(token));
    if (incoming !== undefined) incoming.vouched = true;
  }

  /**
   * The server sends no response to the peer's request on `token`
   * (No-Response, RFC 7967): the request is forgotten, and a CON not yet
   * acknowledged gets its empty ACK now (a retransmission of it, the same).
   *
   * @param token The request's token.
   */
  withhold(token: Uint8Array): void {
    const key = tokenKey(token);
    const incoming = this.#incoming.get(key);
    if (incoming === undefined) return;
    this.#finish(key, incoming);
    if (incoming.type === Type.CON && !incoming.acked) {
      incoming.acked = true;
      const ack = encodeDatagram(Type.ACK, incoming.messageId);
      const record = this.#seen.get(incoming.messageId);
      if (record !== undefined) record.reply = ack;
      this.#endpoint._send(ack, this.address);
    }
    this.#touch();
  }

  #response(frame: Uint8Array, message: CoapMessage): void {
    const key = tokenKey(message.token);
    const incoming = this.#incoming.get(key);
    const final = getOption(message, Option.OBSERVE) === undefined ||
      message.code >> 5 !== 2;
    if (incoming === undefined) {
      // Not a request of the peer's (it went away): NON, best effort.
      this.#emit(encodeDatagram(Type.NON, this.#newId(), frame));
      return;
    }
    if (final) this.#finish(key, incoming);
    if (incoming.cancelled) return;
    const pending = incoming.conPending === undefined
      ? undefined
      : this.#unacked.get(incoming.conPending);
    if (pending !== undefined) {
      // RFC 7641 §4.5.2: a newer notification takes the place of the CON
      // one awaiting its ACK at its next sending, with its retransmission
      // count: an observation has one budget, not one per notification.
      // One that would go NON (to a verified observer) goes now as well.
      pending.next = frame;
      pending.nextFinal = final;
      pending.nextSent = false;
      if (final || this.#confirmableNext(incoming)) {
        // The CON it would have been is the one retransmitted.
        incoming.notifications++;
        return;
      }
      pending.nextSent = true;
    }
    if (this.#room() === Infinity) {
      // Verified, or validation off: as it is (every response passes here).
      this.#answer(key, incoming, frame, final, false);
      return;
    }
    const fitted = this.#fit(frame, message, incoming);
    if (fitted === undefined) {
      // Nothing more fits the budget of an unverified observer.
      if (!final) {
        this.#finish(key, incoming);
        this.#cancel(incoming);
      }
      return;
    }
    if (fitted.echo && !final) {
      // A 4.01 ends what the registration began.
      this.#finish(key, incoming);
      this.#cancel(incoming);
    }
    this.#answer(
      key,
      incoming,
      fitted.frame,
      final || fitted.echo,
      fitted.exempt,
    );
  }

  /** Whether the request's next notification goes CON. */
  #confirmableNext(incoming: Incoming): boolean {
    // To an unverified observer every notification goes CON (one at a
    // time): its ACK verifies the address, its absence ends it.
    return !this.#verified ||
      (incoming.notifications + 1) % this.#endpoint.options.conEvery === 0;
  }

  /** The request is answered for good: forgotten, no empty ACK due. */
  #finish(key: number | string, incoming: Incoming): void {
    if (this.#incoming.get(key) === incoming) this.#incoming.delete(key);
    incoming.ackDue = 0;
  }

  /**
   * A response as it may go to the peer under its budget (RFC 9175 §2.4):
   * as it is; or as a smaller first block (a GET's or FETCH's 2.xx); or
   * without its diagnostic payload (an error); or past the budget as the
   * peer's one small datagram (64 bytes at most); or, for the first answer
   * to a request, as a 4.01 with an Echo value, which the client repeats
   * the request with. `undefined` where nothing may go (a later
   * notification).
   */
  #fit(
    frame: Uint8Array,
    message: CoapMessage,
    incoming: Incoming,
  ): { frame: Uint8Array; echo: boolean; exempt: boolean } | undefined {
    if (incoming.vouched === true) {
      return {
        frame: incoming.answered
          ? frame
          : this.#offerEcho(frame, message, Infinity),
        echo: false,
        exempt: true,
      };
    }
    const room = this.#room();
    if (frame.length + 2 <= room) {
      return {
        frame: incoming.answered
          ? frame
          : this.#offerEcho(frame, message, room),
        echo: false,
        exempt: false,
      };
    }
    const success = message.code >> 5 === 2;
    const safe = incoming.method === Code.GET || incoming.method === Code.FETCH;
    let bare: Uint8Array | undefined;
    if (message.payload.length > 0) {
      if (success && safe) {
        const block = smallerBlock(message, room - 2);
        if (block !== undefined) {
          return { frame: block, echo: false, exempt: false };
        }
      } else {
        // An error without its diagnostic; the answer to a request that
        // changed something (a POST, a PUT) without its body: that request
        // was carried out, so it is never answered 4.01 after the fact,
        // which would have the client carry it out again.
        bare = encodeMessage({ ...message, payload: new Uint8Array(0) });
        if (bare.length + 2 <= room) {
          return { frame: bare, echo: false, exempt: false };
        }
      }
    }
    const small = bare ?? frame;
    if (!this.#smallSent && small.length + 2 <= SMALL_DATAGRAM) {
      this.#smallSent = true;
      return { frame: small, echo: false, exempt: true };
    }
    if (incoming.answered || (success && !safe)) return undefined;
    return {
      frame: encodeMessage({
        code: Code.UNAUTHORIZED,
        token: message.token,
        options: [{
          number: Option.ECHO,
          value: this.#endpoint._echo(this.address),
        }],
        payload: new Uint8Array(0),
      }),
      echo: true,
      exempt: true,
    };
  }

  /**
   * To an unverified peer, where it still fits the budget, a response
   * offers an Echo value (RFC 9175 §2.4): a client that sends it with its
   * next request (as this layer's client side does) is verified then,
   * without a 4.01 first. The value is made again every 10 seconds.
   */
  #offerEcho(
    frame: Uint8Array,
    message: CoapMessage,
    room: number,
  ): Uint8Array {
    if (
      this.#verified || this.#endpoint.options.amplificationFactor === false ||
      frame.length + 2 + ECHO_OPTION_SIZE > room ||
      getOption(message, Option.ECHO) !== undefined
    ) {
      return frame;
    }
    const now = this.#endpoint._clock.now();
    if (
      this.#echoOffered === undefined || now - this.#echoOffered.at >= 10_000
    ) {
      this.#echoOffered = {
        value: this.#endpoint._echo(this.address, now),
        at: now,
      };
    }
    return encodeMessage({
      ...message,
      options: [...message.options, {
        number: Option.ECHO,
        value: this.#echoOffered.value,
      }],
    });
  }

  /** Sends a response: in the ACK, as a CON, or as a NON. */
  #answer(
    key: number | string,
    incoming: Incoming,
    frame: Uint8Array,
    final: boolean,
    exempt: boolean,
  ): void {
    incoming.answered = true;
    if (incoming.type === Type.CON && !incoming.acked) {
      // Piggybacked on the ACK.
      incoming.acked = true;
      incoming.ackDue = 0;
      const datagram = encodeDatagram(Type.ACK, incoming.messageId, frame);
      const seen = this.#seen.get(incoming.messageId);
      if (seen !== undefined) seen.reply = datagram;
      this.#emit(datagram, exempt);
      return;
    }
    const messageId = this.#newId();
    const notification = !final || incoming.notifications > 0;
    let confirmable: boolean;
    if (notification) {
      confirmable = final || this.#confirmableNext(incoming);
      incoming.notifications++;
    } else confirmable = incoming.type === Type.CON;
    if (!confirmable) {
      if (notification) {
        if (this.#recentNon === NONE_YET) this.#recentNon = new Map();
        this.#recentNon.set(messageId, key);
        if (this.#recentNon.size > 64) {
          this.#recentNon.delete(this.#recentNon.keys().next().value!);
        }
      }
      this.#emit(encodeDatagram(Type.NON, messageId, frame), exempt);
      return;
    }
    const entry = this.#confirmable(
      encodeDatagram(Type.CON, messageId, frame),
      messageId,
      { what: "response", token: key, incoming },
      exempt,
    );
    if (entry !== undefined && notification && !final) {
      incoming.conPending = messageId;
    }
  }

  #confirmable(
    datagram: Uint8Array,
    messageId: number,
    about: Pick<Unacked, "what" | "token" | "pingToken" | "incoming">,
    exempt = false,
  ): Unacked | undefined {
    const { ackTimeout, ackRandomFactor } = this.#endpoint.options;
    const timeout = ackTimeout *
      (1 + (ackRandomFactor - 1) * this.#endpoint._random());
    const entry: Unacked = {
      datagram,
      ...about,
      timer: undefined,
      timeout,
      retransmits: 0,
      sentAt: this.#endpoint._clock.now(),
      ids: [messageId],
    };
    if (!this.#emit(datagram, exempt)) {
      this.#overBudget();
      return undefined;
    }
    if (this.#unacked === NONE_YET) this.#unacked = new Map();
    this.#unacked.set(messageId, entry);
    this.#retransmitLater(entry);
    return entry;
  }

  /** An unverified peer that may be sent no more is given up. */
  #overBudget(): void {
    this._end(
      4000,
      `${this.address.hostname}:${this.address.port} answered nothing sent to its address, which is not verified, and may be sent no more (amplificationFactor)`,
    );
  }

  /** Forgets a CON of ours under every message ID it went out with. */
  #drop(entry: Unacked): void {
    for (const id of entry.ids) {
      if (this.#unacked.get(id) === entry) this.#unacked.delete(id);
    }
    this.#endpoint._clock.clearTimeout(entry.timer);
  }

  #retransmitLater(entry: Unacked): void {
    entry.timer = this.#endpoint._clock.setTimeout(() => {
      if (this.#unacked.get(entry.ids[0]) !== entry) return;
      if (entry.retransmits >= this.#endpoint.options.maxRetransmit) {
        this.#drop(entry);
        const seconds = Math.round(
          (this.#endpoint._clock.now() - entry.sentAt) / 1000,
        );
        this._end(
          4000,
          `No answer from ${this.address.hostname}:${this.address.port}: a ${entry.what}, sent ${
            entry.retransmits + 1
          } times, went unacknowledged for ${seconds} s`,
        );
        return;
      }
      entry.retransmits++;
      entry.timeout *= 2;
      if (entry.next !== undefined) {
        // The newer notification goes in its place, as a new message.
        const id = this.#newId();
        entry.datagram = encodeDatagram(Type.CON, id, entry.next);
        entry.next = undefined;
        entry.ids.push(id);
        // This entry is in the table already: it is the peer's own.
        this.#unacked.set(id, entry);
      }
      if (!this.#emit(entry.datagram)) {
        this.#drop(entry);
        this.#overBudget();
        return;
      }
      this.#retransmitLater(entry);
    }, entry.timeout);
  }

  // --- Incoming ----------------------------------------------------------

  /** @internal An empty ACK or RST. */
  _empty(datagram: Datagram): void {
    this.#heard(4);
    const entry = this.#unacked.get(datagram.messageId);
    if (entry === undefined) {
      // An RST to a NON notification ends its observation too.
      const key = this.#recentNon.get(datagram.messageId);
      if (key !== undefined && datagram.type === Type.RST) {
        this.#recentNon.delete(datagram.messageId);
        this.#reset(key);
      }
      return;
    }
    this.#drop(entry);
    // It answered what was sent to its address.
    this._verify();
    if (entry.what === "request") this.#requestAcked();
    if (
      datagram.type === Type.ACK && entry.next !== undefined && !entry.nextSent
    ) {
      // A newer notification came while this one awaited its ACK.
      const incoming = entry.incoming!;
      if (!incoming.cancelled) {
        this.#answer(
          entry.token!,
          incoming,
          entry.next,
          entry.nextFinal === true,
          false,
        );
      }
    }
    if (datagram.type === Type.RST) {
      if (entry.what === "ping" && entry.pingToken === undefined) {
        // The endpoint's own keep-alive: the peer is there.
      } else if (entry.what === "ping") {
        this.#deliver(encodeMessage({
          code: Code.PONG,
          token: entry.pingToken!,
          options: [],
          payload: new Uint8Array(0),
        }));
      } else if (entry.what === "response") this.#reset(entry.token!);
      else {
        // One request fails; the rest of the peer goes on.
        this.#failRequest(
          entry.token!,
          `${this.address.hostname}:${this.address.port} reset the request (RST)`,
        );
      }
    }
    this.#touch();
  }

  /** The peer reset a notification: the observation ends. */
  #reset(key: number | string): void {
    const incoming = this.#incoming.get(key);
    if (incoming !== undefined) this.#cancel(incoming);
  }

  /** Ends an observation here: the connection above is told it ended. */
  #cancel(incoming: Incoming): void {
    if (incoming.request === undefined || incoming.cancelled) return;
    // RFC 7641 §3.6's deregistration, as the connection above knows it: a
    // GET on the token with Observe 1, whose final response goes nowhere.
    incoming.cancelled = true;
    const request = decodeMessage(unpack(incoming.request));
    this.#deliver(encodeMessage({
      ...request,
      options: request.options.map((option) =>
        option.number === Option.OBSERVE
          ? { number: Option.OBSERVE, value: uint(1) }
          : option
      ),
    }));
  }

  /** @internal A message with a code, from the peer. */
  _datagram(datagram: Datagram): void {
    const { type, messageId, message, frame } = datagram;
    const size = frame.length + 2;
    this.#heard(size);
    const kind = message.code >> 5;
    const isRequest = kind === 0;
    const endpoint = this.#endpoint;
    if (kind !== 0 && kind !== 2 && kind !== 4 && kind !== 5) {
      // Signalling (7.xx) belongs to reliable transports, classes 1, 3 and
      // 6 are reserved: on UDP none is an answer, and none reaches the
      // connection (where a 7.01 would narrow what it sends).
      endpoint._drop(
        "datagrams with a signalling or reserved code",
        `Dropped a ${
          codeToString(message.code)
        } from ${this.address.hostname}:${this.address.port}: no such code belongs on UDP`,
      );
      if (type === Type.CON) {
        endpoint._send(encodeDatagram(Type.RST, messageId), this.address);
      }
      return;
    }
    if (type === Type.ACK || type === Type.RST) {
      const entry = this.#unacked.get(messageId);
      if (entry === undefined || entry.what !== "request") return;
      if (
        type === Type.RST || isRequest ||
        tokenKey(message.token) !== entry.token
      ) {
        // Not an answer to that request (an RST has no code, an ACK
        // carries the request's token): it ends nothing.
        endpoint._drop(
          "answers that do not match their request",
          `Dropped an ${
            type === Type.ACK ? "ACK" : "RST"
          } from ${this.address.hostname}:${this.address.port} with code ${
            codeToString(message.code)
          } that does not answer the request it names`,
        );
        return;
      }
      this.#drop(entry);
      this.#requestAcked();
      if (size > endpoint.options.maxMessageSize) {
        this.#failRequest(entry.token!, this.#tooLarge(size));
      } else this.#responseArrived(frame, message);
      this.#touch();
      return;
    }
    // CON or NON.
    const seen = this.#seen.get(messageId);
    if (seen !== undefined) {
      if (this._lastHeard - seen.at < endpoint.options.exchangeLifetime) {
        // A duplicate: the same answer again, and nothing handled twice.
        if (seen.reply !== undefined) this.#emit(seen.reply);
        return;
      }
      // Remembered past its lifetime: new again, and remembered anew, last.
      this.#seen.delete(messageId);
    }
    if (size > endpoint.options.maxMessageSize) {
      this.#oversized(datagram, size);
      return;
    }
    if (isRequest) this.#requestArrived(datagram);
    else {
      const key = tokenKey(message.token);
      if (!this.#tokens?.has(key)) {
        this.#endpoint._send(
          encodeDatagram(Type.RST, messageId),
          this.address,
        );
        return;
      }
      const record = this.#remember(messageId);
      if (type === Type.CON) {
        record.reply = encodeDatagram(Type.ACK, messageId);
        this.#endpoint._send(record.reply, this.address);
      }
      // A response that came before its request's ACK (which was lost, or
      // never sent) acknowledges the request too (RFC 7252 §5.2.2): it is
      // sent no more, and the next request may go.
      if (this.#requestsUnacked > 0) {
        for (const entry of this.#unacked.values()) {
          if (entry.what === "request" && entry.token === key) {
            this.#drop(entry);
            this.#requestAcked();
            break;
          }
        }
      }
      this.#responseArrived(frame, message);
    }
    this.#touch();
  }

  /** Why a response too large for this side fails its request. */
  #tooLarge(size: number): string {
    const line =
      `${this.address.hostname}:${this.address.port} answered with ${size} bytes, over the ${this.#endpoint.options.maxMessageSize} this side takes (maxMessageSize)`;
    this.#endpoint._drop("answers over maxMessageSize", `Dropped: ${line}`);
    return line;
  }

  /**
   * A CON or NON over `maxMessageSize`: a request is answered 4.13 with
   * Size1 (RFC 7959 §2.9.3) and goes no further; a response fails its
   * request. Neither ends the peer.
   */
  #oversized(datagram: Datagram, size: number): void {
    const { type, messageId, message } = datagram;
    const max = this.#endpoint.options.maxMessageSize;
    const record = this.#remember(messageId);
    if (message.code >> 5 !== 0) {
      if (type === Type.CON) {
        record.reply = encodeDatagram(Type.ACK, messageId);
        this.#endpoint._send(record.reply, this.address);
      }
      const key = tokenKey(message.token);
      if (this.#tokens?.has(key)) {
        this.#failRequest(key, this.#tooLarge(size));
      }
      return;
    }
    this.#endpoint._drop(
      "requests over maxMessageSize",
      `Refused a request of ${size} bytes from ${this.address.hostname}:${this.address.port} with 4.13: over ${max} (maxMessageSize)`,
    );
    const answer = encodeMessage({
      code: Code.REQUEST_ENTITY_TOO_LARGE,
      token: message.token,
      options: [{ number: Option.SIZE1, value: uint(max) }],
      payload: new Uint8Array(0),
    });
    record.reply = encodeDatagram(
      type === Type.CON ? Type.ACK : Type.NON,
      type === Type.CON ? messageId : this.#newId(),
      answer,
    );
    this.#emit(record.reply);
  }

  /**
   * Ends one request of ours with a 5.02 made here, saying why (the peer
   * reset it, or answered what this side cannot take): the exchange above
   * ends, and the peer's other exchanges go on.
   */
  #failRequest(key: number | string, why: string): void {
    if (!this.#tokens?.delete(key)) return;
    this.#order?.delete(key);
    this.#sentRequests?.delete(key);
    this.#echoRetried?.delete(key);
    this.#deliver(encodeMessage({
      code: BAD_GATEWAY,
      token: keyToken(key),
      options: [],
      payload: utf8(`Bad Gateway: ${why}`),
    }));
  }

  #responseArrived(frame: Uint8Array, message: CoapMessage): void {
    const key = tokenKey(message.token);
    const echo = getOption(message, Option.ECHO);
    if (echo !== undefined && echo.length <= 40) {
      if (message.code === Code.UNAUTHORIZED && this.#echoAgain(key, echo)) {
        return;
      }
      // RFC 9175 §2.3: a value offered with any other response goes with
      // the next request, which proves this side's address to the server.
      this.#peerEcho = echo.slice();
    }
    const observe = getOption(message, Option.OBSERVE);
    if (observe === undefined || message.code >> 5 !== 2) {
      this.#tokens?.delete(key);
      this.#order?.delete(key);
      this.#sentRequests?.delete(key);
      this.#echoRetried?.delete(key);
    } else {
      // RFC 7641 §3.4: datagrams may overtake each other; a notification
      // older than one already passed on is dropped, so the connection
      // above sees them in order, as over WebSocket.
      const value = readObserve(observe);
      const now = this.#endpoint._clock.now();
      const last = this.#order?.get(key);
      if (last !== undefined && !fresher(last, value, now)) return;
      (this.#order ??= new Map()).set(key, { value, at: now });
    }
    this.#deliver(frame, message);
  }

  /**
   * RFC 9175 §2.3: a 4.01 with an Echo option to a request of ours is
   * answered by sending the request again with that value, once a
   * request; the 4.01 goes no further. Returns whether it did.
   */
  #echoAgain(key: number | string, echo: Uint8Array): boolean {
    const sent = this.#sentRequests?.get(key);
    if (sent === undefined || this.#echoRetried?.has(key)) return false;
    (this.#echoRetried ??= new Set()).add(key);
    const request = decodeMessage(sent);
    const again = encodeMessage({
      ...request,
      options: [
        ...request.options.filter((option) => option.number !== Option.ECHO),
        { number: Option.ECHO, value: echo.slice() },
      ],
    });
    this.#request(again, decodeMessage(again));
    return true;
  }

  #requestArrived(datagram: Datagram): void {
    const { type, messageId, message, frame } = datagram;
    const echo = getOption(message, Option.ECHO);
    if (
      echo !== undefined && !this.#verified &&
      this.#endpoint._echoGood(echo, this.address)
    ) {
      this._verify();
    }
    const record = this.#remember(messageId);
    const key = tokenKey(message.token);
    const previous = this.#incoming.get(key);
    if (previous !== undefined) previous.ackDue = 0;
    const observe = getOption(message, Option.OBSERVE);
    // Every field from the start: one added later (conPending, with the
    // first CON notification) grew each observation a property store.
    const incoming: Incoming = {
      messageId,
      type,
      method: message.code,
      conPending: undefined,
      answered: false,
      acked: false,
      ackDue: 0,
      seen: record,
      request: observe !== undefined && readObserve(observe) === 0
        ? pack(frame)
        : undefined,
      notifications: 0,
      cancelled: false,
      vouched: false,
    };
    this.#incoming.set(key, incoming);
    if (type === Type.CON) this.#endpoint._ackLater(this, incoming);
    this.#deliver(frame, message);
  }

  /**
   * @internal The CON's response did not come within `emptyAckDelay`: an
   * empty ACK says it arrived (RFC 7252 §5.2.2), and answers a duplicate.
   */
  _ackNow(incoming: Incoming): void {
    incoming.ackDue = 0;
    if (incoming.acked || this.#readyState !== 1) return;
    incoming.acked = true;
    const ack = encodeDatagram(Type.ACK, incoming.messageId);
    if (incoming.seen !== undefined) incoming.seen.reply = ack;
    this.#endpoint._send(ack, this.address);
  }

  /** Remembers a message ID for duplicate detection, within its bounds. */
  #remember(messageId: number): Seen {
    // Called for a datagram just heard: its time is now.
    const now = this._lastHeard;
    const seen = this.#seen;
    const { exchangeLifetime, maxRemembered } = this.#endpoint.options;
    // (An ID remembered past its lifetime was let go as it came again.)
    // The expired are let go when the table is full, or once a second: not
    // looked for with every datagram (a lookup ignores them meanwhile).
    if (seen.size >= maxRemembered || now - this.#prunedAt >= 1000) {
      this.#prunedAt = now;
      // A full table lets its oldest sixteenth go at once: this runs once
      // every so many messages of a busy peer, not with each.
      let room = seen.size >= maxRemembered
        ? Math.max(1, maxRemembered >> 4)
        : 0;
      for (const id of seen.keys()) {
        if (
          room <= 0 && seen.size < maxRemembered &&
          now - seen.get(id)!.at < exchangeLifetime
        ) {
          break;
        }
        seen.delete(id);
        room--;
      }
    }
    const record = new Seen(now);
    seen.set(messageId, record);
    return record;
  }

  /** When the remembered message IDs were last let go of the expired. */
  // Long ago, as a small integer: -Infinity made V8 box the field.
  #prunedAt = -(2 ** 30);
}

/**
 * The `onPeer` that serves `server`'s resources over UDP: each new peer is
 * one of the server's connections, counted against its `maxConnections`
 * and `maxConnectionsPerAddress`. Where a limit is reached, the endpoint's
 * unverified peer heard from least recently (from the same address if
 * there is one) makes room; where none can, the peer is refused, with a
 * line a second at most.
 *
 * @param server The server.
 * @returns The handler for {@linkcode UdpOptions.onPeer}.
 */
export function servePeers(
  server: CoapServer,
): (socket: UdpPeerSocket, address: PeerAddress) => void {
  return (socket, address) => {
    const { endpoint } = socket;
    let refused = server.admit(address.hostname);
    if (
      refused !== undefined &&
      endpoint._evictUnverified(socket, address.hostname)
    ) {
      refused = server.admit(address.hostname);
    }
    if (refused !== undefined) {
      endpoint.warnOnce(
        "CoAP over UDP refused by the server's connection limits",
        `Refusing CoAP over UDP from ${address.hostname}:${address.port}: ${refused}`,
      );
      socket.close(1013, refused);
      return;
    }
    server.accept(socket, {
      address: address.hostname,
      clock: endpoint._clock,
    });
  };
}
