//! HTTP clients for the tests. The workspace builds reqwest without a bundled
//! crypto provider (ring is the one provider everywhere), so reqwest panics if
//! a client is built before a provider is installed: every client of the
//! tests comes from here, which installs ring first.

fn install_ring() {
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An async client builder.
pub fn builder() -> reqwest::ClientBuilder {
    install_ring();
    reqwest::Client::builder()
}

/// An async client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    builder().build().expect("HTTP client")
}

/// A blocking client builder.
pub fn blocking_builder() -> reqwest::blocking::ClientBuilder {
    install_ring();
    reqwest::blocking::Client::builder()
}

/// A blocking client with reqwest's defaults.
pub fn blocking() -> reqwest::blocking::Client {
    blocking_builder().build().expect("HTTP client")
}
