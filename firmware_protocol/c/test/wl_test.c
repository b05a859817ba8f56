/*
 * Host-only conformance helpers, exported from libwirelet_host.so for tests/clib (ctypes):
 * the golden vectors run through the library's own framing, decoder and encoders, and a device
 * harness (fake clock, captured output, test apps) drives the real wirelet_device.
 */
#include <stdlib.h>
#include <string.h>

#include "wirelet_apps.h"
#include "wl_internal.h"

/* --- framing -------------------------------------------------------------------------------- */

uint32_t wlt_crc32(const uint8_t *data, size_t n) { return wl_crc32_update(0, data, n); }

/* Decode a whole byte stream with a receiver of `max_frame`. Frames go to `out` as
 * [u16 LE length][frame]; counters = frames, bad_cobs, too_short, oversize, bad_crc. */
int wlt_decode_stream(const uint8_t *wire, size_t n, size_t max_frame, uint8_t *out, size_t cap,
                      uint32_t counters[5])
{
    static uint8_t buf[WL_COBS_LIMIT(WL_MAX_FRAME_CEILING) + 1];
    uint16_t len = 0;
    uint8_t discarding = 0;
    wirelet_stats stats;
    size_t i, used = 0;
    int frames = 0;
    memset(&stats, 0, sizeof stats);
    for (i = 0; i < n; i++) {
        if (wl_rx_push(buf, &len, &discarding, WL_COBS_LIMIT(max_frame), wire[i], &stats)) {
            int f = wl_frame_check(buf, len, max_frame, &stats);
            if (f > 0) {
                if (used + 2 + (size_t)f > cap) return -1;
                out[used] = (uint8_t)f;
                out[used + 1] = (uint8_t)(f >> 8);
                memcpy(out + used + 2, buf, (size_t)f);
                used += 2 + (size_t)f;
                frames++;
            }
            len = 0;
        } else if (wire[i] == 0) {
            len = 0;
        }
    }
    counters[0] = (uint32_t)frames;
    counters[1] = stats.bad_cobs;
    counters[2] = stats.too_short;
    counters[3] = stats.oversize;
    counters[4] = stats.bad_crc;
    return frames;
}

typedef struct sink_buf {
    uint8_t *out;
    size_t cap, len;
} sink_buf;

static void to_buf(void *ctx, const uint8_t *data, size_t n)
{
    sink_buf *s = (sink_buf *)ctx;
    if (s->len + n <= s->cap) memcpy(s->out + s->len, data, n);
    s->len += n;
}

/* header + payload -> wire bytes (CRC, COBS, delimiter), as the device sends them. */
size_t wlt_frame_wire(const uint8_t *frame, size_t n, uint8_t *out, size_t cap)
{
    uint8_t crc[4];
    uint32_t c = wl_crc32_update(0, frame, n);
    sink_buf s;
    crc[0] = (uint8_t)(c >> 24);
    crc[1] = (uint8_t)(c >> 16);
    crc[2] = (uint8_t)(c >> 8);
    crc[3] = (uint8_t)c;
    s.out = out;
    s.cap = cap;
    s.len = 0;
    wl_cobs_write(frame, n, crc, 4, to_buf, &s);
    return s.len;
}

/* --- decoding to JSON ------------------------------------------------------------------------ */

typedef struct jw {
    char *buf;
    size_t cap, len;
} jw;

static void jc(jw *j, char c)
{
    if (j->len + 1 < j->cap) j->buf[j->len] = c;
    j->len++;
}

static void js(jw *j, const char *s)
{
    while (*s) jc(j, *s++);
}

static void ju(jw *j, uint64_t v)
{
    char tmp[24];
    size_t n = wirelet_fmt_u64(tmp, v), i;
    for (i = 0; i < n; i++) jc(j, tmp[i]);
}

static void jstr(jw *j, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    jc(j, '"');
    for (i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            jc(j, '\\');
            jc(j, (char)c);
        } else if (c < 0x20) {
            js(j, "\\u00");
            jc(j, hex[c >> 4]);
            jc(j, hex[c & 15]);
        } else {
            jc(j, (char)c);
        }
    }
    jc(j, '"');
}

static int json_map(jw *j, const wl_schema *s, const uint8_t *buf, size_t len, size_t pos);

