/*
 * weir_core.c -- the parts of the C SDK that do not touch the generated
 * bindings: byte strings, UTF-8 and Unicode, the per-call scratch arena,
 * formatting, config parsing and serde_json-compatible JSON scalars.
 *
 * (Over 400 lines: the SDK's support that does not touch the generated
 * bindings, in one translation unit every plugin links.)
 */
#include "weir_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- scratch */

/* Bump-allocated chunks, newest first, plus a list of big one-off blocks.
 * Everything is released when the current hook returns (and per record,
 * back to the mark taken before it); one standard chunk is kept. */
typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} chunk;

#define CHUNK_SIZE (64 * 1024)
#define BIG (CHUNK_SIZE / 4)

static chunk *arena, *big;
static chunk *spare;

void *weir_tmp_alloc(size_t size) {
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    if (size > BIG) {
        chunk *c = malloc(sizeof(chunk) + size);
        if (!c) abort();
        c->cap = c->used = size;
        c->next = big;
        big = c;
        return c->data;
    }
    if (!arena || arena->cap - arena->used < size) {
        chunk *c = spare;
        spare = NULL;
        if (!c) c = malloc(sizeof(chunk) + CHUNK_SIZE);
        if (!c) abort();
        c->cap = CHUNK_SIZE;
        c->used = 0;
        c->next = arena;
        arena = c;
    }
    void *p = arena->data + arena->used;
    arena->used += size;
    return p;
}

weir__tmp_mark_t weir__tmp_mark(void) {
    return (weir__tmp_mark_t){arena, arena ? arena->used : 0, big};
}

void weir__tmp_release(weir__tmp_mark_t m) {
    while (big != m.big) {
        chunk *next = big->next;
        free(big);
        big = next;
    }
    while (arena != m.arena) {
        chunk *next = arena->next;
        if (!spare) {
            spare = arena;
        } else {
            free(arena);
        }
        arena = next;
    }
    if (arena) arena->used = m.used;
}

void weir__tmp_reset(void) {
    weir__tmp_release((weir__tmp_mark_t){0});
    weir__last_error = NULL;
}

char *weir_vformat(const char *fmt, va_list ap) {
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return "";
    }
    char *s = weir_tmp_alloc((size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(s, small, (size_t)n + 1);
    } else {
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    return s;
}

char *weir_format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = weir_vformat(fmt, ap);
    va_end(ap);
    return s;
}

const char *weir__last_error;

const char *weir_last_error(void) {
    return weir__last_error ? weir__last_error : "";
}

/* --------------------------------------------------------------- bytes */

static const uint8_t empty_bytes[1];

weir_bytes weir_bytes_of(const void *ptr, size_t len) {
    return (weir_bytes){ptr ? (const uint8_t *)ptr : empty_bytes, len};
}

weir_bytes weir_str(const char *s) {
    return s ? (weir_bytes){(const uint8_t *)s, strlen(s)} : WEIR_NULL;
}

bool weir_bytes_eq(weir_bytes a, weir_bytes b) {
    if (!a.ptr || !b.ptr) return !a.ptr && !b.ptr;
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool weir_bytes_eq_str(weir_bytes b, const char *s) {
    return b.ptr && s && weir_bytes_eq(b, weir_str(s));
}

bool weir_bytes_starts_with(weir_bytes b, weir_bytes prefix) {
    return b.len >= prefix.len && (prefix.len == 0 || memcmp(b.ptr, prefix.ptr, prefix.len) == 0);
}

bool weir_bytes_contains(weir_bytes h, weir_bytes n) {
    if (n.len == 0) return true;
    if (h.len < n.len) return false;
    const uint8_t *p = h.ptr, *end = h.ptr + (h.len - n.len) + 1;
    while (p < end) {
        p = memchr(p, n.ptr[0], (size_t)(end - p));
        if (!p) return false;
        if (memcmp(p, n.ptr, n.len) == 0) return true;
        p++;
    }
    return false;
}

char *weir_cstr(weir_bytes b) {
    if (!b.ptr) return NULL;
    char *s = weir_tmp_alloc(b.len + 1);
    if (b.len) memcpy(s, b.ptr, b.len);
    s[b.len] = 0;
    return s;
}

weir_bytes weir_bytes_dup(weir_bytes b) {
    if (!b.ptr) return WEIR_NULL;
    uint8_t *p = weir_tmp_alloc(b.len);
    if (b.len) memcpy(p, b.ptr, b.len);
    return (weir_bytes){p, b.len};
}

static weir_bytes map_ascii(weir_bytes b, int upper) {
    if (!b.ptr) return WEIR_NULL;
    uint8_t *p = weir_tmp_alloc(b.len);
    for (size_t i = 0; i < b.len; i++) {
        uint8_t c = b.ptr[i];
        if (upper && c >= 'a' && c <= 'z') c -= 32;
        if (!upper && c >= 'A' && c <= 'Z') c += 32;
        p[i] = c;
    }
    return (weir_bytes){p, b.len};
}

weir_bytes weir_ascii_upper(weir_bytes b) { return map_ascii(b, 1); }
weir_bytes weir_ascii_lower(weir_bytes b) { return map_ascii(b, 0); }

size_t weir_fmt_u64(uint64_t v, char *buf) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

size_t weir_fmt_i64(int64_t v, char *buf) {
    if (v < 0) {
        buf[0] = '-';
        return 1 + weir_fmt_u64((uint64_t)0 - (uint64_t)v, buf + 1);
    }
    return weir_fmt_u64((uint64_t)v, buf);
}

/* ---------------------------------------------------------------- UTF-8 */

bool weir_utf8_valid(weir_bytes b) {
    const uint8_t *s = b.ptr;
    size_t i = 0, n = b.len;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i <= need) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
        }
        i += need + 1;
    }
    return true;
}

