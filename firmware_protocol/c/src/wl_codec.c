/*
 * Byte-level codecs of the wirelet protocol: CRC-32, COBS, a minimal msgpack writer and reader,
 * and schema-driven message validation (tables in wl_schema.c).
 */
#include "wl_internal.h"

/* --- small helpers ----------------------------------------------------------------------------- */

void wl_copy(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    while (n--) *d++ = *s++;
}

void wl_move(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else if (d > s) {
        d += n;
        s += n;
        while (n--) *--d = *--s;
    }
}

void wl_zero(void *dst, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    while (n--) *d++ = 0;
}

size_t wl_strlen(const char *s)
{
    size_t n = 0;
    if (!s) return 0;
    while (s[n]) n++;
    return n;
}

size_t wl_rom_strlen(const char *s)
{
    size_t n = 0;
    while (wl_rom_u8(s + n)) n++;
    return n;
}

int wl_rom_streq(const char *rom, const char *ram)
{
    size_t i = 0;
    for (;;) {
        uint8_t a = wl_rom_u8(rom + i);
        if (a != (uint8_t)ram[i]) return 0;
        if (!a) return 1;
        i++;
    }
}

void wl_rom_copy(char *dst, const char *src, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) dst[i] = (char)wl_rom_u8(src + i);
}

/* --- CRC-32/ISO-HDLC, a nibble at a time (64 bytes of table) ---------------------------------- */

static const uint32_t crc_nibble[16] WL_ROM = {
    0x00000000UL, 0x1db71064UL, 0x3b6e20c8UL, 0x26d930acUL, 0x76dc4190UL, 0x6b6b51f4UL,
    0x4db26158UL, 0x5005713cUL, 0xedb88320UL, 0xf00f9344UL, 0xd6d6a3e8UL, 0xcb61b38cUL,
    0x9b64c2b0UL, 0x86d3d2d4UL, 0xa00ae278UL, 0xbdbdf21cUL};

uint32_t wl_crc32_update(uint32_t crc, const uint8_t *data, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ wl_rom_u32(&crc_nibble[crc & 15u]);
        crc = (crc >> 4) ^ wl_rom_u32(&crc_nibble[crc & 15u]);
    }
    return ~crc;
}

/* --- COBS ------------------------------------------------------------------------------------- */

int wl_cobs_decode(uint8_t *buf, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len) {
        uint8_t code = buf[r++];
        size_t run;
        if (code == 0) return -1;
        run = (size_t)code - 1;
        if (run > len - r) return -1;
        wl_move(buf + w, buf + r, run);
        w += run;
        r += run;
        if (code != 0xFF && r < len) buf[w++] = 0;
    }
    return (int)w;
}

typedef struct cobs_out {
    uint8_t chunk[48];
    size_t used;
    size_t total;
    wl_sink sink;
    void *ctx;
} cobs_out;

static void cobs_put(cobs_out *o, uint8_t b)
{
    o->chunk[o->used++] = b;
    o->total++;
    if (o->used == sizeof o->chunk) {
        o->sink(o->ctx, o->chunk, o->used);
        o->used = 0;
    }
}

/* Byte `k` of the pieces laid end to end. */
static uint8_t piece_at(const wl_piece *pieces, size_t k)
{
    while (k >= pieces->len) k -= (pieces++)->len;
    return pieces->data[k];
}

size_t wl_cobs_write_pieces(const wl_piece *pieces, size_t count, wl_sink out, void *ctx)
{
    cobs_out o;
    size_t total = 0, i = 0, p;
    for (p = 0; p < count; p++) total += pieces[p].len;
    o.used = 0;
    o.total = 0;
    o.sink = out;
    o.ctx = ctx;
    for (;;) {
        size_t start = i, count_nz = 0, k;
        while (i < total && piece_at(pieces, i) != 0 && count_nz < 254) {
            i++;
            count_nz++;
        }
        cobs_put(&o, (uint8_t)(count_nz + 1));
        for (k = start; k < start + count_nz; k++) cobs_put(&o, piece_at(pieces, k));
        if (i >= total) break;
        if (count_nz < 254) i++; /* the zero this block stands for */
    }
    cobs_put(&o, 0);
    if (o.used) out(ctx, o.chunk, o.used);
    return o.total;
}

