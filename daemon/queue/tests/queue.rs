//! Behaviour of the queue through its public API, on the real disk (temp dirs).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hitvault_queue::{AppendError, GroupCommit, GroupObserver, OpenError, Queue, QueueConfig};

const SHORT: Duration = Duration::from_millis(20);

fn cfg(dir: &Path) -> QueueConfig {
    QueueConfig {
        dir: dir.join("q"),
        segment_bytes: 64 << 10,
        max_bytes: 16 << 20,
        max_record_bytes: 4096,
    }
}

fn small_segments(dir: &Path) -> QueueConfig {
    QueueConfig {
        segment_bytes: 4096,
        ..cfg(dir)
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

/// Reads everything after `after` until nothing more is durable.
fn read_all(q: &Queue, after: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut pos = after;
    loop {
        let batch = q.read_after(pos, 1000, Duration::ZERO).unwrap();
        let Some(last) = batch.last() else { break };
        pos = last.0;
        out.extend(batch);
    }
    out
}

/// Segment files in the queue directory, sorted by name.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.ends_with(".seg") && n.len() == 24
        })
        .collect();
    v.sort();
    v
}

#[test]
fn append_and_read_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    for i in 1..=10 {
        assert_eq!(q.append(payload(i)).wait().unwrap(), i);
    }
    let all = q.read_after(0, 100, SHORT).unwrap();
    assert_eq!(all, (1..=10).map(|i| (i, payload(i))).collect::<Vec<_>>());
    // max_records and `after` are honoured.
    let some = q.read_after(5, 2, SHORT).unwrap();
    assert_eq!(some, vec![(6, payload(6)), (7, payload(7))]);
    // Nothing after the last one: waits about max_wait, then empty.
    let t = Instant::now();
    assert!(
        q.read_after(10, 100, Duration::from_millis(50))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(45));
    let st = q.stats();
    assert_eq!((st.last_seq, st.pending_records, st.committed), (10, 10, 0));
    assert_eq!(st.segments, 1);
    // An empty payload is a valid record too.
    assert_eq!(q.append(Vec::new()).wait().unwrap(), 11);
    assert_eq!(q.read_after(10, 10, SHORT).unwrap(), vec![(11, Vec::new())]);
}

#[test]
fn append_future_resolves_in_a_runtime_and_wakes_a_blocked_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    let reader = {
        let q = q.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let got = q.read_after(0, 10, Duration::from_secs(10)).unwrap();
            (got, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seq = rt.block_on(q.append(b"async".to_vec())).unwrap();
    assert_eq!(seq, 1);
    let range = rt
        .block_on(q.append_all(vec![b"a".to_vec(), b"b".to_vec()]))
        .unwrap();
    assert_eq!(range, 2..=3);
    let (got, waited) = reader.join().unwrap();
    assert_eq!(got[0], (1, b"async".to_vec()));
    assert!(
        waited < Duration::from_secs(5),
        "reader was not woken: {waited:?}"
    );
}

#[test]
fn seqs_persist_and_continue_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    for i in 1..=5 {
        q.append(payload(i)).wait().unwrap();
    }
    q.close();
    drop(q);
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    assert_eq!(
        read_all(&q, 0),
        (1..=5).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(q.stats().last_seq, 5);
    assert_eq!(q.append(payload(6)).wait().unwrap(), 6);
    drop(q);
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    assert_eq!(read_all(&q, 0).len(), 6);
    assert_eq!(q.append(payload(7)).wait().unwrap(), 7);
}

#[test]
fn next_seq_floor_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    // Fresh queue.
    let q = Queue::open(cfg(tmp.path()), 0, 100, None).unwrap();
    assert_eq!(q.append(payload(1)).wait().unwrap(), 100);
    assert_eq!(q.append(payload(2)).wait().unwrap(), 101);
    drop(q);
    // Existing records below the floor stay; new ones start at the floor.
    let q = Queue::open(cfg(tmp.path()), 0, 500, None).unwrap();
    assert_eq!(q.append(payload(3)).wait().unwrap(), 500);
    let seqs: Vec<u64> = read_all(&q, 0).into_iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![100, 101, 500]);
    assert_eq!(q.stats().pending_records, 3);
    drop(q);
    // A floor below what is on disk does not go backwards.
    let q = Queue::open(cfg(tmp.path()), 0, 7, None).unwrap();
    assert_eq!(q.append(payload(4)).wait().unwrap(), 501);
    drop(q);
    // The committed position is a floor too.
    let q = Queue::open(cfg(tmp.path()), 900, 0, None).unwrap();
    assert_eq!(q.append(payload(5)).wait().unwrap(), 901);
}

