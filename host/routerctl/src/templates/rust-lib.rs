//! `{{name}}`: a routerd plugin (a route predicate and a request/response filter).
//!
//! * predicate, args `[header, value]`: matches when the request's `header` equals `value`;
//! * filter, args `[tag]`: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is
//!   answered `203` with the body `reply from TAG`; the response gets
//!   `x-tag-response: TAG:STATUS`.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::router::plugin::{filter, predicate};
use router::plugin::types::{HeaderOp, Reply, RequestAction, RequestEdits, ResponseEdits};
use router::plugin::{request, response};

struct Plugin;

impl predicate::Guest for Plugin {
    fn validate(args: Vec<String>) -> Result<(), String> {
        check_args(&args, 2, "expected 2 args: [header, value]")
    }

    fn matches(args: Vec<String>) -> bool {
        let [name, value] = args.as_slice() else {
            return false;
        };
        request::header(name).as_deref() == Some(value.as_str())
    }
}

impl filter::Guest for Plugin {
    fn validate(args: Vec<String>) -> Result<(), String> {
        check_args(&args, 1, "expected 1 arg: [tag]")
    }

    fn on_request(args: Vec<String>) -> RequestAction {
        let tag = args.first().cloned().unwrap_or_default();
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

    fn on_response(args: Vec<String>) -> ResponseEdits {
        let tag = args.first().cloned().unwrap_or_default();
        ResponseEdits {
            status: None,
            headers: vec![HeaderOp::Set((
                "x-tag-response".into(),
                format!("{tag}:{}", response::status()),
            ))],
        }
    }
}

/// The args check both `validate`s share (plain Rust, so it is tested natively below).
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
