/*
 * The reference apps; see reference_apps.h. Conventions shared with hil/emulator/apps.py:
 * - argv is the container's command + args; a leading element equal to the app's name is skipped;
 * - bad arguments print "usage: ..." to stderr and exit 64 (EX_USAGE);
 * - a stop request ends a task with 143 (the library does that: no app has a stop() callback).
 * Output never blocks: when the library's buffer is full, a step writes nothing and retries later.
 */
#include "reference_apps.h"

#include <string.h>

#define USAGE_EXIT_CODE 64

/* Echo's text must be built while argv/env exist (in start()); what does not fit the link's
 * buffer right away waits here. A few tasks' worth: echo output is short. */
#ifndef ECHO_PENDING_SLOTS
#define ECHO_PENDING_SLOTS 2
#endif
#ifndef ECHO_PENDING_BYTES
#define ECHO_PENDING_BYTES 384
#endif

static struct {
    uint8_t used;
    uint16_t len;
    char text[ECHO_PENDING_BYTES];
} echo_pending[ECHO_PENDING_SLOTS];

/* --- small helpers ------------------------------------------------------------------------ */

static int skip_name(const char *name, int argc, const char *const *argv) {
    return argc > 0 && strcmp(argv[0], name) == 0 ? 1 : 0;
}

/* A decimal integer with an optional sign, as Python's int() takes it (without '_'); returns 0
 * for bad text. */
static int parse_int(const char *text, int32_t *out) {
    int32_t value = 0;
    int negative = 0;
    const char *p = text;
    while (*p == ' ') p++;
    if (*p == '+' || *p == '-') negative = *p++ == '-';
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') {
        if (value > 214748364) return 0;
        value = value * 10 + (*p++ - '0');
    }
    while (*p == ' ') p++;
    if (*p != '\0' || value < 0) return 0;
    *out = negative ? -value : value;
    return 1;
}

/* argument `index` after the app name, or `fallback` when absent; 0 when it is not a number */
static int int_arg(int argc, const char *const *argv, int first, int index, int32_t fallback,
                   int32_t *out) {
    if (first + index >= argc) {
        *out = fallback;
        return 1;
    }
    return parse_int(argv[first + index], out);
}

static void usage(wirelet_task *task, const char *text) {
    wirelet_print_to(task, WIRELET_STDERR, "usage: ");
    wirelet_print_to(task, WIRELET_STDERR, text);
    wirelet_print_to(task, WIRELET_STDERR, "\n");
    wirelet_exit(task, USAGE_EXIT_CODE);
}

/* unsigned decimal, right-aligned in `width` zero-padded digits when width > 0 */
static size_t format_u32(char *out, uint32_t value, int width) {
    char digits[10];
    size_t n = 0, i;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0);
    i = 0;
    while ((int)(n + i) < width) out[i++] = '0';
    while (n > 0) out[i++] = digits[--n];
    return i;
}

/* --- echo: "argv: <argv joined by spaces>" then the env as sorted KEY=VALUE lines, exit 0 --- */

typedef struct {
    int8_t pending; /* echo_pending slot still to be written, or -1 */
    uint16_t offset;
} echo_state;

/* Order of "KEY=VALUE" entries as Python sorts (key, value) pairs: by key, then value (a plain
 * strcmp would put "A1=x" before "A=y", since '1' < '='). */
static int env_cmp(const char *a, const char *b) {
    int ka, kb;
    while (*a != '\0' && *a != '=' && *a == *b) {
        a++;
        b++;
    }
    ka = *a == '=' ? 0 : (unsigned char)*a;
    kb = *b == '=' ? 0 : (unsigned char)*b;
    if (ka != kb) return ka - kb;
    if (*a == '\0') return 0;
    return strcmp(a + 1, b + 1);
}

static size_t append(char *buf, size_t at, size_t cap, const char *text) {
    while (*text != '\0' && at < cap) buf[at++] = *text++;
    return at;
}

