//! The order a partition processes its records in when it has several
//! inputs (co-partitioned topics whose partitions of one number share
//! state): by timestamp, as Kafka Streams' `PartitionGroup` does, so
//! stream time, windows and event-time timers see the records of all its
//! inputs in time order however unevenly the inputs arrive. Processing
//! them in the order they arrived would let a backlog of one input close
//! the windows of another's records still on the broker.
//!
//! The next batch comes from the input whose next record has the smallest
//! timestamp (ties: the input whose name sorts first) and ends before the
//! first of its records that another input's next record precedes. An
//! input with no records here may still have some on the broker: the
//! partition waits for them unless the input is known to be caught up (its
//! position has reached the end the broker last reported), or it waited
//! longer than the host allows (then it goes on without it, and says so).

/// One input of a partition, as the choice sees it.
#[derive(Clone, Copy, Debug)]
pub struct InputView {
    /// The timestamp the next record is ordered by, if one is buffered.
    pub head: Option<i64>,
    /// Its first batch may start (full, or lingered long enough).
    pub ready: bool,
    /// Nothing of it is known to be left on the broker.
    pub caught_up: bool,
}

/// Where a batch of the chosen input must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub timestamp: i64,
    /// A record at exactly `timestamp` still comes first (its input sorts
    /// before the one it is compared with).
    pub inclusive: bool,
}

impl Bound {
    /// Whether a record ordered by `timestamp` belongs before the bound.
    pub fn admits(&self, timestamp: i64) -> bool {
        timestamp < self.timestamp || (self.inclusive && timestamp == self.timestamp)
    }
}

/// What a partition does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Records of input `input` (an index into the inputs, sorted by name),
    /// up to the bound if any.
    Take { input: usize, bound: Option<Bound> },
    /// Input `input` has no records here but may have some on the broker.
    WaitFor { input: usize },
    /// Nothing to do yet.
    Nothing,
}

