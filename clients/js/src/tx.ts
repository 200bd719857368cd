// Transactions from their JSON form (docs/dapps.md, "The JSON form of a transaction"): the body's
// bytes for every payload kind, its hash, the signature and the encoded transaction that
// `send_tx` takes. The Rust side is aergo_api::txjson; test/vectors.json, which a Rust test keeps
// current, holds the bytes both must produce.

import { blake3 } from "@noble/hashes/blake3.js";
import { addressFromPublicKey, decodeAddress } from "./address.js";
import { concat, domainHash, EncodeError, fromHex, toHex, Writer } from "./encoding.js";
import { Key } from "./keys.js";

/** An AergoSQL value as a call argument: exact, since it is signed. */
export type SqlValue = null | boolean | number | bigint | string | { int: string } | { dec: string } | { bytes: string };

export type Payload =
  | { kind: "transfer" }
  | { kind: "stake" }
  | { kind: "unstake" }
  | { kind: "vote"; candidates: string[] }
  | { kind: "register_bp"; p2p_address: string }
  | { kind: "report_equivocation"; evidence: string }
  | { kind: "deploy"; sql: string }
  | { kind: "call"; contract: string; function: string; args?: SqlValue[] }
  | { kind: "create_branch"; name: string; base_height: number | bigint; producers?: string[]; mergers?: string[] }
  | { kind: "create_tag"; name: string; height: number | bigint }
  | { kind: "merge"; source: string; strategy: "replay" | "three-way" | "ours" | "theirs"; upto: number | bigint; upto_hash: string }
  | { kind: "raft_admin"; op: "add_voter" | "remove_voter" | "transfer_leader"; node_key: string; address?: string }
  | {
      kind: "repo_admin";
      op: "set_member" | "remove_member" | "allow_node" | "deny_node";
      member?: string;
      role?: "read" | "write" | "admin";
      node_key?: string;
      address?: string;
    };

/** The JSON form of a transaction body. */
export interface TxJson {
  chain_id: string;
  branch?: string;
  nonce: number | bigint;
  /** The sender's public key (hex); the signing key's when absent. */
  sender?: string;
  /** Defaults to the sender's address. */
  recipient?: string;
  /** Decimal strings of the smallest unit (default "0"). */
  amount?: string;
  fee?: string;
  payload: Payload;
}

export const MAIN_BRANCH = "main";
const KINDS = [
  "transfer",
  "stake",
  "unstake",
  "vote",
  "register_bp",
  "report_equivocation",
  "deploy",
  "call",
  "create_branch",
  "create_tag",
  "merge",
  "raft_admin",
  "repo_admin",
] as const;
const REPO_OPS = ["set_member", "remove_member", "allow_node", "deny_node"] as const;
/** Which fields each repo_admin op takes. */
const REPO_OP_FIELDS: Record<(typeof REPO_OPS)[number], string[]> = {
  set_member: ["member", "role"],
  remove_member: ["member"],
  allow_node: ["node_key", "address"],
  deny_node: ["node_key"],
};
const ROLES = ["read", "write", "admin"] as const;
const RAFT_OPS = ["add_voter", "remove_voter", "transfer_leader"] as const;
const STRATEGIES = ["replay", "three-way", "ours", "theirs"] as const;
const BODY_FIELDS = ["chain_id", "branch", "nonce", "sender", "recipient", "amount", "fee", "payload"];
const PAYLOAD_FIELDS: Record<string, string[]> = {
  transfer: [],
  stake: [],
  unstake: [],
  vote: ["candidates"],
  register_bp: ["p2p_address"],
  report_equivocation: ["evidence"],
  deploy: ["sql"],
  call: ["contract", "function", "args"],
  create_branch: ["name", "base_height", "producers", "mergers"],
  create_tag: ["name", "height"],
  merge: ["source", "strategy", "upto", "upto_hash"],
  raft_admin: ["op", "node_key", "address"],
  repo_admin: ["op", "member", "role", "node_key", "address"],
};

function refuseUnknown(obj: object, allowed: string[], what: string) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new EncodeError(`${what}: unknown field ${JSON.stringify(k)}`);
  }
}

