/* Inactivity alert with timers (the same plugin as the Rust one): after each
 * record of a key, (re)sets the key's timer `gap_ms` later, so it fires only
 * once the key has been silent that long. Config `clock`: `event-time`
 * (default) or `wall-clock`. An alert's value is
 * {"records":N,"last":T,"alerts":A}: the key's records since its last alert,
 * its last record's timestamp and its alerts so far. */
#include <weir.h>

#include <stdlib.h>
#include <string.h>

static int64_t gap_ms = 60000;
static weir_clock clock_of = WEIR_EVENT_TIME;

const char *weir_init(const weir_config *config) {
    const char *err;
    if (weir_config_i64(config, "gap_ms", &gap_ms, &err) < 0) return err;
    const char *clock = weir_config_get(config, "clock");
    if (!clock || strcmp(clock, "event-time") == 0) clock_of = WEIR_EVENT_TIME;
    else if (strcmp(clock, "wall-clock") == 0) clock_of = WEIR_WALL_CLOCK;
    else return weir_format("clock must be `event-time` or `wall-clock`, not `%s`", clock);
    return NULL;
}

/* `prefix` followed by `key`, in scratch memory. */
static weir_bytes prefixed(const char *prefix, weir_bytes key) {
    size_t n = strlen(prefix);
    uint8_t *k = weir_tmp_alloc(n + key.len);
    memcpy(k, prefix, n);
    if (key.len) memcpy(k + n, key.ptr, key.len);
    return weir_bytes_of(k, n + key.len);
}

static int64_t read_i64(weir_bytes key) {
    weir_bytes v;
    if (!weir_state_get(key, &v)) return 0;
    return strtoll(weir_cstr(v), NULL, 10);
}

static void write_i64(weir_bytes key, int64_t n) {
    weir_state_set(key, weir_str(weir_format("%lld", (long long)n)));
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    if (!r->key.ptr) return weir_reject(out, "record has no key");
    weir_bytes n = prefixed("n:", r->key);
    write_i64(n, read_i64(n) + 1);
    write_i64(prefixed("t:", r->key), r->timestamp);
    int64_t base = clock_of == WEIR_EVENT_TIME ? r->timestamp : weir_timer_now(WEIR_WALL_CLOCK);
    weir_timer_set(r->key, base + gap_ms, clock_of);
    return WEIR_OK;
}

weir_status weir_on_timer(const weir_timer *t, weir_out *out) {
    weir_bytes n = prefixed("n:", t->key), a = prefixed("a:", t->key);
    int64_t records = read_i64(n), alerts = read_i64(a) + 1, last = read_i64(prefixed("t:", t->key));
    weir_state_delete(n);
    write_i64(a, alerts);
    const char *value = weir_format("{\"records\":%lld,\"last\":%lld,\"alerts\":%lld}", (long long)records, (long long)last,
                                    (long long)alerts);
    weir_emit(out, &(weir_output){.key = t->key, .value = weir_str(value)});
    return WEIR_OK;
}
