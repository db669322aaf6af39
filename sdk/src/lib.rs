//! Write routerd route predicates and filters in Rust, as WebAssembly components.
//!
//! routerd runs plugins as WebAssembly components that implement the contract in
//! `wit/router-plugin.wit` (package `router:plugin@0.3.1`). This crate generates the bindings for
//! that contract once and wraps them in a small Rust API, so a plugin is a type, a trait impl and
//! one macro call:
//!
//! * a **predicate** decides whether a route matches a request: implement [`Predicate`] and call
//!   [`export_predicate!`];
//! * a **filter** edits the request before it is proxied (or answers it itself) and edits the
//!   response afterwards: implement [`Filter`] and call [`export_filter!`];
//! * a type implementing both is exported with [`export_plugin!`].
//!
//! # A predicate
//!
//! ```standalone_crate
//! use routerd_sdk::{Predicate, Request};
//!
//! /// Matches requests whose `X-Tenant` header is one of the route's args.
//! struct Tenant;
//!
//! impl Predicate for Tenant {
//!     fn validate(args: &[String]) -> Result<(), String> {
//!         if args.is_empty() {
//!             return Err("tenant: expected at least one tenant name".into());
//!         }
//!         Ok(())
//!     }
//!
//!     fn matches(req: &Request<'_>, args: &[String]) -> bool {
//!         req.header("x-tenant").is_some_and(|t| args.contains(&t))
//!     }
//! }
//!
//! routerd_sdk::export_predicate!(Tenant);
//!
//! // The same code runs natively against an in-memory request:
//! use routerd_sdk::testing::MockRequest;
//! let args = vec!["acme".to_string()];
//! assert!(Tenant::matches(&MockRequest::new("GET", "/").header("X-Tenant", "acme").as_request(), &args));
//! assert!(!Tenant::matches(&MockRequest::new("GET", "/").as_request(), &args));
//! ```
//!
//! # A filter
//!
//! ```standalone_crate
//! use routerd_sdk::{Filter, Reply, Request, RequestAction, RequestEdits, Response, ResponseEdits};
//!
//! /// Requires a session cookie, passes the user id on to the backend as a header.
//! struct Session;
//!
//! impl Filter for Session {
//!     fn on_request(req: &Request<'_>, _args: &[String]) -> RequestAction {
//!         match req.cookie("session") {
//!             Some(id) => RequestEdits::new().set_header("X-Session", id).into(),
//!             None => Reply::text(401, "log in first\n").header("WWW-Authenticate", "Cookie").into(),
//!         }
//!     }
//!
//!     fn on_response(_req: &Request<'_>, _resp: &Response<'_>, _args: &[String]) -> ResponseEdits {
//!         ResponseEdits::new().set_header("Cache-Control", "private")
//!     }
//! }
//!
//! routerd_sdk::export_filter!(Session);
//! # use routerd_sdk::testing::MockRequest;
//! # let ok = Session::on_request(&MockRequest::new("GET", "/").header("cookie", "session=7").as_request(), &[]);
//! # assert_eq!(ok, RequestAction::Proceed(RequestEdits::new().set_header("x-session", "7")));
//! ```
//!
//! Every method has a default except [`Predicate::matches`]: `validate` accepts any args,
//! `on_request` proceeds unchanged and `on_response` changes nothing.
//!
//! # Building
//!
//! A plugin is a `cdylib` crate that depends on this one:
//!
//! ```toml
//! [package]
//! name = "tenant"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! routerd-sdk = { path = "../../sdk" }
//! ```
//!
//! Build it for WASI 0.2; Rust's `wasm32-wasip2` target links the result into a component:
//!
//! ```sh
//! rustup target add wasm32-wasip2        # once
//! cargo build --release --target wasm32-wasip2
//! # -> target/wasm32-wasip2/release/tenant.wasm (dashes in the crate name become underscores)
//! ```
//!
//! In this repository, `plugins/build.sh` builds every plugin under `plugins/` and copies them
//! to `plugins/dist/<name>.wasm`.
//!
//! # Using a plugin in a route
//!
//! routerd loads every `NAME.wasm` in its plugins directory (`--plugins`, env `ROUTERD_PLUGINS`,
//! default `./plugins`) and reloads one when its file changes; `NAME` (letters, digits, `-`,
//! `_`) is the plugin's name. An optional `NAME.json` beside it overrides the plugin's limits,
//! e.g. `{"deadline_ms": 20, "memory_mib": 32, "failure": "fail_open", "mode": "fresh"}`.
//!
//! A route refers to the plugin by name. A predicate goes in the route's `matchers`, and runs
//! after the route's built-in matchers have matched:
//!
//! ```json
//! {"condition": "plugin", "plugin": "tenant", "args": ["acme", "globex"]}
//! ```
//!
//! A filter goes in the route's `filters`, which run in order:
//!
//! ```json
//! {"plugin": "session", "args": []}
//! ```
//!
//! `args` are always strings. `validate` is called when a route using the plugin is loaded;
//! an `Err` rejects that route (the previous route set keeps serving) with your message, so
//! check everything there and trust the args in the other calls. routerd hands a route's args
//! to each instance once (contract 0.3's `configure`, which runs your `validate`); this crate
//! keeps them and passes them to every call, which copies no args. A filter that only needs
//! one of its phases for some args says so in [`Filter::phases`], and routerd skips the other.
//!
//! # Rules of the sandbox
//!
//! * **Bounded calls.** routerd gives each call a deadline (10 ms by default) and each instance a
//!   memory cap (64 MiB by default). A plugin that runs over, grows past its cap, or traps
//!   (a Rust panic traps) is handled by the plugin's failure policy (by default a predicate does
//!   not match and a filter answers 500) and its instance is discarded.
//! * **Instances are reused** between calls, so statics (e.g. a `thread_local!` cache of compiled
//!   regexes keyed by the args) persist, but an instance can be replaced at any time: use them
//!   for caches, never for state that must survive.
//! * **No ambient access.** The standard library works (routerd links WASI), but there is
//!   nothing behind it: no preopened directories, no sockets, no environment or arguments;
//!   clocks and random numbers do work. Stdout and stderr go to routerd's log. Talk to routerd
//!   through [`Request`], [`Response`], the return values and [`log`](mod@log); keep state
//!   shared by every instance in the plugin's [`store`]; call out over HTTP with [`outbound`],
//!   to the origins the plugin's settings allow.
//! * **Bounded results.** routerd refuses, as a failed call, a result with too many or too large
//!   headers (more than 256 headers or 256 KiB of them in one result) or a reply body over 1 MiB. Keep header
//!   names and values valid ([`http::is_header_name`], [`http::is_header_value`]) and new paths
//!   starting with `/`.
//! * **Reads cost a copy.** Each [`Request`] accessor copies just what it returns from routerd;
//!   call it once and keep the value.
//!
//! # Testing natively
//!
//! Imports into routerd exist only inside the component; compiled natively they panic, except
//! [`log`](mod@log), which prints to stderr. For `cargo test`, build requests with
//! [`testing::MockRequest`] and call your trait methods directly (as in the examples above), and
//! keep the interesting logic in plain functions. The helpers in [`http`] and the builders in
//! [`edits`] are plain Rust:
//!
//! ```
//! use routerd_sdk::{http, RequestEdits};
//!
//! assert_eq!(http::query_param("variant=b&x=1", "variant").as_deref(), Some("b"));
//! assert_eq!(http::cookie_value("a=1; ab=test", "ab"), Some("test"));
//! let edits = RequestEdits::new().set_header("X-Variant", "b").path("/b/index.html");
//! assert_eq!(edits.path.as_deref(), Some("/b/index.html"));
//! ```
//!

