//! `diff`: what differs between two points of the chain's data (`docs/branches.md`, "Diff").
//!
//! The points' merge base is their nearest common ancestor along the chain of bases; the keys
//! changed on each side since it come from the stores' change index; the values at both ends
//! are compared key by key and the keys whose values differ are described: accounts, contract
//! rows (by table and primary key), and the other keys by name.

use aergo_api::{AccountSide, DiffEntry, DiffView, PointView};
use aergo_chain::view::ChainView;
use aergo_primitives::types::{Account, Address, SQL_PREFIX};
use aergo_storage::state::decode_account;
use aergo_storage::StateError;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Most changed keys a diff reads (both sides together).
pub const MAX_CANDIDATES: usize = 1_000_000;
/// Most entries a diff lists (the request's `limit` is capped at this).
pub const MAX_ENTRIES: usize = 10_000;

/// A point: a chain's view at a height of that chain.
#[derive(Clone)]
pub struct Point {
    pub view: Arc<ChainView>,
    pub height: u64,
}

impl Point {
    fn view_of(&self) -> PointView {
        PointView { branch: self.view.branch.clone(), height: self.height }
    }
}

/// `p` and the points its chain descends from: a branch's base on its parent, and so on up to
/// `main`. A height at or below a branch's base is its parent's block, so such a point is the
/// parent's.
fn lineage(p: &Point) -> Vec<Point> {
    let mut out = Vec::new();
    let mut at = p.clone();
    loop {
        match at.view.parent.clone() {
            Some((base, parent)) if at.height <= base => at = Point { view: parent, height: at.height },
            Some((base, parent)) => {
                out.push(at);
                at = Point { view: parent, height: base };
            }
            None => {
                out.push(at);
                return out;
            }
        }
    }
}

/// The keys changed from `base` (an ancestor on the last chain of `line`) to the first point of
/// `line`, through each chain in between.
fn changed_since(
    line: &[Point],
    upto: usize,
    base: u64,
    max: usize,
) -> Result<BTreeSet<Vec<u8>>, StateError> {
    let mut keys = BTreeSet::new();
    for (k, p) in line.iter().enumerate().take(upto + 1) {
        let lower = if k == upto { base } else { line[k + 1].height };
        keys.extend(p.view.store.changed_keys(lower, p.height, max)?);
        if keys.len() > max {
            return Err(StateError::TooManyChanges { max });
        }
    }
    Ok(keys)
}

/// What differs between `from` and `to`, at most `limit` entries in key order.
pub fn diff(from: &Point, to: &Point, limit: usize) -> Result<DiffView, StateError> {
    let (la, lb) = (lineage(from), lineage(to));
    let (ia, ib) = la
        .iter()
        .enumerate()
        .find_map(|(i, a)| lb.iter().position(|b| b.view.branch == a.view.branch).map(|j| (i, j)))
        .ok_or_else(|| StateError::Tree("the two points share no chain (not even main)".into()))?;
    let base_height = la[ia].height.min(lb[ib].height);
    let base = PointView { branch: la[ia].view.branch.clone(), height: base_height };
    let ours = changed_since(&la, ia, base_height, MAX_CANDIDATES)?;
    let theirs = changed_since(&lb, ib, base_height, MAX_CANDIDATES)?;
    let mut out =
        DiffView { from: from.view_of(), to: to.view_of(), base, entries: Vec::new(), truncated: false };
    let mut layouts: HashMap<(Address, bool), Option<Arc<aergo_sql::Compiled>>> = HashMap::new();
    for key in ours.union(&theirs) {
        let side = match (ours.contains(key), theirs.contains(key)) {
            (true, true) => "both",
            (true, false) => "from",
            _ => "to",
        };
        let (a, b) = (from.view.store.get_at(key, from.height)?, to.view.store.get_at(key, to.height)?);
        if a == b {
            continue;
        }
        let Some(entry) = describe(key, side, (a, b), (from, to), &mut layouts)? else { continue };
        if out.entries.len() == limit {
            out.truncated = true;
            break;
        }
        out.entries.push(entry);
    }
    Ok(out)
}

