/* Word count with keyed state: splits each value into lower-cased words
 * (runs of letters and digits) and, per word, emits the word as key and its
 * running count (decimal text) as value. Counts live in the state Map
 * "count" as JSON integers, the layout of the Rust word-count, so either
 * plugin can take over the other's state. */
#include <weir.h>

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_bytes text = r->value;
    if (!text.ptr || !weir_utf8_valid(text)) return weir_reject(out, "value is not UTF-8 text");
    weir_map counts = weir_map_new("count");
    size_t pos = 0;
    while (pos < text.len) {
        /* Skip separators, then take a maximal run of alphanumerics. */
        size_t start = pos, next = pos;
        int32_t c = weir_utf8_next(text, &next);
        if (!weir_is_alnum((uint32_t)c)) {
            pos = next;
            continue;
        }
        size_t end = next;
        while (end < text.len) {
            size_t after = end;
            if (!weir_is_alnum((uint32_t)weir_utf8_next(text, &after))) break;
            end = after;
        }
        pos = end;
        weir_bytes word = weir_utf8_to_lower(weir_bytes_of(text.ptr + start, end - start));
        uint64_t n;
        if (weir_map_add_u64(counts, word, 1, &n) < 0) return weir_reject(out, "%s", weir_last_error());
        char digits[21];
        size_t len = weir_fmt_u64(n, digits);
        weir_emit(out, &(weir_output){.key = word, .value = weir_bytes_of(digits, len)});
    }
    return WEIR_OK;
}
