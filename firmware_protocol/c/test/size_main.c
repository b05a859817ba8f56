/*
 * A minimal firmware for measuring the library's flash and RAM from the linker's output
 * (bench/clib_size.py): the device, the reference apps, a HAL writing to a volatile "UART".
 * With -DWIRELET_SIZE_BASELINE the same program without the library, to subtract.
 */
#include "wirelet.h"
#include "wirelet_apps.h"

volatile uint8_t uart_data;
volatile uint32_t ticks;

#ifdef WIRELET_SIZE_BASELINE
int main(void)
{
    for (;;) uart_data = (uint8_t)ticks;
}
#else
static void uart_write(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    while (len--) uart_data = *data++;
}
static uint32_t now_ms(void *ctx)
{
    (void)ctx;
    return ticks;
}
static uint32_t random32(void *ctx)
{
    (void)ctx;
    return ticks | 1u;
}

wirelet_device wirelet_size_device;
static wirelet_config config;
static wirelet_hal hal;

int main(void)
{
    config.device_id = "size";
    config.firmware_name = "size";
    config.firmware_version = "0";
    config.memory_total = 1024;
    config.apps = wirelet_reference_apps;
    config.app_count = WIRELET_REFERENCE_APP_COUNT;
    config.exec = wirelet_reference_exec;
    hal.write = uart_write;
    hal.now_ms = now_ms;
    hal.random32 = random32;
    wirelet_init(&wirelet_size_device, &config, &hal);
    for (;;) {
        uint8_t byte = uart_data;
        wirelet_feed(&wirelet_size_device, &byte, 1);
        wirelet_poll(&wirelet_size_device);
    }
}
#endif
