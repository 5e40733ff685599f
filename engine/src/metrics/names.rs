//! Metric and log label names for rustls values, written out explicitly:
//! labels are part of the exported interface, so they must not change
//! when a dependency changes how it prints itself with `Debug`.

use rustls::{AlertDescription, CipherSuite, ProtocolVersion};
use uringtls_runtime::tls::session::SessionError;

/// `TLSv1_3`, `TLSv1_2`, ...; an unknown version as its code, `0x7f1c`.
pub fn version(v: ProtocolVersion) -> String {
    match v.as_str() {
        Some(name) => name.to_owned(),
        None => format!("0x{:04x}", u16::from(v)),
    }
}

/// `TLS13_AES_128_GCM_SHA256`, ...; an unknown suite as its code, `0x1301`.
pub fn suite(s: CipherSuite) -> String {
    match s.as_str() {
        Some(name) => name.to_owned(),
        None => format!("0x{:04x}", u16::from(s)),
    }
}

/// `unknown_ca`, `decrypt_error`, ...; an unknown alert as its code, `0x7f`.
pub fn alert(a: AlertDescription) -> String {
    match a.as_str() {
        Some(name) => super::snake(name),
        None => format!("0x{:02x}", u8::from(a)),
    }
}

/// The kind of a rustls error: `invalid_message`, `peer_incompatible`, ...;
/// for an error of the session layer, its own label (see
/// [`SessionError::label`]). Alerts are labelled by [`alert`] instead.
pub fn tls_error(e: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    match e {
        E::InappropriateMessage { .. } => "inappropriate_message",
        E::InappropriateHandshakeMessage { .. } => "inappropriate_handshake_message",
        E::InvalidEncryptedClientHello(_) => "invalid_encrypted_client_hello",
        E::InvalidMessage(_) => "invalid_message",
        E::NoCertificatesPresented => "no_certificates_presented",
        E::UnsupportedNameType => "unsupported_name_type",
        E::DecryptError => "decrypt_error",
        E::EncryptError => "encrypt_error",
        E::PeerIncompatible(_) => "peer_incompatible",
        E::PeerMisbehaved(_) => "peer_misbehaved",
        E::AlertReceived(_) => "alert_received",
        E::InvalidCertificate(_) => "invalid_certificate",
        E::InvalidCertRevocationList(_) => "invalid_cert_revocation_list",
        E::General(_) => "general",
        E::FailedToGetCurrentTime => "failed_to_get_current_time",
        E::FailedToGetRandomBytes => "failed_to_get_random_bytes",
        E::HandshakeNotComplete => "handshake_not_complete",
        E::PeerSentOversizedRecord => "peer_sent_oversized_record",
        E::NoApplicationProtocol => "no_application_protocol",
        E::BadMaxFragmentSize => "bad_max_fragment_size",
        E::InconsistentKeys(_) => "inconsistent_keys",
        E::Other(_) => SessionError::of(e).map_or("other", SessionError::label),
        _ => "tls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_suites_are_named_by_their_registry_names() {
        assert_eq!(version(ProtocolVersion::TLSv1_3), "TLSv1_3");
        assert_eq!(version(ProtocolVersion::TLSv1_2), "TLSv1_2");
        assert_eq!(version(ProtocolVersion::Unknown(0x7f1c)), "0x7f1c");
        assert_eq!(
            suite(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS13_AES_128_GCM_SHA256"
        );
        assert_eq!(
            suite(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(suite(CipherSuite::Unknown(0xabcd)), "0xabcd");
    }

    #[test]
    fn alerts_are_snake_case() {
        assert_eq!(alert(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(alert(AlertDescription::DecryptError), "decrypt_error");
        assert_eq!(alert(AlertDescription::Unknown(0x7f)), "0x7f");
    }

    #[test]
    fn session_errors_are_labelled_by_variant() {
        let early: rustls::Error = SessionError::UnexpectedEarlyData.into();
        assert_eq!(tls_error(&early), "unexpected_early_data");
        // The same words in a general error are not the session's variant.
        let general = rustls::Error::General("unexpected early data".into());
        assert_eq!(tls_error(&general), "general");
        let foreign = rustls::Error::Other(rustls::OtherError(std::sync::Arc::new(
            std::io::Error::other("unexpected early data"),
        )));
        assert_eq!(tls_error(&foreign), "other");
        assert_eq!(
            tls_error(&rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoCipherSuitesInCommon
            )),
            "peer_incompatible"
        );
    }
}
