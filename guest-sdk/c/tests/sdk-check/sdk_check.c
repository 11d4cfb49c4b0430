/* Exercises the C SDK end to end under `weir test` (see tests/run):
 * typed Map values, raw state and scans, config parsing, headers, logging,
 * rejects, traps and a custom session window folded by weir_reduce and
 * weir_merge. Emits one line per check as `key=...` outputs. */
#include <stdlib.h>
#include <string.h>
#include <weir.h>

static weir_window cat;
static double factor = 1.0;
static bool flag;

const char *weir_init(const weir_config *c) {
    const char *err;
    if (weir_config_f64(c, "factor", &factor, &err) < 0) return err;
    if (weir_config_bool(c, "flag", &flag, &err) < 0) return err;
    weir_window_spec s = weir_session(5);
    s.aggregation = WEIR_CUSTOM;
    s.emit = WEIR_EMIT_ON_UPDATE;
    return weir_window_define("cat", &s, &cat);
}

static void line(weir_out *out, const char *what, weir_bytes v) {
    weir_emit(out, &(weir_output){.key = weir_str(what), .value = v});
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    const char *text = weir_record_value_text(r);
    if (!text) return weir_reject(out, "not text");
    if (strcmp(text, "reject") == 0) {
        line(out, "discarded", WEIR_LIT("x"));
        weir_state_set(WEIR_LIT("discarded"), WEIR_LIT("x"));
        return weir_reject(out, "rejected at offset %lld", (long long)r->offset);
    }
    if (strcmp(text, "trap") == 0) abort();
    if (strcmp(text, "fatal") == 0) return weir_fatal(out, "fatal at offset %lld", (long long)r->offset);

    weir_map m = weir_map_new("m");
    weir_bytes key = r->key.ptr ? r->key : WEIR_LIT("");
    uint64_t n;
    if (weir_map_add_u64(m, key, 1, &n) < 0) return weir_reject(out, "%s", weir_last_error());
    line(out, "count", weir_str(weir_format("%llu", (unsigned long long)n)));

    weir_map t = weir_map_new("typed");
    int64_t i;
    double d;
    bool b;
    weir_bytes s, j;
    weir_map_set_i64(t, WEIR_LIT("i"), -42);
    weir_map_set_f64(t, WEIR_LIT("f"), 2.5 * factor);
    weir_map_set_str(t, WEIR_LIT("s"), weir_str("h\xc3\xa9llo \"q\"\n\x01"));
    weir_map_set_bool(t, WEIR_LIT("b"), !flag);
    if (weir_map_get_i64(t, WEIR_LIT("i"), &i) != 1 || weir_map_get_f64(t, WEIR_LIT("f"), &d) != 1 ||
        weir_map_get_str(t, WEIR_LIT("s"), &s) != 1 || weir_map_get_bool(t, WEIR_LIT("b"), &b) != 1) {
        return weir_reject(out, "typed map: %s", weir_last_error());
    }
    weir_map_get_json(t, WEIR_LIT("s"), &j);
    line(out, "typed", weir_str(weir_format("%lld %g %.*s %d %.*s", (long long)i, d, (int)s.len, (const char *)s.ptr,
                                            b, (int)j.len, (const char *)j.ptr)));
    weir_map_get_json(t, WEIR_LIT("f"), &j);
    line(out, "f-json", j);
    if (weir_map_get_u64(t, WEIR_LIT("i"), &n) != -1) return weir_reject(out, "-42 read as u64");
    line(out, "u64-error", weir_str(weir_last_error()));

    /* Raw state, a prefix scan and a range. */
    weir_state_set(weir_bytes_of(weir_format("raw:%s", text), 4 + strlen(text)), r->key);
    weir_state_set_ttl(WEIR_LIT("ttl"), WEIR_LIT("v"), 1000);
    size_t count = 0, bytes = 0;
    weir_scan sc = weir_scan_prefix(WEIR_LIT("raw:"));
    weir_entry e;
    while (weir_scan_next(&sc, &e)) count++, bytes += e.key.len;
    line(out, "scan", weir_str(weir_format("%zu entries %zu key bytes", count, bytes)));
    weir_entry *es;
    weir_bytes end = WEIR_LIT("raw;");
    size_t nr = weir_state_range(WEIR_LIT("raw:"), &end, 2, &es);
    line(out, "range", weir_str(weir_format("%zu first=%.*s", nr, nr ? (int)es[0].key.len : 0,
                                            nr ? (const char *)es[0].key.ptr : "")));
    size_t mc = 0;
    weir_scan ms = weir_map_scan(m);
    while (weir_map_scan_next(m, &ms, &e)) mc++;
    line(out, "map-keys", weir_str(weir_format("%zu", mc)));
    line(out, "discarded-state", weir_state_get(WEIR_LIT("discarded"), &s) ? WEIR_LIT("present") : WEIR_LIT("absent"));

    const weir_header *h = weir_record_header(r, "h");
    line(out, "header", h ? (h->value.ptr ? h->value : WEIR_LIT("(null)")) : WEIR_LIT("(none)"));
    weir_emit(out, &(weir_output){.key = WEIR_LIT("meta"), .topic = "side",
                                  .value = weir_str(weir_format("%s/%d@%lld ts=%lld", r->topic, (int)r->partition,
                                                                (long long)r->offset, (long long)r->timestamp)),
                                  .has_timestamp = true, .timestamp = 7});
    weir_info("processed offset %lld", (long long)r->offset);
    weir_add_custom_to_window_at(out, cat, WEIR_LIT("all"), r->timestamp, r->value);
    return WEIR_OK;
}

weir_bytes weir_reduce(weir_window w, weir_bytes key, weir_bytes acc, const weir_bytes *values, size_t count) {
    size_t len = acc.ptr ? acc.len : 0;
    for (size_t i = 0; i < count; i++) len += 1 + values[i].len;
    uint8_t *buf = weir_tmp_alloc(len);
    size_t n = 0;
    if (acc.ptr) memcpy(buf, acc.ptr, acc.len), n = acc.len;
    for (size_t i = 0; i < count; i++) {
        buf[n++] = '+';
        memcpy(buf + n, values[i].ptr, values[i].len);
        n += values[i].len;
    }
    return weir_bytes_of(buf, n);
}

weir_bytes weir_merge(weir_window w, weir_bytes key, weir_bytes a, weir_bytes b) {
    return weir_bytes_of(weir_format("%.*s|%.*s", (int)a.len, (const char *)a.ptr, (int)b.len, (const char *)b.ptr),
                         a.len + 1 + b.len);
}

weir_status weir_on_window(const weir_window_result *w, weir_out *out) {
    weir_emit(out, &(weir_output){.key = w->key,
                                  .value = weir_str(weir_format("[%lld,%lld] n=%llu %.*s%s", (long long)w->start,
                                                                (long long)w->end, (unsigned long long)w->count,
                                                                (int)w->custom.len, (const char *)w->custom.ptr,
                                                                w->closed ? " closed" : ""))});
    return WEIR_OK;
}
