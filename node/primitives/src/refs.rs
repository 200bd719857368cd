//! Names of branches and tags (`docs/branches.md`): the rule every node applies when a record is
//! made, and that clients check before they sign.

use crate::types::MAIN_BRANCH;

/// Why a name cannot be a branch's or a tag's, as its receipt says (`None`: it can). The rule of
/// `docs/branches.md`: `[a-z0-9][a-z0-9-_/]{0,62}`, no empty part between slashes, not `main`;
/// on a branch other than `main`, the name starts with that branch's name and a slash.
pub fn name_problem(name: &str, on: &str) -> Option<String> {
    let shape_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_/".contains(&b))
        && !name.ends_with('/')
        && !name.contains("//");
    if !shape_ok {
        return Some(format!(
            "name {name:?} is not 1 to 63 of a-z, 0-9, '-', '_', '/' starting with a letter or digit, without empty parts"
        ));
    }
    if name == MAIN_BRANCH {
        return Some("\"main\" is the chain's own branch".into());
    }
    if on != MAIN_BRANCH && !name.strip_prefix(on).is_some_and(|rest| rest.starts_with('/')) {
        return Some(format!("a name made on branch {on:?} starts with \"{on}/\""));
    }
    None
}

/// The name taken by `name` among `taken`, by git's rule for names with slashes: the same name,
/// a name that `name` continues (`x` for `x/y`), or one that continues `name` (`x/y` for `x`).
pub fn clash<'a>(name: &str, taken: &'a [String]) -> Option<&'a String> {
    taken.iter().find(|t| {
        *t == name
            || name.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with('/'))
            || t.strip_prefix(name).is_some_and(|r| r.starts_with('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_for_refs_with_slashes() {
        assert_eq!(name_problem("feature-1", "main"), None);
        assert_eq!(name_problem("team/x_2", "main"), None);
        for bad in ["", "-x", "X", "a//b", "a/", "main", "a b", &"a".repeat(64)] {
            assert!(name_problem(bad, "main").is_some(), "{bad:?}");
        }
        assert!(name_problem("x", "feature").unwrap().contains("starts with \"feature/\""));
        assert_eq!(name_problem("feature/x", "feature"), None);
        let taken = vec!["a".to_string(), "b/c".to_string()];
        assert_eq!(clash("a", &taken), Some(&taken[0]));
        assert_eq!(clash("a/x", &taken), Some(&taken[0]));
        assert_eq!(clash("b", &taken), Some(&taken[1]));
        assert_eq!(clash("b/c/d", &taken), Some(&taken[1]));
        assert_eq!(clash("ab", &taken), None);
        assert_eq!(clash("b/cd", &taken), None);
    }
}