static int json_item(jw *j, const uint8_t *buf, size_t len, size_t *pos, const wl_schema *sub)
{
    wl_item it;
    size_t i, at = *pos;
    static const char hex[] = "0123456789abcdef";
    if (sub) {
        if (json_map(j, sub, buf, len, at)) return -1;
        return wl_mp_skip(buf, len, pos);
    }
    if (wl_mp_read(buf, len, pos, &it)) return -1;
    switch (it.kind) {
    case WL_MP_NIL: js(j, "null"); break;
    case WL_MP_BOOL: js(j, it.u ? "true" : "false"); break;
    case WL_MP_UINT: ju(j, it.u); break;
    case WL_MP_NINT:
        jc(j, '-');
        ju(j, (uint64_t)0 - (uint64_t)it.i);
        break;
    case WL_MP_STR: jstr(j, buf + it.data, (size_t)it.u); break;
    case WL_MP_BIN:
        js(j, "{\"hex\": \"");
        for (i = 0; i < it.u; i++) {
            jc(j, hex[buf[it.data + i] >> 4]);
            jc(j, hex[buf[it.data + i] & 15]);
        }
        js(j, "\"}");
        break;
    case WL_MP_ARRAY:
        jc(j, '[');
        for (i = 0; i < it.u; i++) {
            if (i) js(j, ", ");
            if (json_item(j, buf, len, pos, NULL)) return -1;
        }
        jc(j, ']');
        break;
    case WL_MP_MAP: /* env: a list of [key, value] pairs, as the vectors write it */
        jc(j, '[');
        for (i = 0; i < it.u; i++) {
            if (i) js(j, ", ");
            jc(j, '[');
            if (json_item(j, buf, len, pos, NULL)) return -1;
            js(j, ", ");
            if (json_item(j, buf, len, pos, NULL)) return -1;
            jc(j, ']');
        }
        jc(j, ']');
        break;
    default: return -1;
    }
    return 0;
}

static int json_map(jw *j, const wl_schema *s, const uint8_t *buf, size_t len, size_t pos)
{
    wl_msg m;
    wl_error err;
    uint8_t i;
    int first = 1;
    if (wl_decode_map(s, buf, len, pos, &m, &err)) return -1;
    jc(j, '{');
    for (i = 0; i < s->count; i++) {
        const wl_field *f = &s->fields[i];
        size_t at = m.off[f->key];
        const wl_schema *sub = NULL;
        if (at == WL_ABSENT) continue;
        if (!first) js(j, ", ");
        first = 0;
        jc(j, '"');
        js(j, f->name);
        js(j, "\": ");
        if (f->kind == WL_K_MAP && buf[at] != 0xc0) sub = f->sub;
        if (f->kind == WL_K_ARR_MAP) {
            wl_item it;
            uint64_t k;
            if (wl_mp_read(buf, len, &at, &it)) return -1;
            jc(j, '[');
            for (k = 0; k < it.u; k++) {
                if (k) js(j, ", ");
                if (json_item(j, buf, len, &at, f->sub)) return -1;
            }
            jc(j, ']');
            continue;
        }
        if (json_item(j, buf, len, &at, sub)) return -1;
    }
    jc(j, '}');
    return 0;
}

/* Validate and decode a payload: 0 and JSON of the present fields in `out`; or -1 with the
 * ERROR code, the offending field name ("" if none) and the error text. */
int wlt_decode_json(uint8_t type, const uint8_t *p, size_t n, char *out, size_t cap, int *code,
                    char *field, size_t fcap)
{
    wl_msg m;
    wl_error err;
    jw j;
    field[0] = 0;
    *code = 0;
    if (wl_decode(type, p, n, &m, &err)) {
        *code = err.code;
        if (err.field) {
            strncpy(field, err.field, fcap - 1);
            field[fcap - 1] = 0;
        }
        wl_error_text(&err, out, cap);
        return -1;
    }
    j.buf = out;
    j.cap = cap;
    j.len = 0;
    if (json_map(&j, m.schema, p, n, 0)) return -2;
    if (j.len >= cap) return -3;
    out[j.len] = 0;
    return 0;
}

uint32_t wlt_request_id_of(const uint8_t *p, size_t n) { return wl_request_id_of(p, n); }

/* Decode a device -> gateway payload and encode it again with the device's own encoders.
 * Returns the length, or -1 (invalid) / -2 (not a type the device sends). */
