//! The scenario-file runner, in the manner of raft-rs `datadriven`.
//!
//! A file is a list of blocks. Each block is a command line, the lines it takes as input
//! (the actions of a turn's answer), a `----` line and the expected output, ended by a
//! blank line. Lines starting with `#` between blocks are comments. Run with
//! `ENDURE_REWRITE_SCENARIOS=1` to write the actual output into the files instead of
//! comparing it; review the diff before committing.
//!
//! Commands (`[...]` is optional; payloads are plain strings without spaces):
//! - `start <id> <name> [input=P] [in=S]`: a client starts a workflow (`in`: S seconds later).
//! - `raise <id> <event> [input=P]`, `suspend <id> [reason=P]`, `resume <id> [reason=P]`,
//!   `terminate <id> [output=P] [recursive]`, `purge <id> [recursive]`,
//!   `rerun <source> <event-id> <new-id> [input=P]`: the other client commands.
//! - `turn <id>` + actions: the dispatcher builds the next turn and the worker answers it.
//! - `hold <id> <label>`: the dispatcher builds the next turn; nobody answers yet.
//! - `answer <label> [turn-time=last]` + actions: the worker answers a held turn
//!   (`turn-time=last`: with the previous turn's time, as a clock that went back would).
//! - `activity-result <id> <task> [result=P] [failure=Type] [run=N]`: an activity's result,
//!   for the current run or the instance's N-th run.
//! - `advance <seconds>`: the clock moves on. `fire-timers [all]`: the timer service
//!   proposes every timer due by the next entry's time (`all`: every armed timer, as a
//!   leader whose clock runs ahead would).
//! - `stall <id>`: the dispatcher finds the instance's next turn too large for a worker.
//! - `next-turn <id>`, `history <id>`, `state <id>`: what the dispatcher would send, the
//!   committed history, and the instance's record (no command is applied).
//! - After every command that applies, the relay delivers the outbox as the leader does
//!   (`outbox: deliver #a..#b`, what the delivery did, `outbox: ack #b`), until it is
//!   empty. `outbox hold` stops that, `outbox release` delivers what waits and resumes it,
//!   `outbox redeliver` repeats the last delivery (as a new leader or a lost answer would).
//!
//! Actions (one per line after `turn` or `answer`): `schedule <id> <name> [input=P]`,
//! `timer <id> in=S|never`, `child <id> <child-id|-> [name=N] [input=P]`,
//! `send <id> <target> <event> [input=P]`, `complete <id> <STATUS> [result=P] [failure=Type]`,
//! `terminate <id> <target> [output=P] [recursive]`, `version-not-available <id>`,
//! `detached <id> <instance-id> <name> [input=P]`, `version <name> <patch,...>` (the
//! response's version, not an action).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use endure_engine::records::command::Kind;
use endure_engine::records::{
    CompleteActivity, FireTimers, Purge, RaiseEvent, Rerun, Resume, StallForPayload, StartInstance,
    Suspend, Terminate,
};
use endure_engine::work_items::Turn;

use super::answers::{failure, response};
use super::harness::{self, ts, Harness};

/// The folder of the scenario files.
pub fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// One block of a file: where it starts, its command and input lines, its expected output.
struct Block {
    line: usize,
    command: String,
    input: Vec<String>,
    expected: Vec<String>,
}

/// A file as comment text and blocks, in order, so a rewrite keeps the comments.
enum Part {
    Text(String),
    Block(Block),
}

fn parse(text: &str) -> Vec<Part> {
    let lines: Vec<&str> = text.lines().collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            parts.push(Part::Text(line.to_string()));
            i += 1;
            continue;
        }
        let start = i;
        let mut input = Vec::new();
        i += 1;
        while i < lines.len() && lines[i] != "----" {
            input.push(lines[i].trim().to_string());
            i += 1;
        }
        assert!(i < lines.len(), "line {}: block without ----", start + 1);
        i += 1;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        parts.push(Part::Block(Block {
            line: start + 1,
            command: line.to_string(),
            input,
            expected,
        }));
    }
    parts
}

/// Runs one scenario file (`<name>.txt`), comparing or, in rewrite mode, rewriting.
pub fn run_file(name: &str) {
    let path = folder().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let rewrite = std::env::var("ENDURE_REWRITE_SCENARIOS").is_ok_and(|v| v == "1");
    let mut session = Session::default();
    let mut rewritten = String::new();
    let mut failures = String::new();
    for part in parse(&text) {
        match part {
            Part::Text(line) => writeln!(rewritten, "{line}").unwrap(),
            Part::Block(block) => {
                let actual = session.execute(&block.command, &block.input);
                writeln!(rewritten, "{}", block.command).unwrap();
                for input in &block.input {
                    writeln!(rewritten, "{input}").unwrap();
                }
                writeln!(rewritten, "----").unwrap();
                for line in &actual {
                    writeln!(rewritten, "{line}").unwrap();
                }
                if actual != block.expected {
                    write!(
                        failures,
                        "\n{name}.txt:{}: {}\n--- expected\n{}\n--- actual\n{}\n",
                        block.line,
                        block.command,
                        block.expected.join("\n"),
                        actual.join("\n")
                    )
                    .unwrap();
                }
            }
        }
    }
    if rewrite {
        std::fs::write(&path, rewritten).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    } else if !failures.is_empty() {
        panic!("{failures}\n(ENDURE_REWRITE_SCENARIOS=1 rewrites the expected output)");
    }
}

