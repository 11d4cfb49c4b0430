/* Exercises the C SDK's tables under `weir test` (see tests/run): opening a
 * table (and the host's error for an undeclared one, passed on unchanged),
 * get, range, prefix pages and a paged prefix scan (over more entries than
 * one page), and reads from weir_on_timer. Emits one line per check. */
#include <string.h>
#include <weir.h>

static weir_table t;

const char *weir_init(const weir_config *c) {
    const char *name = weir_config_get(c, "table");
    return weir_table_open(name ? name : "t", &t);
}

static void line(weir_out *out, const char *what, weir_bytes v) {
    weir_emit(out, &(weir_output){.key = weir_str(what), .value = v});
}

/* "k=v,k=v" of `n` entries. */
static weir_bytes list(const weir_entry *e, size_t n) {
    const char *s = "";
    for (size_t i = 0; i < n; i++) {
        s = weir_format("%s%s%.*s=%.*s", s, i ? "," : "", (int)e[i].key.len, (const char *)e[i].key.ptr,
                        (int)e[i].value.len, (const char *)e[i].value.ptr);
    }
    return weir_str(s);
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_bytes v;
    line(out, "get", weir_table_get(t, r->key, &v) ? v : WEIR_LIT("(absent)"));
    weir_entry *es;
    weir_bytes end = WEIR_LIT("b;");
    size_t n = weir_table_range(t, WEIR_LIT("b:"), &end, 2, &es);
    line(out, "range", list(es, n));
    n = weir_table_range(t, WEIR_LIT("z"), NULL, 10, &es);
    line(out, "range-open", list(es, n));
    n = weir_table_prefix(t, WEIR_LIT("b:"), NULL, 2, &es);
    line(out, "prefix", list(es, n));
    weir_bytes after = WEIR_LIT("b:2");
    n = weir_table_prefix(t, WEIR_LIT("b:"), &after, 10, &es);
    line(out, "prefix-after", list(es, n));
    size_t count = 0, bytes = 0;
    weir_bytes last = WEIR_NULL;
    weir_scan s = weir_table_scan_prefix(t, WEIR_LIT("p:"));
    weir_entry e;
    while (weir_table_scan_next(t, &s, &e)) count++, bytes += e.value.len, last = e.key;
    line(out, "scan", weir_str(weir_format("%zu entries %zu value bytes last=%.*s", count, bytes, (int)last.len,
                                           last.ptr ? (const char *)last.ptr : "")));
    weir_timer_set(r->key.ptr ? r->key : WEIR_LIT(""), r->timestamp + 10, WEIR_EVENT_TIME);
    return WEIR_OK;
}

weir_status weir_on_timer(const weir_timer *tm, weir_out *out) {
    weir_bytes v;
    line(out, "timer-get", weir_table_get(t, tm->key, &v) ? v : WEIR_LIT("(absent)"));
    return WEIR_OK;
}
