//! `ferry-upload-server`: the server side of the BITS Upload Protocol.
//!
//! Windows BITS clients (`bitsadmin /transfer … /upload`, `Start-BitsTransfer -TransferType
//! Upload`) and Ferry upload files with `BITS_POST` packets: Create-Session, Fragments carrying
//! byte ranges, Close-Session (or Cancel-Session). This server maps URL prefixes to upload
//! directories ([`config`]), keeps each session on disk so a restart (even `kill -9`) resumes
//! it ([`store`]), syncs every fragment before acknowledging it, and moves a finished file into
//! place with one atomic rename: the destination never holds a partial upload. Optionally it
//! notifies a server application (by reference or by value) and returns its reply to the
//! client (upload-reply), speaks TLS, and requires HTTP Basic authentication.
//!
//! The protocol's rules (parsing, `Content-Range` arithmetic, which error answers what) are
//! pure functions in [`protocol`] (the `ferry-upload-proto` crate); [`server`] does the I/O. `docs/UPLOAD-SERVER.md` describes
//! what is implemented, every configuration key, the error answers and a reverse-proxy setup.

pub mod auth;
pub mod config;
pub mod notify;
pub mod server;
pub mod store;

/// The protocol's pure rules (the `ferry-upload-proto` crate).
pub use ferry_upload_proto as protocol;

pub use config::Config;
pub use server::{RunError, Server};

/// Runs the server with `config` until `shutdown` resolves. Prints `listening on ADDR` on
/// standard output once it accepts connections (with port 0, ADDR holds the chosen port).
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let server = Server::bind(config).await?;
    let addr = server.local_addr().map_err(|source| RunError::Bind {
        addr: ([0, 0, 0, 0], 0).into(),
        source,
    })?;
    tracing::info!(%addr, "listening");
    println!("listening on {addr}");
    server.serve(shutdown).await;
    Ok(())
}
