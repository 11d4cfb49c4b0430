/* Stream-stream windowed join, built from state and timers (the same plugin
 * as the Rust one): matches records of two input topics that share a key
 * and lie at most `window_ms` apart in event time (orders with their
 * payments).
 *
 * Config: `left` and `right`, the two topics (default `orders` and
 * `payments`); `window_ms` (default 60000); `join`: `inner` (default),
 * `left` or `outer`.
 *
 * A record with no match waits in state (one per key and side: a later one
 * replaces it) under its side (`l` or `r`) and key, as its timestamp
 * (8 bytes, little-endian) followed by its value, with an event-time timer
 * at its timestamp + `window_ms` + 1. A record of the other side within the
 * window joins it: the output has the key, the value `LEFT;RIGHT` and the
 * later timestamp, and the waiting record and its timer go. When the timer
 * fires, the record expires: a left record is emitted as `LEFT;` under
 * `left` and `outer` joins, a right one as `;RIGHT` under `outer`, with its
 * own timestamp. Records of another topic, and records without a key, are
 * rejected. */
#include <weir.h>

#include <stdlib.h>
#include <string.h>

static const char *left = "orders", *right = "payments";
static int64_t window_ms = 60000;
static bool emit_left, emit_right;

/* Rust's `i64::from_str` (no surrounding whitespace allowed): NULL and *v,
 * or Rust's error message. */
static const char *parse_i64(const char *s, int64_t *v) {
    size_t n = strlen(s), i = 0;
    if (n == 0) return "cannot parse integer from empty string";
    bool neg = s[0] == '-';
    if (s[0] == '+' || s[0] == '-') {
        i = 1;
        if (n == 1) return "invalid digit found in string";
    }
    uint64_t limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1, m = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return "invalid digit found in string";
        uint64_t d = (uint64_t)(s[i] - '0');
        if (m > (limit - d) / 10) {
            return neg ? "number too small to fit in target type" : "number too large to fit in target type";
        }
        m = m * 10 + d;
    }
    *v = neg ? (int64_t)(0 - m) : (int64_t)m;
    return NULL;
}

const char *weir_init(const weir_config *config) {
    const char *l = weir_config_get(config, "left"), *r = weir_config_get(config, "right");
    if (l) left = l;
    if (r) right = r;
    if (strcmp(left, right) == 0) return weir_format("left and right must be different topics, both are `%s`", left);
    const char *w = weir_config_get(config, "window_ms");
    if (w) {
        const char *e = parse_i64(w, &window_ms);
        if (e) return weir_format("window_ms: %s", e);
    }
    if (window_ms < 0) return weir_format("window_ms must not be negative, not %lld", (long long)window_ms);
    const char *join = weir_config_get(config, "join");
    if (!join || strcmp(join, "inner") == 0) emit_left = false, emit_right = false;
    else if (strcmp(join, "left") == 0) emit_left = true, emit_right = false;
    else if (strcmp(join, "outer") == 0) emit_left = true, emit_right = true;
    else return weir_format("join must be `inner`, `left` or `outer`, not `%s`", join);
    return NULL;
}

/* The state and timer key of a waiting record: its side, then its key. */
static weir_bytes waiting(uint8_t side, weir_bytes key) {
    uint8_t *k = weir_tmp_alloc(1 + key.len);
    k[0] = side;
    if (key.len) memcpy(k + 1, key.ptr, key.len);
    return weir_bytes_of(k, 1 + key.len);
}

/* The timestamp and value of a waiting record (8 bytes, little-endian,
 * then the value); traps on anything shorter, as the Rust plugin panics. */
static int64_t decode(weir_bytes stored, weir_bytes *value) {
    if (stored.len < 8) abort();
    uint64_t ts = 0;
    for (int i = 7; i >= 0; i--) ts = ts << 8 | stored.ptr[i];
    *value = weir_bytes_of(stored.ptr + 8, stored.len - 8);
    return (int64_t)ts;
}

/* `a`, `;`, `b` in scratch memory. */
static weir_bytes joined(weir_bytes a, weir_bytes b) {
    uint8_t *v = weir_tmp_alloc(a.len + 1 + b.len);
    if (a.len) memcpy(v, a.ptr, a.len);
    v[a.len] = ';';
    if (b.len) memcpy(v + a.len + 1, b.ptr, b.len);
    return weir_bytes_of(v, a.len + 1 + b.len);
}

/* Wrapping i64 arithmetic, as the Rust plugin's release build. */
static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t wrap_abs_diff(int64_t a, int64_t b) {
    int64_t d = (int64_t)((uint64_t)a - (uint64_t)b);
    return d < 0 ? (int64_t)(0 - (uint64_t)d) : d;
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    uint8_t side, other;
    if (strcmp(r->topic, left) == 0) side = 'l', other = 'r';
    else if (strcmp(r->topic, right) == 0) side = 'r', other = 'l';
    else return weir_reject(out, "topic `%s` is neither left (`%s`) nor right (`%s`)", r->topic, left, right);
    if (!r->key.ptr) return weir_reject(out, "record has no key");
    weir_bytes value = r->value.ptr ? r->value : WEIR_LIT("");
    int64_t ts = r->timestamp;
    weir_bytes other_key = waiting(other, r->key), stored;
    if (weir_state_get(other_key, &stored)) {
        weir_bytes other_value;
        int64_t other_ts = decode(stored, &other_value);
        if (wrap_abs_diff(ts, other_ts) <= window_ms) {
            weir_bytes v = side == 'l' ? joined(value, other_value) : joined(other_value, value);
            weir_emit(out, &(weir_output){.key = r->key, .value = v, .has_timestamp = true,
                                          .timestamp = ts > other_ts ? ts : other_ts});
            weir_state_delete(other_key);
            weir_timer_cancel(other_key);
            return WEIR_OK;
        }
    }
    weir_bytes own = waiting(side, r->key);
    uint8_t *enc = weir_tmp_alloc(8 + value.len);
    for (int i = 0; i < 8; i++) enc[i] = (uint8_t)((uint64_t)ts >> (8 * i));
    if (value.len) memcpy(enc + 8, value.ptr, value.len);
    weir_state_set(own, weir_bytes_of(enc, 8 + value.len));
    weir_timer_set(own, wrap_add(wrap_add(ts, window_ms), 1), WEIR_EVENT_TIME);
    return WEIR_OK;
}

weir_status weir_on_timer(const weir_timer *t, weir_out *out) {
    weir_bytes stored;
    if (!weir_state_get(t->key, &stored)) return WEIR_OK;
    weir_state_delete(t->key);
    weir_bytes value;
    int64_t ts = decode(stored, &value);
    if (t->key.len == 0) abort(); /* a waiting record's key has its side */
    weir_bytes key = weir_bytes_of(t->key.ptr + 1, t->key.len - 1), v;
    if (t->key.ptr[0] == 'l' && emit_left) v = joined(value, WEIR_LIT(""));
    else if (t->key.ptr[0] == 'r' && emit_right) v = joined(WEIR_LIT(""), value);
    else return WEIR_OK;
    weir_emit(out, &(weir_output){.key = key, .value = v, .has_timestamp = true, .timestamp = ts});
    return WEIR_OK;
}
