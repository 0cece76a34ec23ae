//! What the engine reads ([`StateView`]), what it writes ([`Write`]) and the transaction
//! overlay ([`Tx`]) through which one apply sees its own writes.

use std::collections::{BTreeMap, HashMap};

use endure_proto::HistoryEvent;

use crate::apply::Effect;
use crate::records::{ActivityRecord, InstanceRecord, OutboxMessage, TimerKey, TimerRecord};
use crate::Error;

/// A counter the state machine keeps next to its tables (the `marks` table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mark {
    /// Sequence number the next outbox message gets (from 1; 0 or absent: none sent yet).
    OutboxNext,
    /// Highest outbox sequence number of this source shard applied here (0: none): a
    /// delivery at or below it is a repeat and applies nothing.
    DeliveredFrom(u32),
}

/// Read-only access to the state machine's tables at the point before a command applies.
///
/// Implementations read a consistent view (one RocksDB snapshot or the in-memory maps);
/// every method returns rows in key order.
pub trait StateView {
    /// The instance record, if the instance exists.
    fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, Error>;
    /// Events waiting for the next turn, in arrival (sequence) order.
    fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, Error>;
    /// The committed history of the current run, in order.
    fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, Error>;
    /// Scheduled activities without a recorded result, by task id.
    fn activities(&self, instance_id: &str) -> Result<Vec<(i32, ActivityRecord)>, Error>;
    /// One durable timer.
    fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, Error>;
    /// A counter's value (0 when it was never written).
    fn mark(&self, mark: Mark) -> Result<u64, Error>;
}

/// One change to the tables. An apply's writes are committed in order, in one atomic batch
/// together with the applied log id.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Stores the instance record (created or changed).
    PutInstance(InstanceRecord),
    /// Deletes the instance record with this ID (its rows go by their own writes).
    DeleteInstance(String),
    /// Appends one event to the history of the instance's current run.
    PutHistory {
        /// The instance.
        instance_id: String,
        /// Position of the event in the run's history, from 0.
        seq: u64,
        /// The event.
        event: HistoryEvent,
    },
    /// Removes every history event of the instance (continue-as-new, ID reuse, purge).
    DeleteHistory {
        /// The instance.
        instance_id: String,
    },
    /// Adds an event to the instance's inbox, for its next turn.
    PutInbox {
        /// The instance.
        instance_id: String,
        /// Arrival sequence number (the record's `inbox_next_seq`).
        seq: u64,
        /// The event.
        event: HistoryEvent,
    },
    /// Removes an inbox event: a turn consumed it, or its run ended.
    DeleteInbox {
        /// The instance.
        instance_id: String,
        /// Its arrival sequence number.
        seq: u64,
    },
    /// Records a scheduled activity that has no result yet (the dispatcher sends it).
    PutActivity {
        /// The instance that scheduled it.
        instance_id: String,
        /// Its task ID.
        task_id: i32,
        /// What to send to the worker, and the run it belongs to.
        record: ActivityRecord,
    },
    /// Removes a pending activity: its result arrived, or its run ended.
    DeleteActivity {
        /// The instance.
        instance_id: String,
        /// The task ID.
        task_id: i32,
    },
    /// Arms a durable timer.
    PutTimer {
        /// Due time, instance and timer ID (the storage key, in due order).
        key: TimerKey,
        /// The run that armed it.
        record: TimerRecord,
    },
    /// Removes a timer: it fired, or its run ended.
    DeleteTimer {
        /// The timer's key.
        key: TimerKey,
    },
    /// Adds a message to this shard's outbox, for the leader to deliver.
    PutOutbox {
        /// Its sequence number in the outbox (the [`Mark::OutboxNext`] it took).
        seq: u64,
        /// The message.
        message: OutboxMessage,
    },
    /// Removes every outbox message with a sequence number up to `upto_seq`: delivered.
    DeleteOutbox {
        /// The last one removed.
        upto_seq: u64,
    },
    /// Sets a counter.
    PutMark {
        /// Which counter.
        mark: Mark,
        /// Its new value.
        value: u64,
    },
}

/// Ordered key of a timer inside the overlay.
type TimerSortKey = (i64, i32, String, i32);

fn timer_sort_key(key: &TimerKey) -> TimerSortKey {
    let at = key.fire_at.unwrap_or_default();
    (at.seconds, at.nanos, key.instance_id.clone(), key.timer_id)
}

/// One apply's transaction: reads fall through to the view unless this apply wrote the row.
pub(crate) struct Tx<'a> {
    view: &'a dyn StateView,
    writes: Vec<Write>,
    effects: Vec<Effect>,
    instances: HashMap<String, Option<InstanceRecord>>,
    inbox: BTreeMap<(String, u64), Option<HistoryEvent>>,
    inbox_cleared: HashMap<String, ()>,
    history: HashMap<String, (bool, Vec<HistoryEvent>)>,
    activities: BTreeMap<(String, i32), Option<ActivityRecord>>,
    timers: BTreeMap<TimerSortKey, Option<TimerRecord>>,
    marks: HashMap<Mark, u64>,
}

