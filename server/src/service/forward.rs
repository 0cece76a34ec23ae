//! Forwarding: any node serves any call by passing it to the internal address of the
//! leader of the call's shard when it does not lead that shard itself. Every operation goes through [`Forwarder::leader_for`]
//! and [`Leader::forward`]; nothing else sends a call to another node.
//!
//! - **Forward once.** A call that was already forwarded is never forwarded again (two
//!   nodes that each think the other leads would bounce it): it answers UNAVAILABLE.
//! - **Never a false success.** A forwarded call that loses its leader midway fails with
//!   UNAVAILABLE ("outcome unknown"), which the SDKs retry.
//! - **A hung leader does not hold callers.** A forwarded call ends as soon
//!   as this node sees another leader (or none), and the channels to the leader carry HTTP/2
//!   keepalive.
//! - **Worker answers are retried** while leadership moves ([`forward_answer_with_retry`]):
//!   the SDKs do not resend an answer that failed, and answers are fenced, so one that
//!   arrives twice is applied once.

use std::future::Future;
use std::time::Duration;

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_raft::network::{Channels, PeerChannel};
use endure_raft::node::Node;
use tonic::{Code, Status};

use super::limits::RETRY_AFTER_HEADER;
use super::{Call, Error};

/// Marks a request a node forwarded to the leader.
pub const FORWARDED_HEADER: &str = "endure-forwarded";
/// Marks a forwarded start that answers once committed, without waiting for the first
/// turn (the HTTP API's start).
pub const START_NO_WAIT_HEADER: &str = "endure-start-no-wait";
/// Marks a forwarded query for one shard only (see `Call::shard`).
pub const SHARD_HEADER: &str = "endure-shard";
/// Tries to hand a worker's answer to the leader while leadership moves.
const ANSWER_FORWARD_ATTEMPTS: u32 = 20;
const ANSWER_FORWARD_BACKOFF: Duration = Duration::from_millis(250);
/// How long a call waits for a new leader when the known one cannot be reached (a few
/// election timeouts of 300-600 ms).
const UNREACHED_LEADER_WAIT: Duration = Duration::from_secs(3);
/// How long a client's call waits for a leader to be known (an election under way).
pub const NO_LEADER_WAIT: Duration = Duration::from_secs(3);

/// Clients to the leader's internal service.
#[derive(Clone)]
pub struct Leader {
    /// The node these clients reach.
    pub node_id: u64,
    pub taskhub: TaskHubSidecarServiceClient<PeerChannel>,
    pub admin: AdminClient<PeerChannel>,
    forwarder: Forwarder,
}

/// Finds one shard's leader; the channels to other nodes are shared by all shards.
#[derive(Clone)]
pub struct Forwarder {
    node: Node,
    channels: Channels,
}

impl Forwarder {
    /// The forwarder of `node`'s shard.
    pub fn new(node: Node, channels: Channels) -> Self {
        Forwarder { node, channels }
    }

    /// `None` when this node leads and serves the call itself; otherwise clients to the
    /// leader. While no leader is known (an election is under way) a client's call waits
    /// for one, up to [`NO_LEADER_WAIT`] and its deadline; UNAVAILABLE when none is known
    /// by then (this node may be cut off from the majority), and for a call that was
    /// already forwarded once.
    pub async fn leader_for(&self, call: &Call) -> Result<Option<Leader>, Error> {
        if !call.forwarded && self.node.leader().is_none() {
            let give_up = wait_bound(call, NO_LEADER_WAIT);
            let mut watch = self.node.watch();
            let known = watch.wait_until(|watch| watch.leader().is_some());
            let _ = tokio::time::timeout_at(give_up, known).await;
        }
        self.leader_now_for(call)
    }

    /// [`Self::leader_for`] without waiting.
    pub(crate) fn leader_now_for(&self, call: &Call) -> Result<Option<Leader>, Error> {
        let leader = self.leader()?;
        if leader.is_some() && call.forwarded {
            return Err(Error::unavailable(
                "the leader changed while the request was forwarded; retry",
            ));
        }
        Ok(leader)
    }

