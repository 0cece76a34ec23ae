//! Clock skew and jumps through the Admin `ChaosControl { clock_offset_ms }` RPC, which
//! only servers built with the `chaos` feature implement (time namespaces cannot shift
//! CLOCK_REALTIME). Timers must never fire before their due time in committed leader time
//! (P6), whatever one node's clock says. When the server answers UNIMPLEMENTED the action
//! is recorded as `skipped`, never as a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use endure_proto::endure::internal::admin_client::AdminClient;
use endure_proto::endure::internal::{ChaosControlReply, ChaosControlRequest};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tonic::Code;

use super::{millis, pick_target, Env};
use crate::rpc::{self, CALL_DEADLINE};

/// How long one skew lasts before it jumps back, ms.
const SKEW_MS: (u64, u64) = (5_000, 20_000);
/// Size of a skew, ms.
const OFFSET_MS: (i64, i64) = (1_000, 60_000);

/// Whether the servers implement ChaosControl (learned from the first answer; 0 until
/// then).
#[derive(Default)]
pub struct ChaosSupport(AtomicU8);

const SUPPORTED: u8 = 1;
const UNSUPPORTED: u8 = 2;

/// Why chaos actions are skipped on a server without the `chaos` feature.
pub const UNSUPPORTED_REASON: &str =
    "ChaosControl is UNIMPLEMENTED (server built without --features chaos)";

impl ChaosSupport {
    pub fn unsupported(&self) -> bool {
        self.0.load(Ordering::Relaxed) == UNSUPPORTED
    }
}

/// Sends one ChaosControl to a slot, learning whether it is supported.
pub async fn chaos_control(
    env: &Env,
    slot: usize,
    clock_offset_ms: Option<i64>,
    failpoints: HashMap<String, String>,
) -> Result<ChaosControlReply, tonic::Status> {
    let mut admin = AdminClient::new(rpc::channel(env.cluster.ports(slot).grpc_addr()));
    let request = ChaosControlRequest {
        clock_offset_ms,
        failpoints,
    };
    let result = rpc::call(
        CALL_DEADLINE,
        admin.chaos_control(rpc::request(request, CALL_DEADLINE)),
    )
    .await;
    match &result {
        Ok(_) => env.chaos.0.store(SUPPORTED, Ordering::Relaxed),
        Err(status) if status.code() == Code::Unimplemented => {
            env.chaos.0.store(UNSUPPORTED, Ordering::Relaxed)
        }
        Err(_) => {}
    }
    result
}

/// How often the skewed node is the leader: only the leader's clock stamps entries and
/// fires timers, so that is where a clock fault can do harm.
const LEADER_SHARE: f64 = 0.75;

pub async fn run(env: &Env, rng: &mut ChaCha8Rng) {
    let leader = rng.random_bool(LEADER_SHARE);
    let magnitude = rng.random_range(OFFSET_MS.0..=OFFSET_MS.1);
    let offset = if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    };
    let length = millis(rng, SKEW_MS.0, SKEW_MS.1);
    let slot = pick_target(env, rng, leader).await;
    let node = env.cluster.node_id(slot);
    let action = if offset > 0 {
        "skew-forward"
    } else {
        "skew-back"
    };
    if env.chaos.unsupported() {
        return env.skip("clock", action, &[node], UNSUPPORTED_REASON);
    }
    if !set(env, slot, node, action, offset).await {
        return;
    }
    env.faults.note_skew(offset);
    env.hold(length / 2).await;
    // Jump to the opposite side, across any timer due in between.
    if set(env, slot, node, "jump", -offset).await {
        env.hold(length / 2).await;
    }
    set(env, slot, node, "reset", 0).await;
    env.faults.mark_end();
}

/// Sets one offset, recorded; true when installed.
async fn set(env: &Env, slot: usize, node: u64, action: &str, offset_ms: i64) -> bool {
    env.invoke("clock", action, &[node]);
    match chaos_control(env, slot, Some(offset_ms), HashMap::new()).await {
        Ok(_) => {
            env.done("clock", action, &[node], "installed", None);
            true
        }
        Err(status) if status.code() == Code::Unimplemented => {
            env.done(
                "clock",
                action,
                &[node],
                "skipped",
                Some(UNSUPPORTED_REASON),
            );
            false
        }
        Err(status) => {
            env.info("clock", action, &[node], &rpc::describe(&status));
            false
        }
    }
}