impl<'a> Tx<'a> {
    pub fn new(view: &'a dyn StateView) -> Self {
        Tx {
            view,
            writes: Vec::new(),
            effects: Vec::new(),
            instances: HashMap::new(),
            inbox: BTreeMap::new(),
            inbox_cleared: HashMap::new(),
            history: HashMap::new(),
            activities: BTreeMap::new(),
            timers: BTreeMap::new(),
            marks: HashMap::new(),
        }
    }

    /// Ends the transaction: its writes (in order) and effects.
    pub fn finish(self) -> (Vec<Write>, Vec<Effect>) {
        (self.writes, self.effects)
    }

    pub fn effect(&mut self, effect: Effect) {
        if !self.effects.contains(&effect) {
            self.effects.push(effect);
        }
    }

    pub fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, Error> {
        match self.instances.get(instance_id) {
            Some(cached) => Ok(cached.clone()),
            None => self.view.instance(instance_id),
        }
    }

    pub fn put_instance(&mut self, record: &InstanceRecord) {
        self.status_change(&record.instance_id, &record.name, Some(record.status));
        self.instances
            .insert(record.instance_id.clone(), Some(record.clone()));
        self.writes.push(Write::PutInstance(record.clone()));
        self.effect(Effect::InstanceChanged {
            instance_id: record.instance_id.clone(),
        });
    }

    /// Records a status transition as an effect, if the status changes.
    fn status_change(&mut self, instance_id: &str, name: &str, to: Option<i32>) {
        let from = match self.instances.get(instance_id) {
            Some(cached) => cached.as_ref().map(|r| r.status),
            // A failed read here is reported by the apply's own reads of the same row.
            None => self
                .view
                .instance(instance_id)
                .ok()
                .flatten()
                .map(|r| r.status),
        };
        if from != to {
            self.effect(Effect::StatusChanged {
                instance_id: instance_id.to_string(),
                name: name.to_string(),
                from,
                to,
            });
        }
    }

    /// Deletes the record and every row that belongs to the instance.
    pub fn delete_instance(&mut self, record: &InstanceRecord) -> Result<(), Error> {
        let id = record.instance_id.clone();
        self.clear_run(record)?;
        self.clear_inbox(&id)?;
        self.status_change(&id, &record.name, None);
        self.instances.insert(id.clone(), None);
        self.writes.push(Write::DeleteInstance(id.clone()));
        self.effect(Effect::InstanceChanged { instance_id: id });
        Ok(())
    }

    /// Removes what belongs to the current run: history, pending activities and timers.
    pub fn clear_run(&mut self, record: &InstanceRecord) -> Result<(), Error> {
        let id = &record.instance_id;
        self.history.insert(id.clone(), (true, Vec::new()));
        self.writes.push(Write::DeleteHistory {
            instance_id: id.clone(),
        });
        self.clear_activities(id)?;
        for key in &record.timers {
            self.delete_timer(key);
        }
        Ok(())
    }

    pub fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, Error> {
        match self.history.get(instance_id) {
            Some((true, appended)) => Ok(appended.clone()),
            Some((false, appended)) => {
                let mut events = self.view.history(instance_id)?;
                events.extend(appended.iter().cloned());
                Ok(events)
            }
            None => self.view.history(instance_id),
        }
    }

    /// Appends one event to the history of the instance's current run.
    pub fn append_history(&mut self, record: &mut InstanceRecord, event: HistoryEvent) {
        let seq = record.history_len;
        record.history_len += 1;
        self.history
            .entry(record.instance_id.clone())
            .or_insert((false, Vec::new()))
            .1
            .push(event.clone());
        self.writes.push(Write::PutHistory {
            instance_id: record.instance_id.clone(),
            seq,
            event,
        });
    }

