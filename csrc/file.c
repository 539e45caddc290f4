/*
 * file.c - creating, attaching to, validating and removing the file.
 *
 * Creation is atomic as seen from other processes: the file is made
 * unnamed (O_TMPFILE) in the directory, sized, mapped and fully set up,
 * and only then linked to its name, which fails if the name is taken. A
 * peer therefore sees no file or a complete one, never a half-built one.
 * Linking an unnamed file goes through /proc/self/fd; where O_TMPFILE or
 * /proc is missing, the file is built under a temporary name of its own
 * (O_CREAT|O_EXCL) and published with link(2), which is just as atomic.
 *
 * Pages: tmpfs gives a page only when it is first touched, and a page it
 * can't give kills the toucher with SIGBUS. So every page is reserved
 * (fallocate) before its first touch: the fixed pages here at creation,
 * the heap as it grows (sd_heap_reserve_locked, alloc.c), and an index
 * page before its first key (sd_bucket_ready_locked, dict.c). Readers
 * touch nothing else. With `reserve` the whole file is reserved at once.
 * guard.c is the net under what can't be prevented (a truncated file).
 *
 * Attaching refuses symlinks (O_NOFOLLOW), files of other users unless
 * asked, and any file whose header doesn't match the layout that its size
 * implies. The layout values are copied into the handle and never read
 * from the file again.
 *
 * A dict whose creator was killed keeps its file. sd_open(create) takes
 * such a name over: when the recorded creator (pid, start time, pid
 * namespace) is gone, it marks the old file retired with one CAS, so that
 * of two racing creators only one proceeds, unlinks it, and links its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "heap.h"
#include "lock.h"

/* Where things are, relative to the start of a stripe, plus the stripe
 * geometry of the whole file. */
typedef struct layout {
    uint64_t nparts, part_size;
    uint64_t lock_off, summary_off, summary_bytes, refs_off;
    uint64_t index_off, nbuckets, heap_off, heap_size;
} layout;

static inline uint64_t page_up(uint64_t n)
{
    return (n + SD_PAGE - 1) / SD_PAGE * SD_PAGE;
}

static_assert(sizeof(sd_slot) * SD_NSLOTS <= SD_PAGE, "slots fit a page");

#define AUTO_PART_MIN (UINT64_C(16) << 20) /* auto stripes are >= 16 MiB */
#define AUTO_PART_MAX 16u

/* How many stripes a dict of `size` bytes gets when not told: one per
 * 16 MiB, at most 16, a power of two. Below 32 MiB that is one, so small
 * dicts can hold an item as big as their whole heap. */
static unsigned auto_parts(uint64_t size)
{
    unsigned n = 1;
    while (n * 2 <= AUTO_PART_MAX && size / (n * 2) >= AUTO_PART_MIN)
        n *= 2;
    return n;
}

/* The layout is a pure function of the file size and the stripe count. */
static bool layout_for(uint64_t size, uint64_t nparts, layout *lo)
{
    if (size < SD_MIN_SIZE || size > SD_MAX_SIZE || nparts == 0 ||
        nparts > SD_MAX_PARTS || (nparts & (nparts - 1)))
        return false;
    uint64_t part = (size - SD_PARTS_OFF) / nparts / SD_PAGE * SD_PAGE;
    lo->nparts = nparts;
    lo->part_size = part;
    lo->lock_off = SD_PAGE; /* after the stripe's sd_pstate page */
    uint64_t nb = 16;
    while (nb * 2 <= part / SD_BUCKET_BYTES_PER)
        nb *= 2;
    lo->nbuckets = nb;
    uint64_t index_bytes = page_up(nb * 4);
    uint64_t index_pages = index_bytes / SD_PAGE;
    lo->summary_off = lo->lock_off + SD_LOCK_STRIDE;
    lo->summary_bytes = (index_pages + 31) / 32 * 4;
    lo->refs_off = lo->summary_off + page_up(lo->summary_bytes);
    lo->index_off = lo->refs_off + page_up(nb);
    lo->heap_off = lo->index_off + index_bytes;
    if (lo->heap_off + 4 * SD_PAGE > part)
        return false; /* a stripe must hold a useful heap */
    lo->heap_size = (part - lo->heap_off) & ~(uint64_t)(SD_UNIT - 1);
    return true;
}

