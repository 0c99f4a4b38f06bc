// This module is browser compatible.

/**
 * AES-CCM (RFC 3610, NIST SP 800-38C) on WebCrypto, which has no CCM of its
 * own: the CBC-MAC is the last block of an AES-CBC encryption with a zero
 * IV, and the encryption one AES-CTR pass that also masks the tag. OSCORE's
 * AES-CCM-16-64-128 (COSE algorithm 10: 13-byte nonce, 8-byte tag) is
 * `new AesCcm(key)`; other tag and nonce lengths are options. Tags are
 * compared in constant time, and a message whose tag does not match gives
 * back no plaintext at all.
 *
 * @module
 */

/** The options of {@linkcode AesCcm}: RFC 3610's M and the nonce length. */
export interface AesCcmOptions {
  /**
   * The tag's length in bytes (M): 4, 6, 8, 10, 12, 14 or 16.
   *
   * @default {8}
   */
  tagLength?: number;
  /**
   * The nonce's length in bytes, 7 to 13 (15 − L).
   *
   * @default {13}
   */
  nonceLength?: number;
}

const ZERO_IV = new Uint8Array(16);

/**
 * One AES key for CCM: {@linkcode AesCcm.prototype.encrypt} and
 * {@linkcode AesCcm.prototype.decrypt}, each two WebCrypto calls.
 *
 * @example Encrypt and decrypt, and a changed byte is refused
 * ```ts
 * import { AesCcm } from "./ccm.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const ccm = await AesCcm.create(new Uint8Array(16));
 * const nonce = new Uint8Array(13);
 * const aad = new TextEncoder().encode("header");
 * const sealed = await ccm.encrypt(nonce, new TextEncoder().encode("hi"), aad);
 * assertEquals(sealed.length, 2 + 8);
 * assertEquals(new TextDecoder().decode(await ccm.decrypt(nonce, sealed, aad)), "hi");
 * sealed[0] ^= 1;
 * assertEquals(await ccm.decrypt(nonce, sealed, aad), undefined);
 * ```
 */
export class AesCcm {
  readonly #ctr: CryptoKey;
  readonly #cbc: CryptoKey;
  /** The tag's length in bytes (M). */
  readonly tagLength: number;
  /** The nonce's length in bytes (15 − L). */
  readonly nonceLength: number;
  /** L: the bytes that count the message's length and the blocks. */
  readonly #l: number;

  private constructor(
    ctr: CryptoKey,
    cbc: CryptoKey,
    tagLength: number,
    nonceLength: number,
  ) {
    this.#ctr = ctr;
    this.#cbc = cbc;
    this.tagLength = tagLength;
    this.nonceLength = nonceLength;
    this.#l = 15 - nonceLength;
  }

  /**
   * Imports an AES key (16, 24 or 32 bytes) for CCM.
   *
   * @param key The raw key.
   * @param options The tag and nonce lengths.
   * @returns The cipher.
   * @throws {RangeError} If the key, tag or nonce length is not one CCM has.
   */
  static async create(
    key: Uint8Array,
    options: AesCcmOptions = {},
  ): Promise<AesCcm> {
    const tagLength = options.tagLength ?? 8;
    const nonceLength = options.nonceLength ?? 13;
    if (![16, 24, 32].includes(key.length)) {
      throw new RangeError(
        `Cannot create an AES-CCM cipher: the key must be 16, 24 or 32 bytes, got ${key.length}`,
      );
    }
    if (
      !Number.isInteger(tagLength) || tagLength < 4 || tagLength > 16 ||
      tagLength % 2 !== 0
    ) {
      throw new RangeError(
        `Cannot create an AES-CCM cipher: tagLength must be 4, 6, 8, 10, 12, 14 or 16, got ${
          String(tagLength)
        }`,
      );
    }
    if (!Number.isInteger(nonceLength) || nonceLength < 7 || nonceLength > 13) {
      throw new RangeError(
        `Cannot create an AES-CCM cipher: nonceLength must be 7 to 13, got ${
          String(nonceLength)
        }`,
      );
    }
    const raw = key.slice();
    const [ctr, cbc] = await Promise.all([
      crypto.subtle.importKey("raw", raw, "AES-CTR", false, ["encrypt"]),
      crypto.subtle.importKey("raw", raw, "AES-CBC", false, ["encrypt"]),
    ]);
    return new AesCcm(ctr, cbc, tagLength, nonceLength);
  }

