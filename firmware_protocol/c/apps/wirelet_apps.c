/* The reference apps (see wirelet_apps.h). Each keeps its state in wirelet_state(task). */
#include "wirelet_apps.h"

#define STOPPED_EXIT WIRELET_EXIT_STOPPED

size_t wirelet_fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t str_len(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static int str_eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Python's int(): optional surrounding spaces, a sign, decimal digits. 0 on success. */
static int parse_int(const char *s, int64_t *out)
{
    int64_t v = 0;
    int neg = 0, digits = 0;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    while (*s >= '0' && *s <= '9') {
        if (v > 100000000000000LL) return -1;
        v = v * 10 + (*s++ - '0');
        digits++;
    }
    while (*s == ' ' || *s == '\t') s++;
    if (!digits || *s) return -1;
    *out = neg ? -v : v;
    return 0;
}

/* Skip a leading argv element equal to the app's name. */
static void skip_name(const char *name, int *argc, const char *const **argv)
{
    if (*argc > 0 && str_eq((*argv)[0], name)) {
        (*argc)--;
        (*argv)++;
    }
}

/* Integer argument `index`, `dflt` if absent; -1 if not an integer. */
static int int_arg(int argc, const char *const *argv, int index, int64_t dflt, int64_t *out)
{
    if (index >= argc) {
        *out = dflt;
        return 0;
    }
    return parse_int(argv[index], out);
}

static void usage(wirelet_task *t, const char *text)
{
    wirelet_print_to(t, WIRELET_STDERR, "usage: ");
    wirelet_print_to(t, WIRELET_STDERR, text);
    wirelet_print_to(t, WIRELET_STDERR, "\n");
    wirelet_exit(t, WIRELET_USAGE_EXIT);
}

static void stop_now(wirelet_task *t, uint32_t grace_ms)
{
    (void)grace_ms;
    wirelet_exit(t, STOPPED_EXIT);
}

static void no_step(wirelet_task *t) { (void)t; }

/* --- echo: prints its argv (one line) and its env (sorted KEY=VALUE lines); exits 0 -------- */

/* Order of env entries "K=V" by key, as Python sorts (key, value) pairs. */
static int env_before(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = *a == '=' ? -1 : (unsigned char)*a, cb = *b == '=' ? -1 : (unsigned char)*b;
        if (ca != cb) return ca < cb;
        if (ca == -1) return 0;
    }
}

static int echo_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                      const char *const *envp)
{
    int i, k;
    unsigned char done[WIRELET_MAX_ARGS];
    wirelet_write(t, WIRELET_STDOUT, "argv:", 5);
    for (i = 0; i < argc; i++) {
        wirelet_write(t, WIRELET_STDOUT, " ", 1);
        wirelet_write(t, WIRELET_STDOUT, argv[i], str_len(argv[i]));
    }
    wirelet_write(t, WIRELET_STDOUT, "\n", 1);
    for (i = 0; i < envc; i++) done[i] = 0;
    for (k = 0; k < envc; k++) { /* selection sort: at most WIRELET_MAX_ARGS entries */
        int best = -1;
        for (i = 0; i < envc; i++)
            if (!done[i] && (best < 0 || env_before(envp[i], envp[best]))) best = i;
        done[best] = 1;
        wirelet_write(t, WIRELET_STDOUT, envp[best], str_len(envp[best]));
        wirelet_write(t, WIRELET_STDOUT, "\n", 1);
    }
    wirelet_exit(t, 0);
    return WIRELET_OK;
}

/* --- exit CODE [MESSAGE]: prints MESSAGE to stderr if given, exits with CODE ---------------- */

static int exit_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                      const char *const *envp)
{
    int64_t code;
    int i;
    (void)envc;
    (void)envp;
    skip_name("exit", &argc, &argv);
    if (int_arg(argc, argv, 0, 0, &code)) {
        usage(t, "exit CODE [MESSAGE]");
        return WIRELET_OK;
    }
    if (argc > 1) {
        for (i = 1; i < argc; i++) {
            if (i > 1) wirelet_write(t, WIRELET_STDERR, " ", 1);
            wirelet_write(t, WIRELET_STDERR, argv[i], str_len(argv[i]));
        }
        wirelet_write(t, WIRELET_STDERR, "\n", 1);
    }
    wirelet_exit(t, (int32_t)(code & 0xFF));
    return WIRELET_OK;
}