#[test]
fn segments_roll_with_small_segment_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small_segments(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    let body = vec![7u8; 300];
    for i in 1..=100u64 {
        assert_eq!(q.append(body.clone()).wait().unwrap(), i);
    }
    let files = segment_files(&c.dir);
    // 316-byte frames, 12 per 4096-byte segment.
    assert_eq!(files.len(), 9, "{files:?}");
    assert_eq!(q.stats().segments, 9);
    for f in &files {
        assert_eq!(fs::metadata(f).unwrap().len(), 4096);
    }
    // Each file is named by the seq of its first record.
    let firsts: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..9).map(|k| format!("{:020}.seg", 1 + 12 * k)).collect();
    assert_eq!(firsts, expected);
    let all = read_all(&q, 0);
    assert_eq!(all.len(), 100);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, (s, p))| *s == i as u64 + 1 && *p == body)
    );
    // Reading from the middle of a later segment works too.
    assert_eq!(q.read_after(50, 1, SHORT).unwrap()[0].0, 51);
    drop(q);
    let q = Queue::open(c, 0, 0, None).unwrap();
    assert_eq!(read_all(&q, 0).len(), 100);
    assert_eq!(q.append(body).wait().unwrap(), 101);
}

#[test]
fn committed_records_are_skipped_and_their_segments_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small_segments(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    let body = vec![1u8; 300];
    for _ in 0..40 {
        q.append(body.clone()).wait().unwrap();
    }
    // Segments start at 1, 13, 25, 37.
    assert_eq!(segment_files(&c.dir).len(), 4);
    q.mark_committed(20).unwrap();
    // Only the segment 1..=12 is all committed.
    let names: Vec<String> = segment_files(&c.dir)
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names[0], format!("{:020}.seg", 13));
    assert_eq!(names.len(), 3);
    let st = q.stats();
    assert_eq!((st.committed, st.pending_records, st.segments), (20, 20, 3));
    // Readers skip committed records even when asked for older ones.
    assert_eq!(q.read_after(0, 1, SHORT).unwrap()[0].0, 21);
    // Going backwards is a no-op; beyond the last durable seq is refused.
    q.mark_committed(5).unwrap();
    assert_eq!(q.stats().committed, 20);
    assert!(q.mark_committed(41).is_err());
    drop(q);

    // Reopen with the committed position: skipped, and fully committed
    // segments deleted at open.
    let q = Queue::open(c.clone(), 30, 0, None).unwrap();
    assert_eq!(segment_files(&c.dir).len(), 2);
    let all = read_all(&q, 0);
    assert_eq!(all.first().unwrap().0, 31);
    assert_eq!(all.len(), 10);
    assert_eq!(q.stats().pending_records, 10);
    // Committing everything deletes all but the segment being written.
    q.mark_committed(40).unwrap();
    assert_eq!(segment_files(&c.dir).len(), 1);
    assert_eq!(q.stats().pending_records, 0);
    assert_eq!(q.append(body).wait().unwrap(), 41);
}

/// Offsets of the frames in a segment written with the given payload lengths.
fn frame_offsets(lens: &[usize]) -> Vec<u64> {
    let mut off = 0;
    lens.iter()
        .map(|l| {
            let o = off;
            off += 16 + *l as u64;
            o
        })
        .collect()
}

