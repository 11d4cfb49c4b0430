//! The commit ledger of one partition: which input positions may be
//! committed, given how the deliveries of what their records produced
//! (outputs, dead letters, late copies) have settled. Pure, no Kafka, so
//! that the at-least-once rule is tested on its own: no position is ever
//! committable while a delivery of an earlier record is unsettled or failed.
//!
//! A delivery mode is a [`CommitLedger`]: [`AtLeastOnce`] commits what is
//! delivered; exactly-once would commit positions inside the transaction
//! of the outputs they produced, as a second implementation.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use weir_abi::InputBatch;
use weir_kafka::producer::{Acks, Settled, Undeliverable};

/// Next offset per input topic.
pub type Positions = BTreeMap<String, i64>;

/// How a group's deliveries stand; [`Acks`] in the pipeline.
pub trait Deliveries {
    /// Every delivery acknowledged or failed.
    fn settled(&self) -> bool;
    /// How they went; meaningful once settled.
    fn outcome(&self) -> Settled;
}

impl Deliveries for Arc<Acks> {
    fn settled(&self) -> bool {
        Acks::settled(self)
    }

    fn outcome(&self) -> Settled {
        Acks::outcome(self)
    }
}

/// What one processed batch (or window close) sent, and the positions
/// committable once it and every earlier group are delivered.
pub struct Group<D> {
    pub deliveries: D,
    pub positions: Positions,
    /// The batch the deliveries came from, for the failure policy of
    /// records whose outputs can never be delivered.
    pub batch: Option<Arc<InputBatch>>,
}

/// Why a partition's commits cannot advance.
pub enum Blocked<D> {
    /// A delivery failed in a way that trying again may fix.
    Transient(String),
    /// Records of `group` can never be delivered; the group is out of the
    /// ledger until the failure policy has dealt with them and it goes back
    /// in front ([`CommitLedger::push_front`]).
    Permanent {
        group: Group<D>,
        failures: Vec<Undeliverable>,
    },
}

/// When a partition's input positions may be committed.
pub trait CommitLedger<D> {
    /// After the last processed record, per topic.
    fn processed(&self) -> &Positions;
    /// As of the last commit.
    fn committed(&self) -> &Positions;
    /// Records of `topic` before `next` are processed; what they send is
    /// the next [`push`](Self::push).
    fn advance(&mut self, topic: &str, next: i64);
    /// The deliveries of everything processed since the last push.
    fn push(&mut self, deliveries: D, batch: Option<Arc<InputBatch>>);
    /// A group taken out by [`Blocked::Permanent`], back in front with the
    /// deliveries its failure policy made.
    fn push_front(&mut self, group: Group<D>);
    /// Deliveries still unsettled, or a blocked group.
    fn is_open(&self) -> bool;
    /// Takes in what has settled; says why commits cannot advance, if so.
    fn settle(&mut self) -> Option<Blocked<D>>;
    /// The positions a commit may take now (`with_state`: the partition's
    /// state changes are committed with them).
    fn to_commit(&self, with_state: bool) -> Option<&Positions>;
    /// A commit of `positions` succeeded.
    fn committed_at(&mut self, positions: Positions);
    /// Everything processed is delivered and committed.
    fn is_done(&self) -> bool;
    /// Forgets everything since the last commit, whose positions are where
    /// consumption starts again.
    fn rewind(&mut self) -> &Positions;
}

/// At-least-once: positions commit once everything their records and
/// every earlier record sent is delivered.
pub struct AtLeastOnce<D> {
    /// After the last processed record, per topic.
    processed: Positions,
    pending: VecDeque<Group<D>>,
    /// A group is out with its failure policy ([`Blocked::Permanent`]):
    /// nothing past it commits until it is back.
    out: bool,
    /// After the last record whose deliveries (and every earlier one's)
    /// are done.
    committable: Positions,
    committed: Positions,
}

impl<D> AtLeastOnce<D> {
    pub fn new(committed: Positions) -> Self {
        AtLeastOnce {
            processed: committed.clone(),
            pending: VecDeque::new(),
            out: false,
            committable: committed.clone(),
            committed,
        }
    }
}

impl<D: Deliveries> CommitLedger<D> for AtLeastOnce<D> {
    fn processed(&self) -> &Positions {
        &self.processed
    }

    fn committed(&self) -> &Positions {
        &self.committed
    }

    /// Records of `topic` before `next` are processed; what they send is
    /// the next [`push`](Self::push).
    fn advance(&mut self, topic: &str, next: i64) {
        self.processed.insert(topic.to_owned(), next);
    }

