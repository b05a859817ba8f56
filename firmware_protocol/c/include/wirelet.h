/*
 * wirelet device library: the device end of the wirelet firmware protocol
 * (firmware_protocol/PROTOCOL.md) in portable C99 (also compiles as C++).
 *
 * No malloc, no stdio, no OS. Everything lives in one `wirelet_device` the firmware allocates
 * (normally as a static variable); buffer sizes are compile-time limits (WIRELET_* macros below).
 *
 * Use (see README.md for a complete sketch):
 *
 *   static wirelet_device dev;
 *   wirelet_init(&dev, &config, &hal);               // sends HELLO
 *   for (;;) {
 *       n = uart_read(buf, sizeof buf);              // whatever arrived, any split
 *       wirelet_feed(&dev, buf, n);
 *       wirelet_poll(&dev);                          // timers, task steps, transmit
 *   }
 *
 * Apps are registered in the config: a name, and start/step/stop callbacks. A task (one running
 * instance of an app) prints with wirelet_print()/wirelet_write() and ends with wirelet_exit().
 */
#ifndef WIRELET_H
#define WIRELET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Compile-time limits. Define WIRELET_PROFILE_SMALL (before including, or with -D) for parts with
 * 2 KB of RAM (Arduino Uno); override any single limit with -DWIRELET_...=N.
 * ------------------------------------------------------------------------------------------- */
#ifdef WIRELET_PROFILE_SMALL
#ifndef WIRELET_MAX_FRAME
#define WIRELET_MAX_FRAME 256 /* largest frame we accept (declared in HELLO) */
#endif
#ifndef WIRELET_WINDOW
#define WIRELET_WINDOW 2 /* sequenced frames in flight / declared receive window */
#endif
#ifndef WIRELET_TX_BUFFER
#define WIRELET_TX_BUFFER 640 /* outgoing frames kept until acknowledged, and queued ones */
#endif
#ifndef WIRELET_TASK_SLOTS
#define WIRELET_TASK_SLOTS 2 /* tasks (running or finished, remembered for LIST_TASKS) */
#endif
#ifndef WIRELET_TASK_STATE
#define WIRELET_TASK_STATE 16 /* bytes of per-task app state (wirelet_state()) */
#endif
#ifndef WIRELET_MAX_ARGS
#define WIRELET_MAX_ARGS 8 /* argv entries + env entries a task may be started with */
#endif
#else /* default profile: <= 4 KB of RAM */
#ifndef WIRELET_MAX_FRAME
#define WIRELET_MAX_FRAME 512
#endif
#ifndef WIRELET_WINDOW
#define WIRELET_WINDOW 4
#endif
#ifndef WIRELET_TX_BUFFER
#define WIRELET_TX_BUFFER 2304
#endif
#ifndef WIRELET_TASK_SLOTS
#define WIRELET_TASK_SLOTS 4
#endif
#ifndef WIRELET_TASK_STATE
#define WIRELET_TASK_STATE 16
#endif
#ifndef WIRELET_MAX_ARGS
#define WIRELET_MAX_ARGS 16
#endif
#endif

/* Protocol limits (PROTOCOL.md section 11); not tunable. */
#define WIRELET_TASK_ID_MAX 48
#define WIRELET_TEXT_MAX 255

/* Output streams. */
#define WIRELET_STDOUT 1
#define WIRELET_STDERR 2

/* DEVICE_LOG levels. */
#define WIRELET_LOG_DEBUG 0
#define WIRELET_LOG_INFO 1
#define WIRELET_LOG_WARN 2
#define WIRELET_LOG_ERROR 3

/* ERROR codes (PROTOCOL.md section 9); an app's start() may return one to refuse. */
#define WIRELET_OK 0
#define WIRELET_ERR_UNSUPPORTED 1
#define WIRELET_ERR_MALFORMED 2
#define WIRELET_ERR_TOO_LARGE 3
#define WIRELET_ERR_NO_SUCH_APP 4
#define WIRELET_ERR_NO_SUCH_TASK 5
#define WIRELET_ERR_NO_SLOTS 6
#define WIRELET_ERR_BUSY 7
#define WIRELET_ERR_INTERNAL 8
#define WIRELET_ERR_NO_COMMON_VERSION 9
#define WIRELET_ERR_TIMEOUT 10
#define WIRELET_ERR_WRONG_DIRECTION 11

/* Exit codes the library reports for tasks it ends itself (as a shell would). */
#define WIRELET_EXIT_STOPPED 143 /* stopped by STOP_TASK and the app has no stop() */
#define WIRELET_EXIT_KILLED 137  /* the app did not exit within the stop grace period */

typedef struct wirelet_device wirelet_device;
typedef struct wirelet_task wirelet_task;
typedef struct wirelet_exec wirelet_exec;

