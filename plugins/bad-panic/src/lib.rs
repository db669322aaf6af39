//! `bad-panic` (test plugin): a predicate and a filter (world `plugin`) that panic, or flood
//! stdout and stderr, on request.
//!
//! What `args[0]` selects:
//!
//! | `args[0]`        | `validate` | `matches` | `on-request` | `on-response` |
//! |------------------|------------|-----------|--------------|---------------|
//! | `panic`          | ok         | panics    | panics       | panics        |
//! | `panic-request`  | ok         | true      | panics       | no change     |
//! | `panic-response` | ok         | true      | proceeds     | panics        |
//! | `panic-validate` | panics     | -         | -            | -             |
//! | `flood`          | ok         | true, after 1,000 lines each to stdout and stderr | proceeds | no change |
//! | anything / none  | ok         | true      | proceeds     | no change     |
//!
//! So with no args (or e.g. `["ok"]`) it is a healthy plugin that matches everything and changes
//! nothing. A Rust panic in a component traps, so routerd sees a trap.

use routerd_sdk::{Filter, Predicate, Request, RequestAction, Response, ResponseEdits};

/// The plugin.
pub struct BadPanic;

/// Which calls should panic, from the args.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// `validate` panics.
    pub validate: bool,
    /// `matches` panics.
    pub matches: bool,
    /// `on-request` panics.
    pub on_request: bool,
    /// `on-response` panics.
    pub on_response: bool,
}

/// Reads the mode from `args[0]`.
pub fn mode(args: &[String]) -> Mode {
    match args.first().map(String::as_str) {
        Some("panic") => Mode {
            validate: false,
            matches: true,
            on_request: true,
            on_response: true,
        },
        Some("panic-request") => Mode {
            on_request: true,
            ..Mode::default()
        },
        Some("panic-response") => Mode {
            on_response: true,
            ..Mode::default()
        },
        Some("panic-validate") => Mode {
            validate: true,
            ..Mode::default()
        },
        _ => Mode::default(),
    }
}

fn validate(args: &[String]) -> Result<(), String> {
    if mode(args).validate {
        panic!("bad-panic: panicking in validate, as asked");
    }
    Ok(())
}

impl Predicate for BadPanic {
    fn validate(args: &[String]) -> Result<(), String> {
        validate(args)
    }

    fn matches(_req: &Request<'_>, args: &[String]) -> bool {
        if mode(args).matches {
            panic!("bad-panic: panicking in matches, as asked");
        }
        if args.first().is_some_and(|a| a == "flood") {
            for i in 0..1000 {
                println!("bad-panic: flood line {i} on stdout");
                eprintln!("bad-panic: flood line {i} on stderr");
            }
        }
        true
    }
}

impl Filter for BadPanic {
    fn validate(args: &[String]) -> Result<(), String> {
        validate(args)
    }

    fn on_request(_req: &Request<'_>, args: &[String]) -> RequestAction {
        if mode(args).on_request {
            panic!("bad-panic: panicking in on-request, as asked");
        }
        RequestAction::proceed()
    }

    fn on_response(_req: &Request<'_>, _resp: &Response<'_>, args: &[String]) -> ResponseEdits {
        if mode(args).on_response {
            panic!("bad-panic: panicking in on-response, as asked");
        }
        ResponseEdits::new()
    }
}

routerd_sdk::export_plugin!(BadPanic);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::{MockRequest, MockResponse};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn healthy_without_panic_arg() {
        let req = MockRequest::new("GET", "/");
        let resp = MockResponse::new(200);
        for a in [args(&[]), args(&["ok"]), args(&["Panic"])] {
            assert!(<BadPanic as Predicate>::validate(&a).is_ok());
            assert!(<BadPanic as Filter>::validate(&a).is_ok());
            assert!(BadPanic::matches(&req.as_request(), &a));
            assert_eq!(
                BadPanic::on_request(&req.as_request(), &a),
                RequestAction::proceed()
            );
            assert!(BadPanic::on_response(&req.as_request(), &resp.as_response(), &a).is_empty());
        }
    }

    #[test]
    fn modes() {
        assert!(!mode(&args(&["panic"])).validate);
        assert!(mode(&args(&["panic"])).matches);
        assert_eq!(
            mode(&args(&["panic-response"])),
            Mode {
                on_response: true,
                ..Mode::default()
            }
        );
        // Only the first arg counts.
        assert_eq!(mode(&args(&["x", "panic"])), Mode::default());
    }

    #[test]
    #[should_panic(expected = "matches")]
    fn panics_in_matches() {
        BadPanic::matches(
            &MockRequest::new("GET", "/").as_request(),
            &args(&["panic"]),
        );
    }

    #[test]
    #[should_panic(expected = "on-request")]
    fn panics_in_on_request() {
        let req = MockRequest::new("GET", "/");
        BadPanic::on_request(&req.as_request(), &args(&["panic-request"]));
    }

    #[test]
    #[should_panic(expected = "on-response")]
    fn panics_in_on_response() {
        let req = MockRequest::new("GET", "/");
        let resp = MockResponse::new(200);
        BadPanic::on_response(&req.as_request(), &resp.as_response(), &args(&["panic"]));
    }

    #[test]
    #[should_panic(expected = "validate")]
    fn panics_in_validate() {
        let _ = <BadPanic as Filter>::validate(&args(&["panic-validate"]));
    }
}
