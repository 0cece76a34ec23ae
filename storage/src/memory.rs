//! The in-memory store: the engine's [`MemoryTables`] behind a lock. Its exports are in the
//! format RocksDB's are ([`crate::snapshot`]), so snapshots move between the two.

use std::sync::Mutex;

use endure_engine::memory::MemoryTables;
use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey, TimerRecord};
use endure_engine::{Mark, StateView, Write};
use endure_proto::HistoryEvent;
use prost::Message;
use prost_types::Timestamp;

use crate::snapshot::{self, Dump};
use crate::{check_page, check_rows, keys, rocks, Error, OutboxRow, PendingActivity, Store};

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
    // The bound of RocksStore's reads, so both stores fail alike.
    fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, endure_engine::Error> {
        let rows = self.with(|inner| inner.tables.inbox(instance_id))?;
        check_rows(rocks::INBOX, instance_id, rows.len())?;
        Ok(rows)
    }
    fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, endure_engine::Error> {
        let rows = self.with(|inner| inner.tables.history(instance_id))?;
        check_rows(rocks::HISTORY, instance_id, rows.len())?;
        Ok(rows)
    }
    fn activities(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(i32, ActivityRecord)>, endure_engine::Error> {
        let rows = self.with(|inner| inner.tables.activities(instance_id))?;
        check_rows(rocks::ACTIVITIES, instance_id, rows.len())?;
        Ok(rows)
    }
    fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, endure_engine::Error> {
        self.with(|inner| inner.tables.timer(key))
    }
    fn mark(&self, mark: Mark) -> Result<u64, endure_engine::Error> {
        self.with(|inner| inner.tables.mark(mark))
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
        check_page(limit)?;
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
        check_page(limit)?;
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

    fn pending_activities_page(
        &self,
        after: Option<(&str, i32)>,
        limit: usize,
    ) -> Result<Vec<PendingActivity>, Error> {
        check_page(limit)?;
        // The RocksDB order, as in list_instances.
        let after = after.map(|(instance_id, task_id)| keys::activity(instance_id, task_id));
        Ok(self.with(|inner| {
            let mut rows: Vec<(Vec<u8>, PendingActivity)> = inner
                .tables
                .activities
                .iter()
                .map(|((id, task_id), record)| {
                    let key = keys::activity(id, *task_id);
                    (key, (id.clone(), *task_id, record.clone()))
                })
                .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows.into_iter().take(limit).map(|(_, row)| row).collect()
        }))
    }

    fn outbox_page(&self, after: u64, limit: usize) -> Result<Vec<OutboxRow>, Error> {
        check_page(limit)?;
        Ok(self.with(|inner| {
            let rows = inner.tables.outbox.range(after.saturating_add(1)..);
            rows.take(limit)
                .map(|(seq, message)| (*seq, message.clone()))
                .collect()
        }))
    }

    fn estimate_timers(&self) -> Result<Option<u64>, Error> {
        Ok(Some(self.with(|inner| inner.tables.timers.len() as u64)))
    }

    fn export(&self) -> Result<Vec<u8>, Error> {
        Ok(self
            .with(|inner| snapshot::dump_tables(&inner.tables, inner.applied_meta.as_deref()))
            .encode_to_vec())
    }

    fn import(&self, bytes: &[u8]) -> Result<(), Error> {
        let dump = Dump::decode_export(bytes)?;
        let (tables, applied_meta) = snapshot::load_tables(&dump)?;
        self.with(|inner| {
            inner.tables = tables;
            inner.applied_meta = applied_meta;
        });
        Ok(())
    }
}
