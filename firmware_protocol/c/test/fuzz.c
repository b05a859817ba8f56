/*
 * Fuzz target for the receive path, built with ASan and UBSan (make fuzz). Feeds a device
 * random bytes, and valid frames (correct CRC and COBS) around mutated payloads so the message
 * decoder, the link state machine and the task code see hostile input; runs the device's timers
 * and apps in between. Any out-of-bounds access or undefined behaviour aborts the run.
 *
 *   wirelet-fuzz [ITERATIONS] [SEED]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wirelet_apps.h"
#include "wl_internal.h"

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}
static uint32_t below(uint32_t n) { return n ? rnd() % n : 0; }

static uint32_t now_ms;
static size_t bytes_out;
static void hal_write(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx;
    (void)d;
    bytes_out += n;
}
static uint32_t hal_now(void *ctx)
{
    (void)ctx;
    return now_ms;
}
static uint32_t hal_random(void *ctx)
{
    (void)ctx;
    return rnd();
}

static const wirelet_hal hal = {NULL, hal_write, hal_now, hal_random, NULL, NULL};
static wirelet_config config;
static wirelet_device dev;

typedef struct sinkbuf {
    uint8_t *buf;
    size_t len, cap;
} sinkbuf;
static void to_buf(void *ctx, const uint8_t *d, size_t n)
{
    sinkbuf *s = (sinkbuf *)ctx;
    if (s->len + n <= s->cap) memcpy(s->buf + s->len, d, n);
    s->len += n;
}

/* A plausible payload of `type` to mutate. */
static size_t base_payload(uint8_t type, uint8_t *buf, size_t cap)
{
    static const char *apps[] = {"echo", "counter", "forever", "exit", "flood", "reboot", "nope"};
    wl_writer w;
    char id[8] = "t0";
    id[1] = (char)('0' + below(6));
    wl_w_init(&w, buf, cap);
    switch (type) {
    case WL_WELCOME:
        wl_w_map(&w, 8);
        wl_w_uint(&w, 1); wl_w_uint(&w, below(4) ? 1 : below(256));
        wl_w_uint(&w, 2); wl_w_uint(&w, 1 + below(3));
        wl_w_uint(&w, 3); wl_w_uint(&w, 128 + below(4000));
        wl_w_uint(&w, 4); wl_w_uint(&w, 1 + below(64));
        wl_w_uint(&w, 5); wl_w_bool(&w, (int)below(2));
        wl_w_uint(&w, 6); wl_w_uint(&w, below(3000));
        wl_w_uint(&w, 7); wl_w_uint(&w, below(9000));
        wl_w_uint(&w, 8); wl_w_uint(&w, below(4) ? dev.attempt : rnd());
        break;
    case WL_START_TASK: {
        uint32_t i, argc = below(6), envc = below(4);
        const char *app = apps[below(7)];
        wl_w_map(&w, 5);
        wl_w_uint(&w, 0); wl_w_uint(&w, 1 + below(100));
        wl_w_uint(&w, 1); wl_w_cstr(&w, id);
        wl_w_uint(&w, 2); wl_w_cstr(&w, app);
        wl_w_uint(&w, 3); wl_w_array(&w, argc);
        for (i = 0; i < argc; i++) {
            static const char *args[] = {"5", "10", "0", "-1", "x", "", "99999999999", "1000"};
            wl_w_cstr(&w, below(3) ? args[below(8)] : app);
        }
        wl_w_uint(&w, 4); wl_w_map(&w, envc);
        for (i = 0; i < envc; i++) {
            char k[3] = {'K', (char)('A' + i), 0};
            wl_w_cstr(&w, k);
            wl_w_cstr(&w, "value");
        }
        break;
    }
    case WL_STOP_TASK:
        wl_w_map(&w, 3);
        wl_w_uint(&w, 0); wl_w_uint(&w, 1 + below(100));
        wl_w_uint(&w, 1); wl_w_cstr(&w, id);
        wl_w_uint(&w, 2); wl_w_uint(&w, below(100));
        break;
    case WL_LIST_TASKS:
        wl_w_map(&w, 2);
        wl_w_uint(&w, 0); wl_w_uint(&w, 1 + below(100));
        wl_w_uint(&w, 1); wl_w_uint(&w, below(8));
        break;
    case WL_EXEC:
        wl_w_map(&w, 2);
        wl_w_uint(&w, 0); wl_w_uint(&w, 1 + below(100));
        wl_w_uint(&w, 1); wl_w_array(&w, 2);
        wl_w_cstr(&w, below(2) ? "echo" : "uptime");
        wl_w_cstr(&w, "hello");
        break;
    case WL_PING:
    case WL_PONG:
        wl_w_map(&w, 1);
        wl_w_uint(&w, 1); wl_w_uint(&w, below(2) ? dev.ping_nonce : rnd());
        break;
    case WL_ERROR:
        wl_w_map(&w, 4);
        wl_w_uint(&w, 0); wl_w_uint(&w, rnd());
        wl_w_uint(&w, 1); wl_w_uint(&w, below(12));
        wl_w_uint(&w, 2); wl_w_cstr(&w, "bad");
        wl_w_uint(&w, 3); wl_w_uint(&w, below(256));
        break;
    default:
        wl_w_map(&w, 0);
        break;
    }
    return w.overflow ? 0 : w.len;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    uint32_t k, rounds = below(4);
    for (k = 0; k < rounds; k++) {
        switch (below(6)) {
        case 0: if (len) buf[below((uint32_t)len)] ^= (uint8_t)(1u << below(8)); break;
        case 1: if (len) buf[below((uint32_t)len)] = (uint8_t)rnd(); break;
        case 2: if (len) len = below((uint32_t)len + 1); break; /* truncate */
        case 3: /* insert a byte */
            if (len < cap) {
                size_t at = below((uint32_t)len + 1);
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)rnd();
                len++;
            }
            break;
        case 4: /* delete a byte */
            if (len) {
                size_t at = below((uint32_t)len);
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;
        default: /* an interesting msgpack tag */
            if (len) {
                static const uint8_t tags[] = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xca, 0xcf,
                                               0xd3, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x7f, 0xff,
                                               0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf};
                buf[below((uint32_t)len)] = tags[below(sizeof tags)];
            }
        }
    }
    return len;
}