#![deny(missing_docs)]

mod bindings;
pub mod edits;
pub mod http;
pub mod log;
pub mod outbound;
mod request;
pub mod store;
pub mod testing;

pub use edits::{HeaderOp, Reply, RequestAction, RequestEdits, ResponseEdits};
pub use request::{Request, Response};

/// A route predicate: decides whether a route matches a request.
///
/// Export an implementation with [`export_predicate!`] (or [`export_plugin!`] for a type that is
/// also a [`Filter`]).
pub trait Predicate {
    /// Checks a route's `args` once, when a route using this predicate is loaded. An `Err`
    /// rejects the route with that message. The default accepts any args.
    fn validate(args: &[String]) -> Result<(), String> {
        let _ = args;
        Ok(())
    }

    /// Whether `req` matches, given the route's (already validated) `args`.
    fn matches(req: &Request<'_>, args: &[String]) -> bool;
}

/// A request/response filter.
///
/// Export an implementation with [`export_filter!`] (or [`export_plugin!`] for a type that is
/// also a [`Predicate`]).
pub trait Filter {
    /// Checks a route's `args` once, when a route using this filter is loaded. An `Err` rejects
    /// the route with that message. The default accepts any args.
    fn validate(args: &[String]) -> Result<(), String> {
        let _ = args;
        Ok(())
    }

    /// Request phase, run in `filters` order before the request is proxied; `req` shows the
    /// request as earlier filters left it. Return edits to go on (`RequestEdits` converts with
    /// `.into()`) or a [`Reply`] to answer the client directly. The default proceeds unchanged.
    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        let _ = (req, args);
        RequestAction::proceed()
    }

    /// Response phase, run in `filters` order on the response before it is sent (also when a
    /// filter replied itself). The default changes nothing.
    fn on_response(req: &Request<'_>, resp: &Response<'_>, args: &[String]) -> ResponseEdits {
        let _ = (req, resp, args);
        ResponseEdits::new()
    }

    /// The phases this filter runs for a route with these (valid) args; routerd does not call
    /// a phase left out, so a filter that only edits responses costs one call per request.
    /// The default runs both.
    fn phases(args: &[String]) -> Phases {
        let _ = args;
        Phases::BOTH
    }
}

