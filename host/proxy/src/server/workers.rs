//! The proxy's threads. With `--workers N`, N threads each run a single-threaded runtime with
//! its own accept loop on every proxy listener (the listening sockets share their port through
//! `SO_REUSEPORT`, so the kernel spreads new connections over the workers) and its own pool of
//! plain backend connections: a request stays on one thread from accept to the backend and
//! back, with no hand-off between threads and no pool lock shared with other cores. The
//! alternative, `--workers shared`, is tokio's work-stealing runtime with one listener.

use std::cell::Cell;
use std::net::SocketAddr;
use std::str::FromStr;

thread_local! {
    /// The worker the current thread is; 0 on threads that are not workers.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker the current thread is (0 outside the workers).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Marks the current thread as worker `index`.
pub fn enter(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// How the proxy's requests are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One single-threaded runtime per CPU routerd may run on (its affinity mask).
    Auto,
    /// This many single-threaded runtimes.
    Count(usize),
    /// One work-stealing runtime (a thread per CPU) and one listener.
    Shared,
}

impl Workers {
    /// How many single-threaded workers; `None` for the shared runtime.
    pub fn threads(self) -> Option<usize> {
        match self {
            Workers::Auto => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Workers::Count(n) => Some(n),
            Workers::Shared => None,
        }
    }
}

impl FromStr for Workers {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Workers::Auto),
            "shared" => Ok(Workers::Shared),
            n => match n.parse::<usize>() {
                Ok(0) => Err("must be at least 1 (or auto, or shared)".to_owned()),
                Ok(n) if n > 1024 => Err("at most 1024".to_owned()),
                Ok(n) => Ok(Workers::Count(n)),
                Err(_) => Err(format!("{n:?} is not a number, auto or shared")),
            },
        }
    }
}

/// `count` listening sockets on `addr` sharing one port (`SO_REUSEPORT`); a port 0 in `addr` is
/// resolved by the first, and the others take the same port. Non-blocking, ready to be handed
/// to a runtime with `tokio::net::TcpListener::from_std`.
pub fn bind_shared(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count.max(1));
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // Like std's and tokio's bind: a restart does not wait out TIME_WAIT.
        socket.set_reuse_address(true)?;
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        if at.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&at.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();
        at = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_parse_auto_shared_and_counts() {
        assert_eq!("auto".parse(), Ok(Workers::Auto));
        assert_eq!("shared".parse(), Ok(Workers::Shared));
        assert_eq!("3".parse(), Ok(Workers::Count(3)));
        assert!("0".parse::<Workers>().is_err());
        assert!("many".parse::<Workers>().is_err());
        assert_eq!(Workers::Count(3).threads(), Some(3));
        assert_eq!(Workers::Shared.threads(), None);
        assert!(Workers::Auto.threads().is_some_and(|n| n >= 1));
    }

    #[test]
    fn shared_listeners_take_one_port_and_each_accepts() {
        let listeners = bind_shared("127.0.0.1:0".parse().expect("an address"), 3)
            .expect("three sockets on one port");
        let port = listeners[0].local_addr().expect("bound").port();
        assert_ne!(port, 0);
        for l in &listeners {
            assert_eq!(l.local_addr().expect("bound").port(), port);
        }
        // Every connection lands on one of them; together they accept them all.
        let clients: Vec<_> = (0..12)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects"))
            .collect();
        let mut accepted = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while accepted < clients.len() && std::time::Instant::now() < deadline {
            for l in &listeners {
                while l.accept().is_ok() {
                    accepted += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(accepted, clients.len());
    }

    #[test]
    fn the_worker_index_is_per_thread() {
        assert_eq!(current(), 0);
        let seen = std::thread::spawn(|| {
            enter(4);
            current()
        })
        .join()
        .expect("the thread ends");
        assert_eq!(seen, 4);
        assert_eq!(current(), 0);
    }
}