#[test]
fn torn_tail_truncated_mid_record_recovers_to_last_good_record() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    for i in 1..=10 {
        q.append(payload(i)).wait().unwrap();
    }
    drop(q);
    let seg = segment_files(&c.dir).pop().unwrap();
    let lens: Vec<usize> = (1..=10).map(|i| payload(i).len()).collect();
    let off10 = frame_offsets(&lens)[9];
    // Cut record 10 in the middle of its payload.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(off10 + 20)
        .unwrap();
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    assert_eq!(
        read_all(&q, 0),
        (1..=9).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(q.stats().last_seq, 9);
    // Writing continues where the good records end.
    assert_eq!(q.append(b"after".to_vec()).wait().unwrap(), 10);
    drop(q);
    let q = Queue::open(c, 0, 0, None).unwrap();
    let all = read_all(&q, 0);
    assert_eq!(all.len(), 10);
    assert_eq!(all[9], (10, b"after".to_vec()));
}

#[test]
fn torn_tail_garbage_after_last_record_is_cut_and_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    for i in 1..=10 {
        q.append(payload(i)).wait().unwrap();
    }
    drop(q);
    let seg = segment_files(&c.dir).pop().unwrap();
    let lens: Vec<usize> = (1..=10).map(|i| payload(i).len()).collect();
    let end = frame_offsets(&lens)[9] + 16 + lens[9] as u64;
    // A plausible-looking length followed by junk, as a half-written frame leaves.
    let mut junk = 200u32.to_le_bytes().to_vec();
    junk.extend((0..300u32).map(|i| (i * 7 + 3) as u8));
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .write_all_at(&junk, end)
        .unwrap();
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    assert_eq!(
        read_all(&q, 0),
        (1..=10).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    // The junk was zeroed: a short new record is not followed by stale bytes.
    let bytes = fs::read(&seg).unwrap();
    assert!(bytes[end as usize..].iter().all(|b| *b == 0));
    assert_eq!(q.append(b"x".to_vec()).wait().unwrap(), 11);
    drop(q);
    let q = Queue::open(c, 0, 0, None).unwrap();
    let all = read_all(&q, 0);
    assert_eq!(all.len(), 11);
    assert_eq!(all[10], (11, b"x".to_vec()));
}

