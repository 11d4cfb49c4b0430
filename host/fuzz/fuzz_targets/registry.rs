#![no_main]
libfuzzer_sys::fuzz_target!(|input: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)| {
    let (spec, key, chunks, payload) = input;
    weir_control::fuzz::registry_spec(&spec);
    weir_control::fuzz::registry_module(&key, &chunks, &payload);
});
