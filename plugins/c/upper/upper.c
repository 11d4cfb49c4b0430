/* Stateless map: forwards every record with its value upper-cased (ASCII),
 * keeping key, headers and timestamp. */
#include <weir.h>

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_emit(out, &(weir_output){
        .key = r->key,
        .value = weir_ascii_upper(r->value), /* a null value stays null */
        .headers = r->headers,
        .header_count = r->header_count,
    });
    return WEIR_OK;
}
