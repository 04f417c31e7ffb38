//! The `/metrics` endpoint: tiny_http (a small synchronous HTTP/1.1
//! server, no async runtime) on its own thread, on a TCP address or a Unix
//! socket.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Method, Response, Server};

use super::{Metrics, CONTENT_TYPE};
use crate::config::MetricsAddr;

/// The metrics endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

const INDEX: &str = "<html><head><title>edgefwd</title></head><body>\
<h1>edgefwd</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

impl MetricsServer {
    /// Serves `metrics` on `addr`. A Unix socket left behind by an
    /// earlier run is replaced.
    pub fn start(addr: &MetricsAddr, metrics: Arc<Metrics>) -> io::Result<MetricsServer> {
        let server = match addr {
            MetricsAddr::Tcp(a) => Server::http(a),
            MetricsAddr::Unix(p) => {
                if std::fs::symlink_metadata(p)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    std::fs::remove_file(p)?;
                }
                Server::http_unix(p)
            }
        }
        .map_err(|e| io::Error::other(format!("metrics on {addr}: {e}")))?;
        let server = Arc::new(server);
        let s = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("edgefwd-metrics".to_owned())
            .spawn(move || serve(&s, &metrics))?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
        })
    }

    /// The TCP address it listens on (the port chosen, for `:0`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.server_addr().to_ip()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(value: &str) -> Header {
    Header::from_bytes("Content-Type", value).expect("a valid header")
}

fn serve(server: &Server, metrics: &Metrics) {
    for rq in server.incoming_requests() {
        let path = rq.url().split('?').next().unwrap_or("");
        let response = match (rq.method(), path) {
            (Method::Get | Method::Head, "/metrics") => {
                Response::from_string(metrics.encode()).with_header(header(CONTENT_TYPE))
            }
            (Method::Get | Method::Head, "/") => {
                Response::from_string(INDEX).with_header(header("text/html; charset=utf-8"))
            }
            (Method::Get | Method::Head, _) => {
                Response::from_string("not found\n").with_status_code(404)
            }
            _ => Response::from_string("method not allowed\n").with_status_code(405),
        };
        // tiny_http sends no body to a HEAD. A client that went away is no concern of the daemon's.
        let _ = rq.respond(response);
    }
}
