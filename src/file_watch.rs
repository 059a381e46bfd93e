//! Watching directories for changed files: the identity files (a Kubernetes Secret update)
//! and the configuration file (a ConfigMap update). Both swap a `..data` symlink, so the
//! directory is watched, not the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, Watcher};
use tokio::sync::mpsc;

/// Changes seen in a set of directories; the watch lasts as long as this value.
#[derive(Debug)]
pub struct DirectoryWatch {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
}

/// How long file events are gathered before the files are read again: one update writes
/// several files, renames and swaps symlinks.
pub const SETTLE: Duration = Duration::from_millis(200);

impl DirectoryWatch {
    /// Watches `dirs` for changes to the entries `relevant` accepts (by file name). `what`
    /// names the files in the warning logged when a watch cannot be set up; `None` when no
    /// watch could be.
    pub fn start(
        dirs: &[PathBuf],
        relevant: impl Fn(&Path) -> bool + Send + 'static,
        what: &str,
    ) -> Option<DirectoryWatch> {
        let (tx, changes) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if is_change(&event.kind) && event.paths.iter().any(|p| relevant(p)) {
                    let _ = tx.send(());
                }
            }) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the {what}; changes need a restart");
                    return None;
                }
            };
        let mut watching = false;
        for dir in dirs {
            match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => watching = true,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a directory of the {what}; changes there need a restart")
                }
            }
        }
        watching.then_some(DirectoryWatch {
            _watcher: watcher,
            changes,
        })
    }

    /// Resolves once something changed and [`SETTLE`] passed without more changes; `None`
    /// when the watch ended.
    pub async fn changed(&mut self) -> Option<()> {
        self.changes.recv().await?;
        loop {
            match tokio::time::timeout(SETTLE, self.changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(_) => return Some(()),
            }
        }
    }
}

/// The directory `file` is in (`.` for a bare name).
pub fn directory_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether a file event is a change of content or of which file a name points to (a write,
/// a rename, a symlink swapped), not a read or a change of metadata (an access time).
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::ModifyKind;
    match kind {
        notify::EventKind::Create(_) | notify::EventKind::Remove(_) => true,
        notify::EventKind::Modify(ModifyKind::Metadata(_)) => false,
        notify::EventKind::Modify(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_files_is_no_change_but_writing_renaming_and_swapping_are() {
        use notify::event::{AccessKind, CreateKind, DataChange, MetadataKind, ModifyKind};
        use notify::EventKind;
        for (kind, change) in [
            (EventKind::Access(AccessKind::Any), false),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
                false,
            ),
            (EventKind::Modify(ModifyKind::Data(DataChange::Any)), true),
            (
                EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To)),
                true,
            ),
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Remove(notify::event::RemoveKind::Any), true),
        ] {
            assert_eq!(is_change(&kind), change, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_burst_of_changes_is_one_change_and_other_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("weir-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("weir.yaml");
        std::fs::write(&file, "a").expect("write");
        let mut watch = DirectoryWatch::start(
            std::slice::from_ref(&dir),
            |p| p.file_name().is_some_and(|n| n == "weir.yaml"),
            "test files",
        )
        .expect("watch");
        std::fs::write(dir.join("other"), "x").expect("write");
        for i in 0..5 {
            std::fs::write(&file, format!("b{i}")).expect("write");
        }
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("a change in time")
            .expect("watching");
        // The burst settled into one change; the other file never counted.
        assert!(
            tokio::time::timeout(SETTLE * 2, watch.changed())
                .await
                .is_err(),
            "no second change"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
