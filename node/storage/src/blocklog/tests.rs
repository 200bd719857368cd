use super::*;

fn opts(segment_bytes: u64, use_io_uring: bool) -> LogOptions {
    LogOptions { segment_bytes, use_io_uring, verify: Verify::Full }
}

fn payload(h: u64) -> Vec<u8> {
    format!("block {h} ").repeat(20 + h as usize % 7).into_bytes()
}

/// Writes heights 0..n, returns the positions.
fn fill(dir: &Path, n: u64, o: LogOptions) -> Vec<RecordPos> {
    let (mut log, _) = BlockLog::open(dir, o, None).unwrap();
    (0..n).map(|h| log.append(h, &payload(h)).unwrap()).collect()
}

fn committed(pos: &[RecordPos], h: u64) -> Option<Committed> {
    Some(Committed { height: h, pos: pos[h as usize] })
}

#[test]
fn append_read_across_segments_both_writers() {
    for uring in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let pos = fill(dir.path(), 100, opts(4096, uring));
        assert!(pos.last().unwrap().segment > 2, "small segments roll over");
        let (mut log, rec) = BlockLog::open(dir.path(), opts(4096, uring), committed(&pos, 99)).unwrap();
        assert!(rec.uncommitted.is_empty() && rec.truncated.is_none());
        assert_eq!(rec.last_height, Some(99));
        // A record larger than a segment gets a segment of its own.
        let big = vec![7u8; 10_000];
        let p = log.append(100, &big).unwrap();
        assert_eq!(log.reader().read(p).unwrap().1, big);
        let p = log.append(101, b"after").unwrap();
        assert_eq!(log.reader().read(p).unwrap().1, b"after");
        let reader = log.reader();
        for (h, p) in pos.iter().enumerate() {
            assert_eq!(reader.read(*p).unwrap(), (h as u64, payload(h as u64)));
        }
    }
}

#[test]
fn heights_must_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = BlockLog::open(dir.path(), opts(1 << 20, true), None).unwrap();
    log.append(0, b"a").unwrap();
    assert!(matches!(log.append(2, b"b"), Err(LogError::Height { expected: 1, got: 2 })));
}

#[test]
fn uncommitted_records_are_returned_for_replay() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 5, opts(1 << 20, true));
    let (_, rec) = BlockLog::open(dir.path(), opts(1 << 20, true), committed(&pos, 2)).unwrap();
    assert_eq!(rec.uncommitted, vec![(3, pos[3]), (4, pos[4])]);
}

#[test]
fn torn_append_is_cut_off_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 5, opts(1 << 20, true));
    let seg = segment_path(dir.path(), 0);
    let size = std::fs::metadata(&seg).unwrap().len();
    let end = pos[4].end().1;
    // What a crash halfway through appending height 5 leaves: a header and part of the payload.
    let p = payload(5);
    let mut rec = encode_header(5, &p).to_vec();
    rec.extend_from_slice(&p[..p.len() / 2]);
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().write_all_at(&rec, end).unwrap();
    let (mut log, r) = BlockLog::open(dir.path(), opts(1 << 20, true), committed(&pos, 4)).unwrap();
    let (file, offset, cleared) = r.truncated.unwrap();
    assert!(file.ends_with("00000000.seg"));
    assert_eq!((offset, cleared), (end, size - end));
    let mut rest = vec![1u8; rec.len()];
    std::fs::File::open(&seg).unwrap().read_exact_at(&mut rest, end).unwrap();
    assert!(rest.iter().all(|&b| b == 0), "the torn bytes were cleared");
    let p5 = log.append(5, &payload(5)).unwrap();
    assert_eq!(log.reader().read(p5).unwrap().0, 5);
}

#[test]
fn damaged_last_record_beyond_commit_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 5, opts(1 << 20, true));
    let seg = segment_path(dir.path(), 0);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"XXXX", pos[4].end().1 - 4).unwrap();
    // The store committed height 3 only: the damaged height 4 was never acknowledged.
    let (_, r) = BlockLog::open(dir.path(), opts(1 << 20, true), committed(&pos, 3)).unwrap();
    assert_eq!(r.truncated.unwrap().1, pos[4].offset);
    assert!(r.uncommitted.is_empty());
}

