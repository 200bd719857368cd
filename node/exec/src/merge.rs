//! A block that opens with a replay merge (`docs/branches.md`, "Replay merge").
//!
//! The block is the merge transaction followed by the source's transactions it replays, in
//! source order: those that still fit on the target. The chain reads the source's transactions
//! after the merge base (`ReplaySource`); this module runs the merge transaction, then the
//! source's transactions on the state it left through the same executor as any block, with the
//! replay rules of [`crate::apply_tx`] (a transaction that is invalid or fails here is dropped
//! and has no effect; system transactions are not replayed). The merge transaction's receipt
//! lists every source transaction with what became of it.
//!
//! Building, the transactions that ran are the block's; verifying, the block's must be exactly
//! them, so every node that holds the source computes the same block.
//!
//! A three-way merge (and `ours`, `theirs`) replays nothing: its block is the merge transaction
//! alone, and [`three_way`] compares the state of both sides key by key (`docs/branches.md`,
//! "Three-way merge").

use crate::parallel::ParallelExecutor;
use crate::{
    apply_tx, assemble, contract, BlockContext, ExecError, ExecOutput, Mode, Overlay, StateRead, StateView,
    TxOutcome,
};
use aergo_primitives::types::{
    Account, Address, CallResult, Hash, MergeStrategy, Payload, ReceiptStatus, Transaction, SQL_PREFIX,
};
use aergo_primitives::value::Value;
use aergo_sql::gas::Gas;
use aergo_sql::interp::{CallCtx, Engine, Host};
use aergo_sql::SqlError;
use aergo_storage::state::{account_key, decode_account, Entries};
use aergo_storage::{ChangeSet, StateError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One transaction of the source after the merge base.
#[derive(Clone, Debug)]
pub struct SourceTx {
    /// The source's block it is in.
    pub height: u64,
    pub tx: Transaction,
    /// Why it is not run at all (the target already has it), else `None`.
    pub skip: Option<String>,
}

/// What the chain read of a merge's source.
#[derive(Clone, Debug)]
pub enum MergeInput {
    /// The source's transactions after the merge base up to the merge's `upto`, in order.
    Replay(Vec<SourceTx>),
    /// What a three-way merge compares.
    ThreeWay(ThreeWayInput),
    /// The source cannot be merged as the transaction asks (its `upto` is not the source's
    /// block of that height, or the merge is too large): the merge fails with this reason.
    Refused(String),
}

/// The columns of a merge receipt's rows: one row per source transaction.
pub const RESULT_COLUMNS: [&str; 4] = ["tx", "height", "result", "reason"];

/// Executes a block that opens with `merge` (`rest`: the block's transactions after it when
/// verifying; ignored when building).
pub fn execute<V: StateView>(
    executor: &ParallelExecutor,
    view: &V,
    ctx: &BlockContext,
    merge: Transaction,
    input: MergeInput,
    rest: &[Transaction],
    mode: Mode,
) -> Result<ExecOutput, ExecError> {
    let mut overlay = Overlay::new(view);
    let outcome = apply_tx(&merge, ctx, &mut overlay)?;
    drop(overlay);
    let (receipt, writes, system) = match outcome {
        TxOutcome::Invalid(reason) => {
            if mode == Mode::Verify {
                return Err(ExecError::InvalidTx { index: 0, hash: merge.hash(), reason });
            }
            let mut out = executor.execute(view, ctx, Vec::new(), mode)?;
            out.dropped.push((merge.hash(), reason));
            return Ok(out);
        }
        TxOutcome::Applied { receipt, writes, system } => (receipt, writes, system),
    };
    let (mut receipt, system, input) = match (receipt.status.is_success(), input) {
        (true, MergeInput::Refused(why)) => {
            // The fee and the nonce are taken; nothing of the merge is recorded.
            let mut receipt = receipt;
            receipt.status = ReceiptStatus::Failed(why);
            (receipt, Vec::new(), None)
        }
        (true, input) => (receipt, system, Some(input)),
        (false, _) => (receipt, system, None),
    };
    let replays = matches!(input, Some(MergeInput::Replay(_)));
    if mode == Mode::Verify && !replays && !rest.is_empty() {
        return Err(ExecError::InvalidTx {
            index: 1,
            hash: rest[0].hash(),
            reason: "only a replay merge that succeeds brings transactions into its block".into(),
        });
    }
    let merge_hash = merge.hash();
    let (source, strategy) = match &merge.body.payload {
        Payload::Merge { source, strategy, .. } => (source.clone(), *strategy),
        Payload::MergePrivate { source, .. } => (source.clone(), MergeStrategy::Replay),
        _ => return Err(ExecError::Internal("a merge block that does not open with a merge".into())),
    };
    let applied =
        TxOutcome::Applied { receipt: receipt.clone(), writes: writes.clone(), system: system.clone() };
    let first = assemble(view, ctx, vec![merge.clone()], vec![applied], mode)?;
    let source_txs = match input {
        None => return Ok(first),
        Some(MergeInput::Replay(txs)) => txs,
        Some(MergeInput::Refused(_)) => return Ok(first),
        Some(MergeInput::ThreeWay(tw)) => {
            let after_merge = Layered { view, layer: &first.changes };
            let (result, used) = three_way(&after_merge, ctx, &merge, strategy, &tw)?;
            drop(first);
            // The fee is the gas limit, as a contract call's: the sender pays the gas used and
            // gets the rest back.
            let refund = receipt.fee.saturating_sub(used as u128);
            receipt.fee -= refund;
            let sender = merge.sender();
            let mut writes = writes;
            for (_, acct) in writes.iter_mut().filter(|(a, _)| *a == sender) {
                acct.balance = acct.balance.saturating_add(refund);
            }
            let (system, merged) = match result {
                Ok((merged, rows)) => {
                    let columns = THREE_WAY_COLUMNS.iter().map(|c| c.to_string()).collect();
                    receipt.status = ReceiptStatus::Returned(CallResult { columns, rows });
                    (system, Some(merged))
                }
                // Refused: the fee and the nonce are taken, nothing else.
                Err(why) => {
                    receipt.status = ReceiptStatus::Failed(why);
                    (Vec::new(), None)
                }
            };
            let applied = TxOutcome::Applied { receipt, writes, system };
            let mut out = assemble(view, ctx, vec![merge], vec![applied], mode)?;
            if let Some(merged) = merged {
                let sender_key = account_key(&sender);
                let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                    out.changes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                for (k, v) in merged {
                    // The sender's account as merged was read before the refund.
                    let v = match (k == sender_key, v) {
                        (true, Some(bytes)) => {
                            let mut a = decode_account(Some(bytes))?;
                            a.balance = a.balance.saturating_add(refund);
                            Some(aergo_primitives::types::to_vec_exact(&a))
                        }
                        (_, v) => v,
                    };
                    changes.push((k, v));
                }
                out.changes = ChangeSet::from_unsorted(changes);
            }
            return Ok(out);
        }
    };
    let replay_ctx = BlockContext { branch: source.clone(), replay: true, ..ctx.clone() };
    let after_merge = Layered { view, layer: &first.changes };
    let run: Vec<Transaction> =
        source_txs.iter().filter(|s| s.skip.is_none()).map(|s| s.tx.clone()).collect();
    let replayed = executor.execute(&after_merge, &replay_ctx, run, Mode::Build)?;
    if mode == Mode::Verify {
        let want: Vec<Hash> = replayed.included.iter().map(Transaction::hash).collect();
        let got: Vec<Hash> = rest.iter().map(Transaction::hash).collect();
        if want != got {
            let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
            return Err(ExecError::InvalidTx {
                index: at + 1,
                hash: got.get(at).copied().unwrap_or(merge_hash),
                reason: format!(
                    "the merge replays {} transactions of {source:?} here, the block holds {}, from position {} on they differ",
                    want.len(),
                    got.len(),
                    at + 1
                ),
            });
        }
    }
    receipt.status = ReceiptStatus::Returned(result_rows(&source_txs, &replayed));
    let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
        Vec::with_capacity(first.changes.len() + replayed.changes.len());
    changes.extend(first.changes.iter().map(|(k, v)| (k.clone(), v.clone())));
    changes.extend(replayed.changes.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut included = Vec::with_capacity(replayed.included.len() + 1);
    included.push(merge);
    included.extend(replayed.included);
    let mut receipts = Vec::with_capacity(replayed.receipts.len() + 1);
    receipts.push(receipt);
    receipts.extend(replayed.receipts);
    Ok(ExecOutput { included, receipts, changes: ChangeSet::from_unsorted(changes), dropped: first.dropped })
}

/// The merge receipt's rows, in source order: each transaction's hash, source height, and
/// `included`, or `dropped` with the reason.
fn result_rows(source: &[SourceTx], replayed: &ExecOutput) -> CallResult {
    let dropped: std::collections::HashMap<Hash, &str> =
        replayed.dropped.iter().map(|(h, why)| (*h, why.as_str())).collect();
    let rows = source
        .iter()
        .map(|s| {
            let hash = s.tx.hash();
            let (result, reason) = match (&s.skip, dropped.get(&hash)) {
                (Some(why), _) => ("dropped", Value::Text(why.clone())),
                (None, Some(why)) => ("dropped", Value::Text((*why).to_string())),
                (None, None) => ("included", Value::Null),
            };
            vec![Value::Text(hash.to_hex()), Value::Int(s.height as i64), Value::Text(result.into()), reason]
        })
        .collect();
    CallResult { columns: RESULT_COLUMNS.iter().map(|c| c.to_string()).collect(), rows }
}

/// `view` after the changes `layer` (the merge transaction's).
struct Layered<'a, V> {
    view: &'a V,
    layer: &'a ChangeSet,
}

impl<V: StateView> StateView for Layered<'_, V> {
    fn account(&self, address: &Address) -> Result<Account, StateError> {
        decode_account(self.raw(&account_key(address))?)
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.layer.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.raw(key),
        }
    }

    fn scan(&self, prefix: &[u8]) -> Result<Entries, StateError> {
        let base = self.view.scan(prefix)?;
        let mine = self.layer.with_prefix(prefix);
        Ok(aergo_sql::store::merge(base, mine.map(|(k, v)| (k.clone(), v.clone()))))
    }

    fn reader(&self) -> Box<dyn StateRead + '_> {
        Box::new(LayeredRead { layer: self.layer, inner: self.view.reader() })
    }
}

