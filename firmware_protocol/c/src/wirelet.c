/*
 * The device end of the wirelet link (PROTOCOL.md sections 5-9) and the task runtime on top.
 *
 * Outgoing sequenced messages are records in one byte buffer (tx_buf): the first tx_inflight
 * are sent and unacknowledged, the rest wait for window space. A record is kept until the
 * gateway acknowledges it, across link loss and gateway restarts (renumbered on a fresh
 * session), so task output is not lost while it fits. Task output is appended to the last record
 * while that is an unsent TASK_OUTPUT of the same task and stream, so small prints share frames.
 */
#include "wl_internal.h"

enum { ST_HANDSHAKE = 1, ST_UP = 2, ST_REFUSED = 3 };

/* device flags */
#define DF_ACK_PENDING 0x01
#define DF_PING_OUT 0x02
#define DF_RTT_VALID 0x04
#define DF_RTX_ARMED 0x08
#define DF_RX_DISCARD 0x10
#define DF_REBOOT 0x20
#define DF_IN_POLL 0x40 /* inside wirelet_feed/poll: a reboot waits until it returns */

/* task status */
enum { T_FREE = 0, T_RUNNING = 1, T_STOPPING = 2, T_FINISHED = 3 };
/* task flags */
#define TF_EXIT_PENDING 0x01 /* TASK_EXITED not queued yet (no room) */
#define TF_SLEEP 0x02
#define TF_KILLED 0x04
#define TF_STOPPED 0x08 /* ended after a STOP_TASK */
#define TF_STOP_CALLED 0x10
#define TF_BLOCKED 0x20 /* a write found no room: not stepped until records are freed */
#define TF_BOUND 0x40   /* this sequence space bound handle = slot to the task (TASK_HANDLES) */

/* Optional protocol features we offer in HELLO (PROTOCOL.md section 5). */
#define FEATURE_TASK_HANDLES 0x01u
#define OUR_FEATURES FEATURE_TASK_HANDLES
/* How a TASK_OUTPUT record goes out: as stored (the task id), binding its handle (the handle,
 * 0..127: key 5 added), or as TASK_DATA naming the handle (FORM_BY_HANDLE | handle). */
#define FORM_STORED 0xFFu
#define FORM_BY_HANDLE 0x80u
#define MAX_HANDLE 127u
#define BINDING_SIZE 2u /* key 5 and a handle below 128 */
#define PROTOCOL_VERSION 1
#define REC_HDR 2 /* record length prefix */
#define NO_OPEN 0xFFFFu
/* Room kept free of task output so a request can always be answered (a maximal TASK_EXITED is
 * 166 bytes; a TASK_LIST page or an ERROR adapts to what is free). */
#define REPLY_RESERVE ((size_t)REC_HDR + 192u)

static const char s_completed[] WL_ROM = "completed";
static const char s_error[] WL_ROM = "error";
static const char s_stopped[] WL_ROM = "stopped";
static const char s_killed[] WL_ROM = "killed";
static const char s_no_app[] WL_ROM = "no such app";
static const char s_no_task[] WL_ROM = "no such task";
static const char s_no_slots[] WL_ROM = "all task slots busy";
static const char s_too_large[] WL_ROM = "argv/env too large for this device";
static const char s_refused[] WL_ROM = "app refused to start";
static const char s_no_exec[] WL_ROM = "exec not supported";
static const char s_direction[] WL_ROM = "a gateway may not send this";
static const char s_version[] WL_ROM = "gateway chose a version not offered";

static const uint8_t our_versions[1] = {PROTOCOL_VERSION};

/* --- time --------------------------------------------------------------------------------------- */

static int due(uint32_t now, uint32_t at) { return (int32_t)(now - at) >= 0; }

static uint32_t cfg_ms(uint32_t value, uint32_t dflt) { return value ? value : dflt; }

static uint32_t clamp_rto(const wirelet_device *d, uint32_t rto)
{
    uint32_t lo = cfg_ms(d->config->rto_min_ms, 100), hi = cfg_ms(d->config->rto_max_ms, 4000);
    return rto < lo ? lo : rto > hi ? hi : rto;
}

static void rtt_sample(wirelet_device *d, uint32_t r)
{
    uint32_t r8 = r * 8;
    if (!(d->flags & DF_RTT_VALID)) {
        d->srtt8 = r8;
        d->rttvar8 = r8 / 2;
        d->flags |= DF_RTT_VALID;
    } else {
        uint32_t err = d->srtt8 > r8 ? d->srtt8 - r8 : r8 - d->srtt8;
        d->rttvar8 = (3 * d->rttvar8 + err) / 4;
        d->srtt8 = (7 * d->srtt8 + r8) / 8;
    }
    d->rto = clamp_rto(d, (d->srtt8 + 4 * d->rttvar8) / 8);
}

static void rtt_restore(wirelet_device *d)
{
    if (d->flags & DF_RTT_VALID)
        d->rto = clamp_rto(d, (d->srtt8 + 4 * d->rttvar8) / 8);
    else
        d->rto = clamp_rto(d, cfg_ms(d->config->rto_initial_ms, 500));
}

/* --- sending frames ---------------------------------------------------------------------------- */

static void hal_sink(void *ctx, const uint8_t *data, size_t len)
{
    const wirelet_hal *hal = ((wirelet_device *)ctx)->hal;
    hal->write(hal->ctx, data, len);
}

/* `bytes` more went to the UART: when they will have left it (ms). Without a line rate, now. */
static uint32_t departure(wirelet_device *d, size_t bytes)
{
    uint32_t rate = d->line_rate;
    if (!rate) return d->clock;
    if (due(d->clock, d->line_free_at)) d->line_free_at = d->clock;
    d->line_free_at += (uint32_t)((bytes * 1000u + rate - 1u) / rate);
    return d->line_free_at;
}

/* Write header+payload (already in `frame`) with its CRC, COBS-encoded; returns when its last
 * byte will have left the line. */
static uint32_t transmit(wirelet_device *d, const uint8_t *frame, size_t len)
{
    uint8_t crc[4];
    uint32_t c = wl_crc32_update(0, frame, len);
    crc[0] = (uint8_t)(c >> 24);
    crc[1] = (uint8_t)(c >> 16);
    crc[2] = (uint8_t)(c >> 8);
    crc[3] = (uint8_t)c;
    d->stats.frames_sent++;
    return departure(d, wl_cobs_write(frame, len, crc, 4, hal_sink, d));
}

/* Milliseconds from `then` to now, 0 if `then` is still ahead (a frame not yet off the line). */
static uint32_t since(const wirelet_device *d, uint32_t then)
{
    return due(d->clock, then) ? d->clock - then : 0;
}

static void put_header(uint8_t *h, uint8_t type, uint8_t flags, uint16_t seq, uint16_t ack)
{
    h[0] = PROTOCOL_VERSION;
    h[1] = type;
    h[2] = flags;
    h[3] = (uint8_t)(seq >> 8);
    h[4] = (uint8_t)seq;
    h[5] = (uint8_t)(ack >> 8);
    h[6] = (uint8_t)ack;
}

static size_t rec_cap(const wirelet_device *d) { return WIRELET_TX_BUFFER - d->ctrl_reserve; }

/* Largest frame we send: the gateway's limit, and never more than we accept ourselves. */
static size_t frame_limit(const wirelet_device *d)
{
    return d->peer_max_frame < WIRELET_MAX_FRAME ? d->peer_max_frame : WIRELET_MAX_FRAME;
}

/* Largest output frame: frame_limit(), capped by wirelet_set_output_frame_max(). */
static size_t output_limit(const wirelet_device *d)
{
    size_t limit = frame_limit(d), cap = d->output_max;
    return cap && cap < limit ? (cap < 64 ? 64 : cap) : limit;
}

/* The unsequenced-frame scratch area: the free tail of tx_buf. */
static void ctrl_writer(wirelet_device *d, wl_writer *w)
{
    size_t room = WIRELET_TX_BUFFER - d->tx_used - WL_HEADER;
    size_t limit = frame_limit(d) - WL_OVERHEAD;
    wl_w_init(w, d->tx_buf + d->tx_used + WL_HEADER, room < limit ? room : limit);
}

static uint32_t emit_ctrl(wirelet_device *d, uint8_t type, wl_writer *w)
{
    uint8_t *frame = d->tx_buf + d->tx_used;
    if (w->overflow) return d->clock;
    if (type <= WL_HELLO_REQUEST) {
        put_header(frame, type, 0, 0, 0); /* handshake frames: version 1, no ack */
    } else {
        put_header(frame, type, WL_FLAG_ACK, 0, d->rx_next);
        d->flags &= (uint8_t)~DF_ACK_PENDING;
    }
    return transmit(d, frame, WL_HEADER + w->len);
}

