/*
 * wirelet reference firmware for the Arduino Mega 2560, as a plain Arduino sketch: the link is
 * Serial (USB on a real board, USART0 on a pty under qemu-system-avr -M mega2560) and the device
 * library is the `wirelet` Arduino library (firmware_protocol/c).
 *
 * Time: QEMU's ATmega model has no 8-bit timers, so millis()/delay() (Timer0) stand still there;
 * the sketch keeps its own milliseconds with Timer3 and Timer1 (16-bit), which a real board has
 * free as well (unless the Servo library is used).
 *
 * Build and flash: see hil/qemu/README.md (make -C hil/qemu/firmware avr-upload ...).
 */
#include <avr/interrupt.h>
#include <avr/pgmspace.h>
#include <util/atomic.h>
#include <avr/wdt.h>

#include <wirelet.h>

#include "board_identity.h"
#include "reference_apps.h"

#ifndef DEVICE_ID
#define DEVICE_ID "wirelet-mega-0001"
#endif
#ifndef FIRMWARE_VERSION
#define FIRMWARE_VERSION "0.1.0"
#endif
#define BAUD 115200

// Patched per board by hil/qemu (see board_identity.h); in flash, read with pgm_read_byte.
const board_identity wirelet_board_identity PROGMEM __attribute__((used)) = {
    BOARD_IDENTITY_MAGIC, DEVICE_ID, "00000000"};

// Survives a reset (not zeroed at start): a new boot id on every boot.
static uint32_t boot_counter __attribute__((section(".noinit")));

static char device_id[BOARD_IDENTITY_ID_LEN];
static wirelet_device dev;

// Time: Timer3 runs free at F_CPU/1024 (15.625 kHz, wrapping every 4.2 s) and now_ms() extends it
// in software, so the main loop must call it at least every 4 s (wirelet_poll() does, all the
// time). Not a 1 kHz tick counter: QEMU delivers timer interrupts late under load, so one ran
// ~30% slow there, and its model of a timer with a compare interrupt drifts the same way.
//
// Timer1 interrupts every millisecond and does nothing: under QEMU each of its events is a
// chance for an interrupt left pending (see take_stranded_byte) to be taken; without them
// received bytes could wait for seconds. On a real board it costs a few cycles a millisecond.
ISR(TIMER1_COMPA_vect) {}

static void start_wake_timer() {
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS11) | _BV(CS10);  // CTC on OCR1A, clock / 64
    OCR1A = F_CPU / 64 / 1000 - 1;
    TIMSK1 = _BV(OCIE1A);
}
#define TIMER_PRESCALE 1024UL
static uint16_t timer_last;
static uint32_t clock_ms;
static uint32_t clock_rest;  // fraction of a millisecond, in units of 1/F_CPU s

static void start_ms_timer() {
    TCCR3A = 0;
    TCCR3B = _BV(CS32) | _BV(CS30);  // normal mode, clock / 1024
    TCNT3 = 0;
    timer_last = 0;
    clock_ms = 0;
    clock_rest = 0;
}

// No ATOMIC_BLOCK around the read: the two bytes of TCNT3 come through the timers' shared TEMP
// register, which only an interrupt handler touching a 16-bit timer register could disturb, and
// none here does. A critical section on every call made the main loop spend most of its time with
// interrupts off, which under QEMU loses interrupts (see take_stranded_byte).
static uint32_t now_ms() {
    uint16_t now = TCNT3;
    clock_rest += (uint32_t)(uint16_t)(now - timer_last) * TIMER_PRESCALE;
    timer_last = now;
    clock_ms += clock_rest / (F_CPU / 1000UL);
    clock_rest %= F_CPU / 1000UL;
    return clock_ms;
}

static void hal_write(void *, const uint8_t *data, size_t len) { Serial.write(data, len); }

static uint32_t hal_now_ms(void *) { return now_ms(); }

static uint32_t mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x7feb352dUL;
    h ^= h >> 15;
    h *= 0x846ca68bUL;
    h ^= h >> 16;
    return h;
}

