/* Uses libc functions that need WASI (stdout, clock): the build applies the
 * preview1 reactor adapter, and the host's deny-all WASI answers them. */
#include <stdio.h>
#include <time.h>
#include <weir.h>

weir_status weir_process(const weir_record *r, weir_out *out) {
    printf("hello from C\n");
    fflush(stdout);
    time_t t = time(NULL);
    weir_emit(out, &(weir_output){.key = r->key, .value = weir_str(weir_format("time=%lld", (long long)t))});
    return WEIR_OK;
}
