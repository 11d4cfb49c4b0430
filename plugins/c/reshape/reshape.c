/* Field-level map over typed records (the same plugin as the Rust one), the
 * conformance plugin of record formats: a deployment with `formats.value =
 * "avro"` hands it each order as JSON, and encodes what it emits with the
 * output schema.
 *
 * In: `{"id": long, "item": string, "qty": int}`. Out, with the same key:
 * the item upper-cased (ASCII letters; the SDK carries no Unicode tables),
 * the quantity doubled and the writer's schema id (the
 * `weir.value.schema-id` header; -1 without one) as `schema_id`. An item
 * named `unfit` gets its quantity as text, which no output schema of this
 * shape accepts: the conformance tests' bad output. A value that is not such
 * an order is rejected.
 *
 * The SDK has no JSON parser, so the value is read here, as serde_json reads
 * it into the Rust plugin's struct: one object, whose `id`, `item` and `qty`
 * may come in any order, each once, among other fields of any JSON (skipped,
 * but checked, nested to any depth as serde_json allows); integers must be
 * written as integers (`1.0` and `-0` are floats) within i64; strings are
 * UTF-8 with JSON's escapes. Anything else is rejected with what is wrong
 * and where. */
#include <weir.h>

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p, *end, *start;
    const char *error; /* the first error, with its byte offset */
    /* Made when first needed, as large as the value: */
    uint8_t *scratch; /* strings read to be compared or skipped */
    uint8_t *open;    /* skip_value's closing brackets */
} cursor;

typedef struct {
    int64_t id, qty;
    weir_bytes item;
} order;

static bool fail(cursor *c, const char *what) {
    if (!c->error) c->error = weir_format("%s at byte %zu", what, (size_t)(c->p - c->start));
    return false;
}

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Consumes `ch` after optional whitespace. */
static bool expect(cursor *c, uint8_t ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return fail(c, weir_format("expected `%c`", ch));
}

static bool hex4(cursor *c, uint32_t *v) {
    *v = 0;
    for (int k = 0; k < 4; k++, c->p++) {
        if (c->p >= c->end) return fail(c, "unterminated \\u escape");
        uint8_t h = *c->p;
        uint32_t d;
        if (h >= '0' && h <= '9') d = h - '0';
        else if (h >= 'a' && h <= 'f') d = h - 'a' + 10u;
        else if (h >= 'A' && h <= 'F') d = h - 'A' + 10u;
        else return fail(c, "invalid \\u escape");
        *v = *v * 16 + d;
    }
    return true;
}

/* Room for any string of the value: decoding never lengthens, an escape
 * being at least as long as its UTF-8. */
static uint8_t *room(const cursor *c) { return weir_tmp_alloc((size_t)(c->end - c->start) + 1); }

/* A string at the cursor (after whitespace), decoded into `buf` (NULL: the
 * cursor's scratch, which the next string overwrites) and *out. The value
 * is valid UTF-8 already; escapes must be JSON's, surrogates paired. */
static bool string(cursor *c, uint8_t *buf, weir_bytes *out) {
    if (!expect(c, '"')) return false;
    if (!buf) buf = c->scratch ? c->scratch : (c->scratch = room(c));
    size_t n = 0;
    for (;;) {
        if (c->p >= c->end) return fail(c, "unterminated string");
        uint8_t ch = *c->p;
        if (ch == '"') {
            c->p++;
            *out = weir_bytes_of(buf, n);
            return true;
        }
        if (ch < 0x20) return fail(c, "control character in a string");
        c->p++;
        if (ch != '\\') {
            buf[n++] = ch;
            continue;
        }
        if (c->p >= c->end) return fail(c, "unterminated string");
        uint8_t e = *c->p++;
        uint32_t u;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u':
            if (!hex4(c, &u)) return false;
            if (u >= 0xDC00 && u <= 0xDFFF) return fail(c, "lone trailing surrogate in a \\u escape");
            if (u >= 0xD800 && u <= 0xDBFF) {
                uint32_t lo;
                if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') {
                    return fail(c, "lone leading surrogate in a \\u escape");
                }
                c->p += 2;
                if (!hex4(c, &lo)) return false;
                if (lo < 0xDC00 || lo > 0xDFFF) return fail(c, "lone leading surrogate in a \\u escape");
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += weir_utf8_encode(u, buf + n);
            break;
        default:
            c->p--;
            return fail(c, "invalid escape");
        }
    }
}