function amount(text: string | undefined, what: string): bigint {
  const t = text ?? "0";
  if (typeof t !== "string" || !/^[0-9]+$/.test(t)) throw new EncodeError(`${what}: a decimal string of the smallest unit, not ${JSON.stringify(t)}`);
  return BigInt(t);
}

function required<T>(v: T | undefined, what: string): T {
  if (v === undefined || v === null) throw new EncodeError(`${what} is missing`);
  return v;
}

function writeValue(w: Writer, v: SqlValue, i: number) {
  const what = `args[${i}]`;
  if (v === null) {
    w.u8(0);
  } else if (typeof v === "boolean") {
    w.u8(3).bool(v);
  } else if (typeof v === "number" || typeof v === "bigint") {
    if (typeof v === "number" && !Number.isSafeInteger(v)) {
      throw new EncodeError(`${what}: ${v} is not an integer that fits 64 bits; write a decimal as {"dec": "…"}`);
    }
    w.u8(1).i64(v, what);
  } else if (typeof v === "string") {
    w.u8(2).string(v);
  } else if (typeof v === "object" && "int" in v) {
    if (!/^-?[0-9]+$/.test(v.int)) throw new EncodeError(`${what}: ${JSON.stringify(v.int)} is not a 64-bit integer`);
    w.u8(1).i64(BigInt(v.int), what);
  } else if (typeof v === "object" && "dec" in v) {
    const m = /^(-?)([0-9]+)(?:\.([0-9]+))?$/.exec(v.dec);
    if (!m) throw new EncodeError(`${what}: ${JSON.stringify(v.dec)} is not a decimal`);
    const frac = m[3] ?? "";
    if (frac.length > 38) throw new EncodeError(`${what}: scale ${frac.length} is over 38`);
    const units = BigInt(m[2] + frac) * (m[1] === "-" ? -1n : 1n);
    w.u8(5).i128(units, what).u8(frac.length);
  } else if (typeof v === "object" && "bytes" in v) {
    w.u8(4).bytes(fromHex(v.bytes, what));
  } else {
    throw new EncodeError(`${what}: not an AergoSQL value`);
  }
}

function writePayload(w: Writer, p: Payload) {
  const tag = KINDS.indexOf(p.kind);
  if (tag < 0) throw new EncodeError(`payload.kind ${JSON.stringify((p as { kind: unknown }).kind)} is not one of ${KINDS.join(", ")}`);
  refuseUnknown(p, ["kind", ...PAYLOAD_FIELDS[p.kind]], `payload (${p.kind})`);
  w.u8(tag);
  switch (p.kind) {
    case "transfer":
    case "stake":
    case "unstake":
      return;
    case "vote":
      w.vec(required(p.candidates, "payload.candidates"), (w, c) => w.fixed(fromHex(c, "a candidate"), 32, "a candidate"));
      return;
    case "register_bp":
      w.string(required(p.p2p_address, "payload.p2p_address"));
      return;
    case "report_equivocation":
      w.raw(fromHex(required(p.evidence, "payload.evidence"), "payload.evidence"));
      return;
    case "deploy":
      w.string(required(p.sql, "payload.sql"));
      return;
    case "call":
      w.fixed(decodeAddress(required(p.contract, "payload.contract")), 20, "payload.contract");
      w.string(required(p.function, "payload.function"));
      w.u32((p.args ?? []).length);
      (p.args ?? []).forEach((v, i) => writeValue(w, v, i));
      return;
    case "create_branch":
      w.string(required(p.name, "payload.name"));
      w.u64(required(p.base_height, "payload.base_height"), "payload.base_height");
      w.vec(p.producers ?? [], (w, k) => w.fixed(fromHex(k, "a producer"), 32, "a producer"));
      w.vec(p.mergers ?? [], (w, a) => w.fixed(decodeAddress(a), 20, "a merger"));
      return;
    case "create_tag":
      w.string(required(p.name, "payload.name"));
      w.u64(required(p.height, "payload.height"), "payload.height");
      return;
    case "merge": {
      w.string(required(p.source, "payload.source"));
      const s = STRATEGIES.indexOf(p.strategy);
      if (s < 0) throw new EncodeError(`payload.strategy ${JSON.stringify(p.strategy)} is not one of ${STRATEGIES.join(", ")}`);
      w.u8(s);
      w.u64(required(p.upto, "payload.upto"), "payload.upto");
      w.fixed(fromHex(required(p.upto_hash, "payload.upto_hash"), "payload.upto_hash"), 32, "payload.upto_hash");
      return;
    }
    case "raft_admin": {
      const op = RAFT_OPS.indexOf(p.op);
      if (op < 0) throw new EncodeError(`payload.op ${JSON.stringify(p.op)}: add_voter, remove_voter or transfer_leader`);
      if (p.op === "add_voter" && p.address === undefined) throw new EncodeError("payload.address: add_voter needs the voter's address");
      if (p.op !== "add_voter" && p.address !== undefined) throw new EncodeError(`payload.address: ${p.op} takes no address`);
      w.u8(op);
      w.fixed(fromHex(required(p.node_key, "payload.node_key"), "payload.node_key"), 32, "payload.node_key");
      if (p.address !== undefined) w.string(p.address);
      return;
    }
    case "repo_admin": {
      const op = REPO_OPS.indexOf(p.op);
      if (op < 0) throw new EncodeError(`payload.op ${JSON.stringify(p.op)}: set_member, remove_member, allow_node or deny_node`);
      const takes = REPO_OP_FIELDS[p.op];
      for (const f of ["member", "role", "node_key", "address"] as const) {
        if (p[f] === undefined && takes.includes(f)) throw new EncodeError(`payload.${f}: ${p.op} needs it`);
        if (p[f] !== undefined && !takes.includes(f)) throw new EncodeError(`payload.${f}: ${p.op} takes no ${f}`);
      }
      w.u8(op);
      if (p.member !== undefined) w.fixed(decodeAddress(p.member), 20, "payload.member");
      if (p.role !== undefined) {
        const role = ROLES.indexOf(p.role);
        if (role < 0) throw new EncodeError(`payload.role ${JSON.stringify(p.role)}: read, write or admin`);
        w.u8(role);
      }
      if (p.node_key !== undefined) w.fixed(fromHex(p.node_key, "payload.node_key"), 32, "payload.node_key");
      if (p.address !== undefined) w.string(p.address);
      return;
    }
  }
}

