//! Disk faults. Disk full: each data dir sits on a size-capped tmpfs (only possible with
//! mount privileges; this harness mounts it when it runs as root), which the nemesis fills
//! with a ballast file until ENOSPC; the node must stop acking rather than ack what it
//! could not persist, and catch up once the ballast is gone and it is restarted. Fsync
//! failure: the `storage::append::before_sync` failpoint through ChaosControl (chaos
//! builds only): the node must abort rather than retry the fsync.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tonic::Code;

use super::clock::{chaos_control, UNSUPPORTED_REASON};
use super::kill::restart;
use super::{millis, pick_target, Env};
use crate::rpc;

/// Size cap of each node's tmpfs.
pub const TMPFS_SIZE: &str = "256m";
/// The failpoint that fails the log append's fsync.
pub const SYNC_FAILPOINT: &str = "storage::append::before_sync";
/// How long the disk stays full or the failpoint armed, ms.
const FULL_MS: (u64, u64) = (5_000, 15_000);
/// Ballast write size.
const BALLAST_CHUNK_BYTES: usize = 1024 * 1024;

/// Mounts a tmpfs of [`TMPFS_SIZE`] on `dir` (created if needed).
pub fn mount_tmpfs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
        .arg(dir)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "mount -t tmpfs on {} failed: {status}",
        dir.display()
    );
    Ok(())
}

/// Unmounts what [`mount_tmpfs`] mounted (lazily, so that a busy mount still goes).
pub fn unmount(dir: &Path) {
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .status();
}

/// Whether this process may mount (runs as root).
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

pub fn ballast_path(env: &Env, slot: usize) -> PathBuf {
    env.cluster.disk_dir(slot).join("ballast")
}

/// Writes the ballast until the disk is full; the bytes written.
fn fill(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; BALLAST_CHUNK_BYTES];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
            Err(e) => return Err(e),
        }
    }
}

pub async fn run(env: &Env, rng: &mut ChaCha8Rng) {
    let failpoint = rng.random_bool(0.3);
    let leader = rng.random_bool(0.5);
    let length = millis(rng, FULL_MS.0, FULL_MS.1);
    let slot = pick_target(env, rng, leader).await;
    let node = env.cluster.node_id(slot);
    let action = if failpoint { "fail-fsync" } else { "fill" };
    if failpoint && env.chaos.unsupported() {
        return env.skip("disk", action, &[node], UNSUPPORTED_REASON);
    }
    if !failpoint && !env.tmpfs {
        let reason = "data dirs are not on a tmpfs (needs root; or the mount failed)";
        return env.skip("disk", action, &[node], reason);
    }
    let Some(guard) = env.faults.take(&[slot]) else {
        return env.skip(
            "disk",
            action,
            &[node],
            "another fault holds the quorum margin",
        );
    };
    env.invoke("disk", action, &[node]);
    let installed = if failpoint {
        arm(env, slot, node, true).await
    } else {
        fill_slot(env, slot, node)
    };
    if installed {
        env.hold(length).await;
        env.invoke("disk", "free", &[node]);
        if failpoint {
            arm(env, slot, node, false).await;
        } else {
            let _ = std::fs::remove_file(ballast_path(env, slot));
            env.done("disk", "free", &[node], "installed", None);
        }
        restart(env, "disk", &[slot]).await;
    }
    drop(guard);
}

fn fill_slot(env: &Env, slot: usize, node: u64) -> bool {
    match tokio::task::block_in_place(|| fill(&ballast_path(env, slot))) {
        Ok(bytes) => {
            env.done("disk", "fill", &[node], "installed", None);
            tracing::info!(node, bytes, "disk filled");
            true
        }
        Err(error) => {
            env.info("disk", "fill", &[node], &error.to_string());
            let _ = std::fs::remove_file(ballast_path(env, slot));
            false
        }
    }
}

/// Arms (or clears) the fsync failpoint; records the completion of the pending invoke.
async fn arm(env: &Env, slot: usize, node: u64, on: bool) -> bool {
    let action = if on { "fail-fsync" } else { "free" };
    let value = if on { "return" } else { "" };
    let failpoints = HashMap::from([(SYNC_FAILPOINT.to_owned(), value.to_owned())]);
    match chaos_control(env, slot, None, failpoints).await {
        Ok(_) => {
            env.done("disk", action, &[node], "installed", None);
            true
        }
        Err(status) if status.code() == Code::Unimplemented => {
            env.done("disk", action, &[node], "skipped", Some(UNSUPPORTED_REASON));
            false
        }
        Err(status) => {
            // The node may have aborted on the failpoint already: that is the point.
            env.info("disk", action, &[node], &rpc::describe(&status));
            on
        }
    }
}
