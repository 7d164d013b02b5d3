//! Connection settings: an ADO.NET connection string, a password kept apart from it, and the
//! explicit choice to trust any server certificate.
//!
//! * Encryption is required unless the connection string says `Encrypt=false` (logged as a
//!   warning). The server certificate is verified against the system's roots (rustls) unless
//!   `TrustServerCertificateCA=<file>` names the CA, or the config key
//!   `trust_server_certificate = true` is set (logged as a warning, once per process).
//!   `TrustServerCertificate=true` inside the string is refused: trusting any certificate must be
//!   a visible decision in the config file, not a word hidden in a string.
//! * SQL authentication: `User ID=…` in the string and the password from
//!   `ROWTRAIL_SOURCE_PASSWORD`. Integrated authentication (`Integrated Security=true`) works on
//!   Windows; on Linux and macOS rowtrail uses SQL authentication.
//! * What rowtrail shows of a connection ([`Settings::location`]) is the server and database
//!   only, never the user or the password.

use std::time::Duration;

use crate::ReaderError;

/// How long one request to SQL Server may run, by default, before rowtrail cancels it (ADO.NET's
/// `Command Timeout` default).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a SQL Server database.
#[derive(Clone)]
pub struct Settings {
    /// The ADO.NET connection string (may hold the password only when it came whole from the
    /// environment).
    pub connection: String,
    /// The password, kept apart from the string (from `ROWTRAIL_SOURCE_PASSWORD`).
    pub password: Option<String>,
    /// Accept any server certificate (config key `trust_server_certificate`).
    pub trust_server_certificate: bool,
    /// How long one request (a query, or one batch of a script) may run before rowtrail cancels
    /// it on the server and reports a timeout (config key `command_timeout_seconds`, the undo's
    /// `--command-timeout`); `None` waits for ever.
    pub command_timeout: Option<Duration>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("location", &self.location())
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

/// The `key=value` pairs of an ADO.NET connection string, keys lowercased, values unquoted.
/// Values may be quoted with `'…'`, `"…"` (the quote doubled inside) or `{…}`.
pub fn ado_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            chars.next();
            if c == '=' || c == ';' {
                if c == ';' {
                    key.clear();
                    continue;
                }
                break;
            }
            key.push(c);
        }
        let key = key.trim().to_lowercase();
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"')) => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == q {
                        if chars.peek() == Some(&q) {
                            chars.next();
                            value.push(q);
                            continue;
                        }
                        break;
                    }
                    value.push(c);
                }
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
            }
            Some('{') => {
                chars.next();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    value.push(c);
                }
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                }
            }
            _ => {
                for c in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                }
                value = value.trim().to_string();
            }
        }
        if !key.is_empty() {
            out.push((key, value));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "true" | "yes" | "sspi" | "1"
    )
}

