//! Fleet changes made while the store could not take them, in the order they were made.
//! They are in force on this gateway already; [`super::FleetSync`] writes them to the store
//! when it answers again, before it reconciles anything from it, so that the store's older
//! view never undoes them.

use std::collections::VecDeque;

use switchyard_metering::store::DrainKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write this gateway's registration of the worker, with the lease it has left here:
    /// a registration, or a heartbeat the store did not see.
    Register(String),
    Remove(String),
    Drain {
        kind: DrainKind,
        value: String,
        draining: bool,
        reason: String,
    },
}

impl Op {
    fn worker(&self) -> Option<&str> {
        match self {
            Op::Register(n) | Op::Remove(n) => Some(n),
            Op::Drain { .. } => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Pending(VecDeque<Op>);

impl Pending {
    /// Queues `op`. A registration already queued after the worker's last removal is not
    /// queued twice: it writes the worker as it is when it is flushed, so the heartbeats of
    /// an outage are one write, not one per heartbeat.
    pub fn push(&mut self, op: Op) {
        if let Op::Register(name) = &op {
            let last = self.0.iter().rev().find(|o| o.worker() == Some(name));
            if last == Some(&op) {
                return;
            }
        }
        self.0.push_back(op);
    }

    pub fn front(&self) -> Option<&Op> {
        self.0.front()
    }

    pub fn pop_front(&mut self) {
        self.0.pop_front();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_of_an_outage_are_one_write_and_order_is_kept() {
        let mut p = Pending::default();
        for _ in 0..3 {
            p.push(Op::Register("w1".into()));
        }
        p.push(Op::Register("w2".into()));
        p.push(Op::Register("w1".into()));
        p.push(Op::Remove("w1".into()));
        p.push(Op::Register("w1".into()));
        let order: Vec<_> = std::iter::from_fn(|| {
            let op = p.front().cloned();
            p.pop_front();
            op
        })
        .collect();
        assert_eq!(
            order,
            [
                Op::Register("w1".into()),
                Op::Register("w2".into()),
                Op::Remove("w1".into()),
                Op::Register("w1".into()),
            ]
        );
        assert!(p.is_empty());
    }
}