size_t wl_cobs_write(const uint8_t *data, size_t len, const uint8_t *tail, size_t tail_len,
                     wl_sink out, void *ctx)
{
    wl_piece pieces[2];
    pieces[0].data = data;
    pieces[0].len = len;
    pieces[1].data = tail;
    pieces[1].len = tail_len;
    return wl_cobs_write_pieces(pieces, 2, out, ctx);
}

/* --- frame reception -------------------------------------------------------------------------- */

int wl_rx_push(uint8_t *buf, uint16_t *len, uint8_t *discarding, size_t limit, uint8_t byte,
               wirelet_stats *stats)
{
    if (byte == 0) {
        int complete = !*discarding && *len > 0;
        *discarding = 0;
        return complete;
    }
    if (*discarding) return 0;
    if (*len >= limit) {
        /* No frame can be this long: drop it now so the buffer stays bounded. */
        stats->oversize++;
        *discarding = 1;
        *len = 0;
        return 0;
    }
    buf[(*len)++] = byte;
    return 0;
}

int wl_frame_check(uint8_t *buf, size_t len, size_t max_frame, wirelet_stats *stats)
{
    int n = wl_cobs_decode(buf, len);
    uint32_t crc;
    size_t end;
    if (n < 0) {
        stats->bad_cobs++;
        return -1;
    }
    if ((size_t)n > max_frame) {
        stats->oversize++;
        return -1;
    }
    if (n < WL_OVERHEAD) {
        stats->too_short++;
        return -1;
    }
    end = (size_t)n - WL_CRC;
    crc = ((uint32_t)buf[end] << 24) | ((uint32_t)buf[end + 1] << 16) |
          ((uint32_t)buf[end + 2] << 8) | buf[end + 3];
    if (wl_crc32_update(0, buf, end) != crc) {
        stats->bad_crc++;
        return -1;
    }
    return n;
}

/* --- msgpack writer -------------------------------------------------------------------------- */

