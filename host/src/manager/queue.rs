//! The bounded outgoing queue.
//!
//! Rules (the original has no queue at all and drops everything produced while disconnected):
//! - telemetry: a queued message of the same (category, csc, salindex, stream) is replaced in
//!   place, so while the link is down or slow only the latest value per stream waits;
//! - events: likewise, but only once the queue holds `capacity` messages or more;
//! - other messages (subscriptions, replies): never coalesced; the link drops them while it is
//!   disconnected (they are re-sent on connect) and purges queued ones when it goes down;
//! - hard bounds: never more than `2 * capacity` messages nor `max_bytes` bytes of text: beyond
//!   that the oldest messages are dropped (counted).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use love_plugin_api::abi::Category;

use super::Outgoing;

/// Whether two messages belong to the same coalescable stream.
fn same_stream(a: &Outgoing, b: &Outgoing) -> bool {
    a.category == b.category && a.salindex == b.salindex && a.csc == b.csc && a.stream == b.stream
}

/// What [`OutQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Appended.
    Appended,
    /// Replaced a queued message of the same stream.
    Coalesced,
    /// Appended, and this many older messages were dropped to stay within bounds.
    AppendedDropping(u64),
}

#[derive(Debug)]
pub(crate) struct OutQueue {
    /// Slots; `None` is a purged message. `slots[i]` has sequence number `head + i`.
    slots: VecDeque<Option<Outgoing>>,
    head: u64,
    /// Latest queued sequence number per coalescable stream, keyed by the hash of the stream's
    /// identity (no allocation per message); the queued message itself confirms the match, so a
    /// hash collision costs a missed coalescing, never a wrong one.
    latest: HashMap<u64, u64>,
    hasher: RandomState,
    live: usize,
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
    high_water: usize,
}

fn coalescable(c: Category) -> bool {
    c == Category::TELEMETRY || c == Category::EVENT
}

impl OutQueue {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> OutQueue {
        OutQueue {
            slots: VecDeque::new(),
            // Room below for push_front.
            head: 1 << 32,
            latest: HashMap::new(),
            hasher: RandomState::new(),
            live: 0,
            bytes: 0,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            high_water: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    fn stream_hash(&self, m: &Outgoing) -> u64 {
        self.hasher.hash_one((m.category.0, m.salindex, m.csc.as_str(), m.stream.as_str()))
    }

    /// The queued message of `msg`'s stream that `latest` points at, as (sequence, slot index).
    fn queued_of(&self, hash: u64, msg: &Outgoing) -> Option<usize> {
        let seq = *self.latest.get(&hash)?;
        let idx = usize::try_from(seq.checked_sub(self.head)?).ok()?;
        match self.slots.get(idx) {
            Some(Some(queued)) if same_stream(queued, msg) => Some(idx),
            _ => None,
        }
    }

    pub(crate) fn push(&mut self, msg: Outgoing) -> Pushed {
        let coalesce =
            msg.category == Category::TELEMETRY || (msg.category == Category::EVENT && self.live >= self.capacity);
        let hash = if coalescable(msg.category) { self.stream_hash(&msg) } else { 0 };
        if coalesce {
            if let Some(idx) = self.queued_of(hash, &msg) {
                self.bytes += msg.text.len();
                let old = self.slots[idx].replace(msg).expect("checked by queued_of");
                self.bytes -= old.text.len();
                return Pushed::Coalesced;
            }
        }
        let mut dropped = 0u64;
        let hard_len = self.capacity.saturating_mul(2);
        while self.live > 0 && (self.live >= hard_len || self.bytes + msg.text.len() > self.max_bytes) {
            if self.pop().is_some() {
                dropped += 1;
            }
        }
        let seq = self.head + self.slots.len() as u64;
        if coalescable(msg.category) {
            self.latest.insert(hash, seq);
        }
        self.bytes += msg.text.len();
        self.slots.push_back(Some(msg));
        self.live += 1;
        self.high_water = self.high_water.max(self.live);
        if dropped > 0 {
            Pushed::AppendedDropping(dropped)
        } else {
            Pushed::Appended
        }
    }

    /// The oldest message.
    pub(crate) fn pop(&mut self) -> Option<Outgoing> {
        while let Some(slot) = self.slots.pop_front() {
            let seq = self.head;
            self.head += 1;
            if let Some(msg) = slot {
                if coalescable(msg.category) {
                    let hash = self.stream_hash(&msg);
                    if self.latest.get(&hash) == Some(&seq) {
                        self.latest.remove(&hash);
                    }
                }
                self.live -= 1;
                self.bytes -= msg.text.len();
                return Some(msg);
            }
        }
        None
    }

    /// Put a message back at the front (a send that did not happen).
    pub(crate) fn push_front(&mut self, msg: Outgoing) {
        let hash = if coalescable(msg.category) { self.stream_hash(&msg) } else { 0 };
        // A newer message of the same stream may be queued already: then this one is stale.
        if msg.category == Category::TELEMETRY && self.queued_of(hash, &msg).is_some() {
            return;
        }
        self.head -= 1;
        if coalescable(msg.category) && self.queued_of(hash, &msg).is_none() {
            self.latest.insert(hash, self.head);
        }
        self.bytes += msg.text.len();
        self.slots.push_front(Some(msg));
        self.live += 1;
    }

    /// Remove every queued message of `category`; returns how many.
    pub(crate) fn purge(&mut self, category: Category) -> u64 {
        let mut n = 0;
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|m| m.category == category) {
                let m = slot.take().expect("checked");
                self.bytes -= m.text.len();
                self.live -= 1;
                n += 1;
            }
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.head += 1;
        }
        n
    }

