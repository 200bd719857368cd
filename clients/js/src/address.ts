// Addresses: 20 bytes of blake3("aergo/address" ‖ 0 ‖ public key), written as bech32m with the
// prefix "aergo" (docs/rpc.md).

import { bech32m } from "@scure/base";
import { blake3 } from "@noble/hashes/blake3.js";
import { domainHash, EncodeError } from "./encoding.js";

const PREFIX = "aergo";

export function addressFromPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new EncodeError(`a public key is 32 bytes, not ${publicKey.length}`);
  return encodeAddress(domainHash(blake3, "aergo/address", publicKey).slice(0, 20));
}

export function encodeAddress(bytes: Uint8Array): string {
  if (bytes.length !== 20) throw new EncodeError(`an address is 20 bytes, not ${bytes.length}`);
  return bech32m.encode(PREFIX, bech32m.toWords(bytes));
}

/** The 20 bytes of an `aergo1…` address; a mistyped one fails its checksum. */
export function decodeAddress(text: string): Uint8Array {
  let decoded;
  try {
    decoded = bech32m.decode(text as `${string}1${string}`);
  } catch (e) {
    throw new EncodeError(`address ${JSON.stringify(text)} is not valid bech32m: ${(e as Error).message}`);
  }
  if (decoded.prefix !== PREFIX) {
    throw new EncodeError(`address ${JSON.stringify(text)} has prefix ${decoded.prefix}; AERGO addresses start with aergo1`);
  }
  const bytes = bech32m.fromWords(decoded.words);
  if (bytes.length !== 20) throw new EncodeError(`address ${JSON.stringify(text)} holds ${bytes.length} bytes, not 20`);
  return bytes;
}
