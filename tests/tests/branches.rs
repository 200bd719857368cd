//! Branch and tag records through the real node and the `aergo` CLI (`docs/branches.md`): made on
//! `main` at final blocks, listed and shown, names unique by git's rule, bad input refused with a
//! clear error and nothing recorded.

use aergo_tests::{binary, cli_code_json as cli, cli_json, NodeProcess};
use std::process::Command;

#[test]
fn branches_and_tags_are_recorded_on_main_with_unique_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::start_dev(dir.path(), &[])?;
    let rpc = node.rpc.clone();
    let key = dir.path().join("dev.key").display().to_string();
    let me = cli_json(&rpc, &["account", "show", &key])?["address"].as_str().unwrap_or_default().to_string();
    let (code, v) = cli(&rpc, &["branch", "list"])?;
    assert_eq!((code, v.clone()), (0, serde_json::json!([])), "{v}");

    // A branch of main at its last final block (a devnet's blocks are final at once).
    let lib = cli_json(&rpc, &["block"])?["header"]["height"].as_u64().unwrap_or(0);
    let (code, v) = cli(&rpc, &["branch", "create", "feature", "--from", "main", "--key", &key, "--wait"])?;
    assert_eq!((code, v["receipt"]["status"].as_str()), (0, Some("success")), "{v}");
    let created_at = v["receipt"]["block_height"].as_u64().unwrap_or(0);
    let b = cli_json(&rpc, &["branch", "show", "feature"])?;
    assert_eq!(b["parent"], "main");
    assert_eq!(b["creator"], me.as_str());
    assert_eq!(b["producers"], serde_json::json!([me]), "the creator alone produces by default");
    assert_eq!(b["created_at"].as_u64(), Some(created_at));
    let base = b["base_height"].as_u64().unwrap_or(u64::MAX);
    assert!(base >= lib && base < created_at, "base {base}, final {lib} when asked, made at {created_at}");
    let block = cli_json(&rpc, &["block", &base.to_string()])?;
    assert_eq!(b["base_hash"], block["hash"], "the base names its block");
    assert_eq!(cli_json(&rpc, &["branch", "list"])?.as_array().map(Vec::len), Some(1));
    let text = Command::new(binary("aergo")).args(["--rpc", &rpc, "branch", "list"]).output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("branch feature") && text.contains(&format!("from main@{base}")), "{text}");

    // Taken names, by git's rule for names with slashes: the transaction fails, its fee is paid,
    // nothing is recorded.
    for (name, taken) in [("feature", "feature"), ("feature/x", "feature")] {
        let (code, v) = cli(&rpc, &["branch", "create", name, "--key", &key, "--wait"])?;
        assert_eq!(code, 2, "{v}");
        let err = v["receipt"]["error"].as_str().unwrap_or_default();
        assert_eq!(err, format!("branch name {name:?} is taken by {taken:?}"), "{v}");
    }
    assert_eq!(cli_json(&rpc, &["branch", "list"])?.as_array().map(Vec::len), Some(1));

    // Refused before anything is signed or sent: a bad name, a base that is not final, a REF that
    // names nothing; and an unknown branch to show.
    let (code, v) = cli(&rpc, &["branch", "create", "Bad", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("is not 1 to 63 of a-z"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "later", "--from", "main@99999", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("height 99999 is not final"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "x", "--from", "nosuch", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.as_str().unwrap_or_default().contains("neither main, main@HEIGHT nor a tag"), "{v}");
    let (code, v) = cli(&rpc, &["branch", "show", "nosuch"])?;
    assert_ne!(code, 0);
    assert!(
        v.as_str().unwrap_or_default().contains("on this chain") && v.to_string().contains("nosuch"),
        "{v}"
    );

    // Tags: one per final block name, immutable, resolvable as a REF.
    let (code, v) = cli(&rpc, &["tag", "create", "v1", "main@2", "--key", &key, "--wait"])?;
    assert_eq!((code, v["receipt"]["status"].as_str()), (0, Some("success")), "{v}");
    let tags = cli_json(&rpc, &["tag", "list"])?;
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(tags[0]["height"], 2);
    assert_eq!(tags[0]["hash"], cli_json(&rpc, &["block", "2"])?["hash"], "{tags}");
    let (code, v) = cli(&rpc, &["tag", "create", "v1", "main", "--key", &key, "--wait"])?;
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["receipt"]["error"], "tag name \"v1\" is taken by \"v1\"", "{v}");
    let (code, v) = cli(&rpc, &["branch", "create", "release", "--from", "v1", "--key", &key, "--wait"])?;
    assert_eq!(code, 0, "{v}");
    assert_eq!(cli_json(&rpc, &["branch", "show", "release"])?["base_height"], 2);

    // A transaction signed for a branch is refused by main's pool: it can never run on main.
    let to = me.as_str();
    let before = cli_json(&rpc, &["balance", to])?;
    let (code, v) = cli(&rpc, &["send", "--branch", "feature", "--to", to, "--amount", "1", "--key", &key])?;
    assert_ne!(code, 0);
    let said = v.to_string();
    assert!(said.contains("transaction is for branch") && said.contains("feature"), "{v}");
    let (code, v) = cli(&rpc, &["send", "--branch", "No Such", "--to", to, "--amount", "1", "--key", &key])?;
    assert_ne!(code, 0);
    assert!(v.to_string().contains("--branch"), "{v}");
    let after = cli_json(&rpc, &["balance", to])?;
    assert_eq!(
        (&after["nonce"], &after["pending_nonce"]),
        (&before["nonce"], &before["pending_nonce"]),
        "nothing was sent"
    );
    node.stop()
}
