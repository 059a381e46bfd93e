//! The background writer: requests hand finished lines to a bounded queue and never wait; one
//! thread of its own drains the queue and writes many lines per `write(2)`.
//!
//! A full queue (the writer fell behind, or its output blocks) drops the line and counts it in
//! `weir_access_log_dropped_total` (DESIGN §1: telemetry never blocks the request path). The
//! writer is a thread rather than a task because stderr writes block.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

/// How the queue and its writer are sized.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Lines the queue holds; one more is dropped.
    pub capacity: usize,
    /// Bytes gathered for one write, at most (a longer single line is written alone).
    pub batch_bytes: usize,
    /// How long the writer lets lines gather after the first one wakes it, so that a busy
    /// proxy writes (and wakes the writer) once per interval rather than once per request.
    pub linger: Duration,
}

/// What the queue carries.
#[derive(Debug)]
enum Message {
    /// One complete line, newline included.
    Line(Bytes),
    /// Nothing to write: wakes the writer so that it sees it must stop.
    Wake,
}

/// The request path's end of the queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: SyncSender<Message>,
    dropped: Counter,
}

impl Queue {
    /// Hands `line` to the writer, or drops and counts it if the queue is full or the
    /// writer has stopped. Never waits. Returns whether the line was queued.
    pub fn push(&self, line: Bytes) -> bool {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.inc();
                false
            }
        }
    }
}

/// The owner's end: stops the writer, flushing what it holds.
#[derive(Debug)]
pub struct Writer {
    stop: Arc<AtomicBool>,
    wake: SyncSender<Message>,
    done: Option<oneshot::Receiver<()>>,
}

impl Writer {
    /// Tells the writer to write what is queued and stop, and waits for it at most `bound`
    /// (a blocked stderr must not hold up the exit). Returns whether it finished in time.
    pub async fn shutdown(mut self, bound: Duration) -> bool {
        self.signal_stop();
        match self.done.take() {
            // The writer's end is dropped when it returns, whether or not it said so.
            Some(done) => tokio::time::timeout(bound, done).await.is_ok(),
            None => true,
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        // A full queue means the writer is busy and will look at `stop` when it is drained.
        let _ = self.wake.try_send(Message::Wake);
    }
}

impl Drop for Writer {
    /// Dropped without [`Writer::shutdown`]: the writer still writes what it holds and stops,
    /// unwaited for.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Starts a writer thread that writes to `out`; lines pushed to the returned queue but
/// dropped (queue full, writer stopped, write failed) are counted in `dropped`.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    settings: Settings,
    dropped: Counter,
) -> std::io::Result<(Queue, Writer)> {
    let (tx, rx) = mpsc::sync_channel(settings.capacity.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = oneshot::channel();
    let thread_stop = stop.clone();
    let thread_dropped = dropped.clone();
    std::thread::Builder::new()
        .name("weir-access-log".into())
        .spawn(move || {
            run(rx, out, settings, &thread_stop, &thread_dropped);
            let _ = done_tx.send(());
        })?;
    Ok((
        Queue {
            tx: tx.clone(),
            dropped,
        },
        Writer {
            stop,
            wake: tx,
            done: Some(done_rx),
        },
    ))
}

/// Lines gathered for one write.
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

impl Batch {
    /// Writes the batch in one `write_all`; if that fails the lines are lost and counted.
    fn write(&mut self, out: &mut impl Write, dropped: &Counter) {
        if self.bytes.is_empty() {
            return;
        }
        if out
            .write_all(&self.bytes)
            .and_then(|()| out.flush())
            .is_err()
        {
            dropped.inc_by(self.lines);
        }
        self.bytes.clear();
        self.lines = 0;
    }
}

/// The writer thread: sleep until a line arrives, let more gather, write them in batches,
/// repeat; when told to stop (or when every queue handle is gone), write what is left.
fn run(
    rx: Receiver<Message>,
    mut out: impl Write,
    settings: Settings,
    stop: &AtomicBool,
    dropped: &Counter,
) {
    let mut batch = Batch {
        bytes: Vec::with_capacity(settings.batch_bytes),
        lines: 0,
    };
    loop {
        let mut closed = false;
        match rx.recv() {
            Ok(Message::Line(line)) => {
                if !settings.linger.is_zero() && !stop.load(Ordering::Acquire) {
                    std::thread::sleep(settings.linger);
                }
                add(&mut batch, line, &mut out, settings, dropped);
            }
            Ok(Message::Wake) => {}
            Err(_) => closed = true,
        }
        closed |= drain(&rx, &mut batch, &mut out, settings, dropped);
        if closed {
            batch.write(&mut out, dropped);
            return;
        }
        if stop.load(Ordering::Acquire) {
            // Lines pushed before `stop` was set are visible now, even if the drain above
            // missed them.
            drain(&rx, &mut batch, &mut out, settings, dropped);
            batch.write(&mut out, dropped);
            return;
        }
        batch.write(&mut out, dropped);
    }
}

/// Moves every queued line into batches, writing each batch as it fills. Returns whether
/// every queue handle is gone.
fn drain(
    rx: &Receiver<Message>,
    batch: &mut Batch,
    out: &mut impl Write,
    settings: Settings,
    dropped: &Counter,
) -> bool {
    loop {
        match rx.try_recv() {
            Ok(Message::Line(line)) => add(batch, line, out, settings, dropped),
            Ok(Message::Wake) => {}
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => return true,
        }
    }
}

/// Appends `line`, first writing the batch if the line would overflow it.
fn add(
    batch: &mut Batch,
    line: Bytes,
    out: &mut impl Write,
    settings: Settings,
    dropped: &Counter,
) {
    if !batch.bytes.is_empty() && batch.bytes.len() + line.len() > settings.batch_bytes {
        batch.write(out, dropped);
    }
    batch.bytes.extend_from_slice(&line);
    batch.lines += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Barrier, Mutex};

    /// An output that records each `write` call; optionally its first write waits at a
    /// barrier twice (once to say it has started, once to be let go), to stall the writer.
    #[derive(Clone, Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        stall: Option<Arc<Barrier>>,
        fail: bool,
    }

