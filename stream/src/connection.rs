//! One connection to the stream's server, used from a plain thread: it owns a small tokio
//! runtime (one worker) on which the NATS client runs, and every call blocks until its work is
//! done or has failed.
//!
//! Exactly once, in order: every message carries its id (`Nats-Msg-Id`, `<incarnation>:<seq>`),
//! so the server drops one it holds already (within the stream's duplicate window), and the id
//! of the message before it (`Nats-Expected-Last-Msg-Id`), so the server refuses a message whose
//! predecessor did not land, which is what keeps a message lost in a broken connection from
//! being overtaken by the ones sent after it. A refused message ends the window
//! ([`StreamError::Publish`] with `out_of_step`); the publisher then asks the stream for its
//! last message ([`Connection::last_message_id`]) and goes on after it.

use std::time::Duration;

use async_nats::jetstream::context::{
    AccountErrorKind, CreateStreamErrorKind, GetStreamErrorKind, PublishAckFuture, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, StorageType};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectErrorKind, ConnectOptions};

use crate::settings::{Credentials, Settings, Storage};
use crate::StreamError;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its subject.
    pub subject: String,
    /// Its message id (`<incarnation>:<seq>`).
    pub id: String,
    /// Its body.
    pub payload: bytes::Bytes,
    /// When every change of the source up to this one belongs to transactions archived whole
    /// at or before it: the archive's id, sent as the [`CUT_HEADER`] header.
    pub cut: Option<String>,
}

/// The header a message carries when every change of its source up to it belongs to source
/// transactions archived whole at or before it (a consumer that applies up to it stands on a
/// consistent state of the source); its value is the archive's id.
pub const CUT_HEADER: &str = "Rowtrail-Cut";

/// What a window of publishes achieved.
#[derive(Debug)]
pub struct WindowOutcome {
    /// How many of the window's messages, from its start, the stream holds (acknowledged,
    /// duplicates included).
    pub acked: usize,
    /// Of those, how many the server had already (dropped as duplicates).
    pub duplicates: usize,
    /// Why the rest were not acknowledged, when they were not.
    pub error: Option<StreamError>,
}

/// A connection to the stream's server, with the stream ensured.
pub struct Connection {
    // Declared first so it is dropped first: the client's tasks end with the runtime.
    js: Context,
    client: async_nats::Client,
    runtime: tokio::runtime::Runtime,
    settings: Settings,
}

impl Connection {
    /// Connects and checks JetStream, leaving the stream as it is (or absent): what a consumer
    /// opens.
    pub fn connect(settings: &Settings) -> Result<Self, StreamError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rowtrail-stream-io")
            .enable_all()
            .build()
            .map_err(|e| StreamError::Server {
                url: settings.url.clone(),
                detail: format!("cannot start the client's runtime: {e}"),
            })?;
        let (client, js) = runtime.block_on(connect(settings))?;
        Ok(Self {
            js,
            client,
            runtime,
            settings: settings.clone(),
        })
    }

    /// Connects, checks JetStream, and creates the stream or brings its settings to those
    /// configured (idempotent): what a publisher opens.
    pub fn open(settings: &Settings) -> Result<Self, StreamError> {
        let conn = Self::connect(settings)?;
        conn.runtime.block_on(ensure_stream(&conn.js, settings))?;
        Ok(conn)
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The id of the last message the stream holds on this source's subjects (`None` when it
    /// holds none).
    pub fn last_message_id(&self) -> Result<Option<String>, StreamError> {
        let url = self.settings.url.clone();
        self.runtime.block_on(async {
            let stream = self
                .js
                .get_stream_no_info(&self.settings.stream)
                .await
                .map_err(|e| server(&url, e))?;
            match stream
                .get_last_raw_message_by_subject(&self.settings.subjects.all())
                .await
            {
                Ok(m) => Ok(m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_string())),
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(server(&url, e)),
            }
        })
    }

    /// Publishes `msgs` in order, pipelined: at most the settings' `window` are in flight, and
    /// their acknowledgements are awaited oldest first. `after` is the id of the message the
    /// stream's last one must be for the first of them (`None`: not checked, for a stream that
    /// holds nothing of this source). Stops at the first message not acknowledged.
    pub fn publish(&self, msgs: Vec<Outgoing>, after: Option<String>) -> WindowOutcome {
        self.start_publish(msgs, after).wait(self)
    }

    /// [`Connection::publish`] on the connection's runtime, returning at once: the caller
    /// prepares the next messages meanwhile and collects the outcome with
    /// [`PendingWindow::wait`].
    pub fn start_publish(&self, msgs: Vec<Outgoing>, after: Option<String>) -> PendingWindow {
        let (js, url) = (self.js.clone(), self.settings.url.clone());
        let window = self.settings.window.max(1);
        PendingWindow(
            self.runtime
                .spawn(publish_window(js, url, window, msgs, after)),
        )
    }

    /// Runs `f` on the connection's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The JetStream context.
    pub(crate) fn jetstream(&self) -> &Context {
        &self.js
    }

    /// Closes the connection after flushing what it has sent.
    pub fn close(self) {
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await
        });
    }
}