/// One differing key as the diff lists it; `None` for a key derived from others (an index entry,
/// a table's row-id counter).
fn describe(
    key: &[u8],
    side: &str,
    (a, b): (Option<Vec<u8>>, Option<Vec<u8>>),
    (from, to): (&Point, &Point),
    layouts: &mut HashMap<(Address, bool), Option<Arc<aergo_sql::Compiled>>>,
) -> Result<Option<DiffEntry>, StateError> {
    let side = side.to_string();
    // `aergo_storage::state::account_key`: `acct/` and the address.
    if let Some(addr) = key.strip_prefix(b"acct/".as_slice()).and_then(|a| <[u8; 20]>::try_from(a).ok()) {
        let state = |v: Option<Vec<u8>>| -> Result<Option<AccountSide>, StateError> {
            Ok(v.map(|v| decode_account(Some(v)))
                .transpose()?
                .map(|a: Account| AccountSide { balance: a.balance, nonce: a.nonce }))
        };
        return Ok(Some(DiffEntry::Account { address: Address(addr), side, from: state(a)?, to: state(b)? }));
    }
    let other = |key: &[u8]| DiffEntry::Other { key: printable(key), side: side.clone() };
    let Some(rest) = key.strip_prefix(SQL_PREFIX) else { return Ok(Some(other(key))) };
    let (Some(addr), Some(b'/'), Some(kind)) =
        (rest.get(..20).and_then(|a| <[u8; 20]>::try_from(a).ok()), rest.get(20), rest.get(21))
    else {
        return Ok(Some(other(key)));
    };
    let contract = Address(addr);
    match kind {
        b'c' => Ok(Some(DiffEntry::Contract {
            contract,
            side,
            deployed_in: if b.is_some() { "to" } else { "from" }.into(),
        })),
        b'r' => {
            let Some(&table_id) = rest.get(22) else { return Ok(Some(other(key))) };
            // The layout from the side that has the contract (a script never changes).
            let mut layout = None;
            for (p, is_to) in [(to, true), (from, false)] {
                let l = layouts.entry((contract, is_to)).or_insert_with(|| {
                    aergo_exec::query::load(&p.view.store, &contract, p.height).ok().map(|(_, c)| c)
                });
                if l.is_some() {
                    layout = l.clone();
                    break;
                }
            }
            let table = layout.as_ref().and_then(|c| c.interpreted.tables.get(table_id as usize).cloned());
            let row = |v: Option<Vec<u8>>| -> Option<serde_json::Map<String, serde_json::Value>> {
                let values = aergo_primitives::value::decode_row(&v?).ok()?;
                Some(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, val)| {
                            let name = table
                                .as_ref()
                                .and_then(|t| t.columns.get(i))
                                .map_or_else(|| format!("column {i}"), |c| c.name.clone());
                            (name, aergo_primitives::value::json::to_json(val))
                        })
                        .collect(),
                )
            };
            let (ra, rb) = (row(a.clone()), row(b.clone()));
            let key_values = match (&table, ra.as_ref().or(rb.as_ref())) {
                (Some(t), Some(r)) => {
                    t.pk.iter()
                        .filter_map(|&i| t.columns.get(i).and_then(|c| r.get(&c.name).cloned()))
                        .collect()
                }
                _ => Vec::new(),
            };
            Ok(Some(DiffEntry::Row {
                contract,
                table: table.map_or_else(|| format!("table {table_id}"), |t| t.name.clone()),
                key: key_values,
                side,
                from: ra,
                to: rb,
            }))
        }
        // Index entries and row-id counters follow from the rows.
        _ => Ok(None),
    }
}

/// A system key as text: its printable prefix, and the rest in hex.
fn printable(key: &[u8]) -> String {
    let text = key.iter().take_while(|b| b.is_ascii_graphic()).count();
    let (head, tail) = key.split_at(text);
    let head = String::from_utf8_lossy(head);
    if tail.is_empty() {
        head.into_owned()
    } else {
        format!("{head}{}", hex::encode(tail))
    }
}