static int echo_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                      const char *const *envp) {
    echo_state *st = (echo_state *)wirelet_state(task);
    int slot, i, j;
    size_t len = 0, taken;
    char *text;
    const char *sorted[WIRELET_MAX_ARGS];
    st->pending = -1;
    for (slot = 0; slot < ECHO_PENDING_SLOTS && echo_pending[slot].used; slot++) {
    }
    if (slot == ECHO_PENDING_SLOTS) return WIRELET_ERR_BUSY;
    text = echo_pending[slot].text;
    len = append(text, len, ECHO_PENDING_BYTES, "argv: ");
    for (i = 0; i < argc; i++) {
        if (i > 0) len = append(text, len, ECHO_PENDING_BYTES, " ");
        len = append(text, len, ECHO_PENDING_BYTES, argv[i]);
    }
    len = append(text, len, ECHO_PENDING_BYTES, "\n");
    /* insertion sort of the env entries (few) by their text, as Python sorts (key, value) */
    for (i = 0; i < envc && i < WIRELET_MAX_ARGS; i++) {
        const char *entry = envp[i];
        for (j = i; j > 0 && env_cmp(sorted[j - 1], entry) > 0; j--) sorted[j] = sorted[j - 1];
        sorted[j] = entry;
    }
    for (i = 0; i < envc && i < WIRELET_MAX_ARGS; i++) {
        len = append(text, len, ECHO_PENDING_BYTES, sorted[i]);
        len = append(text, len, ECHO_PENDING_BYTES, "\n");
    }
    if (len == ECHO_PENDING_BYTES) text[len - 1] = '\n'; /* cut, but still a line */
    taken = wirelet_write(task, WIRELET_STDOUT, text, len);
    if (taken == len) {
        wirelet_exit(task, 0);
        return WIRELET_OK;
    }
    echo_pending[slot].used = 1;
    echo_pending[slot].len = (uint16_t)len;
    st->pending = (int8_t)slot;
    st->offset = (uint16_t)taken;
    return WIRELET_OK;
}

static void echo_step(wirelet_task *task) {
    echo_state *st = (echo_state *)wirelet_state(task);
    int slot = st->pending;
    if (slot < 0) {
        wirelet_exit(task, 0);
        return;
    }
    st->offset = (uint16_t)(st->offset +
                            wirelet_write(task, WIRELET_STDOUT, echo_pending[slot].text + st->offset,
                                          echo_pending[slot].len - st->offset));
    if (st->offset >= echo_pending[slot].len) {
        echo_pending[slot].used = 0;
        st->pending = -1;
        wirelet_exit(task, 0);
    }
}

/* stopped before all was written: free the pending text */
static void echo_stop(wirelet_task *task, uint32_t grace_ms) {
    echo_state *st = (echo_state *)wirelet_state(task);
    (void)grace_ms;
    if (st->pending >= 0) echo_pending[st->pending].used = 0;
    st->pending = -1;
    wirelet_exit(task, WIRELET_EXIT_STOPPED);
}

/* --- counter N INTERVAL_MS / forever [INTERVAL_MS]: a line per interval ------------------- */

typedef struct {
    uint32_t count;
    int32_t limit; /* -1: forever */
    uint32_t interval_ms;
    uint32_t next_at; /* ms: when the next line is due */
} periodic_state;

static void periodic_begin(wirelet_task *task, int32_t limit, int32_t interval_ms) {
    periodic_state *st = (periodic_state *)wirelet_state(task);
    st->count = 0;
    st->limit = limit;
    st->interval_ms = interval_ms > 0 ? (uint32_t)interval_ms : 0u;
    st->next_at = wirelet_now(wirelet_task_device(task));
}

static void periodic_step(wirelet_task *task, const char *prefix) {
    periodic_state *st = (periodic_state *)wirelet_state(task);
    uint32_t now = wirelet_now(wirelet_task_device(task));
    char line[24];
    size_t n;
    /* catch up on missed ticks without drifting */
    while ((int32_t)(now - st->next_at) >= 0 && (st->limit < 0 || st->count < (uint32_t)st->limit)) {
        n = 0;
        while (prefix[n] != '\0') {
            line[n] = prefix[n];
            n++;
        }
        n += format_u32(line + n, st->count + 1u, 0);
        line[n++] = '\n';
        if (wirelet_room(task) < n) {
            wirelet_sleep(task, 1); /* blocked on output: retry soon */
            return;
        }
        wirelet_write(task, WIRELET_STDOUT, line, n);
        st->count++;
        st->next_at += st->interval_ms;
    }
    if (st->limit >= 0 && st->count >= (uint32_t)st->limit) {
        wirelet_exit(task, 0);
        return;
    }
    wirelet_sleep(task, st->next_at - now);
}

static int counter_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                         const char *const *envp) {
    int first = skip_name("counter", argc, argv);
    int32_t limit, interval;
    (void)envc;
    (void)envp;
    if (!int_arg(argc, argv, first, 0, 10, &limit) || !int_arg(argc, argv, first, 1, 100, &interval)) {
        usage(task, "counter N INTERVAL_MS");
        return WIRELET_OK;
    }
    periodic_begin(task, limit < 0 ? 0 : limit, interval);
    return WIRELET_OK;
}