struct LayeredRead<'a> {
    layer: &'a ChangeSet,
    inner: Box<dyn StateRead + 'a>,
}

impl StateRead for LayeredRead<'_> {
    fn account(&mut self, address: &Address) -> Result<Account, StateError> {
        decode_account(self.raw(&account_key(address))?)
    }

    fn raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.layer.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.inner.raw(key),
        }
    }
}

/// What a three-way merge reads (`docs/branches.md`, "Three-way merge"): the source's store,
/// the source's height of the merge base (`base`: its base, or the last merge's `upto`) and of
/// the merged block (`upto`), and the keys changed on either side since the branch was made.
#[derive(Clone)]
pub struct ThreeWayInput {
    pub source: std::sync::Arc<aergo_storage::StateStore>,
    pub base: u64,
    pub upto: u64,
    pub keys: std::collections::BTreeSet<Vec<u8>>,
}

impl std::fmt::Debug for ThreeWayInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreeWayInput {{ base: {}, upto: {}, keys: {} }}", self.base, self.upto, self.keys.len())
    }
}

/// Gas a three-way merge charges per key it compares (its resolvers' gas comes on top).
pub const GAS_PER_KEY: u64 = 200;
/// Most rows a merge receipt lists (one more says how many were left out).
pub const MAX_RESULT_ROWS: usize = 10_000;
/// The columns of a three-way merge receipt's rows.
pub const THREE_WAY_COLUMNS: [&str; 3] = ["kind", "key", "result"];

