/*
 * weir.h -- write Weir stream transforms in C. (Over 400 lines: the
 * whole C API a plugin author reads, documented, in one header.)
 *
 * A plugin is one or more .c files that include this header and define
 *
 *     weir_status weir_process(const weir_record *record, weir_out *out);
 *
 * and, when needed, any of the optional hooks below (weir_init,
 * weir_on_window, weir_on_timer, weir_reduce, weir_merge).
 * `guest-sdk/c/build DIR OUT.wasm` compiles them with this SDK into a
 * component of the WIT world `weir:transform/plugin@0.2.1`:
 *
 *     #include <weir.h>
 *
 *     weir_status weir_process(const weir_record *r, weir_out *out) {
 *         weir_bytes v = weir_ascii_upper(r->value);   // null stays null
 *         weir_emit(out, &(weir_output){ .key = r->key, .value = v,
 *             .headers = r->headers, .header_count = r->header_count });
 *         return WEIR_OK;
 *     }
 *
 * The SDK hides the columnar batches of the WIT world: every record's bytes
 * point into the batch the host passed in, and outputs are appended to the
 * batch returned to the host.
 *
 * Memory. Everything the SDK hands out (record fields, state and table
 * values, weir_tmp_alloc / weir_format results) stays valid until the
 * current hook returns (one process / on_window / on_timer / reduce /
 * merge / init call) and is freed by the SDK afterwards. Keep nothing
 * across calls except what you malloc yourself. Per-key facts belong in
 * state, not in globals: records of different partitions may go to
 * different instances, and a trapped instance is replaced by a fresh one.
 *
 * Errors. C has no exceptions, so a hook reports a bad record by returning
 * `weir_reject(out, fmt, ...)`: the record's outputs, window additions and
 * state changes are discarded and the deployment's failure policy applies
 * (dead-letter, skip or stop); the other records of the batch are not
 * affected. `weir_fatal(out, fmt, ...)` stops the deployment on the
 * partition instead. A trap -- abort(), assert(), __builtin_trap(), an
 * out-of-bounds access, running out of memory or fuel -- kills the whole
 * instance; the host then finds the responsible record by retrying smaller
 * groups on fresh instances and treats it like a rejected record, so a trap
 * is safe but slow: reject instead whenever you can.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WEIR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WEIR_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ bytes */

/*
 * A borrowed byte string. `ptr == NULL` means *null* (a Kafka null key or
 * value, an absent header value); a present but empty string has a non-NULL
 * ptr and len 0.
 */
typedef struct weir_bytes {
    const uint8_t *ptr;
    size_t len;
} weir_bytes;

/* The null byte string. */
#define WEIR_NULL ((weir_bytes){NULL, 0})
/* A string literal as bytes (without its terminating NUL). */
#define WEIR_LIT(s) ((weir_bytes){(const uint8_t *)("" s), sizeof(s) - 1})

/* Bytes of a NUL-terminated string (NULL gives WEIR_NULL). */
weir_bytes weir_str(const char *s);
/* Bytes at `ptr` of length `len` (a NULL ptr with len 0 gives empty bytes). */
weir_bytes weir_bytes_of(const void *ptr, size_t len);
/* Whether `b` is null. */
static inline bool weir_is_null(weir_bytes b) { return b.ptr == NULL; }
/* Byte equality; null equals only null. */
bool weir_bytes_eq(weir_bytes a, weir_bytes b);
/* Whether `b` equals the NUL-terminated string `s`. */
bool weir_bytes_eq_str(weir_bytes b, const char *s);
/* Whether `needle` occurs in `haystack` (an empty needle always does). */
bool weir_bytes_contains(weir_bytes haystack, weir_bytes needle);
/* Whether `b` starts with `prefix`. */
bool weir_bytes_starts_with(weir_bytes b, weir_bytes prefix);
/* A NUL-terminated copy of `b` (valid for this call; NULL for null). Bytes
 * after an embedded NUL are of course invisible to C string functions. */
