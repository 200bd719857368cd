// @aergo-os/client: keys, addresses, transactions of every kind, signing, JSON-RPC and event
// subscriptions for the AERGO Chain (docs/dapps.md).

export { addressFromPublicKey, decodeAddress, encodeAddress } from "./address.js";
export { EncodeError, fromHex, toHex } from "./encoding.js";
export { Key, verify } from "./keys.js";
export { bodyHash, encodeBody, MAIN_BRANCH, signTx } from "./tx.js";
export type { Payload, SignedTx, SqlValue, TxJson } from "./tx.js";
export { AUTH_HEADER, authHeader, authMessage, repoOfUrl } from "./auth.js";
export { Client, RpcError } from "./rpc.js";
export type { ClientOptions, EventEntry, EventFilter, Receipt, SendOutcome, Subscription } from "./rpc.js";
