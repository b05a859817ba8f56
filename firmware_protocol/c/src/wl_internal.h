/*
 * Internals of the wirelet device library shared between its source files and the host-only
 * conformance helpers. Not part of the public API.
 */
#ifndef WL_INTERNAL_H
#define WL_INTERNAL_H

#include "wirelet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Constant tables live in flash. On AVR that needs PROGMEM and explicit reads; elsewhere const
 * data is already in flash and these are plain loads. */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define WL_ROM PROGMEM
#define wl_rom_u8(p) ((uint8_t)pgm_read_byte(p))
#define wl_rom_u16(p) ((uint16_t)pgm_read_word(p))
#define wl_rom_ptr(p) ((const void *)pgm_read_word(p))
#define wl_rom_u32(p) ((uint32_t)pgm_read_dword(p))
#else
#define WL_ROM
#define wl_rom_u8(p) (*(const uint8_t *)(p))
#define wl_rom_u16(p) (*(const uint16_t *)(p))
#define wl_rom_ptr(p) (*(const void *const *)(p))
#define wl_rom_u32(p) (*(const uint32_t *)(p))
#endif

/* --- protocol constants ---------------------------------------------------------------------- */
#define WL_HEADER 7
#define WL_CRC 4
#define WL_OVERHEAD (WL_HEADER + WL_CRC)
#define WL_MIN_FRAME 192
#define WL_MAX_FRAME_CEILING 4096
#define WL_MAX_WINDOW 64
#define WL_FLAG_SEQ 0x01
#define WL_FLAG_ACK 0x02

enum {
    WL_HELLO = 0x01,
    WL_WELCOME = 0x02,
    WL_REFUSE = 0x03,
    WL_HELLO_REQUEST = 0x04,
    WL_ACK = 0x05,
    WL_PING = 0x06,
    WL_PONG = 0x07,
    WL_START_TASK = 0x10,
    WL_STOP_TASK = 0x11,
    WL_LIST_TASKS = 0x12,
    WL_EXEC = 0x13,
    WL_TASK_STARTED = 0x20,
    WL_TASK_EXITED = 0x21,
    WL_TASK_OUTPUT = 0x22,
    WL_TASK_LIST = 0x23,
    WL_EXEC_RESULT = 0x24,
    WL_DEVICE_LOG = 0x25,
    WL_EXEC_OUTPUT = 0x26,
    WL_TASK_DATA = 0x27,
    WL_ERROR = 0x30
};

/* --- small helpers (no libc needed) ---------------------------------------------------------- */
void wl_copy(void *dst, const void *src, size_t n);
void wl_move(void *dst, const void *src, size_t n);
void wl_zero(void *dst, size_t n);
size_t wl_strlen(const char *s);

/* --- CRC-32/ISO-HDLC ------------------------------------------------------------------------- */
uint32_t wl_crc32_update(uint32_t crc, const uint8_t *data, size_t len); /* start with 0 */

/* --- COBS -------------------------------------------------------------------------------------- */
/* Decode in place; returns the decoded length or -1 if a code byte points past the end. */
int wl_cobs_decode(uint8_t *buf, size_t len);
/* Encode `len` bytes and pass the result to `out` in pieces (no buffer for the whole frame);
 * `tail` (up to 4 bytes, the CRC) is encoded as if appended to `data`. Adds the 0x00 delimiter. */
typedef void (*wl_sink)(void *ctx, const uint8_t *data, size_t len);
size_t wl_cobs_write(const uint8_t *data, size_t len, const uint8_t *tail, size_t tail_len,
                     wl_sink out, void *ctx);
/* The same over `count` pieces encoded as one run of bytes (a frame assembled on the fly). */
typedef struct wl_piece {
    const uint8_t *data;
    size_t len;
} wl_piece;
size_t wl_cobs_write_pieces(const wl_piece *pieces, size_t count, wl_sink out, void *ctx);

/* Largest COBS block a max_frame-byte frame can become (without the delimiter). */
#define WL_COBS_LIMIT(max_frame) ((max_frame) + (max_frame) / 254 + 1)

/* --- frame reception ------------------------------------------------------------------------- */
/* Push one received byte into a COBS block buffer holding at most `limit` bytes. Returns 1 when a
 * delimiter completes a non-empty block (buf[0..*len) holds it; the caller resets *len). */
int wl_rx_push(uint8_t *buf, uint16_t *len, uint8_t *discarding, size_t limit, uint8_t byte,
               wirelet_stats *stats);