/// Chooses what a partition with `inputs` (sorted by name) processes next.
/// With `enforce`, inputs that are not caught up are not waited for.
pub fn next(inputs: &[InputView], enforce: bool) -> Next {
    let mut chosen: Option<(usize, i64)> = None;
    let mut second: Option<(usize, i64)> = None;
    let mut waiting = None;
    for (i, input) in inputs.iter().enumerate() {
        match input.head {
            // Strictly smaller: on equal timestamps the earlier input wins.
            Some(t) if chosen.is_none_or(|(_, c)| t < c) => {
                second = chosen;
                chosen = Some((i, t));
            }
            Some(t) if second.is_none_or(|(_, s)| t < s) => second = Some((i, t)),
            Some(_) => {}
            None if !input.caught_up && !enforce => {
                waiting.get_or_insert(i);
            }
            None => {}
        }
    }
    let Some((input, _)) = chosen else {
        return Next::Nothing;
    };
    if let Some(w) = waiting {
        return Next::WaitFor { input: w };
    }
    if !inputs[input].ready {
        return Next::Nothing;
    }
    let bound = second.map(|(other, timestamp)| Bound {
        timestamp,
        inclusive: input < other,
    });
    Next::Take { input, bound }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(head: Option<i64>) -> InputView {
        InputView {
            head,
            ready: true,
            caught_up: true,
        }
    }

    #[test]
    fn one_input_takes_everything_it_has() {
        assert_eq!(
            next(&[view(Some(5))], false),
            Next::Take {
                input: 0,
                bound: None
            }
        );
        assert_eq!(next(&[view(None)], false), Next::Nothing);
        let lingering = InputView {
            ready: false,
            ..view(Some(5))
        };
        assert_eq!(next(&[lingering], false), Next::Nothing);
    }

    #[test]
    fn the_earliest_head_goes_first_up_to_the_next_earliest() {
        let got = next(&[view(Some(30)), view(Some(10)), view(Some(20))], false);
        assert_eq!(
            got,
            Next::Take {
                input: 1,
                bound: Some(Bound {
                    timestamp: 20,
                    inclusive: true
                })
            }
        );
        let got = next(&[view(Some(20)), view(Some(10))], false);
        assert_eq!(
            got,
            Next::Take {
                input: 1,
                bound: Some(Bound {
                    timestamp: 20,
                    inclusive: false
                })
            }
        );
        // Ties go to the input that sorts first, and records at the tie too.
        assert_eq!(
            next(&[view(Some(10)), view(Some(10))], false),
            Next::Take {
                input: 0,
                bound: Some(Bound {
                    timestamp: 10,
                    inclusive: true
                })
            }
        );
    }

    #[test]
    fn an_empty_input_with_records_on_the_broker_is_waited_for_until_enforced() {
        let behind = InputView {
            head: None,
            ready: false,
            caught_up: false,
        };
        assert_eq!(
            next(&[view(Some(10)), behind], false),
            Next::WaitFor { input: 1 }
        );
        assert_eq!(
            next(&[view(Some(10)), behind], true),
            Next::Take {
                input: 0,
                bound: None
            }
        );
        // Nothing to process: nothing to wait for either.
        assert_eq!(next(&[view(None), behind], false), Next::Nothing);
        // Caught up: nothing to wait for.
        assert_eq!(
            next(&[view(Some(10)), view(None)], false),
            Next::Take {
                input: 0,
                bound: None
            }
        );
    }

    /// A partition's inputs arrive in any interleaving and batches end
    /// anywhere: it processes them in the order of a merge by timestamp of
    /// the inputs as wholes (each in its own order), as `weir test` does.
    fn merged(inputs: &[Vec<i64>]) -> Vec<(usize, i64)> {
        let mut at = vec![0; inputs.len()];
        let mut out = Vec::new();
        while let Some(i) = (0..inputs.len())
            .filter(|&i| at[i] < inputs[i].len())
            .min_by_key(|&i| (inputs[i][at[i]], i))
        {
            out.push((i, inputs[i][at[i]]));
            at[i] += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn any_arrival_order_processes_the_timestamp_merge(
            inputs in prop::collection::vec(prop::collection::vec(0i64..50, 0..12), 1..4),
            arrivals in prop::collection::vec((0usize..4, 1usize..4), 0..40),
            cuts in prop::collection::vec(1usize..5, 0..40),
        ) {
            // What has arrived of each input, and what is processed.
            let mut arrived = vec![0; inputs.len()];
            let mut taken = vec![0; inputs.len()];
            let mut out = Vec::new();
            let (mut arrivals, mut cuts) = (arrivals.into_iter(), cuts.into_iter().cycle());
            loop {
                let views: Vec<InputView> = (0..inputs.len())
                    .map(|i| InputView { head: (taken[i] < arrived[i]).then(|| inputs[i][taken[i]]), ready: true, caught_up: arrived[i] == inputs[i].len() })
                    .collect();
                match next(&views, false) {
                    Next::Take { input, bound } => {
                        // A batch takes at most `cut` records (the batch size).
                        let cut = cuts.next().unwrap_or(usize::MAX);
                        let mut n = 0;
                        while taken[input] < arrived[input] && n < cut && bound.is_none_or(|b| b.admits(inputs[input][taken[input]])) {
                            out.push((input, inputs[input][taken[input]]));
                            taken[input] += 1;
                            n += 1;
                        }
                        prop_assert!(n > 0, "a batch of nothing");
                    }
                    Next::WaitFor { .. } | Next::Nothing => {
                        // Records arrive: the next in the plan, or (once the
                        // plan is used up) all that are left.
                        match arrivals.next() {
                            Some((i, n)) => {
                                let i = i % inputs.len();
                                arrived[i] = (arrived[i] + n).min(inputs[i].len());
                            }
                            None if arrived.iter().zip(&inputs).any(|(a, v)| *a < v.len()) => {
                                arrived = inputs.iter().map(Vec::len).collect();
                            }
                            None => break,
                        }
                    }
                }
            }
            prop_assert_eq!(out, merged(&inputs));
        }
    }
}
