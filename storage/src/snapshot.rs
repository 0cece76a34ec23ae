//! The snapshot format both stores share: every row of every state table with its RocksDB
//! key ([`Dump`]), the named tables whose numbers the rows carry ([`Table`]), and the key of
//! the applied meta ([`APPLIED_META_KEY`]).
//!
//! Compatibility: the numbers of [`Table`], the column family names, the field tags of
//! [`Dump`] and [`DumpRow`] and [`APPLIED_META_KEY`] are on disk (RocksDB, exported
//! snapshots) and on the wire (InstallSnapshot), so a snapshot written by an older build
//! must still load. Never renumber or rename; only add (the tests below pin them).

use endure_engine::memory::MemoryTables;
use endure_engine::records::{ActivityRecord, InstanceRecord, OutboxMessage, TimerRecord};
use endure_engine::Write;
use endure_proto::HistoryEvent;
use prost::Message;

use crate::{keys, Error};

/// One state table: a RocksDB column family, and a number in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Table {
    /// Instance records, keyed by [`keys::instance`].
    Instances = 0,
    /// History events of each instance's current run, keyed by [`keys::sequenced`].
    History = 1,
    /// Events waiting for the next turn, keyed by [`keys::sequenced`].
    Inbox = 2,
    /// Scheduled activities without a result, keyed by [`keys::activity`].
    Activities = 3,
    /// Armed timers in due order, keyed by [`keys::timer`].
    Timers = 4,
    /// The state machine's applied meta: one row, at [`APPLIED_META_KEY`].
    Meta = 5,
    /// Messages to other instances not yet delivered, keyed by [`keys::outbox`].
    Outbox = 6,
    /// The counters of [`endure_engine::Mark`] (u64, big-endian), keyed by [`keys::mark`].
    Marks = 7,
}

/// Key of the one row of [`Table::Meta`]: the applied meta stored with every commit.
pub const APPLIED_META_KEY: &[u8] = b"applied";

impl Table {
    /// Every table, in number order (the order an export lists them in).
    pub const ALL: [Table; 8] = [
        Table::Instances,
        Table::History,
        Table::Inbox,
        Table::Activities,
        Table::Timers,
        Table::Meta,
        Table::Outbox,
        Table::Marks,
    ];

    /// The number a [`DumpRow`] stores.
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The table a [`DumpRow`] number names; `None` for a number no build ever wrote.
    pub fn from_number(number: u32) -> Option<Table> {
        Table::ALL
            .into_iter()
            .find(|table| table.number() == number)
    }

    /// The RocksDB column family that holds the table.
    pub const fn column_family(self) -> &'static str {
        match self {
            Table::Instances => "instances",
            Table::History => "history",
            Table::Inbox => "inbox",
            Table::Activities => "activities",
            Table::Timers => "timers",
            Table::Meta => "sm_meta",
            Table::Outbox => "outbox",
            Table::Marks => "marks",
        }
    }
}

/// A snapshot: the rows of every state table.
#[derive(Clone, PartialEq, Message)]
pub struct Dump {
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<DumpRow>,
}

/// One row of one table, with its RocksDB key.
#[derive(Clone, PartialEq, Message)]
pub struct DumpRow {
    /// A [`Table`] number ([`DumpRow::table`] names it).
    #[prost(uint32, tag = "1")]
    pub table: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

impl DumpRow {
    /// A row of `table`.
    pub fn new(table: Table, key: Vec<u8>, value: Vec<u8>) -> Self {
        DumpRow {
            table: table.number(),
            key,
            value,
        }
    }

    /// The table the row belongs to; a number no build wrote is a corrupt snapshot.
    pub fn table(&self) -> Result<Table, Error> {
        Table::from_number(self.table).ok_or_else(|| Error::Corruption {
            table: "snapshot",
            reason: format!("unknown table number {}", self.table),
        })
    }
}

impl Dump {
    /// Decodes an export ([`crate::Store::export`]).
    pub fn decode_export(bytes: &[u8]) -> Result<Dump, Error> {
        Dump::decode(bytes).map_err(|e| Error::Corruption {
            table: "snapshot",
            reason: e.to_string(),
        })
    }

