/* Shared between the C SDK's source files; not for plugins. */
#ifndef WEIR_INTERNAL_H
#define WEIR_INTERNAL_H

#include "weir.h"

/* Message of the last failed call, for weir_last_error. */
extern const char *weir__last_error;
/* Frees everything weir_tmp_alloc handed out; called after each hook. */
void weir__tmp_reset(void);
/* Scratch allocated after a mark is freed by releasing it (per record). */
typedef struct {
    void *arena;
    size_t used;
    void *big;
} weir__tmp_mark_t;
weir__tmp_mark_t weir__tmp_mark(void);
void weir__tmp_release(weir__tmp_mark_t m);
/* Rust's str::trim of valid UTF-8. */
weir_bytes weir__trim(weir_bytes s);
/* Rust's integer / float `from_str`: NULL, or Rust's error message. */
const char *weir__parse_int(weir_bytes s, bool is_signed, uint64_t *mag, bool *neg);
const char *weir__parse_f64(weir_bytes s, double *out);
weir_bytes weir__utf8_lossy(weir_bytes b);
/* serde_json scalar decoding: 1 ok, -1 (and weir__last_error) otherwise. */
int weir__json_int(weir_bytes json, bool is_signed, uint64_t *mag, bool *neg);
int weir__json_f64(weir_bytes json, double *out);
int weir__json_bool(weir_bytes json, bool *out);
int weir__json_string(weir_bytes json, weir_bytes *out);

#endif