char *weir_cstr(weir_bytes b);
/* A copy of `b` (valid for this call). */
weir_bytes weir_bytes_dup(weir_bytes b);
/* `b` with ASCII letters upper- / lower-cased (a copy; null stays null). */
weir_bytes weir_ascii_upper(weir_bytes b);
weir_bytes weir_ascii_lower(weir_bytes b);

/* ---------------------------------------------------------- text (UTF-8) */

/* Whether `b` is valid UTF-8 (exactly Rust's `str::from_utf8`). */
bool weir_utf8_valid(weir_bytes b);
/* Decodes the code point at `*pos` of valid UTF-8 `s` and advances `*pos`;
 * returns -1 at the end. */
int32_t weir_utf8_next(weir_bytes s, size_t *pos);
/* Appends the UTF-8 encoding of `cp` to `buf` (room for 4 bytes); returns
 * the number of bytes written. */
size_t weir_utf8_encode(uint32_t cp, uint8_t *buf);

/* ---------------------------------------------------- scratch and strings */

/* `size` bytes freed automatically when the current hook returns. */
void *weir_tmp_alloc(size_t size);
/* printf into a NUL-terminated string freed when the current hook returns. */
char *weir_format(const char *fmt, ...) WEIR_PRINTF(1, 2);
char *weir_vformat(const char *fmt, va_list ap);
/* Writes the decimal digits of `v` into `buf` (room for 21 bytes, no NUL);
 * returns the length. Like Rust's `to_string` of integers. */
size_t weir_fmt_u64(uint64_t v, char *buf);
size_t weir_fmt_i64(int64_t v, char *buf);

/* ---------------------------------------------------------------- records */

/* A header: the name is UTF-8; a null value has value.ptr == NULL. */
typedef struct weir_header {
    weir_bytes name;
    weir_bytes value;
} weir_header;

/* One input record, borrowing its bytes from the batch. */
typedef struct weir_record {
    weir_bytes key;              /* ptr NULL for a null key */
    weir_bytes value;            /* ptr NULL for a null value (tombstone) */
    const weir_header *headers;  /* in order */
    size_t header_count;
    int64_t timestamp;           /* event time, ms since the Unix epoch */
    int64_t offset;
    const char *topic;           /* NUL-terminated */
    int32_t partition;
} weir_record;

/* The first header called `name`, or NULL when there is none. */
const weir_header *weir_record_header(const weir_record *r, const char *name);
/* The key / value as a NUL-terminated string, or NULL when null or not
 * valid UTF-8 (valid for this call). */
const char *weir_record_key_text(const weir_record *r);
const char *weir_record_value_text(const weir_record *r);

/* ---------------------------------------------------------------- outputs */

/* Where a hook puts outputs, window additions and its rejection. */
typedef struct weir_out weir_out;

/*
 * One record to produce. Zero-initialise and set what you need:
 *
 *     weir_emit(out, &(weir_output){ .key = k, .value = WEIR_LIT("v"),
 *                                    .topic = "audit" });
 *
 * All bytes are copied by weir_emit.
 */
typedef struct weir_output {
    weir_bytes key;              /* WEIR_NULL: null key */
    weir_bytes value;            /* WEIR_NULL: null value */
    const char *topic;           /* NULL: the deployment's default output */
    const weir_header *headers;
    size_t header_count;
    bool has_timestamp;          /* false: the input record's timestamp */
    int64_t timestamp;           /*   (for window results: the window end) */
} weir_output;

/* Queues `output` for production. */
void weir_emit(weir_out *out, const weir_output *output);
/* Emits `record` unchanged (key, value, headers, timestamp) to the default
 * output topic. */
void weir_forward(weir_out *out, const weir_record *record);
/* The timestamp of the record (or window result: its end) being handled. */
int64_t weir_out_timestamp(const weir_out *out);

/* ----------------------------------------------------------------- errors */

typedef enum weir_status {
    WEIR_OK = 0,
    WEIR_REJECT = 1,  /* this record fails; see weir_reject */
    WEIR_FATAL = 2,   /* the deployment stops; see weir_fatal */
} weir_status;

/* Rejects the current record with a printf-style message and returns
 * WEIR_REJECT:  `return weir_reject(out, "bad amount %s", s);` */
