//! What a publisher needs to know: the server, the subjects, the stream's settings, and the
//! credentials, which come only from the environment.

use std::path::PathBuf;
use std::time::Duration;

use crate::subject::Subjects;
use crate::StreamError;

/// Where JetStream keeps the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Storage {
    /// On disk (JetStream's default).
    #[default]
    File,
    /// In memory only: lost when the server stops.
    Memory,
}

impl Storage {
    /// `file` or `memory`.
    pub fn word(self) -> &'static str {
        match self {
            Storage::File => "file",
            Storage::Memory => "memory",
        }
    }

    /// The storage a config word names.
    pub fn from_word(w: &str) -> Option<Self> {
        match w {
            "file" => Some(Storage::File),
            "memory" => Some(Storage::Memory),
            _ => None,
        }
    }
}

/// How the publisher proves who it is. Read from the environment only; `Debug` never shows a
/// secret.
#[derive(Clone, Default)]
pub enum Credentials {
    /// None: the server accepts anyone.
    #[default]
    None,
    /// `ROWTRAIL_STREAM_USER` and `ROWTRAIL_STREAM_PASSWORD`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `ROWTRAIL_STREAM_TOKEN`.
    Token(String),
    /// `ROWTRAIL_STREAM_NKEY`: an NKey seed.
    NKey(String),
    /// `ROWTRAIL_STREAM_CREDS`: a `.creds` file (JWT and seed), by path.
    CredsFile(PathBuf),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "no credentials",
            Credentials::UserPassword { .. } => "user and password (from the environment)",
            Credentials::Token(_) => "token (from the environment)",
            Credentials::NKey(_) => "NKey seed (from the environment)",
            Credentials::CredsFile(_) => "credentials file (from the environment)",
        })
    }
}

/// The environment variables credentials are read from.
pub const CREDENTIAL_VARIABLES: [&str; 5] = [
    "ROWTRAIL_STREAM_USER",
    "ROWTRAIL_STREAM_PASSWORD",
    "ROWTRAIL_STREAM_TOKEN",
    "ROWTRAIL_STREAM_NKEY",
    "ROWTRAIL_STREAM_CREDS",
];

impl Credentials {
    /// The credentials `lookup` (the environment, `std::env::var`) holds: at most one kind.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, StreamError> {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let (user, password) = (get("ROWTRAIL_STREAM_USER"), get("ROWTRAIL_STREAM_PASSWORD"));
        let mut found = Vec::new();
        match (user, password) {
            (Some(user), Some(password)) => {
                found.push(Credentials::UserPassword { user, password })
            }
            (None, None) => {}
            _ => {
                return Err(StreamError::Config(
                    "ROWTRAIL_STREAM_USER and ROWTRAIL_STREAM_PASSWORD go together: set both or \
                     neither"
                        .into(),
                ))
            }
        }
        if let Some(t) = get("ROWTRAIL_STREAM_TOKEN") {
            found.push(Credentials::Token(t));
        }
        if let Some(s) = get("ROWTRAIL_STREAM_NKEY") {
            found.push(Credentials::NKey(s));
        }
        if let Some(p) = get("ROWTRAIL_STREAM_CREDS") {
            found.push(Credentials::CredsFile(PathBuf::from(p)));
        }
        match found.len() {
            0 => Ok(Credentials::None),
            1 => Ok(found.remove(0)),
            _ => Err(StreamError::Config(
                "more than one kind of stream credentials is set in the environment (user and \
                 password, ROWTRAIL_STREAM_TOKEN, ROWTRAIL_STREAM_NKEY, ROWTRAIL_STREAM_CREDS): \
                 keep one"
                    .into(),
            )),
        }
    }

    /// The credentials in this process's environment.
    pub fn from_env() -> Result<Self, StreamError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// The publisher's settings (`[stream]` in `rowtrail.toml`, credentials from the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The server: `nats://host:port`, or `tls://host:port` for TLS; several separated by `,`.
    /// Never with credentials in it.
    pub url: String,
    /// The subjects of this source's changes.
    pub subjects: Subjects,
    /// The JetStream stream that holds them (it must hold this source's subjects only: the
    /// order check is per stream).
    pub stream: String,
    /// Messages older than this are dropped by the server (`None`: kept for ever).
    pub max_age: Option<Duration>,
    /// Copies of the stream in a JetStream cluster.
    pub replicas: usize,
    /// Where the server keeps the stream.
    pub storage: Storage,
    /// How long the server remembers message ids to drop a message sent twice.
    pub duplicate_window: Duration,
    /// Messages published before their acknowledgements are awaited.
    pub window: usize,
    /// How long a request or an acknowledgement may take.
    pub timeout: Duration,
    /// A PEM file of certificate authorities the server's certificate is checked against
    /// (besides the system's), for `tls://`.
    pub ca_file: Option<PathBuf>,
    /// Who the publisher is.
    pub credentials: Credentials,
}

