/*
 * Who this board is, as a block of text in flash that a per-board copy of the image can change:
 * hil/qemu patches `id` and `seed` in the ELF file before it boots each emulated board (see
 * hil/qemu/image.py, which knows this layout), so one build serves a fleet of distinct boards.
 * A real board keeps the id it was built with (make DEVICE_ID=...).
 *
 * Layout (all text, NUL-terminated): "WIRELET-BOARD-ID\0" | id[49] | seed[9] (8 hex digits).
 */
#ifndef WIRELET_BOARD_IDENTITY_H
#define WIRELET_BOARD_IDENTITY_H

#define BOARD_IDENTITY_MAGIC "WIRELET-BOARD-ID"
#define BOARD_IDENTITY_MAGIC_LEN 17 /* with its NUL */
#define BOARD_IDENTITY_ID_LEN 49
#define BOARD_IDENTITY_SEED_LEN 9

typedef struct board_identity {
    char magic[BOARD_IDENTITY_MAGIC_LEN];
    char id[BOARD_IDENTITY_ID_LEN];
    char seed[BOARD_IDENTITY_SEED_LEN];
} board_identity;

#endif