static void feed_frame(uint8_t type, uint8_t flags, uint16_t seq, uint16_t ack, const uint8_t *p,
                       size_t n)
{
    static uint8_t frame[8192], wire[9000];
    uint8_t crc[4];
    uint32_t c;
    sinkbuf s = {wire, 0, sizeof wire};
    frame[0] = below(16) ? 1 : (uint8_t)rnd();
    frame[1] = type;
    frame[2] = flags;
    frame[3] = (uint8_t)(seq >> 8);
    frame[4] = (uint8_t)seq;
    frame[5] = (uint8_t)(ack >> 8);
    frame[6] = (uint8_t)ack;
    memcpy(frame + 7, p, n);
    c = wl_crc32_update(0, frame, 7 + n);
    crc[0] = (uint8_t)(c >> 24);
    crc[1] = (uint8_t)(c >> 16);
    crc[2] = (uint8_t)(c >> 8);
    crc[3] = (uint8_t)c;
    if (below(20) == 0) crc[below(4)] ^= 1; /* now and then a bad CRC */
    wl_cobs_write(frame, 7 + n, crc, 4, to_buf, &s);
    if (below(30) == 0 && s.len > 2) s.len = below((uint32_t)s.len); /* cut mid-frame */
    /* Feed in random splits. */
    {
        size_t at = 0;
        while (at < s.len) {
            size_t piece = 1 + below((uint32_t)(s.len - at));
            wirelet_feed(&dev, wire + at, piece);
            at += piece;
        }
    }
}

int main(int argc, char **argv)
{
    static const uint8_t types[] = {WL_WELCOME,   WL_HELLO_REQUEST, WL_REFUSE, WL_ACK,
                                    WL_PING,      WL_PONG,          WL_START_TASK,
                                    WL_STOP_TASK, WL_LIST_TASKS,    WL_EXEC,
                                    WL_ERROR,     WL_TASK_OUTPUT,   WL_HELLO};
    unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    unsigned long i;
    uint8_t payload[4200];
    rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    config.device_id = "fuzz";
    config.firmware_name = "fuzz";
    config.firmware_version = "0";
    config.apps = wirelet_reference_apps;
    config.app_count = WIRELET_REFERENCE_APP_COUNT;
    config.exec = wirelet_reference_exec;
    config.memory_total = 1024;
    wirelet_init(&dev, &config, &hal);
    for (i = 0; i < iterations; i++) {
        uint32_t what = below(10);
        if (what == 0) {
            /* raw noise */
            uint8_t noise[600];
            size_t n = below(sizeof noise), k;
            for (k = 0; k < n; k++) noise[k] = below(8) ? (uint8_t)rnd() : 0;
            wirelet_feed(&dev, noise, n);
        } else if (what == 1) {
            /* the decoder alone, any type, any bytes */
            wl_msg m;
            wl_error e;
            size_t n = base_payload(types[below(sizeof types)], payload, sizeof payload);
            n = mutate(payload, n, sizeof payload);
            wl_decode((uint8_t)(below(4) ? types[below(sizeof types)] : rnd()), payload, n, &m, &e);
            wl_request_id_of(payload, n);
        } else {
            uint8_t type = below(10) ? types[below(sizeof types)] : (uint8_t)rnd();
            size_t n = base_payload(type, payload, sizeof payload);
            uint8_t flags = type >= 0x10 ? 3 : (type <= 4 ? 0 : 2);
            uint16_t seq = below(8) ? dev.rx_next : (uint16_t)rnd();
            uint16_t ack = below(2) ? dev.tx_next_seq : (uint16_t)(dev.tx_next_seq - below(6));
            if (below(3) == 0) n = mutate(payload, n, sizeof payload);
            if (below(20) == 0) flags = (uint8_t)rnd();
            if (below(50) == 0) n = below(sizeof payload); /* oversize and garbage payloads */
            feed_frame(type, flags, seq, ack, payload, n);
        }
        now_ms += below(5) == 0 ? below(3000) : below(20);
        wirelet_poll(&dev);
        if (below(500) == 0) wirelet_restart_link(&dev);
        if (below(2000) == 0) wirelet_reboot(&dev);
        if (below(100) == 0) wirelet_log(&dev, (uint8_t)below(4), "fuzz log line");
        if (dev.tx_used > WIRELET_TX_BUFFER || dev.rx_len > sizeof dev.rx_buf) {
            fprintf(stderr, "buffer bound broken at iteration %lu\n", i);
            return 1;
        }
    }
    printf("wirelet-fuzz: %lu iterations, %zu bytes out, %u frames in, %u handshakes, "
           "%u rejected\n",
           iterations, bytes_out, dev.stats.frames_received, dev.stats.handshakes,
           dev.stats.rejected);
    return 0;
}