    /// Drop everything; returns how many.
    pub(crate) fn clear(&mut self) -> u64 {
        let n = self.live as u64;
        self.slots.clear();
        self.latest.clear();
        self.live = 0;
        self.bytes = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(category: Category, csc: &str, stream: &str, text: &str) -> Outgoing {
        Outgoing { category, csc: csc.into(), salindex: 0, stream: stream.into(), text: text.into(), created: 0.0 }
    }

    fn drain(q: &mut OutQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop()).map(|m| m.text).collect()
    }

    #[test]
    fn telemetry_keeps_latest_in_place() {
        let mut q = OutQueue::new(10, 1 << 20);
        q.push(m(Category::TELEMETRY, "A", "t", "t1"));
        q.push(m(Category::EVENT, "A", "e", "e1"));
        assert_eq!(q.push(m(Category::TELEMETRY, "A", "t", "t2")), Pushed::Coalesced);
        q.push(m(Category::TELEMETRY, "B", "t", "b1"));
        assert_eq!(q.len(), 3);
        assert_eq!(drain(&mut q), ["t2", "e1", "b1"]);
        assert_eq!(q.bytes(), 0);
        // After popping, the key is free again.
        assert_eq!(q.push(m(Category::TELEMETRY, "A", "t", "t3")), Pushed::Appended);
    }

    #[test]
    fn streams_differing_only_in_salindex_or_category_are_not_coalesced() {
        let mut q = OutQueue::new(10, 1 << 20);
        q.push(m(Category::TELEMETRY, "A", "t", "i0"));
        let mut other = m(Category::TELEMETRY, "A", "t", "i1");
        other.salindex = 1;
        assert_eq!(q.push(other), Pushed::Appended);
        assert_eq!(q.push(m(Category::EVENT, "A", "t", "e")), Pushed::Appended);
        assert_eq!(q.push(m(Category::TELEMETRY, "A", "t", "i0b")), Pushed::Coalesced);
        assert_eq!(drain(&mut q), ["i0b", "i1", "e"]);
    }

    #[test]
    fn events_kept_until_capacity_then_latest() {
        let mut q = OutQueue::new(3, 1 << 20);
        for i in 0..3 {
            assert_eq!(q.push(m(Category::EVENT, "A", "e", &format!("e{i}"))), Pushed::Appended);
        }
        assert_eq!(q.push(m(Category::EVENT, "A", "e", "e3")), Pushed::Coalesced);
        assert_eq!(q.push(m(Category::EVENT, "A", "f", "f0")), Pushed::Appended);
        assert_eq!(drain(&mut q), ["e0", "e1", "e3", "f0"]);
    }

    #[test]
    fn hard_bounds() {
        let mut q = OutQueue::new(2, 1 << 20);
        for i in 0..10 {
            q.push(m(Category::OTHER, "A", "s", &format!("o{i}")));
        }
        assert_eq!(q.len(), 4);
        assert_eq!(drain(&mut q), ["o6", "o7", "o8", "o9"]);
        let mut q = OutQueue::new(100, 10);
        q.push(m(Category::OTHER, "A", "s", "12345"));
        q.push(m(Category::OTHER, "A", "s", "67890"));
        assert_eq!(q.push(m(Category::OTHER, "A", "s", "abc")), Pushed::AppendedDropping(1));
        assert_eq!(q.bytes(), 8);
    }

    #[test]
    fn purge_and_push_front() {
        let mut q = OutQueue::new(10, 1 << 20);
        q.push(m(Category::OTHER, "A", "s", "o1"));
        q.push(m(Category::TELEMETRY, "A", "t", "t1"));
        q.push(m(Category::OTHER, "A", "s", "o2"));
        assert_eq!(q.purge(Category::OTHER), 2);
        assert_eq!(q.len(), 1);
        let t = q.pop().unwrap();
        q.push_front(t);
        assert_eq!(q.push(m(Category::TELEMETRY, "A", "t", "t2")), Pushed::Coalesced);
        assert_eq!(drain(&mut q), ["t2"]);
        q.push(m(Category::OTHER, "A", "s", "o3"));
        assert_eq!(q.clear(), 1);
        assert!(q.pop().is_none());
    }
}
