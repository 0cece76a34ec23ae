//! Which node serves, and the Raft-facing plumbing around it.
//!
//! - [`proposer`]: stamping commands with the leader's time and proposing them; reads.
//! - [`clock`]: the leader's clock (a majority's median at the start of a term, then
//!   monotonic); the `Clock` trait and a manual clock for tests.
//! - [`leadership`]: starts and stops the leader-only services (dispatcher, timers).
//! - [`membership`]: join and leave.
//! - [`replica`]: this node's own replica, read locally (the chaos suite's checkers).
//! - [`chaos`]: fault controls in a `chaos` build.

pub mod chaos;
pub mod clock;
pub mod leadership;
pub mod membership;
pub mod proposer;
pub mod replica;