// No RNG on the ATmega2560: the per-start seed (emulated boards), the reset count (random at
// power-on on a real board: SRAM wakes up with noise) and the id, and the timer's phase.
static uint32_t hal_random32(void *) {
    static uint32_t calls;
    char seed[9];
    memcpy_P(seed, wirelet_board_identity.seed, sizeof seed);
    uint32_t h = strtoul(seed, NULL, 16) ^ mix32(boot_counter + 0x9e3779b9UL * ++calls);
    for (const char *p = device_id; *p != '\0'; p++) h = mix32(h ^ (uint8_t)*p);
    return mix32(h ^ TCNT3 ^ now_ms() << 16);
}

// The watchdog resets a real board; QEMU does not emulate it, so jump to the reset vector.
// (No Serial.flush(): QEMU's USART never sets TXC again once the core cleared it.)
static void hal_reboot(void *) {
    wdt_enable(WDTO_15MS);
    for (uint32_t start = now_ms(); now_ms() - start < 100;) {
    }
    cli();
    asm volatile("jmp 0");
}

extern char __bss_end;
static uint32_t hal_mem_used(void *) {
    char here;  // static data, plus the stack down to here
    return (uint32_t)(&__bss_end - (char *)RAMSTART) + (uint32_t)((char *)RAMEND - &here);
}

static const wirelet_hal hal = {NULL, hal_write, hal_now_ms, hal_random32, hal_reboot, hal_mem_used};

static wirelet_config config;

void setup() {
    MCUSR = 0;  // a watchdog reset must not loop: clear its flag and stop it
    wdt_disable();
    boot_counter++;
    memcpy_P(device_id, wirelet_board_identity.id, sizeof device_id);
    device_id[sizeof device_id - 1] = '\0';
    config.device_id = device_id;
    config.firmware_name = "wirelet-reference";
    config.firmware_version = FIRMWARE_VERSION;
    config.arch = "avr";
    config.vendor = "Arduino";
    config.product = "Mega 2560";
    config.serial = device_id;
    config.memory_total = RAMEND - RAMSTART + 1;  // the ATmega2560's 8 KiB of SRAM, which hal_mem_used counts in
    config.apps = reference_apps;
    config.app_count = REFERENCE_APP_COUNT;
    start_ms_timer();
    start_wake_timer();
    Serial.begin(BAUD);
    wirelet_init(&dev, &config, &hal);
    /* 8N1: ten bit times per byte. Retransmission timers count from when a frame has left. */
    wirelet_set_line_rate(&dev, BAUD / 10u);
}

// QEMU's ATmega model (7.2) can lose the USART's receive interrupt: one raised while interrupts
// are off is not always taken when they are on again, and the byte then waits in UDR0 for good.
// Nothing more is received from then on (QEMU reads the pty only once UDR0 is read): the board
// still sends, and answers nothing. The loop takes such a byte itself, after the ones the
// interrupt already queued; on a real board the interrupt has nearly always taken it first.
static size_t take_stranded_byte(uint8_t *out) {
    size_t taken = 0;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        if (Serial.available() == 0 && (UCSR0A & _BV(RXC0))) {
            *out = UDR0;
            taken = 1;
        }
    }
    return taken;
}

// The sending side of the same quirk: a lost data-register-empty interrupt leaves Serial's queued
// bytes unsent until some later interrupt is taken (the board fell silent for 5 s once). Sending
// the next byte here is what Serial itself does when it finds interrupts off.
static void send_stranded_byte() {
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        if ((UCSR0B & _BV(UDRIE0)) && (UCSR0A & _BV(UDRE0))) Serial._tx_udr_empty_irq();
    }
}

void loop() {
    uint8_t chunk[64];
    size_t n = 0;
    while (n < sizeof chunk && Serial.available() > 0) chunk[n++] = (uint8_t)Serial.read();
    if (n < sizeof chunk && (UCSR0A & _BV(RXC0))) n += take_stranded_byte(chunk + n);
    if (n > 0) wirelet_feed(&dev, chunk, n);
    wirelet_poll(&dev);
    if ((UCSR0B & _BV(UDRIE0)) && (UCSR0A & _BV(UDRE0))) send_stranded_byte();
}
