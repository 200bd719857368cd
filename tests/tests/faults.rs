//! Damaged block logs, from the outside: a torn append at the end is repaired at start; damage to a
//! committed record, at the end or in a middle segment, stops the node with the file and offset.

use aergo_api::AergoApiClient;
use aergo_primitives::crypto::KeyFile;
use aergo_primitives::types::{Payload, TxBody, ENCODING_VERSION};
use aergo_tests::{wait_for, NodeProcess};
use jsonrpsee::http_client::HttpClientBuilder;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SEGMENT: &str = "8192";

/// A stopped devnet whose log spans several segments.
fn make_chain(dir: &Path) -> anyhow::Result<u64> {
    let node = NodeProcess::start_dev(dir, &["--segment-bytes", SEGMENT])?;
    let key = KeyFile::read(&dir.join("dev.key"))?.unlock(None)?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    let chain_id = rt.block_on(client.chain_info(None))?.chain_id;
    let mut nonce = 0;
    let height = wait_for(Duration::from_secs(60), "five blocks with transactions", || {
        for _ in 0..60 {
            let tx = key.sign_tx(TxBody {
                version: ENCODING_VERSION,
                chain_id: chain_id.clone(),
                branch: aergo_primitives::types::MAIN_BRANCH.into(),
                nonce,
                sender: key.public(),
                recipient: key.address(),
                amount: 1,
                fee: 0,
                payload: Payload::Transfer,
            });
            nonce += 1;
            rt.block_on(client.send_tx(hex::encode(tx.encode()))).ok()?;
        }
        let h = rt.block_on(client.chain_info(None)).ok()?.height;
        (h >= 5).then_some(h)
    })?;
    let height = wait_for(Duration::from_secs(10), "the pool to drain", || {
        let info = rt.block_on(client.chain_info(None)).ok()?;
        (info.mempool_txs == 0).then_some(info.height)
    })
    .unwrap_or(height);
    node.stop()?;
    Ok(height)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status()?.success();
    anyhow::ensure!(ok, "cp -a failed");
    Ok(())
}

/// Offset of the last record in a segment and the end of its data (records are
/// `magic | len u32 | height u64 | crc u32 | payload`, then zeros).
fn last_record(seg: &Path) -> (u64, u64) {
    let bytes = std::fs::read(seg).unwrap();
    let (mut at, mut last) = (0usize, 0usize);
    while at + 20 <= bytes.len() && &bytes[at..at + 4] == b"AEB1" {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        last = at;
        at += 20 + len;
    }
    (last as u64, at as u64)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_block_logs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().join("base");
    let height = make_chain(&base)?;
    let segs = segments(&base);
    assert!(segs.len() >= 4, "expected several segments, got {}", segs.len());

    // 1. A torn append at the end (what a crash while appending leaves) is cut off at start.
    let torn = tmp.path().join("torn");
    copy(&base, &torn)?;
    let last = segments(&torn).pop().unwrap();
    let (_, end) = last_record(&last);
    let f = std::fs::OpenOptions::new().write(true).open(&last)?;
    f.write_all_at(b"AEB1\x00\x10\x00\x00partial record", end)?;
    drop(f);
    let node = NodeProcess::start_dev(&torn, &["--segment-bytes", SEGMENT])?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = HttpClientBuilder::default().build(&node.rpc)?;
    assert_eq!(rt.block_on(client.chain_info(None))?.height, height);
    assert!(node.log().contains("torn"), "the repair is logged: {}", node.log());
    node.stop()?;
    assert_eq!(last_record(&last).1, end, "the torn bytes were cleared");

    // 2. The last bytes of the last, committed block damaged: refused, naming file and offset.
    let tail = tmp.path().join("tail");
    copy(&base, &tail)?;
    let last = segments(&tail).pop().unwrap();
    let (offset, end) = last_record(&last);
    std::fs::OpenOptions::new().write(true).open(&last)?.write_all_at(b"\xde\xad", end - 2)?;
    let err = NodeProcess::start_dev(&tail, &["--segment-bytes", SEGMENT]).err().expect("must refuse");
    let text = err.to_string();
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(
        text.contains(name) && text.contains(&format!("offset {offset}")) && text.contains("committed"),
        "{text}"
    );
    let mut back = [0u8; 2];
    std::fs::File::open(&last)?.read_exact_at(&mut back, end - 2)?;
    assert_eq!(&back, b"\xde\xad", "a committed block is never cleared");

    // 3. A byte flipped inside a middle segment: refused, naming file and offset.
    let middle = tmp.path().join("middle");
    copy(&base, &middle)?;
    let seg = segments(&middle)[2].clone();
    let (_, seg_end) = last_record(&seg);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg)?;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, seg_end / 2)?;
    f.write_all_at(&[byte[0] ^ 0x55], seg_end / 2)?;
    let err = NodeProcess::start_dev(&middle, &["--segment-bytes", SEGMENT]).err().expect("must refuse");
    let text = err.to_string();
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(text.contains(name) && text.contains("offset"), "{text}");
    Ok(())
}
