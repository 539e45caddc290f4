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
 * the heap as it grows (sd_heap_reserve_locked, heap.c), and an index
 * page before its first key (sd_bucket_ready_locked, index.c). Readers
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
    uint64_t nstripes, stripe_size;
    uint64_t lock_off, summary_off, summary_bytes, refs_off;
    uint64_t index_off, nbuckets, heap_off, heap_size;
} layout;

/* n rounded up to a whole page. */
static inline uint64_t page_up(uint64_t n)
{
    return (n + SD_PAGE - 1) / SD_PAGE * SD_PAGE;
}

static_assert(sizeof(sd_slot) * SD_NSLOTS <= SD_PAGE, "slots fit a page");

#define AUTO_STRIPE_MIN (UINT64_C(4) << 20) /* auto stripes are >= 4 MiB */
#define AUTO_STRIPE_MAX 16u

/* How many stripes a dict of `size` bytes gets when not told: one per
 * 4 MiB, at most 16, a power of two. Below 8 MiB that is one, so small
 * dicts can hold an item as big as their whole heap; a 64 MiB dict gets
 * 16, so that writers on 2 to 16 cores rarely meet on one lock (two
 * writers of random keys share a stripe 1/16 of the time). A stripe of
 * 4 MiB still holds an item of nearly 4 MiB, and its fixed parts (state
 * page, lock and undo log, summary) are about 24 KiB, touched only when
 * used. At most 16: each stripe commits a few pages at creation (a
 * 16 GiB dict stays under 1 MiB, tests/test_memory.py). */
static unsigned auto_stripes(uint64_t size)
{
    unsigned n = 1;
    while (n * 2 <= AUTO_STRIPE_MAX && size / (n * 2) >= AUTO_STRIPE_MIN)
        n *= 2;
    return n;
}

/* The layout is a pure function of the file size and the stripe count. */
static bool layout_for(uint64_t size, uint64_t nstripes, layout *lo)
{
    if (size < SD_MIN_SIZE || size > SD_MAX_SIZE || nstripes == 0 ||
        nstripes > SD_MAX_PARTS || (nstripes & (nstripes - 1)))
        return false;
    uint64_t stripe = (size - SD_PARTS_OFF) / nstripes / SD_PAGE * SD_PAGE;
    lo->nstripes = nstripes;
    lo->stripe_size = stripe;
    lo->lock_off = SD_PAGE; /* after the stripe's sd_pstate page */
    uint64_t nb = 16;
    while (nb * 2 <= stripe / SD_BUCKET_BYTES_PER)
        nb *= 2;
    lo->nbuckets = nb;
    uint64_t index_bytes = page_up(nb * 4);
    uint64_t index_pages = index_bytes / SD_PAGE;
    lo->summary_off = lo->lock_off + SD_LOCK_STRIDE;
    lo->summary_bytes = (index_pages + 31) / 32 * 4;
    lo->refs_off = lo->summary_off + page_up(lo->summary_bytes);
    lo->index_off = lo->refs_off + page_up(nb + SD_GROUPS_BYTES(nb));
    lo->heap_off = lo->index_off + index_bytes;
    if (lo->heap_off + 4 * SD_PAGE > stripe)
        return false; /* a stripe must hold a useful heap */
    lo->heap_size = (stripe - lo->heap_off) & ~(uint64_t)(SD_UNIT - 1);
    return true;
}

