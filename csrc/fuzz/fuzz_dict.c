/*
 * fuzz_dict.c - libFuzzer target for the C core: open these bytes as a
 * dict, then run these operations.
 *
 * Each input becomes a file under /dev/shm (see fuzz_common.h for the
 * format), which is attached with sd_open like any peer would, with a
 * short lock timeout, and then driven by the op program: every public
 * operation, with keys the seeds use and keys from the input, values of
 * every type and size, TTLs, small output buffers (SD_TOOBIG paths), full
 * scans, verify and flush.
 *
 * Besides the sanitizers (ASan, UBSan) and libFuzzer's crash/timeout
 * detection, the harness checks what must hold whatever the file holds:
 *   - every call returns a known status;
 *   - a value copied out fits the buffer it was given;
 *   - key records from a scan are well formed and fit the buffer;
 *   - no operation returns with a stripe's mutex still held by us.
 * In strict mode (bit 0x40 of the first byte) the dict is verified first;
 * if it is clean, stronger checks apply, which hold only for a healthy
 * dict (on a damaged one, wrong answers are expected, crashes are not):
 *   - a set that returned SD_OK is read back as that value;
 *   - the dict still verifies clean after the whole program.
 * A violation aborts, which libFuzzer reports with the input.
 *
 * Build and run: csrc/fuzz/run.sh (see RELIABILITY.md). To see which op of
 * an input damages a dict: FUZZ_TRACE=1 csrc/fuzz/build/fuzz_dict INPUT.
 */
#include "fuzz_common.h"

#include <sys/syscall.h>

static fuzz_base bases[FUZZ_NBASES];
static char work_path[256];
static int work_fd = -1;
static unsigned char *image;
static pid_t my_tid;
static bool trace; /* FUZZ_TRACE=1 in the environment */