impl Settings {
    fn get(&self, keys: &[&str]) -> Option<String> {
        ado_pairs(&self.connection)
            .into_iter()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| v)
    }

    /// `database on server` — what logs, status and errors show (no user, no password).
    pub fn location(&self) -> String {
        let server = self
            .get(&["server", "data source", "address", "addr"])
            .unwrap_or_else(|| "localhost".into());
        let server = server.strip_prefix("tcp:").unwrap_or(&server).to_string();
        match self.get(&["database", "initial catalog", "databasename"]) {
            Some(db) => format!("{db} on {server}"),
            None => format!("(default database) on {server}"),
        }
    }

    /// Whether the string asks for integrated (Windows) authentication.
    pub fn integrated(&self) -> bool {
        self.get(&[
            "integratedsecurity",
            "integrated security",
            "trusted_connection",
        ])
        .is_some_and(|v| truthy(&v))
    }

    /// Whether the string turns encryption off (`Encrypt=false`).
    pub fn encryption_off(&self) -> bool {
        self.get(&["encrypt"]).is_some_and(|v| {
            !truthy(&v) && !v.eq_ignore_ascii_case("strict") && !v.eq_ignore_ascii_case("mandatory")
        })
    }

    /// The driver's configuration, or why these settings cannot be used.
    pub fn config(&self) -> Result<tiberius::Config, ReaderError> {
        let bad = |reason: String| ReaderError::Connection { reason };
        if self
            .get(&["trustservercertificate", "trust server certificate"])
            .is_some_and(|v| truthy(&v))
        {
            return Err(bad(
                "the connection string says TrustServerCertificate=true; remove it and set \
                 `trust_server_certificate = true` in [source] if you really mean to accept any \
                 certificate (better: TrustServerCertificateCA=<the server's CA file>)"
                    .into(),
            ));
        }
        let integrated = self.integrated();
        if integrated && !cfg!(windows) {
            return Err(bad(
                "integrated authentication is available on Windows only; on this platform use SQL \
                 authentication: `User ID=<login>` in the connection and the password in \
                 ROWTRAIL_SOURCE_PASSWORD"
                    .into(),
            ));
        }
        let mut config = tiberius::Config::from_ado_string(&self.connection).map_err(|e| {
            // The driver's message may quote the string; say only what kind of problem it is.
            bad(format!(
                "the connection string cannot be read ({}); use `Server=tcp:host,port;Database=…;User ID=…`",
                match e {
                    tiberius::error::Error::Conversion(_) => "a value is not valid",
                    _ => "it is malformed",
                }
            ))
        })?;
        if self
            .get(&["server", "data source", "address", "addr"])
            .is_some_and(|s| s.contains('\\') && !s.contains(','))
        {
            return Err(bad(
                "named instances need the instance's port: write `Server=tcp:host,port` (SQL Browser lookups are not built in)".into(),
            ));
        }
        if let Some(password) = &self.password {
            if integrated {
                return Err(bad(
                    "ROWTRAIL_SOURCE_PASSWORD is set but the connection uses integrated authentication; unset one of them".into(),
                ));
            }
            let user = self
                .get(&["uid", "username", "user", "user id"])
                .ok_or_else(|| {
                    bad(
                        "ROWTRAIL_SOURCE_PASSWORD is set but the connection names no `User ID`"
                            .into(),
                    )
                })?;
            config.authentication(tiberius::AuthMethod::sql_server(user, password));
        }
        config.application_name("rowtrail");
        if self.trust_server_certificate {
            // Once per process: the heartbeat connects every second.
            static TRUST: std::sync::Once = std::sync::Once::new();
            TRUST.call_once(|| tracing::warn!(
                source = %self.location(),
                "trust_server_certificate is set: the server's certificate is NOT verified, so the \
                 connection is encrypted but not protected against an impostor server"
            ));
            config.trust_cert();
        }
        if self.encryption_off() {
            static PLAIN: std::sync::Once = std::sync::Once::new();
            PLAIN.call_once(|| tracing::warn!(
                source = %self.location(),
                "the connection string turns encryption off (Encrypt=false): only the login is encrypted"
            ));
        }
        // The driver's own timeout bounds each round trip and leaves a connection that timed out
        // unusable, so the request could not be cancelled: the client bounds every request
        // itself ([`Settings::command_timeout`]) and cancels it with an attention.
        config.command_timeout(None);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(s: &str) -> Settings {
        Settings {
            connection: s.into(),
            password: None,
            trust_server_certificate: false,
            command_timeout: Some(DEFAULT_COMMAND_TIMEOUT),
        }
    }

    #[test]
    fn pairs_honour_quotes_and_braces() {
        let p = ado_pairs("Server=tcp:db,1433; Database='a;b''c' ;User ID={x=y;z};Encrypt=true;");
        assert_eq!(
            p,
            vec![
                ("server".into(), "tcp:db,1433".into()),
                ("database".into(), "a;b'c".into()),
                ("user id".into(), "x=y;z".into()),
                ("encrypt".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn location_shows_server_and_database_only() {
        let s = Settings {
            connection: "Server=tcp:sql1,1433;Database=Sales;User ID=reader;Password=secret".into(),
            password: Some("other".into()),
            trust_server_certificate: false,
            command_timeout: Some(DEFAULT_COMMAND_TIMEOUT),
        };
        assert_eq!(s.location(), "Sales on sql1,1433");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("other") && !shown.contains("reader"),
            "{shown}"
        );
    }

    #[test]
    fn trusting_any_certificate_is_only_a_config_key() {
        let err = settings("Server=tcp:h,1433;TrustServerCertificate=true")
            .config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("trust_server_certificate"), "{err}");
        let mut ok = settings("Server=tcp:h,1433;Database=d;User ID=u");
        ok.trust_server_certificate = true;
        ok.password = Some("p;w'=".into());
        assert!(ok.config().is_ok());
    }

    #[test]
    fn a_separate_password_needs_a_user_and_named_instances_need_a_port() {
        let mut s = settings("Server=tcp:h,1433;Database=d");
        s.password = Some("p".into());
        assert!(s.config().unwrap_err().to_string().contains("User ID"));
        let e = settings("Server=h\\SQLEXPRESS;User ID=u")
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }

    #[test]
    fn encryption_is_on_unless_turned_off() {
        assert!(!settings("Server=h").encryption_off());
        assert!(settings("Server=h;Encrypt=false").encryption_off());
        assert!(!settings("Server=h;Encrypt=strict").encryption_off());
    }

    #[cfg(not(windows))]
    #[test]
    fn integrated_authentication_is_refused_off_windows() {
        let e = settings("Server=tcp:h,1433;Integrated Security=SSPI")
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("Windows only"), "{e}");
    }
}