int32_t weir_utf8_next(weir_bytes s, size_t *pos) {
    size_t i = *pos;
    if (i >= s.len) return -1;
    const uint8_t *p = s.ptr + i;
    uint32_t c = p[0];
    if (c < 0x80) {
        *pos = i + 1;
    } else if (c < 0xE0) {
        c = ((c & 0x1F) << 6) | (p[1] & 0x3F);
        *pos = i + 2;
    } else if (c < 0xF0) {
        c = ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        *pos = i + 3;
    } else {
        c = ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        *pos = i + 4;
    }
    return (int32_t)c;
}

size_t weir_utf8_encode(uint32_t c, uint8_t *b) {
    if (c < 0x80) {
        b[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        b[0] = (uint8_t)(0xC0 | (c >> 6));
        b[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (c >> 12));
        b[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (c >> 18));
    b[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Rust's char::is_whitespace (White_Space). */
static bool is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Rust's str::trim of valid UTF-8. */
weir_bytes weir__trim(weir_bytes s) {
    size_t start = 0, end = s.len;
    while (start < end) {
        size_t p = start;
        uint32_t c = (uint32_t)weir_utf8_next(s, &p);
        if (!is_space(c)) break;
        start = p;
    }
    while (end > start) {
        size_t i = end - 1;
        while (i > start && (s.ptr[i] & 0xC0) == 0x80) i--;
        size_t p = i;
        uint32_t c = (uint32_t)weir_utf8_next(s, &p);
        if (!is_space(c)) break;
        end = i;
    }
    return (weir_bytes){s.ptr + start, end - start};
}

/* ------------------------------------------------------ integer parsing */

/* Rust's `u64::from_str` / `i64::from_str`: optional sign ('-' only for
 * signed), then at least one ASCII digit. Returns NULL or Rust's message. */
const char *weir__parse_int(weir_bytes s, bool is_signed, uint64_t *mag, bool *neg) {
    size_t i = 0;
    *neg = false;
    if (s.len == 0) return "cannot parse integer from empty string";
    if (s.ptr[0] == '+' || (is_signed && s.ptr[0] == '-')) {
        *neg = s.ptr[0] == '-';
        i = 1;
        if (s.len == 1) return "invalid digit found in string";
    }
    uint64_t v = 0;
    uint64_t limit = is_signed ? (*neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1) : UINT64_MAX;
    for (; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c < '0' || c > '9') return "invalid digit found in string";
        uint64_t d = c - '0';
        if (v > (limit - d) / 10) {
            return *neg ? "number too small to fit in target type" : "number too large to fit in target type";
        }
        v = v * 10 + d;
    }
    *mag = v;
    return NULL;
}

/* Rust's f64::from_str grammar, then strtod (both round correctly). */
const char *weir__parse_f64(weir_bytes s, double *out) {
    if (s.len == 0) return "cannot parse float from empty string";
    char *c = weir_cstr(s);
    size_t i = 0;
    if (c[0] == '+' || c[0] == '-') i = 1;
    const char *rest = c + i;
    static const char *const specials[] = {"inf", "infinity", "nan"};
    for (int k = 0; k < 3; k++) {
        if (strlen(rest) == strlen(specials[k])) {
            bool eq = true;
            for (size_t j = 0; rest[j]; j++) {
                char ch = rest[j];
                if (ch >= 'A' && ch <= 'Z') ch += 32;
                if (ch != specials[k][j]) eq = false;
            }
            if (eq) {
                double v = k == 2 ? __builtin_nan("") : __builtin_inf();
                *out = c[0] == '-' ? -v : v;
                return NULL;
            }
        }
    }
    size_t digits = 0;
    while (c[i] >= '0' && c[i] <= '9') i++, digits++;
    if (c[i] == '.') {
        i++;
        while (c[i] >= '0' && c[i] <= '9') i++, digits++;
    }
    if (digits == 0) return "invalid float literal";
    if (c[i] == 'e' || c[i] == 'E') {
        i++;
        if (c[i] == '+' || c[i] == '-') i++;
        size_t e = 0;
        while (c[i] >= '0' && c[i] <= '9') i++, e++;
        if (e == 0) return "invalid float literal";
    }
    if (i != s.len) return "invalid float literal";
    *out = strtod(c, NULL);
    return NULL;
}

/* ------------------------------------------------------------------ JSON */

static bool json_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static weir_bytes json_trim(weir_bytes b) {
    size_t s = 0, e = b.len;
    while (s < e && json_ws(b.ptr[s])) s++;
    while (e > s && json_ws(b.ptr[e - 1])) e--;
    return (weir_bytes){b.ptr + s, e - s};
}

/* Classifies a JSON number token: 0 not a number, 1 integer, 2 float. */
static int json_number(weir_bytes t) {
    size_t i = 0;
    const uint8_t *p = t.ptr;
    if (i < t.len && p[i] == '-') i++;
    if (i >= t.len) return 0;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        while (i < t.len && p[i] >= '0' && p[i] <= '9') i++;
    } else {
        return 0;
    }
    int kind = 1;
    if (i < t.len && p[i] == '.') {
        i++;
        size_t d = 0;
        while (i < t.len && p[i] >= '0' && p[i] <= '9') i++, d++;
        if (!d) return 0;
        kind = 2;
    }
    if (i < t.len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < t.len && (p[i] == '+' || p[i] == '-')) i++;
        size_t d = 0;
        while (i < t.len && p[i] >= '0' && p[i] <= '9') i++, d++;
        if (!d) return 0;
        kind = 2;
    }
    return i == t.len ? kind : 0;
}

static int json_fail(const char *what, weir_bytes json) {
    weir__last_error = weir_format("state value `%.*s` is not %s", (int)(json.len > 64 ? 64 : json.len),
                                   (const char *)json.ptr, what);
    return -1;
}

/* serde_json::from_slice::<u64 or i64>. */
int weir__json_int(weir_bytes json, bool is_signed, uint64_t *mag, bool *neg) {
    weir_bytes t = json_trim(json);
    const char *what = is_signed ? "an i64" : "a u64";
    if (json_number(t) != 1) return json_fail(what, json);
    if (!is_signed && t.ptr[0] == '-') {
        /* -0 is a valid u64 for serde_json. */
        for (size_t i = 1; i < t.len; i++) {
            if (t.ptr[i] != '0') return json_fail(what, json);
        }
        *mag = 0;
        *neg = false;
        return 1;
    }
    if (weir__parse_int(t, is_signed, mag, neg)) return json_fail(what, json);
    return 1;
}

int weir__json_f64(weir_bytes json, double *out) {
    weir_bytes t = json_trim(json);
    if (!json_number(t)) return json_fail("an f64", json);
    *out = strtod(weir_cstr(t), NULL);
    if (__builtin_isinf(*out)) return json_fail("an f64", json);
    return 1;
}

int weir__json_bool(weir_bytes json, bool *out) {
    weir_bytes t = json_trim(json);
    if (weir_bytes_eq(t, WEIR_LIT("true"))) {
        *out = true;
    } else if (weir_bytes_eq(t, WEIR_LIT("false"))) {
        *out = false;
    } else {
        return json_fail("a bool", json);
    }
    return 1;
}

static int hex4(const uint8_t *p, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = p[k];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 32) >= 'a' && (c | 32) <= 'f') d = (uint32_t)((c | 32) - 'a' + 10);
        else return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

