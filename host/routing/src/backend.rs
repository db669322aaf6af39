//! How routerd connects to a route's backend when it is not plain HTTP/1.1: TLS (with the
//! route's own CA, server name, or no verification at all) and HTTP/2. Checked when the route
//! is compiled, so a bad CA file is a route error, never a failed request.

use std::sync::Arc;

use http::uri::Scheme;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::config::{ErrorCode, FieldError, RouteRule};

/// The connection settings of one target; equal settings share a client (and its pool).
#[derive(Debug, PartialEq, Eq)]
pub struct BackendConnection {
    /// TLS, for `https://` targets.
    pub tls: Option<BackendTls>,
    /// HTTP/2 (over TLS by ALPN, over `http://` by prior knowledge).
    pub h2: bool,
    /// Names these settings; equal keys mean equal settings.
    pub key: Box<str>,
}

/// TLS settings toward a backend.
#[derive(Debug, PartialEq, Eq)]
pub struct BackendTls {
    /// The CA certificates to trust instead of Mozilla's roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// SNI and the name checked in the certificate, instead of the target's host.
    pub server_name: Option<ServerName<'static>>,
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
}

/// A backend setting is wrong.
fn invalid(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError::new(field, ErrorCode::InvalidBackendTls, reason)
}

impl BackendConnection {
    /// The settings `rule` asks for toward a target of `scheme`: `None` for plain HTTP/1.1,
    /// else the settings, or the field at fault and why.
    pub fn from_rule(
        rule: &RouteRule,
        scheme: &Scheme,
    ) -> Result<Option<Arc<BackendConnection>>, FieldError> {
        let h2 = match rule.upstream_protocol.as_deref() {
            None | Some("http1") => false,
            Some("h2") => true,
            Some(other) => {
                return Err(invalid(
                    "upstream_protocol",
                    format!("{other:?} is neither \"http1\" nor \"h2\""),
                ));
            }
        };
        let https = *scheme == Scheme::HTTPS;
        if !https {
            for (field, set) in [
                ("tls_ca_file", rule.tls_ca_file.is_some()),
                ("tls_server_name", rule.tls_server_name.is_some()),
                ("tls_insecure_skip_verify", rule.tls_insecure_skip_verify),
            ] {
                if set {
                    return Err(invalid(field, "only an https:// target_url uses it"));
                }
            }
            return Ok(h2.then(|| {
                Arc::new(BackendConnection {
                    tls: None,
                    h2,
                    key: "h2c".into(),
                })
            }));
        }
        if rule.tls_insecure_skip_verify && rule.tls_ca_file.is_some() {
            return Err(invalid(
                "tls_insecure_skip_verify",
                "it skips the check tls_ca_file is for: give one or the other",
            ));
        }
        let mut key = format!("tls;h2={h2};insecure={}", rule.tls_insecure_skip_verify);
        let ca = match &rule.tls_ca_file {
            Some(path) => {
                let certs = read_ca(path).map_err(|reason| invalid("tls_ca_file", reason))?;
                let mut digest = Sha256::new();
                for c in &certs {
                    digest.update(c.as_ref());
                }
                key.push_str(";ca=");
                key.push_str(&hex::encode(digest.finalize()));
                Some(certs)
            }
            None => None,
        };
        let server_name = match &rule.tls_server_name {
            Some(name) => {
                let parsed = ServerName::try_from(name.clone()).map_err(|e| {
                    invalid(
                        "tls_server_name",
                        format!("{name:?} is not a DNS name or IP address: {e}"),
                    )
                })?;
                key.push_str(";sni=");
                key.push_str(name);
                Some(parsed)
            }
            None => None,
        };
        Ok(Some(Arc::new(BackendConnection {
            tls: Some(BackendTls {
                ca,
                server_name,
                insecure_skip_verify: rule.tls_insecure_skip_verify,
            }),
            h2,
            key: key.into(),
        })))
    }

    /// The settings of an `https://` `default_url`: Mozilla's roots, HTTP/1.1.
    pub fn default_https() -> Arc<BackendConnection> {
        Arc::new(BackendConnection {
            tls: Some(BackendTls {
                ca: None,
                server_name: None,
                insecure_skip_verify: false,
            }),
            h2: false,
            key: "tls;h2=false;insecure=false".into(),
        })
    }
}

fn read_ca(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = routerd_base::pem::read_certificates(std::path::Path::new(path))
        .map_err(|reason| format!("{path:?}: {reason}"))?;
    // A certificate the verifier could not use would only fail later, on a request.
    let mut roots = rustls::RootCertStore::empty();
    let (_, bad) = roots.add_parsable_certificates(certs.iter().cloned());
    if bad > 0 {
        return Err(format!(
            "{path:?}: {bad} of its certificates cannot be used as a trust anchor"
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(extra: serde_json::Value) -> RouteRule {
        let mut doc = serde_json::json!({"name": "r", "target_url": "https://b:1"});
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(extra: serde_json::Value, scheme: &Scheme) -> Option<String> {
        BackendConnection::from_rule(&rule(extra), scheme)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|c| c.key.to_string())
    }

    #[test]
    fn equal_settings_share_a_key_and_plain_http1_needs_none() {
        let https = Scheme::HTTPS;
        assert_eq!(key(serde_json::json!({}), &Scheme::HTTP), None);
        assert_eq!(
            key(
                serde_json::json!({"upstream_protocol": "h2"}),
                &Scheme::HTTP
            )
            .as_deref(),
            Some("h2c")
        );
        let named = serde_json::json!({"tls_server_name": "a.test"});
        assert_eq!(key(named.clone(), &https), key(named, &https));
        assert_ne!(
            key(serde_json::json!({"tls_server_name": "a.test"}), &https),
            key(serde_json::json!({"tls_server_name": "b.test"}), &https)
        );
        assert_ne!(
            key(serde_json::json!({}), &https),
            key(serde_json::json!({"upstream_protocol": "h2"}), &https)
        );
        assert_eq!(
            key(serde_json::json!({}), &https).as_deref(),
            Some(&*BackendConnection::default_https().key)
        );
    }

    #[test]
    fn contradictions_name_their_field() {
        // The field an error names ("" when there is none).
        let field = |extra: serde_json::Value, scheme: &Scheme| {
            BackendConnection::from_rule(&rule(extra), scheme)
                .err()
                .map_or(String::new(), |e| e.field)
        };
        assert_eq!(
            field(
                serde_json::json!({"tls_insecure_skip_verify": true, "tls_ca_file": "/x"}),
                &Scheme::HTTPS
            ),
            "tls_insecure_skip_verify"
        );
        assert_eq!(
            field(
                serde_json::json!({"tls_server_name": "not a name!"}),
                &Scheme::HTTPS
            ),
            "tls_server_name"
        );
        assert_eq!(
            field(
                serde_json::json!({"tls_insecure_skip_verify": true}),
                &Scheme::HTTP
            ),
            "tls_insecure_skip_verify"
        );
    }
}
