//! REST for phone numbers: verify one by a code sent by SMS, then be found
//! by contacts who have it in their address book.
//!
//! Matching by phone is only as good as the proof that a number is yours:
//! a number stated and not proven would let anyone be found as someone
//! else. So a number counts only once its owner typed back the code sent
//! to it. The server has no SMS gateway of its own; it POSTs
//! `{type: "phone_verification", user, phone, code}`, signed like the push
//! webhook, to the operator's gateway (`--sms-webhook`). Without one, the
//! calls answer 503.
//!
//! Only the SHA-256 of the E.164 number is kept (and the number itself only
//! in flight to the gateway). Contacts are matched by that hash: a client
//! hashes the numbers of its address book the same way.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use samvad_store::accounts::PendingPhone;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::AuthUser;
use crate::error::{parse, ApiError};
use crate::state::Sms;
use crate::users::{account_of, me_json, save_account};
use samvad_store::accounts::AccountStore;
use samvad_store::phones::PhoneStore;

/// How long a code is good for.
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// Wrong codes before the pending number is dropped.
pub const MAX_ATTEMPTS: u32 = 5;

/// Whether `phone` is an E.164 number: `+`, then 7 to 15 digits, the first
/// not 0. Clients normalise to this before hashing.
pub fn valid_e164(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// Hex SHA-256 of the E.164 number: what is stored and matched.
pub fn phone_hash(phone: &str) -> String {
    hex::encode(Sha256::digest(phone.as_bytes()))
}

/// Whether `hash` looks like a [`phone_hash`].
pub fn valid_phone_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn code_hash(user: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{user}:{code}").as_bytes()))
}

#[derive(Deserialize)]
struct PhoneRequest {
    phone: String,
}

#[derive(Deserialize)]
struct CodeRequest {
    code: String,
}

/// `POST /v1/me/phone {phone}`: send a code to that number. A new request
/// replaces a pending one.
pub async fn request_code(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(sms): State<Sms>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: PhoneRequest = parse(&body)?;
    if !valid_e164(&req.phone) {
        return Err(ApiError::invalid(
            "bad_phone",
            "a phone number is E.164: + and 7 to 15 digits",
        ));
    }
    let Some(sms) = &sms.0 else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sms_unavailable",
            "this server has no SMS gateway (--sms-webhook)",
        ));
    };
    let code = format!("{:06}", rand::random_range(0..1_000_000u32));
    let mut account = account_of(&*accounts, &me).await?;
    account.phone_pending = Some(PendingPhone {
        phone_sha256: phone_hash(&req.phone),
        code_sha256: code_hash(&me, &code),
        expires_ms: samvad_core::clock::unix_ms() + CODE_TTL_MS,
        attempts: 0,
    });
    save_account(&*accounts, account).await?;
    let message =
        json!({"type": "phone_verification", "user": me, "phone": req.phone, "code": code});
    sms.post(message.to_string().as_bytes())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "SMS gateway refused a verification code");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "sms_failed",
                "the SMS gateway did not take the code; try again",
            )
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"expires_in": CODE_TTL_MS / 1000})),
    ))
}

/// `POST /v1/me/phone/verify {code}`: the number becomes mine, unless
/// another user verified it first (409).
pub async fn verify(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(phones): State<Arc<dyn PhoneStore>>,
    AuthUser(me): AuthUser,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: CodeRequest = parse(&body)?;
    let mut account = account_of(&*accounts, &me).await?;
    let no_code = || {
        ApiError::invalid(
            "no_pending_code",
            "ask for a code first (POST /v1/me/phone)",
        )
    };
    let mut pending = account.phone_pending.clone().ok_or_else(no_code)?;
    if pending.expires_ms < samvad_core::clock::unix_ms() || pending.attempts >= MAX_ATTEMPTS {
        account.phone_pending = None;
        save_account(&*accounts, account).await?;
        return Err(no_code());
    }
    if code_hash(&me, req.code.trim()) != pending.code_sha256 {
        pending.attempts += 1;
        let left = MAX_ATTEMPTS - pending.attempts;
        account.phone_pending = (left > 0).then_some(pending);
        save_account(&*accounts, account).await?;
        return Err(ApiError::invalid(
            "wrong_code",
            format!("wrong code; {left} tries left"),
        ));
    }
    let old = (!account.phone_sha256.is_empty()).then(|| account.phone_sha256.clone());
    let claimed = phones
        .claim(&me, Some(&pending.phone_sha256), old.as_deref())
        .await
        .map_err(ApiError::internal)?;
    if !claimed {
        return Err(ApiError::conflict(
            "phone_taken",
            "another account verified this number",
        ));
    }
    account.phone_sha256 = pending.phone_sha256;
    account.phone_pending = None;
    let json = me_json(&account);
    save_account(&*accounts, account).await?;
    Ok(json)
}

/// `DELETE /v1/me/phone`: I can no longer be found by my number.
pub async fn remove(
    State(accounts): State<Arc<dyn AccountStore>>,
    State(phones): State<Arc<dyn PhoneStore>>,
    AuthUser(me): AuthUser,
) -> Result<StatusCode, ApiError> {
    let mut account = account_of(&*accounts, &me).await?;
    if !account.phone_sha256.is_empty() {
        phones
            .claim(&me, None, Some(&account.phone_sha256))
            .await
            .map_err(ApiError::internal)?;
    }
    account.phone_sha256.clear();
    account.phone_pending = None;
    save_account(&*accounts, account).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_only() {
        for ok in ["+15551234567", "+447911123456", "+4915123"] {
            assert!(valid_e164(ok), "{ok}");
        }
        for bad in [
            "15551234567",
            "+0123456789",
            "+1 555 123",
            "+123456",
            "+1234567890123456",
            "+",
        ] {
            assert!(!valid_e164(bad), "{bad}");
        }
    }

    #[test]
    fn hashes_are_hex_sha256_of_the_number() {
        let h = phone_hash("+15551234567");
        assert!(valid_phone_hash(&h));
        assert_eq!(h, hex::encode(Sha256::digest(b"+15551234567")));
        assert!(!valid_phone_hash("+15551234567"));
        assert!(!valid_phone_hash(&h.to_uppercase()));
    }
}
