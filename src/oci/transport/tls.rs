//! TLS and connection failures: cert dirs, and telling a TLS failure from weather.

use std::path::Path;

use super::super::{RegistryError, TransportKind};

pub(super) fn load_cert_dir(
    dir: &Path,
    b: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, RegistryError> {
    let cfg_err = |what: String| RegistryError::Config(what);
    let entries = std::fs::read_dir(dir)
        .map_err(|e| cfg_err(format!("cannot read cert dir {}: {e}", dir.display())))?;
    let mut b = b;
    let mut cert: Option<Vec<u8>> = None;
    let mut key: Option<Vec<u8>> = None;
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let read =
            || std::fs::read(&p).map_err(|e| cfg_err(format!("cannot read {}: {e}", p.display())));
        if name.ends_with(".crt") {
            let pem = read()?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| cfg_err(format!("{}: not a PEM certificate: {e}", p.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        } else if name.ends_with(".cert") {
            cert = Some(read()?);
        } else if name.ends_with(".key") {
            key = Some(read()?);
        }
    }
    match (cert, key) {
        (Some(mut c), Some(k)) => {
            c.push(b'\n');
            c.extend_from_slice(&k);
            let id = reqwest::Identity::from_pem(&c).map_err(|e| {
                cfg_err(format!("{}: client.cert/client.key: {e}", dir.display()))
            })?;
            b = b.identity(id);
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(cfg_err(format!(
                "cert dir {} has a client certificate or key without its pair (need client.cert and client.key)",
                dir.display()
            )))
        }
        _ => {}
    }
    Ok(b)
}

/// Whether the error chain holds a TLS failure: a `rustls::Error` (directly, or inside an
/// `io::Error`, as tokio-rustls reports it). A bad certificate does not get better by retrying.
pub(super) fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // hyper-util wraps the TLS error in io::Error(Other, io::Error(InvalidData, rustls));
        // `io::Error::source` skips the wrapped error itself, so unwrap by hand.
        let mut io = s.downcast_ref::<std::io::Error>();
        while let Some(e) = io {
            let inner = e.get_ref();
            if inner.is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some()) {
                return true;
            }
            io = inner.and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        src = s.source();
    }
    false
}

pub(in crate::oci) fn transport_err(
    registry: &str,
    what: &str,
    e: &reqwest::Error,
) -> RegistryError {
    let kind = if is_tls_failure(e) {
        TransportKind::Tls
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else if e.is_body() || e.is_decode() {
        TransportKind::Body
    } else {
        TransportKind::Reset
    };
    // reqwest's Display includes the URL; our URLs never carry credentials.
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    RegistryError::Transport {
        registry: registry.to_string(),
        what: what.to_string(),
        kind,
        detail,
    }
}
