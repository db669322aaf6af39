//! `bad-escape` (test plugin): a predicate that tries to leave the sandbox.
//!
//! Args `[path, addr]`, both optional (defaults `/etc/passwd` and `127.0.0.1:9090`). Each call
//! tries `std::fs::read(path)`, `std::net::TcpStream::connect(addr)` and an HTTP `GET
//! http://addr/` through `wasi:http/outgoing-handler`, logs what happened through routerd's log,
//! and matches **only if any of them succeeded**. With a correctly sandboxed
//! host (no preopened directories, no network) it never matches. A test can listen on `addr`
//! itself to be sure a connection would have been accepted.
//!
//! validate: at most 2 args, and `addr` must parse as `ip:port`.

use std::net::{SocketAddr, TcpStream};

use routerd_sdk::{Predicate, Request};

/// The plugin.
pub struct BadEscape;

/// Default file to read.
pub const DEFAULT_PATH: &str = "/etc/passwd";
/// Default address to connect to.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9090";

/// What the escape attempts got.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes read, or the error.
    pub read: Result<usize, String>,
    /// Whether the connection opened, or the error.
    pub connect: Result<(), String>,
    /// The HTTP response status, or the error.
    pub http: Result<u16, String>,
}

impl Outcome {
    /// Whether anything got out.
    pub fn escaped(&self) -> bool {
        self.read.is_ok() || self.connect.is_ok() || self.http.is_ok()
    }
}

/// `GET http://addr/` through `wasi:http/outgoing-handler`.
#[cfg(target_arch = "wasm32")]
pub fn http_get(addr: SocketAddr) -> Result<u16, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let authority = addr.to_string();
    request
        .set_scheme(Some(&Scheme::Http))
        .and_then(|()| request.set_authority(Some(&authority)))
        .and_then(|()| request.set_path_with_query(Some("/")))
        .map_err(|()| "cannot build the request".to_owned())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) => Err("the response was already taken".into()),
        None => Err("no response".into()),
    }
}

/// Natively there is no `wasi:http`; the native tests cover files and sockets.
#[cfg(not(target_arch = "wasm32"))]
pub fn http_get(_addr: SocketAddr) -> Result<u16, String> {
    Err("wasi:http exists only in the component".into())
}

/// The file and address from the args (defaults for missing ones).
pub fn targets(args: &[String]) -> Result<(&str, SocketAddr), String> {
    if args.len() > 2 {
        return Err("bad-escape: expected at most 2 args [path, addr]".into());
    }
    let path = args.first().map_or(DEFAULT_PATH, String::as_str);
    let addr = args.get(1).map_or(DEFAULT_ADDR, String::as_str);
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| format!("bad-escape: {addr:?} is not ip:port: {e}"))?;
    Ok((path, addr))
}

/// Tries both escapes.
pub fn attempt(path: &str, addr: SocketAddr) -> Outcome {
    Outcome {
        read: std::fs::read(path)
            .map(|bytes| bytes.len())
            .map_err(|e| e.to_string()),
        connect: TcpStream::connect(addr)
            .map(drop)
            .map_err(|e| e.to_string()),
        http: http_get(addr),
    }
}

impl Predicate for BadEscape {
    fn validate(args: &[String]) -> Result<(), String> {
        targets(args).map(drop)
    }

    fn matches(_req: &Request<'_>, args: &[String]) -> bool {
        let Ok((path, addr)) = targets(args) else {
            return false;
        };
        let outcome = attempt(path, addr);
        match &outcome.read {
            Ok(n) => routerd_sdk::error!("bad-escape: ESCAPED: read {n} bytes from {path}"),
            Err(e) => routerd_sdk::info!("bad-escape: reading {path} failed: {e}"),
        }
        match &outcome.connect {
            Ok(()) => routerd_sdk::error!("bad-escape: ESCAPED: connected to {addr}"),
            Err(e) => routerd_sdk::info!("bad-escape: connecting to {addr} failed: {e}"),
        }
        match &outcome.http {
            Ok(status) => {
                routerd_sdk::error!("bad-escape: ESCAPED: GET http://{addr}/ answered {status}")
            }
            Err(e) => routerd_sdk::info!("bad-escape: GET http://{addr}/ failed: {e}"),
        }
        outcome.escaped()
    }
}

routerd_sdk::export_predicate!(BadEscape);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::MockRequest;
    use std::net::TcpListener;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validates() {
        assert!(BadEscape::validate(&[]).is_ok());
        assert!(BadEscape::validate(&args(&["/x", "127.0.0.1:1"])).is_ok());
        assert!(BadEscape::validate(&args(&["/x", "[::1]:80"])).is_ok());
        assert!(BadEscape::validate(&args(&["/x", "localhost:80"])).is_err());
        assert!(BadEscape::validate(&args(&["/x", "127.0.0.1:1", "z"])).is_err());
        assert_eq!(
            targets(&[]).map(|(p, a)| (p.to_string(), a.to_string())),
            Ok((DEFAULT_PATH.to_string(), DEFAULT_ADDR.to_string()))
        );
    }

    /// Natively nothing is sandboxed, so both attempts can succeed: that is what a host must
    /// prevent.
    #[test]
    fn escapes_when_not_sandboxed() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("bad-escape-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("secret");
        std::fs::write(&file, b"root:x:0:0")?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;

        let path = file.to_string_lossy().into_owned();
        let outcome = attempt(&path, addr);
        assert_eq!(outcome.read, Ok(10));
        assert_eq!(outcome.connect, Ok(()));
        let a = vec![path.clone(), addr.to_string()];
        assert!(BadEscape::matches(
            &MockRequest::new("GET", "/").as_request(),
            &a
        ));

        // Neither works: no match.
        drop(listener);
        let missing = dir.join("missing").to_string_lossy().into_owned();
        let a = vec![missing, addr.to_string()];
        let req = MockRequest::new("GET", "/");
        assert!(!BadEscape::matches(&req.as_request(), &a));

        std::fs::remove_dir_all(&dir)
    }
}
