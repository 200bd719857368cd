// ed25519 keys: the chain signs the 32-byte transaction hash with the sender's key.

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";
import { addressFromPublicKey } from "./address.js";
import { fromHex, toHex } from "./encoding.js";

ed.hashes.sha512 = sha512;

export class Key {
  readonly secret: Uint8Array;
  readonly publicKey: Uint8Array;

  private constructor(secret: Uint8Array) {
    if (secret.length !== 32) throw new Error(`a secret key is 32 bytes, not ${secret.length}`);
    this.secret = secret;
    this.publicKey = ed.getPublicKey(secret);
  }

  /** A new random key. */
  static generate(): Key {
    return new Key(ed.utils.randomSecretKey());
  }

  /** A key from its 32 secret bytes (hex, or bytes). */
  static fromSecret(secret: string | Uint8Array): Key {
    return new Key(typeof secret === "string" ? fromHex(secret, "secret key") : Uint8Array.from(secret));
  }

  get address(): string {
    return addressFromPublicKey(this.publicKey);
  }

  get publicKeyHex(): string {
    return toHex(this.publicKey);
  }

  sign(message: Uint8Array): Uint8Array {
    return ed.sign(message, this.secret);
  }
}

export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  return ed.verify(signature, message, publicKey);
}
