/* Early stub: the API links; the protocol implementation follows. */
#include "wirelet.h"


void wirelet_init(wirelet_device *dev, const wirelet_config *config, const wirelet_hal *hal)
{
    { size_t i; unsigned char *b = (unsigned char *)dev; for (i = 0; i < sizeof *dev; i++) b[i] = 0; }
    dev->config = config;
    dev->hal = hal;
}
void wirelet_feed(wirelet_device *dev, const uint8_t *data, size_t len) { (void)dev; (void)data; (void)len; }
void wirelet_poll(wirelet_device *dev) { (void)dev; }
uint32_t wirelet_idle_ms(wirelet_device *dev) { (void)dev; return 0; }
void wirelet_restart_link(wirelet_device *dev) { (void)dev; }
int wirelet_is_up(const wirelet_device *dev) { (void)dev; return 0; }
int wirelet_log(wirelet_device *dev, uint8_t level, const char *text) { (void)dev; (void)level; (void)text; return 0; }
void wirelet_reboot(wirelet_device *dev) { if (dev->hal->reboot) dev->hal->reboot(dev->hal->ctx); }
uint32_t wirelet_now(const wirelet_device *dev) { return dev->clock; }
const wirelet_stats *wirelet_get_stats(const wirelet_device *dev) { return &dev->stats; }
size_t wirelet_write(wirelet_task *task, uint8_t stream, const void *data, size_t len) { (void)task; (void)stream; (void)data; return len; }
int wirelet_print(wirelet_task *task, const char *text) { (void)task; (void)text; return 1; }
int wirelet_print_to(wirelet_task *task, uint8_t stream, const char *text) { (void)task; (void)stream; (void)text; return 1; }
size_t wirelet_room(const wirelet_task *task) { (void)task; return 0; }
void wirelet_exit(wirelet_task *task, int32_t code) { task->exit_code = code; }
void wirelet_sleep(wirelet_task *task, uint32_t ms) { (void)task; (void)ms; }
void *wirelet_state(wirelet_task *task) { return task->state.bytes; }
const char *wirelet_task_id(const wirelet_task *task) { return task->id; }
wirelet_device *wirelet_task_device(wirelet_task *task) { return task->dev; }
int wirelet_stop_requested(const wirelet_task *task) { (void)task; return 0; }
const char *wirelet_getenv(int envc, const char *const *envp, const char *name)
{
    int i;
    for (i = 0; i < envc; i++) {
        const char *e = envp[i], *n = name;
        while (*n && *e == *n) { e++; n++; }
        if (!*n && *e == '=') return e + 1;
    }
    return NULL;
}
size_t wirelet_exec_write(wirelet_exec *ex, uint8_t stream, const void *data, size_t len) { (void)ex; (void)stream; (void)data; return len; }
