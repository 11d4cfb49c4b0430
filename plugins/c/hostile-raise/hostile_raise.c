/* Hostile: passes records through unchanged, but fails every record whose
 * value contains `boom`, with a message naming the value. C has no
 * exceptions: the SDK's equivalent of raising an ordinary error is
 * returning weir_reject(...), which rejects just this record (its outputs
 * and state changes are discarded, the rest of the batch goes on).
 * Calling abort() instead would trap the whole instance; the host would
 * then isolate the record by retrying on fresh instances -- see
 * plugins/rust/hostile-trap for that path. */
#include <weir.h>

weir_status weir_process(const weir_record *r, weir_out *out) {
    weir_forward(out, r); /* discarded again by the reject below */
    if (r->value.ptr && weir_bytes_contains(r->value, WEIR_LIT("boom"))) {
        return weir_reject(out, "hostile-raise: boom in value %.*s", (int)r->value.len, (const char *)r->value.ptr);
    }
    return WEIR_OK;
}
