use std::fs;
use std::path::Path;
use std::time::Duration;

use super::*;

fn message(id: &str, bytes: usize) -> WireMessage {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(crate::wire::HEADER_MSG_ID, id);
    headers.insert(crate::wire::HEADER_JOB, "node");
    WireMessage {
        subject: "prometheus.site.node".into(),
        headers,
        payload: bytes::Bytes::from(vec![b'x'; bytes]),
        msg_id: id.into(),
    }
}

fn open(dir: &Path, limit: u64) -> (Spool, OpenReport) {
    Spool::open(dir, limit, SpoolSync::Never).expect("the spool opens")
}

/// Takes every waiting record and acknowledges it, as a broker that is up would: their ids.
fn publish_all(spool: &mut Spool) -> Vec<String> {
    std::iter::from_fn(|| {
        let (seq, message) = spool.take()?;
        spool.acked(seq);
        Some(message.msg_id)
    })
    .collect()
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .expect("list the spool")
        .map(|item| item.expect("a directory entry").path())
        .filter(|path| segment::id_of(path).is_some())
        .collect();
    found.sort();
    found
}

#[test]
fn a_record_reads_back_as_the_message_it_was_made_from() {
    let original = message("site/node/a/1", 100);
    let record = segment::encode(&original);
    let body = segment::body_at(&record).expect("an intact record");
    let back = segment::decode(body).expect("it decodes");
    assert_eq!(back.subject, original.subject);
    assert_eq!(back.msg_id, original.msg_id);
    assert_eq!(back.payload, original.payload);
    assert_eq!(
        back.headers
            .get(crate::wire::HEADER_MSG_ID)
            .map(|v| v.as_str()),
        Some("site/node/a/1")
    );
    assert_eq!(
        back.headers
            .get(crate::wire::HEADER_JOB)
            .map(|v| v.as_str()),
        Some("node")
    );
}

#[test]
fn appended_records_come_back_in_order_and_only_acked_ones_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(report, OpenReport::default());
    for id in ["a", "b", "c"] {
        assert_eq!(spool.append(&message(id, 10)).expect("append"), 0);
    }
    let (a, _) = spool.take().expect("a");
    let (b, _) = spool.take().expect("b");
    spool.acked(b);
    // b is acknowledged, a is not: both count until a is, as a is still owed.
    assert_eq!(spool.len(), 2);
    spool.acked(a);
    assert_eq!(spool.len(), 1);
    drop(spool);
    // Restarted: only c is left.
    let (mut spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(report.recovered, 1);
    assert_eq!(publish_all(&mut spool), ["c"]);
    assert!(spool.is_empty());
}

#[test]
fn records_left_by_a_killed_process_are_replayed_first_in_order_before_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = open(dir.path(), 1 << 20);
    for id in ["a", "b", "c"] {
        spool.append(&message(id, 10)).expect("append");
    }
    // Sent but never acked, as when NATS is down at a SIGKILL.
    let _ = spool.take();
    // Dropped without close(): no sync, as when the process is killed (nothing is buffered in
    // the process, so the files are what a SIGKILL leaves).
    drop(spool);
    let (mut spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(report.recovered, 3);
    spool.append(&message("d", 10)).expect("append");
    assert_eq!(publish_all(&mut spool), ["a", "b", "c", "d"]);
}

#[test]
fn a_failed_publish_rewinds_so_that_nothing_is_reordered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = open(dir.path(), 1 << 20);
    for id in ["a", "b", "c", "d"] {
        spool.append(&message(id, 10)).expect("append");
    }
    let (a, _) = spool.take().expect("a");
    let (b, _) = spool.take().expect("b");
    let (c, _) = spool.take().expect("c");
    // Acks come back out of order: c fails first, then a; b lands.
    spool.failed(c);
    spool.acked(b);
    spool.failed(a);
    assert_eq!(publish_all(&mut spool), ["a", "c", "d"]);
    assert!(spool.is_empty());
}

#[test]
fn acked_segments_are_deleted_and_the_spool_returns_to_one_empty_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Segments of 128 KiB (an eighth of the bound): 40 records of 10 KB fill several.
    let (mut spool, _) = open(dir.path(), 1 << 20);
    for i in 0..40 {
        spool
            .append(&message(&i.to_string(), 10_000))
            .expect("append");
    }
    assert!(
        segments(dir.path()).len() >= 3,
        "{:?}",
        segments(dir.path())
    );
    assert_eq!(publish_all(&mut spool).len(), 40);
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "only the segment written to is left"
    );
    drop(spool);
    let (spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(report.recovered, 0, "acked records are not replayed");
    assert!(spool.is_empty());
}

