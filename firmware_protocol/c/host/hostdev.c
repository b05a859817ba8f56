/*
 * wirelet-hostdev: the C device library running on a Linux host, served on a pseudo-terminal,
 * with the reference apps (echo, counter, forever, exit, flood, reboot). The gateway opens the
 * printed tty (or the --link symlink) exactly as it would open /dev/ttyACM0, so the gateway can be
 * tested end to end against the C implementation of the protocol.
 *
 *   wirelet-hostdev [--link PATH] [--device-id ID] [--heartbeat-ms N] [--link-lost-ms N]
 *                   [--hello-ms N] [--rto-initial-ms N] [--rto-min-ms N] [--rto-max-ms N]
 *
 * Prints the slave tty path on the first line of stdout, then serves until SIGINT/SIGTERM.
 * "reboot" (the app) restarts the library with a new boot id, as a board reset would.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "wirelet.h"
#include "wirelet_apps.h"

static int master_fd = -1;
static volatile sig_atomic_t stopping;
static unsigned long boots;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void hal_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    while (len) {
        ssize_t n = write(master_fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                /* The gateway does not read: wait a little, then drop (the link resends). */
                struct pollfd p;
                p.fd = master_fd;
                p.events = POLLOUT;
                if (poll(&p, 1, 100) > 0) continue;
            }
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static uint32_t hal_now(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static uint32_t hal_random(void *ctx)
{
    uint32_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    (void)ctx;
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
        close(fd);
    }
    return v ? v : (uint32_t)time(NULL) ^ (uint32_t)getpid();
}

static void hal_reboot(void *ctx)
{
    (void)ctx;
    boots++; /* returning makes the library restart as after a boot */
}

static const char *arg_value(int *i, int argc, char **argv)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "wirelet-hostdev: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static uint32_t arg_ms(int *i, int argc, char **argv)
{
    const char *v = arg_value(i, argc, argv);
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || !*v) {
        fprintf(stderr, "wirelet-hostdev: %s wants milliseconds, got '%s'\n", argv[*i - 1], v);
        exit(2);
    }
    return (uint32_t)n;
}

int main(int argc, char **argv)
{
    static wirelet_device dev;
    static wirelet_config config;
    static wirelet_hal hal;
    const char *link_path = NULL;
    char temp[4096];
    int slave_fd, i;
    struct termios tio;
    struct sigaction sa;

    config.device_id = "c-hostdev";
    config.firmware_name = "wirelet-hostdev";
    config.firmware_version = "0.1.0";
    config.arch = "host";
    config.vendor = "wirelet";
    config.product = "hostdev";
    config.serial = "0001";
    config.memory_total = 4096;
    config.apps = wirelet_reference_apps;
    config.app_count = WIRELET_REFERENCE_APP_COUNT;
    config.exec = wirelet_reference_exec;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--link")) link_path = arg_value(&i, argc, argv);
        else if (!strcmp(argv[i], "--device-id")) config.device_id = arg_value(&i, argc, argv);
        else if (!strcmp(argv[i], "--heartbeat-ms")) config.heartbeat_ms = arg_ms(&i, argc, argv);
        else if (!strcmp(argv[i], "--link-lost-ms")) config.link_lost_ms = arg_ms(&i, argc, argv);
        else if (!strcmp(argv[i], "--hello-ms")) config.hello_interval_ms = arg_ms(&i, argc, argv);
        else if (!strcmp(argv[i], "--rto-initial-ms")) config.rto_initial_ms = arg_ms(&i, argc, argv);
        else if (!strcmp(argv[i], "--rto-min-ms")) config.rto_min_ms = arg_ms(&i, argc, argv);
        else if (!strcmp(argv[i], "--rto-max-ms")) config.rto_max_ms = arg_ms(&i, argc, argv);
        else {
            fprintf(stderr, "wirelet-hostdev: unknown option '%s' (see the comment at the top of "
                            "firmware_protocol/c/host/hostdev.c)\n", argv[i]);
            return 2;
        }
    }

    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) {
        perror("wirelet-hostdev: cannot create a pseudo-terminal");
        return 1;
    }
    /* Keep our own slave fd open: with none open the master reads EIO and raw mode is lost. */
    slave_fd = open(ptsname(master_fd), O_RDWR | O_NOCTTY);
    if (slave_fd < 0 || tcgetattr(slave_fd, &tio)) {
        perror("wirelet-hostdev: cannot open the pseudo-terminal's slave");
        return 1;
    }
    cfmakeraw(&tio);
    tcsetattr(slave_fd, TCSANOW, &tio);
    fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
    if (link_path) {
        snprintf(temp, sizeof temp, "%s.tmp%ld", link_path, (long)getpid());
        unlink(temp);
        if (symlink(ptsname(master_fd), temp) || rename(temp, link_path)) {
            fprintf(stderr, "wirelet-hostdev: cannot link %s: %s\n", link_path, strerror(errno));
            return 1;
        }
    }
    printf("%s\n", ptsname(master_fd));
    fflush(stdout);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    hal.write = hal_write;
    hal.now_ms = hal_now;
    hal.random32 = hal_random;
    hal.reboot = hal_reboot;
    wirelet_init(&dev, &config, &hal);
    while (!stopping) {
        struct pollfd p;
        uint32_t idle = wirelet_idle_ms(&dev);
        int timeout = idle > 50 ? 50 : (int)idle;
        p.fd = master_fd;
        p.events = POLLIN;
        if (poll(&p, 1, timeout) > 0 && (p.revents & POLLIN)) {
            uint8_t buf[512];
            ssize_t n = read(master_fd, buf, sizeof buf);
            if (n > 0) wirelet_feed(&dev, buf, (size_t)n);
        }
        wirelet_poll(&dev);
    }
    if (link_path) unlink(link_path);
    close(slave_fd);
    close(master_fd);
    return 0;
}
