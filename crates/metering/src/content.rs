//! Opt-in content logging: what a tenant chose ([`ContentLogging`]), what is stored
//! ([`ContentRecord`], already redacted by the gateway) and the queue that carries records to
//! the store off the request path.
//!
//! Unlike usage records, content records may be dropped: a full queue drops the record (the
//! caller counts and logs it) rather than make a request wait or hold memory without bound.
//! They get their own queue and writer task so that a burst of large content records can never
//! delay or crowd out the usage records invoices are made from.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::store::Store;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a tenant's prompts and completions are kept, or `Off` (the default): not logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentLogging {
    #[default]
    Off,
    Days7,
    Days30,
}

impl ContentLogging {
    /// The stored form: days kept, 0 for off.
    pub fn days(self) -> i64 {
        match self {
            ContentLogging::Off => 0,
            ContentLogging::Days7 => 7,
            ContentLogging::Days30 => 30,
        }
    }

    pub fn from_days(days: i64) -> Option<Self> {
        Some(match days {
            0 => ContentLogging::Off,
            7 => ContentLogging::Days7,
            30 => ContentLogging::Days30,
            _ => return None,
        })
    }

    /// How long a record made now is kept, or `None` when nothing is logged.
    pub fn ttl_ms(self) -> Option<i64> {
        match self {
            ContentLogging::Off => None,
            on => Some(on.days() * DAY_MS),
        }
    }

    /// `"off"`, `"7"`, `"30"` (also `"7d"`, `"30d"`), as typed on a command line.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().trim_end_matches('d') {
            "off" | "0" => Some(ContentLogging::Off),
            days => days.parse().ok().and_then(Self::from_days),
        }
    }
}

/// JSON: `"off"` or the number of days (`7`, `30`).
impl Serialize for ContentLogging {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentLogging::Off => s.serialize_str("off"),
            on => s.serialize_i64(on.days()),
        }
    }
}

/// Accepts `"off"`, `7`, `30`, and the same as strings (`"7"`, `"30d"`).
impl<'de> Deserialize<'de> for ContentLogging {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Days(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Days(n) => Self::from_days(n),
            Raw::Text(s) => Self::parse(&s),
        };
        parsed.ok_or_else(|| serde::de::Error::custom("content_logging must be \"off\", 7 or 30"))
    }
}

/// One request's prompt and completion, redacted before it was queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub request_id: String,
    pub tenant_id: String,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    /// How the request ended (see [`crate::UsageStatus::as_str`]).
    pub status: String,
    /// Unix ms when the request arrived.
    pub created_at_ms: i64,
    /// Unix ms after which the gateway deletes the record.
    pub expires_at_ms: i64,
    /// Chat: the `messages` array as JSON text; completions: the prompt.
    pub prompt: String,
    pub prompt_truncated: bool,
    pub completion: String,
    pub completion_truncated: bool,
}

#[derive(Debug, Clone)]
pub struct ContentConfig {
    pub queue: usize,
    pub batch: usize,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            queue: 1024,
            batch: 64,
        }
    }
}

/// The sending side: cheap to clone.
#[derive(Clone)]
pub struct ContentQueue {
    tx: mpsc::Sender<ContentRecord>,
}

/// A place in the queue, taken on the request path before any redaction work is spent, so a
/// record that would be dropped costs nothing.
pub struct ContentSlot {
    permit: mpsc::OwnedPermit<ContentRecord>,
}

impl ContentSlot {
    pub fn send(self, record: ContentRecord) {
        self.permit.send(record);
    }
}

pub struct ContentTask {
    handle: JoinHandle<()>,
    close: tokio::sync::oneshot::Sender<()>,
}

impl ContentQueue {
    pub fn spawn(store: Arc<dyn Store>, config: ContentConfig) -> (ContentQueue, ContentTask) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(write_loop(store, rx, closed, config.batch.max(1)));
        (ContentQueue { tx }, ContentTask { handle, close })
    }

    /// A slot if the queue has room; `None` when it is full (or closed): drop the record.
    pub fn try_reserve(&self) -> Option<ContentSlot> {
        self.tx
            .clone()
            .try_reserve_owned()
            .ok()
            .map(|permit| ContentSlot { permit })
    }
}

impl ContentTask {
    /// Stops taking records, writes what is queued (and what holders of a slot still send).
    pub async fn shutdown(self) {
        let _ = self.close.send(());
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "content log writer failed");
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<ContentRecord>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, batch_size) => {
                if n == 0 {
                    break;
                }
                write(&*store, &mut batch).await;
            }
            _ = &mut closed => {
                // Outstanding slots may still send after `close`; `recv_many` returns 0 once
                // they are all used or dropped and the queue is empty.
                rx.close();
                while rx.recv_many(&mut batch, batch_size).await > 0 {
                    write(&*store, &mut batch).await;
                }
                break;
            }
        }
    }
}

/// A few attempts, then the batch is dropped: content logs are best effort, and a store that
/// keeps failing must not pile them up in memory.
async fn write(store: &dyn Store, batch: &mut Vec<ContentRecord>) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=3 {
        match store.insert_content(batch).await {
            Ok(()) => break,
            Err(e) if attempt == 3 => {
                tracing::error!(error = %e, records = batch.len(), "content log write failed; records dropped");
            }
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), "content log write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    batch.clear();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        for (text, want) in [
            (r#""off""#, ContentLogging::Off),
            ("0", ContentLogging::Off),
            ("7", ContentLogging::Days7),
            ("30", ContentLogging::Days30),
            (r#""7d""#, ContentLogging::Days7),
            (r#""30""#, ContentLogging::Days30),
        ] {
            assert_eq!(
                serde_json::from_str::<ContentLogging>(text).unwrap(),
                want,
                "{text}"
            );
        }
        for bad in ["1", "14", r#""on""#, "true", "-7"] {
            assert!(
                serde_json::from_str::<ContentLogging>(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::to_string(&ContentLogging::Off).unwrap(),
            r#""off""#
        );
        assert_eq!(
            serde_json::to_string(&ContentLogging::Days30).unwrap(),
            "30"
        );
        assert_eq!(ContentLogging::Days7.ttl_ms(), Some(7 * DAY_MS));
        assert_eq!(ContentLogging::Off.ttl_ms(), None);
    }
}
