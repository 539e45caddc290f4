/*
 * test_core.c - unit tests of the C core, with no Python involved.
 *
 * Each test creates its own dict under /dev/shm and removes it. Crash
 * tests fork a child that dies holding the lock and check that the parent's
 * next call repairs the dict. Run: make -C csrc test (add SAN=1 for
 * AddressSanitizer and UndefinedBehaviorSanitizer, TSAN=1 for
 * ThreadSanitizer).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../api.h"
#include "../index.h"
#include "../tx.h"

static int failures, checks;

#define CHECK(cond)                                                           \
    do {                                                                      \
        checks++;                                                             \
        if (!(cond)) {                                                        \
            failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
        }                                                                     \
    } while (0)

static char path[128];
static unsigned g_nparts; /* stripes for make(); 0: automatic */

static sd_handle *make(uint64_t size)
{
    snprintf(path, sizeof path, "/dev/shm/shmdict-ctest-%d", (int)getpid());
    unlink(path);
    sd_open_opts o = {.size = size,
                      .mode = 0600,
                      .create = 1,
                      .lock_timeout_ms = 5000,
                      .nparts = size >= (UINT64_C(1) << 20) ? g_nparts : 0};
    sd_handle *h = NULL;
    sd_status rc = sd_open(path, &o, &h);
    CHECK(rc == SD_OK);
    return h;
}

static sd_handle *attach(void)
{
    sd_open_opts o = {.lock_timeout_ms = 5000};
    sd_handle *h = NULL;
    CHECK(sd_open(path, &o, &h) == SD_OK);
    return h;
}

static size_t problems(sd_handle *h)
{
    char buf[4096];
    size_t n = 99;
    CHECK(sd_verify(h, buf, sizeof buf, &n) == SD_OK);
    if (n)
        fprintf(stderr, "verify:\n%s", buf);
    return n;
}

static sd_value_in vint(int64_t i)
{
    return (sd_value_in){.type = SD_T_INT, .i = i};
}

static sd_value_in vbytes(const char *s, size_t n)
{
    return (sd_value_in){.type = SD_T_BYTES, .data = s, .len = n};
}

static sd_status getv(sd_handle *h, const char *k, sd_value_out *out,
                      char *buf, size_t cap)
{
    out->buf = buf;
    out->cap = cap;
    return sd_get(h, k, strlen(k), out);
}

static void test_types(void)
{
    sd_handle *h = make(1 << 20);
    char buf[64];
    sd_value_out o;
    sd_value_in none = {.type = SD_T_NONE}, t = {.type = SD_T_TRUE},
                f = {.type = SD_T_FLOAT, .f = -2.5},
                s = {.type = SD_T_STR, .data = "h\xc3\xa9", .len = 3};
    CHECK(sd_set(h, "n", 1, &none, 0) == SD_OK);
    CHECK(sd_set(h, "t", 1, &t, 0) == SD_OK);
    CHECK(sd_set(h, "f", 1, &f, 0) == SD_OK);
    CHECK(sd_set(h, "s", 1, &s, 0) == SD_OK);
    sd_value_in big = vint(INT64_MIN);
    CHECK(sd_set(h, "i", 1, &big, 0) == SD_OK);
    CHECK(getv(h, "n", &o, buf, sizeof buf) == SD_OK && o.type == SD_T_NONE);
    CHECK(getv(h, "t", &o, buf, sizeof buf) == SD_OK && o.type == SD_T_TRUE);
    CHECK(getv(h, "f", &o, buf, sizeof buf) == SD_OK && o.f == -2.5);
    CHECK(getv(h, "i", &o, buf, sizeof buf) == SD_OK && o.i == INT64_MIN);
    CHECK(getv(h, "s", &o, buf, sizeof buf) == SD_OK && o.len == 3 &&
          memcmp(buf, "h\xc3\xa9", 3) == 0 && !o.ascii);
    CHECK(getv(h, "s", &o, buf, 2) == SD_TOOBIG && o.len == 3);
    CHECK(getv(h, "zz", &o, buf, sizeof buf) == SD_NOTFOUND);
    CHECK(sd_delete(h, "n", 1) == SD_OK);
    CHECK(sd_delete(h, "n", 1) == SD_NOTFOUND);
    uint64_t n;
    CHECK(sd_count(h, &n) == SD_OK && n == 4);
    CHECK(sd_set(h, "", 0, &none, 0) == SD_BADARG);
    CHECK(problems(h) == 0);
    sd_close(h);
    CHECK(access(path, F_OK) != 0); /* the owner removed it */
}