static void encode_hello(const wirelet_device *d, wl_writer *w)
{
    const wirelet_config *c = d->config;
    uint8_t i;
    wl_w_map(w, 17);
    wl_w_uint(w, 1);
    wl_w_array(w, 1);
    wl_w_uint(w, PROTOCOL_VERSION);
    wl_w_uint(w, 2);
    wl_w_cstr(w, c->device_id);
    wl_w_uint(w, 3);
    wl_w_uint(w, d->boot_id);
    wl_w_uint(w, 4);
    wl_w_cstr(w, c->firmware_name);
    wl_w_uint(w, 5);
    wl_w_cstr(w, c->firmware_version);
    wl_w_uint(w, 6);
    wl_w_array(w, c->app_count);
    for (i = 0; i < c->app_count; i++) wl_w_cstr(w, c->apps[i].name);
    wl_w_uint(w, 7);
    wl_w_uint(w, WIRELET_TASK_SLOTS);
    wl_w_uint(w, 8);
    wl_w_uint(w, c->memory_total);
    wl_w_uint(w, 9);
    wl_w_uint(w, WIRELET_MAX_FRAME);
    wl_w_uint(w, 10);
    wl_w_uint(w, WIRELET_WINDOW);
    wl_w_uint(w, 11);
    wl_w_uint(w, d->session_id);
    wl_w_uint(w, 12);
    wl_w_cstr(w, c->arch);
    wl_w_uint(w, 13);
    wl_w_uint(w, d->attempt);
    wl_w_uint(w, 14);
    wl_w_cstr(w, c->vendor);
    wl_w_uint(w, 15);
    wl_w_cstr(w, c->product);
    wl_w_uint(w, 16);
    wl_w_cstr(w, c->serial);
    wl_w_uint(w, 17);
    wl_w_uint(w, OUR_FEATURES);
}

static void send_hello(wirelet_device *d)
{
    wl_writer w;
    size_t room = WIRELET_TX_BUFFER - d->tx_used - WL_HEADER;
    /* A HELLO may be up to 512 bytes whatever the gateway's limit (section 5). */
    wl_w_init(&w, d->tx_buf + d->tx_used + WL_HEADER, room);
    encode_hello(d, &w);
    emit_ctrl(d, WL_HELLO, &w);
}

static void send_refuse(wirelet_device *d, uint16_t code, const char *rom_reason)
{
    char reason[48];
    wl_writer w;
    size_t n = wl_rom_strlen(rom_reason);
    wl_rom_copy(reason, rom_reason, n);
    reason[n] = 0;
    ctrl_writer(d, &w);
    wl_enc_refuse(&w, code, reason, our_versions, 1);
    emit_ctrl(d, WL_REFUSE, &w);
}

static uint32_t mem_used(const wirelet_device *d)
{
    if (d->hal->mem_used) return d->hal->mem_used(d->hal->ctx);
    return (uint32_t)sizeof(*d);
}

static void send_pong(wirelet_device *d, uint32_t nonce)
{
    wl_writer w;
    size_t count = 0, i, head;
    uint8_t *mark;
    ctrl_writer(d, &w);
    wl_w_map(&w, 2);
    wl_w_uint(&w, 1);
    wl_w_uint(&w, nonce);
    wl_w_uint(&w, 2);
    wl_w_map(&w, 3);
    wl_w_uint(&w, 1);
    wl_w_uint(&w, mem_used(d));
    wl_w_uint(&w, 2);
    wl_w_uint(&w, 0); /* CPU load is not measured */
    wl_w_uint(&w, 3);
    /* Per-task figures only while they fit the frame: the array header is patched after. */
    head = w.len;
    wl_w_byte(&w, 0xdc);
    wl_w_byte(&w, 0);
    wl_w_byte(&w, 0);
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) {
        const wirelet_task *t = &d->tasks[i];
        size_t before = w.len;
        if (t->status != T_RUNNING && t->status != T_STOPPING) continue;
        wl_w_map(&w, 3);
        wl_w_uint(&w, 1);
        wl_w_str(&w, t->id, t->id_len);
        wl_w_uint(&w, 2);
        wl_w_uint(&w, 0);
        wl_w_uint(&w, 3);
        wl_w_uint(&w, sizeof(*t));
        if (w.overflow) {
            w.len = before;
            w.overflow = 0;
            break;
        }
        count++;
    }
    if (w.overflow) return;
    /* Smallest array header (fixarray below 16): shift the entries down. */
    mark = w.buf + head;
    if (count < 16) {
        mark[0] = (uint8_t)(0x90 | count);
        wl_move(mark + 1, mark + 3, w.len - head - 3);
        w.len -= 2;
    } else {
        mark[1] = (uint8_t)(count >> 8);
        mark[2] = (uint8_t)count;
    }
    emit_ctrl(d, WL_PONG, &w);
}

static void send_ping(wirelet_device *d)
{
    wl_writer w;
    d->ping_nonce++;
    d->flags |= DF_PING_OUT;
    d->next_ping = d->clock + d->heartbeat_ms;
    ctrl_writer(d, &w);
    wl_w_map(&w, 1);
    wl_w_uint(&w, 1);
    wl_w_uint(&w, d->ping_nonce);
    d->ping_sent_at = emit_ctrl(d, WL_PING, &w);
}

static void send_ack(wirelet_device *d)
{
    wl_writer w;
    ctrl_writer(d, &w);
    wl_w_map(&w, 0);
    emit_ctrl(d, WL_ACK, &w);
}

/* --- records (sequenced frames kept until acknowledged) --------------------------------------- */

static uint16_t rec_len(const wirelet_device *d, size_t at)
{
    return (uint16_t)(d->tx_buf[at] | (d->tx_buf[at + 1] << 8));
}

static void set_rec_len(wirelet_device *d, size_t at, size_t len)
{
    d->tx_buf[at] = (uint8_t)len;
    d->tx_buf[at + 1] = (uint8_t)(len >> 8);
}

/* Offset of record number `index` (0 = oldest), or tx_used if there are fewer. */
static size_t rec_at(const wirelet_device *d, size_t index)
{
    size_t at = 0;
    while (index-- && at < d->tx_used) at += REC_HDR + rec_len(d, at);
    return at;
}

/* The growing output record becomes an ordinary one: its bin16 header shrinks to bin8 when the
 * data fits (smallest encoding, as the golden vectors have it). It is always the last record. */
static void close_open(wirelet_device *d)
{
    size_t at = d->tx_open, len, n;
    uint8_t *frame, *bin;
    if (at == NO_OPEN) return;
    d->tx_open = NO_OPEN;
    len = rec_len(d, at);
    frame = d->tx_buf + at + REC_HDR;
    n = len - d->open_head;
    if (n > 0xFF) return;
    bin = frame + d->open_head - 3; /* 0xc5 hi lo */
    bin[0] = 0xc4;
    bin[1] = (uint8_t)n;
    wl_move(bin + 2, bin + 3, n);
    set_rec_len(d, at, len - 1);
    d->tx_used--;
}

/* Start a record: a writer over the room left for records (`reserve` bytes stay free). */
static void rec_begin(wirelet_device *d, wl_writer *w, size_t reserve)
{
    size_t start = d->tx_used + REC_HDR + WL_HEADER, cap = rec_cap(d), room = 0;
    size_t limit = frame_limit(d) - WL_OVERHEAD;
    close_open(d);
    start = d->tx_used + REC_HDR + WL_HEADER;
    if (cap > d->tx_used + REC_HDR + WL_HEADER + reserve)
        room = cap - d->tx_used - REC_HDR - WL_HEADER - reserve;
    wl_w_init(w, d->tx_buf + start, room < limit ? room : limit);
}

/* Commit the record written with rec_begin; 0 if it did not fit (nothing kept). */
static int rec_commit(wirelet_device *d, uint8_t type, const wl_writer *w)
{
    size_t at = d->tx_used;
    if (w->overflow) return 0;
    set_rec_len(d, at, WL_HEADER + w->len);
    put_header(d->tx_buf + at + REC_HDR, type, 0, 0, 0);
    d->tx_used = (uint16_t)(at + REC_HDR + WL_HEADER + w->len);
    return 1;
}

/* Bytes to cut from a text so `encoded` fits `cap`, backed off to a UTF-8 character boundary. */
static size_t fit_text(const char *text, size_t len, size_t encoded, size_t cap)
{
    size_t excess = encoded > cap ? encoded - cap : 0;
    len = excess < len ? len - excess : 0;
    while (len && ((uint8_t)text[len] & 0xC0) == 0x80) len--;
    return len;
}

