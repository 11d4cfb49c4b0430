//! Guest log lines: recorded through `tracing` with the deployment's name,
//! kept (bounded) for operators to read, and rate-limited so a chatty or
//! hostile transform cannot flood the host's log.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use weir_abi::truncate;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    /// Wall-clock time, ms since the Unix epoch.
    pub at_ms: u64,
    pub level: LogLevel,
    pub message: String,
}

const KEEP_LINES: usize = 1_000;
pub const MAX_LINE_BYTES: usize = 4_096;
const LINES_PER_SECOND: u32 = 200;

/// The log of one deployment, shared by all its instances.
pub struct GuestLog {
    deployment: Arc<str>,
    inner: Mutex<Inner>,
}

struct Inner {
    lines: VecDeque<LogLine>,
    window_start: Instant,
    in_window: u32,
    dropped: u64,
}

impl GuestLog {
    pub fn new(deployment: &str) -> Arc<Self> {
        Arc::new(GuestLog {
            deployment: deployment.into(),
            inner: Mutex::new(Inner {
                lines: VecDeque::new(),
                window_start: Instant::now(),
                in_window: 0,
                dropped: 0,
            }),
        })
    }

    pub fn write(&self, level: LogLevel, message: &str) {
        let message = truncate(message, MAX_LINE_BYTES);
        {
            let mut inner = self.inner.lock();
            let now = Instant::now();
            if now.duration_since(inner.window_start) >= Duration::from_secs(1) {
                if inner.dropped > 0 {
                    let dropped = inner.dropped;
                    tracing::warn!(deployment = %self.deployment, dropped, "guest log lines dropped by the rate limit");
                }
                inner.window_start = now;
                inner.in_window = 0;
                inner.dropped = 0;
            }
            if inner.in_window >= LINES_PER_SECOND {
                inner.dropped += 1;
                return;
            }
            inner.in_window += 1;
            if inner.lines.len() == KEEP_LINES {
                inner.lines.pop_front();
            }
            let at_ms = weir_abi::now_ms();
            inner.lines.push_back(LogLine {
                at_ms,
                level,
                message: message.to_owned(),
            });
        }
        let d = &*self.deployment;
        match level {
            LogLevel::Trace => tracing::trace!(target: "weir::guest", deployment = d, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "weir::guest", deployment = d, "{message}"),
            LogLevel::Info => tracing::info!(target: "weir::guest", deployment = d, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "weir::guest", deployment = d, "{message}"),
            LogLevel::Error => tracing::error!(target: "weir::guest", deployment = d, "{message}"),
        }
    }

    /// The latest `n` lines kept, oldest first.
    pub fn recent(&self, n: usize) -> Vec<LogLine> {
        let inner = self.inner.lock();
        inner
            .lines
            .iter()
            .skip(inner.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// The last error a guest reported during the current call (a panic
/// message, a line on stderr): attached to the trap that usually follows.
#[derive(Clone, Default)]
pub struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    pub fn set(&self, message: &str) {
        // Reports are one line; panic messages span two.
        let line = truncate(message, MAX_LINE_BYTES)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        *self.0.lock() = Some(line);
    }

    pub fn take(&self) -> Option<String> {
        self.0.lock().take()
    }
}

/// A guest's WASI stdout or stderr, written to its log line by line.
#[derive(Clone)]
pub struct GuestLogStream {
    log: Arc<GuestLog>,
    level: LogLevel,
    last_error: Option<LastError>,
}

impl GuestLogStream {
    pub fn stdout(log: Arc<GuestLog>) -> Self {
        GuestLogStream {
            log,
            level: LogLevel::Info,
            last_error: None,
        }
    }

    pub fn stderr(log: Arc<GuestLog>, last_error: LastError) -> Self {
        GuestLogStream {
            log,
            level: LogLevel::Warn,
            last_error: Some(last_error),
        }
    }
}

impl IsTerminal for GuestLogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            sink: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            sink: self.clone(),
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    sink: GuestLogStream,
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        self.sink.log.write(self.sink.level, text);
        if let Some(last) = &self.sink.last_error {
            last.set(text);
        }
    }

    /// Splits what the guest wrote into lines, in one pass: a write of a
    /// million newlines costs a million lines (most dropped by the rate
    /// limit), never a million shifts of what follows them.
    fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(pos + 1);
            if self.pending.is_empty() {
                self.emit(line);
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                self.emit(&whole);
            }
            rest = tail;
        }
        self.pending.extend_from_slice(
            &rest[..rest
                .len()
                .min(MAX_LINE_BYTES.saturating_sub(self.pending.len()) + 1)],
        );
        if self.pending.len() > MAX_LINE_BYTES {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest);
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl Pollable for LineWriter {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