/* ---------------------------------------------------------------------------------------------
 * HAL: what the library needs from the board. All callbacks get `ctx` back.
 * ------------------------------------------------------------------------------------------- */
typedef struct wirelet_hal {
    void *ctx;
    /* Write all `len` bytes to the line (UART/USB-CDC); may block. Required. */
    void (*write)(void *ctx, const uint8_t *data, size_t len);
    /* Monotonic milliseconds; wrapping at 2^32 is fine. Required. */
    uint32_t (*now_ms)(void *ctx);
    /* A random number for the boot id (new on every boot): a hardware RNG, ADC noise, an
     * uninitialised-RAM hash... Zero is retried. Required. */
    uint32_t (*random32)(void *ctx);
    /* Reset the MCU (an app asked for it). Optional. If it returns (host builds), or is NULL,
     * the library restarts itself as after a boot: new boot id, no tasks, new handshake. */
    void (*reboot)(void *ctx);
    /* Bytes of RAM in use, for heartbeat load reports. Optional (NULL: the library reports the
     * size of its own state). */
    uint32_t (*mem_used)(void *ctx);
} wirelet_hal;

/* ---------------------------------------------------------------------------------------------
 * Apps: what the firmware offers. A START_TASK naming `name` creates a task and calls start().
 * ------------------------------------------------------------------------------------------- */
typedef struct wirelet_app {
    const char *name; /* 1..32 bytes */
    /* Called once when the task is created. argv[argc] and envp[envc] are NULL; env entries are
     * "KEY=VALUE" (see wirelet_getenv). The strings are only valid during this call: copy what
     * you keep into wirelet_state(task). May print and may call wirelet_exit(). Return
     * WIRELET_OK to run, or an error code (e.g. WIRELET_ERR_TOO_LARGE) to refuse: the task is
     * not created and the gateway gets that ERROR. NULL: nothing to do. */
    int (*start)(wirelet_task *task, int argc, const char *const *argv, int envc,
                 const char *const *envp);
    /* Called from wirelet_poll() while the task runs (not before its wirelet_sleep() ends).
     * Do a little work and return; never block. Required. */
    void (*step)(wirelet_task *task);
    /* STOP_TASK arrived: finish within grace_ms by calling wirelet_exit() (here or in a later
     * step), else the library ends the task as "killed" (exit code 137). NULL: the task ends at
     * once as "stopped" with exit code 143. */
    void (*stop)(wirelet_task *task, uint32_t grace_ms);
} wirelet_app;

/* EXEC (kubectl exec): a one-shot command run synchronously. Write its output with
 * wirelet_exec_write() and return its exit code. */
typedef int32_t (*wirelet_exec_fn)(wirelet_device *dev, wirelet_exec *ex, int argc,
                                   const char *const *argv);

/* ---------------------------------------------------------------------------------------------
 * Configuration: who the device is. Must stay valid (e.g. `static const`) while the device runs.
 * ------------------------------------------------------------------------------------------- */
typedef struct wirelet_config {
    const char *device_id;        /* stable unique id (MCU unique id); names the Kubernetes node */
    const char *firmware_name;    /* <= 32 bytes */
    const char *firmware_version; /* <= 32 bytes */
    const char *arch;             /* e.g. "armv7m", "avr"; NULL: not sent */
    const char *vendor;           /* USB-descriptor-like identity; NULL: not sent */
    const char *product;
    const char *serial;
    uint32_t memory_total; /* bytes of RAM the device offers to tasks (node capacity) */
    const wirelet_app *apps;
    uint8_t app_count; /* <= 32 */
    wirelet_exec_fn exec;    /* NULL: EXEC is answered with ERROR UNSUPPORTED */
    /* Timers in ms; 0 takes the protocol's default (PROTOCOL.md section 13). Tests shorten them. */
    uint32_t rto_initial_ms;    /* 500 */
    uint32_t rto_min_ms;        /* 100 */
    uint32_t rto_max_ms;        /* 4000 */
    uint32_t hello_interval_ms; /* 500, doubling up to the heartbeat period */
    uint32_t heartbeat_ms;      /* 2000 until the gateway's WELCOME sets it */
    uint32_t link_lost_ms;      /* 6000 until the gateway's WELCOME sets it */
} wirelet_config;

/* Counters for diagnostics and tests; they only grow. */
typedef struct wirelet_stats {
    uint32_t frames_sent;
    uint32_t frames_received; /* intact frames (CRC ok) */
    uint32_t retransmits;
    uint32_t duplicates;
    uint32_t out_of_order;
    uint32_t bad_cobs;
    uint32_t too_short;
    uint32_t oversize;
    uint32_t bad_crc;
    uint32_t rejected;     /* intact frames whose message was refused (malformed, unknown...) */
    uint32_t deferred;     /* requests dropped unacknowledged for lack of reply room */
    uint32_t link_losses;
    uint32_t handshakes;   /* WELCOMEs accepted */
    uint32_t peer_resets;  /* fresh sessions with a new gateway session id */
} wirelet_stats;