int wlt_reencode(uint8_t type, const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
    wl_msg m;
    wl_error err;
    wl_writer w;
    size_t a, b, pos = 0;
    const uint8_t *s1, *s2;
    char text[300];
    if (wl_decode(type, p, n, &m, &err)) return -1;
    wl_w_init(&w, out, cap);
    switch (type) {
    case WL_TASK_STARTED:
        s1 = wl_get_bytes(&m, 1, &a);
        wl_enc_task_started(&w, (uint32_t)wl_get_uint(&m, 0, 0), (const char *)s1, a);
        break;
    case WL_TASK_EXITED:
        s1 = wl_get_bytes(&m, 1, &a);
        s2 = wl_get_bytes(&m, 3, &b);
        memcpy(text, s2, b);
        text[b] = 0;
        wl_enc_task_exited(&w, (uint32_t)wl_get_uint(&m, 0, 0), (const char *)s1, a,
                           (int64_t)wl_get_uint(&m, 2, 0), text, wl_get_uint(&m, 4, 0),
                           wl_get_uint(&m, 5, 0));
        break;
    case WL_TASK_OUTPUT:
        s1 = wl_get_bytes(&m, 1, &a);
        s2 = wl_get_bytes(&m, 4, &b);
        wl_enc_task_output_head(&w, (const char *)s1, a, (uint8_t)wl_get_uint(&m, 2, 0),
                                wl_get_uint(&m, 3, 0), b);
        wl_w_raw(&w, s2, b);
        if (wl_has(&m, 5)) {
            /* A binding frame, as send_record makes it from the stored record. */
            out[0] = 0x85;
            wl_w_uint(&w, 5);
            wl_w_uint(&w, wl_get_uint(&m, 5, 0));
        }
        break;
    case WL_TASK_DATA:
        s2 = wl_get_bytes(&m, 4, &b);
        wl_w_map(&w, 4);
        wl_w_uint(&w, 1);
        wl_w_uint(&w, wl_get_uint(&m, 1, 0));
        wl_w_uint(&w, 2);
        wl_w_uint(&w, wl_get_uint(&m, 2, 0));
        wl_w_uint(&w, 3);
        wl_w_uint(&w, wl_get_uint(&m, 3, 0));
        wl_w_uint(&w, 4);
        wl_w_bin_header(&w, b);
        wl_w_raw(&w, s2, b);
        break;
    case WL_TASK_LIST: {
        uint32_t count = wl_get_container(&m, 1, &pos), i;
        int next = wl_has(&m, 2);
        wl_w_map(&w, next ? 3 : 2);
        wl_w_uint(&w, 0);
        wl_w_uint(&w, wl_get_uint(&m, 0, 0));
        wl_w_uint(&w, 1);
        wl_w_array(&w, count);
        for (i = 0; i < count; i++) {
            wl_msg e;
            wl_taskinfo info;
            char app[40];
            if (wl_decode_map(wl_schema_named("TaskInfo"), p, n, pos, &e, &err)) return -1;
            info.task_id = (const char *)wl_get_bytes(&e, 1, &info.task_id_len);
            s2 = wl_get_bytes(&e, 2, &b);
            memcpy(app, s2, b);
            app[b] = 0;
            info.app = app;
            info.running = (uint8_t)wl_get_bool(&e, 3, 0);
            info.exit_code = (int32_t)wl_get_uint(&e, 4, 0);
            info.stdout_end = wl_get_uint(&e, 5, 0);
            info.stderr_end = wl_get_uint(&e, 6, 0);
            wl_enc_taskinfo(&w, &info);
            if (wl_mp_skip(p, n, &pos)) return -1;
        }
        if (next) {
            wl_w_uint(&w, 2);
            wl_w_uint(&w, wl_get_uint(&m, 2, 0));
        }
        break;
    }
    case WL_EXEC_OUTPUT:
        s1 = wl_get_bytes(&m, 3, &a);
        wl_w_map(&w, 4);
        wl_w_uint(&w, 0);
        wl_w_uint(&w, wl_get_uint(&m, 0, 0));
        wl_w_uint(&w, 1);
        wl_w_uint(&w, wl_get_uint(&m, 1, 0));
        wl_w_uint(&w, 2);
        wl_w_uint(&w, wl_get_uint(&m, 2, 0));
        wl_w_uint(&w, 3);
        wl_w_bin(&w, s1, a);
        break;
    case WL_EXEC_RESULT:
        s1 = wl_get_bytes(&m, 2, &a);
        s2 = wl_get_bytes(&m, 3, &b);
        wl_w_map(&w, wl_has(&m, 5) ? 7 : 5);
        wl_w_uint(&w, 0);
        wl_w_uint(&w, wl_get_uint(&m, 0, 0));
        wl_w_uint(&w, 1);
        wl_w_int(&w, (int64_t)wl_get_uint(&m, 1, 0));
        wl_w_uint(&w, 2);
        wl_w_bin(&w, s1, a);
        wl_w_uint(&w, 3);
        wl_w_bin(&w, s2, b);
        wl_w_uint(&w, 4);
        wl_w_bool(&w, wl_get_bool(&m, 4, 0));
        if (wl_has(&m, 5)) { /* streamed: the stream ends (the device writes both) */
            wl_w_uint(&w, 5);
            wl_w_uint(&w, wl_get_uint(&m, 5, 0));
            wl_w_uint(&w, 6);
            wl_w_uint(&w, wl_get_uint(&m, 6, 0));
        }
        break;
    case WL_DEVICE_LOG:
        s1 = wl_get_bytes(&m, 2, &a);
        wl_enc_device_log(&w, (uint8_t)wl_get_uint(&m, 1, 0), (const char *)s1, a,
                          wl_get_uint(&m, 3, 0));
        break;
    case WL_ERROR:
        s1 = wl_get_bytes(&m, 2, &a);
        wl_enc_error(&w, (uint32_t)wl_get_uint(&m, 0, 0), (uint16_t)wl_get_uint(&m, 1, 0),
                     (const char *)s1, a, (uint8_t)wl_get_uint(&m, 3, 0));
        break;
    case WL_REFUSE: {
        uint8_t versions[16];
        uint32_t count = wl_get_container(&m, 3, &pos), i;
        s1 = wl_get_bytes(&m, 2, &a);
        memcpy(text, s1, a);
        text[a] = 0;
        for (i = 0; i < count; i++) {
            wl_item it;
            if (wl_mp_read(p, n, &pos, &it)) return -1;
            versions[i] = (uint8_t)it.u;
        }
        wl_enc_refuse(&w, (uint16_t)wl_get_uint(&m, 1, 0), text, versions, count);
        break;
    }
    case WL_PING:
        wl_w_map(&w, 1);
        wl_w_uint(&w, 1);
        wl_w_uint(&w, wl_get_uint(&m, 1, 0));
        break;
    case WL_ACK:
        wl_w_map(&w, 0);
        break;
    default:
        return -2;
    }
    return w.overflow ? -1 : (int)w.len;
}

