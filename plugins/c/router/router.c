/* Router: fans each record out to every topic whose pattern its value
 * contains. Routes are config entries `route.<topic>` = `<substring>`;
 * a record matching no route goes to the default output topic. */
#include <stdlib.h>
#include <string.h>
#include <weir.h>

typedef struct {
    const char *topic;
    weir_bytes pattern;
} route;

static route *routes;
static size_t route_count;

const char *weir_init(const weir_config *config) {
    size_t n = weir_config_len(config);
    routes = calloc(n ? n : 1, sizeof *routes);
    for (size_t i = 0; i < n; i++) {
        const char *key, *value;
        weir_config_entry(config, i, &key, &value); /* config outlives init */
        if (strncmp(key, "route.", 6) != 0) continue;
        routes[route_count++] = (route){key + 6, weir_str(value)};
    }
    for (size_t i = 0; i < route_count; i++) {
        if (!routes[i].topic[0] || routes[i].pattern.len == 0) {
            return "every `route.<topic>` needs a topic name and a non-empty pattern";
        }
    }
    return NULL;
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_bytes value = r->value.ptr ? r->value : WEIR_LIT("");
    bool routed = false;
    for (size_t i = 0; i < route_count; i++) {
        if (weir_bytes_contains(value, routes[i].pattern)) {
            weir_emit(out, &(weir_output){
                .topic = routes[i].topic,
                .key = r->key,
                .value = value,
                .headers = r->headers,
                .header_count = r->header_count,
            });
            routed = true;
        }
    }
    if (!routed) weir_forward(out, r);
    return WEIR_OK;
}