void wl_w_init(wl_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

/* The length keeps counting past the capacity (nothing more is stored), so a writer with
 * capacity 0 measures an encoding. */
void wl_w_byte(wl_writer *w, uint8_t b)
{
    if (w->len < w->cap)
        w->buf[w->len] = b;
    else
        w->overflow = 1;
    w->len++;
}

void wl_w_raw(wl_writer *w, const void *data, size_t len)
{
    if (w->len > w->cap || len > w->cap - w->len)
        w->overflow = 1;
    else
        wl_copy(w->buf + w->len, data, len);
    w->len += len;
}

static void w_be(wl_writer *w, uint8_t tag, uint64_t v, unsigned bytes)
{
    wl_w_byte(w, tag);
    while (bytes--) wl_w_byte(w, (uint8_t)(v >> (8 * bytes)));
}

static void w_header(wl_writer *w, uint32_t n, uint8_t fix, uint32_t fix_max, uint8_t tag16,
                     uint8_t tag32, uint8_t tag8)
{
    if (n <= fix_max && fix)
        wl_w_byte(w, (uint8_t)(fix | n));
    else if (tag8 && n <= 0xFF)
        w_be(w, tag8, n, 1);
    else if (n <= 0xFFFF)
        w_be(w, tag16, n, 2);
    else
        w_be(w, tag32, n, 4);
}

void wl_w_map(wl_writer *w, uint32_t n) { w_header(w, n, 0x80, 15, 0xde, 0xdf, 0); }
void wl_w_array(wl_writer *w, uint32_t n) { w_header(w, n, 0x90, 15, 0xdc, 0xdd, 0); }

void wl_w_uint(wl_writer *w, uint64_t v)
{
    if (v <= 0x7F)
        wl_w_byte(w, (uint8_t)v);
    else if (v <= 0xFF)
        w_be(w, 0xcc, v, 1);
    else if (v <= 0xFFFF)
        w_be(w, 0xcd, v, 2);
    else if (v <= 0xFFFFFFFFUL)
        w_be(w, 0xce, v, 4);
    else
        w_be(w, 0xcf, v, 8);
}

size_t wl_w_uint_size(uint64_t v)
{
    return v <= 0x7F ? 1 : v <= 0xFF ? 2 : v <= 0xFFFF ? 3 : v <= 0xFFFFFFFFUL ? 5 : 9;
}

void wl_w_int(wl_writer *w, int64_t v)
{
    if (v >= 0) {
        wl_w_uint(w, (uint64_t)v);
    } else if (v >= -32) {
        wl_w_byte(w, (uint8_t)(0xe0 | (uint8_t)(v + 32)));
    } else if (v >= -128) {
        w_be(w, 0xd0, (uint64_t)v, 1);
    } else if (v >= -32768) {
        w_be(w, 0xd1, (uint64_t)v, 2);
    } else if (v >= -2147483647L - 1) {
        w_be(w, 0xd2, (uint64_t)v, 4);
    } else {
        w_be(w, 0xd3, (uint64_t)v, 8);
    }
}

void wl_w_nil(wl_writer *w) { wl_w_byte(w, 0xc0); }
void wl_w_bool(wl_writer *w, int v) { wl_w_byte(w, v ? 0xc3 : 0xc2); }

void wl_w_str(wl_writer *w, const char *s, size_t len)
{
    w_header(w, (uint32_t)len, 0xa0, 31, 0xda, 0xdb, 0xd9);
    wl_w_raw(w, s, len);
}

size_t wl_w_str_size(size_t len)
{
    uint32_t n = (uint32_t)len;
    return len + (n < 32 ? 1 : n < 256 ? 2 : n < 65536UL ? 3 : 5);
}

void wl_w_cstr(wl_writer *w, const char *s) { wl_w_str(w, s ? s : "", wl_strlen(s)); }

void wl_w_bin_header(wl_writer *w, size_t size)
{
    uint32_t len = (uint32_t)size;
    if (len <= 0xFF)
        w_be(w, 0xc4, len, 1);
    else if (len <= 0xFFFF)
        w_be(w, 0xc5, len, 2);
    else
        w_be(w, 0xc6, len, 4);
}

size_t wl_w_bin_header_size(size_t size)
{
    uint32_t len = (uint32_t)size;
    return len <= 0xFF ? 2 : len <= 0xFFFF ? 3 : 5;
}

void wl_w_bin(wl_writer *w, const void *data, size_t len)
{
    wl_w_bin_header(w, len);
    wl_w_raw(w, data, len);
}

/* --- msgpack reader -------------------------------------------------------------------------- */

static int r_be(const uint8_t *buf, size_t len, size_t *pos, unsigned bytes, uint64_t *out)
{
    uint64_t v = 0;
    if (bytes > len - *pos) return -1;
    while (bytes--) v = (v << 8) | buf[(*pos)++];
    *out = v;
    return 0;
}

int wl_mp_read(const uint8_t *buf, size_t len, size_t *pos, wl_item *it)
{
    uint8_t b;
    uint64_t v = 0;
    unsigned size = 0;
    if (*pos >= len) return -1;
    b = buf[(*pos)++];
    it->u = 0;
    it->i = 0;
    if (b <= 0x7f) {
        it->kind = WL_MP_UINT;
        it->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        it->kind = WL_MP_NINT;
        it->i = (int64_t)b - 256;
        return 0;
    }
    if (b <= 0x8f) {
        it->kind = WL_MP_MAP;
        it->u = b & 0x0f;
        it->data = *pos;
        return 0;
    }
    if (b <= 0x9f) {
        it->kind = WL_MP_ARRAY;
        it->u = b & 0x0f;
        it->data = *pos;
        return 0;
    }
    if (b <= 0xbf) {
        it->kind = WL_MP_STR;
        v = b & 0x1f;
        goto bytes_follow;
    }
    switch (b) {
    case 0xc0: it->kind = WL_MP_NIL; return 0;
    case 0xc2: case 0xc3: it->kind = WL_MP_BOOL; it->u = b & 1; return 0;
    case 0xc4: case 0xc5: case 0xc6:
        it->kind = WL_MP_BIN;
        if (r_be(buf, len, pos, 1u << (b - 0xc4), &v)) return -1;
        goto bytes_follow;
    case 0xc7: case 0xc8: case 0xc9:
        it->kind = WL_MP_EXT;
        if (r_be(buf, len, pos, 1u << (b - 0xc7), &v)) return -1;
        v += 1; /* the ext type byte */
        goto bytes_follow;
    case 0xca: case 0xcb:
        it->kind = WL_MP_FLOAT;
        v = b == 0xca ? 4 : 8;
        if (v > len - *pos) return -1;
        *pos += (size_t)v;
        return 0;
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        it->kind = WL_MP_UINT;
        return r_be(buf, len, pos, 1u << (b - 0xcc), &it->u);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        size = 1u << (b - 0xd0);
        if (r_be(buf, len, pos, size, &v)) return -1;
        if (size < 8 && (v >> (8 * size - 1)) & 1) v |= ~(uint64_t)0 << (8 * size);
        if ((int64_t)v >= 0) {
            it->kind = WL_MP_UINT; /* a non-negative int is an int, however it was written */
            it->u = v;
        } else {
            it->kind = WL_MP_NINT;
            it->i = (int64_t)v;
        }
        return 0;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        it->kind = WL_MP_EXT;
        v = 1 + (1u << (b - 0xd4));
        goto bytes_follow;
    case 0xd9: case 0xda: case 0xdb:
        it->kind = WL_MP_STR;
        if (r_be(buf, len, pos, 1u << (b - 0xd9), &v)) return -1;
        goto bytes_follow;
    case 0xdc: case 0xdd:
        it->kind = WL_MP_ARRAY;
        if (r_be(buf, len, pos, b == 0xdc ? 2 : 4, &it->u)) return -1;
        it->data = *pos;
        return 0;
    case 0xde: case 0xdf:
        it->kind = WL_MP_MAP;
        if (r_be(buf, len, pos, b == 0xde ? 2 : 4, &it->u)) return -1;
        it->data = *pos;
        return 0;
    default: /* 0xc1: never used */
        return -1;
    }
bytes_follow:
    if (v > len - *pos) return -1;
    it->u = it->kind == WL_MP_EXT ? v - 1 : v;
    it->data = *pos;
    *pos += (size_t)v;
    return 0;
}

int wl_mp_skip(const uint8_t *buf, size_t len, size_t *pos)
{
    /* Pending values to read; each needs at least one byte, so it stays bounded by len. */
    size_t pending = 1;
    while (pending) {
        wl_item it;
        uint64_t more;
        if (wl_mp_read(buf, len, pos, &it)) return -1;
        pending--;
        if (it.kind == WL_MP_ARRAY)
            more = it.u;
        else if (it.kind == WL_MP_MAP)
            more = it.u * 2;
        else
            continue;
        if (more > len - *pos || pending + more > len - *pos) return -1;
        pending += (size_t)more;
    }
    return 0;
}

/* --- validation ------------------------------------------------------------------------------ */

static const char p_missing[] WL_ROM = "missing";
static const char p_type[] WL_ROM = "wrong type";
static const char p_range[] WL_ROM = "out of range";
static const char p_zero[] WL_ROM = "must not be 0";
static const char p_long[] WL_ROM = "too long";
static const char p_empty[] WL_ROM = "must not be empty";
static const char p_utf8[] WL_ROM = "invalid UTF-8";
static const char p_count[] WL_ROM = "number of items out of range";
static const char p_not_msgpack[] WL_ROM = "not msgpack";
static const char p_not_map[] WL_ROM = "expected a map";
static const char p_unknown[] WL_ROM = "unknown message type";

#define F_U8(f, m) wl_rom_u8(&(f)->m)
#define F_U16(f, m) wl_rom_u16(&(f)->m)
#define F_PTR(f, m) wl_rom_ptr(&(f)->m)

static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t extra;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            extra = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return 0;
        if (extra > n - i - 1) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (i += 2; --extra; i++)
            if ((s[i] & 0xC0) != 0x80) return 0;
    }
    return 1;
}

