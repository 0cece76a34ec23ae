//! Proposing commands: stamps each with the leader's time and a random seed, writes it
//! through Raft and returns the state machine's answer once it is committed and applied.

use std::sync::{Arc, Mutex};

use endure_engine::records::command::Kind;
use endure_engine::{time, Command};
use endure_raft::node::Node;
use endure_raft::types::{Request, Response};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use prost_types::Timestamp;

use super::clock::{Clock, LeaderClock};
use crate::sync::LockExt;

/// Longest wait for a proposal to commit or a read to be confirmed.
pub const PROPOSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a proposal has no answer. Neither means the command was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not the leader (or lost leadership before the entry committed); the
    /// command may or may not commit later, so the client must retry.
    #[error("this node is not the leader{}", leader_hint(.0))]
    NotLeader(Option<u64>),
    /// Raft stopped (a storage failure or shutdown).
    #[error("raft is unavailable: {0}")]
    Unavailable(String),
}

fn leader_hint(leader: &Option<u64>) -> String {
    leader
        .map(|id| format!("; the leader is node {id}"))
        .unwrap_or_default()
}

/// A cheap, cloneable handle for proposing commands.
#[derive(Clone)]
pub struct Proposer {
    node: Node,
    clock: Arc<LeaderClock>,
    last_time: Arc<Mutex<Timestamp>>,
}

impl Proposer {
    pub fn new(node: Node, clock: Arc<LeaderClock>) -> Self {
        let last_time = Arc::new(Mutex::new(node.shared.max_leader_time()));
        Proposer {
            node,
            clock,
            last_time,
        }
    }

    /// The leader time for the next command: the term's time line, but strictly after
    /// every time this node or an earlier leader already put in the log. UNAVAILABLE
    /// outside a term: a wall-clock reading (possibly far off) must never become the floor
    /// of later stamps.
    pub fn next_time(&self) -> Result<Timestamp, Error> {
        if !self.clock.in_term() {
            // Raft made this node leader a moment ago and it has not fixed its time line
            // yet (or it just lost leadership): nothing may be stamped with its wall clock.
            return Err(Error::Unavailable(
                "this node is taking over as leader; retry".into(),
            ));
        }
        let mut last = self.last_time.lock_or_die();
        let floor = time::max(*last, self.node.shared.max_leader_time());
        let now = self.clock.now();
        let next = if time::after(&now, &floor) {
            now
        } else {
            time::add_nanos(&floor, 1_000)
        };
        *last = next;
        Ok(next)
    }

    /// Proposes one command and waits until it is applied, at most [`PROPOSAL_TIMEOUT`]:
    /// a leader cut off from its majority answers UNAVAILABLE instead of hanging. (The
    /// entry may still commit later; the caller was told nothing was acknowledged.)
    pub async fn propose(&self, kind: Kind) -> Result<Response, Error> {
        match tokio::time::timeout(PROPOSAL_TIMEOUT, self.propose_unbounded(kind)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "the command was not committed within {PROPOSAL_TIMEOUT:?}; the cluster may have lost its majority"
            ))),
        }
    }

    async fn propose_unbounded(&self, kind: Kind) -> Result<Response, Error> {
        let command = Command {
            leader_time: Some(self.next_time()?),
            id_seed: uuid::Uuid::new_v4().simple().to_string(),
            kind: Some(kind),
        };
        match self.node.raft.client_write(Request(command)).await {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(Error::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(Error::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(Error::Unavailable(fatal.to_string())),
        }
    }

    /// Waits until this node may serve a linearizable read (read-index on the leader), at
    /// most [`PROPOSAL_TIMEOUT`].
    pub async fn linearizable(&self) -> Result<(), Error> {
        let confirmed =
            tokio::time::timeout(PROPOSAL_TIMEOUT, self.node.raft.ensure_linearizable())
                .await
                .map_err(|_| {
                    Error::Unavailable("leadership could not be confirmed with a majority".into())
                })?;
        match confirmed {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(Error::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(Error::Unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(Error::Unavailable(fatal.to_string())),
        }
    }
}
