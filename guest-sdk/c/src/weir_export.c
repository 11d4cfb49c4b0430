/*
 * weir_export.c -- glue between the bindings that `wit-bindgen c` generates
 * for `weir:transform/plugin@0.2.1` (plugin.h, built at build time) and
 * the plugin's hooks: decodes columnar input batches (metadata packed as in
 * wit/0.2/types.wit) into weir_record values, packs output batches, turns
 * WEIR_REJECT / WEIR_FATAL into rejects / errors, and wraps the log,
 * state, tables, windows and timers imports.
 *
 * (Over 400 lines: all glue to the generated bindings in one file, so the
 * memory rules of the boundary are kept in one place.)
 */
#include "plugin.h"
#include "weir_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

/* A malloc'd copy for the host (it frees it in post-return). */
static plugin_string_t host_string(weir_bytes b) {
    b = weir__utf8_lossy(b);
    plugin_string_t s = {NULL, b.len};
    if (b.len) {
        s.ptr = xrealloc(NULL, b.len);
        memcpy(s.ptr, b.ptr, b.len);
    }
    return s;
}

static plugin_list_u8_t borrow_list(weir_bytes b) {
    return (plugin_list_u8_t){(uint8_t *)(b.ptr ? b.ptr : (const uint8_t *)""), b.len};
}

/* Moves a list the host allocated into scratch memory. */
static weir_bytes adopt_list(plugin_list_u8_t *l) {
    weir_bytes b = weir_bytes_dup(weir_bytes_of(l->ptr, l->len));
    plugin_list_u8_free(l);
    return b;
}

static weir_bytes span_bytes(const plugin_list_u8_t *data, weir_transform_types_span_t s) {
    return weir_bytes_of(data->ptr + s.start, s.len);
}

/* The packed lists: entry sizes and the packed `none`. */
enum { RECORD = 40, HEADER = 16 };
#define NONE UINT32_MAX
#define KEEP_TIMESTAMP INT64_MIN

static uint32_t u32_at(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* wasm32 is little-endian, as the layout */
    return v;
}

static int64_t i64_at(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The bytes a packed (start, len) pair names in `data`; null for `none`. */
static weir_bytes packed_bytes(const plugin_list_u8_t *data, const uint8_t *pair) {
    uint32_t len = u32_at(pair + 4);
    return len == NONE ? WEIR_NULL : weir_bytes_of(data->ptr + u32_at(pair), len);
}

/* ------------------------------------------------------------- emitter */

#define VEC(T) struct { T *ptr; size_t len, cap; }
#define PUSH(v, x)                                                                   \
    do {                                                                             \
        if ((v).len == (v).cap) {                                                    \
            (v).cap = (v).cap ? (v).cap * 2 : 16;                                    \
            (v).ptr = xrealloc((v).ptr, (v).cap * sizeof *(v).ptr);                  \
        }                                                                            \
        (v).ptr[(v).len++] = (x);                                                    \
    } while (0)

typedef VEC(uint8_t) byte_vec;

struct weir_out {
    byte_vec data;
    byte_vec records; /* packed */
    byte_vec headers; /* packed */
    VEC(plugin_string_t) topics;
    VEC(weir_transform_types_reject_t) rejects;
    VEC(weir_transform_types_window_add_t) adds;
    uint32_t source;
    int64_t timestamp;
    size_t mark_data, mark_records, mark_headers, mark_adds;
    const char *message; /* of weir_reject / weir_fatal, in scratch */
};

static void out_begin(weir_out *o, uint32_t source, int64_t timestamp) {
    o->source = source;
    o->timestamp = timestamp;
    o->mark_data = o->data.len;
    o->mark_records = o->records.len;
    o->mark_headers = o->headers.len;
    o->mark_adds = o->adds.len;
    o->message = NULL;
}

static void out_reject(weir_out *o) {
    o->data.len = o->mark_data;
    o->records.len = o->mark_records;
    o->headers.len = o->mark_headers;
    o->adds.len = o->mark_adds;
    const char *m = o->message ? o->message : "record rejected";
    PUSH(o->rejects, ((weir_transform_types_reject_t){o->source, host_string(weir_str(m))}));
}

static void out_free(weir_out *o) {
    free(o->data.ptr);
    free(o->records.ptr);
    free(o->headers.ptr);
    for (size_t i = 0; i < o->topics.len; i++) free(o->topics.ptr[i].ptr);
    free(o->topics.ptr);
    for (size_t i = 0; i < o->rejects.len; i++) free(o->rejects.ptr[i].message.ptr);
    free(o->rejects.ptr);
    free(o->adds.ptr);
}

#define LIST(v) {(v).len ? (v).ptr : NULL, (v).len}

/* Hands the columns to the host, which frees them after copying. */
static void out_finish(weir_out *o, weir_transform_types_output_batch_t *ret) {
    if (!o->data.len) free(o->data.ptr), o->data.ptr = NULL;
    if (!o->records.len) free(o->records.ptr), o->records.ptr = NULL;
    if (!o->headers.len) free(o->headers.ptr), o->headers.ptr = NULL;
    if (!o->topics.len) free(o->topics.ptr), o->topics.ptr = NULL;
    if (!o->rejects.len) free(o->rejects.ptr), o->rejects.ptr = NULL;
    if (!o->adds.len) free(o->adds.ptr), o->adds.ptr = NULL;
    *ret = (weir_transform_types_output_batch_t){
        .data = {o->data.ptr, o->data.len},
        .records = {o->records.ptr, o->records.len},
        .headers = {o->headers.ptr, o->headers.len},
        .topics = {o->topics.ptr, o->topics.len},
        .rejects = {o->rejects.ptr, o->rejects.len},
        .window_adds = {o->adds.ptr, o->adds.len},
    };
}

static weir_transform_types_span_t push_bytes(weir_out *o, weir_bytes b) {
    uint32_t start = (uint32_t)o->data.len;
    if (b.len) {
        if (o->data.len + b.len > o->data.cap) {
            size_t cap = o->data.cap ? o->data.cap * 2 : 1024;
            while (cap < o->data.len + b.len) cap *= 2;
            o->data.ptr = xrealloc(o->data.ptr, cap);
            o->data.cap = cap;
        }
        memcpy(o->data.ptr + o->data.len, b.ptr, b.len);
        o->data.len += b.len;
    }
    return (weir_transform_types_span_t){start, (uint32_t)b.len};
}

/* Appends `n` bytes of `p` to a packed list. */
static void pack(byte_vec *v, const void *p, size_t n) {
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        while (cap < v->len + n) cap *= 2;
        v->ptr = xrealloc(v->ptr, cap);
        v->cap = cap;
    }
    memcpy(v->ptr + v->len, p, n);
    v->len += n;
}

