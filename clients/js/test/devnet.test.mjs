// The client against a running devnet: run by tests/tests/js_client.rs, which starts the node and
// sets AERGO_RPC, AERGO_DEV_KEY (the devnet's funded key file) and AERGO_EXAMPLES. Without them
// these tests are skipped (and that harness fails on a skip).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Client, Key, RpcError } from "../dist/index.js";

const rpc = process.env.AERGO_RPC;
const skip = rpc ? false : "needs a devnet (tests/tests/js_client.rs)";

test("deploy the token, call it, read its events by query and by subscription", { skip, timeout: 60_000 }, async () => {
  const client = new Client(rpc);
  const dev = Key.fromSecret(JSON.parse(readFileSync(process.env.AERGO_DEV_KEY, "utf8")).secret_key);
  const sql = readFileSync(`${process.env.AERGO_EXAMPLES}/contracts/token.sql`, "utf8");
  const info = await client.chainInfo();
  assert.equal(info.chain_id, "aergo-devnet");

  const deploy = await client.send(dev, { fee: "2000000", payload: { kind: "deploy", sql } });
  assert.equal(deploy.outcome.speculative.status, "success", JSON.stringify(deploy.outcome));
  const deployed = await client.waitReceipt(deploy.hash);
  assert.equal(deployed.status, "success");
  // The contract's address is the one the node reports for the deploy.
  const tx = await client.call("get_tx", { hash: deploy.hash });
  const token = tx.contract;
  assert.match(token, /^aergo1/);

  const bob = Key.generate().address;
  // An estimate first: what the transfer would do, kept nowhere.
  const unsigned = { fee: "2000000", payload: { kind: "call", contract: token, function: "transfer", args: [bob, 250] } };
  const nonce = (await client.getAccount(dev.address)).pending_nonce;
  const { signTx } = await import("../dist/index.js");
  const estimate = await client.estimateGas(signTx({ ...unsigned, chain_id: info.chain_id, nonce }, dev).tx);
  assert.equal(estimate.status, "success", JSON.stringify(estimate));
  const sent = await client.send(dev, unsigned);
  const receipt = await client.waitReceipt(sent.hash);
  assert.equal(receipt.status, "success", JSON.stringify(receipt));
  assert.equal(receipt.fee, estimate.fee);
  assert.deepEqual(receipt.events.map((e) => [e.name, e.args]), [["transfer", { sender: dev.address, recipient: bob, amount: 250 }]]);

  const balance = await client.query({ contract: token, function: "balance_of", args: [bob] });
  assert.deepEqual(balance.rows, [[250]]);
  const page = await client.getEvents({ contract: token, args: { recipient: bob } });
  assert.equal(page.events.length, 1);
  assert.equal(page.events[0].tx_hash, sent.hash);

  // A failing call: the receipt says why; a bad query is an RpcError with its code.
  const failing = await client.send(dev, { fee: "2000000", payload: { kind: "call", contract: token, function: "transfer", args: [bob, 0] } });
  const failed = await client.waitReceipt(failing.hash);
  assert.equal(failed.status, "failed");
  assert.equal(failed.error, "amount must be positive, not 0");
  await assert.rejects(client.query({ contract: token, sql: "SELECT nosuch FROM balances" }), (e) => e instanceof RpcError && e.code === -32602);

  // The subscription from the first block: the transfer's event once its block is final.
  let subscription;
  const got = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no event within 30 s")), 30_000);
    const onEvent = (e) => {
      clearTimeout(timer);
      resolve(e);
    };
    client.subscribeEvents({ contract: token, from: 0 }, onEvent, reject).then((s) => (subscription = s), reject);
  });
  subscription?.close();
  assert.equal(got.tx_hash, sent.hash);
  assert.deepEqual(got.args, { sender: dev.address, recipient: bob, amount: 250 });

  // The other reads answer as the node documents them.
  assert.equal((await client.getTx(sent.hash)).function, "transfer");
  assert.equal((await client.producers()).producers[0], dev.address);
  assert.equal((await client.getStake(dev.address)).staked, "0");
  assert.deepEqual(await client.getBranches(), []);
  assert.equal((await client.nodeInfo()).role, "producer");
  const many = await client.sendTxs(["00", "zz"]);
  assert.equal(many.length, 2);
  assert.ok(many.every((r) => r.error), JSON.stringify(many));
  // The binary path: a transaction's bytes and a byte that is none, answered as send_txs does.
  const next = (await client.getAccount(dev.address)).pending_nonce;
  const call = signTx({ ...unsigned, chain_id: info.chain_id, nonce: next }, dev).tx;
  const binary = await client.sendTxsBinary([call, "00"]);
  assert.equal(binary.length, 2, JSON.stringify(binary));
  assert.equal(binary[0].speculative.status, "success", JSON.stringify(binary));
  assert.equal(binary[1].error.reason, "malformed", JSON.stringify(binary));
  const byJson = await client.sendTxs([call]);
  assert.equal(byJson[0].hash, binary[0].hash);
  assert.equal(byJson[0].pool_seq, binary[0].pool_seq, "the same transaction, the same place");
  await assert.rejects(client.sendTxsBinary([]), (e) => e instanceof RpcError && /no transactions/.test(e.message));

  // A bad filter is refused at subscription.
  await assert.rejects(client.subscribeEvents({ contract: "aergo1nope" }, () => {}), RpcError);
});

const repo = process.env.AERGO_PRIVATE_REPO;
const skipRepo = rpc && repo ? false : "needs a node hosting a private repository (tests/tests/js_client.rs)";

test("a private repository: member-signed requests and repo_admin", { skip: skipRepo, timeout: 90_000 }, async () => {
  const url = `${rpc}/repo/${repo}`;
  const admin = Key.fromSecret(process.env.AERGO_PRIVATE_ADMIN);
  // Unsigned: refused, and nothing of the repository is told.
  await assert.rejects(new Client(url).chainInfo(), (e) => e instanceof RpcError && e.code === -32020 && e.message === "access denied");
  const asAdmin = new Client(url, { memberKey: admin });
  const info = await asAdmin.chainInfo();
  assert.equal(info.chain_id, `${repo}-chain`);
  // A new member: funded, made a reader, refused as a writer; made a writer, its transfer goes in.
  const member = Key.generate();
  const funded = await asAdmin.send(admin, { recipient: member.address, amount: "1000000", fee: "1", payload: { kind: "transfer" } });
  assert.equal((await asAdmin.waitReceipt(funded.hash, 30_000)).status, "success");
  const setRole = async (role) => {
    const sent = await asAdmin.send(admin, { fee: "1", payload: { kind: "repo_admin", op: "set_member", member: member.address, role } });
    const receipt = await asAdmin.waitReceipt(sent.hash, 30_000);
    assert.equal(receipt.status, "success", JSON.stringify(receipt));
  };
  await setRole("read");
  const asMember = new Client(url, { memberKey: member });
  assert.equal((await asMember.getAccount(member.address)).balance, "1000000");
  await assert.rejects(
    asMember.send(member, { recipient: admin.address, amount: "5", fee: "1", payload: { kind: "transfer" } }),
    (e) => e instanceof RpcError && e.code === -32020 && /read-only member/.test(e.message),
  );
  await setRole("write");
  const sent = await asMember.send(member, { recipient: admin.address, amount: "5", fee: "1", payload: { kind: "transfer" } });
  assert.equal((await asMember.waitReceipt(sent.hash, 30_000)).status, "success");
  // A subscription cannot carry the signature: said so, not a silent failure.
  await assert.rejects(asMember.subscribeBlocks(() => {}), /X-Aergo-Auth/);
});