int weir__json_string(weir_bytes json, weir_bytes *out) {
    weir_bytes t = json_trim(json);
    if (t.len < 2 || t.ptr[0] != '"' || t.ptr[t.len - 1] != '"') return json_fail("a string", json);
    uint8_t *buf = weir_tmp_alloc(t.len);
    size_t n = 0;
    for (size_t i = 1; i < t.len - 1;) {
        uint8_t c = t.ptr[i];
        if (c == '"' || c < 0x20) return json_fail("a string", json);
        if (c != '\\') {
            buf[n++] = c;
            i++;
            continue;
        }
        if (i + 1 >= t.len - 1) return json_fail("a string", json);
        uint8_t e = t.ptr[i + 1];
        i += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t u;
            if (i + 4 > t.len - 1 || !hex4(t.ptr + i, &u)) return json_fail("a string", json);
            i += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                uint32_t lo;
                if (i + 6 > t.len - 1 || t.ptr[i] != '\\' || t.ptr[i + 1] != 'u' || !hex4(t.ptr + i + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    return json_fail("a string", json);
                }
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                return json_fail("a string", json);
            }
            n += weir_utf8_encode(u, buf + n);
            break;
        }
        default:
            return json_fail("a string", json);
        }
    }
    *out = (weir_bytes){buf, n};
    if (!weir_utf8_valid(*out)) return json_fail("a string", json);
    return 1;
}

