//! Listening sockets, bound the same way for every listener (HTTPS,
//! plain HTTP, admin): address reuse, a deep accept backlog, errors that
//! name the config key.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::EdgeError;

pub(crate) async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| EdgeError(format!("listen.{what}: {e}")))?;
    let _ = sock.set_reuseaddr(true);
    sock.bind(addr)
        .map_err(|e| EdgeError(format!("listen.{what} = \"{addr}\": cannot bind: {e}")))?;
    sock.listen(4096)
        .map_err(|e| EdgeError(format!("listen.{what} = \"{addr}\": cannot listen: {e}")))
}
