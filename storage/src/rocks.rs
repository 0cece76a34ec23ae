//! The RocksDB store: one column family per table, values are protobuf records, and every
//! apply is one `WriteBatch` together with the applied meta.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use endure_engine::records::{ActivityRecord, InstanceRecord, TimerKey, TimerRecord};
use endure_engine::{Mark, StateView, Write};
use endure_proto::HistoryEvent;
use prost::Message;
use prost_types::Timestamp;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};

use crate::keys;
use crate::snapshot::{mark_value, Dump, DumpRow, Table, APPLIED_META_KEY};
use crate::{check_page, check_rows, Error, OutboxRow, PendingActivity, Store};

pub const INSTANCES: &str = Table::Instances.column_family();
pub const HISTORY: &str = Table::History.column_family();
pub const INBOX: &str = Table::Inbox.column_family();
pub const ACTIVITIES: &str = Table::Activities.column_family();
pub const TIMERS: &str = Table::Timers.column_family();
pub const SM_META: &str = Table::Meta.column_family();
pub const OUTBOX: &str = Table::Outbox.column_family();
pub const MARKS: &str = Table::Marks.column_family();

/// The state machine's column families, in [`Table`] number order.
pub const STATE_COLUMN_FAMILIES: [&str; 8] = [
    INSTANCES, HISTORY, INBOX, ACTIVITIES, TIMERS, SM_META, OUTBOX, MARKS,
];

/// Memtable memory all column families of a node share (every shard's tables and logs).
const DB_WRITE_BUFFER_BYTES: usize = 256 << 20;

/// Key in the default column family of the shard count the directory was created with.
const SHARDS_KEY: &[u8] = b"endure/shards";

/// The name of one shard's column family `table`: shard 0 keeps the bare name (so a
/// directory from before shards is shard 0 of a one-shard node), shard `n` is `s{n}/table`.
pub fn shard_column_family(shard: u32, table: &str) -> Cow<'_, str> {
    match shard {
        0 => Cow::Borrowed(table),
        n => Cow::Owned(format!("s{n}/{table}")),
    }
}

/// Opens (creating if missing) the node's database with, for every one of `shards`
/// shards, the state machine's column families plus `extra` ones (the Raft log's). All
/// shards share one database and so one write-ahead log: concurrent synced writes of
/// different shards join one RocksDB write group and share its fsync.
///
/// The shard count is fixed when the directory is created and stored in it; a directory
/// written before shards existed holds one. Opening it with another count is
/// [`Error::ShardCountMismatch`]. A database that RocksDB cannot open or verify is an
/// error: the node never starts on half a state.
pub fn open_db(path: &Path, shards: u32, extra: &[&str]) -> Result<Arc<DB>, Error> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_paranoid_checks(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options.set_db_write_buffer_size(DB_WRITE_BUFFER_BYTES);
    let stored = stored_shard_count(path)?;
    if let Some(stored) = stored.filter(|stored| *stored != shards) {
        return Err(Error::ShardCountMismatch {
            path: path.display().to_string(),
            stored,
            asked: shards,
        });
    }
    let mut names = Vec::new();
    for shard in 0..shards {
        for table in STATE_COLUMN_FAMILIES.iter().chain(extra.iter()) {
            names.push(shard_column_family(shard, table).into_owned());
        }
    }
    let families = names
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&options, path, families)?;
    if stored.is_none() {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.put_opt(SHARDS_KEY, shards.to_be_bytes(), &sync)?;
    }
    Ok(Arc::new(db))
}

