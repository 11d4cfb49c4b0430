#![no_main]
libfuzzer_sys::fuzz_target!(|input: (Vec<(Vec<u8>, Vec<u8>)>, Vec<(u8, Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, i64, f64)>)| {
    let (entries, windows, values) = input;
    weir_control::fuzz::store(&entries, &windows, &values);
});
