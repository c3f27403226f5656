//! systemd readiness protocol for `Type=notify` units: one datagram to `$NOTIFY_SOCKET` when
//! Herald is ready and when it begins to stop. Does nothing when not started by systemd.

/// Send `state` (e.g. `READY=1`) to the service manager, if there is one.
pub fn notify(state: &str) {
    #[cfg(target_os = "linux")]
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let bytes = path.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            // A leading '@' names a socket in the abstract namespace.
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(std::path::Path::new(&path)),
        };
        let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &a));
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}