weir_status weir_reject(weir_out *out, const char *fmt, ...) WEIR_PRINTF(2, 3);
/* Stops the deployment (problems no record can fix) and returns WEIR_FATAL. */
weir_status weir_fatal(weir_out *out, const char *fmt, ...) WEIR_PRINTF(2, 3);

/* The message of the last failed SDK call (state values that are not valid
 * JSON of the requested type, ...); valid for this call. */
const char *weir_last_error(void);

/* ----------------------------------------------------------------- config */

/* The deployment's configuration: key/value strings in spec order. */
typedef struct weir_config weir_config;

/* The value of `key` (the last one when repeated), or NULL when unset. */
const char *weir_config_get(const weir_config *c, const char *key);
size_t weir_config_len(const weir_config *c);
/* The i-th entry in spec order (repeated keys included). */
void weir_config_entry(const weir_config *c, size_t i, const char **key, const char **value);
/* The value of `key`; when unset, NULL and *err = "config `KEY` is required". */
const char *weir_config_require(const weir_config *c, const char *key, const char **err);
/*
 * Parses `key` (surrounding whitespace ignored) like Rust's `str::parse`:
 * returns 1 and sets *value when set and valid, 0 when unset (*value is
 * untouched, so set your default first), and -1 with *err =
 * "config `KEY` = `VALUE`: REASON" when it does not parse.
 */
int weir_config_u64(const weir_config *c, const char *key, uint64_t *value, const char **err);
int weir_config_i64(const weir_config *c, const char *key, int64_t *value, const char **err);
int weir_config_f64(const weir_config *c, const char *key, double *value, const char **err);
int weir_config_bool(const weir_config *c, const char *key, bool *value, const char **err);

/* ---------------------------------------------------------------- logging */

typedef enum weir_level {
    WEIR_TRACE, WEIR_DEBUG, WEIR_INFO, WEIR_WARN, WEIR_ERROR,
} weir_level;

/* A log line, recorded by the host with the deployment's name. */
void weir_log(weir_level level, const char *fmt, ...) WEIR_PRINTF(2, 3);
#define weir_trace(...) weir_log(WEIR_TRACE, __VA_ARGS__)
#define weir_debug(...) weir_log(WEIR_DEBUG, __VA_ARGS__)
#define weir_info(...) weir_log(WEIR_INFO, __VA_ARGS__)
#define weir_warn(...) weir_log(WEIR_WARN, __VA_ARGS__)
#define weir_error(...) weir_log(WEIR_ERROR, __VA_ARGS__)

/* ------------------------------------------------------------ raw state */

/*
 * Keyed state of this deployment on the current partition. Changes are
 * visible at once, discarded when the record is rejected, and made durable
 * before the record's offset is committed.
 */

/* Looks up `key`: true and *value (valid for this call) when present. */
bool weir_state_get(weir_bytes key, weir_bytes *value);
void weir_state_set(weir_bytes key, weir_bytes value);
/* Stores a value that expires `ttl_ms` of stream (event) time from now. */
void weir_state_set_ttl(weir_bytes key, weir_bytes value, uint64_t ttl_ms);
void weir_state_delete(weir_bytes key);

typedef struct weir_entry {
    weir_bytes key;
    weir_bytes value;
} weir_entry;

/* Up to `limit` entries with start <= key < end (end NULL: to the last key)
 * in key order; returns the count, *entries valid for this call. */
size_t weir_state_range(weir_bytes start, const weir_bytes *end, uint32_t limit, weir_entry **entries);
/* Up to `limit` entries whose key starts with `prefix`, after key `after`
 * (NULL: from the first) in key order. */
size_t weir_state_prefix(weir_bytes prefix, const weir_bytes *after, uint32_t limit, weir_entry **entries);

/* Every entry under a prefix, fetched a page at a time:
 *
 *     weir_scan s = weir_scan_prefix(WEIR_LIT("user:"));
 *     weir_entry e;
 *     while (weir_scan_next(&s, &e)) { ... }
 */