    pub fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, Error> {
        let mut merged: BTreeMap<u64, HistoryEvent> =
            if self.inbox_cleared.contains_key(instance_id) {
                BTreeMap::new()
            } else {
                self.view.inbox(instance_id)?.into_iter().collect()
            };
        let start = (instance_id.to_string(), 0);
        for ((id, seq), event) in self.inbox.range(start..) {
            if id != instance_id {
                break;
            }
            match event {
                Some(event) => merged.insert(*seq, event.clone()),
                None => merged.remove(seq),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Appends an event to the instance's inbox (the caller stores the record afterwards).
    pub fn push_inbox(&mut self, record: &mut InstanceRecord, event: HistoryEvent) {
        let seq = record.inbox_next_seq;
        record.inbox_next_seq += 1;
        record.inbox_len += 1;
        self.inbox
            .insert((record.instance_id.clone(), seq), Some(event.clone()));
        self.writes.push(Write::PutInbox {
            instance_id: record.instance_id.clone(),
            seq,
            event,
        });
    }

    pub fn delete_inbox(&mut self, record: &mut InstanceRecord, seq: u64) {
        record.inbox_len = record.inbox_len.saturating_sub(1);
        self.inbox.insert((record.instance_id.clone(), seq), None);
        self.writes.push(Write::DeleteInbox {
            instance_id: record.instance_id.clone(),
            seq,
        });
    }

    fn clear_inbox(&mut self, instance_id: &str) -> Result<(), Error> {
        for (seq, _) in self.inbox(instance_id)? {
            self.inbox.insert((instance_id.to_string(), seq), None);
            self.writes.push(Write::DeleteInbox {
                instance_id: instance_id.to_string(),
                seq,
            });
        }
        self.inbox_cleared.insert(instance_id.to_string(), ());
        Ok(())
    }

    pub fn activities(&self, instance_id: &str) -> Result<Vec<(i32, ActivityRecord)>, Error> {
        let mut merged: BTreeMap<i32, ActivityRecord> =
            self.view.activities(instance_id)?.into_iter().collect();
        let start = (instance_id.to_string(), i32::MIN);
        for ((id, task_id), record) in self.activities.range(start..) {
            if id != instance_id {
                break;
            }
            match record {
                Some(record) => merged.insert(*task_id, record.clone()),
                None => merged.remove(task_id),
            };
        }
        Ok(merged.into_iter().collect())
    }

    pub fn activity(
        &self,
        instance_id: &str,
        task_id: i32,
    ) -> Result<Option<ActivityRecord>, Error> {
        Ok(self
            .activities(instance_id)?
            .into_iter()
            .find(|(id, _)| *id == task_id)
            .map(|(_, record)| record))
    }

    pub fn put_activity(&mut self, instance_id: &str, task_id: i32, record: ActivityRecord) {
        self.activities
            .insert((instance_id.to_string(), task_id), Some(record.clone()));
        self.writes.push(Write::PutActivity {
            instance_id: instance_id.to_string(),
            task_id,
            record,
        });
        self.effect(Effect::ActivityScheduled {
            instance_id: instance_id.to_string(),
            task_id,
        });
    }

    pub fn delete_activity(&mut self, instance_id: &str, task_id: i32) {
        self.activities
            .insert((instance_id.to_string(), task_id), None);
        self.writes.push(Write::DeleteActivity {
            instance_id: instance_id.to_string(),
            task_id,
        });
    }

    fn clear_activities(&mut self, instance_id: &str) -> Result<(), Error> {
        for (task_id, _) in self.activities(instance_id)? {
            self.delete_activity(instance_id, task_id);
        }
        Ok(())
    }

    pub fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, Error> {
        match self.timers.get(&timer_sort_key(key)) {
            Some(cached) => Ok(cached.clone()),
            None => self.view.timer(key),
        }
    }

    /// Arms a durable timer and remembers it on the run that owns it.
    pub fn put_timer(&mut self, record: &mut InstanceRecord, key: TimerKey) {
        let value = TimerRecord {
            execution_id: record.execution_id.clone(),
        };
        self.timers
            .insert(timer_sort_key(&key), Some(value.clone()));
        record.timers.push(key.clone());
        self.effect(Effect::TimerArmed {
            fire_at: key.fire_at.unwrap_or_default(),
        });
        self.writes.push(Write::PutTimer { key, record: value });
    }

    pub fn delete_timer(&mut self, key: &TimerKey) {
        self.timers.insert(timer_sort_key(key), None);
        self.writes.push(Write::DeleteTimer { key: key.clone() });
    }

    pub fn mark(&self, mark: Mark) -> Result<u64, Error> {
        match self.marks.get(&mark) {
            Some(value) => Ok(*value),
            None => self.view.mark(mark),
        }
    }

    pub fn put_mark(&mut self, mark: Mark, value: u64) {
        self.marks.insert(mark, value);
        self.writes.push(Write::PutMark { mark, value });
    }

    /// Puts a message for another instance (or this one) in the outbox, in this batch:
    /// it is delivered after commit, by the leader, through the target's shard.
    pub fn send(&mut self, message: OutboxMessage) -> Result<(), Error> {
        let seq = self.mark(Mark::OutboxNext)?.max(1);
        self.put_mark(Mark::OutboxNext, seq + 1);
        self.writes.push(Write::PutOutbox { seq, message });
        self.effect(Effect::OutboxAppended);
        Ok(())
    }

    pub fn delete_outbox(&mut self, upto_seq: u64) {
        self.writes.push(Write::DeleteOutbox { upto_seq });
    }
}
