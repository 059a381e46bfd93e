//! Standard `process_*` metrics read from /proc on each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Reports CPU time, memory, file descriptors and start time of this process, the figures
/// every Prometheus dashboard expects from a job.
#[derive(Debug)]
pub struct ProcessCollector {
    start_time_seconds: f64,
}

impl ProcessCollector {
    /// Captures the process start time now (close enough: called at startup).
    pub fn new() -> Self {
        let start_time_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ProcessCollector { start_time_seconds }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// Figures parsed from /proc/self.
struct ProcStat {
    cpu_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
}

fn read_proc_stat() -> Option<ProcStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime 15, vsize 23, rss 24.
    let ticks = 100.0; // USER_HZ is 100 on every Linux ABI weir targets.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let vsize: f64 = fields.get(20)?.parse().ok()?;
    let rss_pages: f64 = fields.get(21)?.parse().ok()?;
    Some(ProcStat {
        cpu_seconds: (utime + stime) / ticks,
        virtual_bytes: vsize,
        resident_bytes: rss_pages * 4096.0,
    })
}

fn open_fds() -> Option<i64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
}

fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = read_proc_stat() {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            let rss = ConstGauge::new(stat.resident_bytes);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?)?;
            let vsz = ConstGauge::new(stat.virtual_bytes);
            vsz.encode(encoder.encode_descriptor(
                "process_virtual_memory",
                "Virtual memory size in bytes",
                Some(&Unit::Bytes),
                vsz.metric_type(),
            )?)?;
        }
        if let Some(n) = open_fds() {
            let g = ConstGauge::new(n);
            g.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        if let Some(n) = max_fds() {
            let g = ConstGauge::new(n);
            g.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(self.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parses_on_linux() {
        let s = read_proc_stat().expect("/proc/self/stat readable");
        assert!(s.resident_bytes > 0.0);
        assert!(open_fds().unwrap_or(0) > 0);
        assert!(max_fds().unwrap_or(0) > 0);
    }
}