/// A window being published (see [`Connection::start_publish`]).
pub struct PendingWindow(tokio::task::JoinHandle<WindowOutcome>);

impl PendingWindow {
    /// Waits for the window's outcome.
    pub fn wait(self, conn: &Connection) -> WindowOutcome {
        let url = conn.settings.url.clone();
        conn.runtime
            .block_on(self.0)
            .unwrap_or_else(|e| WindowOutcome {
                acked: 0,
                duplicates: 0,
                error: Some(StreamError::Publish {
                    url,
                    detail: format!("the publishing task failed: {e}"),
                    out_of_step: false,
                }),
            })
    }
}

async fn publish_window(
    js: Context,
    url: String,
    window: usize,
    msgs: Vec<Outgoing>,
    after: Option<String>,
) -> WindowOutcome {
    let mut outcome = WindowOutcome {
        acked: 0,
        duplicates: 0,
        error: None,
    };
    let mut in_flight = std::collections::VecDeque::with_capacity(window);
    let mut previous = after.as_deref();
    let mut sent_error = None;
    for m in &msgs {
        if in_flight.len() >= window {
            let ack: PublishAckFuture = in_flight.pop_front().expect("not empty");
            if let Err(e) = settle(ack, &mut outcome).await {
                outcome.error = Some(publish_error(&url, e));
                return outcome;
            }
        }
        let mut p = PublishMessage::build()
            .payload(m.payload.clone())
            .message_id(&m.id);
        if let Some(prev) = previous {
            p = p.expected_last_message_id(prev);
        }
        if let Some(archive) = &m.cut {
            p = p.header(CUT_HEADER, archive.as_str());
        }
        previous = Some(&m.id);
        match js.send_publish(m.subject.clone(), p).await {
            Ok(ack) => in_flight.push_back(ack),
            Err(e) => {
                sent_error = Some(publish_error(&url, e));
                break;
            }
        }
    }
    for ack in in_flight {
        if let Err(e) = settle(ack, &mut outcome).await {
            outcome.error = Some(publish_error(&url, e));
            return outcome;
        }
    }
    outcome.error = sent_error;
    outcome
}

/// Awaits one acknowledgement and counts it.
async fn settle(
    ack: PublishAckFuture,
    outcome: &mut WindowOutcome,
) -> Result<(), async_nats::jetstream::context::PublishError> {
    let a = ack.await?;
    outcome.acked += 1;
    outcome.duplicates += usize::from(a.duplicate);
    Ok(())
}

fn server(url: &str, e: impl std::fmt::Display) -> StreamError {
    StreamError::Server {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

fn publish_error(url: &str, e: async_nats::jetstream::context::PublishError) -> StreamError {
    let kind = e.kind();
    let detail = match kind {
        PublishErrorKind::StreamNotFound => {
            "no stream takes the subject (the stream was deleted, or the server lost it)".into()
        }
        PublishErrorKind::TimedOut => "no acknowledgement in time".into(),
        PublishErrorKind::BrokenPipe => "the connection broke".into(),
        _ => e.to_string(),
    };
    StreamError::Publish {
        url: url.to_string(),
        detail,
        out_of_step: kind == PublishErrorKind::WrongLastMessageId,
    }
}

async fn connect(s: &Settings) -> Result<(async_nats::Client, Context), StreamError> {
    let url = s.url.clone();
    let mut opts = ConnectOptions::new()
        .name("rowtrail")
        .connection_timeout(s.timeout)
        .request_timeout(Some(s.timeout))
        .require_tls(s.tls())
        // Reconnects are the publisher's business: it starts again after the last message the
        // stream holds.
        .max_reconnects(1)
        .retain_servers_order();
    if let Some(ca) = &s.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    opts = match &s.credentials {
        Credentials::None => opts,
        Credentials::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        Credentials::Token(t) => opts.token(t.clone()),
        Credentials::NKey(seed) => opts.nkey(seed.clone()),
        Credentials::CredsFile(path) => {
            opts.credentials_file(path)
                .await
                .map_err(|e| StreamError::Credentials {
                    url: url.clone(),
                    detail: format!("cannot read the credentials file {}: {e}", path.display()),
                })?
        }
    };
    let servers: Vec<&str> = s.url.split(',').map(str::trim).collect();
    let client = opts.connect(servers).await.map_err(|e| match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            StreamError::Credentials {
                url: url.clone(),
                detail: e.to_string(),
            }
        }
        ConnectErrorKind::Tls => StreamError::Tls {
            url: url.clone(),
            detail: e.to_string(),
        },
        _ => StreamError::ServerDown {
            url: url.clone(),
            detail: e.to_string(),
        },
    })?;
    let js = jetstream::ContextBuilder::new()
        .timeout(s.timeout)
        .max_ack_inflight(s.window.max(1))
        .backpressure_on_inflight(true)
        .build(client.clone());
    match js.query_account().await {
        Ok(_) => {}
        Err(e) => {
            return Err(match e.kind() {
                AccountErrorKind::JetStreamUnavailable => StreamError::NoJetStream { url },
                AccountErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                        || j.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
                {
                    StreamError::NoJetStream { url }
                }
                AccountErrorKind::TimedOut => StreamError::ServerDown {
                    url,
                    detail: "JetStream did not answer in time".into(),
                },
                _ => server(&url, e),
            })
        }
    }
    Ok((client, js))
}