typedef struct weir_scan {
    weir_bytes prefix;
    weir_bytes after;
    weir_entry *page;
    size_t len, pos;
    bool done, started;
} weir_scan;

weir_scan weir_scan_prefix(weir_bytes prefix);
bool weir_scan_next(weir_scan *s, weir_entry *entry);

/* ------------------------------------------------------ typed state: Map */

/*
 * A named collection of JSON values stored under `name`, a 0 byte and the
 * key -- the layout of the Rust SDK's `state::Map`, with values encoded as
 * serde_json does (integer 3 is `3`, 2.5 is `2.5`, strings are quoted), so
 * state written by a plugin in another language (and by the previous
 * version of a plugin) reads the same.
 *
 * Getters return 1 when present (setting *value), 0 when absent, and -1
 * when the stored bytes are not JSON of that type (see weir_last_error; a
 * Rust plugin would reject the record: `return weir_reject(out, "%s",
 * weir_last_error());`).
 */
typedef struct weir_map {
    const char *name;
} weir_map;

static inline weir_map weir_map_new(const char *name) { return (weir_map){name}; }

/* The full state key of `key` (valid for this call). */
weir_bytes weir_map_key(weir_map m, weir_bytes key);
int weir_map_get_json(weir_map m, weir_bytes key, weir_bytes *json);
void weir_map_set_json(weir_map m, weir_bytes key, weir_bytes json);
int weir_map_get_u64(weir_map m, weir_bytes key, uint64_t *value);
void weir_map_set_u64(weir_map m, weir_bytes key, uint64_t value);
int weir_map_get_i64(weir_map m, weir_bytes key, int64_t *value);
void weir_map_set_i64(weir_map m, weir_bytes key, int64_t value);
int weir_map_get_f64(weir_map m, weir_bytes key, double *value);
/* A non-finite value is stored as `null`, as serde_json does. */
void weir_map_set_f64(weir_map m, weir_bytes key, double value);
int weir_map_get_bool(weir_map m, weir_bytes key, bool *value);
void weir_map_set_bool(weir_map m, weir_bytes key, bool value);
/* Strings: *value is the decoded UTF-8 text (valid for this call). */
int weir_map_get_str(weir_map m, weir_bytes key, weir_bytes *value);
void weir_map_set_str(weir_map m, weir_bytes key, weir_bytes utf8);
void weir_map_delete(weir_map m, weir_bytes key);
/* Adds `delta` to the u64 under `key` (absent counts as 0) and stores and
 * returns the sum in *value; -1 when the stored value is not a u64 or the
 * sum overflows. Rust: `map.update(key, |n| Some(n.unwrap_or(0) + delta))`. */
int weir_map_add_u64(weir_map m, weir_bytes key, uint64_t delta, uint64_t *value);
/* Every (key without the map prefix, JSON value) in key order. */
weir_scan weir_map_scan(weir_map m);
bool weir_map_scan_next(weir_map m, weir_scan *s, weir_entry *entry);

/* JSON encoding helpers, serde_json-compatible (results valid for this call). */
weir_bytes weir_json_f64(double v);
weir_bytes weir_json_str(weir_bytes utf8);

/* ----------------------------------------------------------------- windows */

/*
 * Windowed aggregations computed by the host (Kafka Streams semantics; see
 * the `weir:transform/windows` WIT interface for the exact rules). Declare
 * them in weir_init, feed them from weir_process with weir_add_to_window,
 * and turn results into outputs in weir_on_window:
 *
 *     static weir_window clicks;
 *     const char *weir_init(const weir_config *c) {
 *         weir_window_spec s = weir_tumbling(60000);
 *         s.grace_ms = 5000;
 *         return weir_window_define("clicks", &s, &clicks);
 *     }
 */
typedef enum weir_window_kind {
    WEIR_TUMBLING, WEIR_HOPPING, WEIR_SLIDING, WEIR_SESSION,
    WEIR_COUNT_WINDOW, /* per key, size_ms values per window, starting every advance_ms values */
} weir_window_kind;