#[test]
fn flipped_byte_in_a_non_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let c = small_segments(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    for _ in 0..30 {
        q.append(vec![9u8; 300]).wait().unwrap();
    }
    drop(q);
    let files = segment_files(&c.dir);
    assert!(files.len() >= 3);
    // Flip one payload byte of the second record of the first segment.
    let first = &files[0];
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(first)
        .unwrap();
    let at = 316 + 16 + 100;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], at).unwrap();
    drop(f);
    match Queue::open(c.clone(), 0, 0, None) {
        Err(OpenError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(&path, first);
            assert_eq!(offset, 316);
            assert!(reason.contains("CRC"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, the queue opened"),
    }
    // The message names file and offset.
    let msg = Queue::open(c, 0, 0, None).unwrap_err().to_string();
    assert!(
        msg.contains("00000000000000000001.seg") && msg.contains("offset 316"),
        "{msg}"
    );
}

#[test]
fn full_is_refused_fast_then_room_again_after_mark_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = QueueConfig {
        max_bytes: 2000,
        ..cfg(tmp.path())
    };
    let q = Queue::open(c, 0, 0, None).unwrap();
    let body = vec![0u8; 100]; // 116-byte frames: 17 fit in 2000
    for i in 1..=17 {
        assert_eq!(q.append(body.clone()).wait().unwrap(), i);
    }
    let fsyncs = q.stats().fsyncs;
    match q.append(body.clone()).wait() {
        Err(AppendError::Full { retry_after }) => assert_eq!(retry_after, Duration::from_secs(1)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(matches!(
        q.append_all(vec![body.clone()]).wait(),
        Err(AppendError::Full { .. })
    ));
    // Refused without I/O: no fsync happened, nothing was assigned a seq.
    assert_eq!(q.stats().fsyncs, fsyncs);
    assert_eq!(q.stats().last_seq, 17);
    q.mark_committed(10).unwrap();
    assert_eq!(q.append(body.clone()).wait().unwrap(), 18);
    assert_eq!(q.stats().pending_records, 8);
}

#[test]
fn too_large_payloads_and_batches_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    match q.append(vec![0; 4097]).wait() {
        Err(AppendError::TooLarge { limit }) => assert_eq!(limit, 4096),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(q.append(vec![0; 4096]).wait().unwrap(), 1);
    // A batch must fit in one 64 KiB segment.
    let big: Vec<Vec<u8>> = (0..20).map(|_| vec![0u8; 4000]).collect();
    assert!(matches!(
        q.append_all(big).wait(),
        Err(AppendError::TooLarge { limit: 65536 })
    ));
    assert_eq!(q.stats().last_seq, 1);
    // A tiny segment caps the record limit below max_record_bytes.
    let tmp2 = tempfile::tempdir().unwrap();
    let c = QueueConfig {
        segment_bytes: 4096,
        max_record_bytes: 1 << 20,
        ..cfg(tmp2.path())
    };
    let q = Queue::open(c, 0, 0, None).unwrap();
    assert!(matches!(
        q.append(vec![0; 4081]).wait(),
        Err(AppendError::TooLarge { limit: 4080 })
    ));
    assert_eq!(q.append(vec![0; 4080]).wait().unwrap(), 1);
}

#[test]
fn append_all_is_contiguous_and_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    // Other appenders run concurrently; the batch's seqs stay contiguous.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..4)
        .map(|t| {
            let q = q.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    q.append(format!("noise-{t}-{n}").into_bytes())
                        .wait()
                        .unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let mut ranges = Vec::new();
    for b in 0..5 {
        let batch: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("batch-{b}-{i}").into_bytes())
            .collect();
        let r = q.append_all(batch).wait().unwrap();
        assert_eq!(r.end() - r.start() + 1, 50);
        ranges.push(r);
    }
    stop.store(true, Ordering::Relaxed);
    for h in noise {
        h.join().unwrap();
    }
    let all: BTreeMap<u64, Vec<u8>> = read_all(&q, 0).into_iter().collect();
    for (b, r) in ranges.iter().enumerate() {
        for (i, seq) in r.clone().enumerate() {
            assert_eq!(all[&seq], format!("batch-{b}-{i}").into_bytes());
        }
    }
    // All or nothing: one oversized payload refuses the whole batch.
    let last = q.stats().last_seq;
    let bad = vec![b"ok".to_vec(), vec![0u8; 5000], b"ok".to_vec()];
    assert!(matches!(
        q.append_all(bad).wait(),
        Err(AppendError::TooLarge { .. })
    ));
    assert_eq!(q.stats().last_seq, last);
    assert!(q.read_after(last, 10, SHORT).unwrap().is_empty());
    // An empty batch is an empty range.
    assert!(q.append_all(Vec::new()).wait().unwrap().is_empty());
}

#[test]
fn sixty_four_concurrent_appenders_share_fsyncs() {
    const THREADS: u64 = 64;
    const PER_THREAD: u64 = 40;
    let tmp = tempfile::tempdir().unwrap();
    let observed = Arc::new(AtomicUsize::new(0));
    let biggest = Arc::new(AtomicUsize::new(0));
    let observer: GroupObserver = {
        let observed = Arc::clone(&observed);
        let biggest = Arc::clone(&biggest);
        Arc::new(move |g: GroupCommit| {
            observed.fetch_add(g.records, Ordering::Relaxed);
            biggest.fetch_max(g.records, Ordering::Relaxed);
        })
    };
    let q = Queue::open(cfg(tmp.path()), 0, 0, Some(observer)).unwrap();
    let start_fsyncs = q.stats().fsyncs;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let q = q.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..PER_THREAD)
                    .map(|i| {
                        let seq = q.append(format!("t{t}-{i}").into_bytes()).wait().unwrap();
                        (seq, format!("t{t}-{i}").into_bytes())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = THREADS * PER_THREAD;
    let seqs: HashSet<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(seqs.len() as u64, total, "seqs are not distinct");
    assert_eq!(
        seqs,
        (1..=total).collect::<HashSet<u64>>(),
        "seqs have gaps"
    );
    let all: BTreeMap<u64, Vec<u8>> = read_all(&q, 0).into_iter().collect();
    assert_eq!(all.len() as u64, total);
    for (seq, p) in &acked {
        assert_eq!(&all[seq], p);
    }
    let fsyncs = q.stats().fsyncs - start_fsyncs;
    assert_eq!(observed.load(Ordering::Relaxed) as u64, total);
    // Group commit: on average at least 4 records shared each fsync (64
    // waiting appenders typically give tens per group).
    assert!(fsyncs * 4 < total, "{fsyncs} fsyncs for {total} appends");
    assert!(biggest.load(Ordering::Relaxed) > 1);
    eprintln!(
        "{total} appends, {fsyncs} fsyncs, biggest group {}",
        biggest.load(Ordering::Relaxed)
    );
}

#[test]
fn closed_after_close() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    let reader = {
        let q = q.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = q.read_after(1, 10, Duration::from_secs(30)).unwrap();
            (r, t.elapsed())
        })
    };
    assert_eq!(q.append(b"one".to_vec()).wait().unwrap(), 1);
    std::thread::sleep(Duration::from_millis(50));
    q.close();
    assert!(matches!(
        q.append(b"two".to_vec()).wait(),
        Err(AppendError::Closed)
    ));
    assert!(matches!(
        q.append_all(vec![b"three".to_vec()]).wait(),
        Err(AppendError::Closed)
    ));
    q.close(); // idempotent
    // A blocked reader was woken by close.
    let (r, waited) = reader.join().unwrap();
    assert!(r.is_empty());
    assert!(waited < Duration::from_secs(10));
    // Durable records can still be drained after close.
    assert_eq!(
        q.read_after(0, 10, SHORT).unwrap(),
        vec![(1, b"one".to_vec())]
    );
    // The directory lock is released: a new queue can open while `q` lives.
    let q2 = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    assert_eq!(q2.append(b"two".to_vec()).wait().unwrap(), 2);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    match Queue::open(cfg(tmp.path()), 0, 0, None) {
        Err(OpenError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock)
        }
        other => panic!("expected a lock error, got {:?}", other.map(|_| ())),
    }
    drop(q);
    Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
}

