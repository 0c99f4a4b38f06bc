import { assertEquals, assertRejects } from "@std/assert";
import { AesCcm } from "./ccm.ts";

const fromHex = (text: string): Uint8Array =>
  new Uint8Array((text.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const toHex = (bytes: Uint8Array): string =>
  [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

// RFC 3610 §8, packet vectors #1 to #24: [aad, plaintext, ciphertext, tag,
// key, nonce]. #1–#12 have M = 8 or 10 with the key C0…CF; #13–#24 another.
const RFC3610: readonly (readonly string[])[] = [
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
    "588c979a61c663d2f066d0c2c0f989806d5f6b61dac384",
    "17e8d12cfdf926e0",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000003020100a0a1a2a3a4a5",
  ],
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3b",
    "a091d56e10400916",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000004030201a0a1a2a3a4a5",
  ],
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "51b1e5f44a197d1da46b0f8e2d282ae871e838bb64da859657",
    "4adaa76fbd9fb0c5",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000005040302a0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e",
    "a28c6865939a9a79faaa5c4c2a9d4a91cdac8c",
    "96c861b9c9e61ef1",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000006050403a0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "dcf1fb7b5d9e23fb9d4e131253658ad86ebdca3e",
    "51e83f077d9c2d93",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000007060504a0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "6fc1b011f006568b5171a42d953d469b2570a4bd87",
    "405a0443ac91cb94",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000008070605a0a1a2a3a4a5",
  ],
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
    "0135d1b2c95f41d5d1d4fec185d166b8094e999dfed96c",
    "048c56602c97acbb7490",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "00000009080706a0a1a2a3a4a5",
  ],
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "7b75399ac0831dd2f0bbd75879a2fd8f6cae6b6cd9b7db24",
    "c17b4433f434963f34b4",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "0000000a090807a0a1a2a3a4a5",
  ],
  [
    "0001020304050607",
    "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "82531a60cc24945a4b8279181ab5c84df21ce7f9b73f42e197",
    "ea9c07e56b5eb17e5f4e",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "0000000b0a0908a0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e",
    "07342594157785152b074098330abb141b947b",
    "566aa9406b4d999988dd",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "0000000c0b0a09a0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "676bb20380b0e301e8ab79590a396da78b834934",
    "f53aa2e9107a8b6c022c",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "0000000d0c0b0aa0a1a2a3a4a5",
  ],
  [
    "000102030405060708090a0b",
    "0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "c0ffa0d6f05bdb67f24d43a4338d2aa4bed7b20e43",
    "cd1aa31662e7ad65d6db",
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf",
    "0000000e0d0c0ba0a1a2a3a4a5",
  ],
  [
    "0be1a88bace018b1",
    "08e8cf97d820ea258460e96ad9cf5289054d895ceac47c",
    "4cb97f86a2a4689a877947ab8091ef5386a6ffbdd080f8",
    "e78cf7cb0cddd7b3",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00412b4ea9cdbe3c9696766cfa",
  ],
  [
    "63018f76dc8a1bcb",
    "9020ea6f91bdd85afa0039ba4baff9bfb79c7028949cd0ec",
    "4ccb1e7ca981befaa0726c55d378061298c85c92814abc33",
    "c52ee81d7d77c08a",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "0033568ef7b2633c9696766cfa",
  ],
  [
    "aa6cfa36cae86b40",
    "b916e0eacc1c00d7dcec68ec0b3bbb1a02de8a2d1aa346132e",
    "b1d23a2220ddc0ac900d9aa03c61fcf4a559a4417767089708",
    "a776796edb723506",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00103fe41336713c9696766cfa",
  ],
  [
    "d0d0735c531e1becf049c244",
    "12daac5630efa5396f770ce1a66b21f7b2101c",
    "14d253c3967b70609b7cbb7c49916028324526",
    "9a6f49975bcadeaf",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00764c63b8058e3c9696766cfa",
  ],
  [
    "77b60f011c03e1525899bcae",
    "e88b6a46c78d63e52eb8c546efb5de6f75e9cc0d",
    "5545ff1a085ee2efbf52b2e04bee1e2336c73e3f",
    "762c0c7744fe7e3c",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00f8b678094e3b3c9696766cfa",
  ],
  [
    "cd9044d2b71fdb8120ea60c0",
    "6435acbafb11a82e2f071d7ca4a5ebd93a803ba87f",
    "009769ecabdf48625594c59251e6035722675e04c8",
    "47099e5ae0704551",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00d560912d3f703c9696766cfa",
  ],
  [
    "d85bc7e69f944fb8",
    "8a19b950bcf71a018e5e6701c91787659809d67dbedd18",
    "bc218daa947427b6db386a99ac1aef23ade0b52939cb6a",
    "637cf9bec2408897c6ba",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "0042fff8f1951c3c9696766cfa",
  ],
  [
    "74a0ebc9069f5b37",
    "1761433c37c5a35fc1f39f406302eb907c6163be38c98437",
    "5810e6fd25874022e80361a478e3e9cf484ab04f447efff6",
    "f0a477cc2fc9bf548944",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "00920f40e56cdc3c9696766cfa",
  ],
  [
    "44a3aa3aae6475ca",
    "a434a8e58500c6e41530538862d686ea9e81301b5ae4226bfa",
    "f2beed7bc5098e83feb5b31608f8e29c38819a89c8e776f154",
    "4d4151a4ed3a8b87b9ce",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "0027ca0c7120bc3c9696766cfa",
  ],
  [
    "ec46bb63b02520c33c49fd70",
    "b96b49e21d621741632875db7f6c9243d2d7c2",
    "31d750a09da3ed7fddd49a2032aabf17ec8ebf",
    "7d22c8088c666be5c197",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "005b8ccbcd9af83c9696766cfa",
  ],
  [
    "47a65ac78b3d594227e85e71",
    "e2fcfbb880442c731bf95167c8ffd7895e337076",
    "e882f1dbd38ce3eda7c23f04dd65071eb41342ac",
    "df7e00dccec7ae52987d",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "003ebe94044b9a3c9696766cfa",
  ],
  [
    "6e37a6ef546d955d34ab6059",
    "abf21c0b02feb88f856df4a37381bce3cc128517d4",
    "f32905b88a641b04b9c9ffb58cc390900f3da12ab1",
    "6dce9e82efa16da62059",
    "d7828d13b2b0bdc325a76236df93cc6b",
    "008d493b30ae8b3c9696766cfa",
  ],
];

