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

use crate::parallel::ParallelExecutor;
use crate::{
    apply_tx, assemble, BlockContext, ExecError, ExecOutput, Mode, Overlay, StateRead, StateView, TxOutcome,
};
use aergo_primitives::types::{Account, Address, CallResult, Hash, ReceiptStatus, Transaction};
use aergo_primitives::value::Value;
use aergo_storage::state::{account_key, decode_account, Entries};
use aergo_storage::{ChangeSet, StateError};

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
    let (mut receipt, system, source_txs) = match (receipt.status.is_success(), input) {
        (true, MergeInput::Replay(txs)) => (receipt, system, Some(txs)),
        (true, MergeInput::Refused(why)) => {
            // The fee and the nonce are taken; nothing of the merge is recorded.
            let mut receipt = receipt;
            receipt.status = ReceiptStatus::Failed(why);
            (receipt, Vec::new(), None)
        }
        (false, _) => (receipt, system, None),
    };
    let Some(source_txs) = source_txs else {
        if mode == Mode::Verify && !rest.is_empty() {
            return Err(ExecError::InvalidTx {
                index: 1,
                hash: rest[0].hash(),
                reason: "a merge that failed replays no transactions".into(),
            });
        }
        let applied = TxOutcome::Applied { receipt, writes, system };
        return assemble(view, ctx, vec![merge], vec![applied], mode);
    };
    let merge_hash = merge.hash();
    let aergo_primitives::types::Payload::Merge { source, .. } = &merge.body.payload else {
        return Err(ExecError::Internal("a merge block that does not open with a merge".into()));
    };
    let replay_ctx = BlockContext { branch: source.clone(), replay: true, ..ctx.clone() };
    let source = source.clone();
    let applied = TxOutcome::Applied { receipt: receipt.clone(), writes, system };
    let first = assemble(view, ctx, vec![merge.clone()], vec![applied], mode)?;
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