/* --- task-list paging over a given table (firmware_protocol/vectors/paging.json) ----------- */

typedef struct page_table {
    const char *const *ids; /* NULL: free slot */
    const char *const *apps;
    const uint8_t *running;
    const int64_t *exit_codes;
    const uint64_t *out_end, *err_end;
} page_table;

static int page_entry(const void *ctx, size_t pos, wl_taskinfo *info)
{
    const page_table *t = (const page_table *)ctx;
    if (!t->ids[pos]) return 0;
    info->task_id = t->ids[pos];
    info->task_id_len = strlen(t->ids[pos]);
    info->app = t->apps[pos];
    info->running = t->running[pos];
    info->exit_code = t->exit_codes[pos];
    info->stdout_end = t->out_end[pos];
    info->stderr_end = t->err_end[pos];
    return 1;
}

/* The TASK_LIST payload the device's paging builds for `cursor` in a frame of `max_frame`. */
int wlt_task_list_page(uint32_t request_id, uint32_t cursor, size_t max_frame, size_t n,
                       const char *const *ids, const char *const *apps, const uint8_t *running,
                       const int64_t *exit_codes, const uint64_t *out_end,
                       const uint64_t *err_end, uint8_t *out, size_t cap)
{
    page_table table;
    wl_writer w;
    table.ids = ids;
    table.apps = apps;
    table.running = running;
    table.exit_codes = exit_codes;
    table.out_end = out_end;
    table.err_end = err_end;
    wl_w_init(&w, out, max_frame - WL_OVERHEAD < cap ? max_frame - WL_OVERHEAD : cap);
    wl_enc_task_list_page(&w, request_id, cursor, n, page_entry, &table);
    return w.overflow ? -1 : (int)w.len;
}