#[test]
fn invalid_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = QueueConfig {
        segment_bytes: 100,
        ..cfg(tmp.path())
    };
    match Queue::open(c, 0, 0, None) {
        Err(OpenError::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput)
        }
        other => panic!("expected InvalidInput, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn concurrent_appends_reads_and_commits_across_many_rolls() {
    const THREADS: u64 = 16;
    const PER_THREAD: u64 = 100;
    let total = THREADS * PER_THREAD;
    let tmp = tempfile::tempdir().unwrap();
    let c = small_segments(tmp.path());
    let q = Queue::open(c.clone(), 0, 0, None).unwrap();
    // The batcher: reads in order, checks there is no gap, commits as it goes
    // (which deletes segments while the writer rolls new ones).
    let batcher = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut after = 0;
            let mut seen = BTreeMap::new();
            let t = Instant::now();
            while after < total && t.elapsed() < Duration::from_secs(30) {
                for (seq, p) in q.read_after(after, 64, Duration::from_millis(200)).unwrap() {
                    assert_eq!(seq, after + 1, "gap or disorder");
                    after = seq;
                    seen.insert(seq, p);
                }
                q.mark_committed(after).unwrap();
            }
            seen
        })
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let q = q.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let p = format!("t{t}-{i}-{}", "y".repeat(200)).into_bytes();
                        (q.append(p.clone()).wait().unwrap(), p)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: BTreeMap<u64, Vec<u8>> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let seen = batcher.join().unwrap();
    assert_eq!(acked.len() as u64, total);
    assert_eq!(seen, acked);
    let st = q.stats();
    assert_eq!((st.committed, st.pending_records), (total, 0));
    // About 18 frames per segment, so ~90 segments were written; all but the
    // current one are gone.
    assert_eq!(segment_files(&c.dir).len(), 1);
    assert_eq!(st.segments, 1);
}

