//! Short-lived signed URLs for file content: plain data, no I/O.
//!
//! A URL carries a grant (who, what, until when) and an HMAC-SHA256 over
//! it, so any edge of the cluster can check it without a lookup and a
//! client can hand it to `<img src>` or `fetch` without a token header.
//! The key is derived from the access-token secret (shared by every edge)
//! under its own label, so a URL signature can never pass for a token's.
//!
//! What is signed is the JSON array of the method, the file id and every
//! field of the grant: unambiguous whatever the fields contain.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL's signature does not match it")]
    BadSignature,
    #[error("the URL has expired")]
    Expired,
}

/// Leave to `PUT` exactly `size` bytes of `content_type` as file `id`,
/// for `user`, into `conversation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadGrant {
    pub user: String,
    pub conversation: String,
    pub size: u64,
    #[serde(rename = "type")]
    pub content_type: String,
    /// Unix seconds.
    pub expires: u64,
}

/// Leave to `GET` file `id`, issued to `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadGrant {
    pub user: String,
    /// Unix seconds.
    pub expires: u64,
}

trait Grant: Serialize + serde::de::DeserializeOwned {
    const METHOD: &'static str;
    fn expires(&self) -> u64;
}

impl Grant for UploadGrant {
    const METHOD: &'static str = "PUT";
    fn expires(&self) -> u64 {
        self.expires
    }
}

impl Grant for DownloadGrant {
    const METHOD: &'static str = "GET";
    fn expires(&self) -> u64 {
        self.expires
    }
}

pub struct UrlSigner {
    key: [u8; 32],
}

impl UrlSigner {
    /// Derives the URL key from `secret` (the access-token secret).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"samvad signed file URLs v1");
        UrlSigner {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac<G: Grant>(&self, file_id: &str, grant: &G) -> HmacSha256 {
        let message = serde_json::to_vec(&(G::METHOD, file_id, grant)).expect("grants serialise");
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&message);
        mac
    }

    fn query<G: Grant>(&self, file_id: &str, grant: G) -> String {
        let sig = hex::encode(self.mac(file_id, &grant).finalize().into_bytes());
        let fields = serde_urlencoded::to_string(&grant).expect("grants are flat");
        format!("{fields}&sig={sig}")
    }

    /// Splits `sig` off the query, reads the grant from the rest, and
    /// checks both. A query that is not a grant is a bad signature: there
    /// is nothing more to tell a client who made it up.
    fn check<G: Grant>(&self, file_id: &str, query: &str, now: u64) -> Result<G, UrlError> {
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|_| UrlError::BadSignature)?;
        let at = pairs
            .iter()
            .position(|(k, _)| k == "sig")
            .ok_or(UrlError::BadSignature)?;
        let sig = hex::decode(pairs.swap_remove(at).1).map_err(|_| UrlError::BadSignature)?;
        let fields = serde_urlencoded::to_string(&pairs).map_err(|_| UrlError::BadSignature)?;
        let grant: G = serde_urlencoded::from_str(&fields).map_err(|_| UrlError::BadSignature)?;
        self.mac(file_id, &grant)
            .verify_slice(&sig)
            .map_err(|_| UrlError::BadSignature)?;
        if now > grant.expires() {
            return Err(UrlError::Expired);
        }
        Ok(grant)
    }

    /// The query string of an upload URL for file `file_id`.
    pub fn upload_query(&self, file_id: &str, grant: UploadGrant) -> String {
        self.query(file_id, grant)
    }

    pub fn download_query(&self, file_id: &str, grant: DownloadGrant) -> String {
        self.query(file_id, grant)
    }

    /// The grant of an upload URL, if it was signed for `file_id` and has
    /// not expired at `now` (Unix seconds).
    pub fn check_upload(
        &self,
        file_id: &str,
        query: &str,
        now: u64,
    ) -> Result<UploadGrant, UrlError> {
        self.check(file_id, query, now)
    }

    pub fn check_download(
        &self,
        file_id: &str,
        query: &str,
        now: u64,
    ) -> Result<DownloadGrant, UrlError> {
        self.check(file_id, query, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> UploadGrant {
        UploadGrant {
            user: "alice".into(),
            conversation: "alice:bob".into(),
            size: 1234,
            content_type: "image/png".into(),
            expires: 1000,
        }
    }

    #[test]
    fn a_signed_upload_reads_back_before_expiry() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.upload_query("f1", upload());
        assert_eq!(signer.check_upload("f1", &query, 1000), Ok(upload()));
        assert_eq!(
            signer.check_upload("f1", &query, 1001),
            Err(UrlError::Expired)
        );
    }

    #[test]
    fn any_change_to_the_url_breaks_the_signature() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.upload_query("f1", upload());
        // Another file id, another key, a field changed, sig missing or mangled.
        assert_eq!(
            signer.check_upload("f2", &query, 0),
            Err(UrlError::BadSignature)
        );
        let other = UrlSigner::new(b"other secret");
        assert_eq!(
            other.check_upload("f1", &query, 0),
            Err(UrlError::BadSignature)
        );
        for (from, to) in [
            ("size=1234", "size=99999999"),
            ("user=alice", "user=mallory"),
            ("type=image%2Fpng", "type=text%2Fhtml"),
            ("expires=1000", "expires=9999999999"),
            ("conversation=alice%3Abob", "conversation=g1"),
        ] {
            assert!(query.contains(from), "{query}");
            let forged = query.replace(from, to);
            assert_eq!(
                signer.check_upload("f1", &forged, 0),
                Err(UrlError::BadSignature),
                "{forged}"
            );
        }
        let unsigned = query.split("&sig=").next().unwrap();
        assert_eq!(
            signer.check_upload("f1", unsigned, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            signer.check_upload("f1", &format!("{unsigned}&sig=zz"), 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            signer.check_upload("f1", "%%%", 0),
            Err(UrlError::BadSignature)
        );
    }

    #[test]
    fn an_upload_signature_is_not_a_download_signature() {
        let signer = UrlSigner::new(b"secret");
        let download = signer.download_query(
            "f1",
            DownloadGrant {
                user: "alice".into(),
                expires: 1000,
            },
        );
        assert!(signer.check_download("f1", &download, 5).is_ok());
        // Same fields cannot be replayed for the other method.
        assert_eq!(
            signer.check_upload("f1", &download, 5),
            Err(UrlError::BadSignature)
        );
    }
}