/* --- device harness ---------------------------------------------------------------------------- */

#define H_APPS 12
#define H_OUT (1u << 20)

typedef struct harness {
    wirelet_device dev;
    wirelet_hal hal;
    wirelet_config cfg;
    wirelet_app apps[H_APPS];
    char names[H_APPS][40];
    char strings[7][80];
    uint32_t now;
    uint32_t next_boot_id;
    uint32_t reboots;
    uint8_t *out;
    size_t out_len;
    char rec[1 << 16]; /* the "rec" app's log: one line per start */
    size_t rec_len;
} harness;

static void h_write(void *ctx, const uint8_t *data, size_t len)
{
    harness *h = (harness *)ctx;
    if (h->out_len + len > H_OUT) abort(); /* the test must take output regularly */
    memcpy(h->out + h->out_len, data, len);
    h->out_len += len;
}

static uint32_t h_now(void *ctx) { return ((harness *)ctx)->now; }

static uint32_t h_random(void *ctx)
{
    harness *h = (harness *)ctx;
    return h->next_boot_id++;
}

static void h_reboot(void *ctx) { ((harness *)ctx)->reboots++; }

/* Test apps: argecho (prints its argv joined by spaces), rec (logs its argv, prints it, exits),
 * lines N (prints "line %05d\n" 0..N-1 as room allows), blink BYTES (prints BYTES x's, runs
 * until stopped, exits -15), refuse (start() refuses), nostop (no stop callback), stubborn
 * (ignores STOP: killed after the grace period). */
static harness *harness_of(wirelet_task *t) { return (harness *)(void *)wirelet_task_device(t); }

static int argecho_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                         const char *const *envp)
{
    int i;
    (void)envc;
    (void)envp;
    for (i = 0; i < argc; i++) {
        if (i) wirelet_write(t, WIRELET_STDOUT, " ", 1);
        wirelet_write(t, WIRELET_STDOUT, argv[i], strlen(argv[i]));
    }
    wirelet_write(t, WIRELET_STDOUT, "\n", 1);
    wirelet_exit(t, 0);
    return WIRELET_OK;
}

static int rec_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                     const char *const *envp)
{
    harness *h = harness_of(t);
    int i;
    (void)envc;
    (void)envp;
    for (i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (h->rec_len + n + 2 < sizeof h->rec) {
            if (i) h->rec[h->rec_len++] = ' ';
            memcpy(h->rec + h->rec_len, argv[i], n);
            h->rec_len += n;
        }
    }
    h->rec[h->rec_len++] = '\n';
    wirelet_exit(t, 0);
    return WIRELET_OK;
}

typedef struct lines_state {
    uint32_t total, done;
} lines_state;

static int lines_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                       const char *const *envp)
{
    lines_state *s = (lines_state *)wirelet_state(t);
    (void)envc;
    (void)envp;
    s->total = argc > 1 ? (uint32_t)atol(argv[1]) : 10;
    s->done = 0;
    return WIRELET_OK;
}

static void lines_step(wirelet_task *t)
{
    lines_state *s = (lines_state *)wirelet_state(t);
    char line[16];
    while (s->done < s->total) {
        memcpy(line, "line ", 5);
        line[5] = (char)('0' + s->done / 10000 % 10);
        line[6] = (char)('0' + s->done / 1000 % 10);
        line[7] = (char)('0' + s->done / 100 % 10);
        line[8] = (char)('0' + s->done / 10 % 10);
        line[9] = (char)('0' + s->done % 10);
        line[10] = '\n';
        line[11] = 0;
        if (!wirelet_print(t, line)) return;
        s->done++;
    }
    wirelet_exit(t, 0);
}

static int blink_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                       const char *const *envp)
{
    uint32_t *left = (uint32_t *)wirelet_state(t);
    (void)envc;
    (void)envp;
    *left = argc > 1 ? (uint32_t)atol(argv[1]) : 0;
    return WIRELET_OK;
}

static void blink_step(wirelet_task *t)
{
    uint32_t *left = (uint32_t *)wirelet_state(t);
    while (*left) {
        if (!wirelet_write(t, WIRELET_STDOUT, "x", 1)) return;
        (*left)--;
    }
    wirelet_sleep(t, 1000);
}