static void test_incr(void)
{
    sd_handle *h = make(1 << 20);
    sd_value_out o = {0};
    sd_value_in one = vint(1), max = vint(INT64_MAX),
                half = {.type = SD_T_FLOAT, .f = 0.5};
    CHECK(sd_incr(h, "c", 1, &one, -1, 0, &o) == SD_NOTFOUND);
    CHECK(sd_set(h, "c", 1, &max, 0) == SD_OK);
    CHECK(sd_incr(h, "c", 1, &one, -1, 0, &o) == SD_OVERFLOW);
    CHECK(sd_get(h, "c", 1, &o) == SD_OK && o.i == INT64_MAX);
    sd_value_in zero = vint(0);
    CHECK(sd_set(h, "c", 1, &zero, 0) == SD_OK);
    CHECK(sd_incr(h, "c", 1, &one, -1, 0, &o) == SD_OK && o.type == SD_T_INT &&
          o.i == 1);
    CHECK(sd_incr(h, "c", 1, &half, -1, 0, &o) == SD_OK &&
          o.type == SD_T_FLOAT && o.f == 1.5);
    sd_value_in s = vbytes("x", 1);
    CHECK(sd_set(h, "b", 1, &s, 0) == SD_OK);
    CHECK(sd_incr(h, "b", 1, &one, -1, 0, &o) == SD_NOTNUM);
    CHECK(problems(h) == 0);
    sd_close(h);
}

