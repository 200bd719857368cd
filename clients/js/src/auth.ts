// X-Aergo-Auth: a request to a private repository signed by a member's key
// (docs/repositories.md, "Access control"); the Rust side is aergo_api::auth.
//
//   X-Aergo-Auth: <public key hex>:<unix ms>:<signature hex>
//   signature = ed25519(key, H("aergo/rpc-auth", repo ‖ 0 ‖ unix ms as u64 BE ‖ H("aergo/rpc-body", body)))
//   H(d, x) = blake3(d ‖ 0 ‖ x)

import { blake3 } from "@noble/hashes/blake3.js";
import { concat, domainHash, toHex } from "./encoding.js";
import { Key } from "./keys.js";

/** The header's name. */
export const AUTH_HEADER = "x-aergo-auth";

/** What a member signs for a request of `body` to repository `repo` at `unixMs`. */
export function authMessage(repo: string, unixMs: number | bigint, body: Uint8Array | string): Uint8Array {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const time = new Uint8Array(8);
  new DataView(time.buffer).setBigUint64(0, BigInt(unixMs), false);
  const bodyHash = domainHash(blake3, "aergo/rpc-body", bytes);
  return domainHash(blake3, "aergo/rpc-auth", concat(new TextEncoder().encode(repo), Uint8Array.of(0), time, bodyHash));
}

/** The header's value for a request of `body` to `repo`, signed by `key` at `unixMs` (now by default). */
export function authHeader(key: Key, repo: string, body: Uint8Array | string, unixMs: number | bigint = Date.now()): string {
  const signature = key.sign(authMessage(repo, unixMs, body));
  return `${key.publicKeyHex}:${unixMs}:${toHex(signature)}`;
}

/** The repository a client's URL names (`…/repo/NAME`), if any. */
export function repoOfUrl(url: string): string | undefined {
  const m = /\/repo\/([a-z0-9][a-z0-9-]{0,31})\/?$/.exec(url);
  return m ? m[1] : undefined;
}
