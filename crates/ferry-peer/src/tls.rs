//! The fleet's TLS identity: every host derives the same Ed25519 key from the fleet secret, and
//! peer traffic runs over TLS 1.3 with mutual authentication by that key (raw public keys,
//! RFC 7250), so only a holder of the secret can serve or ask, and a LAN observer sees neither
//! which content is asked for nor the bytes.
//!
//! Why a derived key rather than a pre-shared key: rustls does not offer TLS 1.3 external PSKs,
//! but it does offer raw public keys with custom verifiers. Deriving the key pair from the secret
//! (HMAC-SHA256 of the secret as the Ed25519 seed) keeps the configuration one secret; both sides
//! pin exactly the fleet's public key, and the TLS handshake proves possession of the private
//! key, so an impostor on a member's address fails the handshake before any request is sent.
//! TLS 1.3 without 0-RTT also rules out replaying a recorded connection.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::Sha256;

/// Why the fleet's TLS identity could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the derived key or the configuration.
    #[error("cannot set up TLS for the peer cache: {0}")]
    Rustls(#[from] rustls::Error),
    /// The crypto provider gave no public key for the derived private key.
    #[error("cannot set up TLS for the peer cache: the derived key has no public key")]
    NoPublicKey,
}

/// The fleet's key pair and the TLS configurations built on it.
#[derive(Debug, Clone)]
pub struct FleetTls {
    key: Arc<CertifiedKey>,
    spki: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

/// The DER prefix of an RFC 8410 PKCS#8 v1 Ed25519 private key, followed by the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The Ed25519 seed derived from the fleet secret: a domain-separated HMAC, so the key says
/// nothing about the secret and differs from every MAC the secret makes.
fn seed(secret: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(b"ferry-peer-v2 tls ed25519 seed");
    mac.finalize().into_bytes().into()
}

impl FleetTls {
    /// Derives the fleet's identity from its secret.
    pub fn from_secret(secret: &[u8]) -> Result<FleetTls, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed(secret));
        let signing = aws_lc_rs::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))?;
        let spki = signing
            .public_key()
            .ok_or(TlsError::NoPublicKey)?
            .as_ref()
            .to_vec();
        let key = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(spki.clone())],
            signing,
        ));
        Ok(FleetTls {
            key,
            spki,
            provider,
        })
    }

    /// The fleet's public key (DER SubjectPublicKeyInfo), e.g. to compare two configurations.
    pub fn public_key(&self) -> &[u8] {
        &self.spki
    }

    fn pinned(&self) -> Arc<Pinned> {
        Arc::new(Pinned {
            spki: self.spki.clone(),
            algs: self.provider.signature_verification_algorithms,
        })
    }

    /// The server side: TLS 1.3 only, presents the fleet key, requires a client with it.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let cfg = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.pinned())
            .with_cert_resolver(Arc::new(
                rustls::server::AlwaysResolvesServerRawPublicKeys::new(self.key.clone()),
            ));
        Ok(cfg)
    }

    /// The client side: TLS 1.3 only, accepts only a server with the fleet key (whatever name
    /// or address it was reached at), presents the fleet key.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.pinned())
            .with_client_cert_resolver(Arc::new(
                rustls::client::AlwaysResolvesClientRawPublicKeys::new(self.key.clone()),
            ));
        Ok(cfg)
    }
}

/// Accepts exactly one raw public key, the fleet's, on either side of the handshake.
#[derive(Debug)]
struct Pinned {
    spki: Vec<u8>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    /// Accepts exactly the fleet's key, alone.
    fn check(
        &self,
        presented: &CertificateDer<'_>,
        rest: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if rest.is_empty() && presented.as_ref() == self.spki.as_slice() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// The verifier methods both sides share: TLS 1.3 signatures by the pinned key only.
macro_rules! pinned_signatures {
    () => {
        /// Only TLS 1.3 is offered, so a TLS 1.2 signature is never asked for.
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("peers speak TLS 1.3 only".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            key: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            // With raw public keys the "certificate" is the key (`check` pinned it).
            let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(key.as_ref());
            rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }

        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }

    pinned_signatures!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }

    pinned_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConnection, Connection, ServerConnection};

    /// Moves what `from` has to send into `to`, and lets `to` process it.
    fn pass(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            to.read_tls(&mut rd).unwrap();
        }
        to.process_new_packets().map(drop)
    }

    /// Runs a handshake in memory; `Ok` when both sides completed it.
    fn handshake(server: &FleetTls, client: &FleetTls) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let c = ClientConnection::new(Arc::new(client.client_config().unwrap()), name)?;
        let s = ServerConnection::new(Arc::new(server.server_config().unwrap()))?;
        let (mut c, mut s) = (Connection::from(c), Connection::from(s));
        for _ in 0..10 {
            pass(&mut c, &mut s)?;
            pass(&mut s, &mut c)?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General(
            "the handshake did not finish".into(),
        ))
    }

    #[test]
    fn the_key_is_derived_from_the_secret_alone() {
        let a = FleetTls::from_secret(b"a fleet secret of enough length").unwrap();
        let b = FleetTls::from_secret(b"a fleet secret of enough length").unwrap();
        let other = FleetTls::from_secret(b"another fleet secret, same size").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), other.public_key());
    }

    #[test]
    fn members_handshake_and_strangers_fail_both_ways() {
        let a = FleetTls::from_secret(b"a fleet secret of enough length").unwrap();
        let b = FleetTls::from_secret(b"a fleet secret of enough length").unwrap();
        let other = FleetTls::from_secret(b"another fleet secret, same size").unwrap();
        assert!(handshake(&a, &b).is_ok());
        assert!(handshake(&other, &a).is_err(), "an impostor server");
        assert!(handshake(&a, &other).is_err(), "an impostor client");
    }
}