static void queue_error(wirelet_device *d, uint32_t request_id, uint8_t code, const char *text,
                        size_t len, uint8_t msg_type)
{
    wl_writer w, probe;
    rec_begin(d, &w, 0);
    /* The text is cut to what fits: an ERROR always fits a frame. */
    wl_w_init(&probe, NULL, 0);
    wl_enc_error(&probe, request_id, code, text, len, msg_type);
    len = fit_text(text, len, probe.len, w.cap);
    wl_enc_error(&w, request_id, code, text, len, msg_type);
    rec_commit(d, WL_ERROR, &w);
}

static void queue_error_rom(wirelet_device *d, uint32_t request_id, uint8_t code,
                            const char *rom_text, uint8_t msg_type)
{
    char text[48];
    size_t n = wl_rom_strlen(rom_text);
    if (n > sizeof text) n = sizeof text;
    wl_rom_copy(text, rom_text, n);
    queue_error(d, request_id, code, text, n, msg_type);
}

/* Where the task id of a TASK_OUTPUT record's payload is ({1: id, 2: .., 3: .., 4: ..} as
 * wirelet_write builds it): offset of its bytes in the frame, and length. 0 if not that shape. */
static int output_task_id(const uint8_t *frame, size_t len, size_t *id_at, size_t *id_len)
{
    const uint8_t *p = frame + WL_HEADER;
    size_t head;
    if (len < WL_HEADER + 4 || p[0] != 0x84 || p[1] != 0x01) return 0;
    if ((p[2] & 0xE0) == 0xA0) {
        *id_len = p[2] & 0x1Fu;
        head = 1;
    } else if (p[2] == 0xD9) {
        *id_len = p[3];
        head = 2;
    } else {
        return 0;
    }
    *id_at = WL_HEADER + 2 + head;
    return *id_at + *id_len <= len;
}

static wirelet_task *find_task(wirelet_device *d, const uint8_t *id, size_t n);

/* Decide how the record at `at` goes out as it gets its sequence number. With task handles,
 * a task's output names the task by its slot once a frame of this sequence space bound it:
 * frames arrive in order, so the gateway has seen the binding before. */
static uint8_t choose_form(wirelet_device *d, size_t at)
{
    const uint8_t *frame = d->tx_buf + at + REC_HDR;
    size_t len = rec_len(d, at), id_at, id_len;
    wirelet_task *t;
    uint8_t slot;
    if (!(d->features & FEATURE_TASK_HANDLES) || frame[1] != WL_TASK_OUTPUT) return FORM_STORED;
    if (!output_task_id(frame, len, &id_at, &id_len)) return FORM_STORED;
    t = find_task(d, frame + id_at, id_len);
    if (!t) return FORM_STORED; /* forgotten task: its id says it all */
    slot = (uint8_t)(t - d->tasks);
    if (slot > MAX_HANDLE) return FORM_STORED;
    if (t->flags & TF_BOUND) return (uint8_t)(FORM_BY_HANDLE | slot);
    /* Built before the session's features were known: no room for the binding key. */
    if (len + WL_CRC + BINDING_SIZE > frame_limit(d)) return FORM_STORED;
    t->flags |= TF_BOUND;
    return slot;
}

/* Put a record in flight: sequence number, current ack, CRC, out; `form` from choose_form. */
static uint32_t send_record(wirelet_device *d, size_t at, uint16_t seq, uint8_t form)
{
    uint8_t *frame = d->tx_buf + at + REC_HDR;
    size_t len = rec_len(d, at), id_at = 0, id_len = 0, n = 0, i;
    uint8_t head[WL_HEADER], prefix[3], suffix[2], crc[4];
    uint32_t c = 0;
    wl_piece pieces[5];
    put_header(frame, frame[1], WL_FLAG_SEQ | WL_FLAG_ACK, seq, d->rx_next);
    d->flags &= (uint8_t)~DF_ACK_PENDING;
    if (form == FORM_STORED || !output_task_id(frame, len, &id_at, &id_len)) {
        return transmit(d, frame, len);
    }
    for (i = 0; i < WL_HEADER; i++) head[i] = frame[i];
    pieces[n].data = head;
    pieces[n++].len = WL_HEADER;
    if (form & FORM_BY_HANDLE) {
        /* TASK_DATA {1: handle, 2: stream, 3: offset, 4: data}: the task id gives way. */
        head[1] = WL_TASK_DATA;
        prefix[0] = 0x84;
        prefix[1] = 0x01;
        prefix[2] = (uint8_t)(form & MAX_HANDLE);
        pieces[n].data = prefix;
        pieces[n++].len = 3;
        pieces[n].data = frame + id_at + id_len;
        pieces[n++].len = len - id_at - id_len;
    } else {
        /* The stored TASK_OUTPUT with key 5 binding the handle: one more map entry. */
        prefix[0] = 0x85;
        pieces[n].data = prefix;
        pieces[n++].len = 1;
        pieces[n].data = frame + WL_HEADER + 1;
        pieces[n++].len = len - WL_HEADER - 1;
        suffix[0] = 0x05;
        suffix[1] = form;
        pieces[n].data = suffix;
        pieces[n++].len = 2;
    }
    for (i = 0; i < n; i++) c = wl_crc32_update(c, pieces[i].data, pieces[i].len);
    crc[0] = (uint8_t)(c >> 24);
    crc[1] = (uint8_t)(c >> 16);
    crc[2] = (uint8_t)(c >> 8);
    crc[3] = (uint8_t)c;
    pieces[n].data = crc;
    pieces[n++].len = 4;
    d->stats.frames_sent++;
    return departure(d, wl_cobs_write_pieces(pieces, n, hal_sink, d));
}

static uint8_t send_window(const wirelet_device *d)
{
    return d->peer_window < WIRELET_WINDOW ? d->peer_window : WIRELET_WINDOW;
}

static void remove_records(wirelet_device *d, size_t at, size_t bytes)
{
    size_t i;
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) d->tasks[i].flags &= (uint8_t)~TF_BLOCKED;
    wl_move(d->tx_buf + at, d->tx_buf + at + bytes, d->tx_used - at - bytes);
    d->tx_used = (uint16_t)(d->tx_used - bytes);
    if (d->tx_open != NO_OPEN) d->tx_open = (uint16_t)(d->tx_open - bytes);
}

/* Move queued records into the window while there is room. */
static void pump(wirelet_device *d)
{
    size_t at;
    if (d->link_state != ST_UP) return;
    at = rec_at(d, d->tx_inflight);
    while (d->tx_inflight < send_window(d) && at < d->tx_used) {
        size_t len;
        if (at == d->tx_open) close_open(d);
        len = rec_len(d, at);
        if (len + WL_CRC > d->peer_max_frame) {
            /* Built for a gateway with a larger limit: this one cannot take it. */
            remove_records(d, at, REC_HDR + len);
            d->stats.rejected++;
            continue;
        }
        d->tx_retx[d->tx_inflight] = 0;
        d->tx_form[d->tx_inflight] = choose_form(d, at);
        d->tx_sent_at[d->tx_inflight] = send_record(d, at, d->tx_next_seq, d->tx_form[d->tx_inflight]);
        d->tx_next_seq++;
        d->tx_inflight++;
        if (!(d->flags & DF_RTX_ARMED)) {
            /* The timer of the oldest frame runs from when it has left the line. */
            d->flags |= DF_RTX_ARMED;
            d->retransmit_at = d->tx_sent_at[d->tx_inflight - 1] + d->rto;
        }
        at += REC_HDR + len;
    }
}

static void retransmit(wirelet_device *d, int backoff)
{
    size_t at = 0;
    uint8_t i;
    for (i = 0; i < d->tx_inflight; i++) {
        uint8_t *frame = d->tx_buf + at + REC_HDR;
        d->tx_retx[i] = 1;
        d->stats.retransmits++;
        d->tx_sent_at[i] = send_record(d, at, (uint16_t)((frame[3] << 8) | frame[4]), d->tx_form[i]);
        at += REC_HDR + rec_len(d, at);
    }
    if (backoff) d->rto = clamp_rto(d, d->rto * 2);
    if (d->tx_inflight) {
        d->flags |= DF_RTX_ARMED;
        d->retransmit_at = d->tx_sent_at[0] + d->rto;
    } else {
        d->flags &= (uint8_t)~DF_RTX_ARMED;
    }
}

