/*
 * guard.h - the SIGBUS net under a dict's mapping (see guard.c).
 *
 * A handle registers its mapping and file descriptor when it opens, and
 * reads its guard's state after each call: anything but SD_GUARD_OK means
 * that part of the mapping was replaced by private pages, and the handle
 * must not commit or answer again.
 */
#ifndef SHMDICT_GUARD_H
#define SHMDICT_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    SD_GUARD_OK = 0,
    SD_GUARD_TORN = 1,    /* the file was truncated under the mapping */
    SD_GUARD_NOSPACE = 2, /* a page of the file could not be had */
};

/* One registered mapping. Guards are never freed: the signal handler may
 * be walking the list at any moment. A closed handle's guard is reused. */
typedef struct sd_guard {
    _Atomic(char *) base;       /* the mapping, NULL while unused */
    uint64_t size;              /* bytes mapped */
    int fd;                     /* the file, kept open for fstat/fallocate */
    _Atomic uint64_t anon_from; /* pages from here on are private zeros */
    _Atomic int state;          /* SD_GUARD_* */
    _Atomic bool claimed;       /* in use by a handle */
    _Atomic bool dangling;      /* a mutex in the private pages failed to
                                   unlock: it may be on a robust list */
    atomic_flag busy;           /* one repair at a time */
    struct sd_guard *next;      /* written once, before publication */
} sd_guard;

/* Register a mapping (installing the handler if needed). NULL if out of
 * memory. The guard owns `fd` from now on. */
sd_guard *sd_guard_add(char *base, uint64_t size, int fd);
/* Unregister and close the fd. Returns the offset from which the mapping
 * must be left in place (the private pages, if a mutex there may still be
 * on a robust list), or `size` if all of it may be unmapped. */
uint64_t sd_guard_remove(sd_guard *g);

/* An unlock failed: the mutex's bytes were replaced, and glibc may still
 * list it on the thread's robust list (see guard.c). */
static inline void sd_guard_note_dangling(sd_guard *g)
{
    atomic_store(&g->dangling, true);
}

static inline int sd_guard_state(const sd_guard *g)
{
    return atomic_load_explicit(&g->state, memory_order_relaxed);
}

#endif /* SHMDICT_GUARD_H */
