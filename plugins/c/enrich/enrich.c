/* Stream-table join (the same plugin as the Rust one): enriches each record
 * with the value its key has in a table (orders with their customers).
 * Config `table` names the table (default `customers`); `join` is `inner`
 * (default: records whose key is not in the table, or that have no key, are
 * dropped) or `left` (they pass with nothing appended).
 *
 * An output keeps the record's key and timestamp; its value is the record's
 * value, `;`, and the table's value (an empty one for a left join's miss; a
 * null value counts as empty). */
#include <weir.h>

#include <string.h>

static weir_table table;
static bool left;

const char *weir_init(const weir_config *config) {
    const char *name = weir_config_get(config, "table");
    const char *err = weir_table_open(name ? name : "customers", &table);
    if (err) return err;
    const char *join = weir_config_get(config, "join");
    if (!join || strcmp(join, "inner") == 0) left = false;
    else if (strcmp(join, "left") == 0) left = true;
    else return weir_format("join must be `inner` or `left`, not `%s`", join);
    return NULL;
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_bytes found = WEIR_NULL;
    bool hit = r->key.ptr && weir_table_get(table, r->key, &found);
    if (!hit && !left) return WEIR_OK;
    size_t vlen = r->value.ptr ? r->value.len : 0, flen = hit ? found.len : 0;
    uint8_t *value = weir_tmp_alloc(vlen + 1 + flen);
    if (vlen) memcpy(value, r->value.ptr, vlen);
    value[vlen] = ';';
    if (flen) memcpy(value + vlen + 1, found.ptr, flen);
    weir_emit(out, &(weir_output){.key = r->key, .value = weir_bytes_of(value, vlen + 1 + flen),
                                  .has_timestamp = true, .timestamp = r->timestamp});
    return WEIR_OK;
}