/* Point every stripe of d at its part of the mapping. */
static bool handle_apply_layout(sd_handle *d, const layout *lo, uint64_t size,
                                uint64_t seed, uint32_t flags)
{
    bool evict = flags & SD_CREATE_EVICT;
    d->file_size = size;
    d->hash_seed = seed;
    d->nparts = (unsigned)lo->nparts;
    unsigned bits = 0;
    while ((1u << bits) < d->nparts)
        bits++;
    d->part_shift = 32 - bits;
    d->hdr = (sd_header *)(void *)d->base;
    d->parts = calloc(d->nparts, sizeof *d->parts);
    if (!d->parts)
        return false;
    for (unsigned i = 0; i < d->nparts; i++) {
        sd_part *h = &d->parts[i];
        uint64_t off = SD_PARTS_OFF + i * lo->part_size;
        h->base = d->base;
        h->file_size = size;
        h->part_off = off;
        h->part_size = lo->part_size;
        h->heap_off = off + lo->heap_off;
        h->heap_size = lo->heap_size;
        h->index_off = off + lo->index_off;
        h->summary_off = off + lo->summary_off;
        h->summary_bytes = lo->summary_bytes;
        h->refs_off = off + lo->refs_off;
        h->nbuckets = lo->nbuckets;
        h->hash_seed = seed;
        h->max_chain = lo->heap_size / SD_MIN_BLOCK + 1;
        h->st = (sd_pstate *)(void *)(d->base + off);
        h->lock = (sd_lock *)(void *)(d->base + off + lo->lock_off);
        h->buckets = (_Atomic uint32_t *)(void *)(d->base + h->index_off);
        h->summary = (_Atomic uint32_t *)(void *)(d->base + h->summary_off);
        h->refs = (_Atomic uint8_t *)(void *)(d->base + h->refs_off);
        h->slots = (sd_slot *)(void *)(d->base + SD_PAGE);
        h->evict = evict;
        h->reserved = flags & SD_CREATE_RESERVED;
        h->fd = d->guard->fd;
        h->guard = d->guard;
        h->part_index = i;
        h->part_shift = d->part_shift;
    }
    return true;
}

/* ---- process identity --------------------------------------------------- */

/* Start time of a process (field 22 of /proc/PID/stat), 0 if unknown. */
static uint64_t proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (!p)
        return 0;
    /* After ")": field 3 (state) ... field 22 (starttime). */
    int field = 2;
    for (p++; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    return field == 22 ? strtoull(p, NULL, 10) : 0;
}

static uint64_t pid_namespace(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Is the process recorded in the header still running? When in doubt
 * (another pid namespace, no /proc), say yes: taking over a live dict is
 * the worse mistake. */
static bool creator_alive(const sd_header *hd)
{
    uint64_t pid = hd->creator_pid;
    if (pid == 0 || pid > INT_MAX)
        return true;
    if (hd->creator_pidns != pid_namespace())
        return true;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    uint64_t start = proc_start_time((pid_t)pid);
    if (start && hd->creator_start && start != hd->creator_start)
        return false; /* the pid was reused */
    return true;
}

/* ---- header checks ------------------------------------------------------ */

static bool header_ok(const sd_header *hd, uint64_t size, layout *lo)
{
    if (hd->magic != SD_MAGIC || hd->version != SD_VERSION ||
        hd->format != SD_FORMAT_WORD || hd->file_size != size)
        return false;
    if (!layout_for(size, hd->nparts, lo))
        return false;
    return hd->part_size == lo->part_size && hd->lock_off == lo->lock_off &&
           hd->summary_off == lo->summary_off &&
           hd->refs_off == lo->refs_off && hd->index_off == lo->index_off &&
           hd->nbuckets == lo->nbuckets && hd->heap_off == lo->heap_off &&
           hd->heap_size == lo->heap_size;
}

/* ---- create ------------------------------------------------------------- */

static void split_path(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n == 0 || n >= cap) {
        snprintf(dir, cap, "%s", slash ? "/" : ".");
        return;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
}

/* Try to retire a dict at `path` whose creator is gone. 1: the name is
 * free now (retry the link); 0: a live dict holds it (errno = EEXIST). */
static int take_over_stale(const char *path)
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        errno = EEXIST; /* a directory, a symlink, ...: the name is taken */
        return 0;
    }
    struct stat st;
    int result = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != geteuid() || (uint64_t)st.st_size < SD_MIN_SIZE) {
        close(fd);
        errno = EEXIST;
        return 0;
    }
    void *m = mmap(NULL, SD_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
        sd_header *hd = m;
        uint32_t live = SD_STATE_LIVE;
        if (hd->magic == SD_MAGIC && hd->version == SD_VERSION &&
            hd->format == SD_FORMAT_WORD && !creator_alive(hd) &&
            atomic_compare_exchange_strong(&hd->state, &live,
                                           (uint32_t)SD_STATE_RETIRED)) {
            struct stat now;
            if (lstat(path, &now) == 0 && now.st_dev == st.st_dev &&
                now.st_ino == st.st_ino)
                unlink(path);
            result = 1;
        }
        munmap(m, SD_PAGE);
    }
    close(fd);
    if (!result)
        errno = EEXIST;
    return result;
}