typedef enum weir_aggregation {
    WEIR_COUNT, WEIR_SUM, WEIR_MIN, WEIR_MAX, WEIR_MEAN,
    WEIR_CUSTOM,  /* folded by weir_reduce (and weir_merge for sessions) */
} weir_aggregation;

typedef enum weir_emit_mode {
    WEIR_EMIT_ON_CLOSE,   /* one final result per window (the default) */
    WEIR_EMIT_ON_UPDATE,  /* a result every time a window changes */
} weir_emit_mode;

typedef struct weir_window_spec {
    weir_window_kind kind;
    uint64_t size_ms;          /* tumbling, hopping; sliding: max difference;
                                  session: the gap */
    uint64_t advance_ms;       /* hopping */
    uint64_t grace_ms;         /* late values accepted this long after end */
    weir_aggregation aggregation;
    weir_emit_mode emit;
    bool has_idle_close_ms;    /* close a partition's windows after this */
    uint64_t idle_close_ms;    /*   much wall-clock time without records */
} weir_window_spec;

/* Specs with count aggregation, emit on close, no grace, no idle close. */
weir_window_spec weir_tumbling(uint64_t size_ms);
weir_window_spec weir_hopping(uint64_t size_ms, uint64_t advance_ms);
weir_window_spec weir_sliding(uint64_t max_difference_ms);
weir_window_spec weir_session(uint64_t gap_ms);
/* Count windows: per key, `count` values per window, starting every `step`
 * values (a result's start and end are its first and last values' times). */
weir_window_spec weir_count_tumbling(uint64_t count);
weir_window_spec weir_count_hopping(uint64_t count, uint64_t step);

/* A declared aggregation: the id the host assigned. */
typedef struct weir_window {
    uint32_t id;
} weir_window;

/* Declares the aggregation under `name` (stable across restarts and
 * upgrades); call it from weir_init. Returns NULL, or the host's error. */
const char *weir_window_define(const char *name, const weir_window_spec *spec, weir_window *window);

/* Adds `number` under `key` to `window` at the record's timestamp. */
void weir_add_to_window(weir_out *out, weir_window window, weir_bytes key, double number);
/* ... at event time `timestamp`. */
void weir_add_to_window_at(weir_out *out, weir_window window, weir_bytes key, int64_t timestamp, double number);
/* Adds `value` to a custom aggregation, folded by weir_reduce. */
void weir_add_custom_to_window_at(weir_out *out, weir_window window, weir_bytes key, int64_t timestamp, weir_bytes value);

/* The aggregate of one window, handed to weir_on_window. */
typedef struct weir_window_result {
    weir_window window;
    weir_bytes key;
    int64_t start;       /* first instant in the window, ms */
    int64_t end;         /* exclusive for tumbling/hopping, the inclusive
                            last instant for sliding/session */
    uint64_t count;
    double value;        /* count, sum, min, max or mean; 0 for custom */
    weir_bytes custom;   /* a custom aggregation's accumulator, else null */
    bool closed;         /* the window's final result */
} weir_window_result;

/* ---------------------------------------------------------------- timers */

/*
 * Timers: act when time passes, not only when records arrive. Each key of
 * the partition has at most one timer; setting it again replaces it. When
 * it fires, the SDK calls weir_on_timer with state at hand. Timers live in
 * the partition's state: they survive restarts and rebalances and are
 * undone with a rejected record. Event-time timers fire when the
 * partition's stream time (its largest record timestamp) reaches them,
 * before the record that takes it there; wall-clock timers when the host's
 * clock does.
 */
typedef enum weir_clock { WEIR_EVENT_TIME, WEIR_WALL_CLOCK } weir_clock;

/* Sets the timer of `key` to fire at `at` (ms since the epoch) on `clock`. */
void weir_timer_set(weir_bytes key, int64_t at, weir_clock clock);
/* Removes the timer of `key`, if any. */
void weir_timer_cancel(weir_bytes key);
/* The time and clock of the timer of `key`; false when it has none. */
bool weir_timer_get(weir_bytes key, int64_t *at, weir_clock *clock);
/* The partition's stream time, or the host's wall clock (the only wall
 * clock a plugin has), ms. */
