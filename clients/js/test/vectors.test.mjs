// The shared test vectors (docs/dapps.md): every transaction kind from its JSON form, as the Rust
// encoding writes it. A Rust test (aergo-api, tx_vectors_are_current) keeps vectors.json current.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Key, encodeBody, signTx, bodyHash, toHex, addressFromPublicKey, decodeAddress, encodeAddress, verify, fromHex, authHeader, authMessage, repoOfUrl, Client } from "../dist/index.js";

const vectors = JSON.parse(readFileSync(new URL("./vectors.json", import.meta.url), "utf8"));

test("the vectors cover every transaction kind", () => {
  const kinds = new Set(vectors.transactions.map((v) => v.body.payload.kind));
  for (const k of ["transfer", "stake", "unstake", "vote", "register_bp", "report_equivocation", "deploy", "call", "create_branch", "create_tag", "merge", "raft_admin", "repo_admin"]) {
    assert.ok(kinds.has(k), `no vector of kind ${k}`);
  }
  assert.ok(vectors.transactions.some((v) => v.body.branch && v.body.branch !== "main"), "a branch transaction");
});

test("keys and addresses match the Rust ones", () => {
  const key = Key.fromSecret(vectors.key.secret);
  assert.equal(key.publicKeyHex, vectors.key.public);
  assert.equal(key.address, vectors.key.address);
  assert.equal(addressFromPublicKey(key.publicKey), vectors.key.address);
  assert.equal(encodeAddress(decodeAddress(vectors.key.address)), vectors.key.address);
});

for (const v of vectors.transactions) {
  test(`vector ${v.name}: body bytes, hash, signature and transaction as in Rust`, () => {
    const key = Key.fromSecret(vectors.key.secret);
    const bytes = encodeBody(v.body, key.publicKey);
    assert.equal(toHex(bytes), v.body_bytes);
    assert.equal(toHex(bodyHash(bytes)), v.hash);
    const signed = signTx(v.body, key);
    assert.equal(signed.hash, v.hash);
    assert.equal(signed.signature, v.signature);
    assert.equal(signed.tx, v.tx);
    assert.ok(verify(fromHex(v.signature), fromHex(v.hash), key.publicKey));
  });
}

test("bad bodies are refused with the field named", () => {
  const key = Key.fromSecret(vectors.key.secret);
  const base = { chain_id: "c", nonce: 1, payload: { kind: "transfer" } };
  const refused = (body, re) => assert.throws(() => encodeBody(body, key.publicKey), re);
  refused({ ...base, extra: 1 }, /unknown field "extra"/);
  refused({ ...base, payload: { kind: "transfer", amount: 1 } }, /unknown field "amount"/);
  refused({ ...base, payload: { kind: "fly" } }, /payload.kind "fly"/);
  refused({ ...base, amount: "1.5" }, /amount: a decimal string/);
  refused({ ...base, recipient: "aergo1qqqq" }, /not valid bech32m/);
  refused({ ...base, nonce: undefined }, /nonce is missing/);
  const call = (args) => ({ ...base, payload: { kind: "call", contract: vectors.key.address, function: "f", args } });
  refused(call([1.5]), /args\[0\]: 1.5 is not an integer/);
  refused(call([1, { dec: "x" }]), /args\[1\]/);
  refused({ ...base, sender: "00".repeat(32) }, /sender is not the signing key/);
});

test("a request to a private repository is signed as in Rust (X-Aergo-Auth)", () => {
  const key = Key.fromSecret(vectors.key.secret);
  const a = vectors.rpc_auth;
  assert.equal(toHex(authMessage(a.repo, a.unix_ms, a.body)), a.message);
  assert.equal(authHeader(key, a.repo, a.body, a.unix_ms), a.header);
  assert.equal(authHeader(key, a.repo, new TextEncoder().encode(a.body), BigInt(a.unix_ms)), a.header);
  assert.notEqual(authHeader(key, "other", a.body, a.unix_ms), a.header);
  assert.equal(repoOfUrl("http://box:7845/repo/acme"), "acme");
  assert.equal(repoOfUrl("http://box:7845/repo/acme/"), "acme");
  assert.equal(repoOfUrl("http://box:7845"), undefined);
  assert.throws(() => new Client("http://box:7845", { memberKey: key }), /\/repo\/NAME/);
});

test("repo_admin bodies take only their op's fields", () => {
  const key = Key.fromSecret(vectors.key.secret);
  const base = { chain_id: "c", nonce: 1 };
  const refused = (payload, re) => assert.throws(() => encodeBody({ ...base, payload }, key.publicKey), re);
  refused({ kind: "repo_admin", op: "set_member", member: vectors.key.address }, /payload.role: set_member needs it/);
  refused({ kind: "repo_admin", op: "set_member", member: vectors.key.address, role: "owner" }, /payload.role "owner"/);
  refused({ kind: "repo_admin", op: "remove_member", member: vectors.key.address, role: "read" }, /payload.role: remove_member takes no role/);
  refused({ kind: "repo_admin", op: "deny_node", node_key: "00".repeat(31) }, /payload.node_key/);
  refused({ kind: "repo_admin", op: "evict" }, /payload.op "evict"/);
});