/* ---------------------------------------------------------------------------------------------
 * Library state. Treat every field as private: read it only through the functions below.
 * ------------------------------------------------------------------------------------------- */
struct wirelet_task {
    wirelet_device *dev;
    uint8_t status;   /* free / running / stopping / finished */
    uint8_t app;      /* index into config->apps */
    uint8_t id_len;
    uint8_t flags;    /* exit report pending, sleeping, ... */
    char id[WIRELET_TASK_ID_MAX + 1];
    int32_t exit_code;
    uint32_t stop_request; /* STOP_TASK request id to answer with TASK_EXITED */
    uint32_t kill_at;      /* ms: end of the stop grace period */
    uint32_t wake_at;      /* ms: wirelet_sleep() */
    uint32_t age;          /* order of creation/finish, for reuse of finished slots */
    uint64_t out_end[2];   /* bytes produced on stdout, stderr (the stream offsets) */
    union {
        unsigned char bytes[WIRELET_TASK_STATE];
        uint32_t align_u32;
        void *align_ptr;
    } state;
};

struct wirelet_device {
    const wirelet_config *config;
    const wirelet_hal *hal;
    /* link state */
    uint8_t link_state;
    uint8_t flags;
    uint8_t peer_window;
    uint8_t tx_inflight; /* records at the head of tx_buf sent and not yet acknowledged */
    uint8_t open_task;   /* task slot and stream of the output record still growing */
    uint8_t open_stream;
    uint8_t features;    /* optional protocol features of this session (HELLO & WELCOME) */
    uint16_t peer_max_frame;
    uint16_t tx_next_seq;  /* seq of the next record put in flight */
    uint16_t rx_next;      /* next seq expected from the gateway (our ack) */
    uint16_t rx_len;       /* bytes of the COBS block being received */
    uint16_t tx_used;      /* bytes of tx_buf holding records */
    uint16_t tx_open;      /* offset of the growing output record, 0xFFFF if none */
    uint16_t open_head;    /* bytes of that record's frame before its data */
    uint16_t ctrl_reserve; /* tail of tx_buf kept for unsequenced frames (HELLO, PONG) */
    uint16_t output_max;   /* wirelet_set_output_frame_max() */
    uint32_t boot_id;
    uint32_t session_id; /* session of the last WELCOME accepted this boot (0: none) */
    uint32_t attempt;
    uint32_t heartbeat_ms;
    uint32_t link_lost_ms;
    uint32_t hello_interval;
    uint32_t next_hello;
    uint32_t last_heard;
    uint32_t next_ping;
    uint32_t ping_nonce;
    uint32_t ping_sent_at;
    uint32_t line_rate;    /* wirelet_set_line_rate(), bytes/s; 0: unknown */
    uint32_t line_free_at; /* ms: when the bytes written so far will have left the line */
    uint32_t retransmit_at;
    uint32_t srtt8, rttvar8, rto; /* ms (srtt and rttvar in 1/8 ms) */
    uint32_t clock;               /* ms at the last feed/poll */
    uint32_t age;
    uint32_t tx_sent_at[WIRELET_WINDOW];
    uint8_t tx_retx[WIRELET_WINDOW];
    uint8_t tx_form[WIRELET_WINDOW]; /* how each record in flight went out (task handles) */
    wirelet_stats stats;
    wirelet_task tasks[WIRELET_TASK_SLOTS];
    uint8_t rx_buf[WIRELET_MAX_FRAME + WIRELET_MAX_FRAME / 254 + 1]; /* one COBS block */
    /* Outgoing sequenced frames as records [length u16][header][payload]: first the ones in
     * flight, then the queued ones. The free tail builds unsequenced frames. */
    uint8_t tx_buf[WIRELET_TX_BUFFER];
};

/* ---------------------------------------------------------------------------------------------
 * Device API
 * ------------------------------------------------------------------------------------------- */

/* Set up `dev` and start the handshake (sends HELLO). `config` and `hal` must outlive `dev`. */
void wirelet_init(wirelet_device *dev, const wirelet_config *config, const wirelet_hal *hal);

/* Bytes received from the line, in any split. Never fails on bad input. */
void wirelet_feed(wirelet_device *dev, const uint8_t *data, size_t len);

/* Call often from the main loop: runs timers (retransmission, heartbeat, handshake repeats),
 * steps running tasks and transmits. */
