//! Unit tests of [`PartitionState`](crate::PartitionState).

use super::*;

#[test]
fn rollback_restores_exactly_the_state_before_the_transaction() {
    let mut s = PartitionState::in_memory();
    s.set(b"a", b"1", None);
    s.flush().unwrap();
    s.set(b"b", b"2", None);
    s.begin();
    s.set(b"a", b"changed", None);
    s.delete(b"b");
    s.set(b"c", b"3", None);
    assert!(s.touched());
    s.rollback();
    assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.get(b"c").unwrap(), None);
}

#[test]
fn scans_merge_pending_writes_over_the_backend() {
    let mut s = PartitionState::in_memory();
    for k in [b"k1", b"k2", b"k3", b"k4"] {
        s.set(k, b"old", None);
    }
    s.flush().unwrap();
    s.delete(b"k2");
    s.set(b"k3", b"new", None);
    s.set(b"k5", b"new", None);
    let got = s.prefix(b"k", None, 10, u64::MAX).unwrap();
    let keys: Vec<_> = got
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("k1".into(), "old".into()),
            ("k3".into(), "new".into()),
            ("k4".into(), "old".into()),
            ("k5".into(), "new".into())
        ]
    );
    let page = s.prefix(b"k", Some(b"k3"), 1, u64::MAX).unwrap();
    assert_eq!(page[0].0, b"k4");
    assert_eq!(s.range(b"k2", Some(b"k4"), 10, u64::MAX).unwrap().len(), 1);
    // Reversed bounds and a page past its prefix are empty (they
    // panicked with pending writes).
    assert!(
        s.range(b"k4", Some(b"k2"), 10, u64::MAX)
            .unwrap()
            .is_empty()
    );
    assert!(s.prefix(b"k", Some(b"l"), 10, u64::MAX).unwrap().is_empty());
}

#[test]
fn entries_expire_by_stream_time() {
    let mut s = PartitionState::in_memory();
    s.observe_timestamp(1_000);
    s.set(b"session", b"x", Some(500));
    s.observe_timestamp(1_499);
    assert!(s.get(b"session").unwrap().is_some());
    s.observe_timestamp(1_500);
    assert!(s.get(b"session").unwrap().is_none());
    assert!(s.prefix(b"", None, 10, u64::MAX).unwrap().is_empty());
}

type View = (
    Vec<(Vec<u8>, Vec<u8>)>,
    i64,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
    u64,
);

/// Everything a reader can see, pending writes included.
fn view(s: &PartitionState) -> View {
    let durable = s
        .durable_changes()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (
        s.prefix(b"", None, 100, u64::MAX).unwrap(),
        s.stream_time(),
        durable,
        s.state_bytes(),
    )
}

/// Several calls' worth of changes: committed and rolled-back
/// transactions, writes outside any, stream time.
fn batch_of_calls(s: &mut PartitionState) {
    s.begin();
    s.set(b"a", b"changed", None);
    s.set(b"c", b"3", None);
    s.commit_txn();
    s.observe_timestamp(2_000);
    s.begin();
    s.delete(b"b");
    s.set(b"x", b"rolled back", None);
    s.rollback();
    s.begin();
    s.delete(b"b");
    s.set(b"d", b"4", Some(10));
    s.commit_txn();
    s.put_raw(vec![ns::WINDOW, 1], Some(vec![0; 10]));
}

#[test]
fn rollback_to_savepoint_undoes_a_batch_of_calls() {
    let mut s = PartitionState::in_memory();
    s.set(b"a", b"1", None);
    s.observe_timestamp(1_000);
    s.flush().unwrap();
    s.set(b"b", b"2", None);
    let before = view(&s);
    s.savepoint();
    batch_of_calls(&mut s);
    assert_ne!(view(&s), before);
    s.rollback_to_savepoint();
    assert_eq!(view(&s), before);
    assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(b"c").unwrap(), None);
    // Without a savepoint, transactions are on their own again.
    s.begin();
    s.set(b"e", b"5", None);
    s.commit_txn();
    s.begin();
    s.delete(b"e");
    s.rollback();
    assert_eq!(s.get(b"e").unwrap().as_deref(), Some(&b"5"[..]));
    s.flush().unwrap();
    assert_eq!(s.state_bytes(), count_bytes(&*s.backend).unwrap());
}

