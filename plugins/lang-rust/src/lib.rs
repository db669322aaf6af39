//! `lang-rust`: the `lang` plugin in Rust with the SDK, the reference for the same plugin in
//! every other guest language (`plugins/lang/`), which the language tests load side by side.
//!
//! * predicate, args `[header, value]`: matches when the request's `header` equals `value`;
//! * filter, args `[tag]`: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is
//!   answered `203` with the body `reply from TAG`; the response gets
//!   `x-tag-response: TAG:STATUS`.

use routerd_sdk::{
    Filter, Predicate, Reply, Request, RequestAction, RequestEdits, Response, ResponseEdits,
};

/// The plugin.
pub struct Lang;

impl Predicate for Lang {
    fn validate(args: &[String]) -> Result<(), String> {
        match args.len() {
            2 => Ok(()),
            _ => Err("expected 2 args: [header, value]".into()),
        }
    }

    fn matches(req: &Request<'_>, args: &[String]) -> bool {
        let [name, value] = args else {
            return false;
        };
        req.header(name).as_deref() == Some(value.as_str())
    }
}

impl Filter for Lang {
    fn validate(args: &[String]) -> Result<(), String> {
        match args.len() {
            1 => Ok(()),
            _ => Err("expected 1 arg: [tag]".into()),
        }
    }

    fn on_request(req: &Request<'_>, args: &[String]) -> RequestAction {
        let tag = args.first().map_or("", String::as_str);
        if req.header("x-reply").is_some() {
            return Reply::new(203)
                .header("x-tag", tag)
                .body(format!("reply from {tag}"))
                .into();
        }
        RequestEdits::new().set_header("x-tag", tag).into()
    }

    fn on_response(_req: &Request<'_>, resp: &Response<'_>, args: &[String]) -> ResponseEdits {
        let tag = args.first().map_or("", String::as_str);
        ResponseEdits::new().set_header("x-tag-response", format!("{tag}:{}", resp.status()))
    }
}

routerd_sdk::export_plugin!(Lang);

#[cfg(test)]
mod tests {
    use super::*;
    use routerd_sdk::testing::{MockRequest, MockResponse};

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn predicate_compares_one_header() {
        let a = args(&["x-lang", "yes"]);
        let yes = MockRequest::new("GET", "/").header("X-Lang", "yes");
        let no = MockRequest::new("GET", "/").header("x-lang", "no");
        assert!(Lang::matches(&yes.as_request(), &a));
        assert!(!Lang::matches(&no.as_request(), &a));
        assert!(!Lang::matches(
            &MockRequest::new("GET", "/").as_request(),
            &a
        ));
        assert!(<Lang as Predicate>::validate(&args(&["x"])).is_err());
    }

    #[test]
    fn filter_tags_or_replies() {
        let a = args(&["t1"]);
        let plain = MockRequest::new("GET", "/");
        assert_eq!(
            Lang::on_request(&plain.as_request(), &a),
            RequestEdits::new().set_header("x-tag", "t1").into()
        );
        let asks = MockRequest::new("GET", "/").header("x-reply", "1");
        match Lang::on_request(&asks.as_request(), &a) {
            RequestAction::Respond(reply) => assert_eq!(reply.status, 203),
            other => panic!("expected a reply, got {other:?}"),
        }
        let resp = MockResponse::new(404);
        assert_eq!(
            Lang::on_response(&plain.as_request(), &resp.as_response(), &a),
            ResponseEdits::new().set_header("x-tag-response", "t1:404")
        );
        assert!(<Lang as Filter>::validate(&args(&[])).is_err());
    }
}
