//! TLS identity of the edge: PEM files from flags, or a generated
//! self-signed ECDSA P-256 certificate valid for less than 14 days (the most
//! browsers accept with `serverCertificateHashes`), rotated before expiry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Lifetime of a generated certificate. 13 days plus the hour of clock skew
/// allowance stays under the 14-day limit.
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// A generated certificate is replaced this long before it expires.
pub const ROTATE_BEFORE_EXPIRY: Duration = Duration::from_secs(2 * 24 * 3600);

/// A certificate chain and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER.
    pub sha256: [u8; 32],
    /// Unix seconds; `None` for certificates from files.
    pub expires: Option<i64>,
    pub self_signed: bool,
}

impl Identity {
    /// Loads a PEM chain and key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading key {}", key.display()))?;
        let sha256 = Sha256::digest(&chain[0]).into();
        Ok(Identity {
            chain,
            key,
            sha256,
            expires: None,
            self_signed: false,
        })
    }

    /// Generates a self-signed certificate for localhost and loopback.
    pub fn self_signed() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::try_from(SELF_SIGNED_VALIDITY)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "samvad self-signed");
        let cert = params.self_signed(&key)?;
        let der = cert.der().clone();
        let sha256 = Sha256::digest(&der).into();
        Ok(Identity {
            chain: vec![der],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            sha256,
            expires: Some(params.not_after.unix_timestamp()),
            self_signed: true,
        })
    }

    /// A rustls server config with the given ALPN protocols.
    ///
    /// The server picks the cipher suite, AES-128-GCM with SHA-256 first
    /// (what browsers prefer on hardware with AES instructions), whatever
    /// the client's order: rustls's own client offers AES-256-GCM with
    /// SHA-384 first, and SHA-384 has no hardware instructions on x86, so
    /// its key schedule (a dozen HKDF steps per handshake) cost a twentieth
    /// of a reconnect storm's CPU on both sides (bench/RESULTS.md).
    pub fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|suite| suite_preference(suite.suite()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.ignore_client_order = true;
        // Resumption without state on the server: a ticket is the session
        // sealed with a key of this config's (rotated every 6 hours). A
        // client coming back skips the certificate and its signature.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        config.send_tls13_tickets = 1;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Where a cipher suite comes in the server's order (a stable sort keeps
/// the provider's order for the rest).
fn suite_preference(suite: rustls::CipherSuite) -> u8 {
    match suite {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_short_lived_p256() {
        let id = Identity::self_signed().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = id.expires.unwrap() - now;
        assert!(left > 12 * 24 * 3600 && left < 14 * 24 * 3600);
        assert_eq!(id.sha256_hex().len(), 64);
        id.server_config(&[b"h3"]).unwrap();
    }

    /// Whatever the client's order, a TLS 1.3 handshake with this config
    /// settles on AES-128-GCM with SHA-256.
    #[test]
    fn the_server_picks_aes_128_gcm_sha256() {
        let id = Identity::self_signed().unwrap();
        let server = Arc::new(id.server_config(&[b"h3"]).unwrap());
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(id.chain[0].clone()).unwrap();
            roots
        })
        .with_no_client_auth();
        client.alpn_protocols = vec![b"h3".to_vec()];
        assert_eq!(
            client.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client prefers another suite"
        );
        let mut client =
            rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        // Shuttle the flights until both sides are done.
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.clear();
            client.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets().unwrap();
            }
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(
            server.negotiated_cipher_suite().unwrap().suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
    }
}
