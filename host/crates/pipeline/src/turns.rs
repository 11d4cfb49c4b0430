//! One at a time, in the order asked: a ticket lock. A plain mutex
//! lets a thread that releases and asks again barge ahead of the waiting,
//! so a tenant deploying in a loop could keep others' deployment checks
//! waiting until they ran out of time.

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub struct Turns {
    /// The next ticket to hand out, and the one whose turn it is.
    tickets: Mutex<(u64, u64)>,
    next: Condvar,
}

/// The turn of its holder, until dropped.
pub struct Turn<'a>(&'a Turns);

impl Turns {
    /// Waits for the caller's turn: after every earlier caller's.
    pub fn take(&self) -> Turn<'_> {
        let mut t = self.tickets.lock();
        let mine = t.0;
        t.0 += 1;
        while t.1 != mine {
            self.next.wait(&mut t);
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.tickets.lock().1 += 1;
        self.0.next.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn turns_come_in_the_order_asked() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take();
        let waiting: Vec<_> = (0..4)
            .map(|i| {
                let (mine, order) = (turns.clone(), order.clone());
                let h = std::thread::spawn(move || {
                    let _turn = mine.take();
                    order.lock().push(i);
                });
                // Each asks after the one before it.
                while turns.tickets.lock().0 < i + 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                h
            })
            .collect();
        drop(first);
        // The holder asking again goes to the back.
        while turns.tickets.lock().1 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let again = {
            let (turns, order) = (turns.clone(), order.clone());
            std::thread::spawn(move || {
                let _turn = turns.take();
                order.lock().push(9);
            })
        };
        for h in waiting {
            h.join().unwrap();
        }
        again.join().unwrap();
        assert_eq!(*order.lock(), [0, 1, 2, 3, 9]);
    }
}