    impl Recorder {
        fn stalled() -> (Recorder, Arc<Barrier>) {
            let barrier = Arc::new(Barrier::new(2));
            let r = Recorder {
                stall: Some(barrier.clone()),
                ..Recorder::default()
            };
            (r, barrier)
        }

        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().map(|w| w.clone()).unwrap_or_default()
        }

        fn bytes(&self) -> Vec<u8> {
            self.writes().concat()
        }
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some(barrier) = self.stall.take() {
                barrier.wait();
                barrier.wait();
            }
            if self.fail {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            if let Ok(mut w) = self.writes.lock() {
                w.push(buf.to_vec());
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn settings(capacity: usize, batch_bytes: usize) -> Settings {
        Settings {
            capacity,
            batch_bytes,
            linger: Duration::ZERO,
        }
    }

    fn line(i: usize) -> Bytes {
        Bytes::from(format!("line {i:04} .............................\n"))
    }

    #[test]
    fn many_lines_are_written_in_few_batches_in_order() {
        let (tx, rx) = mpsc::sync_channel(1000);
        let lines: Vec<Bytes> = (0..1000).map(line).collect();
        assert_eq!(lines[0].len(), 40);
        for l in &lines {
            tx.try_send(Message::Line(l.clone())).expect("room");
        }
        drop(tx);
        let out = Recorder::default();
        let dropped = Counter::default();
        run(
            rx,
            out.clone(),
            settings(1000, 4000),
            &AtomicBool::new(false),
            &dropped,
        );
        let writes = out.writes();
        assert_eq!(
            writes.len(),
            10,
            "100 lines of 40 bytes per 4000-byte write"
        );
        assert!(writes.iter().all(|w| w.len() == 4000));
        assert_eq!(writes.concat(), lines.concat());
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn a_line_longer_than_a_batch_is_written_alone() {
        let (tx, rx) = mpsc::sync_channel(4);
        for l in [line(0), Bytes::from(vec![b'x'; 100]), line(1)] {
            tx.try_send(Message::Line(l)).expect("room");
        }
        drop(tx);
        let out = Recorder::default();
        let stop = AtomicBool::new(false);
        run(rx, out.clone(), settings(4, 50), &stop, &Counter::default());
        let sizes: Vec<usize> = out.writes().iter().map(Vec::len).collect();
        assert_eq!(sizes, [40, 100, 40]);
    }

    #[tokio::test]
    async fn a_stalled_writer_makes_lines_drop_and_count_never_wait() {
        let (out, barrier) = Recorder::stalled();
        let dropped = Counter::default();
        let (queue, writer) =
            spawn(out.clone(), settings(8, 64 * 1024), dropped.clone()).expect("thread starts");
        assert!(queue.push(line(0)));
        barrier.wait(); // the writer took line 0 and is stuck writing it
        for i in 1..=8 {
            assert!(queue.push(line(i)), "line {i} fits in the queue");
        }
        for i in 9..=11 {
            assert!(!queue.push(line(i)), "line {i} is dropped, not waited for");
        }
        assert_eq!(dropped.get(), 3);
        barrier.wait(); // the output unblocks
        assert!(writer.shutdown(Duration::from_secs(60)).await);
        let writes = out.writes();
        assert_eq!(
            writes.len(),
            2,
            "line 0, then the 8 queued lines in one write"
        );
        assert_eq!(out.bytes(), (0..=8).map(line).collect::<Vec<_>>().concat());
        assert_eq!(dropped.get(), 3);
    }

    #[tokio::test]
    async fn shutdown_writes_every_queued_line_first() {
        let out = Recorder::default();
        let dropped = Counter::default();
        let (queue, writer) =
            spawn(out.clone(), settings(256, 1024), dropped.clone()).expect("thread starts");
        for i in 0..200 {
            assert!(queue.push(line(i)));
        }
        assert!(writer.shutdown(Duration::from_secs(10)).await);
        assert_eq!(out.bytes(), (0..200).map(line).collect::<Vec<_>>().concat());
        assert!(!queue.push(line(200)), "the writer has stopped");
        assert_eq!(
            dropped.get(),
            1,
            "a line after shutdown is counted as dropped"
        );
    }

    // Paused time: the bound passes as soon as the runtime has nothing else to do.
    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_on_a_blocked_output_after_its_bound() {
        let (out, barrier) = Recorder::stalled();
        let (queue, writer) =
            spawn(out.clone(), settings(8, 1024), Counter::default()).expect("thread starts");
        assert!(queue.push(line(0)));
        barrier.wait();
        assert!(queue.push(line(1)));
        let started = tokio::time::Instant::now();
        assert!(!writer.shutdown(Duration::from_secs(1)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        barrier.wait(); // let the thread finish
    }

    #[test]
    fn lines_a_failed_write_loses_are_counted() {
        let (tx, rx) = mpsc::sync_channel(8);
        for i in 0..5 {
            tx.try_send(Message::Line(line(i))).expect("room");
        }
        drop(tx);
        let out = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let dropped = Counter::default();
        run(
            rx,
            out,
            settings(8, 1024),
            &AtomicBool::new(false),
            &dropped,
        );
        assert_eq!(dropped.get(), 5);
    }
}