/** The body's bytes: what its hash is of. `sender` must be given (hex) or come from `key`. */
export function encodeBody(body: TxJson, senderKey?: Uint8Array): Uint8Array {
  refuseUnknown(body, BODY_FIELDS, "the transaction");
  const sender = body.sender !== undefined ? fromHex(body.sender, "sender") : senderKey;
  if (!sender) throw new EncodeError("sender is missing (give it, or sign with a key)");
  if (senderKey && body.sender !== undefined && toHex(senderKey) !== toHex(sender)) {
    throw new EncodeError("sender is not the signing key's public key");
  }
  const branch = body.branch ?? MAIN_BRANCH;
  const w = new Writer();
  w.u8(branch === MAIN_BRANCH ? 1 : 2);
  w.string(required(body.chain_id, "chain_id"));
  if (branch !== MAIN_BRANCH) w.string(branch);
  w.u64(required(body.nonce, "nonce"), "nonce");
  w.fixed(sender, 32, "sender");
  const recipient = body.recipient !== undefined ? decodeAddress(body.recipient) : decodeAddress(addressFromPublicKey(sender));
  w.fixed(recipient, 20, "recipient");
  w.u128(amount(body.amount, "amount"), "amount");
  w.u128(amount(body.fee, "fee"), "fee");
  writePayload(w, required(body.payload, "payload"));
  return w.finish();
}

/** The transaction hash (hex): blake3("aergo/tx" ‖ 0 ‖ body). */
export function bodyHash(bodyBytes: Uint8Array): Uint8Array {
  return domainHash(blake3, "aergo/tx", bodyBytes);
}

export interface SignedTx {
  /** The transaction hash, hex. */
  hash: string;
  /** The encoded transaction (body ‖ signature), hex: what send_tx takes. */
  tx: string;
  /** The signature, hex. */
  signature: string;
}

/** Signs a body with `key` (its sender). */
export function signTx(body: TxJson, key: Key): SignedTx {
  const bytes = encodeBody(body, key.publicKey);
  const hash = bodyHash(bytes);
  const signature = key.sign(hash);
  return { hash: toHex(hash), tx: toHex(concat(bytes, signature)), signature: toHex(signature) };
}