static bool digit(const cursor *c) { return c->p < c->end && *c->p >= '0' && *c->p <= '9'; }

/* A number at the cursor (after whitespace), checked against JSON's grammar.
 * *integer: whether serde_json reads it as an integer, that is with neither
 * fraction nor exponent, and not `-0`; then *value is it, and *fits whether
 * it is within i64. */
static bool number(cursor *c, bool *integer, bool *fits, int64_t *value) {
    skip_ws(c);
    bool neg = c->p < c->end && *c->p == '-';
    if (neg) c->p++;
    if (!digit(c)) return fail(c, "invalid number");
    const uint8_t *first = c->p;
    if (*c->p == '0') c->p++;
    else while (digit(c)) c->p++;
    const uint8_t *last = c->p;
    *integer = true;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digit(c)) return fail(c, "invalid number");
        while (digit(c)) c->p++;
        *integer = false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digit(c)) return fail(c, "invalid number");
        while (digit(c)) c->p++;
        *integer = false;
    }
    if (neg && last - first == 1 && *first == '0') *integer = false; /* -0 */
    if (!*integer) return true;
    /* The magnitude, up to 2^63 (i64::MIN's). */
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t m = 0;
    *fits = true;
    for (const uint8_t *d = first; d < last; d++) {
        uint64_t v = (uint64_t)(*d - '0');
        if (m > (limit - v) / 10) {
            *fits = false;
            return true;
        }
        m = m * 10 + v;
    }
    *value = neg ? (int64_t)(0 - m) : (int64_t)m;
    return true;
}

/* Whether the cursor is at `word`. */
static bool literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return fail(c, "expected a JSON value");
    c->p += n;
    return true;
}

/* A scalar at the cursor (after whitespace): a string, number or literal. */
static bool skip_scalar(cursor *c) {
    weir_bytes s;
    bool integer, fits;
    int64_t v;
    switch (*c->p) {
    case '"': return string(c, NULL, &s);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    default:
        if (*c->p != '-' && !digit(c)) return fail(c, "expected a JSON value");
        return number(c, &integer, &fits, &v);
    }
}

/* Any JSON value at the cursor (after whitespace), checked and skipped.
 * Without recursion, and, as serde_json skips what it ignores, without a
 * depth limit: `open` holds the closing brackets of the enclosing arrays
 * and objects (at most one a byte of the value). */
static bool skip_value(cursor *c) {
    if (!c->open) c->open = room(c);
    uint8_t *open = c->open;
    size_t depth = 0;
    weir_bytes name;
    for (;;) {
        /* A value: a scalar, or the start of an array or object. */
        skip_ws(c);
        if (c->p >= c->end) return fail(c, "expected a JSON value");
        if (*c->p == '[' || *c->p == '{') {
            uint8_t close = *c->p == '[' ? ']' : '}';
            open[depth++] = close;
            c->p++;
            skip_ws(c);
            if (c->p < c->end && *c->p == close) {
                c->p++;
                depth--;
            } else {
                if (close == '}' && !(string(c, NULL, &name) && expect(c, ':'))) return false;
                continue; /* its first element */
            }
        } else if (!skip_scalar(c)) {
            return false;
        }
        /* After a value: the next element, or the ends of the enclosing. */
        for (;;) {
            if (depth == 0) return true;
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                if (open[depth - 1] == '}' && !(string(c, NULL, &name) && expect(c, ':'))) return false;
                break;
            }
            if (!expect(c, open[depth - 1])) return false;
            depth--;
        }
    }
}

/* Fails with "field `NAME`: expected WHAT, got `VALUE`" for the value
 * from `at` to the cursor, and puts the cursor back at it. */
static bool wrong_type(cursor *c, const char *name, const char *what, const uint8_t *at) {
    size_t n = (size_t)(c->p - at);
    c->p = at;
    return fail(c, weir_format("field `%s`: expected %s, got `%.*s`%s", name, what, (int)(n > 40 ? 40 : n),
                               (const char *)at, n > 40 ? "..." : ""));
}