static void on_ack(wirelet_device *d, uint16_t ack, int pure)
{
    const uint8_t *first = d->tx_buf + REC_HDR;
    uint16_t acked;
    uint8_t i, clean = 0;
    uint32_t sample = 0;
    size_t bytes;
    if (!d->tx_inflight) return;
    acked = (uint16_t)(ack - (uint16_t)((first[3] << 8) | first[4]));
    if (acked == 0 && pure) {
        /* A gap report: resend at once once the oldest frame had a round trip to arrive. */
        uint32_t wait = (d->flags & DF_RTT_VALID) ? d->srtt8 / 8 : cfg_ms(d->config->rto_min_ms, 100);
        if (due(d->clock, d->tx_sent_at[0]) && since(d, d->tx_sent_at[0]) >= wait) retransmit(d, 0);
        return;
    }
    if (acked == 0 || acked > d->tx_inflight) return; /* stale or duplicate */
    for (i = 0; i < acked; i++) {
        if (!d->tx_retx[i]) {
            sample = since(d, d->tx_sent_at[i]);
            clean = 1;
        }
    }
    bytes = rec_at(d, acked);
    remove_records(d, 0, bytes);
    for (i = acked; i < d->tx_inflight; i++) {
        d->tx_sent_at[i - acked] = d->tx_sent_at[i];
        d->tx_retx[i - acked] = d->tx_retx[i];
        d->tx_form[i - acked] = d->tx_form[i];
    }
    d->tx_inflight = (uint8_t)(d->tx_inflight - acked);
    if (clean)
        rtt_sample(d, sample);
    else
        rtt_restore(d);
    if (d->tx_inflight) {
        /* From now, or from when the oldest frame left if it has not yet. */
        d->retransmit_at = (due(d->clock, d->tx_sent_at[0]) ? d->clock : d->tx_sent_at[0]) + d->rto;
        d->flags |= DF_RTX_ARMED;
    } else {
        d->flags &= (uint8_t)~DF_RTX_ARMED;
    }
}

/* --- handshake ----------------------------------------------------------------------------------- */

static void schedule_hello(wirelet_device *d)
{
    uint32_t cap = cfg_ms(d->config->heartbeat_ms, 2000);
    d->next_hello = d->clock + d->hello_interval;
    d->hello_interval = d->hello_interval * 2 > cap ? cap : d->hello_interval * 2;
}

static void enter_handshake(wirelet_device *d)
{
    d->link_state = ST_HANDSHAKE;
    d->attempt++;
    d->hello_interval = cfg_ms(d->config->hello_interval_ms, 500);
    d->flags &= (uint8_t)~(DF_RTX_ARMED | DF_PING_OUT);
    send_hello(d);
    schedule_hello(d);
}

static void lose_link(wirelet_device *d)
{
    d->stats.link_losses++;
    enter_handshake(d);
}

/* Fresh session: both directions restart at 0; unacknowledged records are queued again. */
static void restart_sequence_space(wirelet_device *d)
{
    size_t i;
    for (i = 0; i < WIRELET_WINDOW; i++) d->tx_retx[i] = 0;
    /* The gateway of the new sequence space knows no handle: bind them again. */
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) d->tasks[i].flags &= (uint8_t)~TF_BOUND;
    d->tx_inflight = 0;
    d->tx_next_seq = 0;
    d->rx_next = 0;
    d->flags &= (uint8_t)~DF_RTX_ARMED;
}

static void on_welcome(wirelet_device *d, const wl_msg *m)
{
    uint32_t session;
    int resume;
    if ((uint32_t)wl_get_uint(m, 8, 0) != d->attempt) return; /* answers an older HELLO */
    if (wl_get_uint(m, 1, 0) != PROTOCOL_VERSION) {
        send_refuse(d, WIRELET_ERR_NO_COMMON_VERSION, s_version);
        d->link_state = ST_REFUSED;
        return;
    }
    session = (uint32_t)wl_get_uint(m, 2, 0);
    resume = wl_get_bool(m, 5, 0) && session == d->session_id;
    if (!resume) {
        if (d->session_id != 0 && d->session_id != session) d->stats.peer_resets++;
        restart_sequence_space(d);
    }
    d->session_id = session;
    d->peer_max_frame = (uint16_t)wl_get_uint(m, 3, WL_MIN_FRAME);
    d->peer_window = (uint8_t)wl_get_uint(m, 4, 1);
    d->features = (uint8_t)(wl_get_uint(m, 9, 0) & OUR_FEATURES);
    if (wl_get_uint(m, 6, 0)) d->heartbeat_ms = (uint32_t)wl_get_uint(m, 6, 0);
    if (wl_get_uint(m, 7, 0)) d->link_lost_ms = (uint32_t)wl_get_uint(m, 7, 0);
    d->stats.handshakes++;
    d->link_state = ST_UP;
    d->last_heard = d->clock;
    d->next_ping = d->clock + d->heartbeat_ms;
    d->flags &= (uint8_t)~(DF_PING_OUT | DF_ACK_PENDING);
    if (d->tx_inflight) retransmit(d, 0);
}

static void on_handshake_frame(wirelet_device *d, uint8_t type, const uint8_t *p, size_t n)
{
    wl_msg m;
    wl_error err;
    if (wl_decode(type, p, n, &m, &err)) {
        d->stats.rejected++;
        return;
    }
    if (d->link_state == ST_REFUSED) return;
    if (type == WL_HELLO_REQUEST) {
        if (d->link_state == ST_UP) {
            lose_link(d);
        } else {
            send_hello(d);
            schedule_hello(d);
        }
    } else if (type == WL_WELCOME) {
        if (d->link_state == ST_HANDSHAKE) on_welcome(d, &m);
    } else if (type == WL_REFUSE) {
        if (d->link_state == ST_HANDSHAKE) d->link_state = ST_REFUSED;
    }
}

/* --- tasks ------------------------------------------------------------------------------------- */

static int task_live(const wirelet_task *t) { return t->status == T_RUNNING || t->status == T_STOPPING; }

static const char *exit_reason(const wirelet_task *t)
{
    if (t->flags & TF_KILLED) return s_killed;
    if (t->flags & TF_STOPPED) return s_stopped;
    return t->exit_code == 0 ? s_completed : s_error;
}

/* Queue TASK_EXITED (answering `request_id`); 0 if there is no room yet. */
static int queue_exit_report(wirelet_device *d, wirelet_task *t, uint32_t request_id)
{
    char reason[12];
    const char *rom = exit_reason(t);
    size_t n = wl_rom_strlen(rom);
    wl_writer w;
    wl_rom_copy(reason, rom, n);
    reason[n] = 0;
    rec_begin(d, &w, 0);
    wl_enc_task_exited(&w, request_id, t->id, t->id_len, t->exit_code, reason, t->out_end[0],
                       t->out_end[1]);
    return rec_commit(d, WL_TASK_EXITED, &w);
}

static void finish(wirelet_device *d, wirelet_task *t, int32_t code, uint8_t how)
{
    if (!task_live(t)) return;
    if (d->tx_open != NO_OPEN && d->open_task == (uint8_t)(t - d->tasks)) close_open(d);
    t->status = T_FINISHED;
    t->exit_code = code;
    t->flags = (uint8_t)((t->flags & (TF_STOP_CALLED | TF_BOUND)) | how |
                         (t->stop_request ? TF_STOPPED : 0));
    t->age = ++d->age;
    if (!queue_exit_report(d, t, t->stop_request)) t->flags |= TF_EXIT_PENDING | TF_BLOCKED;
}

static wirelet_task *find_task(wirelet_device *d, const uint8_t *id, size_t n)
{
    size_t i, k;
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) {
        wirelet_task *t = &d->tasks[i];
        if (t->status == T_FREE || t->id_len != n) continue;
        for (k = 0; k < n && (uint8_t)t->id[k] == id[k]; k++) {
        }
        if (k == n) return t;
    }
    return NULL;
}

static int find_app(const wirelet_device *d, const uint8_t *name, size_t n)
{
    uint8_t i;
    for (i = 0; i < d->config->app_count; i++) {
        const char *a = d->config->apps[i].name;
        size_t k;
        for (k = 0; k < n && a[k] && (uint8_t)a[k] == name[k]; k++) {
        }
        if (k == n && a[k] == 0) return i;
    }
    return -1;
}

/* Turn the msgpack strings of an argv array (and an env map) into NUL-terminated C strings in
 * place: each string moves over its own header, env pairs become "KEY=VALUE". The payload is
 * unusable afterwards. Returns the number of pointers set, or -1 if more than `max`. */