#[test]
fn damaged_committed_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 5, opts(1 << 20, true));
    let seg = segment_path(dir.path(), 0);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"XXXX", pos[4].end().1 - 4).unwrap();
    let err = BlockLog::open(dir.path(), opts(1 << 20, true), committed(&pos, 4)).err().unwrap();
    match err {
        LogError::CommittedDamaged { path, offset, height, .. } => {
            assert!(path.ends_with("00000000.seg"));
            assert_eq!((offset, height), (pos[4].offset, 4));
        }
        other => panic!("unexpected {other}"),
    }
    let mut back = [0u8; 4];
    std::fs::File::open(&seg).unwrap().read_exact_at(&mut back, pos[4].end().1 - 4).unwrap();
    assert_eq!(&back, b"XXXX", "nothing was cleared");
}

#[test]
fn damage_in_a_middle_segment_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 100, opts(4096, true));
    let victim = pos.iter().find(|p| p.segment == 1).copied().unwrap();
    let seg = segment_path(dir.path(), 1);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"\xff", victim.offset + HEADER_LEN as u64 + 3).unwrap();
    let (uncommitted_store, committed_store) = (committed(&pos, 0), committed(&pos, 99));
    for c in [committed_store, uncommitted_store] {
        let err = BlockLog::open(dir.path(), opts(4096, true), c).err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("00000001.seg") && text.contains(&format!("offset {}", victim.offset)),
            "{text}"
        );
    }
    // A reader of that record refuses it too.
    let reader = LogReader::new(dir.path());
    assert!(matches!(reader.read(victim), Err(LogError::Corrupt { .. })));
}

#[test]
fn stray_bytes_after_the_data_are_cleared_in_the_last_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 100, opts(4096, true));
    let last = pos.last().unwrap().segment;
    let seg = segment_path(dir.path(), last);
    let size = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().write_all_at(b"junk", size - 10).unwrap();
    let (_, r) = BlockLog::open(dir.path(), opts(4096, true), committed(&pos, 99)).unwrap();
    assert_eq!(r.truncated.unwrap().1, pos[99].end().1);
    // In an earlier segment the same is damage.
    let seg0 = segment_path(dir.path(), 0);
    let size0 = std::fs::metadata(&seg0).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg0).unwrap().write_all_at(b"junk", size0 - 10).unwrap();
    let err = BlockLog::open(dir.path(), opts(4096, true), committed(&pos, 99)).err().unwrap();
    assert!(err.to_string().contains("00000000.seg"), "{err}");
}

#[test]
fn missing_or_short_logs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 100, opts(4096, true));
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    assert!(matches!(
        BlockLog::open(dir.path(), opts(4096, true), committed(&pos, 99)),
        Err(LogError::SegmentGap { missing: 1, .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let pos = fill(dir.path(), 5, opts(1 << 20, true));
    let seg = segment_path(dir.path(), 0);
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(pos[3].offset).unwrap();
    let err = BlockLog::open(dir.path(), opts(1 << 20, true), committed(&pos, 4)).err().unwrap();
    assert!(matches!(err, LogError::Missing { height: 4, .. }), "{err}");
}

#[test]
fn truncation_within_and_across_segments_then_the_log_continues() {
    for (segment_bytes, uring) in [(1 << 20, true), (4096, true), (4096, false)] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = BlockLog::open(dir.path(), opts(segment_bytes, uring), None).unwrap();
        let pos: Vec<_> = (0..60).map(|h| log.append(h, &payload(h)).unwrap()).collect();
        log.truncate_after(pos[40], 40).unwrap();
        assert!(matches!(log.append(42, b"x"), Err(LogError::Height { expected: 41, .. })));
        let fork: Vec<_> = (41..50).map(|h| log.append(h, format!("fork {h}").as_bytes()).unwrap()).collect();
        let reader = log.reader();
        assert_eq!(reader.read(pos[40]).unwrap(), (40, payload(40)));
        assert_eq!(reader.read(fork[0]).unwrap(), (41, b"fork 41".to_vec()));
        drop(log);
        // Reopened: the old records after 40 are gone, the fork's are there.
        let (_, rec) = BlockLog::open(dir.path(), opts(segment_bytes, uring), committed(&pos, 40)).unwrap();
        assert_eq!(rec.last_height, Some(49));
        assert_eq!(rec.uncommitted, (41..50).zip(fork.iter().copied()).collect::<Vec<_>>());
        assert!(rec.truncated.is_none());
    }
}
