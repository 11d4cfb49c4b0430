//! Every decoder of bytes that come from outside the host, as a function
//! that must return whatever the bytes: records given to `weir test`,
//! registry records, changelog records, and stores restored from
//! changelogs. The tests below run each on thousands of random inputs in
//! the suite; `host/fuzz` runs them under cargo-fuzz for as long as one
//! likes (`cargo +nightly fuzz run NAME`, by hand).

use std::collections::BTreeMap;

/// A JSON Lines input of `weir test`.
pub fn jsonl(data: &[u8]) {
    let _ = weir_engine::offline::jsonl::parse(&String::from_utf8_lossy(data));
}

/// A record of the registry's deployments topic, decided against nothing
/// and against a current spec of the same id.
pub fn registry_spec(data: &[u8]) {
    let quotas = BTreeMap::from([("t".to_owned(), 1)]);
    let mut specs = BTreeMap::new();
    if let Ok(spec) = crate::registry::admit(&specs, &quotas, "t.n", data) {
        specs.insert("t.n".to_owned(), spec);
        let _ = crate::registry::admit(&specs, &quotas, "t.n", data);
    }
}

/// A record of the registry's modules topic.
pub fn registry_module(key: &[u8], chunks: &[u8], payload: &[u8]) {
    let key = String::from_utf8_lossy(key);
    let _ = crate::registry::ModuleRecord::decode(
        &key,
        &[(b"weir.chunks".as_slice(), Some(chunks))],
        Some(payload),
    );
    let _ = crate::registry::ModuleRecord::decode(&key, &[], None);
}

/// A changelog commit's positions record (and an older changelog's
/// `weir.offsets` header: the same encoding).
pub fn changelog_positions(data: &[u8]) {
    let _ = weir_kafka::changelog::decode_offsets(&String::from_utf8_lossy(data));
}

/// A store holding arbitrary entries (a restore of a damaged or forged
/// changelog): it opens, reads, scans and runs windows.
pub fn store(
    entries: &[(Vec<u8>, Vec<u8>)],
    windows: &[(u8, Vec<u8>, Vec<u8>)],
    values: &[(Vec<u8>, i64, f64)],
) {
    let mut state = weir_state::PartitionState::in_memory();
    let raw: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let _ = state.write_restored(&raw);
    let _ = state.checkpoint();
    for (k, _) in entries {
        let _ = state.get(k);
        let _ = state.get(k.get(1..).unwrap_or_default());
    }
    let _ = state.range(b"", None, 1000, u64::MAX);
    let _ = state.try_state_bytes();
    weir_windows::fuzz_store(windows, values);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn jsonl_lines(data in bytes(300)) {
            super::jsonl(&data);
        }

        #[test]
        fn jsonl_shaped(key in ".{0,8}", ts in any::<i64>(), b64 in "[A-Za-z0-9+/=]{0,12}") {
            super::jsonl(format!(r#"{{"key":{key:?},"timestamp":{ts},"value_b64":"{b64}","headers":{{"h":{{"b64":"{b64}"}}}}}}"#).as_bytes());
        }

        #[test]
        fn registry_specs(data in bytes(400)) {
            super::registry_spec(&data);
        }

        #[test]
        fn registry_modules(key in bytes(100), chunks in bytes(12), payload in bytes(64)) {
            super::registry_module(&key, &chunks, &payload);
        }

        #[test]
        fn registry_module_keys(digest in "[0-9a-f]{64}", index in any::<i64>(), count in any::<i64>()) {
            super::registry_module(format!("{digest}/{index}").as_bytes(), count.to_string().as_bytes(), b"x");
        }

        #[test]
        fn changelog_positions(data in bytes(200)) {
            super::changelog_positions(&data);
        }

        #[test]
        fn stores(
            entries in prop::collection::vec((bytes(24), bytes(48)), 0..12),
            windows in prop::collection::vec((any::<u8>(), bytes(24), bytes(48)), 0..24),
            values in prop::collection::vec((bytes(4), -5_000i64..5_000, any::<f64>()), 0..8),
        ) {
            super::store(&entries, &windows, &values);
        }
    }

    #[test]
    fn a_spec_with_a_path_for_a_module_is_refused() {
        let spec = serde_json::json!({ "tenant": "t", "name": "n", "incarnation": "1", "module": "../../etc", "version": 1, "paused": false, "undeployed": false, "previous_module": null, "rolled_back": null, "updated_at_ms": 0, "deployment": { "inputs": ["t.in"], "output": "t.out" } });
        let refused = crate::registry::admit(
            &Default::default(),
            &Default::default(),
            "t.n",
            spec.to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(refused.1.contains("sha256"), "{refused:?}");
    }
}
