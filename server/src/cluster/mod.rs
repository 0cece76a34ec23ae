//! Which node serves, and the Raft-facing plumbing around it.
//!
//! - [`proposer`]: stamping commands with the leader's time and proposing them; reads.
//! - [`clock`]: the leader's clock (a majority's median at the start of a term, then
//!   monotonic); the `Clock` trait and a manual clock for tests.
//! - [`leadership`]: starts and stops the leader-only services (dispatcher, timers).
//! - [`membership`]: join and leave, every shard's.
//! - [`placement`]: each shard's preferred leader, and the hand-over to it.
//! - [`replica`]: this node's own replica, read locally (the chaos suite's checkers).
//! - [`shards`]: this node's shards and the instance → shard map.
//! - [`chaos`]: fault controls in a `chaos` build.

pub mod chaos;
pub mod clock;
pub mod leadership;
pub mod membership;
pub mod placement;
pub mod proposer;
pub mod replica;
pub mod shards;
