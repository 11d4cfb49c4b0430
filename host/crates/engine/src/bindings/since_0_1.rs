//! What every world version since 0.1 shares, expanded in each version's
//! module.

/// What world versions share unchanged since 0.1 (the log, state and
/// windows interfaces, window results and additions, rejections): host
/// trait implementations and conversions, written once and expanded in each
/// version's module, where `log`, `state`, `windows` and `types` name that
/// version's generated modules. Window kinds a version added are passed in
/// as further match arms of `window_spec`.
macro_rules! same_since_0_1 {
    ($($kind:pat => $abi:expr),* $(,)?) => {
        impl log::Host for LogCapability<'_> {
            fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Trace => LogLevel::Trace,
                    log::Level::Debug => LogLevel::Debug,
                    log::Level::Info => LogLevel::Info,
                    log::Level::Warn => LogLevel::Warn,
                    log::Level::Error => LogLevel::Error,
                };
                self.write(level, &message)
            }
        }

        fn entries(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<state::Entry> {
            entries.into_iter().map(|(key, value)| state::Entry { key, value }).collect()
        }

        impl state::Host for StateCapability<'_> {
            fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
                StateCapability::get(self, &key)
            }

            fn set(&mut self, key: Vec<u8>, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
                StateCapability::set(self, &key, &value, ttl_ms)
            }

            fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
                StateCapability::delete(self, &key)
            }

            fn range(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
                StateCapability::range(self, &start, end.as_deref(), limit).map(entries)
            }

            fn prefix(&mut self, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Vec<state::Entry>> {
                StateCapability::prefix(self, &prefix, after.as_deref(), limit).map(entries)
            }
        }

        impl windows::Host for WindowsCapability<'_> {
            fn define(&mut self, name: String, spec: windows::WindowSpec) -> wasmtime::Result<Result<u32, String>> {
                Ok(WindowsCapability::define(self, &name, window_spec(spec)))
            }
        }

        fn span(s: abi::Span) -> types::Span {
            types::Span { start: s.start, len: s.len }
        }

        fn from_span(s: types::Span) -> abi::Span {
            abi::Span { start: s.start, len: s.len }
        }

        fn reject(r: types::Reject) -> abi::Reject {
            abi::Reject { source: r.source, message: r.message }
        }

        fn window_add(a: types::WindowAdd) -> abi::WindowAdd {
            abi::WindowAdd {
                window: a.window,
                source: a.source,
                key: from_span(a.key),
                timestamp: a.timestamp,
                number: a.number,
                custom: a.custom.map(from_span),
            }
        }

        /// `b` as this version's window batch, its results listed in `results`.
        fn window_batch<'a>(results: &'a mut Vec<windows::WindowResult>, b: &'a abi::WindowBatch) -> windows::WindowBatch<'a> {
            results.clear();
            results.extend(b.results.iter().map(|r| windows::WindowResult {
                window: r.window,
                key: span(r.key),
                start: r.start,
                end: r.end,
                count: r.count,
                value: r.value,
                custom: r.custom.map(span),
                closed: r.closed,
            }));
            windows::WindowBatch { data: &b.data, results }
        }

        fn window_spec(s: windows::WindowSpec) -> abi::WindowSpec {
            abi::WindowSpec {
                kind: match s.kind {
                    windows::WindowKind::Tumbling(ms) => abi::WindowKind::Tumbling(ms),
                    windows::WindowKind::Hopping(h) => abi::WindowKind::Hopping(abi::Hopping { size_ms: h.size_ms, advance_ms: h.advance_ms }),
                    windows::WindowKind::Sliding(ms) => abi::WindowKind::Sliding(ms),
                    windows::WindowKind::Session(ms) => abi::WindowKind::Session(ms),
                    $($kind => $abi,)*
                },
                grace_ms: s.grace_ms,
                aggregation: match s.aggregation {
                    windows::Aggregation::Count => abi::Aggregation::Count,
                    windows::Aggregation::Sum => abi::Aggregation::Sum,
                    windows::Aggregation::Min => abi::Aggregation::Min,
                    windows::Aggregation::Max => abi::Aggregation::Max,
                    windows::Aggregation::Mean => abi::Aggregation::Mean,
                    windows::Aggregation::Custom => abi::Aggregation::Custom,
                },
                emit: match s.emit {
                    windows::EmitMode::OnUpdate => abi::EmitMode::OnUpdate,
                    windows::EmitMode::OnClose => abi::EmitMode::OnClose,
                },
                idle_close_ms: s.idle_close_ms,
            }
        }
    };
}
pub(super) use same_since_0_1;