/* `b` placed in the data buffer, as a packed (start, len) pair. */
static void pack_bytes(uint32_t pair[2], weir_out *o, weir_bytes b) {
    if (!b.ptr) {
        pair[0] = 0, pair[1] = NONE;
        return;
    }
    weir_transform_types_span_t s = push_bytes(o, b);
    pair[0] = s.start, pair[1] = s.len;
}

static uint32_t topic_index(weir_out *o, const char *topic) {
    weir_bytes t = weir__utf8_lossy(weir_str(topic));
    for (size_t i = 0; i < o->topics.len; i++) {
        if (o->topics.ptr[i].len == t.len && memcmp(o->topics.ptr[i].ptr, t.ptr, t.len) == 0) return (uint32_t)i;
    }
    PUSH(o->topics, host_string(t));
    return (uint32_t)(o->topics.len - 1);
}

void weir_emit(weir_out *o, const weir_output *output) {
    /* source, topic, key (start, len), value (start, len), headers (first, count) */
    uint32_t rec[8] = {o->source, output->topic ? topic_index(o, output->topic) : NONE};
    pack_bytes(rec + 2, o, output->key);
    pack_bytes(rec + 4, o, output->value);
    rec[6] = (uint32_t)(o->headers.len / HEADER);
    rec[7] = (uint32_t)output->header_count;
    for (size_t i = 0; i < output->header_count; i++) {
        const weir_header *h = &output->headers[i];
        uint32_t packed[4];
        pack_bytes(packed, o, h->name.ptr ? weir__utf8_lossy(h->name) : WEIR_LIT(""));
        pack_bytes(packed + 2, o, h->value);
        pack(&o->headers, packed, sizeof packed);
    }
    int64_t timestamp = output->has_timestamp ? output->timestamp : KEEP_TIMESTAMP;
    pack(&o->records, rec, sizeof rec);
    pack(&o->records, &timestamp, sizeof timestamp);
}

void weir_forward(weir_out *o, const weir_record *r) {
    weir_emit(o, &(weir_output){.key = r->key, .value = r->value, .headers = r->headers,
                                .header_count = r->header_count});
}

int64_t weir_out_timestamp(const weir_out *o) { return o->timestamp; }

weir_status weir_reject(weir_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    o->message = weir_vformat(fmt, ap);
    va_end(ap);
    return WEIR_REJECT;
}

weir_status weir_fatal(weir_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    o->message = weir_vformat(fmt, ap);
    va_end(ap);
    return WEIR_FATAL;
}

void weir_add_to_window(weir_out *o, weir_window w, weir_bytes key, double number) {
    weir_add_to_window_at(o, w, key, o->timestamp, number);
}

