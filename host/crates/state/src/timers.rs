//! Timers a transform sets per key, kept in the partition's state so they
//! are transactional (a rolled-back call unsets what it set), changelogged
//! and restored with everything else.
//!
//! A key has at most one timer. Two entries describe it: `t k KEY` holds its
//! clock and time (to replace or cancel it), and `t q CLOCK TIME KEY` (empty
//! value) orders timers by clock, then time, then key, which is the order
//! they fire in. Times are stored with the sign bit flipped so that negative
//! times sort before positive ones.
//!
//! Scans of the queue start at a floor below which no timer is set: the
//! entries of timers fired since the last flush are pending deletions a
//! scan from the queue's start would walk again and again (the window close
//! index keeps its earliest close for the same reason).

use anyhow::Result;

use crate::{PartitionState, ns};

/// What a timer's time is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The partition's stream time: the largest record timestamp seen.
    EventTime,
    /// The host's wall clock (ms since the Unix epoch).
    WallClock,
}

impl Clock {
    fn index(self) -> usize {
        self as usize
    }

    fn byte(self) -> u8 {
        match self {
            Clock::EventTime => b'e',
            Clock::WallClock => b'w',
        }
    }

    fn from_byte(b: u8) -> Option<Clock> {
        match b {
            b'e' => Some(Clock::EventTime),
            b'w' => Some(Clock::WallClock),
            _ => None,
        }
    }
}

/// A timer due to fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    pub key: Vec<u8>,
    pub at: i64,
    pub clock: Clock,
}

fn by_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&[ns::TIMER, b'k']);
    k.extend_from_slice(key);
    k
}

fn queue(clock: Clock) -> [u8; 3] {
    [ns::TIMER, b'q', clock.byte()]
}