static void blink_stop(wirelet_task *t, uint32_t grace_ms)
{
    (void)grace_ms;
    wirelet_exit(t, -15);
}

static int refuse_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                        const char *const *envp)
{
    (void)argc;
    (void)argv;
    (void)envc;
    (void)envp;
    wirelet_print(t, "never seen\n");
    return WIRELET_ERR_TOO_LARGE;
}

static void nothing(wirelet_task *t) { (void)t; }

static void ignore_stop(wirelet_task *t, uint32_t grace_ms)
{
    (void)t;
    (void)grace_ms;
}

static int32_t vector_exec(wirelet_device *dev, wirelet_exec *ex, int argc, const char *const *argv)
{
    (void)dev;
    (void)argc;
    (void)argv;
    wirelet_exec_write(ex, WIRELET_STDOUT, "MemFree: 20 kB\n", 15);
    return 0;
}

/* More output than any frame holds, on both streams. */
static int32_t big_exec(wirelet_device *dev, wirelet_exec *ex, int argc, const char *const *argv)
{
    int i;
    (void)dev;
    (void)argc;
    (void)argv;
    for (i = 0; i < 600; i++) {
        wirelet_exec_write(ex, WIRELET_STDOUT, "o", 1);
        wirelet_exec_write(ex, WIRELET_STDERR, "e", 1);
    }
    return 3;
}

static int find_impl(const char *impl, wirelet_app *app)
{
    int i;
    static const wirelet_app tests[] = {
        {"argecho", argecho_start, nothing, NULL},
        {"rec", rec_start, nothing, NULL},
        {"lines", lines_start, lines_step, NULL},
        {"blink", blink_start, blink_step, blink_stop},
        {"refuse", refuse_start, nothing, NULL},
        {"nostop", lines_start, nothing, NULL},
        {"stubborn", lines_start, nothing, ignore_stop},
    };
    for (i = 0; i < WIRELET_REFERENCE_APP_COUNT; i++)
        if (!strcmp(impl, wirelet_reference_apps[i].name)) {
            *app = wirelet_reference_apps[i];
            return 0;
        }
    for (i = 0; i < (int)(sizeof tests / sizeof tests[0]); i++)
        if (!strcmp(impl, tests[i].name)) {
            *app = tests[i];
            return 0;
        }
    return -1;
}

/* identity: 7 strings (device_id, firmware_name, firmware_version, arch, vendor, product,
 * serial; NULL allowed for the last four). apps: "name=impl,name=impl" (impl defaults to name).
 * exec_kind: 0 none, 1 reference, 2 golden-vector, 3 more output than fits. timers_ms: rto_initial, rto_min, rto_max,
 * hello_interval, heartbeat, link_lost (0 = default), then output_frame_max. */
void *wlt_dev_create(const char *const identity[7], uint32_t memory_total, const char *apps,
                     uint32_t boot_id, int exec_kind, const uint32_t timers_ms[8],
                     uint32_t now_ms)
{
    harness *h = (harness *)calloc(1, sizeof *h);
    const char *p = apps;
    int i;
    if (!h) return NULL;
    h->out = (uint8_t *)malloc(H_OUT);
    for (i = 0; i < 7; i++) {
        if (identity[i]) strncpy(h->strings[i], identity[i], sizeof h->strings[i] - 1);
    }
    h->cfg.device_id = h->strings[0];
    h->cfg.firmware_name = h->strings[1];
    h->cfg.firmware_version = h->strings[2];
    h->cfg.arch = identity[3] ? h->strings[3] : NULL;
    h->cfg.vendor = identity[4] ? h->strings[4] : NULL;
    h->cfg.product = identity[5] ? h->strings[5] : NULL;
    h->cfg.serial = identity[6] ? h->strings[6] : NULL;
    h->cfg.memory_total = memory_total;
    while (p && *p && h->cfg.app_count < H_APPS) {
        char name[40], impl[40];
        size_t n = strcspn(p, ",");
        const char *eq = memchr(p, '=', n);
        size_t nn = eq ? (size_t)(eq - p) : n;
        memcpy(name, p, nn);
        name[nn] = 0;
        if (eq) {
            memcpy(impl, eq + 1, n - nn - 1);
            impl[n - nn - 1] = 0;
        } else {
            strcpy(impl, name);
        }
        if (find_impl(impl, &h->apps[h->cfg.app_count])) {
            free(h->out);
            free(h);
            return NULL;
        }
        strcpy(h->names[h->cfg.app_count], name);
        h->apps[h->cfg.app_count].name = h->names[h->cfg.app_count];
        h->cfg.app_count++;
        p += n;
        if (*p == ',') p++;
    }
    h->cfg.apps = h->apps;
    h->cfg.exec = exec_kind == 1   ? wirelet_reference_exec
                  : exec_kind == 2 ? vector_exec
                  : exec_kind == 3 ? big_exec
                                   : NULL;
    h->cfg.rto_initial_ms = timers_ms[0];
    h->cfg.rto_min_ms = timers_ms[1];
    h->cfg.rto_max_ms = timers_ms[2];
    h->cfg.hello_interval_ms = timers_ms[3];
    h->cfg.heartbeat_ms = timers_ms[4];
    h->cfg.link_lost_ms = timers_ms[5];

    h->hal.ctx = h;
    h->hal.write = h_write;
    h->hal.now_ms = h_now;
    h->hal.random32 = h_random;
    h->hal.reboot = h_reboot;
    h->next_boot_id = boot_id;
    h->now = now_ms;
    wirelet_init(&h->dev, &h->cfg, &h->hal);
    wirelet_set_output_frame_max(&h->dev, (uint16_t)timers_ms[6]);
    wirelet_set_line_rate(&h->dev, timers_ms[7]);
    return h;
}

