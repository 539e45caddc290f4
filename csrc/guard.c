/*
 * guard.c - turning SIGBUS from a dict's mapping into an error.
 *
 * A MAP_SHARED mapping of a tmpfs file raises SIGBUS, which kills the
 * process by default, in two cases:
 *   - a page past the end of the file is touched: someone truncated the
 *     file under us (to half, to one page, to 0);
 *   - a page inside the file is touched for the first time and tmpfs has
 *     no page to give it (the filesystem is full). On tmpfs a read fault
 *     of a hole allocates a page too, so reads are not exempt.
 * The core prevents the second case by reserving pages with fallocate
 * before it first writes them (file.c, heap.c, index.c), and reads only
 * what it reserved. Nothing can prevent the first: any process of the same
 * user can truncate the file. This file is the net under both.
 *
 * Why a handler that fixes the mapping, and not siglongjmp: a fault can hit
 * a thread that holds a stripe's robust mutex, halfway through a write.
 * Jumping out would leave the mutex on glibc's per-thread robust list and
 * the transaction half done. Instead the handler maps private zero pages
 * (MAP_FIXED anonymous memory) over the pages that can't be had, marks the
 * handle as broken, and returns. The faulting instruction runs again, now
 * on memory that exists, and the operation finishes on its own terms. It
 * may read zeros where the file's bytes were; every offset the core reads
 * is bounds-checked, so that is the same as reading a damaged file. Every
 * commit of a broken handle is turned into a rollback (tx.c), so nothing
 * it does after the fault reaches the part of the file that is still
 * shared, and every call of a broken handle returns SD_TORN or
 * SD_NOSPACE. The caller reopens the dict to go on.
 *
 * The private pages stay mapped after the handle closes if a lock was
 * held when they replaced the file's (lock.h notes it at the unlock): the
 * mutex there is zeros now, so its unlock either fails or, reading it as a
 * plain mutex, skips the robust list; glibc may then still list it on the
 * thread's robust list and writes into the list's entries on every later
 * lock, so unmapping it would turn a later lock into a SIGSEGV. They cost
 * address space only, and only after a fault during a write.
 *
 * Everything the handler does is async-signal-safe: it walks a list of
 * guards that are never freed, and makes only the fstat, fallocate and
 * mmap system calls. One spin flag per guard keeps two threads that fault
 * at once from mapping over each other's repair. A fault that is not in a
 * guarded mapping, or that the handler can't repair, goes to the handler
 * that was installed before ours (faulthandler's, say), or kills the
 * process as it would have without us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "layout.h"

static _Atomic(sd_guard *) guards;
static struct sigaction previous;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* MAP_FIXED replaces the file's pages at once. If it fails there is
 * nothing left to try, and the fault kills as it would have. */
static bool map_private(char *at, uint64_t len)
{
    return len == 0 ||
           mmap(at, len, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED;
}

/* Repair the fault at `off` of g's mapping. True when the instruction can
 * run again. */
static bool repair(sd_guard *g, char *base, uint64_t off)
{
    while (atomic_flag_test_and_set_explicit(&g->busy, memory_order_acquire))
        ;
    bool ok = true;
    uint64_t page = off & ~(uint64_t)(SD_PAGE - 1);
    struct stat st;
    uint64_t eof = fstat(g->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    uint64_t anon_from = atomic_load(&g->anon_from);
    if (page >= anon_from) {
        /* Another thread repaired it while we waited. */
    } else if (page + SD_PAGE <= eof) {
        /* A hole tmpfs could not fill. Try once more: another process may
         * have freed room since. */
        if (fallocate(g->fd, 0, (off_t)page, SD_PAGE) != 0) {
            ok = map_private(base + page, SD_PAGE);
            atomic_store(&g->state, SD_GUARD_NOSPACE);
        }
    } else {
        /* Past the end: every page from the new end on is gone. */
        uint64_t from = (eof + SD_PAGE - 1) & ~(uint64_t)(SD_PAGE - 1);
        if (from > page)
            from = page;
        ok = map_private(base + from, anon_from - from);
        if (ok)
            atomic_store(&g->anon_from, from);
        atomic_store(&g->state, SD_GUARD_TORN);
    }
    atomic_flag_clear_explicit(&g->busy, memory_order_release);
    return ok;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) {
            previous.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (previous.sa_handler != SIG_DFL &&
               previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    /* Default action: die of SIGBUS as if we had never been here. For a
     * fault, returning runs the instruction again, which faults again
     * with the default disposition in place. */
    signal(sig, SIG_DFL);
    if (si->si_code <= 0)
        raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (si->si_code == SI_TKILL && si->si_pid == getpid() &&
        previous.sa_handler == SIG_DFL && !(previous.sa_flags & SA_SIGINFO)) {
        /* raise(3)d by this process, with nothing behind us: a handler
         * that was installed in front of ours (faulthandler.enable() after
         * the first open) passing a fault on. Returning lets the faulting
         * instruction run again; its fault then comes to us with its
         * address, and is repaired or kills as it should. (A SIGBUS this
         * process raise()s for its own sake is lost; kill(2) is not.) */
        errno = saved;
        return;
    }
    if (si->si_code > 0) { /* a fault, not kill(2) */
        char *a = si->si_addr;
        for (sd_guard *g = atomic_load(&guards); g; g = g->next) {
            char *base = atomic_load(&g->base);
            if (base && a >= base && (uint64_t)(a - base) < g->size) {
                if (repair(g, base, (uint64_t)(a - base))) {
                    errno = saved;
                    return;
                }
                break;
            }
        }
    }
    chain(sig, si, uc);
    errno = saved;
}

/* Install on_sigbus, chaining to whatever was there, unless it is the
 * handler already. Called on every open, so that a handler installed
 * after ours (faulthandler.enable() after the first open) is put behind
 * ours again rather than left to see our faults first. */
static void install(void)
{
    struct sigaction cur;
    pthread_mutex_lock(&install_lock);
    if (sigaction(SIGBUS, NULL, &cur) == 0 &&
        !((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &cur) == 0)
            previous = cur;
    }
    pthread_mutex_unlock(&install_lock);
}

sd_guard *sd_guard_add(char *base, uint64_t size, int fd)
{
    install();
    sd_guard *g;
    for (g = atomic_load(&guards); g; g = g->next) {
        bool expected = false;
        if (atomic_compare_exchange_strong(&g->claimed, &expected, true))
            break; /* reuse a guard a closed handle gave back */
    }
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g)
            return NULL;
        atomic_flag_clear(&g->busy);
        atomic_store(&g->claimed, true);
        sd_guard *head = atomic_load(&guards);
        do
            g->next = head;
        while (!atomic_compare_exchange_weak(&guards, &head, g));
    }
    g->size = size;
    g->fd = fd;
    atomic_store(&g->anon_from, size);
    atomic_store(&g->state, SD_GUARD_OK);
    atomic_store(&g->dangling, false);
    atomic_store(&g->base, base); /* last: the handler may look now */
    return g;
}

uint64_t sd_guard_remove(sd_guard *g)
{
    if (!g)
        return UINT64_MAX;
    atomic_store(&g->base, NULL);
    uint64_t keep =
        atomic_load(&g->dangling) ? atomic_load(&g->anon_from) : g->size;
    if (g->fd >= 0)
        close(g->fd);
    g->fd = -1;
    atomic_store(&g->claimed, false);
    return keep;
}
