//! TLS on the listener: the certificates (a default pair and a directory of `NAME.crt` /
//! `NAME.key` pairs chosen by SNI), loaded and checked as one set, swapped atomically when
//! their files change (a set with any bad file is refused and the last good one keeps
//! serving), and the rustls config that serves them: TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// A certificate set that cannot be loaded; it names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is unreadable, malformed or does not fit its pair.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither a default pair nor any pair in the directory.
    #[error(
        "no certificate to serve: give --tls-cert and --tls-key, or a --tls-dir holding NAME.crt and NAME.key"
    )]
    NoCertificate,
    /// rustls refused the protocol versions (a build without TLS 1.2 or 1.3).
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificates are read from.
#[derive(Debug, Clone, Default)]
pub struct CertSource {
    /// The pair for clients whose SNI name has no pair of its own (or who send none).
    pub default: Option<(PathBuf, PathBuf)>,
    /// `NAME.crt` with `NAME.key`, served to SNI `NAME`; `_.example.com` (or `*.example.com`)
    /// serves any single label under `example.com`.
    pub dir: Option<PathBuf>,
}

impl CertSource {
    /// The files and directory a reload watches.
    pub fn watched(&self) -> (Vec<PathBuf>, Option<PathBuf>) {
        let files = self
            .default
            .iter()
            .flat_map(|(c, k)| [c.clone(), k.clone()])
            .collect();
        (files, self.dir.clone())
    }
}

/// One loaded, consistent set of certificates.
#[derive(Debug)]
pub struct CertSet {
    /// By lowercase SNI name; wildcard entries are stored as `*.parent`.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// Reads and checks every pair of `source`; the first bad file fails the whole set.
    pub fn load(source: &CertSource, provider: &CryptoProvider) -> Result<CertSet, TlsError> {
        let default = match &source.default {
            Some((cert, key)) => Some(load_pair(cert, key, provider)?),
            None => None,
        };
        let mut by_name = HashMap::new();
        if let Some(dir) = &source.dir {
            let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
            let mut certs: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            certs.sort();
            for cert in certs {
                let Some(stem) = cert.file_stem().and_then(|s| s.to_str()) else {
                    return Err(TlsError::File {
                        path: cert.clone(),
                        reason: "the file name is not UTF-8, so it names no SNI host".into(),
                    });
                };
                let name = match stem.strip_prefix("_.") {
                    Some(parent) => format!("*.{parent}"),
                    None => stem.to_owned(),
                }
                .to_ascii_lowercase();
                let key = cert.with_extension("key");
                if !key.exists() {
                    return Err(TlsError::File {
                        path: cert.clone(),
                        reason: format!("its key {} is missing", key.display()),
                    });
                }
                by_name.insert(name, load_pair(&cert, &key, provider)?);
            }
        }
        if default.is_none() && by_name.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(CertSet { by_name, default })
    }

    /// The SNI names with a pair of their own, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether there is a pair for clients whose name has none.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            // rustls hands SNI names over lowercased already.
            if let Some(k) = self.by_name.get(name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(k) = self.by_name.get(&format!("*.{parent}"))
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// A PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or SEC1).
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain =
        routerd_base::pem::read_certificates(cert).map_err(|reason| file_error(cert, reason))?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| file_error(key, e))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|e| TlsError::File {
        path: key.to_path_buf(),
        reason: format!("does not belong to {}: {e}", cert.display()),
    })?;
    Ok(Arc::new(pair))
}

/// Chooses the certificate by SNI from the current set.
#[derive(Debug)]
struct SniResolver(ArcSwap<CertSet>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().find(hello.server_name())
    }
}

/// A TLS listener's certificates and handshake settings.
pub struct TlsTerminator {
    source: CertSource,
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("source", &self.source)
            .field("served", &self.resolver.0.load())
            .finish_non_exhaustive()
    }
}

impl TlsTerminator {
    /// Loads `source`; fails (naming the file) if any pair is bad.
    pub fn new(source: CertSource) -> Result<TlsTerminator, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let set = CertSet::load(&source, &provider)?;
        let resolver = Arc::new(SniResolver(ArcSwap::from_pointee(set)));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsTerminator {
            source,
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; a good set replaces the served one, a bad one changes nothing.
    pub fn reload(&self) -> Result<(), TlsError> {
        let set = CertSet::load(&self.source, &self.provider)?;
        self.resolver.0.store(Arc::new(set));
        Ok(())
    }

    /// What is served now.
    pub fn current(&self) -> Arc<CertSet> {
        self.resolver.0.load_full()
    }

    /// Where the certificates come from.
    pub fn source(&self) -> &CertSource {
        &self.source
    }

    /// The handshake half, for the accept loop.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, stem: &str, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(format!("{stem}.crt")), cert.cert.pem())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.join(format!("{stem}.key")),
            cert.signing_key.serialize_pem(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("routerd-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn leaf(set: &CertSet, sni: Option<&str>) -> Option<Vec<u8>> {
        set.find(sni).map(|k| k.cert[0].as_ref().to_vec())
    }

    #[test]
    fn picks_by_exact_name_then_wildcard_then_default() {
        let dir = temp_dir("pick");
        pair(&dir, "a.test", &["a.test"]);
        pair(&dir, "_.b.test", &["*.b.test"]);
        let default = dir.join("default");
        std::fs::create_dir_all(&default).unwrap_or_else(|e| panic!("{e}"));
        pair(&default, "any", &["any.test"]);
        let provider = rustls::crypto::ring::default_provider();
        let source = CertSource {
            default: Some((default.join("any.crt"), default.join("any.key"))),
            dir: Some(dir.clone()),
        };
        let set = CertSet::load(&source, &provider).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.names(), ["*.b.test", "a.test"]);
        let a = std::fs::read(dir.join("a.test.crt")).unwrap_or_else(|e| panic!("{e}"));
        let a =
            rustls::pki_types::CertificateDer::from_pem_slice(&a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leaf(&set, Some("a.test")), Some(a.as_ref().to_vec()));
        assert_ne!(leaf(&set, Some("x.b.test")), leaf(&set, Some("a.test")));
        // A wildcard covers one label only; deeper names get the default.
        assert_eq!(leaf(&set, Some("y.x.b.test")), leaf(&set, None));
        assert_eq!(leaf(&set, Some("other.test")), leaf(&set, None));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_pair_names_its_file_and_fails_the_set() {
        let dir = temp_dir("bad");
        pair(&dir, "a.test", &["a.test"]);
        pair(&dir, "b.test", &["b.test"]);
        // b's key belongs to another certificate.
        std::fs::copy(dir.join("a.test.key"), dir.join("b.test.key"))
            .unwrap_or_else(|e| panic!("{e}"));
        let provider = rustls::crypto::ring::default_provider();
        let source = CertSource {
            default: None,
            dir: Some(dir.clone()),
        };
        let err = CertSet::load(&source, &provider)
            .err()
            .unwrap_or_else(|| panic!("a mismatched key was accepted"));
        let msg = err.to_string();
        assert!(
            msg.contains("b.test.key") && msg.contains("does not belong to"),
            "{msg}"
        );
        std::fs::write(dir.join("a.test.crt"), "not pem").unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_file(dir.join("b.test.crt")).unwrap_or_else(|e| panic!("{e}"));
        let msg = CertSet::load(&source, &provider)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("a.test.crt"), "{msg}");
        let empty = temp_dir("empty");
        let source = CertSource {
            default: None,
            dir: Some(empty.clone()),
        };
        assert!(matches!(
            CertSet::load(&source, &provider),
            Err(TlsError::NoCertificate)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&empty);
    }
}