static int strings_in_place(uint8_t *buf, size_t len, size_t pos, uint32_t count, int pairs,
                            const char **out, int max)
{
    uint32_t i;
    if ((int32_t)count > max) return -1;
    for (i = 0; i < count; i++) {
        size_t start = pos;
        wl_item key, value;
        if (wl_mp_read(buf, len, &pos, &key)) return -1;
        if (pairs) {
            size_t vstart = pos;
            if (wl_mp_read(buf, len, &pos, &value)) return -1;
            wl_move(buf + start, buf + key.data, (size_t)key.u);
            buf[start + (size_t)key.u] = '=';
            wl_move(buf + start + (size_t)key.u + 1, buf + value.data, (size_t)value.u);
            buf[start + (size_t)key.u + 1 + (size_t)value.u] = 0;
            (void)vstart;
        } else {
            wl_move(buf + start, buf + key.data, (size_t)key.u);
            buf[start + (size_t)key.u] = 0;
        }
        out[i] = (const char *)(buf + start);
    }
    return (int)count;
}

static wirelet_task *pick_slot(wirelet_device *d, wirelet_task *same_id)
{
    wirelet_task *best = NULL;
    size_t i;
    if (same_id) return same_id; /* a finished task id may be reused */
    for (i = 0; i < WIRELET_TASK_SLOTS; i++)
        if (d->tasks[i].status == T_FREE) return &d->tasks[i];
    /* Forget the oldest finished task whose exit has been reported. */
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) {
        wirelet_task *t = &d->tasks[i];
        if (t->status != T_FINISHED || (t->flags & TF_EXIT_PENDING)) continue;
        if (!best || (int32_t)(t->age - best->age) < 0) best = t;
    }
    return best;
}

static void on_start(wirelet_device *d, wl_msg *m, uint8_t *payload, size_t len)
{
    uint32_t req = (uint32_t)wl_get_uint(m, 0, 0);
    size_t id_len, app_len, pos_argv = 0, pos_env = 0, mark;
    const uint8_t *id = wl_get_bytes(m, 1, &id_len);
    const uint8_t *app_name = wl_get_bytes(m, 2, &app_len);
    uint32_t argc_raw = wl_get_container(m, 3, &pos_argv);
    uint32_t envc_raw = wl_get_container(m, 4, &pos_env);
    const char *ptrs[WIRELET_MAX_ARGS + 2];
    wirelet_task *t = find_task(d, id, id_len);
    const wirelet_app *app;
    int app_index, argc, envc, code;
    size_t i;
    if (t && task_live(t)) {
        /* Idempotent: a repeated START for a running task only confirms it. */
        wl_writer w;
        rec_begin(d, &w, 0);
        wl_enc_task_started(&w, req, t->id, t->id_len);
        rec_commit(d, WL_TASK_STARTED, &w);
        return;
    }
    app_index = find_app(d, app_name, app_len);
    if (app_index < 0) {
        queue_error_rom(d, req, WIRELET_ERR_NO_SUCH_APP, s_no_app, WL_START_TASK);
        return;
    }
    {
        size_t live = 0;
        for (i = 0; i < WIRELET_TASK_SLOTS; i++) live += task_live(&d->tasks[i]);
        if (live >= WIRELET_TASK_SLOTS) t = NULL;
        else t = pick_slot(d, t);
    }
    if (!t) {
        queue_error_rom(d, req, WIRELET_ERR_NO_SLOTS, s_no_slots, WL_START_TASK);
        return;
    }
    if (argc_raw + envc_raw > WIRELET_MAX_ARGS) {
        queue_error_rom(d, req, WIRELET_ERR_TOO_LARGE, s_too_large, WL_START_TASK);
        return;
    }
    /* Claim the slot before the payload's strings are rewritten. */
    wl_zero(t, sizeof *t);
    t->dev = d;
    t->app = (uint8_t)app_index;
    t->id_len = (uint8_t)id_len;
    wl_copy(t->id, id, id_len);
    t->id[id_len] = 0;
    t->status = T_RUNNING;
    t->age = ++d->age;
    argc = strings_in_place(payload, len, pos_argv, argc_raw, 0, ptrs, WIRELET_MAX_ARGS);
    envc = argc < 0 ? -1
                    : strings_in_place(payload, len, pos_env, envc_raw, 1, ptrs + argc + 1,
                                       WIRELET_MAX_ARGS - argc);
    if (envc < 0) { /* cannot happen after validation and the count check; be safe anyway */
        t->status = T_FREE;
        queue_error_rom(d, req, WIRELET_ERR_TOO_LARGE, s_too_large, WL_START_TASK);
        return;
    }
    ptrs[argc] = NULL;
    ptrs[argc + 1 + envc] = NULL;
    mark = d->tx_used;
    {
        wl_writer w;
        rec_begin(d, &w, 0);
        mark = d->tx_used;
        wl_enc_task_started(&w, req, t->id, t->id_len);
        rec_commit(d, WL_TASK_STARTED, &w);
    }
    app = &d->config->apps[app_index];
    code = app->start ? app->start(t, argc, ptrs, envc, ptrs + argc + 1) : WIRELET_OK;
    if (code != WIRELET_OK) {
        /* Refused: take back TASK_STARTED and anything start() printed; answer ERROR. */
        d->tx_open = NO_OPEN;
        d->tx_used = (uint16_t)mark;
        t->status = T_FREE;
        queue_error_rom(d, req, (uint8_t)code, s_refused, WL_START_TASK);
    }
}

static void on_stop(wirelet_device *d, const wl_msg *m)
{
    uint32_t req = (uint32_t)wl_get_uint(m, 0, 0);
    uint32_t grace = (uint32_t)wl_get_uint(m, 2, 0);
    size_t id_len;
    const uint8_t *id = wl_get_bytes(m, 1, &id_len);
    wirelet_task *t = find_task(d, id, id_len);
    const wirelet_app *app;
    if (!t) {
        queue_error_rom(d, req, WIRELET_ERR_NO_SUCH_TASK, s_no_task, WL_STOP_TASK);
        return;
    }
    if (t->status == T_FINISHED) {
        if (t->flags & TF_EXIT_PENDING)
            t->stop_request = req; /* the report still to be sent answers this request */
        else
            queue_exit_report(d, t, req); /* already over: say so again */
        return;
    }
    t->stop_request = req;
    t->status = T_STOPPING;
    t->kill_at = d->clock + grace;
    t->flags &= (uint8_t)~(TF_SLEEP | TF_BLOCKED);
    app = &d->config->apps[t->app];
    if (!app->stop) {
        finish(d, t, WIRELET_EXIT_STOPPED, 0);
    } else if (!(t->flags & TF_STOP_CALLED)) {
        t->flags |= TF_STOP_CALLED;
        app->stop(t, grace);
    }
}

static int table_entry(const void *ctx, size_t position, wl_taskinfo *info)
{
    const wirelet_device *d = (const wirelet_device *)ctx;
    const wirelet_task *t = &d->tasks[position];
    if (t->status == T_FREE) return 0;
    info->task_id = t->id;
    info->task_id_len = t->id_len;
    info->app = d->config->apps[t->app].name;
    info->running = (uint8_t)task_live(t);
    info->exit_code = t->exit_code;
    info->stdout_end = t->out_end[0];
    info->stderr_end = t->out_end[1];
    return 1;
}

static void on_list(wirelet_device *d, const wl_msg *m)
{
    wl_writer w;
    rec_begin(d, &w, 0);
    wl_enc_task_list_page(&w, (uint32_t)wl_get_uint(m, 0, 0), (uint32_t)wl_get_uint(m, 1, 0),
                          WIRELET_TASK_SLOTS, table_entry, d);
    rec_commit(d, WL_TASK_LIST, &w);
}

struct wirelet_exec {
    uint8_t *out[2];
    size_t len[2]; /* single-frame: bytes captured; streamed: stream ends (bytes queued) */
    size_t cap;
    uint8_t truncated;
    uint8_t streamed; /* the gateway asked for EXEC_OUTPUT pieces (EXEC key 4) */
    uint32_t req;
    wirelet_device *dev;
};

/* A streamed EXEC_RESULT (map of 7, request id, exit code, empty stdout/stderr, truncated,
 * two stream ends: at most 1 + 6 + 10 + 3 + 3 + 2 + 10 + 10 bytes) stays free of the pieces. */
#define EXEC_RESULT_RESERVE ((size_t)REC_HDR + WL_HEADER + 48u)

/* The open output record belongs to the running EXEC, not a task slot. */
#define EXEC_SLOT 0xFFu

/* Streamed exec: writes grow an open EXEC_OUTPUT record (as task output does, one record per
 * stream run, up to one gateway frame), queued in the transmit buffer. The command runs
 * synchronously (nothing is sent meanwhile), so what fits the buffer is what it can print;
 * the rest is cut and the result says `truncated`. */
