//! The chaos suite's controls: a clock offset and storage failpoints, switched at run
//! time through the Admin service. Only in builds with the `chaos` cargo feature; a normal
//! build answers UNIMPLEMENTED and has no way to skew its clock or fail its disk writes.

use endure_proto::endure::internal::{ChaosControlReply, ChaosControlRequest};
use tonic::Status;

/// Applies the request; returns the offset in force afterwards.
#[cfg(feature = "chaos")]
pub fn control(request: ChaosControlRequest) -> Result<ChaosControlReply, Status> {
    use crate::cluster::clock::chaos_offset;
    for (name, action) in &request.failpoints {
        if action.is_empty() {
            fail::remove(name);
        } else {
            fail::cfg(name, action).map_err(|e| {
                Status::invalid_argument(format!("failpoint {name:?} = {action:?}: {e}"))
            })?;
        }
        tracing::warn!(failpoint = %name, action = %action, "chaos: failpoint set");
    }
    if let Some(offset_ms) = request.clock_offset_ms {
        chaos_offset::set_ms(offset_ms);
        tracing::warn!(offset_ms, "chaos: wall clock offset set");
    }
    Ok(ChaosControlReply {
        clock_offset_ms: chaos_offset::get_ms(),
    })
}

#[cfg(not(feature = "chaos"))]
pub fn control(_request: ChaosControlRequest) -> Result<ChaosControlReply, Status> {
    Err(Status::unimplemented(
        "chaos controls are compiled only into builds with the `chaos` cargo feature",
    ))
}
