//! Completion tokens: the fence a worker's answer must carry back.
//!
//! Every work item the dispatcher sends carries a token that no other dispatcher (an
//! earlier leader's, or this node's before a restart) has issued: the dispatcher's random
//! epoch and a sequence number. A late answer to an old dispatch therefore never matches a
//! new one. An activity's token also names the run (execution ID) that scheduled it, so an
//! answer that arrives after a restart, when nothing is in flight in memory, is still fenced
//! to its run by the engine.
//!
//! On the wire a token is a string: `t<epoch>.<seq>` for a turn and
//! `a<epoch>.<seq>:<execution id>` for an activity. Workers treat it as opaque.

use std::fmt;

/// Characters of the random epoch.
const EPOCH_CHARS: usize = 12;

/// Issues the tokens of one dispatcher.
#[derive(Debug)]
pub struct Minter {
    epoch: String,
    next_seq: u64,
}

impl Minter {
    /// A minter with a fresh random epoch.
    pub fn random() -> Minter {
        let mut epoch = uuid::Uuid::new_v4().simple().to_string();
        epoch.truncate(EPOCH_CHARS);
        Minter::with_epoch(epoch)
    }

    /// A minter with a given epoch (tests: two minters with different epochs stand for a
    /// dispatcher before and after a restart).
    pub fn with_epoch(epoch: impl Into<String>) -> Minter {
        Minter {
            epoch: epoch.into(),
            next_seq: 0,
        }
    }

    /// The token of a turn sent now.
    pub fn turn(&mut self) -> CompletionToken {
        CompletionToken::Turn(self.stamp())
    }

    /// The token of an activity of the run `execution_id`, sent now.
    pub fn activity(&mut self, execution_id: &str) -> CompletionToken {
        CompletionToken::Activity {
            stamp: self.stamp(),
            execution_id: execution_id.to_string(),
        }
    }

    fn stamp(&mut self) -> Stamp {
        self.next_seq += 1;
        Stamp {
            epoch: self.epoch.clone(),
            seq: self.next_seq,
        }
    }
}

/// Which dispatcher issued a token, and when.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub epoch: String,
    pub seq: u64,
}

/// A parsed completion token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompletionToken {
    Turn(Stamp),
    Activity {
        stamp: Stamp,
        /// The run that scheduled the activity.
        execution_id: String,
    },
}

impl CompletionToken {
    /// Reads a token a worker sent back. `None` for anything this server never issues
    /// (including the empty token older SDKs send, see [`CompletionToken::accepts`]).
    pub fn parse(text: &str) -> Option<CompletionToken> {
        let (kind, rest) = text.split_at_checked(1)?;
        match kind {
            "t" => Some(CompletionToken::Turn(parse_stamp(rest)?)),
            "a" => {
                let (stamp, execution_id) = rest.split_once(':')?;
                Some(CompletionToken::Activity {
                    stamp: parse_stamp(stamp)?,
                    execution_id: execution_id.to_string(),
                })
            }
            _ => None,
        }
    }

    /// Whether an answer carrying `presented` answers the dispatch this token was sent
    /// with. The empty token matches: older SDKs (the JS SDK) do not echo tokens, and the
    /// dispatcher then matches by instance (turns) or instance and task (activities).
    pub fn accepts(&self, presented: &str) -> bool {
        presented.is_empty() || CompletionToken::parse(presented).as_ref() == Some(self)
    }

    /// The run an activity token is fenced to.
    pub fn execution_id(&self) -> Option<&str> {
        match self {
            CompletionToken::Turn(_) => None,
            CompletionToken::Activity { execution_id, .. } => Some(execution_id),
        }
    }
}

fn parse_stamp(text: &str) -> Option<Stamp> {
    let (epoch, seq) = text.split_once('.')?;
    if epoch.is_empty() {
        return None;
    }
    Some(Stamp {
        epoch: epoch.to_string(),
        seq: seq.parse().ok()?,
    })
}

impl fmt::Display for CompletionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompletionToken::Turn(stamp) => write!(f, "t{}.{}", stamp.epoch, stamp.seq),
            CompletionToken::Activity {
                stamp,
                execution_id,
            } => write!(f, "a{}.{}:{execution_id}", stamp.epoch, stamp.seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_their_wire_form() {
        let mut minter = Minter::with_epoch("e1");
        let turn = minter.turn();
        let activity = minter.activity("run-7:with:colons");
        assert_eq!(turn.to_string(), "te1.1");
        assert_eq!(activity.to_string(), "ae1.2:run-7:with:colons");
        assert_eq!(CompletionToken::parse(&turn.to_string()), Some(turn));
        let parsed = CompletionToken::parse(&activity.to_string()).unwrap();
        assert_eq!(parsed.execution_id(), Some("run-7:with:colons"));
        assert_eq!(parsed, activity);
    }

    #[test]
    fn a_token_accepts_itself_and_the_empty_token_only() {
        let mut minter = Minter::with_epoch("e1");
        let first = minter.turn();
        let second = minter.turn();
        assert!(first.accepts(&first.to_string()));
        assert!(first.accepts(""), "older SDKs send no token");
        assert!(!first.accepts(&second.to_string()));
        assert!(!first.accepts("garbage"));
    }

    #[test]
    fn a_restarted_dispatcher_never_reissues_an_earlier_token() {
        let before = Minter::with_epoch("before").turn();
        let after = Minter::with_epoch("after").turn();
        assert_ne!(before, after);
        assert!(!after.accepts(&before.to_string()));
        assert_ne!(Minter::random().turn(), Minter::random().turn());
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for text in ["", "t", "tx", "t.1", "te.x", "x1.2", "ae1.2", "ae1.x:run"] {
            assert_eq!(CompletionToken::parse(text), None, "{text:?}");
        }
    }
}
