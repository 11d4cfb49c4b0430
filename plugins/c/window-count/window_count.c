/* Counts records per key in windows computed by the host.
 *
 * Config: `window` = `tumbling` | `hopping` | `sliding` | `session` |
 * `count-tumbling` | `count-hopping`, `size_ms` (tumbling, hopping,
 * sliding), `advance_ms` (hopping), `gap_ms` (session), `count` and `step`
 * (count windows), `grace_ms` (default 0), `emit` = `final` (default) | `update`,
 * and optionally `idle_close_ms`. Each result becomes a record keyed by the
 * record key with value `{"start":S,"end":E,"count":N}`; `end` is exclusive
 * for tumbling and hopping windows and the inclusive last instant for
 * sliding and session windows, as Kafka Streams reports them. In update
 * mode a session merged into another is reported with count 0. */
#include <string.h>
#include <weir.h>

static weir_window window;

/* A required duration for this kind of window. */
static const char *ms(const weir_config *c, const char *key, uint64_t *value) {
    const char *err;
    switch (weir_config_u64(c, key, value, &err)) {
    case 1: return NULL;
    case 0: return weir_format("config `%s` is required for this window", key);
    default: return err;
    }
}

const char *weir_init(const weir_config *c) {
    const char *err;
    const char *kind = weir_config_require(c, "window", &err);
    if (!kind) return err;
    uint64_t size = 0, advance = 0;
    weir_window_spec spec;
    if (strcmp(kind, "tumbling") == 0) {
        if ((err = ms(c, "size_ms", &size))) return err;
        spec = weir_tumbling(size);
    } else if (strcmp(kind, "hopping") == 0) {
        if ((err = ms(c, "size_ms", &size)) || (err = ms(c, "advance_ms", &advance))) return err;
        spec = weir_hopping(size, advance);
    } else if (strcmp(kind, "sliding") == 0) {
        if ((err = ms(c, "size_ms", &size))) return err;
        spec = weir_sliding(size);
    } else if (strcmp(kind, "session") == 0) {
        if ((err = ms(c, "gap_ms", &size))) return err;
        spec = weir_session(size);
    } else if (strcmp(kind, "count-tumbling") == 0) {
        if ((err = ms(c, "count", &size))) return err;
        spec = weir_count_tumbling(size);
    } else if (strcmp(kind, "count-hopping") == 0) {
        if ((err = ms(c, "count", &size)) || (err = ms(c, "step", &advance))) return err;
        spec = weir_count_hopping(size, advance);
    } else {
        return weir_format("config `window` = `%s`: expected tumbling, hopping, sliding, session, count-tumbling or count-hopping", kind);
    }
    if (weir_config_u64(c, "grace_ms", &spec.grace_ms, &err) < 0) return err;
    spec.aggregation = WEIR_COUNT;
    const char *emit = weir_config_get(c, "emit");
    if (!emit || strcmp(emit, "final") == 0) {
        spec.emit = WEIR_EMIT_ON_CLOSE;
    } else if (strcmp(emit, "update") == 0) {
        spec.emit = WEIR_EMIT_ON_UPDATE;
    } else {
        return weir_format("config `emit` = `%s`: expected final or update", emit);
    }
    switch (weir_config_u64(c, "idle_close_ms", &spec.idle_close_ms, &err)) {
    case -1: return err;
    case 1: spec.has_idle_close_ms = true; break;
    }
    return weir_window_define("count", &spec, &window);
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_add_to_window(out, window, r->key.ptr ? r->key : WEIR_LIT(""), 1.0);
    return WEIR_OK;
}

weir_status weir_on_window(const weir_window_result *w, weir_out *out) {
    char *value = weir_format("{\"start\":%lld,\"end\":%lld,\"count\":%llu}", (long long)w->start,
                              (long long)w->end, (unsigned long long)w->count);
    weir_emit(out, &(weir_output){.key = w->key, .value = weir_str(value)});
    return WEIR_OK;
}