int64_t weir_timer_now(weir_clock clock);

/* A timer that fired, handed to weir_on_timer. */
typedef struct weir_timer {
    weir_bytes key;
    int64_t at; /* the time it was set for, ms since the epoch */
    weir_clock clock;
} weir_timer;

/* ---------------------------------------------------------------- tables */

/*
 * Tables (world 0.2.1): read-only views of compacted topics that the
 * deployment declares (`tables = { customers = "customers" }`), holding the
 * latest value of each key, kept up to date by the host. Every partition
 * sees the whole table, as loaded when the record is processed (Kafka
 * Streams' GlobalKTable), not as of the record's timestamp. Open them in
 * weir_init, read them in weir_process, weir_on_window and weir_on_timer:
 *
 *     static weir_table customers;
 *     const char *weir_init(const weir_config *c) {
 *         return weir_table_open("customers", &customers);
 *     }
 *     ...  weir_bytes name;
 *          if (weir_table_get(customers, r->key, &name)) { ... }
 *
 * A plugin that never calls these functions does not import the interface.
 */
typedef struct weir_table {
    uint32_t id;
} weir_table;

/* Opens the table the deployment declares as `name` (the id stays valid for
 * the instance); call it from weir_init. Returns NULL, or the host's error
 * (which names the tables the deployment declares). */
const char *weir_table_open(const char *name, weir_table *table);
/* Looks up `key`: true and *value (valid for this call) when present. */
bool weir_table_get(weir_table table, weir_bytes key, weir_bytes *value);
/* Up to `limit` entries with start <= key < end (end NULL: to the last key)
 * in key order; returns the count, *entries valid for this call. */
size_t weir_table_range(weir_table table, weir_bytes start, const weir_bytes *end, uint32_t limit,
                        weir_entry **entries);
/* Up to `limit` entries whose key starts with `prefix`, after key `after`
 * (NULL: from the first) in key order. */
size_t weir_table_prefix(weir_table table, weir_bytes prefix, const weir_bytes *after, uint32_t limit,
                         weir_entry **entries);
/* Every entry of the table under a prefix, fetched a page at a time:
 *
 *     weir_scan s = weir_table_scan_prefix(customers, WEIR_LIT("c"));
 *     weir_entry e;
 *     while (weir_table_scan_next(customers, &s, &e)) { ... }
 */
weir_scan weir_table_scan_prefix(weir_table table, weir_bytes prefix);
bool weir_table_scan_next(weir_table table, weir_scan *s, weir_entry *entry);

/* ----------------------------------------------------------- plugin hooks */

/*
 * Required: handles one record -- emit any number of outputs, read and
 * write state, add values to windows -- and returns WEIR_OK, or
 * weir_reject(...) / weir_fatal(...).
 */
weir_status weir_process(const weir_record *record, weir_out *out);

/* Optional: prepares the plugin from its configuration and declares its
 * windows. Returns NULL, or an error message that stops the deployment
 * (e.g. a string from weir_format or a literal). Default: accepts any. */
const char *weir_init(const weir_config *config);

/* Optional: turns a window result into outputs. Default: emits nothing. */
weir_status weir_on_window(const weir_window_result *result, weir_out *out);

/* Optional: handles a timer that fired; returning weir_reject(...) drops it
 * and counts a failure. Default: emits nothing. */
weir_status weir_on_timer(const weir_timer *timer, weir_out *out);

/* Optional (custom aggregations): folds `values` into the accumulator `acc`
 * (WEIR_NULL for a new window) and returns the new one (e.g. from
 * weir_tmp_alloc; the SDK copies it). Default: traps. */
weir_bytes weir_reduce(weir_window window, weir_bytes key, weir_bytes acc, const weir_bytes *values, size_t count);

/* Optional (custom session aggregations): combines the accumulators of two
 * merging sessions (`a` is the earlier one). Default: traps. */
weir_bytes weir_merge(weir_window window, weir_bytes key, weir_bytes a, weir_bytes b);

#ifdef __cplusplus
}
#endif

#endif /* WEIR_H */