    /// The deliveries of everything processed since the last push.
    fn push(&mut self, deliveries: D, batch: Option<Arc<InputBatch>>) {
        self.pending.push_back(Group {
            deliveries,
            positions: self.processed.clone(),
            batch,
        });
    }

    /// A group taken out by [`Blocked::Permanent`], back in front with the
    /// deliveries its failure policy made.
    fn push_front(&mut self, group: Group<D>) {
        self.out = false;
        self.pending.push_front(group);
    }

    /// Deliveries still unsettled, or a blocked group.
    fn is_open(&self) -> bool {
        self.out || !self.pending.is_empty()
    }

    /// Moves the committable positions past every delivered group, in
    /// order; stops at the first group that failed.
    fn settle(&mut self) -> Option<Blocked<D>> {
        if self.out {
            return None;
        }
        while let Some(g) = self.pending.front() {
            if !g.deliveries.settled() {
                return None;
            }
            match g.deliveries.outcome() {
                Settled::Delivered => {
                    self.committable = self.pending.pop_front().expect("front exists").positions
                }
                Settled::Transient(error) => return Some(Blocked::Transient(error)),
                Settled::Permanent(failures) => {
                    self.out = true;
                    return Some(Blocked::Permanent {
                        group: self.pending.pop_front().expect("front exists"),
                        failures,
                    });
                }
            }
        }
        None
    }

    /// The positions a commit may take now. `with_state`: the partition's
    /// state holds the changes of every record processed, and is committed
    /// with the offsets, so only everything processed, once all of it is
    /// delivered. Else what is delivered so far, if that moved.
    fn to_commit(&self, with_state: bool) -> Option<&Positions> {
        if with_state {
            return (!self.is_open()).then_some(&self.processed);
        }
        (self.committable != self.committed).then_some(&self.committable)
    }

    fn committed_at(&mut self, positions: Positions) {
        self.committed = positions;
    }

    /// Everything processed is delivered and committed.
    fn is_done(&self) -> bool {
        !self.is_open() && self.processed == self.committed
    }