/* A file being built: unnamed (tmpfile), or under a temporary name. */
typedef struct newfile {
    int fd;
    bool tmpfile;
    char tmp[PATH_MAX]; /* the temporary name, or "" */
} newfile;

static int make_file(const char *path, unsigned mode, newfile *nf)
{
    char dir[PATH_MAX];
    split_path(path, dir, sizeof dir);
    nf->tmp[0] = '\0';
    nf->tmpfile = false;
    if (access("/proc/self/fd", X_OK) == 0) {
        nf->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
        if (nf->fd >= 0) {
            nf->tmpfile = true;
            return 0;
        }
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return -1;
    }
    for (int tries = 0; tries < 16; tries++) {
        uint64_t r;
        if (getrandom(&r, sizeof r, 0) != sizeof r)
            r = (uint64_t)sd_now_ns() * UINT64_C(0x9e3779b97f4a7c15);
        int n = snprintf(nf->tmp, sizeof nf->tmp, "%s/.shmdict-new.%d.%016llx",
                         dir, (int)getpid(), (unsigned long long)r);
        if (n < 0 || (size_t)n >= sizeof nf->tmp) {
            nf->tmp[0] = '\0';
            errno = ENAMETOOLONG;
            return -1;
        }
        nf->fd =
            open(nf->tmp, O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_RDWR,
                 (mode_t)mode);
        if (nf->fd >= 0)
            return 0;
        if (errno != EEXIST)
            break;
    }
    nf->tmp[0] = '\0';
    return -1;
}

/* Give the new file its name; on a taken name, take it over if its
 * creator is gone. */
