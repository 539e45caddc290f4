/*
 * fuzz_common.h - what the fuzz target and the corpus generator share:
 * building valid dicts through the C API ("base variants"), and the input
 * format.
 *
 * An input is one of two kinds, told apart by its first byte:
 *
 *   raw image:  [0x00 | size class (bits 0-1) | 0x40 strict]
 *               [u32 LE n] [n bytes: the file, from offset 0]
 *               [op program ...]
 *     The file is n bytes of image, zero-padded or cut to the size class
 *     (64, 68, 128 or 256 KiB). "Open these bytes as a dict."
 *
 *   patch:      [0x80 | base variant (bits 0-2) | 0x40 strict]
 *               [u8 count] count x ([u32 LE offset] [u8 len] [len bytes])
 *               [op program ...]
 *     The file is a valid dict built at start-up (see build_base), with
 *     the patches written over it (offsets modulo the file size). This
 *     lets the fuzzer mutate small, structured damage instead of whole
 *     images.
 *
 * The op program is a byte stream interpreted by run_ops in fuzz_dict.c;
 * it never fails to parse (missing bytes read as zero).
 */
#ifndef SHMDICT_FUZZ_COMMON_H
#define SHMDICT_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core.h"
#include "../shmdict.h"

#define FUZZ_RAW 0x00u
#define FUZZ_PATCH 0x80u
#define FUZZ_STRICT 0x40u /* verify first; if clean, check more */
#define FUZZ_NBASES 8
#define FUZZ_NKEYS 24 /* keys "k0".."k23" are what seeds and ops use */

static const uint64_t fuzz_sizes[4] = {64u << 10, 68u << 10, 128u << 10,
                                       256u << 10};

typedef struct fuzz_base {
    unsigned char *img;
    uint64_t size;
} fuzz_base;

static sd_value_in fz_int(int64_t i)
{
    return (sd_value_in){.type = SD_T_INT, .i = i};
}

static sd_value_in fz_bytes(const void *p, size_t n)
{
    return (sd_value_in){.type = SD_T_BYTES, .data = p, .len = n};
}

static void fz_key(char *buf, size_t cap, unsigned i)
{
    snprintf(buf, cap, "k%u", i);
}

/* Put some of everything into a dict: ints, floats, strings, bytes of
 * several sizes, None/True/False, TTLs (some already expired), lists, and
 * a few deletes so the heap has holes. */
static void fz_populate(sd_handle *h, unsigned variant, int fill)
{
    static char big[9000];
    memset(big, 'b', sizeof big);
    char key[32];
    for (unsigned i = 0; i < FUZZ_NKEYS; i++) {
        fz_key(key, sizeof key, i);
        sd_value_in v;
        switch ((i + variant) % 8) {
        case 0:
            v = fz_int((int64_t)i * 1000003 - 77);
            break;
        case 1:
            v = (sd_value_in){.type = SD_T_FLOAT, .f = i * 0.25};
            break;
        case 2:
            v = (sd_value_in){
                .type = SD_T_STR, .data = "h\xc3\xa9llo", .len = 6};
            break;
        case 3:
            v = (sd_value_in){
                .type = SD_T_STR, .ascii = 1, .data = big, .len = 40 + i * 10};
            break;
        case 4:
            v = fz_bytes(big, (size_t)(i * 97) % 3000);
            break;
        case 5:
            v = (sd_value_in){.type = (uint8_t)(SD_T_NONE + i % 3)};
            break;
        case 6: {
            uint64_t len;
            sd_value_in item = fz_int(i);
            for (unsigned j = 0; j < 1 + i % 5; j++)
                SD_IGNORE(
                    sd_push(h, key, strlen(key), (int)(j & 1), &item, &len));
            continue;
        }
        default:
            v = fz_bytes(big, 200);
            break;
        }
        int64_t ttl = i % 5 == 0 ? 1 : i % 5 == 1 ? 1000000 : 0;
        SD_IGNORE(sd_set(h, key, strlen(key), &v, ttl));
    }
    for (unsigned i = 3; i < FUZZ_NKEYS; i += 7) {
        fz_key(key, sizeof key, i);
        SD_IGNORE(sd_delete(h, key, strlen(key)));
    }
    for (unsigned i = 0; fill && i < 100000; i++) {
        snprintf(key, sizeof key, "fill%u", i);
        sd_value_in v = fz_bytes(big, 50 + (i * 37) % 700);
        if (sd_set_ex(h, key, strlen(key), &v, 0, SD_NOEVICT, NULL) != SD_OK)
            break;
    }
    usleep(3000); /* the 1 ms TTLs have passed */
}

/* A child attaches, arms the crash hook and dies in the middle of a write:
 * the image then holds an owner-died mutex and a non-empty undo log (or a
 * pending flush), which the next locker repairs. */
static void fz_crash_writer(const char *path, int countdown, int flush)
{
    pid_t pid = fork();
    if (pid == 0) {
        sd_open_opts o = {.lock_timeout_ms = 1000};
        sd_handle *c = NULL;
        if (sd_open(path, &o, &c) != SD_OK)
            _exit(2);
        static char big[6000];
        memset(big, 'n', sizeof big);
        sd_value_in v = fz_bytes(big, sizeof big);
        sd_set_crash_countdown(countdown);
        if (flush)
            SD_IGNORE(sd_flush_all(c));
        else
            SD_IGNORE(sd_set(c, "k1", 2, &v, 0));
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* Build base variant v and return a copy of its file. */
static int build_base(unsigned v, const char *dir, fuzz_base *out)
{
    char path[256];
    snprintf(path, sizeof path, "%s/shmdict-fuzz-base-%d-%u", dir,
             (int)getpid(), v);
    unlink(path);
    static const uint64_t sizes[FUZZ_NBASES] = {
        64u << 10,  64u << 10, 64u << 10, 128u << 10,
        256u << 10, 64u << 10, 64u << 10, 128u << 10};
    sd_open_opts o = {.size = sizes[v],
                      .mode = 0600,
                      .create = 1,
                      .lock_timeout_ms = 1000,
                      .evict = v == 5,
                      .nparts = v == 4 ? 2 : 1};
    sd_handle *h = NULL;
    if (sd_open(path, &o, &h) != SD_OK)
        return -1;
    if (v != 0)
        fz_populate(h, v, v == 2 || v == 5);
    if (v == 6)
        fz_crash_writer(path, 9, 0);
    if (v == 7)
        fz_crash_writer(path, 3, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = -1;
    if (fd >= 0) {
        out->size = sizes[v];
        out->img = malloc(out->size);
        if (out->img &&
            pread(fd, out->img, out->size, 0) == (ssize_t)out->size)
            rc = 0;
        close(fd);
    }
    sd_close(h); /* the owner's close unlinks it */
    return rc;
}

#endif /* SHMDICT_FUZZ_COMMON_H */
