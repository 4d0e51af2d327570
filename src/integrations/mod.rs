//! Integrations with outside systems, each behind a trait with a local implementation usable without network.

pub mod agent;

/// An HTTP client builder with TLS ready: installs rustls' ring crypto provider once per process (reqwest is built
/// without a default provider, to avoid aws-lc-sys's long C build). Every HTTP client of the crate starts here.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Fails only if another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}
pub mod github;
pub mod sandbox;
pub mod workspace;