/* Field `name` as a string. */
static bool string_field(cursor *c, const char *name, weir_bytes *value) {
    skip_ws(c);
    const uint8_t *at = c->p;
    if (c->p < c->end && *c->p == '"') {
        if (string(c, room(c), value)) return true;
        c->error = weir_format("field `%s`: %s", name, c->error);
        return false;
    }
    return skip_value(c) && wrong_type(c, name, "a string", at);
}

/* Field `name` as an i64. */
static bool i64_field(cursor *c, const char *name, int64_t *value) {
    skip_ws(c);
    const uint8_t *at = c->p;
    bool integer = false, fits = false;
    if (c->p < c->end && (*c->p == '-' || digit(c))) {
        if (!number(c, &integer, &fits, value)) return false;
        if (integer && fits) return true;
    } else if (!skip_value(c)) {
        return false;
    }
    return wrong_type(c, name, "an i64 integer", at);
}

/* The value as an order. */
static const char *parse_order(weir_bytes json, order *o) {
    cursor c = {json.ptr, json.ptr + json.len, json.ptr, NULL, NULL, NULL};
    static const char *const names[] = {"id", "item", "qty"};
    bool seen[3] = {false, false, false};
    if (!expect(&c, '{')) return weir_format("not a JSON object: %s", c.error);
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            weir_bytes name;
            if (!string(&c, NULL, &name) || !expect(&c, ':')) return c.error;
            int f = -1;
            for (int i = 0; i < 3; i++) {
                if (weir_bytes_eq(name, weir_str(names[i]))) f = i;
            }
            if (f >= 0 && seen[f]) return weir_format("duplicate field `%s`", names[f]);
            if (f >= 0) seen[f] = true;
            bool ok = f == 0   ? i64_field(&c, "id", &o->id)
                      : f == 1 ? string_field(&c, "item", &o->item)
                      : f == 2 ? i64_field(&c, "qty", &o->qty)
                               : skip_value(&c);
            if (!ok) return c.error;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (!expect(&c, '}')) return c.error;
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) {
        fail(&c, "trailing characters");
        return c.error;
    }
    for (int i = 0; i < 3; i++) {
        if (!seen[i]) return weir_format("missing field `%s`", names[i]);
    }
    return NULL;
}

/* The writer's schema id: the header as an i64 (Rust's `str::parse`: an
 * optional sign and ASCII digits), else -1. */
static int64_t schema_id(const weir_record *r) {
    const weir_header *h = weir_record_header(r, "weir.value.schema-id");
    if (!h || !h->value.ptr) return -1;
    const uint8_t *p = h->value.ptr, *end = p + h->value.len;
    bool neg = p < end && *p == '-';
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p == end) return -1;
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t m = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        uint64_t v = (uint64_t)(*p - '0');
        if (m > (limit - v) / 10) return -1;
        m = m * 10 + v;
    }
    return neg ? (int64_t)(0 - m) : (int64_t)m;
}

weir_status weir_process(const weir_record *r, weir_out *out) {
    if (!r->value.ptr) return weir_reject(out, "record has no value");
    if (!weir_utf8_valid(r->value)) return weir_reject(out, "value is not UTF-8 text");
    order o;
    const char *err = parse_order(r->value, &o);
    if (err) return weir_reject(out, "value is not an order: %s", err);
    /* Wrapping like i64 arithmetic in Rust's release build. */
    int64_t doubled = (int64_t)((uint64_t)o.qty * 2u);
    const char *quote = weir_bytes_eq(o.item, WEIR_LIT("unfit")) ? "\"" : "";
    weir_bytes item = weir_json_str(weir_ascii_upper(o.item));
    char *value = weir_format("{\"id\":%" PRId64 ",\"item\":%.*s,\"qty\":%s%" PRId64 "%s,\"schema_id\":%" PRId64 "}",
                              o.id, (int)item.len, (const char *)item.ptr, quote, doubled, quote, schema_id(r));
    weir_emit(out, &(weir_output){.key = r->key, .value = weir_str(value)});
    return WEIR_OK;
}
