//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, checked in constant
//! time over the raw bytes, before anything parses them.

use ring::hmac;

pub use insta_router_ports::SignatureError;
use insta_router_ports::WebhookSignatures;

/// Checks `header` against the HMAC of `body` under each of `secrets` (Meta may sign with the
/// Instagram or the Facebook app secret).
///
/// # Errors
///
/// [`SignatureError`]; with no secrets configured every body is a mismatch.
pub fn verify_signature(
    secrets: &[&str],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    WebhookVerifier::new(secrets).verify(body, header)
}

/// [`verify_signature`] with the HMAC keys prepared once, for the request path.
#[derive(Clone)]
pub struct WebhookVerifier {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl WebhookVerifier {
    /// Keys for the non-empty `secrets`.
    pub fn new(secrets: &[&str]) -> Self {
        Self {
            keys: secrets
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes()))
                .collect(),
        }
    }

    /// Checks `header` (the `X-Hub-Signature-256` value) against `body`, in constant time.
    ///
    /// # Errors
    ///
    /// [`SignatureError`]; with no secrets every body is a mismatch.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(SignatureError::Malformed)?;
        if hex_digest.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        let tag = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
        if self
            .keys
            .iter()
            .any(|key| hmac::verify(key, body, &tag).is_ok())
        {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

impl WebhookSignatures for WebhookVerifier {
    fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        Self::verify(self, body, header)
    }
}

/// The `X-Hub-Signature-256` value Meta would send for `body` signed with `secret`; for the
/// `simulate` command, the benchmark and tests.
pub fn sign_body(secret: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), body);
    format!("sha256={}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        sign_body(secret, body)
    }

    #[test]
    fn a_body_signed_with_either_secret_is_accepted() {
        let body = br#"{"object":"instagram","entry":[{"text":"\u00e4"}]}"#;
        assert_eq!(
            verify_signature(&["ig", "fb"], body, Some(&sign("fb", body))),
            Ok(())
        );
        assert_eq!(
            verify_signature(&["ig", "fb"], body, Some(&sign("ig", body))),
            Ok(())
        );
    }

    #[test]
    fn rfc_4231_test_case_2() {
        let expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            verify_signature(&["Jefe"], b"what do ya want for nothing?", Some(expected)),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let body = b"{}";
        let good = sign("s", body);
        assert_eq!(
            verify_signature(&["s"], body, None),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "invalid_format",
            "sha256=invalid_signature",
            "sha1=abc",
            &good[..good.len() - 1],
        ] {
            assert_eq!(
                verify_signature(&["s"], body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature(&["other"], body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&["s"], b"{ }", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&[], body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&[""], body, Some(&sign("", body))),
            Err(SignatureError::Mismatch)
        );
    }
}