Deno.test("AesCcm reproduces RFC 3610's 24 packet vectors and decrypts them back", async () => {
  const results: string[] = [];
  for (const [aad, plain, _cipher, tag, key, nonce] of RFC3610) {
    const ccm = await AesCcm.create(fromHex(key), {
      tagLength: tag.length / 2,
    });
    const sealed = await ccm.encrypt(
      fromHex(nonce),
      fromHex(plain),
      fromHex(aad),
    );
    const opened = await ccm.decrypt(fromHex(nonce), sealed, fromHex(aad));
    results.push(`${toHex(sealed)} ${opened && toHex(opened)}`);
  }
  assertEquals(results, RFC3610.map((v) => `${v[2]}${v[3]} ${v[1]}`));
});

/** Deterministic bytes: SHA-256 of `seed` and a counter, concatenated. */
async function bytes(seed: string, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length + 32);
  for (let i = 0; i * 32 < length; i++) {
    const digest = await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(seed + i),
    );
    out.set(new Uint8Array(digest), i * 32);
  }
  return out.subarray(0, length);
}

Deno.test("AesCcm agrees with Python's cryptography AESCCM on the shapes RFC 3610 lacks", async () => {
  // [key, nonce, tag, plaintext and AAD lengths, the sealed output (its
  // SHA-256 when long)], from cryptography's AESCCM with the same inputs:
  // empty message and AAD, a 4-byte and a 16-byte tag, 7- and 12-byte
  // nonces, AES-192 and -256, and an AAD past 0xff00 bytes (6-byte head).
  const cases: [number, number, number, number, number, string][] = [
    [16, 13, 8, 0, 0, "72b995e844b275c6"],
    [16, 13, 8, 0, 5, "f8fa7ff953f41a53"],
    [16, 13, 4, 17, 3, "6682874c2f722bb0d349781bffa0ba67a1c40de30e"],
    [
      16,
      7,
      16,
      40,
      20,
      "f62499176652f0e96903226a025f2a91874af33a6892b3b3803013340fc48c5e82d376bd5795ebc3fc5d08d4660cf2d38d896bc030257adc",
    ],
    [
      32,
      12,
      12,
      33,
      0,
      "173c283ad2cc70ef53cbd4878e2f5249ef755015f20f460d187fcb5d934ad42b5946b681cdf8c88aefdecd7136",
    ],
    [
      24,
      13,
      8,
      1000,
      65300,
      "93d881ebb3bb17d0b38ee69fc709887f1928d98b426002af9c734f0b085e823b",
    ],
  ];
  const got: string[] = [];
  for (const [k, n, m, p, a] of cases) {
    const ccm = await AesCcm.create(await bytes(`k${k}${p}`, k), {
      tagLength: m,
      nonceLength: n,
    });
    const nonce = await bytes(`n${p}`, n);
    const plain = await bytes(`p${p}`, p);
    const aad = await bytes(`a${a}`, a);
    const sealed = await ccm.encrypt(nonce, plain, aad);
    const opened = await ccm.decrypt(nonce, sealed, aad);
    const shown = sealed.length > 64
      ? toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", sealed)))
      : toHex(sealed);
    got.push(
      `${shown} ${opened !== undefined && toHex(opened) === toHex(plain)}`,
    );
  }
  assertEquals(got, cases.map((c) => `${c[5]} true`));
});

