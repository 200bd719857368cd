//! A block's state changes: key → new value (`None` deletes), sorted by key, each key once.
//!
//! Execution produces tens of thousands of changes per large block, and they are sorted once, on
//! one thread, before the state tree and the commit take them. The keys are heap bytes that share
//! long prefixes (every row of a contract table starts with the same 30-odd bytes), so a
//! comparison sort pays a pointer chase and a long `memcmp` per comparison; building a `BTreeMap`
//! from them cost more than executing the block's transfers. [`ChangeSet::from_unsorted`] sorts
//! instead by 8-byte windows of the keys held beside an index (contiguous integers): first the
//! window after the prefix all keys share, then, inside each group that window cannot tell apart,
//! the window after that group's own shared prefix — an MSD radix sort whose digit is a `u64`.

/// One change: a state key and its new value (`None`: deleted).
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// Changes sorted by key, each key at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet(Vec<Change>);

impl ChangeSet {
    /// Sorts `changes` by key. A key given more than once keeps its last value, as inserting them
    /// into a map in order would.
    pub fn from_unsorted(mut changes: Vec<Change>) -> ChangeSet {
        let (order, ties) = {
            let keys: Vec<&[u8]> = changes.iter().map(|(k, _)| k.as_slice()).collect();
            let mut order: Vec<u32> = (0..keys.len() as u32).collect();
            let ties = sort_from(&keys, &mut order, 0);
            (order, ties)
        };
        // Into place by following the permutation's cycles: no second vector of changes (a fresh
        // multi-megabyte allocation per block, whose pages the kernel had to clear first).
        let mut order = order;
        for start in 0..order.len() {
            let mut k = start;
            while order[k] as usize != start {
                let src = order[k] as usize;
                order[k] = k as u32;
                changes.swap(k, src);
                k = src;
            }
            order[k] = k as u32;
        }
        // Equal keys arrive in their input order: the later one replaces the earlier. Only keys
        // compared whole can be equal; without such a group no key needs a look.
        if ties {
            dedup_later_wins(&mut changes);
        }
        ChangeSet(changes)
    }

    /// `sorted` (keys strictly ascending) and `rest` (any order) as one set; a key in both keeps
    /// `rest`'s value. Only `rest` is sorted, then merged in from the back into room at the end of
    /// `sorted` (reserve it beforehand to spare a copy): what lies before `rest`'s first key does
    /// not move. When `sorted` is not sorted after all, everything is sorted.
    pub fn from_sorted_and_unsorted(mut sorted: Vec<Change>, rest: Vec<Change>) -> ChangeSet {
        if !sorted.windows(2).all(|w| w[0].0 < w[1].0) {
            sorted.extend(rest);
            return ChangeSet::from_unsorted(sorted);
        }
        let rest = ChangeSet::from_unsorted(rest).0;
        let n = sorted.len();
        sorted.resize_with(n + rest.len(), Default::default);
        // Before placing `rest[k]`, slots `i ..= i + k` are free: `sorted[..i]` has not moved, and
        // whatever of it is greater than `rest[k]` ends `k + 1` places further on.
        let (mut i, mut ties) = (n, false);
        for (k, change) in rest.into_iter().enumerate().rev() {
            while i > 0 && sorted[i - 1].0 > change.0 {
                sorted.swap(i - 1, i + k);
                i -= 1;
            }
            ties |= i > 0 && sorted[i - 1].0 == change.0;
            sorted[i + k] = change;
        }
        if ties {
            dedup_later_wins(&mut sorted);
        }
        ChangeSet(sorted)
    }

    /// The new value of `key`, if the set changes it (`Some(None)`: deleted).
    pub fn get(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.0.binary_search_by(|(k, _)| k.as_slice().cmp(key)).ok().map(|i| &self.0[i].1)
    }