fn sortable(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_sortable(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

fn queued(clock: Clock, at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(11 + key.len());
    k.extend_from_slice(&queue(clock));
    k.extend_from_slice(&sortable(at));
    k.extend_from_slice(key);
    k
}

impl PartitionState {
    /// The timer set for `key`, if any.
    pub fn timer(&self, key: &[u8]) -> Result<Option<(i64, Clock)>> {
        Ok(self
            .get_raw(&by_key(key))?
            .and_then(|v| match v.as_slice() {
                [c, at @ ..] if at.len() == 8 => {
                    Clock::from_byte(*c).map(|clock| (from_sortable(at), clock))
                }
                _ => None,
            }))
    }

    /// Sets the timer of `key` to fire at `at` on `clock`, replacing the one
    /// it had.
    pub fn set_timer(&mut self, key: &[u8], at: i64, clock: Clock) -> Result<()> {
        self.cancel_timer(key)?;
        let floor = &mut self.timer_floor[clock.index()];
        *floor = (*floor).min(at);
        self.no_timers[clock.index()] = false;
        let mut v = vec![clock.byte()];
        v.extend_from_slice(&sortable(at));
        self.put_raw(by_key(key), Some(v));
        self.put_raw(queued(clock, at, key), Some(Vec::new()));
        Ok(())
    }

    /// Removes the timer of `key`, if it has one.
    pub fn cancel_timer(&mut self, key: &[u8]) -> Result<()> {
        if let Some((at, clock)) = self.timer(key)? {
            self.put_raw(by_key(key), None);
            self.put_raw(queued(clock, at, key), None);
        }
        Ok(())
    }

    /// Timers of `clock` due at `now` (time at most `now`), in time then key
    /// order, removed from the state: at most `max` of them, stopping after
    /// the one whose key brings their keys to `max_bytes`. The caller fires
    /// them in the same transaction, so a rollback sets them again.
    pub fn take_due_timers(
        &mut self,
        clock: Clock,
        now: i64,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<Timer>> {
        if !self.may_have_due_timers(clock, now) {
            return Ok(Vec::new());
        }
        let floor = self.timer_floor[clock.index()];
        let start = queued(clock, floor, &[]);
        // Every key starting with a time up to `now`, whatever its key bytes.
        let end = crate::prefix_end(&queued(clock, now, &[]));
        let due = self.scan_raw(&start, end.as_deref(), max, max_bytes)?;
        let complete =
            due.len() < max && due.iter().map(|(k, _)| k.len() as u64).sum::<u64>() < max_bytes;
        let mut timers = Vec::with_capacity(due.len());
        for (k, _) in due {
            let at = from_sortable(&k[3..11]);
            let key = k[11..].to_vec();
            self.put_raw(k, None);
            self.put_raw(by_key(&key), None);
            timers.push(Timer { key, at, clock });
        }
        self.timer_floor[clock.index()] = match (complete, timers.last()) {
            (true, _) => now.saturating_add(1),
            (false, Some(last)) => last.at,
            (false, None) => floor,
        };
        Ok(timers)
    }

    /// False when no timer of `clock` can be due at `now`, known without
    /// reading the store: what makes timers free for transforms without any.
    pub fn may_have_due_timers(&self, clock: Clock, now: i64) -> bool {
        !self.no_timers[clock.index()] && self.timer_floor[clock.index()] <= now
    }

    /// The time of the earliest timer of `clock`, if any.
    pub fn next_timer(&mut self, clock: Clock) -> Result<Option<i64>> {
        if self.no_timers[clock.index()] {
            return Ok(None);
        }
        let floor = self.timer_floor[clock.index()];
        let end = crate::prefix_end(&queue(clock));
        let next = self
            .scan_raw(&queued(clock, floor, &[]), end.as_deref(), 1, u64::MAX)?
            .first()
            .map(|(k, _)| from_sortable(&k[3..11]));
        match next {
            Some(t) => self.timer_floor[clock.index()] = t,
            None => self.no_timers[clock.index()] = true,
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &mut PartitionState, key: &str, at: i64, clock: Clock) {
        s.set_timer(key.as_bytes(), at, clock).unwrap();
    }

    fn keys(timers: &[Timer]) -> Vec<(String, i64)> {
        timers
            .iter()
            .map(|t| (String::from_utf8(t.key.clone()).unwrap(), t.at))
            .collect()
    }

    #[test]
    fn due_timers_come_in_time_then_key_order_and_only_once() {
        let mut s = PartitionState::in_memory();
        set(&mut s, "b", 20, Clock::EventTime);
        set(&mut s, "a", 20, Clock::EventTime);
        set(&mut s, "c", -5, Clock::EventTime);
        set(&mut s, "d", 21, Clock::EventTime);
        set(&mut s, "w", 0, Clock::WallClock);
        assert_eq!(s.next_timer(Clock::EventTime).unwrap(), Some(-5));
        assert_eq!(
            keys(
                &s.take_due_timers(Clock::EventTime, 20, 100, u64::MAX)
                    .unwrap()
            ),
            [("c".into(), -5), ("a".into(), 20), ("b".into(), 20)]
        );
        assert!(
            s.take_due_timers(Clock::EventTime, 20, 100, u64::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.timer(b"a").unwrap(), None);
        assert_eq!(s.timer(b"d").unwrap(), Some((21, Clock::EventTime)));
        assert_eq!(
            keys(
                &s.take_due_timers(Clock::WallClock, i64::MAX, 100, u64::MAX)
                    .unwrap()
            ),
            [("w".into(), 0)]
        );
    }

    #[test]
    fn setting_again_replaces_and_cancel_removes() {
        let mut s = PartitionState::in_memory();
        set(&mut s, "k", 100, Clock::EventTime);
        set(&mut s, "k", 50, Clock::WallClock);
        assert_eq!(s.timer(b"k").unwrap(), Some((50, Clock::WallClock)));
        assert_eq!(s.next_timer(Clock::EventTime).unwrap(), None);
        s.cancel_timer(b"k").unwrap();
        assert_eq!(s.next_timer(Clock::WallClock).unwrap(), None);
        assert!(
            s.take_due_timers(Clock::WallClock, i64::MAX, 10, u64::MAX)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_rolled_back_call_restores_fired_timers() {
        let mut s = PartitionState::in_memory();
        set(&mut s, "k", 10, Clock::EventTime);
        s.begin();
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 10, 10, u64::MAX)
                .unwrap()
                .len(),
            1
        );
        s.rollback();
        assert_eq!(s.timer(b"k").unwrap(), Some((10, Clock::EventTime)));
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 10, 10, u64::MAX)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn at_most_max_fire_at_once_and_keys_may_hold_any_bytes() {
        let mut s = PartitionState::in_memory();
        for i in 0..5u8 {
            s.set_timer(&[0xFF, i, 0xFF], i64::from(i), Clock::EventTime)
                .unwrap();
        }
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 100, 3, u64::MAX)
                .unwrap()
                .len(),
            3
        );
        let rest = s
            .take_due_timers(Clock::EventTime, i64::MAX, 3, u64::MAX)
            .unwrap();
        assert_eq!(
            rest.iter().map(|t| t.key.clone()).collect::<Vec<_>>(),
            [vec![0xFF, 3, 0xFF], vec![0xFF, 4, 0xFF]]
        );
    }

    #[test]
    fn fired_timers_are_not_scanned_again_and_a_rollback_finds_them() {
        let mut s = PartitionState::in_memory();
        for i in 0..5 {
            set(&mut s, &format!("k{i}"), i, Clock::EventTime);
        }
        s.begin();
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 2, 100, u64::MAX)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(s.next_timer(Clock::EventTime).unwrap(), Some(3));
        s.rollback();
        assert_eq!(
            s.next_timer(Clock::EventTime).unwrap(),
            Some(0),
            "the rolled-back timers are due again"
        );
        set(&mut s, "late", -10, Clock::EventTime);
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 2, 100, u64::MAX)
                .unwrap()
                .len(),
            4,
            "a timer set below the floor lowers it"
        );
        assert_eq!(
            s.take_due_timers(Clock::EventTime, 10, 100, 3)
                .unwrap()
                .len(),
            1,
            "the byte bound stops the scan"
        );
    }

    #[test]
    fn timers_count_in_the_state_size() {
        let mut s = PartitionState::in_memory();
        let before = s.state_bytes();
        set(&mut s, "key", 1, Clock::EventTime);
        assert!(s.state_bytes() > before);
        s.cancel_timer(b"key").unwrap();
        assert_eq!(s.state_bytes(), before);
    }
}