static void cleanup(void)
{
    if (work_path[0])
        unlink(work_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (unsigned v = 0; v < FUZZ_NBASES; v++)
        if (build_base(v, "/dev/shm", &bases[v]) != 0) {
            fprintf(stderr, "fuzz_dict: cannot build base %u: %s\n", v,
                    strerror(errno));
            abort();
        }
    snprintf(work_path, sizeof work_path, "/dev/shm/shmdict-fuzz-%d",
             (int)getpid());
    unlink(work_path);
    work_fd = open(work_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (work_fd < 0)
        abort();
    atexit(cleanup);
    image = malloc(256u << 10);
    my_tid = (pid_t)syscall(SYS_gettid);
    trace = getenv("FUZZ_TRACE") != NULL;
    return 0;
}

/* ---- reading the input ------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static uint8_t u8(rd *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint32_t u32(rd *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)u8(r) << (8 * i);
    return v;
}

static uint64_t u64(rd *r)
{
    return (uint64_t)u32(r) | ((uint64_t)u32(r) << 32);
}

/* ---- invariants --------------------------------------------------------- */

#define MUST(cond)                                                            \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_dict: invariant failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

static void status_ok(sd_status s)
{
    MUST((unsigned)s < SD_STATUS_COUNT);
}

/* No stripe's mutex may be held by this thread between operations. */
static void no_lock_held(sd_handle *h, const uint32_t *before)
{
    for (unsigned i = 0; i < h->nstripes; i++) {
        uint32_t w = (uint32_t)h->stripes[i].lock->mutex.__data.__lock;
        if ((w & 0x3fffffffu) == (uint32_t)my_tid && w != before[i]) {
            fprintf(stderr,
                    "fuzz_dict: stripe %u's mutex is still held "
                    "after an operation (lock word %#x)\n",
                    i, w);
            abort();
        }
    }
}

/* ---- the op program ---------------------------------------------------- */

static char bigbuf[70000];

static size_t key_of(rd *r, char *key)
{
    uint8_t sel = u8(r);
    if (sel < 0xf0)
        return (size_t)snprintf(key, 64, "k%u", sel % (FUZZ_NKEYS + 4));
    size_t n = 1 + u8(r) % 63;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)u8(r);
    return n;
}

static sd_value_in value_of(rd *r, char *store)
{
    uint8_t t = u8(r);
    sd_value_in v = {0};
    switch (t % 8) {
    case 0:
        v.type = SD_T_INT;
        v.i = (int64_t)u64(r);
        break;
    case 1: {
        uint64_t bits = u64(r);
        v.type = SD_T_FLOAT;
        memcpy(&v.f, &bits, 8);
        break;
    }
    case 2:
    case 3: {
        size_t n = u8(r);
        if (t & 0x80)
            n = n * 257; /* up to 65535 bytes */
        for (size_t i = 0; i < n; i++)
            store[i] = (char)('a' + (i * 7 + t) % 26);
        v.type = t % 8 == 2 ? SD_T_STR : SD_T_BYTES;
        v.ascii = t % 8 == 2;
        v.data = store;
        v.len = n;
        break;
    }
    case 4:
        v.type = SD_T_NONE;
        break;
    case 5:
        v.type = SD_T_TRUE;
        break;
    case 6:
        v.type = SD_T_FALSE;
        break;
    default:
        v.type = SD_T_INT;
        v.i = (int8_t)u8(r);
        break;
    }
    return v;
}

static int64_t ttl_of(rd *r)
{
    static const int64_t t[8] = {0, 0,    0,       1,
                                 5, 1000, 1000000, INT64_C(1) << 50};
    return t[u8(r) % 8];
}

static void check_out(const sd_value_out *o, sd_status s, size_t cap)
{
    status_ok(s);
    if (s == SD_OK && (o->type == SD_T_STR || o->type == SD_T_BYTES))
        MUST(o->len <= cap);
    if (s == SD_OK)
        MUST(o->type >= SD_T_NONE && o->type <= SD_T_MAX);
}

static bool same_value(const sd_value_in *in, const sd_value_out *out)
{
    if (in->type != out->type)
        return false;
    switch (in->type) {
    case SD_T_INT:
        return in->i == out->i;
    case SD_T_FLOAT:
        return memcmp(&in->f, &out->f, 8) == 0;
    case SD_T_STR:
    case SD_T_BYTES:
        return in->len == out->len && memcmp(in->data, out->buf, in->len) == 0;
    default:
        return true;
    }
}

static void scan(sd_handle *h, size_t cap0)
{
    size_t cap = cap0 ? cap0 : 1;
    unsigned char *buf = malloc(cap);
    uint64_t cursor = 0;
    for (int iter = 0; iter < 1 << 16; iter++) {
        size_t used = 0, need = 0;
        sd_status s = sd_keys_chunk(h, &cursor, buf, cap, &used, &need);
        status_ok(s);
        MUST(used <= cap);
        if (s == SD_TOOBIG) {
            MUST(need > cap);
            if (need > (64u << 20))
                break;
            free(buf);
            cap = need;
            buf = malloc(cap);
            continue;
        }
        if (s != SD_OK)
            break;
        for (size_t pos = 0; pos < used;) {
            uint32_t n;
            MUST(pos + 4 <= used);
            memcpy(&n, buf + pos, 4);
            MUST(n >= 1 && n <= SD_MAX_KEY && pos + 4 + n <= used);
            pos += 4 + n;
        }
        if (cursor == 0)
            break;
    }
    free(buf);
}

static bool strict;
static bool truncated; /* the work file was cut short: resize it again */

static void run_ops(sd_handle *h, rd *r)
{
    static char vstore[70000], vstore2[70000], kstore[64 * 4];
    uint32_t before[SD_MAX_PARTS];
    for (unsigned i = 0; i < h->nstripes; i++)
        before[i] = (uint32_t)h->stripes[i].lock->mutex.__data.__lock;
    int timeouts = 0;
    for (int op = 0; op < 64 && r->n && timeouts < 3; op++) {
        char key[64];
        size_t klen = key_of(r, key);
        uint8_t code = u8(r);
        sd_value_out out = {.buf = bigbuf, .cap = sizeof bigbuf};
        sd_status s = SD_OK;
        switch (code % 27) {
        case 0: { /* get, with a buffer that may be too small */
            static const size_t caps[4] = {0, 7, 64, sizeof bigbuf};
            out.cap = caps[u8(r) % 4];
            s = sd_get(h, key, klen, &out);
            check_out(&out, s, out.cap);
            if (s == SD_TOOBIG)
                MUST(out.len > out.cap);
            break;
        }
        case 1:
        case 2: { /* set, then read it back */
            sd_value_in v = value_of(r, vstore);
            int64_t ttl = ttl_of(r);
            s = sd_set(h, key, klen, &v, ttl);
            status_ok(s);
            if (strict && s == SD_OK && ttl == 0) {
                sd_value_out back = {.buf = bigbuf, .cap = sizeof bigbuf};
                sd_status g = sd_get(h, key, klen, &back);
                check_out(&back, g, back.cap);
                if (g == SD_OK && !same_value(&v, &back)) {
                    fprintf(stderr,
                            "fuzz_dict: set returned OK but get "
                            "reads another value: key %.*s, set type "
                            "%u len %zu i %lld, got type %u len %zu "
                            "i %lld\n",
                            (int)klen, key, v.type, v.len, (long long)v.i,
                            back.type, back.len, (long long)back.i);
                    abort();
                }
            }
            break;
        }
        case 3: {
            sd_value_in v = value_of(r, vstore);
            uint64_t ev = 0;
            s = sd_set_ex(h, key, klen, &v, ttl_of(r), u8(r) & 0x33u, &ev);
            break;
        }
        case 4:
            s = sd_delete(h, key, klen);
            break;
        case 5: {
            sd_value_in d = value_of(r, vstore);
            d.type = d.type == SD_T_FLOAT ? SD_T_FLOAT : SD_T_INT;
            s = sd_incr(h, key, klen, &d, (u8(r) & 1) ? -1 : 0, ttl_of(r),
                        &out);
            check_out(&out, s, out.cap);
            break;
        }
        case 6: {
            sd_value_in d = fz_int((int8_t)u8(r)),
                        init = fz_int((int64_t)u64(r));
            s = sd_incr_init(h, key, klen, &d, -1, 0, &init, ttl_of(r), &out);
            check_out(&out, s, out.cap);
            break;
        }
        case 7: {
            int64_t ns = 0;
            s = sd_ttl(h, key, klen, &ns);
            if (s == SD_OK)
                MUST(ns >= 0);
            break;
        }
        case 8:
            s = sd_expire(h, key, klen, ttl_of(r));
            break;
        case 9: {
            int stale = 0;
            s = sd_get_stale(h, key, klen, &out, &stale);
            check_out(&out, s, out.cap);
            break;
        }
        case 10: {
            sd_value_in e = value_of(r, vstore), n = value_of(r, vstore2);
            s = sd_cas(h, key, klen, &e, &n, (u8(r) & 1) ? -1 : 0, ttl_of(r));
            break;
        }
        case 11:
            out.cap = u8(r) & 1 ? 3 : sizeof bigbuf;
            s = sd_pop(h, key, klen, &out);
            check_out(&out, s, out.cap);
            break;
        case 12: {
            sd_value_in d = value_of(r, vstore);
            s = sd_setdefault(h, key, klen, &d, &out);
            check_out(&out, s, out.cap);
            break;
        }
        case 13: {
            sd_value_in v = value_of(r, vstore);
            uint64_t len = 0;
            s = sd_push(h, key, klen, u8(r) & 1, &v, &len);
            break;
        }
        case 14:
            s = sd_list_pop(h, key, klen, u8(r) & 1, &out);
            check_out(&out, s, out.cap);
            break;
        case 15: {
            uint64_t len = 0;
            s = sd_llen(h, key, klen, &len);
            break;
        }
        case 16: {
            static const size_t caps[4] = {0, 5, 200, 65536};
            scan(h, caps[u8(r) % 4]);
            break;
        }
        case 17: {
            uint64_t n = 0;
            s = sd_count(h, &n);
            break;
        }
        case 18: {
            static char vbuf[8192];
            size_t problems = 0;
            size_t cap = u8(r) & 1 ? 40 : sizeof vbuf;
            s = sd_verify(h, vbuf, cap, &problems);
            if (s == SD_OK && cap)
                MUST(memchr(vbuf, 0, cap) != NULL);
            break;
        }
        case 19:
            s = sd_flush_all(h);
            break;
        case 20: {
            uint64_t freed = 0;
            s = sd_flush_expired(h, u8(r) % 4, &freed);
            break;
        }
        case 21: { /* get_many over a few keys */
            const char *ks[4];
            size_t kl[4];
            for (int i = 0; i < 4; i++) {
                ks[i] = kstore + 64 * i;
                kl[i] = key_of(r, kstore + 64 * i);
            }
            size_t need = 0, cap = u8(r) & 1 ? 16 : sizeof bigbuf;
            s = sd_get_many(h, 4, ks, kl, bigbuf, cap, &need);
            if (s == SD_TOOBIG)
                MUST(need > cap);
            break;
        }
        case 22: {
            const char *ks[3];
            size_t kl[3], done = 0;
            sd_value_in vs[3];
            for (int i = 0; i < 3; i++) {
                ks[i] = kstore + 64 * i;
                kl[i] = key_of(r, kstore + 64 * i);
                vs[i] = fz_bytes(vstore, u8(r) * 16u);
            }
            uint64_t ev = 0;
            s = sd_set_many(h, 3, ks, kl, vs, ttl_of(r), &done, &ev);
            MUST(done <= 3);
            break;
        }
        case 23: {
            const char *ks[3];
            size_t kl[3], deleted = 0;
            for (int i = 0; i < 3; i++) {
                ks[i] = kstore + 64 * i;
                kl[i] = key_of(r, kstore + 64 * i);
            }
            s = sd_delete_many(h, 3, ks, kl, &deleted);
            MUST(deleted <= 3);
            break;
        }
        case 24: {
            sd_stats st;
            s = sd_get_stats(h, &st);
            break;
        }
        case 25: {
            /* Another process cuts the file short: every later call must
             * return (SD_TORN once a lost page was touched), never fault. */
            uint64_t size = h->file_size,
                     cuts[4] = {size / 2, SD_PAGE, 0, u32(r) % size};
            if (ftruncate(work_fd, (off_t)cuts[u8(r) % 4]) != 0)
                abort();
            truncated = true;
            strict = false; /* the dict's contents are gone */
            break;
        }
        default: {
            uint64_t cap = 0, free_bytes = 0;
            sd_space(h, &cap, &free_bytes);
            break;
        }
        }
        status_ok(s);
        if (trace) {
            /* FUZZ_TRACE=1: verify after every op, to find the one that
             * damages a dict. */
            static char tb[4096];
            size_t pr = 0;
            sd_status vs = sd_verify(h, tb, sizeof tb, &pr);
            fprintf(
                stderr,
                "op %d: code %u key %.*s -> %s; verify %s, %zu problems%s%s",
                op, code % 26u, (int)klen, key, sd_strstatus(s),
                sd_strstatus(vs), pr, pr ? ":\n" : "\n", pr ? tb : "");
        }
        no_lock_held(h, before);
        timeouts +=
            s == SD_TIMEDOUT; /* a wedged lock: the rest would wait too */
    }
}

/* ---- the target --------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, size};
    uint8_t kind = u8(&r);
    uint64_t fsize;
    if (kind & FUZZ_PATCH) {
        const fuzz_base *b = &bases[kind % FUZZ_NBASES];
        fsize = b->size;
        memcpy(image, b->img, fsize);
        unsigned count = u8(&r);
        for (unsigned i = 0; i < count && r.n; i++) {
            uint64_t off = u32(&r) % fsize;
            unsigned len = u8(&r);
            for (unsigned j = 0; j < len && off + j < fsize; j++)
                image[off + j] = u8(&r);
        }
    } else {
        fsize = fuzz_sizes[kind % 4];
        uint32_t n = u32(&r);
        if (n > r.n)
            n = (uint32_t)r.n;
        size_t take = n < fsize ? n : fsize;
        memset(image, 0, fsize);
        memcpy(image, r.p, take);
        r.p += n;
        r.n -= n;
    }
    static uint64_t cur_size;
    if (truncated) {
        cur_size = 0; /* ftruncate it back to full size, zero-filled */
        truncated = false;
    }
    if (fsize != cur_size) {
        if (ftruncate(work_fd, (off_t)fsize) != 0)
            abort();
        cur_size = fsize;
    }
    if (pwrite(work_fd, image, fsize, 0) != (ssize_t)fsize)
        abort();
    sd_open_opts o = {.lock_timeout_ms = 2};
    sd_handle *h = NULL;
    sd_status s = sd_open(work_path, &o, &h);
    status_ok(s);
    if (s != SD_OK)
        return 0;
    static char vbuf[8192];
    size_t problems = 0;
    strict = (kind & FUZZ_STRICT) &&
             sd_verify(h, vbuf, sizeof vbuf, &problems) == SD_OK &&
             problems == 0;
    run_ops(h, &r);
    if (strict) {
        sd_status v = sd_verify(h, vbuf, sizeof vbuf, &problems);
        if (v == SD_OK && problems != 0) {
            fprintf(stderr,
                    "fuzz_dict: a clean dict is damaged after the op "
                    "program (%zu problems):\n%s\n",
                    problems, vbuf);
            abort();
        }
    }
    sd_close(h);
    return 0;
}