fn config_of(s: &Settings) -> Config {
    Config {
        name: s.stream.clone(),
        subjects: vec![s.subjects.all()],
        max_age: s.max_age.unwrap_or_default(),
        num_replicas: s.replicas.max(1),
        storage: match s.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        duplicate_window: s.duplicate_window,
        description: Some("rowtrail change stream".into()),
        ..Default::default()
    }
}

async fn ensure_stream(js: &Context, s: &Settings) -> Result<(), StreamError> {
    let url = s.url.clone();
    let wanted = config_of(s);
    let settings_error = |detail: String| StreamError::StreamSettings {
        url: url.clone(),
        stream: s.stream.clone(),
        detail,
    };
    match js.get_stream(&s.stream).await {
        Ok(mut stream) => {
            let have = stream
                .info()
                .await
                .map_err(|e| server(&url, e))?
                .config
                .clone();
            if !have.subjects.contains(&s.subjects.all()) {
                return Err(settings_error(format!(
                    "it exists for the subjects {:?}, not {}; name another stream \
                     (stream.stream) or remove it",
                    have.subjects,
                    s.subjects.all()
                )));
            }
            if have.subjects.len() > 1 {
                return Err(settings_error(format!(
                    "it takes other subjects besides this source's ({:?}); rowtrail checks the \
                     order of a source's changes per stream, so its stream must hold that \
                     source alone",
                    have.subjects
                )));
            }
            if have.storage != wanted.storage {
                return Err(settings_error(format!(
                    "it keeps its messages in {:?} storage, the configuration says {}; a \
                     stream's storage cannot change in place (remove the stream to have it \
                     made again, the archive publishes everything again)",
                    have.storage,
                    s.storage.word()
                )));
            }
            if have.max_age != wanted.max_age
                || have.num_replicas != wanted.num_replicas
                || have.duplicate_window != wanted.duplicate_window
            {
                let mut update = have.clone();
                update.max_age = wanted.max_age;
                update.num_replicas = wanted.num_replicas;
                update.duplicate_window = wanted.duplicate_window;
                js.update_stream(&update)
                    .await
                    .map_err(|e| settings_error(format!("cannot update its settings: {e}")))?;
                tracing::info!(stream = %s.stream, "stream settings updated");
            }
            Ok(())
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                create_stream(js, s, wanted).await
            }
            _ => Err(server(&url, e)),
        },
    }
}

async fn create_stream(js: &Context, s: &Settings, config: Config) -> Result<(), StreamError> {
    let url = s.url.clone();
    match js.create_stream(config).await {
        Ok(_) => {
            tracing::info!(stream = %s.stream, subjects = %s.subjects.all(), "stream created");
            Ok(())
        }
        Err(e) => match e.kind() {
            CreateStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
            {
                let owner = js
                    .stream_by_subject(s.subjects.all())
                    .await
                    .unwrap_or_else(|_| "another stream".into());
                Err(StreamError::SubjectTaken {
                    url,
                    subjects: s.subjects.all(),
                    owner,
                })
            }
            CreateStreamErrorKind::JetStreamUnavailable => Err(StreamError::NoJetStream { url }),
            _ => Err(StreamError::StreamSettings {
                url,
                stream: s.stream.clone(),
                detail: format!("cannot create it: {e}"),
            }),
        },
    }
}
