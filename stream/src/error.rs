//! The stream's error type.

/// What goes wrong between rowtrail and the stream's server. Every message names the server
/// by its address without credentials, and never holds a secret or a row value.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The `[stream]` configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// Nothing answers at the server's address (or the connection broke).
    #[error("the NATS server at {url} does not answer: {detail}")]
    ServerDown {
        /// The server, without credentials.
        url: String,
        /// What the client saw.
        detail: String,
    },
    /// The server refused the credentials (or there were none and it wants some).
    #[error(
        "the NATS server at {url} refused the credentials ({detail}); set ROWTRAIL_STREAM_USER \
         and ROWTRAIL_STREAM_PASSWORD, ROWTRAIL_STREAM_TOKEN, ROWTRAIL_STREAM_NKEY or \
         ROWTRAIL_STREAM_CREDS in the watcher's environment"
    )]
    Credentials {
        /// The server, without credentials.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// TLS could not be set up or the server's certificate was not accepted.
    #[error("TLS with the NATS server at {url} failed: {detail}")]
    Tls {
        /// The server, without credentials.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The server runs without JetStream.
    #[error(
        "the NATS server at {url} has no JetStream (start it with `nats-server -js`, or enable \
         JetStream for this account)"
    )]
    NoJetStream {
        /// The server, without credentials.
        url: String,
    },
    /// Another stream already takes the subjects this source publishes to.
    #[error(
        "the subjects {subjects} are taken by the stream {owner:?} on {url}; give this source \
         another stream.subject or stream.source, or remove that stream"
    )]
    SubjectTaken {
        /// The server, without credentials.
        url: String,
        /// This source's subjects.
        subjects: String,
        /// The stream that holds them (as the server names it, or "another stream").
        owner: String,
    },
    /// The stream exists with settings that cannot be changed in place.
    #[error("the stream {stream:?} on {url}: {detail}")]
    StreamSettings {
        /// The server, without credentials.
        url: String,
        /// The stream.
        stream: String,
        /// What differs, and what to do.
        detail: String,
    },
    /// The stream's server refused or lost a message.
    #[error("publishing to {url} failed: {detail}")]
    Publish {
        /// The server, without credentials.
        url: String,
        /// What went wrong.
        detail: String,
        /// The stream's last message is not the one this publisher sent before: the stream
        /// changed under it, or the server lost messages; the publisher finds its place again.
        out_of_step: bool,
    },
    /// A JetStream request failed for another reason.
    #[error("the NATS server at {url}: {detail}")]
    Server {
        /// The server, without credentials.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The archive could not be read or the position not written.
    #[error(transparent)]
    Archive(#[from] rowtrail_reader::ReaderError),
    /// A replica fed from the stream could not be opened or written.
    #[error(transparent)]
    Replica(Box<rowtrail_standby::StandbyError>),
    /// What the stream holds cannot go into the replica (another source, a gap, a body that is
    /// not a change event); the message says why and what to do. Nothing was applied.
    #[error("{0}")]
    Refused(String),
}

impl From<rowtrail_standby::StandbyError> for StreamError {
    fn from(e: rowtrail_standby::StandbyError) -> Self {
        StreamError::Replica(Box::new(e))
    }
}

impl StreamError {
    /// Whether trying again later may succeed without anyone changing anything: the server
    /// down or failing a request. A refusal, a configuration error or a damaged replica stays
    /// until someone acts.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StreamError::ServerDown { .. } | StreamError::Server { .. }
        )
    }
}