#[test]
fn rollback_to_savepoint_without_flush_or_stream_time_before() {
    let mut s = PartitionState::in_memory();
    let before = view(&s);
    s.savepoint();
    batch_of_calls(&mut s);
    s.rollback_to_savepoint();
    assert_eq!(view(&s), before);
    assert!(s.pending.is_empty(), "stream time entry gone too");
    assert_eq!(s.stream_time(), i64::MIN);
}

#[test]
fn release_savepoint_keeps_the_changes() {
    let mut s = PartitionState::in_memory();
    s.set(b"a", b"1", None);
    s.set(b"b", b"2", None);
    s.flush().unwrap();
    s.savepoint();
    batch_of_calls(&mut s);
    let after = view(&s);
    s.release_savepoint();
    assert_eq!(view(&s), after);
    assert_eq!(s.stream_time(), 2_000);
    assert_eq!(s.get(b"b").unwrap(), None);
    assert_eq!(s.get(b"d").unwrap().as_deref(), Some(&b"4"[..]));
    s.flush().unwrap();
    assert_eq!(s.state_bytes(), count_bytes(&*s.backend).unwrap());
}

/// Reopens `s` on its backend, as a restarted host does.
fn reopen(s: &mut PartitionState) -> PartitionState {
    PartitionState::open(std::mem::replace(
        &mut s.backend,
        Box::new(memory::MemoryBackend::default()),
    ))
    .unwrap()
}

#[test]
fn state_bytes_counts_user_and_window_entries() {
    let mut s = PartitionState::in_memory();
    assert_eq!(s.state_bytes(), 0);
    s.observe_timestamp(5); // host bookkeeping is not counted
    s.set(b"k", b"12345", None); // "uk" + tag byte and value: 2 + 6
    assert_eq!(s.state_bytes(), 8);
    s.flush().unwrap();
    assert_eq!(s.state_bytes(), 8);
    s.set(b"k", b"54321", None); // same size
    assert_eq!(s.state_bytes(), 8);
    s.begin();
    s.set(b"k", b"1", None);
    s.put_raw(vec![ns::WINDOW, 9], Some(vec![0; 8]));
    assert_eq!(s.state_bytes(), 4 + 10);
    s.rollback();
    assert_eq!(s.state_bytes(), 8);
    s.delete(b"k");
    s.delete(b"never-set");
    assert_eq!(s.state_bytes(), 0);
    s.set(b"k", b"12345", None);
    s.put_raw(vec![ns::WINDOW, 9], Some(vec![0; 8]));
    s.flush().unwrap();
    assert_eq!(s.state_bytes(), 18);
    // Persisted with the flush: a reopened store knows without counting.
    let mut s = reopen(&mut s);
    assert_eq!(s.stored_bytes.get(), Some(18));
    // A blind overwrite (nothing cached) looks the old size up.
    s.put_raw(vec![ns::WINDOW, 9], None);
    assert_eq!(s.state_bytes(), 8);
    s.flush().unwrap();
    assert_eq!((s.state_bytes(), count_bytes(&*s.backend).unwrap()), (8, 8));
}

