//! A test fixture: a predicate and a filter written for `router:plugin@0.2.0`, whose calls take
//! the route's args every time (there is no `configure`). routerd keeps loading plugins built
//! for 0.2.0 beside 0.3.0 ones; this is the plugin that proves it.

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "plugin",
});

use exports::router::plugin::{filter, predicate};
use router::plugin::request;
use router::plugin::types::{HeaderOp, RequestAction, RequestEdits, ResponseEdits};

struct Fixture;

fn two_args(args: &[String]) -> Result<(), String> {
    match args.len() {
        2 => Ok(()),
        n => Err(format!("expected 2 args: [header, value], got {n}")),
    }
}

impl predicate::Guest for Fixture {
    fn validate(args: Vec<String>) -> Result<(), String> {
        two_args(&args)
    }

    fn matches(args: Vec<String>) -> bool {
        match args.as_slice() {
            [name, value] => request::header(name).as_deref() == Some(value.as_str()),
            _ => false,
        }
    }
}

impl filter::Guest for Fixture {
    fn validate(args: Vec<String>) -> Result<(), String> {
        two_args(&args)
    }

    fn on_request(args: Vec<String>) -> RequestAction {
        let headers = match args.as_slice() {
            [name, value] => vec![HeaderOp::Set((name.clone(), value.clone()))],
            _ => Vec::new(),
        };
        RequestAction::Proceed(RequestEdits {
            headers,
            path: None,
            query: None,
        })
    }

    fn on_response(_args: Vec<String>) -> ResponseEdits {
        ResponseEdits {
            status: None,
            headers: vec![HeaderOp::Set(("x-contract".into(), "0.2".into()))],
        }
    }
}

export!(Fixture);