void wlt_dev_free(void *hp)
{
    harness *h = (harness *)hp;
    free(h->out);
    free(h);
}

void wlt_dev_set_time(void *hp, uint32_t ms) { ((harness *)hp)->now = ms; }
void wlt_dev_feed(void *hp, const uint8_t *data, size_t n) { wirelet_feed(&((harness *)hp)->dev, data, n); }
void wlt_dev_poll(void *hp) { wirelet_poll(&((harness *)hp)->dev); }
uint32_t wlt_dev_idle(void *hp) { return wirelet_idle_ms(&((harness *)hp)->dev); }
int wlt_dev_is_up(void *hp) { return wirelet_is_up(&((harness *)hp)->dev); }
void wlt_dev_restart_link(void *hp) { wirelet_restart_link(&((harness *)hp)->dev); }
void wlt_dev_reboot(void *hp) { wirelet_reboot(&((harness *)hp)->dev); }
uint32_t wlt_dev_boot_id(void *hp) { return wirelet_boot_id(&((harness *)hp)->dev); }
uint32_t wlt_dev_reboots(void *hp) { return ((harness *)hp)->reboots; }
int wlt_dev_log(void *hp, uint8_t level, const char *text) { return wirelet_log(&((harness *)hp)->dev, level, text); }

size_t wlt_dev_take(void *hp, uint8_t *out, size_t cap)
{
    harness *h = (harness *)hp;
    size_t n = h->out_len < cap ? h->out_len : cap;
    memcpy(out, h->out, n);
    memmove(h->out, h->out + n, h->out_len - n);
    h->out_len -= n;
    return n;
}

size_t wlt_dev_out_len(void *hp) { return ((harness *)hp)->out_len; }

size_t wlt_dev_rec(void *hp, char *out, size_t cap)
{
    harness *h = (harness *)hp;
    size_t n = h->rec_len < cap ? h->rec_len : cap;
    memcpy(out, h->rec, n);
    return n;
}

/* Sequenced frames not yet acknowledged: in flight plus queued. */
uint32_t wlt_dev_pending(void *hp)
{
    const wirelet_device *d = &((harness *)hp)->dev;
    uint32_t n = 0;
    size_t at = 0;
    while (at < d->tx_used) {
        at += 2 + (size_t)(d->tx_buf[at] | (d->tx_buf[at + 1] << 8));
        n++;
    }
    return n;
}

uint32_t wlt_dev_inflight(void *hp) { return ((harness *)hp)->dev.tx_inflight; }
uint32_t wlt_dev_rto(void *hp) { return ((harness *)hp)->dev.rto; }

void wlt_dev_stats(void *hp, uint32_t out[14])
{
    memcpy(out, wirelet_get_stats(&((harness *)hp)->dev), 14 * sizeof(uint32_t));
}

size_t wlt_sizeof_device(void) { return sizeof(wirelet_device); }
