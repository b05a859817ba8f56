/*
 * The reference apps, behaving as the Python emulator's (hil/emulator/apps.py): echo, counter,
 * forever, exit, flood, reboot. Portable C99 on the wirelet API only (no stdio, no malloc), for
 * wirelet-hostdev and the QEMU/board firmware.
 *
 * Argv convention: a leading element equal to the app's name is skipped, so both
 * ["counter", "5", "10"] and ["5", "10"] work.
 */
#ifndef WIRELET_APPS_H
#define WIRELET_APPS_H

#include "wirelet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WIRELET_USAGE_EXIT 64 /* bad arguments (sysexits EX_USAGE) */

/* The six apps, in the emulator's order. */
extern const wirelet_app wirelet_reference_apps[6];
#define WIRELET_REFERENCE_APP_COUNT 6

/* EXEC as the emulator does it: `echo ARGS...` and `uptime`; anything else exits 127. */
int32_t wirelet_reference_exec(wirelet_device *dev, wirelet_exec *ex, int argc,
                               const char *const *argv);

/* Decimal text of `v` into buf (at least 21 bytes); returns the length (no NUL added). */
size_t wirelet_fmt_u64(char *buf, uint64_t v);

#ifdef __cplusplus
}
#endif

#endif
