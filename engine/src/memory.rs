//! An in-memory implementation of the tables, for tests and property checks: the same
//! [`StateView`] the RocksDB store offers, with [`Write`]s applied to ordered maps.

use std::collections::BTreeMap;

use endure_proto::HistoryEvent;

use crate::records::{ActivityRecord, InstanceRecord, OutboxMessage, TimerKey, TimerRecord};
use crate::view::{Mark, StateView, Write};
use crate::Error;

/// Timer key in due-time order.
pub type TimerOrder = (i64, i32, String, i32);

fn order(key: &TimerKey) -> TimerOrder {
    let at = key.fire_at.unwrap_or_default();
    (at.seconds, at.nanos, key.instance_id.clone(), key.timer_id)
}

/// All tables in ordered maps.
#[derive(Clone, Debug, Default)]
pub struct MemoryTables {
    /// Instance records by instance ID.
    pub instances: BTreeMap<String, InstanceRecord>,
    /// History events by (instance ID, position in the run).
    pub history: BTreeMap<(String, u64), HistoryEvent>,
    /// Inbox events by (instance ID, arrival sequence number).
    pub inbox: BTreeMap<(String, u64), HistoryEvent>,
    /// Pending activities by (instance ID, task ID).
    pub activities: BTreeMap<(String, i32), ActivityRecord>,
    /// Armed timers in due order, with their keys.
    pub timers: BTreeMap<TimerOrder, (TimerKey, TimerRecord)>,
    /// Messages not yet delivered, by outbox sequence number.
    pub outbox: BTreeMap<u64, OutboxMessage>,
    /// The counters.
    pub marks: BTreeMap<Mark, u64>,
}

impl MemoryTables {
    /// Applies one command's writes in order.
    pub fn commit(&mut self, writes: &[Write]) {
        for write in writes {
            self.commit_one(write);
        }
    }

    fn commit_one(&mut self, write: &Write) {
        match write {
            Write::PutInstance(record) => {
                self.instances
                    .insert(record.instance_id.clone(), record.clone());
            }
            Write::DeleteInstance(id) => {
                self.instances.remove(id);
            }
            Write::PutHistory {
                instance_id,
                seq,
                event,
            } => {
                self.history
                    .insert((instance_id.clone(), *seq), event.clone());
            }
            Write::DeleteHistory { instance_id } => {
                self.history.retain(|(id, _), _| id != instance_id);
            }
            Write::PutInbox {
                instance_id,
                seq,
                event,
            } => {
                self.inbox
                    .insert((instance_id.clone(), *seq), event.clone());
            }
            Write::DeleteInbox { instance_id, seq } => {
                self.inbox.remove(&(instance_id.clone(), *seq));
            }
            Write::PutActivity {
                instance_id,
                task_id,
                record,
            } => {
                self.activities
                    .insert((instance_id.clone(), *task_id), record.clone());
            }
            Write::DeleteActivity {
                instance_id,
                task_id,
            } => {
                self.activities.remove(&(instance_id.clone(), *task_id));
            }
            Write::PutTimer { key, record } => {
                self.timers
                    .insert(order(key), (key.clone(), record.clone()));
            }
            Write::DeleteTimer { key } => {
                self.timers.remove(&order(key));
            }
            Write::PutOutbox { seq, message } => {
                self.outbox.insert(*seq, message.clone());
            }
            Write::DeleteOutbox { upto_seq } => {
                self.outbox.retain(|seq, _| seq > upto_seq);
            }
            Write::PutMark { mark, value } => {
                self.marks.insert(*mark, *value);
            }
        }
    }

    /// Timers due at or before `now`, in due order.
    pub fn due_timers(&self, now: &prost_types::Timestamp) -> Vec<TimerKey> {
        self.timers
            .values()
            .map(|(key, _)| key.clone())
            .filter(|key| !crate::time::after(&key.fire_at.unwrap_or_default(), now))
            .collect()
    }
}

fn rows_of<K: Ord + Clone, V: Clone>(
    map: &BTreeMap<(String, K), V>,
    instance_id: &str,
) -> Vec<(K, V)> {
    map.iter()
        .filter(|((id, _), _)| id == instance_id)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

impl StateView for MemoryTables {
    fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, Error> {
        Ok(self.instances.get(instance_id).cloned())
    }

    fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, Error> {
        Ok(rows_of(&self.inbox, instance_id))
    }

    fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, Error> {
        Ok(rows_of(&self.history, instance_id)
            .into_iter()
            .map(|(_, event)| event)
            .collect())
    }

    fn activities(&self, instance_id: &str) -> Result<Vec<(i32, ActivityRecord)>, Error> {
        Ok(rows_of(&self.activities, instance_id))
    }

    fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, Error> {
        Ok(self
            .timers
            .get(&order(key))
            .map(|(_, record)| record.clone()))
    }

    fn mark(&self, mark: Mark) -> Result<u64, Error> {
        Ok(self.marks.get(&mark).copied().unwrap_or(0))
    }
}
