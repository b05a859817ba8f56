/*
 * The wirelet reference firmware on QEMU's mps2-an385 (Cortex-M3, CMSDK APB UART0 at 115200 8N1,
 * SysTick at 1 kHz). Bytes are received by interrupt into a ring; when the ring is full the RX
 * interrupt is masked and the byte stays in the UART, which holds the line (QEMU stops reading the
 * pty), so nothing is dropped. The main loop feeds the library, polls it, and sleeps in WFI until
 * the next byte or tick when the library has nothing to do.
 */
#include <stdint.h>
#include <string.h>

#include "board_identity.h"
#include "reference_apps.h"
#include "wirelet.h"

#ifndef DEVICE_ID
#define DEVICE_ID "wirelet-mps2-0001"
#endif
#ifndef FIRMWARE_VERSION
#define FIRMWARE_VERSION "0.1.0"
#endif
#define CPU_HZ 25000000u /* the AN385 FPGA image's system clock */

/* CMSDK APB UART0 */
#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_INTCLEAR (*(volatile uint32_t *)(UART0_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE_TXFULL 1u
#define UART_STATE_RXFULL 2u
#define UART_CTRL_TX_EN 1u
#define UART_CTRL_RX_EN 2u
#define UART_CTRL_RX_INT_EN 8u
#define UART_INT_RX 2u
#define UART0_RX_IRQ 0u

/* System control: SysTick, NVIC, AIRCR */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define SCB_AIRCR (*(volatile uint32_t *)0xE000ED0Cu)
#define AIRCR_SYSRESETREQ 0x05FA0004u

/* Patched per board by hil/qemu (see board_identity.h); volatile so the defaults are not folded. */
const volatile board_identity wirelet_board_identity = {
    BOARD_IDENTITY_MAGIC, DEVICE_ID, "00000000"};

static volatile uint32_t ticks_ms;
/* survives resets: every boot gets a different boot id even from the same seed */
__attribute__((section(".noinit"))) static uint32_t boot_counter;

#define RX_RING 256u /* a power of two */
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;

static char device_id[BOARD_IDENTITY_ID_LEN];
static wirelet_device dev;

void SysTick_Handler(void);
void UART0_RX_Handler(void);

void SysTick_Handler(void) { ticks_ms++; }

void UART0_RX_Handler(void) {
    UART_INTCLEAR = UART_INT_RX;
    while (UART_STATE & UART_STATE_RXFULL) {
        if (rx_head - rx_tail == RX_RING) {
            UART_CTRL &= ~UART_CTRL_RX_INT_EN; /* full: leave the byte in the UART */
            return;
        }
        rx_ring[rx_head % RX_RING] = (uint8_t)UART_DATA;
        rx_head++;
    }
}

static void hal_write(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    while (len-- > 0) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = *data++;
    }
}

static uint32_t hal_now_ms(void *ctx) {
    (void)ctx;
    return ticks_ms;
}

static uint32_t mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h;
}

static uint32_t hex_value(const volatile char *text) {
    uint32_t value = 0;
    int i;
    for (i = 0; i < 8; i++) {
        char c = text[i];
        uint32_t digit = c >= '0' && c <= '9' ? (uint32_t)(c - '0')
                         : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                         : c >= 'A' && c <= 'F' ? (uint32_t)(c - 'A' + 10)
                                                : 0u;
        value = value << 4 | digit;
    }
    return value;
}

/* No RNG on this board: the per-start seed, the reset count, the id and the timer's phase. */
static uint32_t hal_random32(void *ctx) {
    static uint32_t calls;
    uint32_t h = hex_value(wirelet_board_identity.seed) ^ mix32(boot_counter + 0x9e3779b9u * ++calls);
    const char *p;
    for (p = device_id; *p != '\0'; p++) h = mix32(h ^ (uint8_t)*p);
    (void)ctx;
    return mix32(h ^ SYST_CVR ^ ticks_ms << 7);
}

static void hal_reboot(void *ctx) {
    (void)ctx;
    __asm volatile("dsb");
    SCB_AIRCR = AIRCR_SYSRESETREQ;
    for (;;) {
    }
}

static const wirelet_hal hal = {NULL, hal_write, hal_now_ms, hal_random32, hal_reboot, NULL};

static wirelet_config config = {
    NULL, /* device_id: from the identity block */
    "wirelet-reference",
    FIRMWARE_VERSION,
    "armv7m",
    "ARM",
    "MPS2 AN385 (Cortex-M3)",
    NULL, /* serial: the device id */
    32u * 1024u,
    reference_apps,
    REFERENCE_APP_COUNT,
    NULL,
    0, 0, 0, 0, 0, 0};

int main(void) {
    uint8_t chunk[64];
    size_t n, i;
    int greeted = 0; /* the boot's log line is queued (once the link is up) */
    for (i = 0; i + 1 < sizeof device_id && wirelet_board_identity.id[i] != '\0'; i++)
        device_id[i] = wirelet_board_identity.id[i];
    device_id[i] = '\0';
    config.device_id = device_id;
    config.serial = device_id;
    boot_counter++;

    UART_BAUDDIV = CPU_HZ / 115200u;
    UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INT_EN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    SYST_RVR = CPU_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */

    wirelet_init(&dev, &config, &hal);
    /* 8N1: ten bit times per byte; hal_write blocks on the UART, so a window of frames leaves
     * well after the poll that wrote it. Retransmission timers count from when a frame has left. */
    wirelet_set_line_rate(&dev, 115200u / 10u);
    for (;;) {
        n = 0;
        while (rx_tail != rx_head && n < sizeof chunk) {
            chunk[n++] = rx_ring[rx_tail % RX_RING];
            rx_tail++;
        }
        if (n > 0) {
            /* room again: take a byte the UART held while the ring was full (it raised no
             * interrupt then), and let the next ones interrupt */
            __asm volatile("cpsid i");
            UART_CTRL |= UART_CTRL_RX_INT_EN;
            UART0_RX_Handler();
            __asm volatile("cpsie i");
            wirelet_feed(&dev, chunk, n);
        }
        wirelet_poll(&dev);
        /* A firmware log line per boot (DEVICE_LOG): the node's /logs/firmware.log shows it. */
        if (!greeted && wirelet_is_up(&dev))
            greeted = wirelet_log(&dev, WIRELET_LOG_INFO, "wirelet-reference " FIRMWARE_VERSION " up");
        if (n == 0 && wirelet_idle_ms(&dev) > 0) {
            /* sleep with interrupts masked, so a byte arriving now still ends the WFI */
            __asm volatile("cpsid i");
            if (rx_tail == rx_head) __asm volatile("wfi");
            __asm volatile("cpsie i");
        }
    }
}
