//! Which push endpoints the server will send to. The server POSTs to
//! whatever endpoint a browser gave it, so an endpoint is held to a
//! policy before it is stored: HTTPS to a known push service, nothing
//! else (no requests to internal hosts on a user's say-so).

/// Longest endpoint URL stored.
const MAX_ENDPOINT_LEN: usize = 1024;

/// Which push endpoints the server will send to.
#[derive(Debug, Clone)]
pub struct EndpointPolicy {
    /// Host names (a host or any subdomain of it).
    pub hosts: Vec<String>,
    /// Plain `http://` endpoints too (development and tests only).
    pub allow_http: bool,
}

impl EndpointPolicy {
    pub fn allows(&self, endpoint: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(endpoint) else {
            return false;
        };
        let scheme_ok = url.scheme() == "https" || (self.allow_http && url.scheme() == "http");
        let host = url.host_str().unwrap_or("");
        scheme_ok
            && endpoint.len() <= MAX_ENDPOINT_LEN
            && url.username().is_empty()
            && url.password().is_none()
            && self.hosts.iter().any(|h| {
                host == h
                    || host
                        .strip_suffix(h.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_endpoints_of_listed_push_services_pass() {
        let policy = EndpointPolicy {
            hosts: vec![
                "push.services.mozilla.com".into(),
                "fcm.googleapis.com".into(),
            ],
            allow_http: false,
        };
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/xyz",
        ] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/fcm/send/abc",
            "https://evilfcm.googleapis.com.attacker.net/x",
            "https://xfcm.googleapis.com/x",
            "https://user:pw@fcm.googleapis.com/x",
            "https://127.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        let dev = EndpointPolicy {
            hosts: vec!["127.0.0.1".into()],
            allow_http: true,
        };
        assert!(dev.allows("http://127.0.0.1:9999/push/1"));
        let long = format!(
            "https://fcm.googleapis.com/{}",
            "x".repeat(MAX_ENDPOINT_LEN)
        );
        assert!(!policy.allows(&long), "too long");
    }
}