  /**
   * Encrypts and authenticates.
   *
   * @param nonce The nonce, `nonceLength` bytes; never twice with one key.
   * @param plaintext The message.
   * @param aad Data authenticated but not encrypted.
   * @returns The ciphertext with the tag after it.
   * @throws {RangeError} If the nonce has the wrong length or the message
   * is too long for L.
   */
  async encrypt(
    nonce: Uint8Array,
    plaintext: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer>> {
    this.#check(nonce, plaintext.length, "encrypt");
    // The MAC and one CTR pass from A_0 at once: the pass's first block is
    // S_0, which masks the tag; the rest is the ciphertext.
    const input = new Uint8Array(16 + plaintext.length);
    input.set(plaintext, 16);
    const [tag, out] = await Promise.all([
      this.#mac(nonce, plaintext, aad),
      this.#crypt(nonce, input),
    ]);
    const result = new Uint8Array(plaintext.length + this.tagLength);
    result.set(out.subarray(16), 0);
    for (let i = 0; i < this.tagLength; i++) {
      result[plaintext.length + i] = tag[i] ^ out[i];
    }
    return result;
  }

  /**
   * Checks and decrypts.
   *
   * @param nonce The nonce it was encrypted with.
   * @param sealed The ciphertext with the tag after it.
   * @param aad The data authenticated with it.
   * @returns The plaintext, or `undefined` if the tag does not match (or
   * `sealed` is shorter than a tag).
   * @throws {RangeError} If the nonce has the wrong length.
   */
  async decrypt(
    nonce: Uint8Array,
    sealed: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array<ArrayBuffer> | undefined> {
    const length = sealed.length - this.tagLength;
    if (length < 0) return undefined;
    this.#check(nonce, length, "decrypt");
    const input = new Uint8Array(16 + length);
    input.set(sealed.subarray(length), 0);
    input.set(sealed.subarray(0, length), 16);
    const out = await this.#crypt(nonce, input);
    const plaintext = out.slice(16);
    const expected = await this.#mac(nonce, plaintext, aad);
    let diff = 0;
    for (let i = 0; i < this.tagLength; i++) diff |= expected[i] ^ out[i];
    if (diff !== 0) {
      plaintext.fill(0);
      return undefined;
    }
    return plaintext;
  }

  #check(nonce: Uint8Array, length: number, what: string): void {
    if (nonce.length !== this.nonceLength) {
      throw new RangeError(
        `Cannot ${what} with AES-CCM: the nonce must be ${this.nonceLength} bytes, got ${nonce.length}`,
      );
    }
    if (this.#l < 6 && length >= 2 ** (8 * this.#l)) {
      throw new RangeError(
        `Cannot ${what} with AES-CCM: ${length} bytes is too long for a ${this.nonceLength}-byte nonce`,
      );
    }
  }

  /** AES-CTR from the counter block A_0 (flags L−1, the nonce, 0). */
  async #crypt(
    nonce: Uint8Array,
    input: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const counter = new Uint8Array(16);
    counter[0] = this.#l - 1;
    counter.set(nonce, 1);
    return new Uint8Array(
      await crypto.subtle.encrypt(
        // The counter never passes its L bytes (#check bounds the length),
        // so a 64-bit one counts the same; Deno takes only 32, 64 or 128.
        { name: "AES-CTR", counter, length: 64 },
        this.#ctr,
        input,
      ),
    );
  }

  /** The CBC-MAC T over B_0, the encoded AAD and the message, padded. */
  async #mac(
    nonce: Uint8Array,
    message: Uint8Array,
    aad: Uint8Array,
  ): Promise<Uint8Array> {
    const a = aad.length;
    const aadHead = a === 0 ? 0 : a < 0xff00 ? 2 : 6;
    const aadBlocks = Math.ceil((aadHead + a) / 16);
    const messageBlocks = Math.ceil(message.length / 16);
    const blocks = new Uint8Array(16 * (1 + aadBlocks + messageBlocks));
    // B_0: flags (Adata, (M−2)/2, L−1), the nonce, the message's length.
    blocks[0] = (a > 0 ? 0x40 : 0) | (((this.tagLength - 2) / 2) << 3) |
      (this.#l - 1);
    blocks.set(nonce, 1);
    let length = message.length;
    for (let i = 15; i > nonce.length; i--) {
      blocks[i] = length & 0xff;
      length = Math.floor(length / 256);
    }
    if (a > 0) {
      if (aadHead === 2) {
        blocks[16] = a >> 8;
        blocks[17] = a & 0xff;
      } else {
        blocks[16] = 0xff;
        blocks[17] = 0xfe;
        new DataView(blocks.buffer).setUint32(18, a);
      }
      blocks.set(aad, 16 + aadHead);
    }
    blocks.set(message, 16 * (1 + aadBlocks));
    const out = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-CBC", iv: ZERO_IV },
        this.#cbc,
        blocks,
      ),
    );
    // WebCrypto pads with one more block; the MAC is the one before it.
    return out.subarray(blocks.length - 16, blocks.length);
  }
}