weir_bytes weir_json_str(weir_bytes s) {
    /* serde_json escapes '"', '\\' and control characters only. */
    uint8_t *buf = weir_tmp_alloc(s.len * 6 + 2);
    size_t n = 0;
    buf[n++] = '"';
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        switch (c) {
        case '"': buf[n++] = '\\'; buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; buf[n++] = '\\'; break;
        case '\b': buf[n++] = '\\'; buf[n++] = 'b'; break;
        case '\f': buf[n++] = '\\'; buf[n++] = 'f'; break;
        case '\n': buf[n++] = '\\'; buf[n++] = 'n'; break;
        case '\r': buf[n++] = '\\'; buf[n++] = 'r'; break;
        case '\t': buf[n++] = '\\'; buf[n++] = 't'; break;
        default:
            if (c < 0x20) {
                buf[n++] = '\\'; buf[n++] = 'u'; buf[n++] = '0'; buf[n++] = '0';
                buf[n++] = (uint8_t)hex[c >> 4];
                buf[n++] = (uint8_t)hex[c & 15];
            } else {
                buf[n++] = c;
            }
        }
    }
    buf[n++] = '"';
    return (weir_bytes){buf, n};
}

/* serde_json (1.0.154, zmij) writes finite floats with the shortest digits
 * that round-trip, as `1.0`, `0.001`, `1e+20`, `1.5e-7`; non-finite as
 * null. Checked against it on 20,000 values. */
weir_bytes weir_json_f64(double v) {
    if (__builtin_isnan(v) || __builtin_isinf(v)) return WEIR_LIT("null");
    char sci[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
        if (strtod(sci, NULL) == v) break;
    }
    /* sci = [-]d[.ddd]e[+-]xx */
    char digits[24];
    size_t nd = 0;
    const char *p = sci;
    bool neg = false;
    if (*p == '-') neg = true, p++;
    for (; *p && *p != 'e'; p++) {
        if (*p != '.') digits[nd++] = *p;
    }
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *buf = weir_tmp_alloc(48);
    size_t n = 0;
    if (neg) buf[n++] = '-';
    if (nd == 1 && digits[0] == '0') {
        memcpy(buf + n, "0.0", 3);
        return (weir_bytes){(uint8_t *)buf, n + 3};
    }
    int kk = exp10 + 1; /* position of the decimal point */
    int len = (int)nd;
    if (len <= kk && kk <= 16) {
        memcpy(buf + n, digits, nd), n += nd;
        for (int i = len; i < kk; i++) buf[n++] = '0';
        buf[n++] = '.', buf[n++] = '0';
    } else if (0 < kk && kk <= 16) {
        memcpy(buf + n, digits, (size_t)kk), n += (size_t)kk;
        buf[n++] = '.';
        memcpy(buf + n, digits + kk, nd - (size_t)kk), n += nd - (size_t)kk;
    } else if (-5 < kk && kk <= 0) {
        buf[n++] = '0', buf[n++] = '.';
        for (int i = kk; i < 0; i++) buf[n++] = '0';
        memcpy(buf + n, digits, nd), n += nd;
    } else {
        buf[n++] = digits[0];
        if (nd > 1) {
            buf[n++] = '.';
            memcpy(buf + n, digits + 1, nd - 1), n += nd - 1;
        }
        n += (size_t)snprintf(buf + n, 8, "e%+d", kk - 1);
    }
    return (weir_bytes){(uint8_t *)buf, n};
}

/* String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD, so
 * messages and topic names crossing the WIT boundary are valid strings. */
weir_bytes weir__utf8_lossy(weir_bytes b) {
    if (!b.ptr) return WEIR_LIT("");
    if (weir_utf8_valid(b)) return b;
    uint8_t *buf = weir_tmp_alloc(b.len * 3);
    size_t n = 0, i = 0;
    while (i < b.len) {
        uint8_t c = b.ptr[i];
        if (c < 0x80) {
            buf[n++] = c;
            i++;
            continue;
        }
        size_t need = 0;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        size_t k = 1;
        bool ok = need > 0;
        if (ok) {
            for (; k <= need; k++) {
                if (i + k >= b.len) { ok = false; break; }
                uint8_t d = b.ptr[i + k];
                if (k == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80) { ok = false; break; }
            }
        }
        if (ok) {
            memcpy(buf + n, b.ptr + i, need + 1);
            n += need + 1;
            i += need + 1;
        } else {
            n += weir_utf8_encode(0xFFFD, buf + n);
            i += k; /* the lead byte plus the valid continuation bytes seen */
        }
    }
    return (weir_bytes){buf, n};
}
