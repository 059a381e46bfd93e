//! Network namespaces for tests that need a pod's network of their own: iptables rules,
//! transparent redirection, several pods joined by veth pairs. Needs root (CI runs as root);
//! without the right to create a namespace a test fails saying so. Addresses come from
//! 198.51.100.0/24 (a documentation range); every namespace is deleted on drop.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// weir's binary.
pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// A network namespace deleted on drop, on every path out of a test.
pub struct Netns {
    /// The namespace's name (`ip netns`).
    pub name: String,
}

impl Netns {
    /// A new namespace with `lo` up and a veth pair (both ends inside) routing
    /// 198.51.100.0/24, so a connect to a documentation address has a route and reaches the
    /// OUTPUT chain (no `dummy` module is needed).
    pub fn new() -> Netns {
        let ns = Netns::bare();
        for args in [
            "link add weir0 type veth peer name weir1",
            "addr add 198.51.100.1/24 dev weir0",
            "link set weir1 up",
            "link set weir0 up",
        ] {
            ns.ip(args);
        }
        ns
    }

    /// A new namespace with only `lo`, up.
    pub fn bare() -> Netns {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "weir-ipt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip netns add` (install iproute2): {e}"));
        assert!(
            out.status.success(),
            "cannot create network namespace {name}: these tests need root (CAP_SYS_ADMIN and \
             CAP_NET_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip ARGS` in the namespace; panics unless it succeeds.
    pub fn ip(&self, args: &str) {
        let out = self.exec("ip", &args.split(' ').collect::<Vec<_>>());
        assert!(out.status.success(), "ip {args}: {}", stderr(&out));
    }

    /// `PROGRAM ARGS` run inside the namespace.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// `PROGRAM ARGS` started in the namespace in the background, its standard error to
    /// `stderr`, killed on drop.
    pub fn spawn(&self, program: &str, args: &[&str], stderr: Stdio) -> Sidecar {
        let child = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {program}: {e}"));
        Sidecar(child)
    }

    /// Runs `PROGRAM ARGS` inside the namespace to its end.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {program}: {e}"))
    }

    /// `weir init-iptables ARGS` in the namespace; panics unless it succeeds.
    pub fn init_iptables(&self, args: &[&str]) -> String {
        let out = self.exec(WEIR, &[&["init-iptables"], args].concat());
        assert!(
            out.status.success(),
            "weir init-iptables {args:?}: {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The nat table as the backend's `iptables-save` shows it.
    pub fn nat(&self, backend: &str) -> String {
        let out = self.exec(&format!("iptables-{backend}-save"), &["-t", "nat"]);
        assert!(out.status.success(), "iptables-save: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What a client in the namespace reads after asking `GET /live` of `addr` (bash's
    /// /dev/tcp, so nothing but bash is needed); empty when it could not connect in 2 s.
    pub fn ask_live(&self, host: &str, port: u16) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{host}/{port} && printf 'GET /live HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = self.exec("timeout", &["2", "bash", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `weir run` inside the namespace, killed on drop.
pub struct Sidecar(pub Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's standard error, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
