//! The in-memory store: the engine's [`MemoryTables`] behind a lock, plus the snapshot
//! format both stores share ([`Dump`]: every row of every table with its RocksDB key).

use std::sync::Mutex;

use endure_engine::memory::MemoryTables;
use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey, TimerRecord};
use endure_engine::{StateView, Write};
use endure_proto::HistoryEvent;
use prost::Message;
use prost_types::Timestamp;

use crate::{keys, Error, Store};

/// A snapshot: the rows of every state table.
#[derive(Clone, PartialEq, Message)]
pub struct Dump {
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<DumpRow>,
}

/// One row; `table` indexes [`crate::rocks::STATE_COLUMN_FAMILIES`].
#[derive(Clone, PartialEq, Message)]
pub struct DumpRow {
    #[prost(uint32, tag = "1")]
    pub table: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    tables: MemoryTables,
    applied_meta: Option<Vec<u8>>,
}

/// Tables in memory: fast, lost on exit. For tests.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("memory store lock poisoned"))
    }
}

impl StateView for MemoryStore {
    fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, endure_engine::Error> {
        self.with(|inner| inner.tables.instance(instance_id))
    }
    fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, endure_engine::Error> {
        self.with(|inner| inner.tables.inbox(instance_id))
    }
    fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, endure_engine::Error> {
        self.with(|inner| inner.tables.history(instance_id))
    }
    fn activities(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(i32, ActivityRecord)>, endure_engine::Error> {
        self.with(|inner| inner.tables.activities(instance_id))
    }
    fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, endure_engine::Error> {
        self.with(|inner| inner.tables.timer(key))
    }
}

impl Store for MemoryStore {
    fn commit(&self, writes: &[Write], applied_meta: &[u8]) -> Result<(), Error> {
        self.with(|inner| {
            inner.tables.commit(writes);
            inner.applied_meta = Some(applied_meta.to_vec());
        });
        Ok(())
    }

    fn applied_meta(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.with(|inner| inner.applied_meta.clone()))
    }

    fn due_timers(&self, now: &Timestamp, limit: usize) -> Result<Vec<TimerKey>, Error> {
        Ok(self.with(|inner| {
            inner
                .tables
                .due_timers(now)
                .into_iter()
                .take(limit)
                .collect()
        }))
    }

    fn next_timer(&self) -> Result<Option<Timestamp>, Error> {
        Ok(self.with(|inner| {
            inner
                .tables
                .timers
                .values()
                .next()
                .and_then(|(key, _)| key.fire_at)
        }))
    }

    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, Error> {
        // The RocksDB order: length-prefixed keys, so shorter IDs first.
        let after = after.map(keys::instance);
        Ok(self.with(|inner| {
            let mut records: Vec<(Vec<u8>, &InstanceRecord)> = inner
                .tables
                .instances
                .values()
                .map(|record| (keys::instance(&record.instance_id), record))
                .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
                .collect();
            records.sort_by(|a, b| a.0.cmp(&b.0));
            records
                .into_iter()
                .take(limit)
                .map(|(_, record)| record.clone())
                .collect()
        }))
    }

    fn pending_activities(&self) -> Result<Vec<(String, i32, ActivityRecord)>, Error> {
        Ok(self.with(|inner| {
            inner
                .tables
                .activities
                .iter()
                .map(|((id, task_id), record)| (id.clone(), *task_id, record.clone()))
                .collect()
        }))
    }

    fn estimate_timers(&self) -> Result<Option<u64>, Error> {
        Ok(Some(self.with(|inner| inner.tables.timers.len() as u64)))
    }

    fn export(&self) -> Result<Vec<u8>, Error> {
        Ok(self
            .with(|inner| dump_tables(&inner.tables, inner.applied_meta.as_deref()))
            .encode_to_vec())
    }

    fn import(&self, bytes: &[u8]) -> Result<(), Error> {
        let dump = Dump::decode(bytes).map_err(|e| Error::Corruption {
            table: "snapshot",
            reason: e.to_string(),
        })?;
        let (tables, applied_meta) = load_tables(&dump)?;
        self.with(|inner| {
            inner.tables = tables;
            inner.applied_meta = applied_meta;
        });
        Ok(())
    }
}

fn row(table: u32, key: Vec<u8>, value: Vec<u8>) -> DumpRow {
    DumpRow { table, key, value }
}

/// The tables as RocksDB would hold them, so both stores share one snapshot format.
fn dump_tables(tables: &MemoryTables, applied_meta: Option<&[u8]>) -> Dump {
    let mut rows = Vec::new();
    for record in tables.instances.values() {
        rows.push(row(
            0,
            keys::instance(&record.instance_id),
            record.encode_to_vec(),
        ));
    }
    for ((id, seq), event) in &tables.history {
        rows.push(row(1, keys::sequenced(id, *seq), event.encode_to_vec()));
    }
    for ((id, seq), event) in &tables.inbox {
        rows.push(row(2, keys::sequenced(id, *seq), event.encode_to_vec()));
    }
    for ((id, task_id), record) in &tables.activities {
        rows.push(row(3, keys::activity(id, *task_id), record.encode_to_vec()));
    }
    for (key, record) in tables.timers.values() {
        rows.push(row(4, keys::timer(key), record.encode_to_vec()));
    }
    if let Some(meta) = applied_meta {
        rows.push(row(5, b"applied".to_vec(), meta.to_vec()));
    }
    Dump { rows }
}

fn load_tables(dump: &Dump) -> Result<(MemoryTables, Option<Vec<u8>>), Error> {
    let corrupt = |table: &'static str| Error::Corruption {
        table,
        reason: "undecodable row in snapshot".to_string(),
    };
    let mut writes = Vec::new();
    let mut applied_meta = None;
    for DumpRow { table, key, value } in &dump.rows {
        let write = match table {
            0 => Write::PutInstance(
                InstanceRecord::decode(value.as_slice()).map_err(|_| corrupt("instances"))?,
            ),
            1 | 2 => {
                let (instance_id, rest) =
                    keys::parse_instance(key).ok_or_else(|| corrupt("history"))?;
                let seq = keys::parse_seq(rest).ok_or_else(|| corrupt("history"))?;
                let event =
                    HistoryEvent::decode(value.as_slice()).map_err(|_| corrupt("history"))?;
                if *table == 1 {
                    Write::PutHistory {
                        instance_id,
                        seq,
                        event,
                    }
                } else {
                    Write::PutInbox {
                        instance_id,
                        seq,
                        event,
                    }
                }
            }
            3 => {
                let (instance_id, rest) =
                    keys::parse_instance(key).ok_or_else(|| corrupt("activities"))?;
                let task_id = keys::parse_task_id(rest).ok_or_else(|| corrupt("activities"))?;
                let record =
                    ActivityRecord::decode(value.as_slice()).map_err(|_| corrupt("activities"))?;
                Write::PutActivity {
                    instance_id,
                    task_id,
                    record,
                }
            }
            4 => Write::PutTimer {
                key: keys::parse_timer(key)?,
                record: TimerRecord::decode(value.as_slice()).map_err(|_| corrupt("timers"))?,
            },
            _ => {
                applied_meta = Some(value.clone());
                continue;
            }
        };
        writes.push(write);
    }
    let mut tables = MemoryTables::default();
    tables.commit(&writes);
    Ok((tables, applied_meta))
}