#[test]
fn state_bytes_is_recounted_after_a_restore_and_for_old_stores() {
    let mut s = PartitionState::in_memory();
    s.set(b"k", b"12345", None);
    s.flush().unwrap();
    s.write_restored(&[
        (b"uk".to_vec(), None),
        (b"ua".to_vec(), Some(vec![0; 3])),
        (vec![ns::WINDOW], Some(vec![0; 4])),
    ])
    .unwrap();
    assert_eq!(s.state_bytes(), 5 + 5);
    s.flush_with_checkpoint(&Checkpoint::default()).unwrap();
    assert_eq!(reopen(&mut s).state_bytes(), 10);
    // A store written before the counter existed.
    let mut old = memory::MemoryBackend::default();
    old.write(
        &mut [
            (&b"uold"[..], Some(&b"value"[..])),
            (&b"mcheckpoint"[..], Some(&b"{}"[..])),
        ]
        .into_iter(),
    )
    .unwrap();
    let mut s = PartitionState::open(Box::new(old)).unwrap();
    assert_eq!(s.stored_bytes.get(), None);
    s.set(b"new", b"", None);
    assert_eq!(s.state_bytes(), 9 + 5);
    s.flush().unwrap();
    assert_eq!(reopen(&mut s).stored_bytes.get(), Some(14));
}

#[test]
fn prefix_end_skips_trailing_ff() {
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(prefix_end(&[0xFF]), None);
}

/// The undo-log bomb: a call that sets one key again and again keeps
/// one old value for it, not one per write, and still rolls back
/// exactly; a second transaction (or one inside a savepoint) keeps its
/// own.
#[test]
fn the_undo_log_keeps_one_entry_per_key_and_transaction() {
    let mut s = PartitionState::in_memory();
    s.set(b"k", b"committed", None);
    s.flush().unwrap();
    s.begin();
    for i in 0..10_000u32 {
        s.set(b"k", &i.to_be_bytes().repeat(256), None);
    }
    assert_eq!(s.undo.len(), 1);
    assert!(
        s.pending_held() < 2_000,
        "only the last value is held: {}",
        s.pending_held()
    );
    s.rollback();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"committed"[..]));

    s.savepoint();
    s.begin();
    s.set(b"k", b"first", None);
    s.set(b"k", b"first again", None);
    s.commit_txn();
    s.begin();
    s.set(b"k", b"second", None);
    s.rollback();
    assert_eq!(
        s.get(b"k").unwrap().as_deref(),
        Some(&b"first again"[..]),
        "the second transaction rolls back to the first's value"
    );
    s.rollback_to_savepoint();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"committed"[..]));
    assert_eq!(s.pending_held(), 0);
}

#[test]
fn entries_larger_than_the_changelog_accepts_are_reported() {
    let mut s = PartitionState::in_memory();
    s.set_max_entry_bytes(1_000);
    s.set(b"small", &[0; 500], None);
    assert_eq!(s.take_oversize(), None);
    s.set(b"big", &[0; 2_000], None);
    let (bytes, limit) = s.take_oversize().expect("reported");
    assert!(bytes > 2_000 && limit == 1_000, "{bytes} {limit}");
    assert_eq!(s.take_oversize(), None, "reported once");
    s.discard_pending().unwrap();
    s.set(b"big", &[0; 2_000], None);
    assert!(s.take_oversize().is_some(), "the limit survives a rewind");
}

/// A restore replays the stream time of the commits it reads, as it
/// replays their changes: TTLs and timers go on from where they were.
#[test]
fn a_restore_takes_the_stream_time_of_the_last_commit_replayed() {
    let mut s = PartitionState::in_memory();
    let at = |t: i64| (STREAM_TIME_KEY.to_vec(), Some(t.to_be_bytes().to_vec()));
    s.write_restored(&[at(1_000), (b"ua".to_vec(), Some(b"1".to_vec())), at(5_000)])
        .unwrap();
    assert_eq!(s.stream_time(), 5_000);
    // A changelog without it (written before) leaves it alone.
    s.write_restored(&[(b"ub".to_vec(), Some(b"2".to_vec()))])
        .unwrap();
    assert_eq!(s.stream_time(), 5_000);
    s.discard_pending().unwrap();
    assert_eq!(s.stream_time(), 5_000, "kept in the store");
}
