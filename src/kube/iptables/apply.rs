//! Running `iptables-save` and `iptables-restore`: finding the tools of the chosen backend,
//! feeding them the decided script, and turning their failures into messages a user can act
//! on (a missing package, a missing capability).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::backend::{self, Backend, Choice};

/// Why the rules could not be read or written.
#[derive(Debug)]
pub enum Error {
    /// No iptables tool for the backend is installed.
    NotFound {
        /// The tool looked for.
        tool: String,
    },
    /// The kernel refused: not root, or without NET_ADMIN and NET_RAW.
    Permission {
        /// The tool that was refused.
        tool: String,
    },
    /// The tool ran and failed.
    Failed {
        /// The tool.
        tool: String,
        /// What it said.
        stderr: String,
    },
    /// The tool could not be started or fed.
    Io {
        /// The tool.
        tool: String,
        /// The error.
        error: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { tool } => {
                write!(f, "{tool} not found; install the iptables package")
            }
            Error::Permission { tool } => write!(
                f,
                "{tool}: permission denied; run as root or with the NET_ADMIN and NET_RAW capabilities"
            ),
            Error::Failed { tool, stderr } => write!(f, "{tool} failed: {}", stderr.trim()),
            Error::Io { tool, error } => write!(f, "{tool}: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// The save and restore tools of one backend, found on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The backend they drive.
    pub backend: Backend,
    save: PathBuf,
    restore: PathBuf,
}

impl Tools {
    /// The tools for `choice`: `iptables-{nft,legacy}-{save,restore}`, or the plain
    /// `iptables-save`/`iptables-restore` when those are the backend asked for (distributions
    /// that install only one).
    pub fn find(choice: Choice) -> Result<Tools, Error> {
        let backend = match choice {
            Choice::Nft => Backend::Nft,
            Choice::Legacy => Backend::Legacy,
            Choice::Auto => detect()?,
        };
        let specific = (
            find_on_path(&backend.tool("save")),
            find_on_path(&backend.tool("restore")),
        );
        if let (Some(save), Some(restore)) = specific {
            return Ok(Tools {
                backend,
                save,
                restore,
            });
        }
        let plain = (
            find_on_path("iptables-save"),
            find_on_path("iptables-restore"),
        );
        match plain {
            (Some(save), Some(restore))
                if version_of(&restore).and_then(|v| backend::from_version(&v))
                    == Some(backend) =>
            {
                Ok(Tools {
                    backend,
                    save,
                    restore,
                })
            }
            _ => Err(Error::NotFound {
                tool: backend.tool("restore"),
            }),
        }
    }

    /// The nat table as `iptables-save -t nat` prints it.
    pub fn save_nat(&self) -> Result<String, Error> {
        let tool = display(&self.save);
        let out = Command::new(&self.save)
            .args(["-t", "nat"])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Error::Io {
                tool: tool.clone(),
                error,
            })?;
        if !out.status.success() {
            return Err(failure(tool, &out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies `script` with `iptables-restore --noflush`: one transaction, and the tables'
    /// other chains and rules stay as they are.
    pub fn restore(&self, script: &str) -> Result<(), Error> {
        let tool = display(&self.restore);
        let io = |error| Error::Io {
            tool: tool.clone(),
            error,
        };
        let mut child = Command::new(&self.restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(io)?;
        }
        let out = child.wait_with_output().map_err(io)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(tool, &out.stderr))
        }
    }
}

/// `--backend auto`: the backend holding more nat rules, else what `iptables` is, else nft.
/// The legacy tool is asked only when the legacy kernel tables exist in this namespace
/// (`/proc/net/ip_tables_names`), since merely asking it creates them.
fn detect() -> Result<Backend, Error> {
    let rules = |backend: Backend| -> usize {
        find_on_path(&backend.tool("save"))
            .and_then(|save| {
                Command::new(save)
                    .args(["-t", "nat"])
                    .stderr(Stdio::null())
                    .output()
                    .ok()
            })
            .filter(|out| out.status.success())
            .map_or(0, |out| {
                backend::rule_count(&String::from_utf8_lossy(&out.stdout))
            })
    };
    let legacy_in_use = std::fs::read_to_string("/proc/net/ip_tables_names")
        .is_ok_and(|names| !names.trim().is_empty());
    let legacy = if legacy_in_use {
        rules(Backend::Legacy)
    } else {
        0
    };
    let nft = rules(Backend::Nft);
    let version = ["iptables", "iptables-restore"]
        .iter()
        .find_map(|t| find_on_path(t))
        .and_then(|t| version_of(&t))
        .and_then(|v| backend::from_version(&v));
    let none_installed = [Backend::Nft, Backend::Legacy]
        .iter()
        .all(|b| find_on_path(&b.tool("restore")).is_none())
        && find_on_path("iptables-restore").is_none();
    if none_installed {
        return Err(Error::NotFound {
            tool: "iptables-restore".to_string(),
        });
    }
    Ok(backend::choose(nft, legacy, version))
}

/// What `tool --version` prints.
fn version_of(tool: &Path) -> Option<String> {
    let out = Command::new(tool)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first executable file called `name` in a `PATH` directory (and the sbin directories,
/// which a non-root user's `PATH` often lacks).
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn display(tool: &Path) -> String {
    tool.file_name().map_or_else(
        || tool.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// A failed run, told apart: a refusal for lack of privilege reads as one.
fn failure(tool: String, stderr: &[u8]) -> Error {
    let stderr = String::from_utf8_lossy(stderr).into_owned();
    if is_permission_denied(&stderr) {
        Error::Permission { tool }
    } else {
        Error::Failed { tool, stderr }
    }
}

/// Whether iptables' message means "not privileged" (both backends word it this way).
fn is_permission_denied(stderr: &str) -> bool {
    stderr.contains("Permission denied") || stderr.contains("must be root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_lack_of_privilege_name_the_capabilities() {
        let nft = "iptables-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: \
                   Permission denied (you must be root)\n";
        let legacy = "iptables-restore v1.8.7 (legacy): iptables-restore: unable to initialize \
                      table 'nat'\n\nError occurred at line: 1\nPermission denied (you must be root)\n";
        for stderr in [nft, legacy] {
            let e = failure("iptables-restore".to_string(), stderr.as_bytes());
            assert_eq!(
                e.to_string(),
                "iptables-restore: permission denied; run as root or with the NET_ADMIN and \
                 NET_RAW capabilities"
            );
        }
    }

    #[test]
    fn other_failures_carry_the_tools_words() {
        let e = failure(
            "iptables-restore".to_string(),
            b"iptables-restore: line 3 failed\n",
        );
        assert_eq!(
            e.to_string(),
            "iptables-restore failed: iptables-restore: line 3 failed"
        );
    }

    #[test]
    fn a_missing_tool_says_which_package_to_install() {
        let e = Error::NotFound {
            tool: "iptables-restore".to_string(),
        };
        assert_eq!(
            e.to_string(),
            "iptables-restore not found; install the iptables package"
        );
    }
}