    /// Every change, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> + '_ {
        self.into_iter()
    }

    /// The changes of keys starting with `prefix`, in key order.
    pub fn with_prefix<'s>(
        &'s self,
        prefix: &'s [u8],
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s Option<Vec<u8>>)> + 's {
        let from = self.0.partition_point(|(k, _)| k.as_slice() < prefix);
        self.0[from..].iter().take_while(move |(k, _)| k.starts_with(prefix)).map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Change> for ChangeSet {
    fn from_iter<I: IntoIterator<Item = Change>>(iter: I) -> Self {
        ChangeSet::from_unsorted(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a ChangeSet {
    type Item = (&'a Vec<u8>, &'a Option<Vec<u8>>);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Change>, fn(&'a Change) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Keeps one change per key in sorted `changes`: of equal keys, the value of the last.
fn dedup_later_wins(changes: &mut Vec<Change>) {
    changes.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        same
    });
}

/// Bytes `at..at + 8` of `key` as a big-endian integer, zero-padded past its end.
fn window(key: &[u8], at: usize) -> u64 {
    if let Some(bytes) = key.get(at..at + 8) {
        return u64::from_be_bytes(bytes.try_into().unwrap_or_default());
    }
    let mut b = [0u8; 8];
    if let Some(rest) = key.get(at..) {
        let n = rest.len().min(8);
        b[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(b)
}

/// Sorts `order` (indexes into `keys`, whose keys all share their first `shared` bytes and are
/// at least that long) by key; equal keys by index. `true` when a group of keys was compared
/// whole (only there can two keys be equal).
fn sort_from(keys: &[&[u8]], order: &mut [u32], shared: usize) -> bool {
    if order.len() < 2 {
        return false;
    }
    // Skip what every key here has in common: the window then starts where they differ.
    let first = keys[order[0] as usize];
    let mut common = first.len();
    for &i in &order[1..] {
        common =
            shared + common_prefix(&first[shared..common], keys[i as usize].get(shared..).unwrap_or(&[]));
        if common == shared {
            break;
        }
    }
    let mut digits: Vec<(u64, u32)> = order.iter().map(|&i| (window(keys[i as usize], common), i)).collect();
    digits.sort_unstable();
    for (slot, (_, i)) in order.iter_mut().zip(&digits) {
        *slot = *i;
    }
    let mut ties = false;
    let mut start = 0;
    while start < digits.len() {
        let end = start + digits[start..].iter().take_while(|(d, _)| *d == digits[start].0).count();
        if end - start > 1 {
            let group = &mut order[start..end];
            // Keys that end inside the window were zero-padded: compare those groups whole.
            if group.iter().any(|&i| keys[i as usize].len() <= common + 8) {
                group.sort_by(|&a, &b| keys[a as usize].cmp(keys[b as usize]).then(a.cmp(&b)));
                ties = true;
            } else {
                ties |= sort_from(keys, group, common + 8);
            }
        }
        start = end;
    }
    ties
}

/// How many leading bytes `a` and `b` share, compared eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = window(a, i) ^ window(b, i);
        if x != 0 {
            return i + (x.leading_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..n].iter().zip(&b[i..n]).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(changes: &[Change]) -> Vec<Change> {
        let map: std::collections::BTreeMap<_, _> = changes.iter().cloned().collect();
        map.into_iter().collect()
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Short alphabets and shared prefixes, so that windows tie and keys end inside them.
        (
            prop::sample::select(vec![vec![], vec![7u8; 3], vec![7u8; 12], vec![1, 2, 3, 4, 5, 6, 7, 8, 9]]),
            prop::collection::vec(0u8..3, 0..20),
        )
            .prop_map(|(mut p, s)| {
                p.extend(s);
                p
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn sorts_like_a_btree_map(changes in prop::collection::vec((key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))), 0..200)) {
            let set = ChangeSet::from_unsorted(changes.clone());
            let want = reference(&changes);
            prop_assert_eq!(&set.0, &want);
            for (k, v) in &want {
                prop_assert_eq!(set.get(k), Some(v));
            }
            let prefix = [7u8; 3];
            let got: Vec<_> = set.with_prefix(&prefix).map(|(k, v)| (k.clone(), v.clone())).collect();
            let want: Vec<_> = want.iter().filter(|(k, _)| k.starts_with(&prefix)).cloned().collect();
            prop_assert_eq!(got, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn a_sorted_run_and_the_rest_make_the_same_set(
            sorted in prop::collection::vec((key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))), 0..100),
            rest in prop::collection::vec((key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))), 0..40),
            sort_first in any::<bool>(),
        ) {
            // Sorted and deduplicated as promised, or (half the cases) given as generated.
            let run = if sort_first { reference(&sorted) } else { sorted };
            let mut all = run.clone();
            all.extend(rest.iter().cloned());
            let set = ChangeSet::from_sorted_and_unsorted(run, rest);
            prop_assert_eq!(set.0, reference(&all));
        }
    }

    #[test]
    fn later_values_of_a_key_win() {
        let set = ChangeSet::from_unsorted(vec![
            (b"b".to_vec(), Some(b"1".to_vec())),
            (b"a".to_vec(), None),
            (b"b".to_vec(), None),
            (b"b".to_vec(), Some(b"3".to_vec())),
        ]);
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(b"b"), Some(&Some(b"3".to_vec())));
        assert_eq!(set.get(b"a"), Some(&None));
        assert_eq!(set.get(b"c"), None);
    }
}
