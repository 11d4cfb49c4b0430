/* {{name}}: a Weir transform in C. Forwards every record with its value
 * upper-cased (ASCII), keeping key, headers and timestamp.
 * API: {{sdk}}/c/include/weir.h.
 * Build: ./build   (= {{sdk}}/c/build . {{name}}.wasm)
 * Try:   weir test {{name}}.wasm -i sample.jsonl */
#include <weir.h>

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_emit(out, &(weir_output){
        .key = r->key,
        .value = weir_ascii_upper(r->value),
        .headers = r->headers,
        .header_count = r->header_count,
    });
    return WEIR_OK;
}