/// The target's writes and the receipt's rows of a three-way merge, or why it is refused; with
/// the gas it used either way.
type Merged = (Result<(Vec<(Vec<u8>, Option<Vec<u8>>)>, Vec<Vec<Value>>), String>, u64);

/// A key's three values: at the merge base (the source then), on the target (ours) and on the
/// source (theirs).
struct Sides {
    base: Option<Vec<u8>>,
    ours: Option<Vec<u8>>,
    theirs: Option<Vec<u8>>,
}

/// The host the merge's contract work goes through: the target after the merge transaction,
/// with the merge's writes so far; read-only while a resolver runs.
struct MergeHost<'v, V: StateView> {
    view: &'v V,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    read_only: bool,
}

impl<V: StateView> Host for MergeHost<'_, V> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SqlError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.raw(key).map_err(|e| SqlError::Storage(e.to_string())),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), SqlError> {
        if self.read_only {
            return Err(SqlError::Runtime("a merge resolver cannot change the state".into()));
        }
        self.writes.insert(key, value);
        Ok(())
    }

    fn scan(&mut self, prefix: &[u8]) -> Result<Entries, SqlError> {
        let base = self.view.scan(prefix).map_err(|e| SqlError::Storage(e.to_string()))?;
        let mine = self.writes.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        Ok(aergo_sql::store::merge(base, mine.map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()))
    }

    fn transfer_native(&mut self, _to: &str, _amount: u128) -> Result<(), SqlError> {
        Err(SqlError::Runtime("a merge resolver cannot move coins".into()))
    }

    fn emit(&mut self, _name: &str, _args: Vec<Value>) -> Result<(), SqlError> {
        Err(SqlError::Runtime("a merge resolver cannot emit events".into()))
    }

    fn savepoint(&mut self) -> bool {
        true
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// The three-way merge of `input` into the target (`view`: its state after the merge
/// transaction), by `strategy`, with `gas` to spend: every key changed on either side since the
/// branch was made, in key order (so the result does not depend on threads):
/// - a key the source did not change since the merge base keeps the target's value, one only
///   the source changed takes the source's;
/// - an account both changed gets the sum of both sides' changes of its balance (refused below
///   zero) and the higher nonce;
/// - a contract row both changed is a conflict: the contract's `on_merge_<table>` resolver
///   decides it (`three-way`), or the target's row stays (`ours`) or the source's is taken
///   (`theirs`); rows written go through the contract engine (checks, uniqueness, index
///   entries); a conflict nobody decides refuses the merge, listing every such key;
/// - index entries follow from the rows; a table's row-id counter takes the higher value;
/// - system state changed on the source (stakes, votes, producers) refuses the merge; the
///   records of branches and tags made on the source stay the source's.
pub fn three_way<V: StateView>(
    view: &V,
    ctx: &BlockContext,
    merge: &Transaction,
    strategy: MergeStrategy,
    input: &ThreeWayInput,
) -> Result<Merged, ExecError> {
    let base_at = crate::StateAt { store: &input.source, height: input.base };
    let theirs_at = crate::StateAt { store: &input.source, height: input.upto };
    let mut gas = Gas::new(u64::try_from(merge.body.fee).unwrap_or(u64::MAX));
    let mut out: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut conflicts: Vec<String> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    // Rows to write through the engine, per contract: (table, ours, merged).
    let mut row_writes: BTreeMap<Address, Vec<RowWrite>> = BTreeMap::new();
    let mut host = MergeHost { view, writes: BTreeMap::new(), read_only: true };
    let mut layouts: HashMap<Address, Option<Arc<aergo_sql::Compiled>>> = HashMap::new();
    let cctx = |contract: &Address| CallCtx {
        sender: merge.sender().to_string(),
        self_address: contract.to_string(),
        height: ctx.height,
        time_ms: ctx.timestamp_ms,
        tx_hash: merge.hash().to_hex(),
        value: 0,
    };
    let out_of_gas =
        |gas: &Gas| format!("the merge needs more gas than its fee {} allows ({} used)", gas.limit, gas.used);
    for key in &input.keys {
        if gas.charge(GAS_PER_KEY).is_err() {
            return Ok((Err(out_of_gas(&gas)), gas.used));
        }
        let sides = Sides { base: base_at.raw(key)?, ours: view.raw(key)?, theirs: theirs_at.raw(key)? };
        if sides.theirs == sides.base {
            continue; // the source did not change it since the merge base
        }
        // Both sides changed it to the same value: for an account still two changes to add up;
        // for a row, the resolver's to decide if the table has one, else nothing to do.
        let same_change = sides.theirs == sides.ours;
        let ours_only_unchanged = sides.ours == sides.base;
        // Accounts.
        if let Some(addr) = account_address(key) {
            let (o, t, b) =
                (decode_account(sides.ours)?, decode_account(sides.theirs)?, decode_account(sides.base)?);
            let merged = if ours_only_unchanged {
                t
            } else {
                // ours + (theirs − base), in u128 without wrapping.
                let balance = match t.balance.checked_sub(b.balance) {
                    Some(gain) => o.balance.checked_add(gain).ok_or("above the largest amount".to_string()),
                    None => o
                        .balance
                        .checked_sub(b.balance - t.balance)
                        .ok_or_else(|| format!("{} below zero", b.balance - t.balance - o.balance)),
                };
                let balance = match balance {
                    Ok(balance) => balance,
                    Err(why) => {
                        refusals.push(format!("account {addr}: its balance would be {why}"));
                        continue;
                    }
                };
                Account { balance, nonce: o.nonce.max(t.nonce) }
            };
            out.push((key.clone(), Some(aergo_primitives::types::to_vec_exact(&merged))));
            push_row(
                &mut rows,
                "account",
                addr.to_string(),
                if ours_only_unchanged { "theirs" } else { "summed" },
            );
            continue;
        }
        let Some((contract, part)) = contract_key(key) else {
            if crate::branches::is_ref_key(key) {
                continue; // the source's own branch and tag records stay its own
            }
            refusals.push(format!("system state {} changed on the source", printable(key)));
            continue;
        };
        match part {
            // The script: a contract deployed on the source only.
            ContractPart::Code => {
                if same_change {
                    continue;
                }
                if ours_only_unchanged {
                    out.push((key.clone(), sides.theirs));
                    push_row(&mut rows, "contract", contract.to_string(), "theirs");
                } else {
                    conflicts.push(format!("contract {contract} (deployed on both sides)"));
                }
            }
            // Index entries follow from the rows.
            ContractPart::Index => {}
            ContractPart::RowId => {
                let n = |v: &Option<Vec<u8>>| {
                    v.as_deref().and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0)
                };
                let top = n(&sides.ours).max(n(&sides.theirs));
                out.push((key.clone(), Some(top.to_le_bytes().to_vec())));
            }
            ContractPart::Row(table_id) => {
                // A script never changes: the target's, or the source's for a contract deployed
                // there only.
                let layout = layouts.entry(contract).or_insert_with(|| {
                    let key = aergo_sql::store::code_key(&contract);
                    let code =
                        view.raw(&key).ok().flatten().or_else(|| theirs_at.raw(&key).ok().flatten())?;
                    contract::cache().get(std::str::from_utf8(&code).ok()?).ok()
                });
                let Some(compiled) = layout.clone() else {
                    conflicts
                        .push(format!("contract {contract}: no script on the target to merge its rows by"));
                    continue;
                };
                let table = compiled.interpreted.tables.get(table_id as usize).cloned();
                let Some(table) = table else {
                    refusals.push(format!("contract {contract}: no table {table_id}"));
                    continue;
                };
                let decode = |v: &Option<Vec<u8>>| -> Result<Option<Vec<Value>>, ExecError> {
                    v.as_deref().map(aergo_primitives::value::decode_row).transpose().map_err(|e| {
                        ExecError::State(StateError::Decode { what: "contract row", reason: e.to_string() })
                    })
                };
                let resolver = format!("on_merge_{}", table.name);
                let contract_ir = compiled.engine(aergo_sql::default_engine());
                let resolves =
                    strategy == MergeStrategy::ThreeWay && contract_ir.function(&resolver).is_some();
                if same_change && !resolves {
                    continue;
                }
                let (b, o, t) = (decode(&sides.base)?, decode(&sides.ours)?, decode(&sides.theirs)?);
                let described = describe_row(&contract, &table, o.as_ref().or(t.as_ref()).or(b.as_ref()));
                let merged = if ours_only_unchanged {
                    push_row(&mut rows, "row", described, "theirs");
                    t
                } else {
                    match strategy {
                        MergeStrategy::Ours => {
                            push_row(&mut rows, "row", described, "ours");
                            continue;
                        }
                        MergeStrategy::Theirs => {
                            push_row(&mut rows, "row", described, "theirs");
                            t
                        }
                        _ => {
                            if !resolves {
                                conflicts.push(described);
                                continue;
                            }
                            let n = table.columns.len();
                            let side =
                                |r: &Option<Vec<Value>>| r.clone().unwrap_or_else(|| vec![Value::Null; n]);
                            let args: Vec<Value> = [side(&b), side(&o), side(&t)].concat();
                            let call_ctx = cctx(&contract);
                            host.read_only = true;
                            let mut engine = Engine::new(contract_ir, &contract, &mut host, &call_ctx, gas);
                            let result = engine.call(&resolver, args);
                            gas = engine.gas;
                            match result {
                                Err(_) if gas.used >= gas.limit => {
                                    return Ok((Err(out_of_gas(&gas)), gas.used));
                                }
                                Err(e) => return Ok((Err(format!("{resolver} for {described}: {e}")), gas.used)),
                                Ok(r) if r.rows.is_empty() => {
                                    push_row(&mut rows, "row", described, "resolved: deleted");
                                    None
                                }
                                Ok(r) if r.rows.len() == 1 && r.rows[0].len() == n => {
                                    push_row(&mut rows, "row", described, "resolved");
                                    r.rows.into_iter().next()
                                }
                                Ok(r) => {
                                    return Ok((Err(format!(
                                        "{resolver} for {described} returned {} rows of {} columns: it must return \
                                         one row of the table's {n} columns, or none to delete it",
                                        r.rows.len(),
                                        r.rows.first().map_or(0, Vec::len)
                                    )), gas.used))
                                }
                            }
                        }
                    }
                };
                if merged != o {
                    row_writes.entry(contract).or_default().push((table_id as usize, o, merged));
                }
            }
        }
    }
    if !refusals.is_empty() {
        return Ok((Err(format!("the merge is refused: {}", refusals.join("; "))), gas.used));
    }
    if !conflicts.is_empty() {
        return Ok((
            Err(format!(
                "{} conflict{} without a resolver (a key changed on both sides): {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join("; ")
            )),
            gas.used,
        ));
    }
    // The merged rows, through each contract's engine: checks, uniqueness, index entries.
    host.read_only = false;
    for (contract, writes) in row_writes {
        let Some(Some(compiled)) = layouts.get(&contract).cloned() else { continue };
        let call_ctx = cctx(&contract);
        let mut engine =
            Engine::new(compiled.engine(aergo_sql::default_engine()), &contract, &mut host, &call_ctx, gas);
        let mut failed = None;
        for (table, old, new) in writes {
            if let Err(e) = engine.put_row(table, old, new) {
                failed = Some(e);
                break;
            }
        }
        gas = engine.gas;
        if let Some(e) = failed {
            return Ok((
                Err(format!("the merged rows of contract {contract} break its rules: {e}")),
                gas.used,
            ));
        }
    }
    out.extend(host.writes);
    if rows.len() > MAX_RESULT_ROWS {
        let more = rows.len() - MAX_RESULT_ROWS;
        rows.truncate(MAX_RESULT_ROWS);
        rows.push(vec![text("more"), text(format!("{more} more keys")), Value::Null]);
    }
    Ok((Ok((out, rows)), gas.used))
}