/* COBS-decode a block in place and check size and CRC. Returns the frame length (header +
 * payload + CRC) or -1, counting the reason in `stats`. */
int wl_frame_check(uint8_t *buf, size_t len, size_t max_frame, wirelet_stats *stats);

/* --- msgpack writer ---------------------------------------------------------------------------- */
typedef struct wl_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint8_t overflow;
} wl_writer;

void wl_w_init(wl_writer *w, uint8_t *buf, size_t cap);
void wl_w_byte(wl_writer *w, uint8_t b);
void wl_w_raw(wl_writer *w, const void *data, size_t len);
void wl_w_map(wl_writer *w, uint32_t n);
void wl_w_array(wl_writer *w, uint32_t n);
void wl_w_uint(wl_writer *w, uint64_t v);
void wl_w_int(wl_writer *w, int64_t v);
void wl_w_nil(wl_writer *w);
void wl_w_bool(wl_writer *w, int v);
void wl_w_str(wl_writer *w, const char *s, size_t len);
void wl_w_cstr(wl_writer *w, const char *s);
void wl_w_bin(wl_writer *w, const void *data, size_t len);
void wl_w_bin_header(wl_writer *w, size_t len);
size_t wl_w_bin_header_size(size_t len);
size_t wl_w_uint_size(uint64_t v);
size_t wl_w_str_size(size_t len);

/* --- msgpack reader ------------------------------------------------------------------------------ */
enum {
    WL_MP_NIL,
    WL_MP_BOOL,
    WL_MP_UINT,
    WL_MP_NINT, /* negative integer: value in `i` */
    WL_MP_FLOAT,
    WL_MP_STR,
    WL_MP_BIN,
    WL_MP_ARRAY,
    WL_MP_MAP,
    WL_MP_EXT
};

typedef struct wl_item {
    uint8_t kind;
    uint64_t u;    /* UINT value, BOOL value, or STR/BIN/EXT length, ARRAY/MAP count */
    int64_t i;     /* NINT value */
    size_t data;   /* offset of STR/BIN/EXT bytes; of the first element for ARRAY/MAP */
} wl_item;

/* Read the item header at *pos (advancing *pos past the header, and past STR/BIN/EXT bytes).
 * Returns 0 on success, -1 if malformed or truncated. */
int wl_mp_read(const uint8_t *buf, size_t len, size_t *pos, wl_item *it);
/* Skip one whole value (nested ones too, without recursion). */
int wl_mp_skip(const uint8_t *buf, size_t len, size_t *pos);

/* --- message schemas and validation ------------------------------------------------------------ */
#define WL_MAX_KEY 17
#define WL_ABSENT 0xFFFFu

typedef struct wl_schema wl_schema;

typedef struct wl_field {
    uint8_t key;
    uint8_t kind;
    uint8_t flags;
    uint8_t item_max; /* byte limit of array/map string items */
    uint16_t lo, hi;  /* value range, or item count range, or string byte limit (hi) */
    const char *name;
    const wl_schema *sub; /* nested map schema */
} wl_field;

struct wl_schema {
    const char *name;
    const wl_field *fields;
    uint8_t count;
    uint8_t senders; /* WL_BY_* */
};

enum {
    WL_K_U8,
    WL_K_U16,
    WL_K_U32,
    WL_K_U64,
    WL_K_RANGE, /* unsigned lo..hi */
    WL_K_I64,
    WL_K_BOOL,
    WL_K_STR,
    WL_K_BIN,
    WL_K_ARR_U8,  /* array of uint8, lo..hi items */
    WL_K_ARR_STR, /* array of str (item_max bytes), lo..hi items */
    WL_K_ENV,     /* map str -> str (item_max bytes each), at most hi entries */
    WL_K_MAP,     /* nested map `sub` */
    WL_K_ARR_MAP  /* array of nested maps `sub`, lo..hi items */
};

#define WL_F_REQUIRED 0x01
#define WL_F_NONEMPTY 0x02 /* strings (and string items/keys) must not be empty */
#define WL_F_NULLABLE 0x04 /* nil is allowed */
#define WL_F_NONZERO 0x08

#define WL_BY_DEVICE 0x01
#define WL_BY_GATEWAY 0x02

/* Why a payload was rejected. */
typedef struct wl_error {
    uint8_t code;          /* WIRELET_ERR_UNSUPPORTED or WIRELET_ERR_MALFORMED */
    const char *schema;    /* message name (ROM pointer), or NULL */
    const char *field;     /* field name (ROM pointer), or NULL */
    const char *problem;   /* short text (ROM pointer) */
} wl_error;