static void counter_step(wirelet_task *task) { periodic_step(task, ""); }

static int forever_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                         const char *const *envp) {
    int first = skip_name("forever", argc, argv);
    int32_t interval;
    (void)envc;
    (void)envp;
    if (!int_arg(argc, argv, first, 0, 1000, &interval)) {
        usage(task, "forever [INTERVAL_MS]");
        return WIRELET_OK;
    }
    periodic_begin(task, -1, interval);
    return WIRELET_OK;
}

static void forever_step(wirelet_task *task) { periodic_step(task, "tick "); }

/* --- exit CODE [MESSAGE]: MESSAGE to stderr, exit CODE ------------------------------------- */

static int exit_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                      const char *const *envp) {
    int first = skip_name("exit", argc, argv);
    int32_t code;
    int i;
    (void)envc;
    (void)envp;
    if (!int_arg(argc, argv, first, 0, 0, &code)) {
        usage(task, "exit CODE [MESSAGE]");
        return WIRELET_OK;
    }
    if (first + 1 < argc) {
        for (i = first + 1; i < argc; i++) {
            if (i > first + 1) wirelet_print_to(task, WIRELET_STDERR, " ");
            wirelet_print_to(task, WIRELET_STDERR, argv[i]);
        }
        wirelet_print_to(task, WIRELET_STDERR, "\n");
    }
    wirelet_exit(task, code & 0xFF);
    return WIRELET_OK;
}

static void nothing_step(wirelet_task *task) { (void)task; }

/* --- flood BYTES: BYTES of the pattern "%015d\n" per line, as fast as the link drains ------- */

#define FLOOD_LINE 16u

typedef struct {
    uint32_t total;
    uint32_t produced;
} flood_state;

static int flood_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                       const char *const *envp) {
    int first = skip_name("flood", argc, argv);
    int32_t total;
    flood_state *st = (flood_state *)wirelet_state(task);
    (void)envc;
    (void)envp;
    if (!int_arg(argc, argv, first, 0, 1024L * 1024L, &total) || total < 0) {
        usage(task, "flood BYTES");
        return WIRELET_OK;
    }
    st->total = (uint32_t)total;
    st->produced = 0;
    return WIRELET_OK;
}

static void flood_step(wirelet_task *task) {
    flood_state *st = (flood_state *)wirelet_state(task);
    char line[FLOOD_LINE];
    size_t room = wirelet_room(task);
    while (st->produced < st->total && room > 0) {
        uint32_t offset = st->produced % FLOOD_LINE;
        size_t n = FLOOD_LINE - offset, taken;
        format_u32(line, st->produced / FLOOD_LINE, 15);
        line[FLOOD_LINE - 1] = '\n';
        if (n > st->total - st->produced) n = st->total - st->produced;
        if (n > room) n = room;
        taken = wirelet_write(task, WIRELET_STDOUT, line + offset, n);
        st->produced += (uint32_t)taken;
        if (taken < n) break;
        room -= taken;
    }
    if (st->produced >= st->total) wirelet_exit(task, 0);
}

/* --- reboot [AFTER_MS]: a line, then the whole device resets ---------------------------------- */

typedef struct {
    uint8_t announced;
    uint32_t after_ms;
} reboot_state;

static int reboot_start(wirelet_task *task, int argc, const char *const *argv, int envc,
                        const char *const *envp) {
    int first = skip_name("reboot", argc, argv);
    int32_t after;
    reboot_state *st = (reboot_state *)wirelet_state(task);
    (void)envc;
    (void)envp;
    if (!int_arg(argc, argv, first, 0, 50, &after) || after < 0) {
        usage(task, "reboot [AFTER_MS]");
        return WIRELET_OK;
    }
    st->announced = 0;
    st->after_ms = (uint32_t)after;
    return WIRELET_OK;
}

static void reboot_step(wirelet_task *task) {
    reboot_state *st = (reboot_state *)wirelet_state(task);
    if (!st->announced) {
        if (!wirelet_print(task, "rebooting soon\n")) return;
        st->announced = 1;
        wirelet_sleep(task, st->after_ms);
        return;
    }
    wirelet_reboot(wirelet_task_device(task));
}

const wirelet_app reference_apps[REFERENCE_APP_COUNT] = {
    {"echo", echo_start, echo_step, echo_stop},
    {"counter", counter_start, counter_step, NULL},
    {"forever", forever_start, forever_step, NULL},
    {"exit", exit_start, nothing_step, NULL},
    {"flood", flood_start, flood_step, NULL},
    {"reboot", reboot_start, reboot_step, NULL},
};
