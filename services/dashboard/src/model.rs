//! The read model: one [`Fact`] per ticket.
//!
//! Updates are idempotent and order-insensitive: a fact is replaced only by one built from
//! the same or a newer store version. Replaying any subset of events in any order therefore
//! converges on the store's state.

use std::collections::HashMap;

use uuid::Uuid;

use crate::facts::Fact;

#[derive(Debug, Default)]
pub struct ReadModel {
    /// Boxed, so that growing the table (it doubles) moves small entries, not whole facts
    /// (616 bytes each, plus their strings on the heap): with 560-byte values the insert that grows a map to
    /// 229,376 entries took 132 ms here, boxed 8 ms, with the write lock held meanwhile; and
    /// the old and new tables no longer double the peak memory (605 → 309 MiB at 252,000
    /// tickets, BENCHMARKS.md).
    facts: HashMap<Uuid, Box<Fact>>,
    /// Bumped by every change; open pages re-read when it moves.
    version: u64,
    /// The initial load from the store has finished.
    ready: bool,
}

impl ReadModel {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    pub fn set_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            self.version += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    pub fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.facts.values().map(|f| &**f)
    }

    pub fn fact(&self, id: &Uuid) -> Option<&Fact> {
        self.facts.get(id).map(|f| &**f)
    }

    /// Inserts or replaces the fact unless the model already holds a newer version of it.
    /// Returns whether anything changed.
    pub fn upsert(&mut self, fact: Fact) -> bool {
        match self.facts.get(&fact.id) {
            Some(old) if old.version > fact.version || **old == fact => false,
            _ => {
                self.facts.insert(fact.id, Box::new(fact));
                self.version += 1;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use minyi_core::petition::{Channel, TicketStatus};

    use super::*;

    fn fact(version: i64, status: TicketStatus) -> Fact {
        Fact {
            id: Uuid::nil(),
            tracking_number: "MY-1".into(),
            version,
            status,
            channel: Channel::Hotline,
            received_at: Utc.with_ymd_and_hms(2026, 11, 20, 2, 0, 0).unwrap(),
            text: String::new(),
            item_code: String::new(),
            item_name: String::new(),
            category: String::new(),
            street: String::new(),
            community: String::new(),
            auto_routed: false,
            duplicate_of: None,
            handling: None,
        }
    }

    #[test]
    fn facts_converge_whatever_the_order() {
        let mut m = ReadModel::default();
        assert!(m.upsert(fact(3, TicketStatus::Accepted)));
        // An older read arriving late changes nothing.
        assert!(!m.upsert(fact(1, TicketStatus::Received)));
        assert!(!m.upsert(fact(3, TicketStatus::Accepted)));
        assert_eq!(m.fact(&Uuid::nil()).unwrap().status, TicketStatus::Accepted);
        assert!(m.upsert(fact(4, TicketStatus::Completed)));
        assert_eq!(m.len(), 1);
    }
}
