//! TLS to PostgreSQL for the cluster's store (managed PostgreSQL services usually require it): rustls (the ring
//! provider the tree already builds) behind tokio-postgres' `MakeTlsConnect`, and the connection string's
//! libpq-style TLS options. `sslmode=require`, `verify-ca` or `verify-full` turn TLS on, and the server's certificate
//! is always verified — against the system's roots, plus `sslrootcert=<file>` (PEM) when given — with its name
//! checked against the host (stricter than libpq's `require`, which checks nothing). `disable`, `prefer` or no
//! `sslmode` connect in the clear, as before (libpq's `prefer` would accept any certificate, which protects nothing).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// What a connection string asks for, with the options tokio-postgres does not know taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// The connection string for tokio-postgres (`sslrootcert` removed, `verify-*` written as `require`).
    pub url: String,
    pub tls: bool,
    pub root_cert: Option<String>,
}

impl PgTls {
    /// Reads the TLS options of a URL (`postgresql://…?sslmode=…&sslrootcert=…`) or key/value connection string.
    pub fn parse(url: &str) -> PgTls {
        let (mut tls, mut root_cert) = (false, None);
        let mut take = |key: &str, value: &str| -> Option<String> {
            match (key, value) {
                ("sslrootcert", path) => {
                    root_cert = Some(path.to_owned());
                    None
                }
                ("sslmode", "require" | "verify-ca" | "verify-full") => {
                    tls = true;
                    Some("sslmode=require".into())
                }
                _ => Some(format!("{key}={value}")),
            }
        };
        let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_owned(),
                Some((base, query)) => {
                    let kept: Vec<String> = query
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            take(k, v)
                        })
                        .collect();
                    if kept.is_empty() {
                        base.to_owned()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            url.split_whitespace()
                .filter_map(|p| match p.split_once('=') {
                    Some((k, v)) => take(k, v),
                    None => Some(p.to_owned()),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        PgTls { url, tls, root_cert }
    }

    /// The TLS connector: the system's roots and the given root certificate.
    pub fn connector(&self) -> Result<RustlsConnect, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = &self.root_cert {
            use rustls::pki_types::pem::PemObject;
            let bad = |e: &dyn std::fmt::Display| format!("sslrootcert {path}: {e}");
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            if certs.is_empty() {
                return Err(bad(&"no PEM certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(&e))?;
            }
        } else if added == 0 {
            return Err("sslmode asks for TLS, but the system has no root certificates: give sslrootcert".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RustlsConnect(Arc::new(config)))
    }
}

/// tokio-postgres' TLS with rustls.
#[derive(Clone)]
pub struct RustlsConnect(Arc<rustls::ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, Self::Error> {
        let name = ServerName::try_from(domain.to_owned())?;
        Ok(RustlsConnector { config: self.0.clone(), name })
    }
}

pub struct RustlsConnector {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding would need the server certificate's hash; without it SCRAM still authenticates,
        // and the certificate check above is what keeps a man in the middle out.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_options_are_read_and_taken_out_of_the_connection_string() {
        let p = PgTls::parse("postgresql://u@db:5432/x?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3");
        assert_eq!(p.url, "postgresql://u@db:5432/x?sslmode=require&connect_timeout=3");
        assert!(p.tls);
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let p = PgTls::parse("host=db user=u sslmode=require sslrootcert=/ca.pem");
        assert_eq!(
            (p.url.as_str(), p.tls, p.root_cert.as_deref()),
            ("host=db user=u sslmode=require", true, Some("/ca.pem"))
        );
        for clear in ["postgresql://u@db/x", "postgresql://u@db/x?sslmode=prefer", "host=db sslmode=disable"] {
            let p = PgTls::parse(clear);
            assert!(!p.tls, "{clear}");
            assert_eq!(p.url, clear);
        }
        assert!(PgTls::parse("postgresql://u@db/x?sslmode=require&sslrootcert=/nope.pem").connector().is_err());
    }
}
