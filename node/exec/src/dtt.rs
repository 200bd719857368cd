//! The deterministic transaction tree (DTT): which earlier transactions of a block each one depends on.
//!
//! Built from the transactions in block order and their access sets: transaction `i` depends on the
//! last earlier transaction that touched each account in its set (every access counts as a write,
//! so this covers write/write and read/write conflicts). The system resource (the governance keys)
//! and contract resources (contract, table, row; see [`super::access`]) are held shared or
//! exclusively: `i` depends on the last earlier exclusive holder of each, and, for those it holds
//! exclusively, on every shared holder since. The result depends only on the block's contents, so
//! every node builds the same tree; executing each transaction after its dependencies, in any
//! interleaving, gives the result of executing the block in order.

use super::access::AccessSet;
use aergo_primitives::types::Address;
use smallvec::SmallVec;
use std::collections::HashMap;

/// The maps of a block's analysis and execution, keyed by addresses and keys that senders choose
/// (a recipient is any 20 bytes): a fast hasher with a per-process random key (aHash), so that
/// nobody can fill a block with keys that collide in it and make every lookup a long probe.
pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Which of `pieces` (at most 256) consecutive parts of the address space `a` lies in, by its
/// first byte: the pieces follow one another in key order. Addresses are hashes, so the pieces are
/// about even; a block whose recipients all share a first byte only puts them in one piece (its
/// final values are then encoded by one worker).
pub fn piece_of(a: &Address, pieces: usize) -> usize {
    a.0[0] as usize * pieces / 256
}

/// For each account of one transaction's set: the previous transaction of the block touching it.
pub type PrevLinks = SmallVec<[(Address, Option<u32>); 2]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtt {
    /// For each transaction, its links to the previous toucher of each account of its set.
    pub prev: Vec<PrevLinks>,
    /// For each transaction, the distinct transactions it waits for.
    pub deps: Vec<Deps>,
    /// For each account, the last transaction of the block that touches it.
    pub last: FastMap<Address, u32>,
}

/// The distinct transactions one transaction waits for.
pub type Deps = SmallVec<[u32; 2]>;

/// Builds the tree one transaction at a time, in block order: what [`Dtt::build`] does for a whole
/// block, and what the parallel executor does while the first transactions already run.
pub struct DttBuilder {
    /// Each account's last toucher, one map per piece of the address space ([`piece_of`]).
    last: Vec<FastMap<Address, u32>>,
    exclusive: FastMap<u64, u32>,
    shared: FastMap<u64, Vec<u32>>,
    /// Each transaction's place in its longest chain (1 = depends on nothing).
    depth: Vec<u32>,
    critical: usize,
}

impl DttBuilder {
    pub fn with_capacity(txs: usize) -> DttBuilder {
        DttBuilder::with_pieces(txs, 1)
    }

    /// A builder whose last touchers come out in `pieces` maps (at most 256), one per piece of
    /// the address space: the parallel executor's workers encode the final values piece by piece.
    pub fn with_pieces(txs: usize, pieces: usize) -> DttBuilder {
        let pieces = pieces.clamp(1, 256);
        // A transaction touches two accounts or so; an eighth more than an even share per piece.
        let per = (txs * 2).div_ceil(pieces) * 9 / 8;
        DttBuilder {
            last: (0..pieces).map(|_| FastMap::with_capacity_and_hasher(per, Default::default())).collect(),
            exclusive: FastMap::default(),
            shared: FastMap::default(),
            depth: Vec::with_capacity(txs),
            critical: 0,
        }
    }

    /// The next transaction's links and dependencies.
    pub fn push(&mut self, set: &AccessSet) -> (PrevLinks, Deps) {
        let i = self.depth.len();
        let me = i as u32;
        let mut p = SmallVec::new();
        let mut d: Deps = SmallVec::new();
        let pieces = self.last.len();
        for a in &set.accounts {
            let before = self.last[piece_of(a, pieces)].insert(*a, me);
            if let Some(j) = before {
                if !d.contains(&j) {
                    d.push(j);
                }
            }
            p.push((*a, before));
        }
        if set.has_resources() {
            self.push_resources(set, me, &mut d);
        }
        let depth = 1 + d.iter().map(|&j| self.depth[j as usize]).max().unwrap_or(0);
        self.depth.push(depth);
        self.critical = self.critical.max(depth as usize);
        (p, d)
    }