/* A string item: type, byte limit, emptiness and UTF-8. Returns a problem or NULL. */
static const char *check_str(const wl_item *it, const uint8_t *buf, size_t max, int nonempty)
{
    if (it->kind != WL_MP_STR) return p_type;
    if (!utf8_valid(buf + it->data, (size_t)it->u)) return p_utf8;
    if (it->u > max) return p_long;
    if (nonempty && it->u == 0) return p_empty;
    return NULL;
}

static const char *check_value(const wl_field *f, const uint8_t *buf, size_t len, size_t pos)
{
    wl_item it;
    uint8_t kind = F_U8(f, kind), flags = F_U8(f, flags);
    uint16_t lo = F_U16(f, lo), hi = F_U16(f, hi);
    uint64_t max = 0;
    size_t i, start = pos;
    if (wl_mp_read(buf, len, &pos, &it)) return p_not_msgpack; /* cannot happen: pre-skipped */
    if (it.kind == WL_MP_NIL && (flags & WL_F_NULLABLE)) return NULL;
    switch (kind) {
    case WL_K_U8: max = 0xFF; goto uint;
    case WL_K_U16: max = 0xFFFF; goto uint;
    case WL_K_U32: max = 0xFFFFFFFFUL; goto uint;
    case WL_K_U64: max = ~(uint64_t)0; goto uint;
    case WL_K_RANGE: max = hi; goto uint;
    uint:
        if (it.kind == WL_MP_NINT) return p_range;
        if (it.kind != WL_MP_UINT) return p_type;
        if (it.u > max || (kind == WL_K_RANGE && it.u < lo)) return p_range;
        if ((flags & WL_F_NONZERO) && it.u == 0) return p_zero;
        return NULL;
    case WL_K_I64:
        if (it.kind == WL_MP_NINT) return NULL;
        if (it.kind != WL_MP_UINT) return p_type;
        return it.u > 0x7FFFFFFFFFFFFFFFULL ? p_range : NULL;
    case WL_K_BOOL:
        return it.kind == WL_MP_BOOL ? NULL : p_type;
    case WL_K_STR:
        return check_str(&it, buf, hi, flags & WL_F_NONEMPTY);
    case WL_K_BIN:
        if (it.kind != WL_MP_BIN) return p_type;
        return it.u > hi ? p_long : NULL;
    case WL_K_ARR_U8:
    case WL_K_ARR_STR:
    case WL_K_ARR_MAP:
        if (it.kind != WL_MP_ARRAY) return p_type;
        if (it.u < lo || it.u > hi) return p_count;
        for (i = 0; i < (size_t)it.u; i++) {
            wl_item e;
            size_t at = pos;
            if (kind == WL_K_ARR_MAP) {
                wl_msg sub;
                wl_error err;
                if (wl_decode_map((const wl_schema *)F_PTR(f, sub), buf, len, at, &sub, &err))
                    return err.field ? err.field : err.problem;
                if (wl_mp_skip(buf, len, &pos)) return p_not_msgpack;
                continue;
            }
            if (wl_mp_read(buf, len, &pos, &e)) return p_not_msgpack;
            if (kind == WL_K_ARR_U8) {
                if (e.kind == WL_MP_NINT) return p_range;
                if (e.kind != WL_MP_UINT) return p_type;
                if (e.u > 0xFF) return p_range;
            } else {
                const char *p = check_str(&e, buf, F_U8(f, item_max), flags & WL_F_NONEMPTY);
                if (p) return p;
            }
            pos = at;
            if (wl_mp_skip(buf, len, &pos)) return p_not_msgpack;
        }
        return NULL;
    case WL_K_ENV:
        if (it.kind != WL_MP_MAP) return p_type;
        if (it.u > hi) return p_count;
        for (i = 0; i < (size_t)it.u * 2; i++) {
            wl_item e;
            size_t at = pos;
            const char *p;
            if (wl_mp_read(buf, len, &pos, &e)) return p_not_msgpack;
            p = check_str(&e, buf, F_U8(f, item_max), (i % 2 == 0) && (flags & WL_F_NONEMPTY));
            if (p) return p;
            pos = at;
            if (wl_mp_skip(buf, len, &pos)) return p_not_msgpack;
        }
        return NULL;
    case WL_K_MAP: {
        wl_msg sub;
        wl_error err;
        if (it.kind != WL_MP_MAP) return p_type;
        if (wl_decode_map((const wl_schema *)F_PTR(f, sub), buf, len, start, &sub, &err))
            return err.field ? err.field : err.problem;
        return NULL;
    }
    default:
        return p_type;
    }
}