/// A reservation: the reserved seqs lie above the asked minimum, every seq
/// assigned before and every earlier reservation, and are never assigned.
#[test]
fn reserved_seqs_are_never_assigned() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    assert_eq!(q.append(payload(1)).wait().unwrap(), 1);
    assert_eq!(q.append(payload(2)).wait().unwrap(), 2);
    // Above the minimum asked: 10 + 1 ..= 10 + 5.
    assert_eq!(q.reserve_above(10, 5), (10, 2));
    assert_eq!(q.append(payload(3)).wait().unwrap(), 16);
    // Above the seqs assigned and reserved, whatever the minimum asked.
    assert_eq!(q.reserve_above(3, 4), (16, 16));
    assert_eq!(q.append(payload(4)).wait().unwrap(), 21);
    // With nothing assigned since, above the last reservation.
    assert_eq!(q.reserve_above(0, 2), (21, 21));
    assert_eq!(q.reserve_above(0, 2), (23, 21));
    assert_eq!(q.append(payload(5)).wait().unwrap(), 26);
    // The count decided from the highest seq in use: 26 (the last
    // assigned), above 100 asked: 101 ..= 126.
    assert_eq!(q.reserve_above_with(100, |in_use| in_use), (100, 26, 26));
    // Reserved seqs count as in use: 127 ..= 126 + 126.
    assert_eq!(q.reserve_above_with(0, |in_use| in_use), (126, 126, 26));
    assert_eq!(q.append(payload(6)).wait().unwrap(), 253);
}

/// Seqs below the floor the queue was opened with (a store's ids from an
/// earlier run, a restore or an offline import) count as in use.
#[test]
fn a_reservation_counts_the_seqs_below_the_opening_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 1001, None).unwrap();
    assert_eq!(q.reserve_above_with(2000, |in_use| in_use), (2000, 1000, 0));
    assert_eq!(q.append(payload(1)).wait().unwrap(), 3001);
    assert_eq!(
        q.reserve_above_with(10, |in_use| in_use),
        (3001, 3001, 3001)
    );
}

/// A floor raised at run time: later appends get seqs at or above it, the
/// returned position covers every record numbered before, and the raised
/// seqs are read back in order after the earlier ones.
#[test]
fn floor_raised_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(cfg(tmp.path()), 0, 0, None).unwrap();
    assert_eq!(q.append(payload(1)).wait().unwrap(), 1);
    assert_eq!(q.append(payload(2)).wait().unwrap(), 2);
    assert_eq!(q.raise_floor(1000), 2);
    assert_eq!(q.append(payload(3)).wait().unwrap(), 1000);
    // A lower floor never moves seqs back.
    assert_eq!(q.raise_floor(10), 1000);
    assert_eq!(q.append(payload(4)).wait().unwrap(), 1001);
    let seqs: Vec<u64> = read_all(&q, 0).into_iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1, 2, 1000, 1001]);
    assert_eq!(q.stats().pending_records, 4);
    drop(q);
    // Reopened, the gap stays and numbering continues above it.
    let q = Queue::open(cfg(tmp.path()), 2, 0, None).unwrap();
    assert_eq!(q.append(payload(5)).wait().unwrap(), 1002);
    let seqs: Vec<u64> = read_all(&q, 2).into_iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1000, 1001, 1002]);
}
