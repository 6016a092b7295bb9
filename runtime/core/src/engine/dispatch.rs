//! Which worker a delivery goes to. A lane (a partition, a FIFO group)
//! keeps its order, so it always goes to the same worker; so does a key.
//! Keyless deliveries have no order to keep: they go to the next worker in
//! turn that has room, so one worker stuck in a long call (a poison message
//! running to its timeout) does not hold up the others.

use crate::message::Delivery;
use std::hash::{Hash, Hasher};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Hands deliveries to the workers' input queues.
pub(super) struct Dispatch {
    inputs: Vec<mpsc::Sender<Delivery>>,
    /// The worker the last keyless delivery went to.
    turn: usize,
}

impl Dispatch {
    pub(super) fn new(inputs: Vec<mpsc::Sender<Delivery>>) -> Self {
        Dispatch { inputs, turn: 0 }
    }

    /// Queue `delivery` at its worker, waiting while that queue is full
    /// (for a keyless one: while every queue is full). False when the
    /// worker is gone (its thread panicked).
    pub(super) async fn send(&mut self, delivery: Delivery) -> bool {
        let workers = self.inputs.len();
        let fixed = match (delivery.lane, &delivery.message.key) {
            (Some(lane), _) => Some((lane % workers as u64) as usize),
            (None, Some(key)) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut hasher);
                Some((hasher.finish() % workers as u64) as usize)
            }
            (None, None) => None,
        };
        match fixed {
            Some(index) => self.inputs[index].send(delivery).await.is_ok(),
            None => self.send_to_any(delivery).await,
        }
    }

    async fn send_to_any(&mut self, mut delivery: Delivery) -> bool {
        let workers = self.inputs.len();
        for _ in 0..workers {
            self.turn = (self.turn + 1) % workers;
            match self.inputs[self.turn].try_send(delivery) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => delivery = back,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        // Every queue is full: the first to free a slot takes it.
        let slots = self.inputs.iter().map(|input| Box::pin(input.reserve()));
        match futures::future::select_all(slots).await {
            (Ok(slot), index, _) => {
                self.turn = index;
                slot.send(delivery);
                true
            }
            (Err(_), ..) => false,
        }
    }
}