/* --- counter N INTERVAL_MS / forever [INTERVAL_MS]: a line every interval ------------------- */

typedef struct periodic {
    uint32_t count;
    uint32_t limit; /* 0xFFFFFFFF: forever */
    uint32_t interval;
    uint32_t next;
} periodic;

typedef char periodic_fits[sizeof(periodic) <= WIRELET_TASK_STATE ? 1 : -1];

static int periodic_start(wirelet_task *t, const char *name, int argc, const char *const *argv)
{
    periodic *p = (periodic *)wirelet_state(t);
    int64_t limit = 0xFFFFFFFFLL, interval;
    int bad;
    skip_name(name, &argc, &argv);
    if (name[0] == 'c')
        bad = int_arg(argc, argv, 0, 10, &limit) || int_arg(argc, argv, 1, 100, &interval);
    else
        bad = int_arg(argc, argv, 0, 1000, &interval);
    if (bad || limit < 0 || interval < 0 || interval > 0x7FFFFFFF) {
        usage(t, name[0] == 'c' ? "counter N INTERVAL_MS" : "forever [INTERVAL_MS]");
        return WIRELET_OK;
    }
    p->count = 0;
    p->limit = (uint32_t)(limit > 0xFFFFFFFFLL ? 0xFFFFFFFFLL : limit);
    p->interval = (uint32_t)interval;
    p->next = wirelet_now(wirelet_task_device(t));
    return WIRELET_OK;
}

static void periodic_step(wirelet_task *t, int forever)
{
    periodic *p = (periodic *)wirelet_state(t);
    uint32_t now = wirelet_now(wirelet_task_device(t));
    char line[32];
    /* Catch up on missed ticks without drifting; a full buffer blocks (retry later). */
    while ((int32_t)(now - p->next) >= 0 && (forever || p->count < p->limit)) {
        size_t n = 0;
        if (forever) {
            line[0] = 't';
            line[1] = 'i';
            line[2] = 'c';
            line[3] = 'k';
            line[4] = ' ';
            n = 5;
        }
        n += wirelet_fmt_u64(line + n, (uint64_t)p->count + 1);
        line[n++] = '\n';
        line[n] = 0;
        if (!wirelet_print(t, line)) return; /* full: stepped again once output is acked */
        p->count++;
        p->next += p->interval;
    }
    if (!forever && p->count >= p->limit) {
        wirelet_exit(t, 0);
        return;
    }
    if ((int32_t)(p->next - now) > 0) wirelet_sleep(t, p->next - now);
}

static int counter_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                         const char *const *envp)
{
    (void)envc;
    (void)envp;
    return periodic_start(t, "counter", argc, argv);
}

static int forever_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                         const char *const *envp)
{
    (void)envc;
    (void)envp;
    return periodic_start(t, "forever", argc, argv);
}

static void counter_step(wirelet_task *t) { periodic_step(t, 0); }
static void forever_step(wirelet_task *t) { periodic_step(t, 1); }

/* --- flood BYTES: a checkable pattern (line k is "%015d\n") as fast as the link drains ------ */

typedef struct flood {
    uint32_t total;
    uint32_t produced;
} flood;

static int flood_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                       const char *const *envp)
{
    flood *f = (flood *)wirelet_state(t);
    int64_t total;
    (void)envc;
    (void)envp;
    skip_name("flood", &argc, &argv);
    if (int_arg(argc, argv, 0, 1048576L, &total) || total < 0 || total > 0xFFFFFFFFLL) {
        usage(t, "flood BYTES");
        return WIRELET_OK;
    }
    f->total = (uint32_t)total;
    f->produced = 0;
    if (!f->total) wirelet_exit(t, 0);
    return WIRELET_OK;
}