int wl_decode_map(const wl_schema *schema, const uint8_t *buf, size_t len, size_t pos,
                  wl_msg *msg, wl_error *err)
{
    wl_item it;
    uint32_t n, i;
    uint8_t count = wl_rom_u8(&schema->count);
    const wl_field *fields = (const wl_field *)wl_rom_ptr(&schema->fields);
    err->code = WIRELET_ERR_MALFORMED;
    err->schema = (const char *)wl_rom_ptr(&schema->name);
    err->field = NULL;
    msg->buf = buf;
    msg->len = len;
    msg->schema = schema;
    for (i = 0; i <= WL_MAX_KEY; i++) msg->off[i] = WL_ABSENT;
    if (wl_mp_read(buf, len, &pos, &it) || it.kind != WL_MP_MAP) {
        err->problem = p_not_map;
        return -1;
    }
    n = (uint32_t)it.u;
    for (i = 0; i < n; i++) {
        size_t kpos = pos;
        wl_item key;
        if (wl_mp_read(buf, len, &pos, &key)) goto not_msgpack;
        if (key.kind == WL_MP_UINT && key.u <= WL_MAX_KEY) {
            msg->off[key.u] = (uint16_t)pos; /* a repeated key: the last one wins */
        } else {
            pos = kpos;
            if (wl_mp_skip(buf, len, &pos)) goto not_msgpack;
        }
        if (wl_mp_skip(buf, len, &pos)) goto not_msgpack;
    }
    for (i = 0; i < count; i++) {
        const wl_field *f = &fields[i];
        uint8_t key = F_U8(f, key);
        const char *problem;
        if (msg->off[key] == WL_ABSENT) {
            if (F_U8(f, flags) & WL_F_REQUIRED) {
                err->field = (const char *)F_PTR(f, name);
                err->problem = p_missing;
                return -1;
            }
            continue;
        }
        problem = check_value(f, buf, len, msg->off[key]);
        if (problem) {
            err->field = (const char *)F_PTR(f, name);
            err->problem = problem;
            return -1;
        }
    }
    return 0;
not_msgpack:
    err->problem = p_not_msgpack;
    return -1;
}

