//! The writers of the run's evidence: `history.jsonl` (one [`Op`] per line, flushed, the
//! index strictly increasing, so a crash of the harness still leaves a readable prefix) and
//! `witness.jsonl` (one [`WitnessEntry`] per activity execution, fsynced before the worker
//! answers, so a recorded result always has its execution on disk first).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;

use crate::history::{Op, OpType};
use crate::state::WitnessEntry;

/// Harness wall clock, ns since the Unix epoch.
pub fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The append-only history writer; cheap to share behind an `Arc`.
pub struct Recorder {
    inner: Mutex<HistoryFile>,
    started: Instant,
}

struct HistoryFile {
    out: BufWriter<File>,
    next_index: u64,
}

impl Recorder {
    pub fn create(path: &Path) -> anyhow::Result<Arc<Recorder>> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Arc::new(Recorder {
            inner: Mutex::new(HistoryFile {
                out: BufWriter::new(file),
                next_index: 0,
            }),
            started: Instant::now(),
        }))
    }

    /// Monotonic time since the run started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Records an invocation.
    pub fn invoke(&self, process: u64, f: &str, value: Value, node: Option<u64>) {
        self.record(process, OpType::Invoke, f, value, node, None);
    }

    /// Records one line and returns its index. Write errors end the run (the history is
    /// the evidence; a run without it is worthless).
    pub fn record(
        &self,
        process: u64,
        kind: OpType,
        f: &str,
        value: Value,
        node: Option<u64>,
        error: Option<String>,
    ) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let op = Op {
            index: inner.next_index,
            process,
            kind,
            f: f.to_owned(),
            value,
            node,
            wall_ns: wall_ns(),
            mono_ns: self.started.elapsed().as_nanos() as u64,
            error,
        };
        let line = serde_json::to_string(&op).expect("an Op serializes");
        let written = writeln!(inner.out, "{line}").and_then(|_| inner.out.flush());
        if let Err(error) = written {
            panic!("cannot write the history: {error}");
        }
        inner.next_index += 1;
        op.index
    }
}

/// The witness log: every activity execution, fsynced line by line.
pub struct Witness {
    file: Mutex<File>,
}

impl Witness {
    pub fn create(path: &Path) -> anyhow::Result<Arc<Witness>> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Arc::new(Witness {
            file: Mutex::new(file),
        }))
    }

    /// Appends one entry and fsyncs it; only then may the worker answer.
    pub fn append(&self, entry: &WitnessEntry) -> std::io::Result<()> {
        let line = serde_json::to_string(entry).expect("a WitnessEntry serializes");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(file, "{line}")?;
        file.sync_data()
    }
}

/// Reads a JSONL file of `T`; a torn last line (the harness died mid-write) is skipped.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(item) => out.push(item),
            Err(_) if n + 1 == lines.len() => break,
            Err(error) => anyhow::bail!("{}:{}: {error}", path.display(), n + 1),
        }
    }
    Ok(out)
}