    /// The dependencies of transaction `me` through the system and contract resources of its
    /// set, which it then holds. Only called for sets that hold some: a transfer's node skips
    /// building an empty list of them (a tenth of its cost).
    fn push_resources(&mut self, set: &AccessSet, me: u32, d: &mut Deps) {
        for (r, excl) in set.resources() {
            let mut add = |j: u32| {
                if j != me && !d.contains(&j) {
                    d.push(j);
                }
            };
            if let Some(&j) = self.exclusive.get(&r) {
                add(j);
            }
            if excl {
                for j in self.shared.remove(&r).unwrap_or_default() {
                    add(j);
                }
                self.exclusive.insert(r, me);
            } else {
                self.shared.entry(r).or_default().push(me);
            }
        }
    }

    /// The longest dependency chain so far.
    pub fn critical_path(&self) -> usize {
        self.critical
    }

    /// For each account, the last transaction that touches it: one map per piece, in the order
    /// of the pieces.
    pub fn finish(self) -> Vec<FastMap<Address, u32>> {
        self.last
    }
}

impl Dtt {
    pub fn build(sets: &[AccessSet]) -> Dtt {
        let mut b = DttBuilder::with_capacity(sets.len());
        let mut prev = Vec::with_capacity(sets.len());
        let mut deps = Vec::with_capacity(sets.len());
        for set in sets {
            let (p, d) = b.push(set);
            prev.push(p);
            deps.push(d);
        }
        Dtt { prev, deps, last: b.finish().pop().unwrap_or_default() }
    }

    /// Length of the longest dependency chain: the least number of sequential steps (a bound on the
    /// parallelism a block allows).
    pub fn critical_path(&self) -> usize {
        let mut depth = vec![0usize; self.deps.len()];
        for i in 0..self.deps.len() {
            depth[i] = 1 + self.deps[i].iter().map(|&j| depth[j as usize]).max().unwrap_or(0);
        }
        depth.into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Address {
        Address([n; 20])
    }

    #[test]
    fn dependencies_follow_shared_accounts() {
        let set = |x: u8, y: u8| AccessSet::accounts(smallvec::smallvec![a(x), a(y)]);
        let sets = vec![set(1, 2), set(3, 4), set(2, 3), set(5, 6), set(1, 3)];
        let dtt = Dtt::build(&sets);
        let deps: Vec<Vec<u32>> = dtt.deps.iter().map(|d| d.to_vec()).collect();
        assert_eq!(deps, vec![vec![], vec![], vec![0, 1], vec![], vec![0, 2]]);
        assert_eq!(dtt.prev[4].to_vec(), vec![(a(1), Some(0)), (a(3), Some(2))]);
        assert_eq!(dtt.last[&a(3)], 4);
        assert_eq!(dtt.critical_path(), 3);
        assert_eq!(Dtt::build(&sets), dtt, "deterministic");
    }

    #[test]
    fn contract_resources_conflict_by_level() {
        use super::super::access::ContractAccess;
        let call = |sender: u8, whole: bool, tables: &[u8], rows: &[(u8, &[u8])]| {
            let mut s = AccessSet::accounts(smallvec::smallvec![a(sender)]);
            s.contract = Some(Box::new(ContractAccess {
                contract: a(99),
                whole,
                tables: tables.iter().copied().collect(),
                rows: rows.iter().map(|(t, k)| (*t, k.to_vec())).collect(),
                index_tables: std::sync::Arc::from([]),
            }));
            s
        };
        let sets = vec![
            call(1, false, &[], &[(0, b"x"), (0, b"y")]), // 0: rows x, y
            call(2, false, &[], &[(0, b"z")]),            // 1: row z — independent of 0
            call(3, false, &[], &[(0, b"y"), (0, b"w")]), // 2: row y — after 0
            call(4, false, &[1], &[]),                    // 3: table 1 whole — independent
            call(5, false, &[0], &[]),                    // 4: table 0 whole — after 0, 1, 2
            call(6, false, &[], &[(0, b"z")]),            // 5: row z — after 4 (and 1, held before)
            call(7, true, &[], &[]), // 6: whole contract — after 3 and every shared holder
            call(8, false, &[], &[(1, b"q")]), // 7: after 6 (and 3, table 1)
        ];
        let dtt = Dtt::build(&sets);
        let mut deps: Vec<Vec<u32>> = dtt.deps.iter().map(|d| d.to_vec()).collect();
        deps.iter_mut().for_each(|d| d.sort());
        assert_eq!(
            deps,
            vec![
                vec![],
                vec![],
                vec![0],
                vec![],
                vec![0, 1, 2],
                vec![1, 4],
                vec![0, 1, 2, 3, 4, 5],
                vec![3, 6]
            ]
        );
    }
}
