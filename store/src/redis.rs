//! The one Redis connection a cluster process's stores share, and the
//! naming of their keys: `<cluster prefix><kind>:<name>`, so that several
//! clusters (or tests) can share one Redis.

use redis::aio::ConnectionManager;

use crate::StoreError;

/// A multiplexed connection and the cluster's key prefix. Cloning shares
/// the connection.
#[derive(Clone)]
pub struct RedisKeyspace {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisKeyspace {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(RedisKeyspace {
            connection,
            prefix: prefix.to_string(),
        })
    }

    /// The key of `name` of `kind`.
    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// A key of its own, outside every kind (`<prefix><name>`).
    pub(crate) fn bare_key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A handle to run commands on (a clone of the shared connection).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The value of `name` of `kind` (`GET`), as Redis gives it.
    pub(crate) async fn get<T: redis::FromRedisValue>(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<T, StoreError> {
        redis::cmd("GET")
            .arg(self.key(kind, name))
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    /// The JSON record `name` of `kind`, if there is one; a value that does
    /// not decode is a corrupt `kind` record, never skipped.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        kind: &'static str,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let value: Option<String> = self.get(kind, name).await?;
        value
            .map(|v| serde_json::from_str(&v))
            .transpose()
            .map_err(|_| StoreError::Corrupt { what: kind })
    }

    /// A secret every process of the cluster shares (the access-token key,
    /// the VAPID key): the first to start sets it to `fresh`, the others
    /// read it.
    pub async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self.key("secret", name);
        let mut connection = self.connection();
        redis::cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .query_async::<Option<String>>(&mut connection)
            .await
            .map_err(unavailable)?;
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)
    }
}

pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}
