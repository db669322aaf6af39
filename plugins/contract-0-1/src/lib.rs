//! A test fixture: the `header-eq` predicate as it was written for `router:plugin@0.1.0`, the
//! contract whose request was a borrowed resource. routerd no longer speaks 0.1.0; it must
//! refuse this component with a message naming the version it was built for and the versions
//! routerd speaks, instead of a bare link error.

wit_bindgen::generate!({
    path: "wit",
    world: "predicate-plugin",
});

use exports::router::plugin::predicate::Guest;
use router::plugin::types::Request;

struct HeaderEq;

impl Guest for HeaderEq {
    fn validate(args: Vec<String>) -> Result<(), String> {
        match args.len() {
            2 => Ok(()),
            _ => Err("expected 2 args: [header, value]".into()),
        }
    }

    fn matches(req: &Request, args: Vec<String>) -> bool {
        match args.as_slice() {
            [name, value] => req.header(name).as_deref() == Some(value.as_str()),
            _ => false,
        }
    }
}

export!(HeaderEq);