static size_t exec_stream_write(wirelet_exec *ex, uint8_t stream, const uint8_t *src,
                                size_t len)
{
    wirelet_device *d = ex->dev;
    size_t taken = 0, i = (size_t)stream - 1, limit = frame_limit(d), cap = rec_cap(d);
    while (taken < len) {
        size_t n, rlen, at;
        size_t room = cap > d->tx_used + EXEC_RESULT_RESERVE
                          ? cap - d->tx_used - EXEC_RESULT_RESERVE
                          : 0;
        uint8_t *frame;
        if (d->tx_open == NO_OPEN || d->open_task != EXEC_SLOT || d->open_stream != stream) {
            /* fixmap, 0:req, 1:stream (2), 2:offset, key 3, bin16 header while it grows */
            size_t head = REC_HDR + WL_HEADER + 1 + 1 + wl_w_uint_size(ex->req) + 2 + 1 +
                          wl_w_uint_size(ex->len[i]) + 1 + 3;
            wl_writer w;
            if (head + 1 > room || head + 1 + WL_CRC - REC_HDR > limit) break;
            close_open(d);
            at = d->tx_used;
            w.buf = d->tx_buf + at + REC_HDR + WL_HEADER;
            w.cap = head - REC_HDR - WL_HEADER;
            w.len = 0;
            w.overflow = 0;
            wl_w_map(&w, 4);
            wl_w_uint(&w, 0);
            wl_w_uint(&w, ex->req);
            wl_w_uint(&w, 1);
            wl_w_uint(&w, stream);
            wl_w_uint(&w, 2);
            wl_w_uint(&w, ex->len[i]);
            wl_w_uint(&w, 3);
            wl_w_byte(&w, 0xc5); /* bin16 while it grows; shrunk on close */
            wl_w_byte(&w, 0);
            wl_w_byte(&w, 0);
            put_header(d->tx_buf + at + REC_HDR, WL_EXEC_OUTPUT, 0, 0, 0);
            set_rec_len(d, at, WL_HEADER + w.len);
            d->tx_used = (uint16_t)(at + REC_HDR + WL_HEADER + w.len);
            d->tx_open = (uint16_t)at;
            d->open_head = (uint16_t)(WL_HEADER + w.len);
            d->open_task = EXEC_SLOT;
            d->open_stream = stream;
            room = room > head ? room - head : 0;
        }
        at = d->tx_open;
        rlen = rec_len(d, at);
        n = len - taken;
        if (n > room) n = room;
        if (n > limit - WL_CRC - rlen) n = limit - WL_CRC - rlen;
        if (n == 0) {
            if (rlen + WL_CRC >= limit) {
                close_open(d); /* full frame: the next bytes start a new one */
                continue;
            }
            break;
        }
        wl_copy(d->tx_buf + d->tx_used, src + taken, n);
        d->tx_used = (uint16_t)(d->tx_used + n);
        set_rec_len(d, at, rlen + n);
        frame = d->tx_buf + at + REC_HDR;
        frame[d->open_head - 2] = (uint8_t)((rlen + n - d->open_head) >> 8);
        frame[d->open_head - 1] = (uint8_t)(rlen + n - d->open_head);
        ex->len[i] += n;
        taken += n;
    }
    if (taken < len) ex->truncated = 1;
    return taken;
}

size_t wirelet_exec_write(wirelet_exec *ex, uint8_t stream, const void *data, size_t len)
{
    size_t i, room;
    if (!ex || (stream != WIRELET_STDOUT && stream != WIRELET_STDERR)) return 0;
    i = (size_t)stream - 1;
    if (ex->streamed) return exec_stream_write(ex, stream, (const uint8_t *)data, len);
    room = ex->cap - ex->len[i];
    if (len > room) {
        len = room;
        ex->truncated = 1;
    }
    wl_copy(ex->out[i] + ex->len[i], data, len);
    ex->len[i] += len;
    return len;
}

static void on_exec(wirelet_device *d, wl_msg *m, uint8_t *payload, size_t len)
{
    uint32_t req = (uint32_t)wl_get_uint(m, 0, 0);
    size_t pos_argv = 0, prefix, room;
    uint32_t argc_raw = wl_get_container(m, 1, &pos_argv);
    const char *argv[WIRELET_MAX_ARGS + 1];
    wirelet_exec ex;
    wl_writer w;
    int argc;
    int32_t code;
    uint8_t *base;
    if (!d->config->exec) {
        queue_error_rom(d, req, WIRELET_ERR_UNSUPPORTED, s_no_exec, WL_EXEC);
        return;
    }
    {
        /* In the context of a task (kubectl exec into a container): it must exist. */
        size_t id_len;
        const uint8_t *id = wl_get_bytes(m, 3, &id_len);
        if (id_len && !find_task(d, id, id_len)) {
            queue_error_rom(d, req, WIRELET_ERR_NO_SUCH_TASK, s_no_task, WL_EXEC);
            return;
        }
    }
    argc = strings_in_place(payload, len, pos_argv, argc_raw, 0, argv, WIRELET_MAX_ARGS);
    if (argc < 0) {
        queue_error_rom(d, req, WIRELET_ERR_TOO_LARGE, s_too_large, WL_EXEC);
        return;
    }
    argv[argc] = NULL;
    if (wl_get_bool(m, 4, 0)) {
        /* Streamed (PROTOCOL.md section 9): pieces as written, then a result with the ends. */
        ex.streamed = 1;
        ex.req = req;
        ex.dev = d;
        ex.len[0] = ex.len[1] = 0;
        ex.truncated = 0;
        code = d->config->exec(d, &ex, argc, argv);
        rec_begin(d, &w, 0);
        wl_w_map(&w, 7);
        wl_w_uint(&w, 0);
        wl_w_uint(&w, req);
        wl_w_uint(&w, 1);
        wl_w_int(&w, code);
        wl_w_uint(&w, 2);
        wl_w_bin_header(&w, 0);
        wl_w_uint(&w, 3);
        wl_w_bin_header(&w, 0);
        wl_w_uint(&w, 4);
        wl_w_bool(&w, ex.truncated);
        wl_w_uint(&w, 5);
        wl_w_uint(&w, ex.len[0]);
        wl_w_uint(&w, 6);
        wl_w_uint(&w, ex.len[1]);
        rec_commit(d, WL_EXEC_RESULT, &w);
        return;
    }
    ex.streamed = 0;
    /* Capture both streams in the free record room, then assemble EXEC_RESULT over it:
     * map(1) 0:req(6) 1:code(10) 2:bin16 hdr(4) stdout 3:bin16 hdr(4) stderr 4:bool(2). */
    rec_begin(d, &w, 0);
    base = w.buf;
    prefix = 1 + 6 + 10 + 4;
    room = w.cap > prefix + 4 + 2 ? w.cap - prefix - 4 - 2 : 0;
    ex.cap = room / 2;
    ex.out[0] = base + prefix;
    /* stderr after stdout's room and its own key + bin16 header: assembling only moves down. */
    ex.out[1] = base + prefix + ex.cap + 4;
    ex.len[0] = ex.len[1] = 0;
    ex.truncated = 0;
    code = d->config->exec(d, &ex, argc, argv);
    /* Headers are at most as large as reserved, so data only ever moves down. */
    wl_w_map(&w, 5);
    wl_w_uint(&w, 0);
    wl_w_uint(&w, req);
    wl_w_uint(&w, 1);
    wl_w_int(&w, code);
    wl_w_uint(&w, 2);
    wl_w_bin_header(&w, ex.len[0]);
    wl_move(w.buf + w.len, ex.out[0], ex.len[0]);
    w.len += ex.len[0];
    wl_w_uint(&w, 3);
    wl_w_bin_header(&w, ex.len[1]);
    wl_move(w.buf + w.len, ex.out[1], ex.len[1]);
    w.len += ex.len[1];
    wl_w_uint(&w, 4);
    wl_w_bool(&w, ex.truncated);
    rec_commit(d, WL_EXEC_RESULT, &w);
}

/* --- receiving ------------------------------------------------------------------------------------ */

static void on_sequenced(wirelet_device *d, uint8_t type, uint16_t seq, uint8_t *p, size_t n)
{
    int16_t distance = (int16_t)(uint16_t)(seq - d->rx_next);
    wl_msg m;
    wl_error err;
    if (distance < 0) {
        d->stats.duplicates++;
        d->flags |= DF_ACK_PENDING; /* the gateway evidently missed our ack */
        return;
    }
    if (distance > 0) {
        d->stats.out_of_order++;
        d->flags |= DF_ACK_PENDING; /* a gap report: go-back-N resends from our ack */
        return;
    }
    if (type != WL_ERROR && d->tx_used + REPLY_RESERVE > rec_cap(d)) {
        /* No room to answer: leave it unacknowledged, the gateway resends it later. */
        d->stats.deferred++;
        return;
    }
    d->rx_next++;
    d->flags |= DF_ACK_PENDING;
    if (wl_decode(type, p, n, &m, &err)) {
        char text[64];
        size_t len;
        d->stats.rejected++;
        if (type == WL_ERROR) return; /* never answer an ERROR with an ERROR */
        len = wl_error_text(&err, text, sizeof text);
        queue_error(d, wl_request_id_of(p, n), err.code, text, len, type);
        return;
    }
    if (!(wl_rom_u8(&m.schema->senders) & WL_BY_GATEWAY)) {
        d->stats.rejected++;
        queue_error_rom(d, wl_request_id_of(p, n), WIRELET_ERR_WRONG_DIRECTION, s_direction, type);
        return;
    }
    switch (type) {
    case WL_START_TASK: on_start(d, &m, p, n); break;
    case WL_STOP_TASK: on_stop(d, &m); break;
    case WL_LIST_TASKS: on_list(d, &m); break;
    case WL_EXEC: on_exec(d, &m, p, n); break;
    default: break; /* ERROR from the gateway: nothing to do */
    }
}