static int publish(newfile *nf, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", nf->fd);
    const char *from = nf->tmpfile ? proc : nf->tmp;
    int flags = nf->tmpfile ? AT_SYMLINK_FOLLOW : 0;
    for (int tries = 0; tries < 3; tries++) {
        if (linkat(AT_FDCWD, from, AT_FDCWD, path, flags) == 0) {
            if (nf->tmp[0]) {
                unlink(nf->tmp);
                nf->tmp[0] = '\0';
            }
            return 0;
        }
        if (errno != EEXIST || !take_over_stale(path))
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* Reserve what creation writes: the header and slot pages, each stripe's
 * state, lock, undo log and summary pages, and the heap's first page (its
 * first block header) and last page (that block's footer). */
static sd_status reserve_fixed(sd_handle *d, const layout *lo)
{
    sd_part *p0 = &d->parts[0];
    sd_status rc = sd_reserve(p0, 0, SD_PARTS_OFF);
    for (unsigned i = 0; i < d->nparts && rc == SD_OK; i++) {
        sd_part *h = &d->parts[i];
        uint64_t heap_end = h->heap_off + h->heap_size;
        rc = sd_reserve(h, h->part_off,
                        lo->summary_off + page_up(lo->summary_bytes));
        if (rc == SD_OK)
            rc = sd_reserve(h, h->heap_off, SD_PAGE);
        if (rc == SD_OK)
            rc = sd_reserve(h, (heap_end - 8) & ~(uint64_t)(SD_PAGE - 1),
                            SD_PAGE);
    }
    return rc;
}

static sd_status create(const char *path, const sd_open_opts *o, sd_handle *h)
{
    layout lo;
    if (!layout_for(o->size, o->nparts ? o->nparts : auto_parts(o->size), &lo))
        return SD_BADARG;
    newfile nf;
    if (make_file(path, o->mode, &nf) != 0)
        return SD_SYSERR;
    int err = 0;
    sd_status rc = SD_SYSERR;
    if (fchmod(nf.fd, (mode_t)o->mode) != 0 ||
        ftruncate(nf.fd, (off_t)o->size) != 0) {
        err = errno;
        goto fail;
    }
    h->base =
        mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, nf.fd, 0);
    if (h->base == MAP_FAILED) {
        err = errno;
        h->base = NULL;
        goto fail;
    }
    h->file_size = o->size;
    int gfd = dup(nf.fd); /* the guard's own, closed with the handle */
    if (gfd < 0 || !(h->guard = sd_guard_add(h->base, o->size, gfd))) {
        err = gfd < 0 ? errno : ENOMEM;
        if (gfd >= 0)
            close(gfd);
        goto fail;
    }
    uint64_t seed, nonce;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed ||
        getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) {
        seed = (uint64_t)sd_now_ns() ^ ((uint64_t)getpid() << 32);
        nonce = seed * UINT64_C(0x9e3779b97f4a7c15);
    }
    uint32_t flags = (o->evict ? SD_CREATE_EVICT : 0) |
                     (o->reserve ? SD_CREATE_RESERVED : 0) |
                     (o->create == SD_OPEN_ANY ? SD_CREATE_SHARED : 0);
    if (!handle_apply_layout(h, &lo, o->size, seed, flags)) {
        err = ENOMEM;
        goto fail;
    }
    rc = o->reserve ? sd_reserve(&h->parts[0], 0, o->size)
                    : reserve_fixed(h, &lo);
    if (rc != SD_OK) {
        err = ENOSPC;
        goto fail;
    }
    rc = SD_SYSERR;
    sd_header *hd = h->hdr;
    hd->magic = SD_MAGIC;
    hd->version = SD_VERSION;
    hd->format = SD_FORMAT_WORD;
    hd->file_size = o->size;
    hd->hash_seed = seed;
    hd->nparts = (uint32_t)lo.nparts;
    hd->part_size = lo.part_size;
    hd->lock_off = lo.lock_off;
    hd->summary_off = lo.summary_off;
    hd->refs_off = lo.refs_off;
    hd->create_flags = flags;
    hd->index_off = lo.index_off;
    hd->nbuckets = lo.nbuckets;
    hd->heap_off = lo.heap_off;
    hd->heap_size = lo.heap_size;
    /* A dict made by open() belongs to no process: with no creator on
     * record, new() never takes it over as a dead owner's. */
    bool shared = flags & SD_CREATE_SHARED;
    hd->creator_pid = shared ? 0 : (uint64_t)getpid();
    hd->creator_start = shared ? 0 : proc_start_time(getpid());
    hd->creator_pidns = shared ? 0 : pid_namespace();
    hd->nonce = nonce;
    ST(&hd->state, (uint32_t)SD_STATE_LIVE);
    for (unsigned i = 0; i < h->nparts; i++) {
        sd_part *p = &h->parts[i];
        sd_lock_init(p->lock);
        sd_heap_init(p);
        uint64_t pages = (p->heap_size + SD_PAGE - 1) / SD_PAGE;
        ST(&p->st->backed_pages, o->reserve ? (uint32_t)pages : 1u);
    }
    if (publish(&nf, path) != 0) {
        err = errno;
        goto fail;
    }
    struct stat st;
    if (fstat(nf.fd, &st) != 0) {
        err = errno;
        goto fail;
    }
    h->owner = o->create == SD_CREATE;
    h->created = 1;
    h->owner_pid = getpid();
    h->dev = st.st_dev;
    h->ino = st.st_ino;
    close(nf.fd);
    return SD_OK;
fail:
    if (nf.tmp[0])
        unlink(nf.tmp);
    close(nf.fd);
    errno = err;
    return rc == SD_NOSPACE ? SD_NOSPACE : SD_SYSERR;
}

/* ---- attach ------------------------------------------------------------- */

static sd_status attach(const char *path, const sd_open_opts *o, sd_handle *h)
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return SD_SYSERR;
    struct stat st;
    sd_status rc = SD_OK;
    if (fstat(fd, &st) != 0) {
        rc = SD_SYSERR;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = SD_FORMAT;
        goto out;
    }
    if (st.st_uid != geteuid() && !o->allow_foreign_owner) {
        errno = EACCES;
        rc = SD_SYSERR;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    layout lo;
    if (size < SD_MIN_SIZE || size > SD_MAX_SIZE) {
        rc = SD_FORMAT;
        goto out;
    }
    h->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h->base == MAP_FAILED) {
        h->base = NULL;
        rc = SD_SYSERR;
        goto out;
    }
    h->file_size = size;
    /* Guarded from here on: the file may be truncated while we read it. */
    if (!(h->guard = sd_guard_add(h->base, size, fd))) {
        errno = ENOMEM;
        rc = SD_SYSERR;
        goto out;
    }
    fd = -1; /* the guard's now */
    sd_header *hd = (sd_header *)(void *)h->base;
    uint32_t flags = hd->create_flags;
    if (!header_ok(hd, size, &lo) || sd_guard_state(h->guard)) {
        rc = SD_FORMAT;
        goto out;
    }
    if (!handle_apply_layout(h, &lo, size, hd->hash_seed, flags)) {
        errno = ENOMEM;
        rc = SD_SYSERR;
    }
