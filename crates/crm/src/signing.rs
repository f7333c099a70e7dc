//! Signatures a CRM can verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// The key a CRM secret stands for: the base64-decoded part after `whsec_`, else the secret's
/// UTF-8 bytes.
fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the `webhook-signature` value of
/// the Standard Webhooks specification.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &standard_key(secret));
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// `sha256=<hex HMAC-SHA256(secret as configured, body)>`, as the original service signed.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), body);
    format!("sha256={}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_specification_example() {
        // The example of standard-webhooks' spec and reference libraries.
        let signature = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn plain_secrets_are_used_as_utf8_bytes() {
        let a = standard_webhooks_signature("plain", "id", 1, b"{}");
        let b = standard_webhooks_signature("other", "id", 1, b"{}");
        assert_ne!(a, b);
        assert!(a.starts_with("v1,"));
    }

    #[test]
    fn hub_signature_keeps_the_prefix_in_the_key() {
        assert_eq!(
            hub_signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(hub_signature("whsec_YQ==", b"x"), hub_signature("a", b"x"));
    }
}