/* Point every stripe of d at its part of the mapping. */
static bool handle_apply_layout(sd_handle *d, const layout *lo, uint64_t size,
                                uint64_t seed, uint32_t flags)
{
    bool evict = flags & SD_CREATE_EVICT;
    d->file_size = size;
    d->hash_seed = seed;
    d->nstripes = (unsigned)lo->nstripes;
    unsigned bits = 0;
    while ((1u << bits) < d->nstripes)
        bits++;
    d->stripe_shift = 32 - bits;
    d->hdr = (sd_header *)(void *)d->base;
    d->stripes = calloc(d->nstripes, sizeof *d->stripes);
    if (!d->stripes)
        return false;
    for (unsigned i = 0; i < d->nstripes; i++) {
        sd_stripe *s = &d->stripes[i];
        uint64_t off = SD_PARTS_OFF + i * lo->stripe_size;
        s->base = d->base;
        s->file_size = size;
        s->off = off;
        s->size = lo->stripe_size;
        s->heap_off = off + lo->heap_off;
        s->heap_size = lo->heap_size;
        s->index_off = off + lo->index_off;
        s->summary_off = off + lo->summary_off;
        s->summary_bytes = lo->summary_bytes;
        s->refs_off = off + lo->refs_off;
        s->nbuckets = lo->nbuckets;
        s->hash_seed = seed;
        s->max_chain = lo->heap_size / SD_MIN_BLOCK + 1;
        s->st = (sd_pstate *)(void *)(d->base + off);
        s->lock = (sd_lock *)(void *)(d->base + off + lo->lock_off);
        s->buckets = (_Atomic uint32_t *)(void *)(d->base + s->index_off);
        s->summary = (_Atomic uint32_t *)(void *)(d->base + s->summary_off);
        s->refs = (_Atomic uint8_t *)(void *)(d->base + s->refs_off);
        s->groups = (sd_group *)(void *)(d->base + s->refs_off + lo->nbuckets);
        s->slots = (sd_slot *)(void *)(d->base + SD_PAGE);
        s->evict = evict;
        s->reserved = flags & SD_CREATE_RESERVED;
        s->fd = d->guard->fd;
        s->guard = d->guard;
        s->index = i;
        s->shift = d->stripe_shift;
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

/* The inode of this process's pid namespace, 0 if unknown. */
static uint64_t pid_namespace(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Is the process recorded in the header still running? When in doubt
 * (another pid namespace, no /proc), say yes: taking over a live dict is
 * the worse mistake. */
static bool creator_alive(const sd_header *fh)
{
    uint64_t pid = fh->creator_pid;
    if (pid == 0 || pid > INT_MAX)
        return true;
    if (fh->creator_pidns != pid_namespace())
        return true;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return false;
    uint64_t start = proc_start_time((pid_t)pid);
    if (start && fh->creator_start && start != fh->creator_start)
        return false; /* the pid was reused */
    return true;
}

/* ---- header checks ------------------------------------------------------ */

static bool header_ok(const sd_header *fh, uint64_t size, layout *lo)
{
    if (fh->magic != SD_MAGIC || fh->version != SD_VERSION ||
        fh->format != SD_FORMAT_WORD || fh->file_size != size)
        return false;
    if (!layout_for(size, fh->nparts, lo))
        return false;
    return fh->part_size == lo->stripe_size && fh->lock_off == lo->lock_off &&
           fh->summary_off == lo->summary_off &&
           fh->refs_off == lo->refs_off && fh->index_off == lo->index_off &&
           fh->nbuckets == lo->nbuckets && fh->heap_off == lo->heap_off &&
           fh->heap_size == lo->heap_size;
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
        sd_header *fh = m;
        uint32_t live = SD_STATE_LIVE;
        if (fh->magic == SD_MAGIC && fh->version == SD_VERSION &&
            fh->format == SD_FORMAT_WORD && !creator_alive(fh) &&
            atomic_compare_exchange_strong(&fh->state, &live,
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

/* Make the new file, unnamed when the filesystem can (O_TMPFILE), else
 * under a temporary name of its own; 0 or -1 with errno. */
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
SD_MUST_USE static sd_status reserve_fixed(sd_handle *d, const layout *lo)
{
    sd_stripe *s0 = &d->stripes[0];
    sd_status rc = sd_reserve(s0, 0, SD_PARTS_OFF);
    for (unsigned i = 0; i < d->nstripes && rc == SD_OK; i++) {
        sd_stripe *s = &d->stripes[i];
        uint64_t heap_end = s->heap_off + s->heap_size;
        rc = sd_reserve(s, s->off,
                        lo->summary_off + page_up(lo->summary_bytes));
        if (rc == SD_OK)
            rc = sd_reserve(s, s->heap_off, SD_PAGE);
        if (rc == SD_OK)
            rc = sd_reserve(s, (heap_end - 8) & ~(uint64_t)(SD_PAGE - 1),
                            SD_PAGE);
    }
    return rc;
}

/* Make, size, map, lay out and publish a new dict file at path into handle
 * d. SD_OK, SD_BADARG (a size or stripe count no layout fits), SD_NOSPACE,
 * SD_SYSERR (errno set). */
SD_MUST_USE static sd_status create(const char *path, const sd_open_opts *o,
                                    sd_handle *d)
{
    layout lo;
    if (!layout_for(o->size, o->nparts ? o->nparts : auto_stripes(o->size),
                    &lo))
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
    d->base =
        mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, nf.fd, 0);
    if (d->base == MAP_FAILED) {
        err = errno;
        d->base = NULL;
        goto fail;
    }
    d->file_size = o->size;
    int gfd = dup(nf.fd); /* the guard's own, closed with the handle */
    if (gfd < 0 || !(d->guard = sd_guard_add(d->base, o->size, gfd))) {
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
    if (!handle_apply_layout(d, &lo, o->size, seed, flags)) {
        err = ENOMEM;
        goto fail;
    }
    rc = o->reserve ? sd_reserve(&d->stripes[0], 0, o->size)
                    : reserve_fixed(d, &lo);
    if (rc != SD_OK) {
        err = ENOSPC;
        goto fail;
    }
    rc = SD_SYSERR;
    sd_header *fh = d->hdr;
    fh->magic = SD_MAGIC;
    fh->version = SD_VERSION;
    fh->format = SD_FORMAT_WORD;
    fh->file_size = o->size;
    fh->hash_seed = seed;
    fh->nparts = (uint32_t)lo.nstripes;
    fh->part_size = lo.stripe_size;
    fh->lock_off = lo.lock_off;
    fh->summary_off = lo.summary_off;
    fh->refs_off = lo.refs_off;
    fh->create_flags = flags;
    fh->index_off = lo.index_off;
    fh->nbuckets = lo.nbuckets;
    fh->heap_off = lo.heap_off;
    fh->heap_size = lo.heap_size;
    /* A dict made by open() belongs to no process: with no creator on
     * record, new() never takes it over as a dead owner's. */
    bool shared = flags & SD_CREATE_SHARED;
    fh->creator_pid = shared ? 0 : (uint64_t)getpid();
    fh->creator_start = shared ? 0 : proc_start_time(getpid());
    fh->creator_pidns = shared ? 0 : pid_namespace();
    fh->nonce = nonce;
    ST(&fh->state, (uint32_t)SD_STATE_LIVE);
    for (unsigned i = 0; i < d->nstripes; i++) {
        sd_stripe *s = &d->stripes[i];
        sd_lock_init(s->lock);
        sd_heap_init(s);
        uint64_t pages = (s->heap_size + SD_PAGE - 1) / SD_PAGE;
        ST(&s->st->backed_pages, o->reserve ? (uint32_t)pages : 1u);
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
    d->owner = o->create == SD_CREATE;
    d->created = 1;
    d->owner_pid = getpid();
    d->dev = st.st_dev;
    d->ino = st.st_ino;
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

SD_MUST_USE static sd_status attach(const char *path, const sd_open_opts *o,
                                    sd_handle *d)
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
    d->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (d->base == MAP_FAILED) {
        d->base = NULL;
        rc = SD_SYSERR;
        goto out;
    }
    d->file_size = size;
    /* Guarded from here on: the file may be truncated while we read it. */
    if (!(d->guard = sd_guard_add(d->base, size, fd))) {
        errno = ENOMEM;
        rc = SD_SYSERR;
        goto out;
    }
    fd = -1; /* the guard's now */
    sd_header *fh = (sd_header *)(void *)d->base;
    uint32_t flags = fh->create_flags;
    if (!header_ok(fh, size, &lo) || sd_guard_state(d->guard)) {
        rc = SD_FORMAT;
        goto out;
    }
    if (!handle_apply_layout(d, &lo, size, fh->hash_seed, flags)) {
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
static void unmap(sd_handle *d)
{
    int err = errno;
    uint64_t keep = d->file_size;
    if (d->guard) {
        uint64_t from = sd_guard_remove(d->guard);
        keep = from < keep ? from : keep;
        d->guard = NULL;
    }
    if (d->base && keep)
        munmap(d->base, keep);
    d->base = NULL;
    errno = err;
}

/* ---- public entry points ------------------------------------------------ */

static int cached_mutex_kind = -2;

/* See shmdict.h. Creates, attaches, or (SD_OPEN_ANY) attaches or creates,
 * retrying a lost race; sets each stripe's lock timeout and mutex kind. */
SD_MUST_USE sd_status sd_open(const char *path, const sd_open_opts *o,
                              sd_handle **out)
{
    *out = NULL;
    sd_handle *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
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
            rc = attach(path, o, d);
            if (rc != SD_SYSERR || errno != ENOENT || tries == 8)
                break;
            unmap(d);
            rc = create(path, o, d);
            if (rc != SD_SYSERR || errno != EEXIST)
                break;
            unmap(d);
            free(d->stripes);
            d->stripes = NULL;
        }
    } else {
        rc = o->create ? create(path, o, d) : attach(path, o, d);
    }
    if (rc != SD_OK) {
        int err = errno;
        unmap(d);
        free(d->stripes);
        free(d->path);
        free(d);
        errno = err;
        return rc;
    }
    for (unsigned i = 0; i < d->nstripes; i++) {
        d->stripes[i].lock_timeout_ms = o->lock_timeout_ms;
        d->stripes[i].mutex_kind = cached_mutex_kind;
    }
    *out = d;
    return SD_OK;
}

/* See shmdict.h. The owner removes the name if it still names its file. */
void sd_close(sd_handle *d)
{
    if (!d)
        return;
    if (d->owner && d->owner_pid == getpid()) {
        /* Remove the name only if it still names our file: someone may
         * have removed it and made a new dict there since. */
        struct stat st;
        if (lstat(d->path, &st) == 0 && st.st_dev == d->dev &&
            st.st_ino == d->ino)
            unlink(d->path);
    }
    unmap(d);
    free(d->stripes);
    free(d->path);
    free(d);
}

/* See shmdict.h. */
SD_MUST_USE sd_status sd_remove(const char *path)
{
    return unlink(path) == 0 ? SD_OK : SD_SYSERR;
}

/* See shmdict.h: 1, 0, or -1 with errno. */
int sd_creator_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    sd_header fh;
    ssize_t n = pread(fd, &fh, sizeof fh, 0);
    int err = errno;
    close(fd);
    if (n != (ssize_t)sizeof fh) {
        errno = n < 0 ? err : EINVAL;
        return -1;
    }
    if (fh.magic != SD_MAGIC) {
        errno = EINVAL;
        return -1;
    }
    return creator_alive(&fh) ? 1 : 0;
}

/* The handle's setters and getters: see shmdict.h. */
void sd_set_block_hooks(sd_handle *d, sd_block_begin_fn begin,
                        sd_block_end_fn end)
{
    for (unsigned i = 0; i < d->nstripes; i++) {
        d->stripes[i].block_begin = begin;
        d->stripes[i].block_end = end;
    }
}

void sd_set_interrupt_hook(sd_handle *d, sd_interrupted_fn fn)
{
    for (unsigned i = 0; i < d->nstripes; i++)
        d->stripes[i].interrupted = fn;
}

void sd_set_lock_timeout(sd_handle *d, int64_t ms)
{
    for (unsigned i = 0; i < d->nstripes; i++)
        d->stripes[i].lock_timeout_ms = ms;
}

unsigned sd_nparts(const sd_handle *d)
{
    return d->nstripes;
}

int sd_created(const sd_handle *d)
{
    return d->created;
}

int sd_is_owner(const sd_handle *d)
{
    return d->owner && d->owner_pid == getpid();
}

uint64_t sd_file_size(const sd_handle *d)
{
    return d->file_size;
}