static void on_pong(wirelet_device *d, const wl_msg *m)
{
    uint32_t rtt, backed_off;
    if (!(d->flags & DF_PING_OUT) || (uint32_t)wl_get_uint(m, 1, 0) != d->ping_nonce) return;
    d->flags &= (uint8_t)~DF_PING_OUT;
    rtt = since(d, d->ping_sent_at);
    backed_off = d->rto;
    rtt_sample(d, rtt);
    /* A PONG proves the line works, not that the gateway takes our frames: keep a backoff. */
    if (d->tx_inflight && d->tx_retx[0] && d->rto < backed_off) d->rto = backed_off;
}

static void on_frame(wirelet_device *d, uint8_t *f, size_t len)
{
    uint8_t type = f[1], flags = f[2];
    uint16_t seq = (uint16_t)((f[3] << 8) | f[4]), ack = (uint16_t)((f[5] << 8) | f[6]);
    uint8_t *p = f + WL_HEADER;
    size_t n = len - WL_OVERHEAD;
    wl_msg m;
    wl_error err;
    d->stats.frames_received++;
    if (type >= WL_HELLO && type <= WL_HELLO_REQUEST) {
        d->last_heard = d->clock;
        on_handshake_frame(d, type, p, n);
        return;
    }
    if (d->link_state != ST_UP || f[0] != PROTOCOL_VERSION) return;
    d->last_heard = d->clock;
    if (flags & WL_FLAG_ACK) on_ack(d, ack, type == WL_ACK);
    if (flags & WL_FLAG_SEQ) {
        on_sequenced(d, type, seq, p, n);
    } else if (type == WL_PING || type == WL_PONG) {
        if (wl_decode(type, p, n, &m, &err)) {
            d->stats.rejected++;
            return;
        }
        if (type == WL_PING)
            send_pong(d, (uint32_t)wl_get_uint(&m, 1, 0));
        else
            on_pong(d, &m);
    } else if (type != WL_ACK) {
        d->stats.rejected++; /* unknown unsequenced type: nothing to acknowledge */
    }
}

/* --- public API ----------------------------------------------------------------------------------- */

static uint32_t read_clock(wirelet_device *d)
{
    d->clock = d->hal->now_ms(d->hal->ctx);
    return d->clock;
}

static void flush(wirelet_device *d)
{
    pump(d);
    if ((d->flags & DF_ACK_PENDING) && d->link_state == ST_UP) send_ack(d);
}

void wirelet_init(wirelet_device *dev, const wirelet_config *config, const wirelet_hal *hal)
{
    wl_writer probe;
    size_t hello;
    wl_zero(dev, sizeof *dev);
    dev->config = config;
    dev->hal = hal;
    dev->tx_open = NO_OPEN;
    dev->peer_max_frame = WL_MIN_FRAME;
    dev->peer_window = 1;
    dev->heartbeat_ms = cfg_ms(config->heartbeat_ms, 2000);
    dev->link_lost_ms = cfg_ms(config->link_lost_ms, 6000);
    do {
        dev->boot_id = hal->random32(hal->ctx);
    } while (dev->boot_id == 0);
    rtt_restore(dev);
    /* Keep room for the largest unsequenced frame we build: the HELLO (or a PONG). */
    wl_w_init(&probe, NULL, 0);
    dev->session_id = 0xFFFFFFFFUL; /* measure with the largest values */
    dev->attempt = 0xFFFFFFFFUL;
    encode_hello(dev, &probe);
    dev->session_id = 0;
    dev->attempt = 0;
    hello = probe.len + WL_OVERHEAD;
    if (hello < 64) hello = 64;
    dev->ctrl_reserve = (uint16_t)(hello < WIRELET_TX_BUFFER ? hello : WIRELET_TX_BUFFER);
    read_clock(dev);
    enter_handshake(dev);
}

static void do_reboot(wirelet_device *d);

void wirelet_feed(wirelet_device *dev, const uint8_t *data, size_t len)
{
    size_t i;
    uint8_t discard;
    read_clock(dev);
    dev->flags |= DF_IN_POLL; /* an app's start() may ask for a reboot: do it afterwards */
    for (i = 0; i < len && !(dev->flags & DF_REBOOT); i++) {
        discard = (uint8_t)((dev->flags & DF_RX_DISCARD) ? 1 : 0);
        if (wl_rx_push(dev->rx_buf, &dev->rx_len, &discard, WL_COBS_LIMIT(WIRELET_MAX_FRAME),
                       data[i], &dev->stats)) {
            int n = wl_frame_check(dev->rx_buf, dev->rx_len, WIRELET_MAX_FRAME, &dev->stats);
            dev->rx_len = 0;
            if (n > 0) on_frame(dev, dev->rx_buf, (size_t)n);
        } else if (data[i] == 0) {
            dev->rx_len = 0;
        }
        if (discard)
            dev->flags |= DF_RX_DISCARD;
        else
            dev->flags &= (uint8_t)~DF_RX_DISCARD;
    }
    dev->flags &= (uint8_t)~DF_IN_POLL;
    if (dev->flags & DF_REBOOT) {
        do_reboot(dev);
        return;
    }
    flush(dev);
}

static void do_reboot(wirelet_device *d)
{
    const wirelet_config *config = d->config;
    const wirelet_hal *hal = d->hal;
    uint16_t output_max = d->output_max;
    uint32_t line_rate = d->line_rate;
    if (hal->reboot) hal->reboot(hal->ctx);
    /* Still here (a host build): restart as after a boot. */
    wirelet_init(d, config, hal);
    d->output_max = output_max;
    d->line_rate = line_rate;
}

void wirelet_set_output_frame_max(wirelet_device *dev, uint16_t bytes) { dev->output_max = bytes; }

void wirelet_set_line_rate(wirelet_device *dev, uint32_t bytes_per_s) { dev->line_rate = bytes_per_s; }

void wirelet_poll(wirelet_device *dev)
{
    uint32_t now = read_clock(dev);
    size_t i;
    if (dev->link_state == ST_HANDSHAKE) {
        if (due(now, dev->next_hello)) {
            send_hello(dev);
            schedule_hello(dev);
        }
    } else if (dev->link_state == ST_UP) {
        if (due(now, dev->last_heard + dev->link_lost_ms)) {
            lose_link(dev);
        } else {
            if ((dev->flags & DF_RTX_ARMED) && due(now, dev->retransmit_at)) retransmit(dev, 1);
            if (due(now, dev->next_ping)) send_ping(dev);
        }
    }
    dev->flags |= DF_IN_POLL;
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) {
        wirelet_task *t = &dev->tasks[i];
        if (t->status == T_FINISHED && (t->flags & TF_EXIT_PENDING)) {
            /* Retried once an acknowledgement has freed room (TF_BLOCKED cleared). */
            if (t->flags & TF_BLOCKED) continue;
            if (queue_exit_report(dev, t, t->stop_request))
                t->flags &= (uint8_t)~TF_EXIT_PENDING;
            else
                t->flags |= TF_BLOCKED;
            continue;
        }
        if (!task_live(t)) continue;
        if (t->status == T_STOPPING && due(now, t->kill_at)) {
            finish(dev, t, WIRELET_EXIT_KILLED, TF_KILLED);
            continue;
        }
        if (t->flags & TF_BLOCKED) continue;
        if (t->flags & TF_SLEEP) {
            if (!due(now, t->wake_at)) continue;
            t->flags &= (uint8_t)~TF_SLEEP;
        }
        dev->config->apps[t->app].step(t);
        if (dev->flags & DF_REBOOT) break;
    }
    dev->flags &= (uint8_t)~DF_IN_POLL;
    if (dev->flags & DF_REBOOT) {
        do_reboot(dev);
        return;
    }
    flush(dev);
}