void weir_add_to_window_at(weir_out *o, weir_window w, weir_bytes key, int64_t timestamp, double number) {
    weir_transform_types_window_add_t add = {
        .window = w.id, .source = o->source, .key = push_bytes(o, key), .timestamp = timestamp, .number = number};
    PUSH(o->adds, add);
}

void weir_add_custom_to_window_at(weir_out *o, weir_window w, weir_bytes key, int64_t timestamp, weir_bytes value) {
    weir_transform_types_window_add_t add = {.window = w.id, .source = o->source, .key = push_bytes(o, key),
                                             .timestamp = timestamp};
    add.custom = (weir_transform_types_option_span_t){true, push_bytes(o, value.ptr ? value : WEIR_LIT(""))};
    PUSH(o->adds, add);
}

/* ------------------------------------------------------------- records */

const weir_header *weir_record_header(const weir_record *r, const char *name) {
    for (size_t i = 0; i < r->header_count; i++) {
        if (weir_bytes_eq_str(r->headers[i].name, name)) return &r->headers[i];
    }
    return NULL;
}

static const char *text_of(weir_bytes b) {
    return b.ptr && weir_utf8_valid(b) ? weir_cstr(b) : NULL;
}

const char *weir_record_key_text(const weir_record *r) { return text_of(r->key); }
const char *weir_record_value_text(const weir_record *r) { return text_of(r->value); }

/* --------------------------------------------------------------- hooks */

/* Logs a fixed UTF-8 message (no printf, so plugins that never format
 * anything do not link it). */
static void log_plain(weir_level level, const char *message) {
    plugin_string_t s = {(uint8_t *)message, strlen(message)};
    weir_transform_log_log((weir_transform_log_level_t)level, &s);
}

__attribute__((weak)) const char *weir_init(const weir_config *config) {
    (void)config;
    return NULL;
}

__attribute__((weak)) weir_status weir_on_window(const weir_window_result *result, weir_out *out) {
    (void)result, (void)out;
    return WEIR_OK;
}

__attribute__((weak)) weir_status weir_on_timer(const weir_timer *timer, weir_out *out) {
    (void)timer, (void)out;
    return WEIR_OK;
}

__attribute__((weak)) weir_bytes weir_reduce(weir_window w, weir_bytes key, weir_bytes acc, const weir_bytes *values,
                                             size_t count) {
    (void)key, (void)acc, (void)values, (void)count;
    log_plain(WEIR_ERROR, "a window uses a custom aggregation but the plugin does not define weir_reduce");
    abort();
}

__attribute__((weak)) weir_bytes weir_merge(weir_window w, weir_bytes key, weir_bytes a, weir_bytes b) {
    (void)key, (void)a, (void)b;
    log_plain(WEIR_ERROR, "a window uses a custom session aggregation but the plugin does not define weir_merge");
    abort();
}

/* ------------------------------------------------------------- config */

struct weir_config {
    size_t len;
    const char **keys, **values;
};

static weir_config config; /* lives as long as the instance */

static char *owned_cstr(plugin_string_t s) {
    char *c = xrealloc(NULL, s.len + 1);
    if (s.len) memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    return c;
}

const char *weir_config_get(const weir_config *c, const char *key) {
    for (size_t i = c->len; i-- > 0;) {
        if (strcmp(c->keys[i], key) == 0) return c->values[i];
    }
    return NULL;
}

size_t weir_config_len(const weir_config *c) { return c->len; }

void weir_config_entry(const weir_config *c, size_t i, const char **key, const char **value) {
    *key = c->keys[i];
    *value = c->values[i];
}

const char *weir_config_require(const weir_config *c, const char *key, const char **err) {
    const char *v = weir_config_get(c, key);
    if (!v) *err = weir_format("config `%s` is required", key);
    return v;
}

static int config_fail(const char *key, const char *v, const char *reason, const char **err) {
    *err = weir_format("config `%s` = `%s`: %s", key, v, reason);
    return -1;
}

static int config_int(const weir_config *c, const char *key, bool is_signed, uint64_t *mag, bool *neg,
                      const char **err) {
    const char *v = weir_config_get(c, key);
    if (!v) return 0;
    const char *e = weir__parse_int(weir__trim(weir_str(v)), is_signed, mag, neg);
    return e ? config_fail(key, v, e, err) : 1;
}

int weir_config_u64(const weir_config *c, const char *key, uint64_t *value, const char **err) {
    uint64_t m;
    bool neg;
    int rc = config_int(c, key, false, &m, &neg, err);
    if (rc == 1) *value = m;
    return rc;
}

int weir_config_i64(const weir_config *c, const char *key, int64_t *value, const char **err) {
    uint64_t m;
    bool neg;
    int rc = config_int(c, key, true, &m, &neg, err);
    if (rc == 1) *value = neg ? (int64_t)(0 - m) : (int64_t)m;
    return rc;
}

