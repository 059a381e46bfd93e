//! Asking for a configuration reload: SIGHUP, `POST /reload` and the file watch all send a
//! [`ReloadRequest`] to the one task that applies configurations (see `server::apply`), so
//! reloads never overlap, and each asker hears how its reload ended.

use tokio::sync::{mpsc, oneshot};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin port.
    Admin,
    /// The configuration file (or its directory) changed. A file whose content is the one
    /// already in force, or the one refused last, is not applied again.
    FileChange,
}

impl Trigger {
    /// How logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "POST /reload",
            Trigger::FileChange => "file change",
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is in force; what changed, one line each.
    Applied(String),
    /// The file holds the configuration already in force (or the one refused last): nothing
    /// was done.
    Unchanged,
    /// The configuration was refused and the old one stays: every reason, as
    /// `FILE:LINE:COL: field: message` lines.
    Refused(String),
    /// weir cannot reload: it was started without a configuration file, or is shutting
    /// down.
    Unavailable(String),
}

/// One request to the applying task.
#[derive(Debug)]
pub struct ReloadRequest {
    /// Who asked.
    pub trigger: Trigger,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<ReloadOutcome>,
}

/// A handle that asks for reloads (cheap to clone).
#[derive(Debug, Clone)]
pub struct Reloads(mpsc::Sender<ReloadRequest>);

impl Reloads {
    /// A handle and the receiving end the applying task reads.
    pub fn channel() -> (Reloads, mpsc::Receiver<ReloadRequest>) {
        // Askers wait for their answer, so a handful in the queue is plenty.
        let (tx, rx) = mpsc::channel(8);
        (Reloads(tx), rx)
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let (reply, outcome) = oneshot::channel();
        if self.0.send(ReloadRequest { trigger, reply }).await.is_err() {
            return ReloadOutcome::Unavailable("weir is shutting down".into());
        }
        outcome
            .await
            .unwrap_or_else(|_| ReloadOutcome::Unavailable("weir is shutting down".into()))
    }
}
