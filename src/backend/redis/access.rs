//! How the Redis servers are reached and logged in to, and a connect error in words.

use redis::{Client, RedisError};

use crate::config::ConfigError;
use crate::settings::{RedisSettings, Secret};

/// How the Redis servers are reached and logged in to: ACL credentials for the masters and for
/// the Sentinels, and TLS (the `tls` feature).
#[derive(Clone, Default)]
pub struct Access {
    /// `AUTH username password` on the masters (and a direct URL); a password alone logs in
    /// as `default`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The same on the Sentinels.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// The Sentinels and the masters they name are reached over TLS (`rediss://`; a direct URL
    /// says so itself).
    pub tls: bool,
    /// PEM roots the servers' certificates are verified against, instead of the system's.
    pub tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password)
            .field("tls", &self.tls)
            .field(
                "tls_ca",
                &self.tls_ca.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

impl Access {
    /// The access `settings` describe; the CA file is read here (a problem names it).
    pub fn from_settings(settings: &RedisSettings) -> Result<Access, ConfigError> {
        let wants_tls =
            settings.tls || settings.sentinels.is_empty() && settings.url.starts_with("rediss://");
        if wants_tls && !cfg!(feature = "tls") {
            return Err(ConfigError::setting(
                "redis.tls",
                "is asked for (redis.tls or a rediss:// url) but aside was built without its `tls` feature: enable it",
            ));
        }
        let tls_ca = match &settings.tls_ca {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                ConfigError::setting(
                    "redis.tls_ca",
                    format!("{}: cannot read it: {e}", path.display()),
                )
            })?),
        };
        Ok(Access {
            username: settings.username.clone(),
            password: settings.password.clone(),
            sentinel_username: settings.sentinel_username.clone(),
            sentinel_password: settings.sentinel_password.clone(),
            tls: settings.tls,
            tls_ca,
        })
    }

    /// A client for the server at `url`, logged in as a master's client.
    pub fn client(&self, url: &str) -> Result<Client, RedisError> {
        self.build(url, self.username.as_deref(), self.password.as_ref())
    }

    /// A client for the master (or replica) at `host:port`.
    pub fn server(&self, addr: &str) -> Result<Client, RedisError> {
        self.client(&self.url(addr))
    }

    /// A client for the Sentinel at `host:port`.
    pub fn sentinel(&self, addr: &str) -> Result<Client, RedisError> {
        self.build(
            &self.url(addr),
            self.sentinel_username.as_deref(),
            self.sentinel_password.as_ref(),
        )
    }

    fn url(&self, addr: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{addr}")
    }

    fn build(
        &self,
        url: &str,
        username: Option<&str>,
        password: Option<&Secret>,
    ) -> Result<Client, RedisError> {
        use redis::IntoConnectionInfo;
        let mut info = url.into_connection_info()?;
        let mut login = info.redis_settings().clone();
        if let Some(u) = username {
            login = login.set_username(u);
        }
        if let Some(p) = password {
            login = login.set_password(p.expose());
        }
        info = info.set_redis_settings(login);
        #[cfg(feature = "tls")]
        if let (Some(ca), redis::ConnectionAddr::TcpTls { .. }) = (&self.tls_ca, info.addr()) {
            return Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            );
        }
        Client::open(info)
    }
}

/// A connect error in words, with the setting to check when the cause is a login or a
/// certificate.
pub(super) fn connect_error(e: &RedisError, sentinel: bool) -> String {
    let text = e.to_string();
    let hint = if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        if sentinel {
            " (check redis.sentinel_username and redis.sentinel_password)"
        } else {
            " (check redis.username and redis.password)"
        }
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (check redis.tls_ca: it must hold the root that signed the server's certificate)"
    } else if text.contains("NotValidForName") {
        " (the server's certificate does not name the address it was reached at)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_problems_name_the_setting() {
        use crate::settings::RedisSettings;
        let missing = RedisSettings {
            tls: true,
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..RedisSettings::default()
        };
        let e = super::Access::from_settings(&missing)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: redis.tls_ca /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
        let plain = super::Access::from_settings(&RedisSettings::default()).unwrap();
        assert_eq!(
            plain
                .server("h:1")
                .unwrap()
                .get_connection_info()
                .addr()
                .to_string(),
            "h:1"
        );
        #[cfg(feature = "tls")]
        {
            let tls = RedisSettings {
                tls: true,
                password: Some(crate::settings::Secret::new("pw")),
                ..RedisSettings::default()
            };
            let a = super::Access::from_settings(&tls).unwrap();
            let c = a.server("h:1").unwrap();
            let info = c.get_connection_info();
            assert!(matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
            assert_eq!(info.redis_settings().password(), Some("pw"));
            assert_eq!(
                a.sentinel("h:2")
                    .unwrap()
                    .get_connection_info()
                    .redis_settings()
                    .password(),
                None,
                "the masters' password is not the Sentinels'"
            );
            assert!(!format!("{a:?}").contains("pw\""), "{a:?}");
        }
    }

    #[test]
    fn errors_name_a_server_without_its_credentials() {
        use crate::backend::without_credentials as w;
        assert_eq!(w("redis://u:secret@10.0.0.1:6379"), "redis://10.0.0.1:6379");
        assert_eq!(w("redis://:p@a@h:1/0"), "redis://h:1/0");
        assert_eq!(w("redis://h:6379"), "redis://h:6379");
    }
}