static void test_expiry(void)
{
    sd_handle *h = make(1 << 20);
    sd_value_in one = vint(1);
    int64_t ns;
    CHECK(sd_set(h, "k", 1, &one, 1) == SD_OK);
    CHECK(sd_set(h, "p", 1, &one, 0) == SD_OK);
    CHECK(sd_ttl(h, "p", 1, &ns) == SD_OK && ns == 0);
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    sd_value_out o = {0};
    CHECK(sd_get(h, "k", 1, &o) == SD_NOTFOUND);
    CHECK(sd_ttl(h, "k", 1, &ns) == SD_NOTFOUND);
    CHECK(sd_expire(h, "k", 1, 1000) == SD_NOTFOUND);
    CHECK(sd_expire(h, "p", 1, 100000) == SD_OK);
    CHECK(sd_ttl(h, "p", 1, &ns) == SD_OK && ns > 0 &&
          ns <= INT64_C(100000000000));
    CHECK(sd_expire(h, "p", 1, 0) == SD_OK);
    CHECK(sd_ttl(h, "p", 1, &ns) == SD_OK && ns == 0);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* sd_near_check: a kept value stays good across writes of other keys and
 * of the same value, and no longer once its bytes, type, flags or life
 * change: read from its block while nothing was dropped (the in-place
 * overwrites below), found by a lookup once something was (the deletes). */
static sd_near near_of(sd_handle *h, const char *k, char *buf, size_t cap)
{
    sd_value_out o = {0};
    sd_near n = {0};
    CHECK(getv(h, k, &o, buf, cap) == SD_OK && o.seq != 0);
    n.seq = o.seq;
    n.hash = o.hash;
    n.idx = o.idx;
    n.meta = (uint64_t)o.type | (o.ascii ? SD_META_ASCII : 0) |
             (o.tag ? SD_META_TAG : 0) | o.exp << SD_META_EXP_SHIFT;
    if (o.type == SD_T_INT)
        n.word = (uint64_t)o.i;
    else if (o.type == SD_T_FLOAT)
        memcpy(&n.word, &o.f, 8);
    else
        n.word = o.len, n.data = buf;
    return n;
}

static void test_near_check(void)
{
    sd_handle *h = make(1 << 20);
    char kept[64], other[64];
    sd_value_in v = vbytes("value", 5), w = vbytes("vaLue", 5);
    sd_value_in s = {.type = SD_T_STR, .data = "value", .len = 5, .ascii = 1};
    sd_value_in one = vint(1);
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);
    sd_near n = near_of(h, "k", kept, sizeof kept);
    uint64_t seq = n.seq;
    CHECK(sd_near_check(h, "k", 1, &n) == 1 && n.seq == seq);
    CHECK(sd_set(h, "o", 1, &one, 0) == SD_OK); /* another key */
    CHECK(sd_near_check(h, "k", 1, &n) == 1);   /* (maybe another stripe) */
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);   /* the same value again */
    CHECK(sd_near_check(h, "k", 1, &n) == 1);
    CHECK(sd_set(h, "k", 1, &w, 0) == SD_OK); /* one byte differs */
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    CHECK(sd_set(h, "k", 1, &s, 0) == SD_OK); /* the same bytes, a str */
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 1);
    CHECK(sd_delete(h, "k", 1) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    /* Its block given to another key with the same value: not k's. */
    CHECK(sd_set(h, "x", 1, &v, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    /* k back in a new block, and another key dropped: found by lookup. */
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);
    CHECK(sd_delete(h, "x", 1) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 1);
    /* An expiry far ahead keeps it, and moves n.meta's; one within the
     * coarse clock's margin doesn't. */
    CHECK(sd_set(h, "k", 1, &v, 60000) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 1 &&
          (n.meta >> SD_META_EXP_SHIFT) != 0);
    n = near_of(h, "k", kept, sizeof kept);
    CHECK(sd_near_check(h, "k", 1, &n) == 1);
    CHECK(sd_expire(h, "k", 1, SD_NEAR_CLOCK_SLACK_MS / 2) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    /* A number: the word is compared, and the type. */
    sd_value_in zero = vint(0), fzero = {.type = SD_T_FLOAT, .f = 0.0};
    CHECK(sd_set(h, "i", 1, &zero, 0) == SD_OK);
    sd_near ni = near_of(h, "i", other, sizeof other);
    CHECK(sd_set(h, "i", 1, &fzero, 0) == SD_OK);
    CHECK(sd_near_check(h, "i", 1, &ni) == 0);
    CHECK(sd_set(h, "i", 1, &zero, 0) == SD_OK);
    CHECK(sd_near_check(h, "i", 1, &ni) == 1);
    /* A wrong key or block is no answer, through the block or a lookup
     * (a write of i itself moves its group: the value is compared). */
    CHECK(sd_set(h, "i", 1, &zero, 0) == SD_OK);
    sd_near wrong = ni;
    CHECK(sd_near_check(h, "j", 1, &wrong) == 0);
    wrong = ni;
    wrong.idx = UINT32_MAX;
    CHECK(sd_near_check(h, "i", 1, &wrong) == 0);
    wrong = ni;
    /* (another hash of the same group and stripe: at most 4 stripes) */
    uint32_t d = (uint32_t)h->stripes[sd_stripe_index(h, ni.hash)].nbuckets;
    wrong.hash =
        (ni.hash >> 30) == ((ni.hash + d) >> 30) ? ni.hash + d : ni.hash - d;
    CHECK(sd_near_check(h, "i", 1, &wrong) == 0);
    CHECK(sd_near_check(h, "i", 1, &ni) == 1);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* Which write group a hash is in: its stripe and group there. */
static uint64_t group_key(sd_handle *h, uint32_t hash)
{
    uint32_t p = sd_stripe_index(h, hash);
    uint64_t nb = h->stripes[p].nbuckets;
    return (uint64_t)p << 40 | (hash & (nb - 1)) / SD_GROUP_BUCKETS;
}

/* The write groups: a write of another key leaves a kept value good at the
 * cost of one load, its bytes unread (shown with a kept value that was
 * never right: the check can't have compared it); a write of a key of the
 * same group has the value compared; a flush moves every group. */
static void test_near_groups(void)
{
    sd_handle *h = make(1 << 20);
    char kept[64];
    sd_value_in v = vbytes("value", 5), one = vint(1);
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);
    sd_near n = near_of(h, "k", kept, sizeof kept);
    memcpy(kept, "vXlue", 5); /* not what is stored */
    uint64_t g = group_key(h, n.hash);
    /* Keys of another group and of the same group (and stripe) as k. */
    char other[16] = "", same[16] = "";
    for (int i = 0; i < 100000 && (!other[0] || !same[0]); i++) {
        char k[16];
        snprintf(k, sizeof k, "o%d", i);
        sd_value_out o = {0};
        char b[8];
        CHECK(sd_set(h, k, strlen(k), &one, 0) == SD_OK);
        CHECK(getv(h, k, &o, b, sizeof b) == SD_OK);
        CHECK(sd_delete(h, k, strlen(k)) == SD_OK);
        bool in = group_key(h, o.hash) == g;
        if (in && !same[0])
            memcpy(same, k, sizeof k);
        else if (!in && !other[0])
            memcpy(other, k, sizeof k);
    }
    CHECK(other[0] && same[0]);
    /* The scan above wrote k's group: take n again, once a write of the
     * other group has made that one the hot group (sd_lock.hot_group),
     * so that k's group's last write is noted, before n.seq. */
    CHECK(sd_set(h, other, strlen(other), &one, 0) == SD_OK);
    n = near_of(h, "k", kept, sizeof kept);
    memcpy(kept, "vXlue", 5);
    CHECK(sd_set(h, other, strlen(other), &one, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 1); /* not compared */
    CHECK(sd_set(h, same, strlen(same), &one, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0); /* compared: wrong bytes */
    memcpy(kept, "value", 5);
    CHECK(sd_near_check(h, "k", 1, &n) == 1); /* compared: right */
    /* A value too long to be rewritten in place, read from its block while
     * no key of the group was unlinked: not compared (the kept bytes are
     * wrong, and it still answers 1); once k itself is set again, it is
     * (a new block: the group's `dropped` moved). */
    static char big[200], kbig[200];
    memset(big, 'b', sizeof big);
    sd_value_in bv = vbytes(big, sizeof big);
    CHECK(sd_set(h, "k", 1, &bv, 0) == SD_OK);
    n = near_of(h, "k", kbig, sizeof kbig);
    kbig[7] = 'X';
    CHECK(sd_set(h, same, strlen(same), &one, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 1); /* not compared */
    CHECK(sd_set(h, "k", 1, &bv, 0) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0); /* compared: wrong bytes */
    kbig[7] = 'b';
    CHECK(sd_near_check(h, "k", 1, &n) == 1); /* compared: right */
    CHECK(sd_flush_all(h) == SD_OK);
    CHECK(sd_near_check(h, "k", 1, &n) == 0);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* Fill until NOMEM, check the old value survives a failed overwrite, that
 * deletes give the space back, and that flush restores full capacity. */
static void test_full(void)
{
    sd_handle *h = make(SD_MIN_SIZE);
    char val[1000];
    memset(val, 'v', sizeof val);
    sd_value_in v = vbytes(val, sizeof val);
    char key[32];
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "k%d", n);
        sd_status rc = sd_set(h, key, strlen(key), &v, 0);
        if (rc == SD_NOMEM)
            break;
        CHECK(rc == SD_OK);
        if (rc != SD_OK)
            break;
    }
    CHECK(n > 20);
    char huge[8000];
    memset(huge, 'h', sizeof huge);
    sd_value_in hv = vbytes(huge, sizeof huge);
    CHECK(sd_set(h, "k0", 2, &hv, 0) == SD_NOMEM);
    char buf[2000];
    sd_value_out o;
    CHECK(getv(h, "k0", &o, buf, sizeof buf) == SD_OK && o.len == 1000);
    /* A value that fits once the old one is freed. */
    sd_value_in same = vbytes(val, 990);
    CHECK(sd_set(h, "k1", 2, &same, 0) == SD_OK);
    CHECK(problems(h) == 0);
    for (int i = 0; i < n; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK(sd_delete(h, key, strlen(key)) == SD_OK);
    }
    CHECK(problems(h) == 0);
    CHECK(sd_flush_all(h) == SD_OK);
    CHECK(problems(h) == 0);
    int again = 0;
    for (;; again++) {
        snprintf(key, sizeof key, "k%d", again);
        if (sd_set(h, key, strlen(key), &v, 0) != SD_OK)
            break;
    }
    CHECK(again == n);
    sd_close(h);
}

/* A full dict holding values over 4 KiB: an overwrite that fits only in
 * the old value's place succeeds, in a dict that evicts or not, as a set or
 * a safe set (dropping the key's own value is no eviction: nothing else
 * goes). One that doesn't fit even there fails and keeps the old value. */
static void test_full_big_overwrite(void)
{
    for (int evict = 0; evict < 2; evict++) {
        snprintf(path, sizeof path, "/dev/shm/shmdict-ctest-%d",
                 (int)getpid());
        unlink(path);
        sd_open_opts oo = {.size = SD_MIN_SIZE,
                           .mode = 0600,
                           .create = 1,
                           .lock_timeout_ms = 5000,
                           .evict = evict};
        sd_handle *h = NULL;
        CHECK(sd_open(path, &oo, &h) == SD_OK);
        if (!h)
            return;
        /* Fill with 6000-byte values; an evicting dict never fills, so it
         * stops at a count well past its capacity. */
        static char val[6000];
        memset(val, 'o', sizeof val);
        sd_value_in v = vbytes(val, sizeof val);
        int n = 0;
        for (sd_status rc = SD_OK; rc == SD_OK && n < 40; n++) {
            char k[32];
            snprintf(k, sizeof k, "b%d", n);
            rc = sd_set(h, k, strlen(k), &v, 0);
            CHECK(rc == SD_OK || (!evict && rc == SD_NOMEM));
            if (rc != SD_OK)
                n--; /* b<n> was not stored */
        }
        CHECK(n > 3);
        sd_stats st0, st;
        CHECK(sd_get_stats(h, &st0) == SD_OK);
        static char nv[20000];
        memset(nv, 'n', sizeof nv);
        char key[32], buf[6100];
        snprintf(key, sizeof key, "b%d", n - 1);
        sd_value_out o;
        for (unsigned flags = 0; flags <= SD_NOEVICT; flags += SD_NOEVICT) {
            for (size_t len = 5990; len <= 6000; len += 10) {
                nv[0] = (char)('a' + len % 26);
                v = vbytes(nv, len);
                CHECK(sd_set_ex(h, key, strlen(key), &v, 0, flags, NULL) ==
                      SD_OK);
                CHECK(getv(h, key, &o, buf, sizeof buf) == SD_OK);
                CHECK(o.len == len && buf[0] == nv[0] && buf[1] == 'n');
            }
        }
        /* Too big even for the old value's place: refused, nothing lost. */
        v = vbytes(nv, sizeof nv);
        CHECK(sd_set_ex(h, key, strlen(key), &v, 0, SD_NOEVICT, NULL) ==
              SD_NOMEM);
        CHECK(getv(h, key, &o, buf, sizeof buf) == SD_OK);
        CHECK(o.len == 6000 && buf[0] == nv[0] && buf[5999] == 'n');
        CHECK(sd_get_stats(h, &st) == SD_OK);
        CHECK(st.count == st0.count && st.evictions == st0.evictions);
        CHECK(problems(h) == 0);
        sd_close(h);
    }
}

/* Quick lists: a deleted small entry's block is reused whole by the next
 * entry of its size, they never hold more than their cap, and a value that
 * needs the space they hold gets it (making room merges them back). */
static void test_quick_lists(void)
{
    sd_handle *h = make(SD_MIN_SIZE);
    sd_stripe *p = &h->stripes[0];
    sd_value_in v = vbytes("0123456789abcdef", 16);
    CHECK(sd_set(h, "a", 1, &v, 0) == SD_OK);
    sd_found f;
    uint64_t x = sd_hash_bytes("a", 1, h->hash_seed);
    uint32_t hash = (uint32_t)(x ^ (x >> 32)); /* as sd_key_hash */
    CHECK(sd_find_locked(p, "a", 1, hash, &f) == SD_OK);
    uint32_t first = f.v.idx;
    uint64_t used = LD(&p->st->used_bytes);
    CHECK(sd_delete(h, "a", 1) == SD_OK);
    CHECK(LD(&p->st->quick_bytes) > 0);
    CHECK(LD(&p->st->used_bytes) == used); /* still counted, but free: */
    sd_stats st;
    CHECK(sd_get_stats(h, &st) == SD_OK && st.used_bytes == 0);
    CHECK(sd_set(h, "b", 1, &v, 0) == SD_OK); /* same shape: same block */
    x = sd_hash_bytes("b", 1, h->hash_seed);
    hash = (uint32_t)(x ^ (x >> 32));
    CHECK(sd_find_locked(p, "b", 1, hash, &f) == SD_OK && f.v.idx == first);
    CHECK(LD(&p->st->quick_bytes) == 0);
    CHECK(problems(h) == 0);
    CHECK(sd_delete(h, "b", 1) == SD_OK);

    /* The biggest value an empty dict takes. */
    static char big[SD_MIN_SIZE];
    memset(big, 'B', sizeof big);
    size_t lo = 0, hi = sizeof big;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        sd_value_in bv = vbytes(big, mid);
        if (sd_set(h, "big", 3, &bv, 0) == SD_OK) {
            CHECK(sd_delete(h, "big", 3) == SD_OK);
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    CHECK(lo > 1000);
    /* Fill with entries of many small sizes, then delete them all. */
    char key[32];
    int n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "s%d", n);
        sd_value_in sv = vbytes(big, (size_t)(n % 13) * 16);
        if (sd_set(h, key, strlen(key), &sv, 0) != SD_OK)
            break;
    }
    CHECK(n > 100);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "s%d", i);
        CHECK(sd_delete(h, key, strlen(key)) == SD_OK);
    }
    uint64_t cap = p->heap_size / 32;
    CHECK(LD(&p->st->quick_bytes) > 0 && LD(&p->st->quick_bytes) <= cap);
    CHECK(problems(h) == 0);
    sd_value_in bv = vbytes(big, lo);
    CHECK(sd_set(h, "big", 3, &bv, 0) == SD_OK);
    CHECK(LD(&p->st->quick_bytes) == 0);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* Random sets and deletes of random sizes, checked against verify. */
static void test_churn(void)
{
    sd_handle *h = make(4 << 20);
    static char val[20000];
    memset(val, 'c', sizeof val);
    unsigned seed = 12345;
    char key[32];
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        snprintf(key, sizeof key, "key%u", (seed >> 8) % 3000);
        if ((seed >> 4) % 3 == 0) {
            SD_IGNORE(sd_delete(h, key, strlen(key)));
        } else {
            size_t len = (seed >> 12) % ((seed >> 20) % 8 == 0 ? 20000 : 200);
            sd_value_in v = vbytes(val, len);
            sd_status rc = sd_set(h, key, strlen(key), &v, 0);
            CHECK(rc == SD_OK || rc == SD_NOMEM);
        }
        if (i % 50000 == 0)
            CHECK(problems(h) == 0);
    }
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* A child takes the lock, writes half a transaction and dies. The parent's
 * next call must undo it. */
static void test_dead_holder(void)
{
    sd_handle *h = make(1 << 20);
    sd_value_in v = vint(7);
    CHECK(sd_set(h, "stay", 4, &v, 0) == SD_OK);
    pid_t pid = fork();
    if (pid == 0) {
        sd_handle *c = attach();
        sd_stripe *s = &c->stripes[0];
        sd_tx t;
        if (sd_tx_begin(s, &t) != SD_OK)
            _exit(2);
        /* Scribble over the bucket array and the counters, logged. */
        for (uint64_t b = 0; b < 64; b++)
            sd_w32(&t, &s->buckets[b], 0xdeadu);
        sd_w64(&t, &s->st->count, 999);
        _exit(0); /* dies holding the lock */
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sd_value_out o = {0};
    CHECK(sd_get(h, "stay", 4, &o) == SD_OK && o.i == 7);
    CHECK(problems(h) == 0);
    sd_stats st;
    CHECK(sd_get_stats(h, &st) == SD_OK && st.recoveries == 1);
    sd_close(h);
}

/* A lock held by a live process that never lets go: bounded wait. */
static void test_lock_timeout(void)
{
    sd_handle *h = make(1 << 20);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        sd_handle *c = attach();
        sd_tx t;
        for (unsigned i = 0; i < c->nstripes; i++)
            SD_IGNORE(sd_tx_begin(&c->stripes[i], &t)); /* hold them all */
        if (write(fds[1], "x", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    char x;
    CHECK(read(fds[0], &x, 1) == 1);
    sd_set_lock_timeout(h, 200);
    sd_value_in v = vint(1);
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_TIMEDOUT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(sd_set(h, "k", 1, &v, 0) == SD_OK);
    CHECK(problems(h) == 0);
    close(fds[0]);
    close(fds[1]);
    sd_close(h);
}

/* ---- waiting: timeouts, the interrupt hook, spans ---------------------- */

static unsigned stripe_of(const sd_handle *h, const char *key)
{
    uint64_t x = sd_hash_bytes(key, strlen(key), h->hash_seed);
    uint32_t hash = (uint32_t)(x ^ (x >> 32));
    return h->stripe_shift >= 32 ? 0 : hash >> h->stripe_shift;
}

/* A key of stripe `want`, written into buf. */
static const char *key_in(const sd_handle *h, unsigned want, char *buf)
{
    for (int i = 0;; i++) {
        snprintf(buf, 16, "k%d", i);
        if (stripe_of(h, buf) == want)
            return buf;
    }
}

/* Fork a child that attaches and holds the lock of stripe `part` until it
 * is killed. */
static pid_t hold_stripe(unsigned part)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        sd_handle *c = attach();
        sd_tx t;
        if (sd_tx_begin(&c->stripes[part], &t) != SD_OK ||
            write(fds[1], "x", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    char x;
    CHECK(read(fds[0], &x, 1) == 1);
    close(fds[0]);
    close(fds[1]);
    return pid;
}

static void release_stripe(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static double secs_since(int64_t start_ns)
{
    return (double)(sd_now_ns() - start_ns) / 1e9;
}

/* What the interrupt hook saw: how often it was called, and whether
 * stripe 0, which the waiting thread must not hold then, was free. */
static struct {
    sd_handle *h;
    int calls, stop_at, stripe0_busy;
    void *token;
} hook;

static int count_hook(void *token)
{
    hook.token = token;
    hook.calls++;
    pthread_mutex_t *m = &hook.h->stripes[0].lock->mutex;
    if (pthread_mutex_trylock(m) == 0)
        pthread_mutex_unlock(m);
    else
        hook.stripe0_busy++;
    return hook.calls >= hook.stop_at;
}

static int begin_token;
static void *token_begin(void)
{
    return &begin_token;
}
static void token_end(void *token)
{
    (void)token;
}

/* Timeout 0 only tries; the interrupt hook ends a wait that has no limit,
 * with block_begin's token, and nothing changed. */
static void test_wait_modes(void)
{
    sd_handle *h = make(1 << 20);
    char key[16];
    unsigned last = h->nstripes - 1;
    key_in(h, last, key);
    sd_value_in v = vint(5), w = vint(6);
    CHECK(sd_set(h, key, strlen(key), &v, 0) == SD_OK);
    pid_t pid = hold_stripe(last);

    sd_set_lock_timeout(h, 0);
    int64_t t0 = sd_now_ns();
    CHECK(sd_set(h, key, strlen(key), &w, 0) == SD_TIMEDOUT);
    sd_value_out o = {0};
    CHECK(sd_get(h, key, strlen(key), &o) == SD_TIMEDOUT);
    CHECK(secs_since(t0) < 1.0); /* no sleep at all: a few microseconds */

    sd_set_lock_timeout(h, SD_WAIT_FOREVER);
    sd_set_block_hooks(h, token_begin, token_end);
    sd_set_interrupt_hook(h, count_hook);
    hook.h = h;
    hook.calls = hook.stripe0_busy = 0;
    hook.stop_at = 3;
    CHECK(sd_set(h, key, strlen(key), &w, 0) == SD_INTERRUPTED);
    CHECK(hook.calls == 3 && hook.token == &begin_token);
    hook.calls = 0;
    CHECK(sd_get(h, key, strlen(key), &o) == SD_INTERRUPTED);
    CHECK(hook.calls == 3);

    release_stripe(pid);
    sd_set_interrupt_hook(h, NULL);
    sd_set_lock_timeout(h, 5000);
    CHECK(sd_get(h, key, strlen(key), &o) == SD_OK && o.i == 5);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* A batch kept waiting for a stripe while it holds others lets them go
 * before the interrupt hook is called: the hook never finds stripe 0
 * held. */
static void test_batch_wait(void)
{
    sd_handle *h = make(1 << 20);
    if (h->nstripes < 2) {
        sd_close(h);
        return;
    }
    char k0[16], k1[16];
    unsigned last = h->nstripes - 1;
    key_in(h, 0, k0);
    key_in(h, last, k1);
    const char *keys[2] = {k0, k1};
    size_t klens[2] = {strlen(k0), strlen(k1)};
    sd_value_in vals[2] = {vint(1), vint(2)};
    pid_t pid = hold_stripe(last);

    sd_set_lock_timeout(h, SD_WAIT_FOREVER);
    sd_set_interrupt_hook(h, count_hook);
    hook.h = h;
    hook.calls = hook.stripe0_busy = 0;
    hook.stop_at = 4;
    size_t done = 99;
    uint64_t evicted = 0;
    CHECK(sd_set_many(h, 2, keys, klens, vals, 0, &done, &evicted) ==
          SD_INTERRUPTED);
    CHECK(done == 0 && hook.calls == 4 && hook.stripe0_busy == 0);
    sd_set_interrupt_hook(h, NULL);

    /* One timeout for the whole batch, and none held after it. */
    sd_set_lock_timeout(h, 200);
    int64_t t0 = sd_now_ns();
    CHECK(sd_set_many(h, 2, keys, klens, vals, 0, &done, &evicted) ==
          SD_TIMEDOUT);
    double took = secs_since(t0);
    CHECK(took >= 0.2 && took < 2.0);
    sd_value_out o = {0};
    CHECK(sd_get(h, k0, strlen(k0), &o) == SD_NOTFOUND);

    release_stripe(pid);
    CHECK(sd_get(h, k1, strlen(k1), &o) == SD_NOTFOUND);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* Inside a span, the waits of several calls share one timeout. */
static void test_span(void)
{
    sd_handle *h = make(1 << 20);
    char key[16];
    key_in(h, 0, key);
    pid_t pid = hold_stripe(0);
    sd_set_lock_timeout(h, 200);
    sd_value_in v = vint(1);
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(h, &span);
    int64_t t0 = sd_now_ns();
    CHECK(sd_set(h, key, strlen(key), &v, 0) == SD_TIMEDOUT);
    CHECK(secs_since(t0) >= 0.2);
    sd_span_leave(&span);
    CHECK(span.left_ns == 0);
    sd_span_enter(h, &span); /* again: nothing is left, so no wait */
    t0 = sd_now_ns();
    CHECK(sd_set(h, key, strlen(key), &v, 0) == SD_TIMEDOUT);
    CHECK(secs_since(t0) < 0.15);
    sd_span_leave(&span);

    /* A call outside any span reports what it waited; a span charged
     * with all of it has nothing left. */
    sd_value_out o = {0};
    CHECK(sd_get(h, key, strlen(key), &o) == SD_TIMEDOUT);
    CHECK(o.waited_ns >= 200 * INT64_C(1000000));
    sd_span retry = SD_SPAN_INIT;
    sd_span_charge(&retry, o.waited_ns);
    sd_span_enter(h, &retry);
    t0 = sd_now_ns();
    CHECK(sd_get(h, key, strlen(key), &o) == SD_TIMEDOUT);
    CHECK(secs_since(t0) < 0.15);
    sd_span_leave(&retry);
    CHECK(retry.left_ns == 0);

    release_stripe(pid);
    CHECK(sd_set(h, key, strlen(key), &v, 0) == SD_OK);
    sd_close(h);
}

static void test_files(void)
{
    /* Bad sizes, garbage files, a peer's close keeps the file. */
    sd_handle *h = NULL;
    sd_open_opts o = {.size = 1000, .create = 1, .mode = 0600};
    snprintf(path, sizeof path, "/dev/shm/shmdict-ctest-%d", (int)getpid());
    CHECK(sd_open(path, &o, &h) == SD_BADARG);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 70000; i++)
        fputc(i * 7, f);
    fclose(f);
    sd_open_opts a = {0};
    CHECK(sd_open(path, &a, &h) == SD_FORMAT);
    unlink(path);
    CHECK(sd_open(path, &a, &h) == SD_SYSERR && errno == ENOENT);
    h = make(1 << 20);
    sd_handle *p = attach();
    sd_close(p);
    CHECK(access(path, F_OK) == 0);
    o.size = 1 << 20;
    sd_handle *dup = NULL;
    CHECK(sd_open(path, &o, &dup) == SD_SYSERR && errno == EEXIST);
    sd_close(h);
    CHECK(access(path, F_OK) != 0);
}

typedef struct {
    sd_handle *h;
    int id;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    sd_value_in one = vint(1);
    sd_value_out o = {0};
    char key[16];
    for (int i = 0; i < 20000; i++) {
        SD_IGNORE(sd_incr(a->h, "shared", 6, &one, -1, 0, &o));
        snprintf(key, sizeof key, "t%d-%d", a->id, i % 100);
        sd_value_in v = vint(i);
        SD_IGNORE(sd_set(a->h, key, strlen(key), &v, 0));
        SD_IGNORE(sd_get(a->h, key, strlen(key), &o));
    }
    return NULL;
}

static void test_threads(void)
{
    sd_handle *h = make(1 << 20);
    sd_value_in zero = vint(0);
    CHECK(sd_set(h, "shared", 6, &zero, 0) == SD_OK);
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){h, i};
        pthread_create(&th[i], NULL, thr_main, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    sd_value_out o = {0};
    CHECK(sd_get(h, "shared", 6, &o) == SD_OK && o.i == 80000);
    CHECK(problems(h) == 0);
    sd_close(h);
}

/* The state the crash tests start from, and the check after each crash:
 * "stay" keys untouched, the target key old or new, verify clean. */
static void crash_base(sd_handle *h)
{
    char key[16];
    sd_value_in v;
    CHECK(sd_flush_all(h) == SD_OK);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "stay%d", i);
        v = vint(i);
        CHECK(sd_set(h, key, strlen(key), &v, i % 2 ? 100000 : 0) == SD_OK);
    }
    static char big[3000];
    memset(big, 'o', sizeof big);
    v = vbytes(big, sizeof big);
    CHECK(sd_set(h, "target", 6, &v, 0) == SD_OK);
    v = vint(5);
    CHECK(sd_set(h, "num", 3, &v, 0) == SD_OK);
}

static int crash_op(sd_handle *h, int op)
{
    static char big[5000];
    memset(big, 'n', sizeof big);
    sd_value_in v;
    sd_value_out o = {0};
    switch (op) {
    case 0:
        v = vbytes(big, 5000);
        return sd_set(h, "target", 6, &v, 0);
    case 1:
        v = vbytes(big, 10);
        return sd_set(h, "target", 6, &v, 50000);
    case 2:
        v = vbytes(big, 5000);
        return sd_set(h, "fresh", 5, &v, 0);
    case 3:
        return sd_delete(h, "target", 6);
    case 4:
        v = vint(2);
        return sd_incr(h, "num", 3, &v, 0, 1000, &o);
    case 5:
        return sd_expire(h, "target", 6, 1000);
    case 6:
        return sd_flush_all(h);
    case 7:
        v = vint(9);
        return sd_set(h, "num", 3, &v, 0);
    default:
        return -1;
    }
}

static void test_crash_points(void)
{
    sd_handle *h = make(1 << 20);
    int total = 0;
    for (int op = 0; op < 8; op++) {
        for (int n = 1;; n++) {
            crash_base(h);
            pid_t pid = fork();
            if (pid == 0) {
                sd_handle *c = attach();
                sd_set_crash_countdown(n);
                crash_op(c, op);
                _exit(0);
            }
            int status;
            waitpid(pid, &status, 0);
            bool crashed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
            CHECK(crashed || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
            /* Repair happens on the next lock; then everything checks. */
            CHECK(problems(h) == 0);
            char key[16], buf[6000];
            sd_value_out o;
            for (int i = 0; i < 50; i++) {
                snprintf(key, sizeof key, "stay%d", i);
                sd_status rc = getv(h, key, &o, buf, sizeof buf);
                CHECK((op == 6 && rc == SD_NOTFOUND) ||
                      (rc == SD_OK && o.i == i));
            }
            sd_status rc = getv(h, "target", &o, buf, sizeof buf);
            CHECK(rc == SD_NOTFOUND
                      ? (op == 3 || op == 6)
                      : (o.len == 3000 || o.len == 5000 || o.len == 10));
            if (rc == SD_OK && o.len == 3000)
                CHECK(buf[0] == 'o' && buf[2999] == 'o');
            if (rc == SD_OK && o.len != 3000)
                CHECK(buf[0] == 'n' && buf[o.len - 1] == 'n');
            total++;
            if (!crashed)
                break;
        }
    }
    CHECK(total > 200);
    printf("crash points exercised: %d\n", total);
    sd_close(h);
}

static void run_all(void)
{
    test_types();
    test_incr();
    test_expiry();
    test_full();
    test_full_big_overwrite();
    test_quick_lists();
    test_churn();
    test_dead_holder();
    test_lock_timeout();
    test_wait_modes();
    test_batch_wait();
    test_span();
    test_near_check();
    test_near_groups();
    test_files();
    test_threads();
    test_crash_points();
}

int main(void)
{
    run_all();
    g_nparts = 4; /* again, with the keys spread over four stripes */
    run_all();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
