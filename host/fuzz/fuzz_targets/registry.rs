#![no_main]
libfuzzer_sys::fuzz_target!(|input: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)| {
    let (spec, key, chunks, payload) = input;
    weir::fuzz::registry_spec(&spec);
    weir::fuzz::registry_module(&key, &chunks, &payload);
});