/// Positional words and `key=value` options of one line.
pub struct Args {
    words: Vec<String>,
    options: HashMap<String, String>,
}

impl Args {
    /// Splits a line into words and options.
    pub fn of(line: &str) -> Args {
        let mut words = Vec::new();
        let mut options = HashMap::new();
        for token in line.split_whitespace() {
            match token.split_once('=') {
                Some((key, value)) => {
                    options.insert(key.to_string(), value.to_string());
                }
                None => words.push(token.to_string()),
            }
        }
        Args { words, options }
    }

    /// The `i`-th word; panics if there is none.
    pub fn word(&self, i: usize) -> String {
        self.words
            .get(i)
            .cloned()
            .unwrap_or_else(|| panic!("missing argument {i} in {:?}", self.words))
    }

    /// The `i`-th word, if there is one.
    pub fn word_or(&self, i: usize) -> Option<String> {
        self.words.get(i).cloned()
    }

    /// The `i`-th word as a number.
    pub fn number(&self, i: usize) -> i32 {
        self.word(i).parse().expect("a number")
    }

    /// The value of `key=...`, if given.
    pub fn option(&self, key: &str) -> Option<String> {
        self.options.get(key).cloned()
    }

    /// Whether the bare word `name` is given.
    pub fn flag(&self, name: &str) -> bool {
        self.words.iter().any(|w| w == name)
    }
}

/// The harness plus the turns held for a later answer.
struct Session {
    harness: Harness,
    held: HashMap<String, Turn>,
    /// Deliver the outbox after every command (`outbox hold` turns it off).
    relay: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            harness: Harness::default(),
            held: HashMap::new(),
            relay: true,
        }
    }
}

impl Session {
    /// Runs one block; then, unless held, the relay delivers what the outbox holds.
    fn execute(&mut self, line: &str, input: &[String]) -> Vec<String> {
        let word = Args::of(line).word(0);
        match (word.as_str(), Args::of(line).word_or(1).as_deref()) {
            ("outbox", Some("hold")) => {
                self.relay = false;
                return vec!["outbox held".to_string()];
            }
            ("outbox", Some("release")) => {
                self.relay = true;
                return self.harness.relay();
            }
            ("outbox", Some("redeliver")) => {
                let deliver = self.harness.last_delivery.clone().expect("a delivery");
                let applied = self.harness.run(Kind::DeliverMessages(deliver));
                return harness::render_applied(&applied);
            }
            _ => {}
        }
        let mut lines = self.execute_one(line, input);
        let reads = ["next-turn", "history", "state", "hold", "advance"];
        if self.relay && !reads.contains(&word.as_str()) {
            lines.extend(self.harness.relay());
        }
        lines
    }