int weir_config_f64(const weir_config *c, const char *key, double *value, const char **err) {
    const char *v = weir_config_get(c, key);
    if (!v) return 0;
    const char *e = weir__parse_f64(weir__trim(weir_str(v)), value);
    return e ? config_fail(key, v, e, err) : 1;
}

int weir_config_bool(const weir_config *c, const char *key, bool *value, const char **err) {
    const char *v = weir_config_get(c, key);
    if (!v) return 0;
    weir_bytes t = weir__trim(weir_str(v));
    if (weir_bytes_eq(t, WEIR_LIT("true"))) {
        *value = true;
    } else if (weir_bytes_eq(t, WEIR_LIT("false"))) {
        *value = false;
    } else {
        return config_fail(key, v, "provided string was not `true` or `false`", err);
    }
    return 1;
}

/* -------------------------------------------------------------- exports */

bool exports_weir_transform_handler_init(plugin_list_tuple2_string_string_t *cfg, plugin_string_t *err) {
    config.len = cfg->len;
    config.keys = xrealloc(NULL, cfg->len * sizeof(char *));
    config.values = xrealloc(NULL, cfg->len * sizeof(char *));
    for (size_t i = 0; i < cfg->len; i++) {
        config.keys[i] = owned_cstr(cfg->ptr[i].f0);
        config.values[i] = owned_cstr(cfg->ptr[i].f1);
    }
    plugin_list_tuple2_string_string_free(cfg);
    const char *e = weir_init(&config);
    if (e) *err = host_string(weir_str(e));
    weir__tmp_reset();
    return e == NULL;
}

/* One item's outcome (a record, window result or timer, begun at `mark`):
 * a reject discards what the item emitted; a fatal error ends the call with
 * its message (returns false). */
static bool item_done(weir_out *out, weir_status st, weir__tmp_mark_t mark, plugin_string_t *err) {
    if (st == WEIR_FATAL) {
        *err = host_string(weir_str(out->message ? out->message : "fatal error"));
        return false;
    }
    if (st != WEIR_OK) out_reject(out);
    weir__tmp_release(mark);
    weir__last_error = NULL;
    return true;
}

/* Ends a call: hands the outputs to the host, or drops them when it failed. */
static bool call_done(weir_out *out, bool ok, weir_transform_types_output_batch_t *ret) {
    weir__tmp_reset();
    if (!ok) {
        out_free(out);
        return false;
    }
    out_finish(out, ret);
    return true;
}

bool exports_weir_transform_handler_process(weir_transform_types_input_batch_t *batch,
                                            weir_transform_types_output_batch_t *ret, plugin_string_t *err) {
    weir_out out = {0};
    const plugin_list_u8_t *data = &batch->data;
    size_t header_count = batch->headers.len / HEADER;
    weir_header *headers = weir_tmp_alloc(header_count * sizeof *headers);
    for (size_t i = 0; i < header_count; i++) {
        const uint8_t *h = batch->headers.ptr + i * HEADER;
        headers[i].name = packed_bytes(data, h);
        headers[i].value = packed_bytes(data, h + 8);
    }
    const char *topic = weir_cstr(weir_bytes_of(batch->topic.ptr, batch->topic.len));
    bool ok = true;
    for (size_t i = 0; i < batch->records.len / RECORD; i++) {
        const uint8_t *ir = batch->records.ptr + i * RECORD;
        weir_record r = {
            .key = packed_bytes(data, ir + 16),
            .value = packed_bytes(data, ir + 24),
            .headers = headers + u32_at(ir + 32),
            .header_count = u32_at(ir + 36),
            .timestamp = i64_at(ir + 8),
            .offset = i64_at(ir),
            .topic = topic,
            .partition = batch->partition,
        };
        weir__tmp_mark_t mark = weir__tmp_mark();
        out_begin(&out, (uint32_t)i, r.timestamp);
        if (!item_done(&out, weir_process(&r, &out), mark, err)) {
            ok = false;
            break;
        }
    }
    weir_transform_types_input_batch_free(batch);
    return call_done(&out, ok, ret);
}

bool exports_weir_transform_handler_on_window(weir_transform_windows_window_batch_t *batch,
                                              weir_transform_types_output_batch_t *ret, plugin_string_t *err) {
    weir_out out = {0};
    const plugin_list_u8_t *data = &batch->data;
    bool ok = true;
    for (size_t i = 0; i < batch->results.len; i++) {
        const weir_transform_windows_window_result_t *wr = &batch->results.ptr[i];
        weir_window_result r = {
            .window = {wr->window},
            .key = span_bytes(data, wr->key),
            .start = wr->start,
            .end = wr->end,
            .count = wr->count,
            .value = wr->value,
            .custom = wr->custom.is_some ? span_bytes(data, wr->custom.val) : WEIR_NULL,
            .closed = wr->closed,
        };
        weir__tmp_mark_t mark = weir__tmp_mark();
        out_begin(&out, (uint32_t)i, wr->end);
        if (!item_done(&out, weir_on_window(&r, &out), mark, err)) {
            ok = false;
            break;
        }
    }
    weir_transform_windows_window_batch_free(batch);
    return call_done(&out, ok, ret);
}

