//! The last-sample store: one stored payload per stream key, in first-stored order.
//!
//! The reference keeps the last sample of every event (`evt_<name>`) and its special streams
//! (`_stream`, `_stateStream`…) and sends them all as initial data on every connection and as
//! initial_state replies. Replacing a key keeps its position.

use serde::{Deserialize, Serialize};

/// One stored entry: the message parts needed to rebuild it with a fresh `producer_snd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The envelope `csc`.
    pub csc: String,
    /// The envelope `salindex`.
    pub salindex: i64,
    /// The stream name inside `data`.
    pub stream: String,
    /// The payload JSON (FIELDS or a special stream object).
    pub payload: String,
    /// Whether the payload goes into a one-element list.
    pub as_list: bool,
}

/// An insertion-ordered map from keys to stored entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastSampleStore {
    entries: Vec<(String, Stored)>,
}

impl LastSampleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Store `value` under `key`, replacing (in place) any earlier entry.
    pub fn put(&mut self, key: &str, value: Stored) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    /// The entry under `key`.
    pub fn get(&self, key: &str) -> Option<&Stored> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Remove `key`.
    pub fn remove(&mut self, key: &str) -> Option<Stored> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }

    /// All entries in first-stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Stored)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Stored {
    /// The entry as an `event` message with a fresh `producer_snd`.
    pub fn to_event(&self, now: f64) -> crate::message::OutMessage {
        use crate::message::{data_message, DataCategory, Payload};
        let payload = if self.as_list { Payload::List } else { Payload::Object };
        data_message(DataCategory::Event, &self.csc, self.salindex, &self.stream, &self.payload, payload, now, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &str) -> Stored {
        Stored { csc: "X".into(), salindex: 0, stream: "s".into(), payload: p.into(), as_list: true }
    }

    #[test]
    fn replacing_keeps_position() {
        let mut st = LastSampleStore::new();
        st.put("a", s("1"));
        st.put("b", s("2"));
        st.put("a", s("3"));
        let keys: Vec<_> = st.iter().map(|(k, v)| (k.to_string(), v.payload.clone())).collect();
        assert_eq!(keys, vec![("a".into(), "3".into()), ("b".into(), "2".into())]);
    }
}