    /// The applied meta the snapshot carries (its [`Table::Meta`] row), if any.
    pub fn applied_meta(&self) -> Option<&[u8]> {
        self.rows
            .iter()
            .rev()
            .find(|row| row.table == Table::Meta.number() && row.key == APPLIED_META_KEY)
            .map(|row| row.value.as_slice())
    }
}

/// The tables as RocksDB would hold them, so both stores share one snapshot format.
pub(crate) fn dump_tables(tables: &MemoryTables, applied_meta: Option<&[u8]>) -> Dump {
    let mut rows = Vec::new();
    for record in tables.instances.values() {
        rows.push(DumpRow::new(
            Table::Instances,
            keys::instance(&record.instance_id),
            record.encode_to_vec(),
        ));
    }
    for ((id, seq), event) in &tables.history {
        let key = keys::sequenced(id, *seq);
        rows.push(DumpRow::new(Table::History, key, event.encode_to_vec()));
    }
    for ((id, seq), event) in &tables.inbox {
        let key = keys::sequenced(id, *seq);
        rows.push(DumpRow::new(Table::Inbox, key, event.encode_to_vec()));
    }
    for ((id, task_id), record) in &tables.activities {
        let key = keys::activity(id, *task_id);
        rows.push(DumpRow::new(Table::Activities, key, record.encode_to_vec()));
    }
    for (key, record) in tables.timers.values() {
        let key = keys::timer(key);
        rows.push(DumpRow::new(Table::Timers, key, record.encode_to_vec()));
    }
    for (seq, message) in &tables.outbox {
        let key = keys::outbox(*seq).to_vec();
        rows.push(DumpRow::new(Table::Outbox, key, message.encode_to_vec()));
    }
    for (mark, value) in &tables.marks {
        let value = value.to_be_bytes().to_vec();
        rows.push(DumpRow::new(Table::Marks, keys::mark(*mark), value));
    }
    if let Some(meta) = applied_meta {
        let key = APPLIED_META_KEY.to_vec();
        rows.push(DumpRow::new(Table::Meta, key, meta.to_vec()));
    }
    Dump { rows }
}

/// The inverse of [`dump_tables`]: the tables and the applied meta of a snapshot.
pub(crate) fn load_tables(dump: &Dump) -> Result<(MemoryTables, Option<Vec<u8>>), Error> {
    let mut writes = Vec::new();
    let mut applied_meta = None;
    for row in &dump.rows {
        let table = row.table()?;
        match table {
            Table::Meta => applied_meta = Some(row.value.clone()),
            _ => writes.push(row_write(table, row)?),
        }
    }
    let mut tables = MemoryTables::default();
    tables.commit(&writes);
    Ok((tables, applied_meta))
}

/// The write that puts one row (of any table but [`Table::Meta`]) back.
fn row_write(table: Table, DumpRow { key, value, .. }: &DumpRow) -> Result<Write, Error> {
    let corrupt = || Error::Corruption {
        table: table.column_family(),
        reason: "undecodable row in snapshot".to_string(),
    };
    let write = match table {
        Table::Instances => {
            Write::PutInstance(InstanceRecord::decode(value.as_slice()).map_err(|_| corrupt())?)
        }
        Table::History | Table::Inbox => {
            let (instance_id, rest) = keys::parse_instance(key).ok_or_else(corrupt)?;
            let seq = keys::parse_seq(rest).ok_or_else(corrupt)?;
            let event = HistoryEvent::decode(value.as_slice()).map_err(|_| corrupt())?;
            if table == Table::History {
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
        Table::Activities => {
            let (instance_id, rest) = keys::parse_instance(key).ok_or_else(corrupt)?;
            Write::PutActivity {
                instance_id,
                task_id: keys::parse_task_id(rest).ok_or_else(corrupt)?,
                record: ActivityRecord::decode(value.as_slice()).map_err(|_| corrupt())?,
            }
        }
        Table::Timers => Write::PutTimer {
            key: keys::parse_timer(key)?,
            record: TimerRecord::decode(value.as_slice()).map_err(|_| corrupt())?,
        },
        Table::Outbox => Write::PutOutbox {
            seq: keys::parse_outbox(key).ok_or_else(corrupt)?,
            message: OutboxMessage::decode(value.as_slice()).map_err(|_| corrupt())?,
        },
        Table::Marks => Write::PutMark {
            mark: keys::parse_mark(key).ok_or_else(corrupt)?,
            value: mark_value(value).ok_or_else(corrupt)?,
        },
        Table::Meta => unreachable!("the applied meta is not a table write"),
    };
    Ok(write)
}

/// A counter's stored value (u64, big-endian).
pub(crate) fn mark_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers and names are on disk and on the wire: changing one breaks every
    /// existing data directory and snapshot.
    #[test]
    fn table_numbers_and_names_are_pinned() {
        let pinned = [
            (Table::Instances, 0, "instances"),
            (Table::History, 1, "history"),
            (Table::Inbox, 2, "inbox"),
            (Table::Activities, 3, "activities"),
            (Table::Timers, 4, "timers"),
            (Table::Meta, 5, "sm_meta"),
            (Table::Outbox, 6, "outbox"),
            (Table::Marks, 7, "marks"),
        ];
        for (table, number, name) in pinned {
            assert_eq!(table.number(), number, "{table:?}");
            assert_eq!(table.column_family(), name, "{table:?}");
            assert_eq!(Table::from_number(number), Some(table));
        }
        assert_eq!(Table::ALL.map(|t| t.number()), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Table::from_number(8), None);
        assert_eq!(APPLIED_META_KEY, b"applied");
    }

    /// The protobuf layout of a dump, byte for byte (proto3 leaves out table number 0).
    #[test]
    fn dump_bytes_are_pinned() {
        let dump = Dump {
            rows: vec![
                DumpRow::new(Table::Instances, b"k".to_vec(), b"v".to_vec()),
                DumpRow::new(Table::Meta, APPLIED_META_KEY.to_vec(), b"m".to_vec()),
            ],
        };
        let bytes = dump.encode_to_vec();
        #[rustfmt::skip]
        let expected = [
            0x0a, 0x06, 0x12, 0x01, b'k', 0x1a, 0x01, b'v',
            0x0a, 0x0e, 0x08, 0x05, 0x12, 0x07, b'a', b'p', b'p', b'l', b'i', b'e', b'd',
            0x1a, 0x01, b'm',
        ];
        assert_eq!(bytes, expected);
        let back = Dump::decode_export(&bytes).unwrap();
        assert_eq!(back, dump);
        assert_eq!(back.applied_meta(), Some(&b"m"[..]));
    }

    #[test]
    fn an_unknown_table_number_is_corruption() {
        let dump = Dump {
            rows: vec![DumpRow {
                table: 9,
                key: b"k".to_vec(),
                value: Vec::new(),
            }],
        };
        let error = load_tables(&dump).unwrap_err();
        assert!(
            error.to_string().contains("unknown table number 9"),
            "{error}"
        );
    }
}
