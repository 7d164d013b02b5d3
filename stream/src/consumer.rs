//! A durable pull consumer of one source's subjects: what a remote replica reads the stream
//! with.
//!
//! Its state on the server is a convenience, not the truth: the replica records the stream
//! position of the last message it applied in the same transaction as the rows, and every time
//! the consumer is opened it is made again from the message after that one. So a consumer
//! killed with messages delivered but not acknowledged does not wait for the server's
//! redelivery timer, and one whose server lost its state (memory storage, a restore) starts at
//! the right place. Messages are acknowledged "all up to here" ([`AckPolicy::All`]) once the
//! replica's transaction has committed.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::{GetStreamByNameErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{ConsumerErrorKind, RawMessageErrorKind};
use async_nats::jetstream::ErrorCode;
use futures_util::StreamExt;

use crate::connection::CUT_HEADER;
use crate::{Connection, Settings, StreamError};

/// How long the server waits for an acknowledgement before it delivers a message again.
pub const ACK_WAIT: Duration = Duration::from_secs(60);

/// One message delivered to the consumer.
pub struct Delivered {
    /// Its position in the stream.
    pub stream_seq: u64,
    /// Its message id, if it has one.
    pub id: Option<String>,
    /// The archive id of its [`CUT_HEADER`], when it ends a transaction.
    pub cut: Option<String>,
    /// Its body.
    pub payload: bytes::Bytes,
    message: async_nats::jetstream::Message,
}

/// Where a consumer stands on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConsumerLag {
    /// Messages not yet acknowledged: delivered and waiting, or not yet delivered.
    pub pending: u64,
    /// The stream position of the first message not acknowledged (0 when none waits).
    pub first_unacked: u64,
}

/// A durable pull consumer, on a connection of its own.
pub struct Consumer {
    consumer: PullConsumer,
    stream_name: String,
    name: String,
    conn: Connection,
}