uint32_t wirelet_idle_ms(wirelet_device *dev)
{
    uint32_t now = read_clock(dev), best = 0xFFFFFFFFUL;
    size_t i;
#define WL_CONSIDER(at)                                      \
    do {                                                     \
        uint32_t left = due(now, (at)) ? 0 : (at) - now;     \
        if (left < best) best = left;                        \
    } while (0)
    if (dev->link_state == ST_HANDSHAKE) WL_CONSIDER(dev->next_hello);
    if (dev->link_state == ST_UP) {
        WL_CONSIDER(dev->last_heard + dev->link_lost_ms);
        WL_CONSIDER(dev->next_ping);
        if (dev->flags & DF_RTX_ARMED) WL_CONSIDER(dev->retransmit_at);
    }
    for (i = 0; i < WIRELET_TASK_SLOTS; i++) {
        const wirelet_task *t = &dev->tasks[i];
        if ((t->flags & (TF_EXIT_PENDING | TF_BLOCKED)) == TF_EXIT_PENDING) best = 0;
        if (!task_live(t)) continue;
        if (t->status == T_STOPPING) WL_CONSIDER(t->kill_at);
        if (t->flags & TF_BLOCKED) continue; /* until an ack frees room */
        if (t->flags & TF_SLEEP)
            WL_CONSIDER(t->wake_at);
        else
            best = 0;
    }
#undef WL_CONSIDER
    return best;
}

void wirelet_restart_link(wirelet_device *dev)
{
    read_clock(dev);
    dev->rx_len = 0;
    dev->flags &= (uint8_t)~DF_RX_DISCARD;
    if (dev->link_state == ST_UP)
        lose_link(dev);
    else if (dev->link_state == ST_HANDSHAKE)
        enter_handshake(dev);
}

int wirelet_is_up(const wirelet_device *dev) { return dev->link_state == ST_UP; }

int wirelet_log(wirelet_device *dev, uint8_t level, const char *text)
{
    wl_writer w;
    size_t len = wl_strlen(text);
    read_clock(dev);
    if (len > WIRELET_TEXT_MAX) len = WIRELET_TEXT_MAX;
    /* Logs, like task output, leave room for replies; the text is cut to fit the frame. */
    rec_begin(dev, &w, REPLY_RESERVE);
    {
        wl_writer probe;
        size_t cap = output_limit(dev) - WL_OVERHEAD;
        wl_w_init(&probe, NULL, 0);
        wl_enc_device_log(&probe, level, text, len, dev->clock);
        len = fit_text(text, len, probe.len, cap < w.cap ? cap : w.cap);
    }
    wl_enc_device_log(&w, level, text, len, dev->clock);
    return rec_commit(dev, WL_DEVICE_LOG, &w);
}

void wirelet_reboot(wirelet_device *dev)
{
    if (dev->flags & DF_IN_POLL)
        dev->flags |= DF_REBOOT; /* after the current step returns */
    else
        do_reboot(dev);
}

uint32_t wirelet_now(const wirelet_device *dev) { return dev->clock; }

const wirelet_stats *wirelet_get_stats(const wirelet_device *dev) { return &dev->stats; }

uint32_t wirelet_boot_id(const wirelet_device *dev) { return dev->boot_id; }

/* --- task API ---------------------------------------------------------------------------------- */

/* Bytes of record room task output may still take (replies keep REPLY_RESERVE). */
static size_t output_room(const wirelet_device *d)
{
    size_t cap = rec_cap(d);
    return cap > d->tx_used + REPLY_RESERVE ? cap - d->tx_used - REPLY_RESERVE : 0;
}

/* Size of a TASK_OUTPUT record before its data (open form, with a bin16 header). */
static size_t output_overhead(const wirelet_task *t, uint8_t stream)
{
    return REC_HDR + WL_HEADER + 1 + 1 + wl_w_str_size(t->id_len) + 2 + 1 +
           wl_w_uint_size(t->out_end[stream - 1]) + 1 + 3;
}

size_t wirelet_write(wirelet_task *task, uint8_t stream, const void *data, size_t len)
{
    wirelet_device *d = task->dev;
    const uint8_t *src = (const uint8_t *)data;
    uint8_t slot = (uint8_t)(task - d->tasks);
    size_t taken = 0;
    if (!task_live(task) || (stream != WIRELET_STDOUT && stream != WIRELET_STDERR)) return 0;
    while (taken < len) {
        size_t n, room = output_room(d), rlen, at, limit = output_limit(d);
        uint8_t *frame;
        /* Room for the key that binds the task's handle, should this frame carry it. */
        if (d->features & FEATURE_TASK_HANDLES) limit -= BINDING_SIZE;
        if (d->tx_open == NO_OPEN || d->open_task != slot || d->open_stream != stream) {
            size_t head = output_overhead(task, stream);
            wl_writer w;
            if (head + 1 > room || head + 1 + WL_CRC - REC_HDR > limit) break;
            close_open(d);
            at = d->tx_used;
            w.buf = d->tx_buf + at + REC_HDR + WL_HEADER;
            w.cap = head - REC_HDR - WL_HEADER;
            w.len = 0;
            w.overflow = 0;
            wl_w_map(&w, 4);
            wl_w_uint(&w, 1);
            wl_w_str(&w, task->id, task->id_len);
            wl_w_uint(&w, 2);
            wl_w_uint(&w, stream);
            wl_w_uint(&w, 3);
            wl_w_uint(&w, task->out_end[stream - 1]);
            wl_w_uint(&w, 4);
            wl_w_byte(&w, 0xc5); /* bin16 while it grows; shrunk on close */
            wl_w_byte(&w, 0);
            wl_w_byte(&w, 0);
            put_header(d->tx_buf + at + REC_HDR, WL_TASK_OUTPUT, 0, 0, 0);
            set_rec_len(d, at, WL_HEADER + w.len);
            d->tx_used = (uint16_t)(at + REC_HDR + WL_HEADER + w.len);
            d->tx_open = (uint16_t)at;
            d->open_head = (uint16_t)(WL_HEADER + w.len);
            d->open_task = slot;
            d->open_stream = stream;
            room = output_room(d);
        }
        at = d->tx_open;
        rlen = rec_len(d, at);
        n = len - taken;
        if (n > room) n = room;
        if (n > limit - WL_CRC - rlen) n = limit - WL_CRC - rlen;
        if (n == 0) {
            if (rlen + WL_CRC >= limit) {
                close_open(d); /* full frame: the next bytes start a new one */
                continue;
            }
            break;
        }
        wl_copy(d->tx_buf + d->tx_used, src + taken, n);
        d->tx_used = (uint16_t)(d->tx_used + n);
        set_rec_len(d, at, rlen + n);
        frame = d->tx_buf + at + REC_HDR;
        frame[d->open_head - 2] = (uint8_t)((rlen + n - d->open_head) >> 8);
        frame[d->open_head - 1] = (uint8_t)(rlen + n - d->open_head);
        task->out_end[stream - 1] += n;
        taken += n;
    }
    if (taken < len) task->flags |= TF_BLOCKED;
    return taken;
}

int wirelet_print_to(wirelet_task *task, uint8_t stream, const char *text)
{
    size_t len = wl_strlen(text);
    if (len > wirelet_room(task)) {
        task->flags |= TF_BLOCKED;
        return 0;
    }
    return wirelet_write(task, stream, text, len) == len;
}

int wirelet_print(wirelet_task *task, const char *text)
{
    return wirelet_print_to(task, WIRELET_STDOUT, text);
}

size_t wirelet_room(const wirelet_task *task)
{
    const wirelet_device *d = task->dev;
    size_t room = output_room(d), head = output_overhead(task, WIRELET_STDERR);
    if (!task_live(task)) return 0;
    /* Conservative: what a write to either stream surely takes, even starting a new record. */
    return room > head ? room - head : 0;
}

void wirelet_exit(wirelet_task *task, int32_t code) { finish(task->dev, task, code, 0); }

void wirelet_sleep(wirelet_task *task, uint32_t ms)
{
    task->wake_at = task->dev->clock + ms;
    task->flags |= TF_SLEEP;
}

void *wirelet_state(wirelet_task *task) { return task->state.bytes; }

const char *wirelet_task_id(const wirelet_task *task) { return task->id; }

wirelet_device *wirelet_task_device(wirelet_task *task) { return task->dev; }

int wirelet_stop_requested(const wirelet_task *task) { return task->status == T_STOPPING; }

const char *wirelet_getenv(int envc, const char *const *envp, const char *name)
{
    int i;
    for (i = 0; i < envc; i++) {
        const char *e = envp[i], *n = name;
        while (*n && *e == *n) {
            e++;
            n++;
        }
        if (!*n && *e == '=') return e + 1;
    }
    return NULL;
}
