//! PEM certificate files: the chains the TLS listener serves and the CA bundles routes trust
//! toward backends, read one way so both report a bad file alike.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Every `CERTIFICATE` block of `path`, in order; the reason when there is none or the file
/// cannot be read or parsed (the caller names the file).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the file".into());
    }
    Ok(certs)
}