int wl_decode(uint8_t type, const uint8_t *payload, size_t len, wl_msg *msg, wl_error *err)
{
    const wl_schema *schema = wl_schema_for(type);
    size_t pos = 0;
    err->schema = NULL;
    err->field = NULL;
    if (!schema) {
        err->code = WIRELET_ERR_UNSUPPORTED;
        err->problem = p_unknown;
        return -1;
    }
    if (wl_mp_skip(payload, len, &pos) || pos != len) {
        err->code = WIRELET_ERR_MALFORMED;
        err->schema = (const char *)wl_rom_ptr(&schema->name);
        err->problem = p_not_msgpack;
        return -1;
    }
    return wl_decode_map(schema, payload, len, 0, msg, err);
}

uint32_t wl_request_id_of(const uint8_t *payload, size_t len)
{
    size_t pos = 0;
    wl_item it;
    uint32_t n, i, found = 0;
    if (wl_mp_skip(payload, len, &pos) || pos != len) return 0;
    pos = 0;
    if (wl_mp_read(payload, len, &pos, &it) || it.kind != WL_MP_MAP) return 0;
    n = (uint32_t)it.u;
    for (i = 0; i < n; i++) {
        size_t kpos = pos;
        wl_item key, v;
        if (wl_mp_read(payload, len, &pos, &key)) return 0;
        if (!(key.kind == WL_MP_UINT && key.u == 0)) {
            pos = kpos;
            if (wl_mp_skip(payload, len, &pos) || wl_mp_skip(payload, len, &pos)) return 0;
            continue;
        }
        kpos = pos;
        if (wl_mp_read(payload, len, &pos, &v)) return 0;
        found = (v.kind == WL_MP_UINT && v.u <= 0xFFFFFFFFUL) ? (uint32_t)v.u : 0;
        pos = kpos;
        if (wl_mp_skip(payload, len, &pos)) return 0;
    }
    return found;
}