/// Which of a [`Filter`]'s phases run for a route (see [`Filter::phases`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// [`Filter::on_request`] runs.
    pub request: bool,
    /// [`Filter::on_response`] runs.
    pub response: bool,
}

impl Phases {
    /// Both phases.
    pub const BOTH: Phases = Phases {
        request: true,
        response: true,
    };
    /// Only the request phase.
    pub const REQUEST: Phases = Phases {
        request: true,
        response: false,
    };
    /// Only the response phase.
    pub const RESPONSE: Phases = Phases {
        request: false,
        response: true,
    };
}

/// Exports a [`Predicate`] implementation as this component's `router:plugin/predicate`
/// (world `predicate-plugin`). Call it once, at the top level of the plugin crate:
/// `routerd_sdk::export_predicate!(MyPredicate);`
#[macro_export]
macro_rules! export_predicate {
    ($ty:ty) => {
        const _: () = {
            #[allow(dead_code)]
            fn __routerd_assert_predicate<T: $crate::Predicate>() {}
            #[allow(dead_code)]
            fn __routerd_check() {
                __routerd_assert_predicate::<$ty>();
            }
            type __RouterdExport = $crate::__private::Adapter<$ty>;
            $crate::__private::predicate_world::export_world!(
                __RouterdExport with_types_in $crate::__private::predicate_world
            );
        };
    };
}

/// Exports a [`Filter`] implementation as this component's `router:plugin/filter`
/// (world `filter-plugin`). Call it once, at the top level of the plugin crate:
/// `routerd_sdk::export_filter!(MyFilter);`
#[macro_export]
macro_rules! export_filter {
    ($ty:ty) => {
        const _: () = {
            #[allow(dead_code)]
            fn __routerd_assert_filter<T: $crate::Filter>() {}
            #[allow(dead_code)]
            fn __routerd_check() {
                __routerd_assert_filter::<$ty>();
            }
            type __RouterdExport = $crate::__private::Adapter<$ty>;
            $crate::__private::filter_world::export_world!(
                __RouterdExport with_types_in $crate::__private::filter_world
            );
        };
    };
}

/// Exports a type implementing both [`Predicate`] and [`Filter`] (world `plugin`). Call it once,
/// instead of the other two: `routerd_sdk::export_plugin!(MyPlugin);`
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        $crate::export_predicate!($ty);
        $crate::export_filter!($ty);
    };
}

#[doc(hidden)]
/// Not public API: used by the export macros.
pub mod __private {
    use core::marker::PhantomData;
    use std::cell::RefCell;
    use std::rc::Rc;

    pub use crate::bindings::{filter_world, predicate_world};

    use crate::bindings::predicate_iface;
    use crate::bindings::{filter_iface, types as wit};
    use crate::{Filter, Predicate, Request, Response};

    /// Implements the generated `Guest` traits for a [`Predicate`] and/or [`Filter`] `T`.
    pub struct Adapter<T>(PhantomData<T>);

    thread_local! {
        /// Each route's args by the `config` number routerd gave them in `configure`. (An
        /// instance runs one call at a time; the number is the index.)
        static CONFIGS: RefCell<Vec<Option<Rc<[String]>>>> = const { RefCell::new(Vec::new()) };
    }

    fn keep(config: u32, args: Vec<String>) {
        CONFIGS.with_borrow_mut(|configs| {
            let i = config as usize;
            if configs.len() <= i {
                configs.resize(i + 1, None);
            }
            configs[i] = Some(args.into());
        });
    }

    /// The args kept under `config` (none if routerd never configured it, which it does not do).
    fn args(config: u32) -> Rc<[String]> {
        CONFIGS
            .with_borrow(|configs| configs.get(config as usize).cloned().flatten())
            .unwrap_or_else(|| Rc::from(Vec::new()))
    }

    impl<T: Predicate> predicate_iface::Guest for Adapter<T> {
        fn configure(config: u32, args: Vec<String>) -> Result<(), String> {
            T::validate(&args)?;
            keep(config, args);
            Ok(())
        }

        fn matches(config: u32) -> bool {
            T::matches(&Request::from_host(), &args(config))
        }
    }

    impl<T: Filter> filter_iface::Guest for Adapter<T> {
        fn configure(config: u32, args: Vec<String>) -> Result<filter_iface::Phases, String> {
            T::validate(&args)?;
            let phases = T::phases(&args);
            keep(config, args);
            let mut answer = filter_iface::Phases::empty();
            if phases.request {
                answer = answer | filter_iface::Phases::REQUEST;
            }
            if phases.response {
                answer = answer | filter_iface::Phases::RESPONSE;
            }
            Ok(answer)
        }

        fn on_request(config: u32) -> wit::RequestAction {
            T::on_request(&Request::from_host(), &args(config)).into()
        }

        fn on_response(config: u32) -> wit::ResponseEdits {
            T::on_response(&Request::from_host(), &Response::from_host(), &args(config)).into()
        }
    }
}