void wirelet_poll(wirelet_device *dev);

/* Milliseconds the firmware may sleep (waiting for input) before wirelet_poll() has work:
 * 0 if it has work now. For low-power loops; calling poll more often is always fine. */
uint32_t wirelet_idle_ms(wirelet_device *dev);

/* The line was reconnected (USB re-plug, new pty): handshake again at once, keeping the
 * session so nothing is lost. */
void wirelet_restart_link(wirelet_device *dev);

/* 1 while the link is up (handshake done and not lost). */
int wirelet_is_up(const wirelet_device *dev);

/* A firmware log line (DEVICE_LOG, level WIRELET_LOG_*); dropped if there is no room.
 * Returns 1 if queued. */
int wirelet_log(wirelet_device *dev, uint8_t level, const char *text);

/* Reboot the device (hal->reboot, or a library restart if that returns). */
void wirelet_reboot(wirelet_device *dev);

/* Current time of the library's clock (hal->now_ms at the last feed/poll). */
uint32_t wirelet_now(const wirelet_device *dev);

const wirelet_stats *wirelet_get_stats(const wirelet_device *dev);

/* Build TASK_OUTPUT and DEVICE_LOG frames of at most `bytes` (0, the default: as large as the
 * gateway accepts; values below 64 count as 64). On a noisy line small frames get through where
 * large ones keep failing their CRC: at a bit error rate of 1e-3 a 512-byte frame arrives intact
 * 2% of the time, a 96-byte one 45%. Kept across wirelet_reboot(). */
void wirelet_set_output_frame_max(wirelet_device *dev, uint16_t bytes);

/* The rate the UART sends at, in bytes per second (baud / 10 for 8N1; 0, the default: unknown
 * or fast, e.g. USB). Set it when hal->write only queues bytes for a slow UART: a frame then
 * counts as sent once its last byte has left the line, so the retransmission timer and RTT
 * samples leave out the time frames wait behind others (PROTOCOL.md section 6, "Timers on a
 * slow line"). Kept across wirelet_reboot(). */
void wirelet_set_line_rate(wirelet_device *dev, uint32_t bytes_per_s);

/* This boot's id (random, non-zero; new on every boot). */
uint32_t wirelet_boot_id(const wirelet_device *dev);

/* ---------------------------------------------------------------------------------------------
 * Task API, for app callbacks
 * ------------------------------------------------------------------------------------------- */

/* Write bytes to the task's stdout/stderr. Returns how many were taken: fewer than `len` when the
 * outgoing buffer is full (backpressure). The task is then not stepped again until the gateway
 * acknowledges output and room frees up: write the rest in that later step. */
size_t wirelet_write(wirelet_task *task, uint8_t stream, const void *data, size_t len);

/* Write a NUL-terminated text to stdout, all or nothing: returns 1 if written, 0 if there is
 * no room yet (nothing written; as for wirelet_write, the next step comes once room frees). */
int wirelet_print(wirelet_task *task, const char *text);

/* Same for any stream. */
int wirelet_print_to(wirelet_task *task, uint8_t stream, const char *text);

/* Bytes wirelet_write() would take right now. */
size_t wirelet_room(const wirelet_task *task);

/* End the task with an exit code. Output written before is delivered first. */
void wirelet_exit(wirelet_task *task, int32_t code);

/* Do not call step() again for `ms` milliseconds (a STOP request still arrives). */
void wirelet_sleep(wirelet_task *task, uint32_t ms);

/* WIRELET_TASK_STATE bytes of per-task storage, zeroed at start, aligned for pointers. */
void *wirelet_state(wirelet_task *task);

/* The task's id (NUL-terminated) and its device. */
const char *wirelet_task_id(const wirelet_task *task);
wirelet_device *wirelet_task_device(wirelet_task *task);

/* 1 once STOP_TASK has been received for this task. */
int wirelet_stop_requested(const wirelet_task *task);

/* Value of `name` in an env array as given to start(), or NULL. */
const char *wirelet_getenv(int envc, const char *const *envp, const char *name);

/* EXEC output (stream WIRELET_STDOUT or WIRELET_STDERR); returns bytes taken (the rest is cut
 * and the reply says `truncated`). A streamed EXEC (the gateway asked for EXEC_OUTPUT frames)
 * takes as much as the transmit buffer holds, a plain one what fits one EXEC_RESULT frame. */
size_t wirelet_exec_write(wirelet_exec *ex, uint8_t stream, const void *data, size_t len);

/* Bytes of RAM the library state takes at the compiled limits (sizeof(wirelet_device)). */
#define WIRELET_RAM_BYTES (sizeof(wirelet_device))

#ifdef __cplusplus
}
#endif

#endif /* WIRELET_H */
