//! Which worker a delivery goes to. A lane (a partition, a FIFO group)
//! keeps its order, so it always goes to the same worker; so does a key.
//! Keyless deliveries have no order to keep: they go to the next worker in
//! turn that has room, so one worker stuck in a long call (a poison message
//! running to its timeout) does not hold up the others.
//!
//! Deliveries travel in batches (what the source had queued, up to the
//! pipeline's `batch`): one hand-over, and at most one wake-up, per worker
//! per batch rather than per message.

use crate::message::Delivery;
use std::hash::{Hash, Hasher};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Hands deliveries to the workers' input queues.
pub(super) struct Dispatch {
    inputs: Vec<mpsc::Sender<Vec<Delivery>>>,
    /// The worker the last keyless deliveries went to.
    turn: usize,
}

impl Dispatch {
    pub(super) fn new(inputs: Vec<mpsc::Sender<Vec<Delivery>>>) -> Self {
        Dispatch { inputs, turn: 0 }
    }

    /// The worker a delivery must go to, if its lane or key fixes one.
    fn fixed(&self, delivery: &Delivery) -> Option<usize> {
        let workers = self.inputs.len() as u64;
        match (delivery.lane, &delivery.message.key) {
            (Some(lane), _) => Some((lane % workers) as usize),
            (None, Some(key)) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                Some((hasher.finish() % workers) as usize)
            }
            (None, None) => None,
        }
    }

    /// The next worker in turn whose queue has room now.
    fn next_with_room(&mut self) -> Option<usize> {
        let workers = self.inputs.len();
        (1..=workers)
            .map(|step| (self.turn + step) % workers)
            .find(|&i| self.inputs[i].capacity() > 0)
            .inspect(|&i| self.turn = i)
    }

    /// Queue every delivery of `batch` (emptied) at its worker, in order,
    /// waiting while a queue is full (for keyless ones: while every queue
    /// is full). False when a worker is gone (its thread panicked).
    pub(super) async fn send_all(&mut self, batch: &mut Vec<Delivery>) -> bool {
        let workers = self.inputs.len();
        if workers == 1 {
            let all = std::mem::take(batch);
            return self.inputs[0].send(all).await.is_ok();
        }
        let any = self.next_with_room();
        let mut groups: Vec<Vec<Delivery>> = (0..workers).map(|_| Vec::new()).collect();
        let mut homeless = Vec::new();
        for delivery in batch.drain(..) {
            match self.fixed(&delivery).or(any) {
                Some(i) => groups[i].push(delivery),
                None => homeless.push(delivery),
            }
        }
        for (input, group) in self.inputs.iter().zip(groups) {
            if !group.is_empty() && input.send(group).await.is_err() {
                return false;
            }
        }
        homeless.is_empty() || self.send_to_any(homeless).await
    }

    /// Every queue was full: the first to free a slot takes `group`.
    async fn send_to_any(&mut self, mut group: Vec<Delivery>) -> bool {
        let workers = self.inputs.len();
        for _ in 0..workers {
            self.turn = (self.turn + 1) % workers;
            match self.inputs[self.turn].try_send(group) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => group = back,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        let slots = self.inputs.iter().map(|input| Box::pin(input.reserve()));
        match futures::future::select_all(slots).await {
            (Ok(slot), index, _) => {
                self.turn = index;
                slot.send(group);
                true
            }
            (Err(_), ..) => false,
        }
    }
}