/// A merged row to write: its table, the target's row now, the merged row.
type RowWrite = (usize, Option<Vec<Value>>, Option<Vec<Value>>);

fn push_row(rows: &mut Vec<Vec<Value>>, kind: &str, key: String, result: &str) {
    rows.push(vec![text(kind), text(key), text(result)]);
}

/// The account an `acct/` key is of (`aergo_storage::state::account_key`).
fn account_address(key: &[u8]) -> Option<Address> {
    key.strip_prefix(b"acct/".as_slice()).and_then(|a| <[u8; 20]>::try_from(a).ok()).map(Address)
}

enum ContractPart {
    Code,
    Row(u8),
    Index,
    RowId,
}

/// The contract and the part of it a `sql/` key is (`aergo_sql::store`).
fn contract_key(key: &[u8]) -> Option<(Address, ContractPart)> {
    let rest = key.strip_prefix(SQL_PREFIX)?;
    let addr = Address(<[u8; 20]>::try_from(rest.get(..20)?).ok()?);
    if rest.get(20) != Some(&b'/') {
        return None;
    }
    let part = match rest.get(21)? {
        b'c' => ContractPart::Code,
        b'r' => ContractPart::Row(*rest.get(22)?),
        b'i' => ContractPart::Index,
        b'n' => ContractPart::RowId,
        _ => return None,
    };
    Some((addr, part))
}

/// A row as the receipt names it: its contract, table and primary-key values.
fn describe_row(contract: &Address, table: &aergo_sql::ir::Table, row: Option<&Vec<Value>>) -> String {
    let key: Vec<String> = match row {
        Some(r) => table
            .pk
            .iter()
            .filter_map(|&c| r.get(c))
            .map(|v| aergo_primitives::value::json::to_json(v).to_string())
            .collect(),
        None => Vec::new(),
    };
    format!("{contract} {}({})", table.name, key.join(", "))
}

/// A system key as text: its printable prefix, then the rest in hex.
fn printable(key: &[u8]) -> String {
    let n = key.iter().take_while(|b| b.is_ascii_graphic()).count();
    format!("{}{}", String::from_utf8_lossy(&key[..n]), hex::encode(&key[n..]))
}

/// Most keys a three-way merge compares (changed on both sides together since the branch was
/// made).
pub const MAX_KEYS: usize = 1_000_000;