Deno.test("AesCcm.decrypt() gives back nothing for a changed ciphertext, tag, nonce or AAD, or a short input", async () => {
  const [aad, plain, cipher, tag, key, nonce] = RFC3610[0];
  const ccm = await AesCcm.create(fromHex(key));
  const sealed = fromHex(cipher + tag);
  const flip = (bytes: Uint8Array, at: number) => {
    const copy = bytes.slice();
    copy[at] ^= 0x80;
    return copy;
  };
  const results = [
    await ccm.decrypt(fromHex(nonce), flip(sealed, 0), fromHex(aad)),
    await ccm.decrypt(
      fromHex(nonce),
      flip(sealed, sealed.length - 1),
      fromHex(aad),
    ),
    await ccm.decrypt(flip(fromHex(nonce), 12), sealed, fromHex(aad)),
    await ccm.decrypt(fromHex(nonce), sealed, flip(fromHex(aad), 0)),
    await ccm.decrypt(fromHex(nonce), sealed, new Uint8Array(0)),
    await ccm.decrypt(fromHex(nonce), sealed.subarray(0, 7), fromHex(aad)),
  ];
  assertEquals(results, [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ]);
  assertEquals(
    toHex((await ccm.decrypt(fromHex(nonce), sealed, fromHex(aad)))!),
    plain,
  );
});

Deno.test("AesCcm refuses a key, tag or nonce length CCM does not have, and a nonce of the wrong length", async () => {
  const messages: string[] = [];
  for (
    const [key, options] of [
      [new Uint8Array(15), {}],
      [new Uint8Array(16), { tagLength: 7 }],
      [new Uint8Array(16), { tagLength: 18 }],
      [new Uint8Array(16), { nonceLength: 6 }],
      [new Uint8Array(16), { nonceLength: 14 }],
    ] as const
  ) {
    await assertRejects(() => AesCcm.create(key, options), RangeError).then(
      (error) => messages.push((error as Error).message),
    );
  }
  assertEquals(messages, [
    "Cannot create an AES-CCM cipher: the key must be 16, 24 or 32 bytes, got 15",
    "Cannot create an AES-CCM cipher: tagLength must be 4, 6, 8, 10, 12, 14 or 16, got 7",
    "Cannot create an AES-CCM cipher: tagLength must be 4, 6, 8, 10, 12, 14 or 16, got 18",
    "Cannot create an AES-CCM cipher: nonceLength must be 7 to 13, got 6",
    "Cannot create an AES-CCM cipher: nonceLength must be 7 to 13, got 14",
  ]);
  const ccm = await AesCcm.create(new Uint8Array(16));
  const error = await assertRejects(
    () => ccm.encrypt(new Uint8Array(12), new Uint8Array(1), new Uint8Array(0)),
    RangeError,
  );
  assertEquals(
    error.message,
    "Cannot encrypt with AES-CCM: the nonce must be 13 bytes, got 12",
  );
  const long = await assertRejects(
    () =>
      ccm.encrypt(new Uint8Array(13), new Uint8Array(65536), new Uint8Array(0)),
    RangeError,
  );
  assertEquals(
    long.message,
    "Cannot encrypt with AES-CCM: 65536 bytes is too long for a 13-byte nonce",
  );
});