static void flood_step(wirelet_task *t)
{
    flood *f = (flood *)wirelet_state(t);
    char line[16];
    while (f->produced < f->total) {
        uint32_t k = f->produced / 16, at = f->produced % 16, n = 16 - at, i;
        uint64_t v = k;
        size_t taken;
        for (i = 15; i-- > 0;) {
            line[i] = (char)('0' + (int)(v % 10));
            v /= 10;
        }
        line[15] = '\n';
        if (n > f->total - f->produced) n = f->total - f->produced;
        taken = wirelet_write(t, WIRELET_STDOUT, line + at, n);
        f->produced += (uint32_t)taken;
        if (taken < n) return; /* buffer full: continue in a later step */
    }
    wirelet_exit(t, 0);
}

/* --- reboot [AFTER_MS]: prints a line, then after AFTER_MS the whole device reboots -------- */

typedef struct reboot_state {
    uint32_t at;
    uint8_t announced;
} reboot_state;

static int reboot_start(wirelet_task *t, int argc, const char *const *argv, int envc,
                        const char *const *envp)
{
    reboot_state *r = (reboot_state *)wirelet_state(t);
    int64_t after;
    (void)envc;
    (void)envp;
    skip_name("reboot", &argc, &argv);
    if (int_arg(argc, argv, 0, 50, &after) || after < 0 || after > 0x7FFFFFFF) {
        usage(t, "reboot [AFTER_MS]");
        return WIRELET_OK;
    }
    r->at = wirelet_now(wirelet_task_device(t)) + (uint32_t)after;
    r->announced = 0;
    return WIRELET_OK;
}

static void reboot_step(wirelet_task *t)
{
    reboot_state *r = (reboot_state *)wirelet_state(t);
    uint32_t now = wirelet_now(wirelet_task_device(t));
    if (!r->announced) {
        if (!wirelet_print(t, "rebooting soon\n")) return;
        r->announced = 1;
    }
    if ((int32_t)(now - r->at) >= 0)
        wirelet_reboot(wirelet_task_device(t));
    else
        wirelet_sleep(t, r->at - now);
}

const wirelet_app wirelet_reference_apps[6] = {
    {"echo", echo_start, no_step, stop_now},
    {"counter", counter_start, counter_step, stop_now},
    {"forever", forever_start, forever_step, stop_now},
    {"exit", exit_start, no_step, stop_now},
    {"flood", flood_start, flood_step, stop_now},
    {"reboot", reboot_start, reboot_step, stop_now},
};

/* --- EXEC ------------------------------------------------------------------------------------ */

int32_t wirelet_reference_exec(wirelet_device *dev, wirelet_exec *ex, int argc,
                               const char *const *argv)
{
    int i;
    if (argc > 0 && str_eq(argv[0], "echo")) {
        for (i = 1; i < argc; i++) {
            if (i > 1) wirelet_exec_write(ex, WIRELET_STDOUT, " ", 1);
            wirelet_exec_write(ex, WIRELET_STDOUT, argv[i], str_len(argv[i]));
        }
        wirelet_exec_write(ex, WIRELET_STDOUT, "\n", 1);
        return 0;
    }
    if (argc > 0 && str_eq(argv[0], "uptime")) {
        static const char hex[] = "0123456789abcdef";
        char text[15] = "boot 00000000\n";
        uint32_t id = wirelet_boot_id(dev);
        for (i = 0; i < 8; i++) text[5 + i] = hex[(id >> (28 - 4 * i)) & 15];
        wirelet_exec_write(ex, WIRELET_STDOUT, text, 14);
        return 0;
    }
    if (argc > 0 && str_eq(argv[0], "seq")) {
        /* seq LAST: 1..LAST, one per line; more than a frame holds for a large LAST. */
        int64_t last;
        uint64_t k;
        if (argc != 2 || parse_int(argv[1], &last) || last < 0) {
            wirelet_exec_write(ex, WIRELET_STDERR, "usage: seq LAST\n", 16);
            return 64;
        }
        for (k = 1; k <= (uint64_t)last; k++) {
            char line[24];
            size_t n = wirelet_fmt_u64(line, k);
            line[n++] = '\n';
            if (wirelet_exec_write(ex, WIRELET_STDOUT, line, n) < n) break; /* cut: stop */
        }
        return 0;
    }
    if (argc > 0) wirelet_exec_write(ex, WIRELET_STDERR, argv[0], str_len(argv[0]));
    wirelet_exec_write(ex, WIRELET_STDERR, ": not found\n", 12);
    return 127;
}