bool exports_weir_transform_handler_on_timer(weir_transform_timers_timer_batch_t *batch,
                                             weir_transform_types_output_batch_t *ret, plugin_string_t *err) {
    weir_out out = {0};
    const plugin_list_u8_t *data = &batch->data;
    bool ok = true;
    for (size_t i = 0; i < batch->timers.len; i++) {
        const weir_transform_timers_fired_t *f = &batch->timers.ptr[i];
        weir_timer t = {
            .key = span_bytes(data, f->key),
            .at = f->at,
            .clock = f->clock == WEIR_TRANSFORM_TIMERS_CLOCK_WALL_CLOCK ? WEIR_WALL_CLOCK : WEIR_EVENT_TIME,
        };
        weir__tmp_mark_t mark = weir__tmp_mark();
        out_begin(&out, (uint32_t)i, f->at);
        if (!item_done(&out, weir_on_timer(&t, &out), mark, err)) {
            ok = false;
            break;
        }
    }
    weir_transform_timers_timer_batch_free(batch);
    return call_done(&out, ok, ret);
}

static plugin_list_u8_t host_list(weir_bytes b) {
    plugin_list_u8_t l = {NULL, b.len};
    if (b.len) {
        l.ptr = xrealloc(NULL, b.len);
        memcpy(l.ptr, b.ptr, b.len);
    }
    return l;
}

void exports_weir_transform_handler_reduce(uint32_t window, plugin_list_u8_t *key, plugin_list_u8_t *acc,
                                           plugin_list_list_u8_t *values, plugin_list_u8_t *ret) {
    weir_bytes *vals = weir_tmp_alloc(values->len * sizeof *vals);
    for (size_t i = 0; i < values->len; i++) vals[i] = weir_bytes_of(values->ptr[i].ptr, values->ptr[i].len);
    weir_bytes a = acc ? weir_bytes_of(acc->ptr, acc->len) : WEIR_NULL;
    *ret = host_list(weir_reduce((weir_window){window}, weir_bytes_of(key->ptr, key->len), a, vals, values->len));
    weir__tmp_reset();
    plugin_list_u8_free(key);
    if (acc) plugin_list_u8_free(acc);
    plugin_list_list_u8_free(values);
}

void exports_weir_transform_handler_merge(uint32_t window, plugin_list_u8_t *key, plugin_list_u8_t *a,
                                          plugin_list_u8_t *b, plugin_list_u8_t *ret) {
    *ret = host_list(weir_merge((weir_window){window}, weir_bytes_of(key->ptr, key->len), weir_bytes_of(a->ptr, a->len),
                                weir_bytes_of(b->ptr, b->len)));
    weir__tmp_reset();
    plugin_list_u8_free(key);
    plugin_list_u8_free(a);
    plugin_list_u8_free(b);
}

/* ----------------------------------------------------------------- log */

void weir_log(weir_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    weir__tmp_mark_t mark = weir__tmp_mark();
    weir_bytes msg = weir__utf8_lossy(weir_str(weir_vformat(fmt, ap)));
    va_end(ap);
    plugin_string_t s = {(uint8_t *)msg.ptr, msg.len};
    weir_transform_log_log((weir_transform_log_level_t)level, &s);
    weir__tmp_release(mark);
}

/* -------------------------------------------------------------- timers */

static weir_transform_timers_clock_t wit_clock(weir_clock clock) {
    return clock == WEIR_WALL_CLOCK ? WEIR_TRANSFORM_TIMERS_CLOCK_WALL_CLOCK : WEIR_TRANSFORM_TIMERS_CLOCK_EVENT_TIME;
}

void weir_timer_set(weir_bytes key, int64_t at, weir_clock clock) {
    plugin_list_u8_t k = borrow_list(key);
    weir_transform_timers_set(&k, at, wit_clock(clock));
}

void weir_timer_cancel(weir_bytes key) {
    plugin_list_u8_t k = borrow_list(key);
    weir_transform_timers_cancel(&k);
}

bool weir_timer_get(weir_bytes key, int64_t *at, weir_clock *clock) {
    plugin_list_u8_t k = borrow_list(key);
    weir_transform_timers_tuple2_s64_clock_t t;
    if (!weir_transform_timers_get(&k, &t)) return false;
    *at = t.f0;
    *clock = t.f1 == WEIR_TRANSFORM_TIMERS_CLOCK_WALL_CLOCK ? WEIR_WALL_CLOCK : WEIR_EVENT_TIME;
    return true;
}

