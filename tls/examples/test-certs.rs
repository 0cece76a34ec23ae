//! Writes test certificates into a directory, for the Python and shell tests:
//!
//! ```text
//! test-certs DIR
//! ```
//!
//! makes `ca.pem` (a client-facing CA), `server.pem`/`server-key.pem` for localhost and
//! 127.0.0.1 signed by it, `cluster-ca.pem` and `node.pem`/`node-key.pem` signed by the
//! cluster CA, and `other-ca.pem` (a CA that signed nothing the nodes trust).

use std::path::PathBuf;
use std::process::ExitCode;

use endure_tls::testing::Authority;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: test-certs DIR");
        return ExitCode::from(2);
    };
    let made = (|| {
        std::fs::create_dir_all(&dir)
            .map_err(|e| endure_tls::Error(format!("cannot create {}: {e}", dir.display())))?;
        let names = ["localhost", "127.0.0.1"];
        Authority::create(&dir, "ca")?.issue(&dir, "server", &names)?;
        Authority::create(&dir, "cluster-ca")?.issue(&dir, "node", &names)?;
        Authority::create(&dir, "other-ca")?.issue(&dir, "stranger", &names)?;
        Ok::<_, endure_tls::Error>(())
    })();
    match made {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("test-certs: {error}");
            ExitCode::FAILURE
        }
    }
}