/// Acknowledgements awaited together, by default.
pub const DEFAULT_WINDOW: usize = 4096;

/// The server's duplicate window, by default (JetStream's own default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl Settings {
    /// Checks a server URL: a NATS scheme, a host, and no credentials.
    pub fn check_url(url: &str) -> Result<(), StreamError> {
        for one in url.split(',') {
            let one = one.trim();
            let rest = ["nats://", "tls://"]
                .iter()
                .find_map(|s| one.strip_prefix(s))
                .ok_or_else(|| {
                    StreamError::Config(format!(
                        "stream.url {:?} must start with nats:// (or tls:// for TLS)",
                        redact(one)
                    ))
                })?;
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(StreamError::Config(
                    "stream.url holds credentials; remove them and set ROWTRAIL_STREAM_USER and \
                     ROWTRAIL_STREAM_PASSWORD (or ROWTRAIL_STREAM_TOKEN, ROWTRAIL_STREAM_NKEY, \
                     ROWTRAIL_STREAM_CREDS) in the watcher's environment"
                        .into(),
                ));
            }
            if authority.is_empty() {
                return Err(StreamError::Config(format!(
                    "stream.url {one:?} names no host"
                )));
            }
        }
        Ok(())
    }

    /// Whether the URL asks for TLS.
    pub fn tls(&self) -> bool {
        self.url.split(',').any(|u| u.trim().starts_with("tls://"))
    }

    /// The default stream name for a subject prefix and source: both upper-cased, anything but
    /// letters and digits turned into `_`, joined by `_`.
    pub fn default_stream_name(prefix: &str, source: &str) -> String {
        format!("{prefix}_{source}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Checks a stream name as JetStream takes it.
    pub fn check_stream_name(name: &str) -> Result<(), StreamError> {
        let ok = !name.is_empty()
            && name.len() <= 255
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b".*>/\\".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(StreamError::Config(format!(
                "stream.stream is {name:?}; a JetStream stream name is printable ASCII without \
                 '.', '*', '>', '/' or '\\'"
            )))
        }
    }

    /// The key the archive records this stream's position under: the stream and its subjects
    /// (not the server, so a cluster's members and a moved server keep one position).
    pub fn position_key(&self) -> String {
        format!("{} {}", self.stream, self.subjects.all())
    }
}

/// `url` with anything between `//` and `@` hidden, for messages.
fn redact(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 2], &url[a..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_environment_one_kind_at_a_time() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(matches!(
            Credentials::from_lookup(env(&[])).unwrap(),
            Credentials::None
        ));
        let c = Credentials::from_lookup(env(&[
            ("ROWTRAIL_STREAM_USER", "pub"),
            ("ROWTRAIL_STREAM_PASSWORD", "s3cret"),
        ]))
        .unwrap();
        assert!(matches!(c, Credentials::UserPassword { .. }));
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Credentials::from_lookup(env(&[("ROWTRAIL_STREAM_USER", "pub")])).unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let e = Credentials::from_lookup(env(&[
            ("ROWTRAIL_STREAM_TOKEN", "t"),
            ("ROWTRAIL_STREAM_NKEY", "n"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("keep one"), "{e}");
    }

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused_without_echoing_secrets() {
        Settings::check_url("nats://127.0.0.1:4222").unwrap();
        Settings::check_url("tls://a:4222, tls://b:4222").unwrap();
        let e = Settings::check_url("nats://u:hunter2@h:4222")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds credentials") && !e.contains("hunter2"),
            "{e}"
        );
        let e = Settings::check_url("http://u:hunter2@h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nats://") && !e.contains("hunter2"), "{e}");
        assert!(Settings::check_url("nats://").is_err());
    }

    #[test]
    fn default_stream_names_are_valid() {
        let n = Settings::default_stream_name("cdc.sales", "app db/1");
        assert_eq!(n, "CDC_SALES_APP_DB_1");
        Settings::check_stream_name(&n).unwrap();
        assert!(Settings::check_stream_name("a.b").is_err());
        assert!(Settings::check_stream_name("").is_err());
    }
}
