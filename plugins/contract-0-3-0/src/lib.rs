//! A test fixture: a predicate and a filter built for `router:plugin@0.3.0`, the contract as it
//! was before `store` (0.3.1). routerd links its imports and finds its exports by the component
//! model's semver rule; this is the plugin that proves it.

wit_bindgen::generate!({
    path: "../../wit/v0.3.0",
    world: "plugin",
});

use std::cell::RefCell;
use std::collections::HashMap;

use exports::router::plugin::{filter, predicate};
use router::plugin::request;
use router::plugin::types::{HeaderOp, RequestAction, RequestEdits, ResponseEdits};

thread_local! {
    /// (header, value) by config number.
    static CONFIGS: RefCell<HashMap<u32, (String, String)>> = RefCell::default();
}

struct Fixture;

fn keep(config: u32, args: Vec<String>) -> Result<(), String> {
    match <[String; 2]>::try_from(args) {
        Ok([name, value]) => {
            CONFIGS.with(|c| c.borrow_mut().insert(config, (name, value)));
            Ok(())
        }
        Err(args) => Err(format!(
            "expected 2 args: [header, value], got {}",
            args.len()
        )),
    }
}

fn pair(config: u32) -> Option<(String, String)> {
    CONFIGS.with(|c| c.borrow().get(&config).cloned())
}

impl predicate::Guest for Fixture {
    fn configure(config: u32, args: Vec<String>) -> Result<(), String> {
        keep(config, args)
    }

    fn matches(config: u32) -> bool {
        pair(config).is_some_and(|(name, value)| request::header(&name) == Some(value))
    }
}

impl filter::Guest for Fixture {
    fn configure(config: u32, args: Vec<String>) -> Result<filter::Phases, String> {
        keep(config, args)?;
        Ok(filter::Phases::REQUEST | filter::Phases::RESPONSE)
    }

    fn on_request(config: u32) -> RequestAction {
        RequestAction::Proceed(RequestEdits {
            headers: pair(config)
                .map(|p| vec![HeaderOp::Set(p)])
                .unwrap_or_default(),
            path: None,
            query: None,
        })
    }

    fn on_response(_config: u32) -> ResponseEdits {
        ResponseEdits {
            status: None,
            headers: vec![HeaderOp::Set(("x-contract".into(), "0.3.0".into()))],
        }
    }
}

export!(Fixture);