    fn execute_one(&mut self, line: &str, input: &[String]) -> Vec<String> {
        let args = Args::of(line);
        let h = &mut self.harness;
        let kind = match args.word(0).as_str() {
            "start" => Kind::StartInstance(StartInstance {
                instance_id: args.word(1),
                name: args.word(2),
                input: args.option("input"),
                scheduled_start: args
                    .option("in")
                    .map(|s| ts(h.now_secs + s.parse::<i64>().expect("seconds"))),
                ..Default::default()
            }),
            "raise" => Kind::RaiseEvent(RaiseEvent {
                instance_id: args.word(1),
                name: args.word(2),
                input: args.option("input"),
                inbox_limit: args
                    .option("inbox-limit")
                    .map_or(0, |n| n.parse().expect("a count")),
            }),
            "suspend" => Kind::Suspend(Suspend {
                instance_id: args.word(1),
                reason: args.option("reason"),
            }),
            "resume" => Kind::Resume(Resume {
                instance_id: args.word(1),
                reason: args.option("reason"),
            }),
            "terminate" => Kind::Terminate(Terminate {
                instance_id: args.word(1),
                output: args.option("output"),
                recursive: args.flag("recursive"),
            }),
            "purge" => Kind::Purge(Purge {
                instance_id: args.word(1),
                recursive: args.flag("recursive"),
            }),
            "rerun" => Kind::Rerun(Rerun {
                source_instance_id: args.word(1),
                event_id: args.number(2),
                new_instance_id: args.word(3),
                overwrite_input: args.option("input").is_some(),
                input: args.option("input"),
            }),
            "activity-result" => {
                let id = args.word(1);
                let execution_id = match args.option("run") {
                    Some(run) => h.execution_id(&id, run.parse().expect("a run number")),
                    None => h.record(&id).execution_id,
                };
                Kind::CompleteActivity(CompleteActivity {
                    instance_id: id,
                    execution_id,
                    task_id: args.number(2),
                    result: args.option("result"),
                    failure_details: args.option("failure").map(failure),
                })
            }
            "fire-timers" if args.flag("all") => Kind::FireTimers(FireTimers {
                timers: h
                    .tables
                    .timers
                    .values()
                    .map(|(key, _)| key.clone())
                    .collect(),
            }),
            "fire-timers" => return harness::render_applied(&h.fire_due()),
            "stall" => {
                let record = h.record(&args.word(1));
                Kind::StallForPayload(StallForPayload {
                    instance_id: args.word(1),
                    execution_id: record.execution_id,
                    history_len: record.history_len,
                    description: "the turn is larger than a worker accepts".into(),
                })
            }
            "turn" => {
                let Some(turn) = h.next_turn(&args.word(1)) else {
                    return vec!["no turn ready".to_string()];
                };
                let now = h.now_secs;
                return harness::render_applied(&h.answer_with(&turn, response(&turn, input, now)));
            }
            "hold" => {
                let Some(turn) = h.next_turn(&args.word(1)) else {
                    return vec!["no turn ready".to_string()];
                };
                let shown = render_turn(h, &turn);
                self.held.insert(args.word(2), turn);
                return shown;
            }
            "answer" => {
                let label = args.word(1);
                let mut turn = self.held.get(&label).cloned().expect("a held turn");
                if args.option("turn-time").as_deref() == Some("last") {
                    let record = h.record(&turn.request.instance_id);
                    turn.turn_time = record.last_turn_at.expect("a previous turn");
                }
                let now = h.now_secs;
                return harness::render_applied(&h.answer_with(&turn, response(&turn, input, now)));
            }
            "advance" => {
                h.now_secs += i64::from(args.number(1));
                return vec![format!("now {}", harness::time(&Some(ts(h.now_secs))))];
            }
            "next-turn" => {
                return match h.next_turn(&args.word(1)) {
                    Some(turn) => render_turn(h, &turn),
                    None => vec!["no turn ready".to_string()],
                }
            }
            "history" => {
                let history = h.history(&args.word(1));
                if history.is_empty() {
                    return vec!["(empty)".to_string()];
                }
                return history.iter().map(harness::render_event).collect();
            }
            "state" => return render_state(h, &args.word(1)),
            other => panic!("unknown command {other}"),
        };
        harness::render_result(&h.try_run(kind))
    }
}

/// What the dispatcher would send: how much history, then each new event.
fn render_turn(h: &Harness, turn: &Turn) -> Vec<String> {
    let run = h.run_number(&turn.request.instance_id, &turn.execution_id);
    let mut lines = vec![format!(
        "turn of run {run} on {} past events; new events:",
        turn.request.past_events.len()
    )];
    lines.extend(
        turn.request
            .new_events
            .iter()
            .map(|e| format!("  {}", harness::render_event(e))),
    );
    lines
}

/// The instance's record: status, run, output, and what is pending.
fn render_state(h: &Harness, id: &str) -> Vec<String> {
    let Some(record) = h.tables.instances.get(id) else {
        return vec!["(no such instance)".to_string()];
    };
    let mut lines = vec![format!(
        "{} run {} history {} inbox {}",
        harness::status_name(record.status),
        h.run_number(id, &record.execution_id),
        record.history_len,
        record.inbox_len
    )];
    if record.input.is_some() || record.output.is_some() {
        lines.push(format!(
            "input={} output={}",
            record.input.as_deref().unwrap_or("-"),
            record.output.as_deref().unwrap_or("-")
        ));
    }
    if let Some(f) = &record.failure_details {
        lines.push(format!("failure={}: {}", f.error_type, f.error_message));
    }
    let activities: Vec<String> = h
        .tables
        .activities
        .keys()
        .filter(|(instance, _)| instance == id)
        .map(|(_, task)| format!("#{task}"))
        .collect();
    if !activities.is_empty() {
        lines.push(format!("pending activities {}", activities.join(" ")));
    }
    let timers: Vec<String> = record
        .timers
        .iter()
        .map(|key| format!("#{} {}", key.timer_id, harness::time(&key.fire_at)))
        .collect();
    if !timers.is_empty() {
        lines.push(format!("timers {}", timers.join(", ")));
    }
    if !record.children.is_empty() {
        lines.push(format!("children {}", record.children.join(" ")));
    }
    lines
}