#[test]
fn over_its_bound_the_spool_drops_the_oldest_segment_first_and_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 256 KiB: segments of 64 KiB; records of ~10 KB.
    let (mut spool, _) = open(dir.path(), 256 * 1024);
    let mut dropped = 0;
    for i in 0..60 {
        dropped += spool
            .append(&message(&format!("{i:02}"), 10_000))
            .expect("append");
    }
    assert!(dropped > 0, "60 records of 10 KB exceed 256 KiB");
    assert!(spool.bytes() <= 256 * 1024, "{} bytes", spool.bytes());
    let left = publish_all(&mut spool);
    assert_eq!(left.len() + dropped, 60);
    // What is left is the newest records, in order.
    let expected: Vec<String> = (60 - left.len()..60).map(|i| format!("{i:02}")).collect();
    assert_eq!(left, expected);
}

#[test]
fn a_torn_last_record_is_skipped_with_the_records_before_it_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = open(dir.path(), 1 << 20);
    for id in ["a", "b", "c"] {
        spool.append(&message(id, 100)).expect("append");
    }
    drop(spool);
    let file = segments(dir.path()).pop().expect("a segment");
    let len = fs::metadata(&file).expect("metadata").len();
    // The process died halfway through writing c.
    let torn = fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    torn.set_len(len - 60).expect("truncate");
    drop(torn);
    let (mut spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(
        report,
        OpenReport {
            recovered: 2,
            skipped: 1
        }
    );
    assert_eq!(publish_all(&mut spool), ["a", "b"]);
    drop(spool);
    // The torn tail was cut: a second start finds nothing to warn about.
    let (_, report) = open(dir.path(), 1 << 20);
    assert_eq!(report, OpenReport::default());
}

#[test]
fn a_checksum_mismatch_mid_file_skips_that_record_and_keeps_the_ones_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = open(dir.path(), 1 << 20);
    for id in ["a", "b", "c"] {
        spool.append(&message(id, 100)).expect("append");
    }
    drop(spool);
    let file = segments(dir.path()).pop().expect("a segment");
    let mut bytes = fs::read(&file).expect("read");
    let record = segment::encode(&message("a", 100)).len();
    // Flip a payload byte of b, the second record.
    let inside_b = segment::HEADER_LEN as usize + record + record - 5;
    bytes[inside_b] ^= 0xff;
    fs::write(&file, &bytes).expect("write");
    let (mut spool, report) = open(dir.path(), 1 << 20);
    assert_eq!(
        report,
        OpenReport {
            recovered: 2,
            skipped: 1
        }
    );
    assert_eq!(publish_all(&mut spool), ["a", "c"]);
}

#[test]
fn a_segment_of_another_format_version_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = open(dir.path(), 1 << 20);
    spool.append(&message("a", 10)).expect("append");
    drop(spool);
    let file = segments(dir.path()).pop().expect("a segment");
    let mut bytes = fs::read(&file).expect("read");
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    fs::write(&file, &bytes).expect("write");
    let error = Spool::open(
        dir.path(),
        1 << 20,
        SpoolSync::Interval(Duration::from_secs(1)),
    )
    .expect_err("a version-7 segment is refused");
    let text = format!("{error:#}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("version 7"), "{text}");
    assert!(text.contains("reads version 1"), "{text}");
    // Nothing was touched: the file is still there for the promrelay that can read it.
    assert_eq!(fs::read(&file).expect("read"), bytes);
}

#[test]
fn a_file_that_is_not_a_segment_is_refused_and_a_torn_header_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stranger = dir.path().join(segment::file_name(5));
    fs::write(&stranger, b"hello, this is not a spool segment").expect("write");
    let error = Spool::open(dir.path(), 1 << 20, SpoolSync::Never).expect_err("refused");
    assert!(format!("{error:#}").contains("spool magic"), "{error:#}");
    fs::write(&stranger, &segment::header()[..5]).expect("write");
    let (_, report) = open(dir.path(), 1 << 20);
    assert_eq!(
        report,
        OpenReport {
            recovered: 0,
            skipped: 1
        }
    );
    assert!(!stranger.exists());
}

#[test]
fn a_second_process_cannot_open_a_spool_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_held, _) = open(dir.path(), 1 << 20);
    let error = Spool::open(dir.path(), 1 << 20, SpoolSync::Never).expect_err("locked");
    assert!(
        format!("{error:#}").contains("in use by another promrelay"),
        "{error:#}"
    );
}

#[test]
fn spool_sync_always_and_interval_write_the_same_records() {
    for sync in [
        SpoolSync::Always,
        SpoolSync::Interval(Duration::from_millis(1)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20, sync).expect("open");
        spool.append(&message("a", 10)).expect("append");
        spool.sync_now();
        spool.close();
        let (mut spool, report) = open(dir.path(), 1 << 20);
        assert_eq!(report.recovered, 1);
        assert_eq!(publish_all(&mut spool), ["a"]);
    }
}