    /// Forgets everything since the last commit, whose positions are where
    /// consumption starts again.
    fn rewind(&mut self) -> &Positions {
        self.pending.clear();
        self.out = false;
        self.processed = self.committed.clone();
        self.committable = self.committed.clone();
        &self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A group's deliveries as a test drives them.
    #[derive(Clone, Default)]
    struct Fake(Rc<Cell<Option<Outcome>>>);

    #[derive(Clone, Copy, Debug)]
    enum Outcome {
        Delivered,
        Transient,
        Permanent,
    }

    impl Deliveries for Fake {
        fn settled(&self) -> bool {
            self.0.get().is_some()
        }

        fn outcome(&self) -> Settled {
            match self.0.get().expect("settled") {
                Outcome::Delivered => Settled::Delivered,
                Outcome::Transient => Settled::Transient("broker away".into()),
                Outcome::Permanent => Settled::Permanent(Vec::new()),
            }
        }
    }

    fn at(o: i64) -> Positions {
        Positions::from([("in".to_owned(), o)])
    }

    /// A ledger with two groups pushed: records 0..10 and 10..20.
    fn two_groups() -> (AtLeastOnce<Fake>, Fake, Fake) {
        let mut l = AtLeastOnce::new(at(0));
        let (a, b) = (Fake::default(), Fake::default());
        l.advance("in", 10);
        l.push(a.clone(), None);
        l.advance("in", 20);
        l.push(b.clone(), None);
        (l, a, b)
    }

    #[test]
    fn commits_follow_deliveries_in_order() {
        let (mut l, a, b) = two_groups();
        b.0.set(Some(Outcome::Delivered));
        assert!(l.settle().is_none());
        assert_eq!(
            l.to_commit(false),
            None,
            "a later group delivered first commits nothing"
        );
        a.0.set(Some(Outcome::Delivered));
        assert!(l.settle().is_none());
        assert_eq!(l.to_commit(false), Some(&at(20)));
        assert_eq!(l.to_commit(true), Some(&at(20)));
        l.committed_at(at(20));
        assert!(l.is_done());
    }

    #[test]
    fn a_commit_with_state_waits_for_every_group() {
        let (mut l, a, _) = two_groups();
        a.0.set(Some(Outcome::Delivered));
        l.settle();
        assert_eq!(l.to_commit(false), Some(&at(10)));
        assert_eq!(l.to_commit(true), None, "state holds records up to 20");
        l.settle();
        assert_eq!(l.to_commit(true), None, "still open");
    }

    #[test]
    fn a_failed_group_blocks_and_a_rewind_goes_back_to_the_last_commit() {
        let mut l = AtLeastOnce::new(at(5));
        let a = Fake::default();
        l.advance("in", 10);
        l.push(a.clone(), None);
        a.0.set(Some(Outcome::Transient));
        assert!(matches!(l.settle(), Some(Blocked::Transient(_))));
        assert_eq!(l.to_commit(false), None);
        assert_eq!(l.rewind(), &at(5));
        assert_eq!(l.processed(), &at(5));
        assert!(l.is_done());
    }

    #[test]
    fn nothing_commits_while_a_group_is_out_with_its_policy() {
        let (mut l, a, b) = two_groups();
        a.0.set(Some(Outcome::Permanent));
        b.0.set(Some(Outcome::Delivered));
        let Some(Blocked::Permanent { group, .. }) = l.settle() else {
            panic!("blocked")
        };
        assert!(
            l.settle().is_none() && l.to_commit(true).is_none() && l.to_commit(false).is_none()
        );
        // Dead-lettered: the group returns with the dead letters' deliveries.
        let dead_letters = Fake::default();
        l.push_front(Group {
            deliveries: dead_letters.clone(),
            positions: group.positions,
            batch: None,
        });
        assert!(l.settle().is_none() && l.to_commit(false).is_none());
        dead_letters.0.set(Some(Outcome::Delivered));
        assert!(l.settle().is_none());
        assert_eq!(l.to_commit(true), Some(&at(20)));
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Process up to 50 more records and push their deliveries.
        Process(i64),
        /// Settle the unsettled group at this index (mod their count).
        Settle(usize, Outcome),
        /// Commit what the ledger allows, with state or not.
        Commit(bool),
        Rewind,
    }

    fn step() -> impl Strategy<Value = Step> {
        let outcome = prop_oneof![4 => Just(Outcome::Delivered), 1 => Just(Outcome::Transient), 1 => Just(Outcome::Permanent)];
        prop_oneof![
            (1..50i64).prop_map(Step::Process),
            (any::<usize>(), outcome).prop_map(|(i, o)| Step::Settle(i, o)),
            any::<bool>().prop_map(Step::Commit),
            Just(Step::Rewind),
        ]
    }

    proptest! {
        /// Whatever order deliveries settle in, and whatever fails: a
        /// commit never passes a record whose group is not delivered, and
        /// never goes backwards.
        #[test]
        fn no_commit_passes_an_undelivered_record(steps in proptest::collection::vec(step(), 1..80)) {
            let mut l: AtLeastOnce<Fake> = AtLeastOnce::new(at(0));
            // Every group pushed since the last rewind: (end position, deliveries).
            let mut groups: Vec<(i64, Fake)> = Vec::new();
            let mut next = 0;
            let mut committed = 0;
            for s in steps {
                match s {
                    Step::Process(n) => {
                        next += n;
                        l.advance("in", next);
                        let d = Fake::default();
                        l.push(d.clone(), None);
                        groups.push((next, d));
                    }
                    Step::Settle(i, outcome) => {
                        let open: Vec<&(i64, Fake)> = groups.iter().filter(|(_, d)| !d.settled()).collect();
                        if !open.is_empty() {
                            open[i % open.len()].1.0.set(Some(outcome));
                        }
                    }
                    Step::Commit(with_state) => {
                        // A permanently failed group leaves the ledger until
                        // its policy deals with it; here it is dropped, so
                        // nothing after it may commit either.
                        let blocked = l.settle();
                        if let Some(to) = l.to_commit(with_state).cloned() {
                            let o = to["in"];
                            prop_assert!(o >= committed, "commit went back from {committed} to {o}");
                            for (end, d) in &groups {
                                if *end <= o {
                                    prop_assert!(matches!(d.0.get(), Some(Outcome::Delivered)), "committed {o} past an undelivered group ending at {end}");
                                }
                            }
                            if with_state {
                                prop_assert_eq!(o, next, "a commit with state covers everything processed");
                            }
                            committed = o;
                            l.committed_at(to);
                        }
                        if blocked.is_some() {
                            l.rewind();
                            groups.clear();
                            next = committed;
                        }
                    }
                    Step::Rewind => {
                        prop_assert_eq!(l.rewind()["in"], committed);
                        groups.clear();
                        next = committed;
                    }
                }
            }
        }
    }
}