static size_t put_rom(char *dst, size_t n, size_t cap, const char *rom)
{
    size_t len = wl_rom_strlen(rom);
    if (len > cap - 1 - n) len = cap - 1 - n;
    wl_rom_copy(dst + n, rom, len);
    return n + len;
}

size_t wl_error_text(const wl_error *err, char *dst, size_t cap)
{
    static const char dot[] WL_ROM = ".";
    static const char colon[] WL_ROM = ": ";
    size_t n = 0;
    if (!cap) return 0;
    if (err->schema) n = put_rom(dst, n, cap, err->schema);
    if (err->field) {
        if (n) n = put_rom(dst, n, cap, dot);
        n = put_rom(dst, n, cap, err->field);
    }
    if (err->problem) {
        if (n) n = put_rom(dst, n, cap, colon);
        n = put_rom(dst, n, cap, err->problem);
    }
    dst[n] = 0;
    return n;
}

/* --- getters ---------------------------------------------------------------------------------- */

int wl_has(const wl_msg *m, uint8_t key) { return key <= WL_MAX_KEY && m->off[key] != WL_ABSENT; }

uint64_t wl_get_uint(const wl_msg *m, uint8_t key, uint64_t dflt)
{
    size_t pos;
    wl_item it;
    if (!wl_has(m, key)) return dflt;
    pos = m->off[key];
    if (wl_mp_read(m->buf, m->len, &pos, &it)) return dflt;
    if (it.kind == WL_MP_UINT || it.kind == WL_MP_BOOL) return it.u;
    if (it.kind == WL_MP_NINT) return (uint64_t)it.i;
    return dflt;
}

int wl_get_bool(const wl_msg *m, uint8_t key, int dflt) { return (int)wl_get_uint(m, key, (uint64_t)dflt); }

const uint8_t *wl_get_bytes(const wl_msg *m, uint8_t key, size_t *n)
{
    size_t pos;
    wl_item it;
    *n = 0;
    if (!wl_has(m, key)) return NULL;
    pos = m->off[key];
    if (wl_mp_read(m->buf, m->len, &pos, &it)) return NULL;
    if (it.kind != WL_MP_STR && it.kind != WL_MP_BIN) return NULL;
    *n = (size_t)it.u;
    return m->buf + it.data;
}

uint32_t wl_get_container(const wl_msg *m, uint8_t key, size_t *pos)
{
    wl_item it;
    size_t at;
    if (!wl_has(m, key)) return 0;
    at = m->off[key];
    if (wl_mp_read(m->buf, m->len, &at, &it)) return 0;
    if (it.kind != WL_MP_ARRAY && it.kind != WL_MP_MAP) return 0;
    *pos = at;
    return (uint32_t)it.u;
}

/* --- payload encoders -------------------------------------------------------------------------- */

void wl_enc_task_started(wl_writer *w, uint32_t request_id, const char *id, size_t id_len)
{
    wl_w_map(w, 2);
    wl_w_uint(w, 0);
    wl_w_uint(w, request_id);
    wl_w_uint(w, 1);
    wl_w_str(w, id, id_len);
}

void wl_enc_task_exited(wl_writer *w, uint32_t request_id, const char *id, size_t id_len,
                        int64_t exit_code, const char *reason, uint64_t out_end, uint64_t err_end)
{
    wl_w_map(w, 6);
    wl_w_uint(w, 0);
    wl_w_uint(w, request_id);
    wl_w_uint(w, 1);
    wl_w_str(w, id, id_len);
    wl_w_uint(w, 2);
    wl_w_int(w, exit_code);
    wl_w_uint(w, 3);
    wl_w_cstr(w, reason);
    wl_w_uint(w, 4);
    wl_w_uint(w, out_end);
    wl_w_uint(w, 5);
    wl_w_uint(w, err_end);
}