out:
    if (fd >= 0) {
        int err = errno;
        close(fd);
        errno = err;
    }
    return rc;
}

/* Unmap what the handle mapped and give its guard back (closing the
 * file). Pages the guard replaced after a fault stay mapped: see guard.c. */
static void unmap(sd_handle *h)
{
    int err = errno;
    uint64_t keep = h->file_size;
    if (h->guard) {
        uint64_t from = sd_guard_remove(h->guard);
        keep = from < keep ? from : keep;
        h->guard = NULL;
    }
    if (h->base && keep)
        munmap(h->base, keep);
    h->base = NULL;
    errno = err;
}

/* ---- public entry points ------------------------------------------------ */

static int cached_mutex_kind = -2;

sd_status sd_open(const char *path, const sd_open_opts *o, sd_handle **out)
{
    *out = NULL;
    sd_handle *h = calloc(1, sizeof *h);
    if (!h || !(h->path = strdup(path))) {
        free(h);
        errno = ENOMEM;
        return SD_SYSERR;
    }
    if (cached_mutex_kind == -2)
        cached_mutex_kind = sd_mutex_kind_of_new();
    sd_status rc;
    if (o->create == SD_OPEN_ANY) {
        /* Attach, or create if missing; a creator that loses the race to
         * link the name attaches to the winner's dict. */
        for (int tries = 0;; tries++) {
            rc = attach(path, o, h);
            if (rc != SD_SYSERR || errno != ENOENT || tries == 8)
                break;
            unmap(h);
            rc = create(path, o, h);
            if (rc != SD_SYSERR || errno != EEXIST)
                break;
            unmap(h);
            free(h->parts);
            h->parts = NULL;
        }
    } else {
        rc = o->create ? create(path, o, h) : attach(path, o, h);
    }
    if (rc != SD_OK) {
        int err = errno;
        unmap(h);
        free(h->parts);
        free(h->path);
        free(h);
        errno = err;
        return rc;
    }
    for (unsigned i = 0; i < h->nparts; i++) {
        h->parts[i].lock_timeout_ms = o->lock_timeout_ms;
        h->parts[i].mutex_kind = cached_mutex_kind;
    }
    *out = h;
    return SD_OK;
}

void sd_close(sd_handle *h)
{
    if (!h)
        return;
    if (h->owner && h->owner_pid == getpid()) {
        /* Remove the name only if it still names our file: someone may
         * have removed it and made a new dict there since. */
        struct stat st;
        if (lstat(h->path, &st) == 0 && st.st_dev == h->dev &&
            st.st_ino == h->ino)
            unlink(h->path);
    }
    unmap(h);
    free(h->parts);
    free(h->path);
    free(h);
}

sd_status sd_remove(const char *path)
{
    return unlink(path) == 0 ? SD_OK : SD_SYSERR;
}

int sd_creator_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    sd_header hd;
    ssize_t n = pread(fd, &hd, sizeof hd, 0);
    int err = errno;
    close(fd);
    if (n != (ssize_t)sizeof hd) {
        errno = n < 0 ? err : EINVAL;
        return -1;
    }
    if (hd.magic != SD_MAGIC) {
        errno = EINVAL;
        return -1;
    }
    return creator_alive(&hd) ? 1 : 0;
}

void sd_set_block_hooks(sd_handle *h, sd_block_begin_fn begin,
                        sd_block_end_fn end)
{
    for (unsigned i = 0; i < h->nparts; i++) {
        h->parts[i].block_begin = begin;
        h->parts[i].block_end = end;
    }
}

void sd_set_interrupt_hook(sd_handle *h, sd_interrupted_fn fn)
{
    for (unsigned i = 0; i < h->nparts; i++)
        h->parts[i].interrupted = fn;
}

void sd_set_lock_timeout(sd_handle *h, int64_t ms)
{
    for (unsigned i = 0; i < h->nparts; i++)
        h->parts[i].lock_timeout_ms = ms;
}

unsigned sd_nparts(const sd_handle *h)
{
    return h->nparts;
}

int sd_created(const sd_handle *h)
{
    return h->created;
}

int sd_is_owner(const sd_handle *h)
{
    return h->owner && h->owner_pid == getpid();
}

uint64_t sd_file_size(const sd_handle *h)
{
    return h->file_size;
}