typedef struct wl_msg {
    const uint8_t *buf;
    size_t len;
    const wl_schema *schema;
    uint16_t off[WL_MAX_KEY + 1]; /* offset of each key's value, WL_ABSENT if missing */
} wl_msg;

const wl_schema *wl_schema_for(uint8_t type);
const wl_schema *wl_schema_named(const char *name); /* TaskInfo, Load, TaskLoad */
/* Validate `payload` as a message of `type`: one msgpack map, every known field checked.
 * Returns 0 and fills `msg`, or -1 and fills `err`. */
int wl_decode(uint8_t type, const uint8_t *payload, size_t len, wl_msg *msg, wl_error *err);
/* Decode a nested map at `pos` with `schema` (used by the conformance helpers). */
int wl_decode_map(const wl_schema *schema, const uint8_t *buf, size_t len, size_t pos,
                  wl_msg *msg, wl_error *err);
/* Key 0 of a payload that is a msgpack map, if an integer in u32, else 0 (for ERROR replies). */
uint32_t wl_request_id_of(const uint8_t *payload, size_t len);

/* Typed getters for validated messages (defaults when absent). */
int wl_has(const wl_msg *m, uint8_t key);
uint64_t wl_get_uint(const wl_msg *m, uint8_t key, uint64_t dflt);
int wl_get_bool(const wl_msg *m, uint8_t key, int dflt);
/* Returns the bytes of a STR/BIN field (length in *n), or NULL (and *n = 0) if absent. */
const uint8_t *wl_get_bytes(const wl_msg *m, uint8_t key, size_t *n);
/* Header of an ARRAY/MAP field: element count, and *pos at the first element. 0 if absent. */
uint32_t wl_get_container(const wl_msg *m, uint8_t key, size_t *pos);

/* ROM string helpers (names and problems live in flash on AVR). */
size_t wl_rom_strlen(const char *s);
int wl_rom_streq(const char *rom, const char *ram);
void wl_rom_copy(char *dst, const char *src, size_t n);

/* Format "Schema.field: problem" into dst (NUL-terminated, truncated to cap-1). */
size_t wl_error_text(const wl_error *err, char *dst, size_t cap);

/* --- payload encoders (device -> gateway), exercised byte for byte by the golden vectors ------ */
typedef struct wl_taskinfo {
    const char *task_id;
    size_t task_id_len;
    const char *app;
    uint8_t running;
    int64_t exit_code; /* ignored while running (encoded as nil) */
    uint64_t stdout_end, stderr_end;
} wl_taskinfo;

void wl_enc_task_started(wl_writer *w, uint32_t request_id, const char *id, size_t id_len);
void wl_enc_task_exited(wl_writer *w, uint32_t request_id, const char *id, size_t id_len,
                        int64_t exit_code, const char *reason, uint64_t out_end,
                        uint64_t err_end);
/* TASK_OUTPUT up to the data: map, task_id, stream, offset, and key 4's bin header for `n`. */
void wl_enc_task_output_head(wl_writer *w, const char *id, size_t id_len, uint8_t stream,
                             uint64_t offset, size_t n);
void wl_enc_taskinfo(wl_writer *w, const wl_taskinfo *t);
/* The TASK_LIST page answering LIST_TASKS(`cursor`) (PROTOCOL.md section 9, paging): the tasks
 * of a table from position `cursor` on, as many as fit `w->cap` bytes of payload (at least one
 * when any remain and a maximal entry fits), and `next_cursor` = the position of the first one
 * left out. `entry` fills `out` for a position and returns 0 for a free slot. */
typedef int (*wl_table_entry)(const void *ctx, size_t position, wl_taskinfo *out);
void wl_enc_task_list_page(wl_writer *w, uint32_t request_id, uint32_t cursor, size_t table_size,
                           wl_table_entry entry, const void *ctx);

void wl_enc_device_log(wl_writer *w, uint8_t level, const char *text, size_t len,
                       uint64_t uptime_ms);
void wl_enc_error(wl_writer *w, uint32_t request_id, uint16_t code, const char *text,
                  size_t len, uint8_t msg_type);
void wl_enc_refuse(wl_writer *w, uint16_t code, const char *reason, const uint8_t *versions,
                   size_t n_versions);

#ifdef __cplusplus
}
#endif

#endif