int64_t weir_timer_now(weir_clock clock) { return weir_transform_timers_now(wit_clock(clock)); }

/* --------------------------------------------------------------- state */

bool weir_state_get(weir_bytes key, weir_bytes *value) {
    plugin_list_u8_t k = borrow_list(key), v;
    if (!weir_transform_state_get(&k, &v)) return false;
    *value = adopt_list(&v);
    return true;
}

void weir_state_set(weir_bytes key, weir_bytes value) {
    plugin_list_u8_t k = borrow_list(key), v = borrow_list(value);
    weir_transform_state_set(&k, &v, NULL);
}

void weir_state_set_ttl(weir_bytes key, weir_bytes value, uint64_t ttl_ms) {
    plugin_list_u8_t k = borrow_list(key), v = borrow_list(value);
    weir_transform_state_set(&k, &v, &ttl_ms);
}

void weir_state_delete(weir_bytes key) {
    plugin_list_u8_t k = borrow_list(key);
    weir_transform_state_delete(&k);
}

/* Moves `n` entries the host allocated (state's or a table's list) into
 * scratch memory. */
static size_t adopt_entries(weir_transform_state_entry_t *ptr, size_t n, weir_entry **entries) {
    weir_entry *e = weir_tmp_alloc(n * sizeof *e);
    for (size_t i = 0; i < n; i++) {
        e[i].key = adopt_list(&ptr[i].key);
        e[i].value = adopt_list(&ptr[i].value);
    }
    if (n) free(ptr);
    *entries = e;
    return n;
}

size_t weir_state_range(weir_bytes start, const weir_bytes *end, uint32_t limit, weir_entry **entries) {
    plugin_list_u8_t s = borrow_list(start), e;
    if (end) e = borrow_list(*end);
    weir_transform_state_list_entry_t l;
    weir_transform_state_range(&s, end ? &e : NULL, limit, &l);
    return adopt_entries(l.ptr, l.len, entries);
}

size_t weir_state_prefix(weir_bytes prefix, const weir_bytes *after, uint32_t limit, weir_entry **entries) {
    plugin_list_u8_t p = borrow_list(prefix), a;
    if (after) a = borrow_list(*after);
    weir_transform_state_list_entry_t l;
    weir_transform_state_prefix(&p, after ? &a : NULL, limit, &l);
    return adopt_entries(l.ptr, l.len, entries);
}

#define SCAN_PAGE 256

weir_scan weir_scan_prefix(weir_bytes prefix) {
    return (weir_scan){.prefix = weir_bytes_dup(prefix.ptr ? prefix : WEIR_LIT(""))};
}

/* Fetches a page of a prefix scan: of state, or of a table. Passed as a
 * function, so that state scans do not link (and import) tables. */
typedef size_t (*scan_page_fn)(const weir_table *table, weir_bytes prefix, const weir_bytes *after, uint32_t limit,
                               weir_entry **entries);

static size_t state_page(const weir_table *table, weir_bytes prefix, const weir_bytes *after, uint32_t limit,
                         weir_entry **entries) {
    (void)table;
    return weir_state_prefix(prefix, after, limit, entries);
}

static bool scan_next(scan_page_fn page, const weir_table *table, weir_scan *s, weir_entry *entry) {
    for (;;) {
        if (s->pos < s->len) {
            *entry = s->page[s->pos++];
            s->after = entry->key;
            return true;
        }
        if (s->done) return false;
        s->len = page(table, s->prefix, s->started ? &s->after : NULL, SCAN_PAGE, &s->page);
        s->pos = 0;
        s->started = true;
        s->done = s->len < SCAN_PAGE;
    }
}

bool weir_scan_next(weir_scan *s, weir_entry *entry) { return scan_next(state_page, NULL, s, entry); }

/* ----------------------------------------------------------------- Map */

weir_bytes weir_map_key(weir_map m, weir_bytes key) {
    size_t n = strlen(m.name);
    uint8_t *k = weir_tmp_alloc(n + 1 + key.len);
    memcpy(k, m.name, n);
    k[n] = 0;
    if (key.len) memcpy(k + n + 1, key.ptr, key.len);
    return (weir_bytes){k, n + 1 + key.len};
}

int weir_map_get_json(weir_map m, weir_bytes key, weir_bytes *json) {
    return weir_state_get(weir_map_key(m, key), json) ? 1 : 0;
}

void weir_map_set_json(weir_map m, weir_bytes key, weir_bytes json) { weir_state_set(weir_map_key(m, key), json); }

void weir_map_delete(weir_map m, weir_bytes key) { weir_state_delete(weir_map_key(m, key)); }