void wl_enc_task_output_head(wl_writer *w, const char *id, size_t id_len, uint8_t stream,
                             uint64_t offset, size_t n)
{
    wl_w_map(w, 4);
    wl_w_uint(w, 1);
    wl_w_str(w, id, id_len);
    wl_w_uint(w, 2);
    wl_w_uint(w, stream);
    wl_w_uint(w, 3);
    wl_w_uint(w, offset);
    wl_w_uint(w, 4);
    wl_w_bin_header(w, n);
}

void wl_enc_taskinfo(wl_writer *w, const wl_taskinfo *t)
{
    wl_w_map(w, 6);
    wl_w_uint(w, 1);
    wl_w_str(w, t->task_id, t->task_id_len);
    wl_w_uint(w, 2);
    wl_w_cstr(w, t->app);
    wl_w_uint(w, 3);
    wl_w_bool(w, t->running);
    wl_w_uint(w, 4);
    if (t->running)
        wl_w_nil(w);
    else
        wl_w_int(w, t->exit_code);
    wl_w_uint(w, 5);
    wl_w_uint(w, t->stdout_end);
    wl_w_uint(w, 6);
    wl_w_uint(w, t->stderr_end);
}

/* Envelope at its worst: fixmap, key 0 + uint32, key 1 + array16 header, key 2 + uint32. */
#define TASK_LIST_ENVELOPE (1 + 6 + 4 + 6)

void wl_enc_task_list_page(wl_writer *w, uint32_t request_id, uint32_t cursor, size_t table_size,
                           wl_table_entry entry, const void *ctx)
{
    size_t room = w->cap > TASK_LIST_ENVELOPE ? w->cap - TASK_LIST_ENVELOPE : 0, pos;
    uint32_t count = 0, next = 0, more = 0;
    wl_taskinfo info;
    for (pos = cursor; pos < table_size; pos++) {
        wl_writer probe;
        if (!entry(ctx, pos, &info)) continue;
        wl_w_init(&probe, NULL, 0);
        wl_enc_taskinfo(&probe, &info);
        if (probe.len > room && count > 0) {
            next = (uint32_t)pos;
            more = 1;
            break;
        }
        room = probe.len > room ? 0 : room - probe.len;
        count++;
    }
    wl_w_map(w, more ? 3 : 2);
    wl_w_uint(w, 0);
    wl_w_uint(w, request_id);
    wl_w_uint(w, 1);
    wl_w_array(w, count);
    for (pos = cursor; count && pos < table_size; pos++) {
        if (!entry(ctx, pos, &info)) continue;
        wl_enc_taskinfo(w, &info);
        count--;
    }
    if (more) {
        wl_w_uint(w, 2);
        wl_w_uint(w, next);
    }
}

void wl_enc_device_log(wl_writer *w, uint8_t level, const char *text, size_t len,
                       uint64_t uptime_ms)
{
    wl_w_map(w, 3);
    wl_w_uint(w, 1);
    wl_w_uint(w, level);
    wl_w_uint(w, 2);
    wl_w_str(w, text, len);
    wl_w_uint(w, 3);
    wl_w_uint(w, uptime_ms);
}

void wl_enc_error(wl_writer *w, uint32_t request_id, uint16_t code, const char *text, size_t len,
                  uint8_t msg_type)
{
    wl_w_map(w, 4);
    wl_w_uint(w, 0);
    wl_w_uint(w, request_id);
    wl_w_uint(w, 1);
    wl_w_uint(w, code);
    wl_w_uint(w, 2);
    wl_w_str(w, text, len);
    wl_w_uint(w, 3);
    wl_w_uint(w, msg_type);
}

void wl_enc_refuse(wl_writer *w, uint16_t code, const char *reason, const uint8_t *versions,
                   size_t n_versions)
{
    size_t i;
    wl_w_map(w, 3);
    wl_w_uint(w, 1);
    wl_w_uint(w, code);
    wl_w_uint(w, 2);
    wl_w_cstr(w, reason);
    wl_w_uint(w, 3);
    wl_w_array(w, (uint32_t)n_versions);
    for (i = 0; i < n_versions; i++) wl_w_uint(w, versions[i]);
}
