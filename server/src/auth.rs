//! The secrets on disk that tokens are signed with (`samvad serve`); the
//! tokens themselves are [`samvad_core::token`], passwords the API's.

use std::path::Path;

use anyhow::Context;
use samvad_core::token::TokenKeys;

/// The secret kept (hex) in `dir/name`, written from `fresh()` the first
/// time: the single-process counterpart of `RedisKeyspace::shared_secret`.
pub fn secret_file(
    dir: &Path,
    name: &str,
    fresh: impl FnOnce() -> Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(hex_secret) => {
            hex::decode(hex_secret.trim()).with_context(|| format!("{name} is not hex"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = fresh();
            std::fs::write(&path, hex::encode(&secret))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Loads the token signing secret from `dir/token.key`, creating it once.
pub fn load_or_create_keys(dir: &Path, access_ttl: u64) -> anyhow::Result<TokenKeys> {
    let secret = secret_file(dir, "token.key", || rand::random::<[u8; 32]>().to_vec())?;
    Ok(TokenKeys::new(&secret, access_ttl))
}
