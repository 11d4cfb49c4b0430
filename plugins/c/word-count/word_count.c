/* Word count with keyed state: splits each value into words and, per word,
 * emits the word as key and its running count (decimal text) as value.
 * A word is a maximal run of ASCII letters, ASCII digits and non-ASCII
 * characters; ASCII letters are lower-cased, every other character is kept
 * as it is (the definition every language's plugin shares; see the Rust
 * one). In valid UTF-8 every byte of a non-ASCII character is >= 0x80, so
 * the split works on bytes. Counts live in the state Map "count" as JSON
 * integers, the layout of the Rust word-count, so either plugin can take
 * over the other's state. */
#include <weir.h>

static bool is_word_byte(uint8_t b) {
    return b >= 0x80 || (b >= '0' && b <= '9') || ((b | 32) >= 'a' && (b | 32) <= 'z');
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_bytes text = r->value;
    if (!text.ptr || !weir_utf8_valid(text)) return weir_reject(out, "value is not UTF-8 text");
    weir_map counts = weir_map_new("count");
    size_t pos = 0;
    while (pos < text.len) {
        if (!is_word_byte(text.ptr[pos])) {
            pos++;
            continue;
        }
        size_t start = pos;
        while (pos < text.len && is_word_byte(text.ptr[pos])) pos++;
        weir_bytes word = weir_ascii_lower(weir_bytes_of(text.ptr + start, pos - start));
        uint64_t n;
        if (weir_map_add_u64(counts, word, 1, &n) < 0) return weir_reject(out, "%s", weir_last_error());
        char digits[21];
        size_t len = weir_fmt_u64(n, digits);
        weir_emit(out, &(weir_output){.key = word, .value = weir_bytes_of(digits, len)});
    }
    return WEIR_OK;
}