int weir_map_get_u64(weir_map m, weir_bytes key, uint64_t *value) {
    weir_bytes j;
    if (!weir_map_get_json(m, key, &j)) return 0;
    uint64_t mag;
    bool neg;
    if (weir__json_int(j, false, &mag, &neg) < 0) return -1;
    *value = mag;
    return 1;
}

int weir_map_get_i64(weir_map m, weir_bytes key, int64_t *value) {
    weir_bytes j;
    if (!weir_map_get_json(m, key, &j)) return 0;
    uint64_t mag;
    bool neg;
    if (weir__json_int(j, true, &mag, &neg) < 0) return -1;
    *value = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 1;
}

void weir_map_set_u64(weir_map m, weir_bytes key, uint64_t value) {
    char buf[21];
    weir_map_set_json(m, key, weir_bytes_of(buf, weir_fmt_u64(value, buf)));
}

void weir_map_set_i64(weir_map m, weir_bytes key, int64_t value) {
    char buf[21];
    weir_map_set_json(m, key, weir_bytes_of(buf, weir_fmt_i64(value, buf)));
}

int weir_map_get_f64(weir_map m, weir_bytes key, double *value) {
    weir_bytes j;
    if (!weir_map_get_json(m, key, &j)) return 0;
    return weir__json_f64(j, value);
}

void weir_map_set_f64(weir_map m, weir_bytes key, double value) { weir_map_set_json(m, key, weir_json_f64(value)); }

int weir_map_get_bool(weir_map m, weir_bytes key, bool *value) {
    weir_bytes j;
    if (!weir_map_get_json(m, key, &j)) return 0;
    return weir__json_bool(j, value);
}

void weir_map_set_bool(weir_map m, weir_bytes key, bool value) {
    weir_map_set_json(m, key, value ? WEIR_LIT("true") : WEIR_LIT("false"));
}

int weir_map_get_str(weir_map m, weir_bytes key, weir_bytes *value) {
    weir_bytes j;
    if (!weir_map_get_json(m, key, &j)) return 0;
    return weir__json_string(j, value);
}

void weir_map_set_str(weir_map m, weir_bytes key, weir_bytes utf8) {
    weir_map_set_json(m, key, weir_json_str(weir__utf8_lossy(utf8)));
}

int weir_map_add_u64(weir_map m, weir_bytes key, uint64_t delta, uint64_t *value) {
    weir_bytes k = weir_map_key(m, key), j;
    uint64_t n = 0;
    if (weir_state_get(k, &j)) {
        bool neg;
        if (weir__json_int(j, false, &n, &neg) < 0) return -1;
    }
    if (n > UINT64_MAX - delta) {
        weir__last_error = "u64 counter overflow";
        return -1;
    }
    n += delta;
    char buf[21];
    weir_state_set(k, weir_bytes_of(buf, weir_fmt_u64(n, buf)));
    *value = n;
    return 1;
}

weir_scan weir_map_scan(weir_map m) { return weir_scan_prefix(weir_map_key(m, WEIR_LIT(""))); }

bool weir_map_scan_next(weir_map m, weir_scan *s, weir_entry *entry) {
    if (!weir_scan_next(s, entry)) return false;
    size_t n = strlen(m.name) + 1;
    entry->key = weir_bytes_of(entry->key.ptr + n, entry->key.len - n);
    return true;
}

/* -------------------------------------------------------------- tables */

const char *weir_table_open(const char *name, weir_table *table) {
    weir_bytes n = weir__utf8_lossy(weir_str(name));
    plugin_string_t pn = {(uint8_t *)n.ptr, n.len};
    uint32_t id;
    plugin_string_t err;
    if (!weir_transform_tables_open(&pn, &id, &err)) {
        char *e = weir_cstr(weir_bytes_of(err.ptr, err.len));
        plugin_string_free(&err);
        return e;
    }
    table->id = id;
    return NULL;
}

bool weir_table_get(weir_table table, weir_bytes key, weir_bytes *value) {
    plugin_list_u8_t k = borrow_list(key), v;
    if (!weir_transform_tables_get(table.id, &k, &v)) return false;
    *value = adopt_list(&v);
    return true;
}

size_t weir_table_range(weir_table table, weir_bytes start, const weir_bytes *end, uint32_t limit,
                        weir_entry **entries) {
    plugin_list_u8_t s = borrow_list(start), e;
    if (end) e = borrow_list(*end);
    weir_transform_tables_list_entry_t l;
    weir_transform_tables_range(table.id, &s, end ? &e : NULL, limit, &l);
    return adopt_entries(l.ptr, l.len, entries);
}

size_t weir_table_prefix(weir_table table, weir_bytes prefix, const weir_bytes *after, uint32_t limit,
                         weir_entry **entries) {
    plugin_list_u8_t p = borrow_list(prefix), a;
    if (after) a = borrow_list(*after);
    weir_transform_tables_list_entry_t l;
    weir_transform_tables_prefix(table.id, &p, after ? &a : NULL, limit, &l);
    return adopt_entries(l.ptr, l.len, entries);
}