/// The shard count an existing database was created with (one for a database written
/// before shards); `None` when there is no database at `path` yet.
pub fn stored_shard_count(path: &Path) -> Result<Option<u32>, Error> {
    let options = Options::default();
    if DB::list_cf(&options, path).is_err() {
        return Ok(None);
    }
    let db = DB::open_for_read_only(&options, path, false)?;
    let Some(bytes) = db.get(SHARDS_KEY)? else {
        return Ok(Some(1));
    };
    let bytes: [u8; 4] = bytes.as_slice().try_into().map_err(|_| Error::Corruption {
        table: "default",
        reason: "the stored shard count is not 4 bytes".into(),
    })?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

/// Raw `(key, value)` rows of one table, in key order.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The state machine's tables in a shared RocksDB handle.
#[derive(Clone)]
pub struct RocksStore {
    db: Arc<DB>,
    /// The shard whose tables these are.
    shard: u32,
}

impl RocksStore {
    /// The tables of `shard` in a database [`open_db`] opened with that shard.
    pub fn new(db: Arc<DB>, shard: u32) -> Self {
        RocksStore { db, shard }
    }

    fn cf(&self, name: &'static str) -> &ColumnFamily {
        let name = shard_column_family(self.shard, name);
        self.db
            .cf_handle(&name)
            .unwrap_or_else(|| panic!("column family {name} is opened by open_db"))
    }

    fn get<M: Message + Default>(
        &self,
        table: &'static str,
        key: &[u8],
    ) -> Result<Option<M>, Error> {
        match self.db.get_cf(self.cf(table), key)? {
            Some(bytes) => decode(table, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The rows of one instance in `table`, in key order; [`Error::TooManyRows`] rather
    /// than a part of them when there are more than [`MAX_SCAN_ROWS`].
    fn scan_instance(&self, table: &'static str, instance_id: &str) -> Result<Rows, Error> {
        let prefix = keys::instance(instance_id);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(prefix_end(&prefix));
        let mode = IteratorMode::From(&prefix, Direction::Forward);
        let mut rows = Vec::new();
        for row in self.db.iterator_cf_opt(self.cf(table), options, mode) {
            let (key, value) = row?;
            rows.push((key.to_vec(), value.to_vec()));
            check_rows(table, instance_id, rows.len())?;
        }
        Ok(rows)
    }

    fn write_one(&self, batch: &mut WriteBatch, write: &Write) {
        match write {
            Write::PutInstance(record) => batch.put_cf(
                self.cf(INSTANCES),
                keys::instance(&record.instance_id),
                record.encode_to_vec(),
            ),
            Write::DeleteInstance(id) => batch.delete_cf(self.cf(INSTANCES), keys::instance(id)),
            Write::PutHistory {
                instance_id,
                seq,
                event,
            } => batch.put_cf(
                self.cf(HISTORY),
                keys::sequenced(instance_id, *seq),
                event.encode_to_vec(),
            ),
            Write::DeleteHistory { instance_id } => {
                let prefix = keys::instance(instance_id);
                batch.delete_range_cf(self.cf(HISTORY), &prefix, &prefix_end(&prefix));
            }
            Write::PutInbox {
                instance_id,
                seq,
                event,
            } => batch.put_cf(
                self.cf(INBOX),
                keys::sequenced(instance_id, *seq),
                event.encode_to_vec(),
            ),
            Write::DeleteInbox { instance_id, seq } => {
                batch.delete_cf(self.cf(INBOX), keys::sequenced(instance_id, *seq))
            }
            Write::PutActivity {
                instance_id,
                task_id,
                record,
            } => batch.put_cf(
                self.cf(ACTIVITIES),
                keys::activity(instance_id, *task_id),
                record.encode_to_vec(),
            ),
            Write::DeleteActivity {
                instance_id,
                task_id,
            } => batch.delete_cf(self.cf(ACTIVITIES), keys::activity(instance_id, *task_id)),
            Write::PutTimer { key, record } => {
                batch.put_cf(self.cf(TIMERS), keys::timer(key), record.encode_to_vec())
            }
            Write::DeleteTimer { key } => batch.delete_cf(self.cf(TIMERS), keys::timer(key)),
            Write::PutOutbox { seq, message } => {
                batch.put_cf(self.cf(OUTBOX), keys::outbox(*seq), message.encode_to_vec())
            }
            Write::DeleteOutbox { upto_seq } => {
                // delete_range excludes its end key, so the row at `upto_seq` goes on its own.
                batch.delete_range_cf(self.cf(OUTBOX), keys::outbox(0), keys::outbox(*upto_seq));
                batch.delete_cf(self.cf(OUTBOX), keys::outbox(*upto_seq));
            }
            Write::PutMark { mark, value } => {
                batch.put_cf(self.cf(MARKS), keys::mark(*mark), value.to_be_bytes())
            }
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn decode<M: Message + Default>(table: &'static str, bytes: &[u8]) -> Result<M, Error> {
    M::decode(bytes).map_err(|e| Error::Corruption {
        table,
        reason: e.to_string(),
    })
}

fn corrupt_key(table: &'static str) -> Error {
    Error::Corruption {
        table,
        reason: "malformed key".to_string(),
    }
}

impl StateView for RocksStore {
    fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>, endure_engine::Error> {
        Ok(self.get(INSTANCES, &keys::instance(instance_id))?)
    }

    fn inbox(&self, instance_id: &str) -> Result<Vec<(u64, HistoryEvent)>, endure_engine::Error> {
        Ok(sequenced_rows(
            self.scan_instance(INBOX, instance_id)?,
            INBOX,
        )?)
    }

    fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, endure_engine::Error> {
        let rows = sequenced_rows(self.scan_instance(HISTORY, instance_id)?, HISTORY)?;
        Ok(rows.into_iter().map(|(_, event)| event).collect())
    }

    fn activities(
        &self,
        instance_id: &str,
    ) -> Result<Vec<(i32, ActivityRecord)>, endure_engine::Error> {
        let mut activities = Vec::new();
        for (key, value) in self.scan_instance(ACTIVITIES, instance_id)? {
            let (_, rest) = keys::parse_instance(&key).ok_or_else(|| corrupt_key(ACTIVITIES))?;
            let task_id = keys::parse_task_id(rest).ok_or_else(|| corrupt_key(ACTIVITIES))?;
            activities.push((task_id, decode(ACTIVITIES, &value)?));
        }
        Ok(activities)
    }

    fn timer(&self, key: &TimerKey) -> Result<Option<TimerRecord>, endure_engine::Error> {
        Ok(self.get(TIMERS, &keys::timer(key))?)
    }

    fn mark(&self, mark: Mark) -> Result<u64, endure_engine::Error> {
        match self
            .db
            .get_pinned_cf(self.cf(MARKS), keys::mark(mark))
            .map_err(Error::from)?
        {
            Some(bytes) => Ok(mark_value(&bytes).ok_or_else(|| corrupt_key(MARKS))?),
            None => Ok(0),
        }
    }
}

fn sequenced_rows(rows: Rows, table: &'static str) -> Result<Vec<(u64, HistoryEvent)>, Error> {
    rows.into_iter()
        .map(|(key, value)| {
            let (_, rest) = keys::parse_instance(&key).ok_or_else(|| corrupt_key(table))?;
            let seq = keys::parse_seq(rest).ok_or_else(|| corrupt_key(table))?;
            Ok((seq, decode(table, &value)?))
        })
        .collect()
}

impl Store for RocksStore {
    fn commit(&self, writes: &[Write], applied_meta: &[u8]) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        for write in writes {
            self.write_one(&mut batch, write);
        }
        batch.put_cf(self.cf(SM_META), APPLIED_META_KEY, applied_meta);
        // Not fsynced on its own: the Raft log shares this database's WAL, and every log
        // append is fsynced, which also makes all earlier WAL records (this batch) durable.
        // A batch lost before that is re-applied from the log, which still holds it.
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    fn applied_meta(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.db.get_cf(self.cf(SM_META), APPLIED_META_KEY)?)
    }

    fn due_timers(&self, now: &Timestamp, limit: usize) -> Result<Vec<TimerKey>, Error> {
        check_page(limit)?;
        let mut due = Vec::new();
        for row in self.db.iterator_cf(self.cf(TIMERS), IteratorMode::Start) {
            let (key, _) = row?;
            let timer = keys::parse_timer(&key)?;
            if endure_engine::time::after(&timer.fire_at.unwrap_or_default(), now)
                || due.len() >= limit
            {
                break;
            }
            due.push(timer);
        }
        Ok(due)
    }

    fn next_timer(&self) -> Result<Option<Timestamp>, Error> {
        match self
            .db
            .iterator_cf(self.cf(TIMERS), IteratorMode::Start)
            .next()
        {
            Some(row) => Ok(keys::parse_timer(&row?.0)?.fire_at),
            None => Ok(None),
        }
    }

    fn list_instances(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, Error> {
        check_page(limit)?;
        let start = after.map(keys::instance).unwrap_or_default();
        let mut records = Vec::new();
        let mode = IteratorMode::From(&start, Direction::Forward);
        for row in self.db.iterator_cf(self.cf(INSTANCES), mode) {
            let (key, value) = row?;
            if after.is_some() && key.as_ref() == start.as_slice() {
                continue;
            }
            if records.len() >= limit {
                break;
            }
            records.push(decode(INSTANCES, &value)?);
        }
        Ok(records)
    }

    fn pending_activities_page(
        &self,
        after: Option<(&str, i32)>,
        limit: usize,
    ) -> Result<Vec<PendingActivity>, Error> {
        check_page(limit)?;
        let start = after
            .map(|(instance_id, task_id)| keys::activity(instance_id, task_id))
            .unwrap_or_default();
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut activities = Vec::new();
        for row in self.db.iterator_cf(self.cf(ACTIVITIES), mode) {
            let (key, value) = row?;
            if after.is_some() && key.as_ref() == start.as_slice() {
                continue;
            }
            if activities.len() >= limit {
                break;
            }
            let (instance_id, rest) =
                keys::parse_instance(&key).ok_or_else(|| corrupt_key(ACTIVITIES))?;
            let task_id = keys::parse_task_id(rest).ok_or_else(|| corrupt_key(ACTIVITIES))?;
            activities.push((instance_id, task_id, decode(ACTIVITIES, &value)?));
        }
        Ok(activities)
    }

    fn outbox_page(&self, after: u64, limit: usize) -> Result<Vec<OutboxRow>, Error> {
        check_page(limit)?;
        let start = keys::outbox(after.saturating_add(1));
        let mode = IteratorMode::From(&start, Direction::Forward);
        let mut rows = Vec::new();
        for row in self.db.iterator_cf(self.cf(OUTBOX), mode) {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = row?;
            let seq = keys::parse_outbox(&key).ok_or_else(|| corrupt_key(OUTBOX))?;
            rows.push((seq, decode(OUTBOX, &value)?));
        }
        Ok(rows)
    }

    fn estimate_timers(&self) -> Result<Option<u64>, Error> {
        Ok(self
            .db
            .property_int_value_cf(self.cf(TIMERS), "rocksdb.estimate-num-keys")?)
    }

    fn export(&self) -> Result<Vec<u8>, Error> {
        let snapshot = self.db.snapshot();
        let mut dump = Dump::default();
        for table in Table::ALL {
            let cf = self.cf(table.column_family());
            for row in snapshot.iterator_cf(cf, IteratorMode::Start) {
                let (key, value) = row?;
                dump.rows
                    .push(DumpRow::new(table, key.to_vec(), value.to_vec()));
            }
        }
        Ok(dump.encode_to_vec())
    }

    fn import(&self, bytes: &[u8]) -> Result<(), Error> {
        let dump = Dump::decode_export(bytes)?;
        let mut batch = WriteBatch::default();
        for name in STATE_COLUMN_FAMILIES {
            batch.delete_range_cf(self.cf(name), Vec::<u8>::new(), vec![u8::MAX; 512]);
        }
        for row in dump.rows {
            let table = row.table()?;
            batch.put_cf(self.cf(table.column_family()), row.key, row.value);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }
}