    pub(crate) fn leader(&self) -> Result<Option<Leader>, Error> {
        let Some(leader) = self.node.leader() else {
            return Err(Error::unavailable(format!(
                "no Raft leader of shard {} is known right now; retry shortly",
                self.node.shard
            )));
        };
        if leader == self.node.node_id {
            return Ok(None);
        }
        let Some((leader, address)) = self.node.leader_address().filter(|(id, _)| *id == leader)
        else {
            return Err(Error::unavailable(format!(
                "the leader is node {leader}, whose address is not known; retry"
            )));
        };
        let channel = self.channel(leader, &address)?;
        Ok(Some(Leader {
            node_id: leader,
            taskhub: TaskHubSidecarServiceClient::new(channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
            admin: AdminClient::new(channel),
            forwarder: self.clone(),
        }))
    }

    fn channel(&self, leader: u64, address: &str) -> Result<PeerChannel, Error> {
        self.channels
            .get(address)
            .map_err(|e| Error::internal(format!("bad address {address} of node {leader}: {e}")))
    }

    /// Returns once the known leader is no longer `leader` (another, or none).
    async fn leadership_moved(&self, leader: u64) {
        self.node.watch().leader_moved_from(leader).await
    }
}

impl Leader {
    /// Sends the call on to the leader, with the caller's deadline and the forwarded mark,
    /// and maps its answer. Answers UNAVAILABLE as soon as this node sees that the leader
    /// no longer leads (the call's outcome is then unknown to the caller). A leader that
    /// cannot be reached at all (the call was never sent) is waited out: once another node
    /// leads the shard, the call goes there instead.
    pub async fn forward<Req, Resp, Fut>(
        &self,
        call: &Call,
        message: Req,
        send: impl Fn(Leader, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.forward_marked(call, None, message, send).await
    }

    /// A query of one shard: the request marked with the shard, sent on like [`Self::forward`].
    pub async fn forward_to_shard<Req, Resp, Fut>(
        &self,
        call: &Call,
        shard: u32,
        message: Req,
        send: impl Fn(Leader, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.forward_marked(call, Some(shard), message, send).await
    }

    async fn forward_marked<Req, Resp, Fut>(
        &self,
        call: &Call,
        shard: Option<u32>,
        message: Req,
        send: impl Fn(Leader, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let give_up = wait_bound(call, UNREACHED_LEADER_WAIT);
        let mut leader = self.clone();
        loop {
            let mut request = leader.request(call, message.clone());
            if let Some(shard) = shard {
                request
                    .metadata_mut()
                    .insert(SHARD_HEADER, tonic::metadata::MetadataValue::from(shard));
            }
            let status = match leader.sent(send(leader.clone(), request)).await? {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if never_sent(&status) => status,
                Err(status) => return Err(from_status(status)),
            };
            leader = match leader.next_leader(give_up).await {
                Some(next) => next,
                None => return Err(unreached(&leader, status)),
            };
        }
    }

    /// The leader's answer, or UNAVAILABLE once this node sees another leader (or none).
    async fn sent<T>(
        &self,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Result<T, Status>, Error> {
        tokio::select! {
            result = call => Ok(result),
            () = self.forwarder.leadership_moved(self.node_id) => Err(moved(self.node_id)),
        }
    }

    /// Another node's clients once it leads the shard (before `give_up`); `None` when none
    /// does by then, or when this node itself was elected (the caller retries here).
    async fn next_leader(&self, give_up: tokio::time::Instant) -> Option<Leader> {
        let mut watch = self.forwarder.node.watch();
        let elected =
            watch.wait_until(|watch| watch.leader().is_some_and(|leader| leader != self.node_id));
        tokio::time::timeout_at(give_up, elected).await.ok()?;
        self.forwarder.leader().ok().flatten()
    }

    /// The request to send on: the message, the deadline that is left, the mark.
    pub fn request<Req>(&self, call: &Call, message: Req) -> tonic::Request<Req> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = call.deadline {
            request.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        }
        request.metadata_mut().insert(
            FORWARDED_HEADER,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        request
    }

    /// Runs a call sent to this leader, ending it once this node sees another leader.
    pub async fn while_leading<T>(
        &self,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Error> {
        self.sent(call).await?.map_err(from_status)
    }
}

/// Now plus `wait`, or the call's deadline when that comes first.
fn wait_bound(call: &Call, wait: Duration) -> tokio::time::Instant {
    let bound = tokio::time::Instant::now() + wait;
    call.deadline.map_or(bound, |deadline| deadline.min(bound))
}

/// A failure of the transport to connect: the call never left this node, so it can go to
/// the next leader without any risk of running twice. (tonic gives a connect failure
/// UNAVAILABLE with the connector's message and no response metadata; a failure after
/// the call was sent has another message, and a leader's own answer carries headers.)
fn never_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && status.metadata().is_empty()
        && status.message().starts_with("tcp connect error")
}

fn unreached(leader: &Leader, status: Status) -> Error {
    Error::unavailable(format!(
        "node {}, the known leader of shard {}, cannot be reached ({}), and no other node \
         took over in time; the call was not sent; retry",
        leader.node_id,
        leader.forwarder.node.shard,
        status.message()
    ))
}

/// Hands a worker's answer to whichever node leads, again while leadership moves (no
/// leader known, or the leader went away mid-call); `Ok(None)` when this node leads by the
/// time it tries, so the caller applies the answer itself.
pub async fn forward_answer_with_retry<Req, Resp, Fut>(
    forwarder: &Forwarder,
    call: &Call,
    message: Req,
    send: impl Fn(Leader, tonic::Request<Req>) -> Fut,
) -> Result<Option<Resp>, Error>
where
    Req: Clone,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    if forwarder.leader_for(call).await?.is_none() {
        return Ok(None);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = match forwarder.leader() {
            Ok(Some(leader)) => leader.forward(call, message.clone(), &send).await.map(Some),
            Ok(None) => return Ok(None),
            Err(error) => Err(error),
        };
        match result {
            Err(error) if answer_may_be_lost(&error) && attempt < ANSWER_FORWARD_ATTEMPTS => {
                tokio::time::sleep(ANSWER_FORWARD_BACKOFF).await;
            }
            result => return result,
        }
    }
}

/// Failures after which a forwarded answer may not have reached a leader: the leader went
/// away (transport errors surface as UNKNOWN or CANCELLED, mapped below) or none is known.
fn answer_may_be_lost(error: &Error) -> bool {
    matches!(error, Error::Unavailable(_) | Error::Unknown(_))
}

fn moved(leader: u64) -> Error {
    Error::unavailable(format!(
        "node {leader} stopped leading while the call was forwarded to it: whether the call \
         took effect is unknown; retry (a retried start answers ALREADY_EXISTS if it did)"
    ))
}

/// The leader's answer (or the transport's failure) as a service error. The leader's own
/// errors come back with the code its gRPC adapter gave them, so they keep their meaning;
/// the engine's FAILED_PRECONDITION travels as UNKNOWN (see `grpc::status`) and stays so.
pub fn from_status(status: Status) -> Error {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound => Error::NotFound(message),
        Code::AlreadyExists => Error::AlreadyExists(message),
        Code::InvalidArgument => Error::InvalidArgument(message),
        Code::FailedPrecondition => Error::FailedPrecondition(message),
        Code::ResourceExhausted if status.metadata().contains_key(RETRY_AFTER_HEADER) => {
            Error::Overloaded(message)
        }
        Code::ResourceExhausted | Code::OutOfRange => Error::TooLarge(message),
        Code::Unavailable | Code::Cancelled => Error::Unavailable(message),
        Code::DeadlineExceeded => Error::DeadlineExceeded(message),
        Code::Unimplemented => Error::Unimplemented(message),
        Code::Unknown => Error::Unknown(message),
        code => Error::Internal(format!("the leader answered {code:?}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaders_answer_keeps_its_meaning() {
        assert_eq!(
            from_status(Status::not_found("no such instance exists: 'x'")),
            Error::not_found("no such instance exists: 'x'")
        );
        assert_eq!(
            from_status(Status::unknown("workflow is stalled")),
            Error::unknown("workflow is stalled")
        );
        assert!(matches!(
            from_status(Status::cancelled("gone")),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            from_status(Status::out_of_range("big")),
            Error::TooLarge(_)
        ));
        assert!(matches!(
            from_status(Status::permission_denied("no")),
            Error::Internal(_)
        ));
    }

    #[test]
    fn only_answers_that_may_not_have_arrived_are_retried() {
        assert!(answer_may_be_lost(&Error::unavailable("leader moved")));
        assert!(answer_may_be_lost(&Error::unknown("transport error")));
        assert!(!answer_may_be_lost(&Error::not_found("stale")));
        assert!(!answer_may_be_lost(&Error::invalid_argument("bad")));
    }
}
