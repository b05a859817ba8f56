/*
 * The reference apps of the wirelet firmware (echo, counter, forever, exit, flood, reboot), written
 * against the portable device library only, so every board runs the same ones. They behave as the
 * Python emulator's apps (hil/emulator/apps.py): same argv, output and exit codes.
 */
#ifndef WIRELET_REFERENCE_APPS_H
#define WIRELET_REFERENCE_APPS_H

#include "wirelet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define REFERENCE_APP_COUNT 6
extern const wirelet_app reference_apps[REFERENCE_APP_COUNT];

#ifdef __cplusplus
}
#endif

#endif
