//! `{{name}}`: a routerd plugin (a route predicate and a request/response filter).
//!
//! * predicate, args `[header, value]`: matches when the request's `header` equals `value`;
//! * filter, args `[tag]`: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is
//!   answered `203` with the body `reply from TAG`; the response gets
//!   `x-tag-response: TAG:STATUS`.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use std::cell::RefCell;
use std::collections::HashMap;

use exports::router::plugin::filter::{self, Phases};
use exports::router::plugin::predicate;
use router::plugin::types::{HeaderOp, Reply, RequestAction, RequestEdits, ResponseEdits};
use router::plugin::{request, response};

struct Plugin;

thread_local! {
    /// Each route's args, by the `config` number routerd gave them in `configure` (routerd
    /// configures every instance before its first call for a route).
    static CONFIGS: RefCell<HashMap<u32, Vec<String>>> = RefCell::new(HashMap::new());
}

fn keep(config: u32, args: Vec<String>) {
    CONFIGS.with_borrow_mut(|c| c.insert(config, args));
}

fn args(config: u32) -> Vec<String> {
    CONFIGS.with_borrow(|c| c.get(&config).cloned().unwrap_or_default())
}

impl predicate::Guest for Plugin {
    fn configure(config: u32, args: Vec<String>) -> Result<(), String> {
        check_args(&args, 2, "expected 2 args: [header, value]")?;
        keep(config, args);
        Ok(())
    }

    fn matches(config: u32) -> bool {
        let args = args(config);
        let [name, value] = args.as_slice() else {
            return false;
        };
        request::header(name).as_deref() == Some(value.as_str())
    }
}

impl filter::Guest for Plugin {
    fn configure(config: u32, args: Vec<String>) -> Result<Phases, String> {
        check_args(&args, 1, "expected 1 arg: [tag]")?;
        keep(config, args);
        // Both phases run; leave one out and routerd does not call it.
        Ok(Phases::REQUEST | Phases::RESPONSE)
    }

    fn on_request(config: u32) -> RequestAction {
        let tag = args(config).first().cloned().unwrap_or_default();
        if request::header("x-reply").is_some() {
            return RequestAction::Respond(Reply {
                status: 203,
                headers: vec![("x-tag".into(), tag.clone())],
                body: format!("reply from {tag}").into_bytes(),
            });
        }
        RequestAction::Proceed(RequestEdits {
            headers: vec![HeaderOp::Set(("x-tag".into(), tag))],
            path: None,
            query: None,
        })
    }

    fn on_response(config: u32) -> ResponseEdits {
        let tag = args(config).first().cloned().unwrap_or_default();
        ResponseEdits {
            status: None,
            headers: vec![HeaderOp::Set((
                "x-tag-response".into(),
                format!("{tag}:{}", response::status()),
            ))],
        }
    }
}

/// The args check both `configure`s share (plain Rust, so it is tested natively below).
fn check_args(args: &[String], want: usize, message: &str) -> Result<(), String> {
    if args.len() == want {
        Ok(())
    } else {
        Err(message.to_owned())
    }
}

export!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_checked() {
        let args = |n: usize| vec!["x".to_string(); n];
        assert!(check_args(&args(2), 2, "m").is_ok());
        assert_eq!(check_args(&args(1), 2, "m"), Err("m".to_owned()));
    }
}