weir_scan weir_table_scan_prefix(weir_table table, weir_bytes prefix) {
    (void)table;
    return weir_scan_prefix(prefix);
}

static size_t table_page(const weir_table *table, weir_bytes prefix, const weir_bytes *after, uint32_t limit,
                         weir_entry **entries) {
    return weir_table_prefix(*table, prefix, after, limit, entries);
}

bool weir_table_scan_next(weir_table table, weir_scan *s, weir_entry *entry) {
    return scan_next(table_page, &table, s, entry);
}

/* ------------------------------------------------------------- windows */

static weir_window_spec spec_of(weir_window_kind kind, uint64_t size, uint64_t advance) {
    return (weir_window_spec){.kind = kind, .size_ms = size, .advance_ms = advance,
                              .aggregation = WEIR_COUNT, .emit = WEIR_EMIT_ON_CLOSE};
}

weir_window_spec weir_tumbling(uint64_t size_ms) { return spec_of(WEIR_TUMBLING, size_ms, size_ms); }
weir_window_spec weir_hopping(uint64_t size_ms, uint64_t advance_ms) { return spec_of(WEIR_HOPPING, size_ms, advance_ms); }
weir_window_spec weir_sliding(uint64_t max_difference_ms) { return spec_of(WEIR_SLIDING, max_difference_ms, 0); }
weir_window_spec weir_session(uint64_t gap_ms) { return spec_of(WEIR_SESSION, gap_ms, 0); }
weir_window_spec weir_count_tumbling(uint64_t count) { return spec_of(WEIR_COUNT_WINDOW, count, count); }
weir_window_spec weir_count_hopping(uint64_t count, uint64_t step) { return spec_of(WEIR_COUNT_WINDOW, count, step); }

const char *weir_window_define(const char *name, const weir_window_spec *spec, weir_window *window) {
    weir_transform_windows_window_spec_t s = {0};
    switch (spec->kind) {
    case WEIR_TUMBLING:
        s.kind.tag = WEIR_TRANSFORM_WINDOWS_WINDOW_KIND_TUMBLING;
        s.kind.val.tumbling = spec->size_ms;
        break;
    case WEIR_HOPPING:
        s.kind.tag = WEIR_TRANSFORM_WINDOWS_WINDOW_KIND_HOPPING;
        s.kind.val.hopping = (weir_transform_windows_hopping_t){spec->size_ms, spec->advance_ms};
        break;
    case WEIR_SLIDING:
        s.kind.tag = WEIR_TRANSFORM_WINDOWS_WINDOW_KIND_SLIDING;
        s.kind.val.sliding = spec->size_ms;
        break;
    case WEIR_SESSION:
        s.kind.tag = WEIR_TRANSFORM_WINDOWS_WINDOW_KIND_SESSION;
        s.kind.val.session = spec->size_ms;
        break;
    case WEIR_COUNT_WINDOW:
        s.kind.tag = WEIR_TRANSFORM_WINDOWS_WINDOW_KIND_COUNT_HOPPING;
        s.kind.val.count_hopping = (weir_transform_windows_count_hopping_t){spec->size_ms, spec->advance_ms};
        break;
    default:
        return "weir_window_define: unknown window kind";
    }
    s.grace_ms = spec->grace_ms;
    static const uint8_t aggs[] = {
        [WEIR_COUNT] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_COUNT, [WEIR_SUM] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_SUM,
        [WEIR_MIN] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_MIN,     [WEIR_MAX] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_MAX,
        [WEIR_MEAN] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_MEAN,   [WEIR_CUSTOM] = WEIR_TRANSFORM_WINDOWS_AGGREGATION_CUSTOM,
    };
    if ((unsigned)spec->aggregation > WEIR_CUSTOM) return "weir_window_define: unknown aggregation";
    s.aggregation = aggs[spec->aggregation];
    s.emit = spec->emit == WEIR_EMIT_ON_UPDATE ? WEIR_TRANSFORM_WINDOWS_EMIT_MODE_ON_UPDATE
                                               : WEIR_TRANSFORM_WINDOWS_EMIT_MODE_ON_CLOSE;
    s.idle_close_ms = (plugin_option_u64_t){spec->has_idle_close_ms, spec->idle_close_ms};
    weir_bytes n = weir__utf8_lossy(weir_str(name));
    plugin_string_t pn = {(uint8_t *)n.ptr, n.len};
    uint32_t id;
    plugin_string_t err;
    if (!weir_transform_windows_define(&pn, &s, &id, &err)) {
        char *e = weir_cstr(weir_bytes_of(err.ptr, err.len));
        plugin_string_free(&err);
        return e;
    }
    window->id = id;
    return NULL;
}