impl Consumer {
    /// Opens the durable consumer `name` of `settings`' subjects on `settings.stream`, made
    /// again to deliver from the message after stream position `after` (0: from the stream's
    /// first message; a position the stream no longer holds, or beyond its end, also starts at
    /// its first message). The stream must exist.
    pub fn open(settings: &Settings, name: &str, after: u64) -> Result<Self, StreamError> {
        let conn = Connection::connect(settings)?;
        let url = settings.url.clone();
        let filter = settings.subjects.all();
        let server = |e: &dyn std::fmt::Display| StreamError::Server {
            url: url.clone(),
            detail: e.to_string(),
        };
        let consumer = conn.block_on(async {
            let js = conn.jetstream();
            let mut stream = match js.get_stream(&settings.stream).await {
                Ok(s) => s,
                Err(e)
                    if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                {
                    return Err(StreamError::StreamSettings {
                        url: url.clone(),
                        stream: settings.stream.clone(),
                        detail: format!(
                            "there is no such stream, so nothing publishes {filter} there: set \
                             [stream] in the rowtrail.toml of the watcher that holds the \
                             source's archive, or name the stream that does (--stream)"
                        ),
                    })
                }
                Err(e) => return Err(server(&e)),
            };
            let info = stream.info().await.map_err(|e| server(&e))?.clone();
            let covers =
                info.config.subjects.iter().any(|s| {
                    s == &filter || s == ">" || filter.starts_with(s.trim_end_matches('>'))
                });
            if !covers {
                return Err(StreamError::StreamSettings {
                    url: url.clone(),
                    stream: settings.stream.clone(),
                    detail: format!(
                        "it holds the subjects {:?}, not {filter}: name the stream that holds \
                         this source (--stream), or its subjects (--subject)",
                        info.config.subjects
                    ),
                });
            }
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            // From the message after `after`, also when none is there yet (what is published
            // meanwhile is delivered); a stream that holds less than `after` was made again.
            let deliver_policy = if after > 0 && after <= last && after + 1 >= first {
                DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                }
            } else {
                DeliverPolicy::All
            };
            match stream.delete_consumer(name).await {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
                Err(e) => return Err(server(&e)),
            }
            stream
                .create_consumer(PullConfig {
                    durable_name: Some(name.to_string()),
                    description: Some("rowtrail remote replica".into()),
                    filter_subject: filter.clone(),
                    deliver_policy,
                    ack_policy: AckPolicy::All,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 100_000,
                    ..Default::default()
                })
                .await
                .map_err(|e| server(&e))
        })?;
        Ok(Self {
            consumer,
            stream_name: settings.stream.clone(),
            name: name.to_string(),
            conn,
        })
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream_name
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` messages, in stream order, waiting at most `wait` for the first.
    pub fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivered>, StreamError> {
        let url = self.conn.settings().url.clone();
        let err = |e: &dyn std::fmt::Display| StreamError::ServerDown {
            url: url.clone(),
            detail: format!("cannot fetch from the stream: {e}"),
        };
        self.conn.block_on(async {
            let mut batch = self
                .consumer
                .batch()
                .max_messages(max.max(1))
                .expires(wait.max(Duration::from_millis(10)))
                .messages()
                .await
                .map_err(|e| err(&e))?;
            let mut out = Vec::new();
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| err(&e))?;
                let stream_seq = m.info().map_err(|e| err(&e))?.stream_sequence;
                let header = |name: &str| {
                    m.headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                out.push(Delivered {
                    stream_seq,
                    id: header(async_nats::header::NATS_MESSAGE_ID.as_ref()),
                    cut: header(CUT_HEADER),
                    payload: m.payload.clone(),
                    message: m,
                });
            }
            Ok(out)
        })
    }

    /// Acknowledges `m` and every message before it, and waits for the server to confirm.
    pub fn ack_through(&self, m: &Delivered) -> Result<(), StreamError> {
        let url = self.conn.settings().url.clone();
        self.conn.block_on(async {
            m.message
                .double_ack()
                .await
                .map_err(|e| StreamError::ServerDown {
                    url,
                    detail: format!("cannot acknowledge messages: {e}"),
                })
        })
    }

    /// What the consumer has not acknowledged yet.
    pub fn lag(&self) -> Result<ConsumerLag, StreamError> {
        let url = self.conn.settings().url.clone();
        self.conn.block_on(async {
            let info = self
                .consumer
                .get_info()
                .await
                .map_err(|e| StreamError::Server {
                    url,
                    detail: format!("cannot read the consumer's state: {e}"),
                })?;
            let pending = info.num_pending + info.num_ack_pending as u64;
            Ok(ConsumerLag {
                pending,
                first_unacked: if pending == 0 {
                    0
                } else {
                    info.ack_floor.stream_sequence + 1
                },
            })
        })
    }

    /// The body of the message at stream position `seq`, if the stream holds it.
    pub fn message_at(&self, seq: u64) -> Result<Option<bytes::Bytes>, StreamError> {
        let url = self.conn.settings().url.clone();
        self.conn.block_on(async {
            let stream = self
                .conn
                .jetstream()
                .get_stream_no_info(&self.stream_name)
                .await
                .map_err(|e| StreamError::Server {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
            match stream.get_raw_message(seq).await {
                Ok(m) => Ok(Some(m.payload)),
                Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
                Err(e) => Err(StreamError::Server {
                    url,
                    detail: e.to_string(),
                }),
            }
        })
    }
}

/// The stream that holds `settings`' subjects on its server, if one does.
pub fn stream_holding(settings: &Settings) -> Result<Option<String>, StreamError> {
    let conn = Connection::connect(settings)?;
    let url = settings.url.clone();
    conn.block_on(async {
        match conn
            .jetstream()
            .stream_by_subject(settings.subjects.all())
            .await
        {
            Ok(name) => Ok(Some(name)),
            Err(e) if matches!(e.kind(), GetStreamByNameErrorKind::NotFound) => Ok(None),
            Err(e) => Err(StreamError::Server {
                url,
                detail: e.to_string(),
            }),
        }
    })
}
