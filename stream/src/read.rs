//! Reading a source's messages back from the stream, in the stream's order, with an
//! ephemeral ordered consumer: what a consumer sees, for checks and tools (a remote replica
//! keeps a durable consumer of its own).

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use futures_util::StreamExt;

use crate::{Connection, StreamError};

/// One message as the stream holds it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its position in the stream.
    pub stream_seq: u64,
    /// Its subject.
    pub subject: String,
    /// Its message id (`Nats-Msg-Id`), if it has one.
    pub id: Option<String>,
    /// Its body.
    pub payload: bytes::Bytes,
}

impl Connection {
    /// Up to `max` of this source's messages from the stream position `from` (1 is the first),
    /// in order; waits at most `quiet` for the next one once none is pending, and `limit` in
    /// all.
    pub fn read_messages(
        &self,
        from: u64,
        max: usize,
        quiet: Duration,
        limit: Duration,
    ) -> Result<Vec<Received>, StreamError> {
        let s = self.settings().clone();
        let url = s.url.clone();
        let err = |e: &dyn std::fmt::Display| StreamError::Server {
            url: url.clone(),
            detail: format!("cannot read the stream back: {e}"),
        };
        self.block_on(async {
            let stream = self
                .jetstream()
                .get_stream(&s.stream)
                .await
                .map_err(|e| err(&e))?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: s.subjects.all(),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: from.max(1),
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| err(&e))?;
            let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
            let mut out = Vec::new();
            let deadline = Instant::now() + limit;
            while out.len() < max {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .min(quiet);
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(left, messages.next()).await {
                    Err(_) | Ok(None) => break,
                    Ok(Some(Err(e))) => return Err(err(&e)),
                    Ok(Some(Ok(m))) => {
                        let stream_seq = m.info().map_err(|e| err(&e))?.stream_sequence;
                        out.push(Received {
                            stream_seq,
                            subject: m.subject.to_string(),
                            id: m
                                .headers
                                .as_ref()
                                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                                .map(|v| v.as_str().to_string()),
                            payload: m.payload.clone(),
                        });
                    }
                }
            }
            Ok(out)
        })
    }
}
