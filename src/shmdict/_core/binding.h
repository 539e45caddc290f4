/*
 * binding.h - what the files of the CPython binding (shmdict._core) share.
 *
 * The binding only translates: Python objects to C arguments, core status
 * codes to exceptions (one table, raise_status in convert.c), and C results
 * back to Python objects. Its files, in the shape of CPython's
 * Modules/_sqlite:
 *
 *   module.c   the module: multi-phase init, module state, constants,
 *              the module-level functions
 *   convert.c  argument parsing, values in and out, the arguments of
 *              Dict(), and the one table from sd_status to exception
 *   near.c     the per-handle near cache of values already returned
 *   dict.c     the Dict type: life cycle, the GIL hooks, the calls on the
 *              whole dict, the properties, the method table and slots
 *   item.c     the methods on one key (get, set, incr, cas, ...)
 *   list.c     the list methods (lpush ... lrange)
 *   batch.c    the methods on many keys (get_many, set_many, delete_many)
 *   binding.h  this: the shared types, the enter/leave bracket, the
 *              inline fast paths (key_arg, near_find), the prototypes
 *
 * Rules every file keeps:
 * - Every core call on a handle sits inside dict_enter ... dict_leave, so
 *   that a close() from another thread while this one waits for a lock
 *   (GIL released) is deferred until the call returns.
 * - No Python code runs while a stripe's lock is held: the core takes and
 *   releases its locks inside each sd_* call, copying results into buffers
 *   owned here; objects are built after it returns. When the core must
 *   wait for a lock it calls gil_release/gil_acquire around the wait, and
 *   gil_interrupted between slices of it (only while this thread holds no
 *   stripe's lock), which runs the signal handlers, so Ctrl-C ends a wait.
 * - A failed core call raises through raise_status with the name of the
 *   Python call and its key (or the dict's path): no other code turns an
 *   sd_status into an exception.
 * - Each method is a METH_FASTCALL (or METH_O / METH_NOARGS) parser that
 *   checks every argument before the first core call, and a method that
 *   holds resources frees them after one `exit:` label.
 */
#ifndef SHMDICT_BINDING_H
#define SHMDICT_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "shmdict.h"

#define SHM_DIR "/dev/shm"
#define STACK_BUF 4096 /* values this small are read without a malloc */
#define DEFAULT_LOCK_TIMEOUT 10.0 /* seconds: Dict()'s and shmdict's */
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_LOCK_TIMEOUT_S STR(DEFAULT_LOCK_TIMEOUT)
#define SNAP_PARTS 64u /* get_many reads this many stripes without locks */

#define SD_LIKELY_OK(rc) __builtin_expect((rc) == SD_OK, 1)
#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

/* ---- module state (module.c) ------------------------------------------ */

typedef struct {
    PyTypeObject *DictType;    /* owned: the heap type Dict */
    PyTypeObject *PickledType; /* owned: shmdict.Pickled, tagged bytes */
    PyObject *Error;           /* owned: from shmdict.errors, as are: */
    PyObject *NoMemoryError;   /* owned */
    PyObject *CorruptError;    /* owned */
    PyObject *LockTimeout;     /* owned */
} module_state;

extern struct PyModuleDef core_module;

/* The module state of the module that made `type` (or a base of it); NULL
 * with an exception if there is none. state_of: of self's type. */
module_state *state_of_type(PyTypeObject *type);

static inline module_state *state_of(PyObject *self)
{
    return state_of_type(Py_TYPE(self));
}

/* ---- the handle (dict.c) ---------------------------------------------- */

struct near_slot;

typedef struct {
    PyObject ob_base;       /* PyObject_HEAD */
    sd_handle *h;           /* owned; NULL once closed */
    PyObject *name;         /* str, owned */
    PyObject *path;         /* str, owned */
    double lock_timeout;    /* seconds, as given */
    int busy;               /* core calls in flight (they may drop the GIL) */
    int closing;            /* close() was called while busy */
    PyObject *weakreflist;  /* owned by the weakref machinery */
    struct near_slot *near; /* near_n of them (in near_mem), or NULL */
    void *near_mem;         /* owned: the table's allocation */
    uint32_t near_n;        /* slots of the near cache (a power of two, or
                               0: off); the table is made at the first keep */
    uint32_t near_tick;     /* gets while it was skipped (near_skip) */
    uint32_t near_probes;   /* gets that looked, this window */
    uint32_t near_probe_hits; /* and found another key's, this window */
    int near_skip;            /* the last window's hit rate was too low */
    uint64_t near_hits;       /* gets the near cache answered */
    uint64_t near_misses;     /* gets it didn't (with the cache on) */
    size_t near_obj_bytes;    /* the objects it holds, approximately */
} DictObject;

extern PyType_Spec Dict_spec;

PyObject *closed_error(void);
void really_close(DictObject *self);

/* Enter a call on this handle: 0, or -1 with ValueError if the handle is
 * closed (or closing). Each dict_enter that returned 0 is matched by one
 * dict_leave, on every path. */
static inline int dict_enter(DictObject *self)
{
    if (!self->h || self->closing) {
        closed_error();
        return -1;
    }
    self->busy++;
    return 0;
}

/* Leave a call: the last call in flight runs a deferred close(). */
static inline void dict_leave(DictObject *self)
{
    if (--self->busy == 0 && self->closing && self->h)
        really_close(self);
}

/* A span groups the core calls of one Python call, so that all their lock
 * waits together last at most one lock timeout; `sp` NULL: this core call
 * is the whole Python call. Only core calls run inside a span, never
 * Python code; so a span sits inside dict_enter ... dict_leave. */
static inline void span_enter(DictObject *self, sd_span *sp)
{
    if (sp)
        sd_span_enter(self->h, sp);
}

static inline void span_leave(sd_span *sp)
{
    if (sp)
        sd_span_leave(sp);
}

/* ---- arguments and values (convert.c) --------------------------------- */

int parse_args(const char *fname, const char *const *names, int nnames,
               int npos, int nreq, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, PyObject **out);
int key_arg_slow(PyObject *key, const char **p, Py_ssize_t *n);

/* A key as UTF-8 bytes, borrowed from the str object (cached there); -1
 * with TypeError or ValueError for a key that is no str, empty or too
 * long. The common case, an ASCII str, is inline and calls nothing. */
static inline int key_arg(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key)) {
        *p = (const char *)PyUnicode_DATA(key);
        *n = PyUnicode_GET_LENGTH(key);
        if (*n != 0 && (size_t)*n <= SD_MAX_KEY)
            return 0;
    }
    return key_arg_slow(key, p, n);
}

int value_arg(PyObject *self, PyObject *v, sd_value_in *out);
int number_arg(PyObject *o, const char *what, sd_value_in *v);
int ttl_arg(PyObject *o, int64_t *ms);
int lock_timeout_arg(PyObject *o, double *s, int64_t *ms);
int size_arg(PyObject *o, int create, unsigned long long *size);
int mode_arg(PyObject *o, unsigned *mode);
int fits_filesystem(PyTypeObject *type, const char *path,
                    unsigned long long size);

int is_ascii(const void *p, size_t n);
PyObject *value_obj(PyObject *self, const sd_value_out *o);
PyObject *record_value(PyObject *self, const unsigned char *rec);
size_t record_size(const unsigned char *rec);

/* ---- status -> exception (convert.c) ---------------------------------- */

/* What a failed call was doing, for the message of its exception. */
typedef struct err_ctx {
    const char *op;   /* the Python call: "set", "incr", "create", ... */
    PyObject *obj;    /* the key; for calls on the whole dict, its path */
    uint64_t item;    /* set: the bytes the item needs (0: not known) */
    size_t stored;    /* set_many: the items stored before NoMemoryError */
    uint64_t size;    /* Dict(): the size asked for */
    unsigned stripes; /* Dict(): the stripes asked for */
} err_ctx;

/* Raise the exception the status table gives for rc (not SD_OK) in the
 * call `cx` describes; self is the handle (it finds the module state).
 * SD_INTERRUPTED with an exception set means a signal handler raised
 * during a wait: that exception stands. Returns NULL. */
PyObject *raise_status_ctx(PyObject *self, sd_status rc, const err_ctx *cx);

/* The same for the common case: the call's name and its key or path. */
static inline PyObject *raise_status(PyObject *self, sd_status rc,
                                     const char *op, PyObject *obj)
{
    err_ctx cx = {.op = op, .obj = obj};
    return raise_status_ctx(self, rc, &cx);
}

int status_table_complete(void);

/* ---- the near cache (near.c) ------------------------------------------ */

/* Each handle keeps the last values it read, as the Python objects it
 * returned, in a direct-mapped table of near_n slots (Dict()'s
 * near_cache=, NEAR_DEFAULT_SLOTS unless given; 0: off) keyed by the str
 * key. An entry is good while the core says so (sd_near_check): at once if
 * no process has taken the key's stripe lock since it was read or last
 * checked (one shared load), or has written a key of its write group (two
 * loads), else after a lock-free read of the key whose stored value is
 * compared with the kept one's bytes; then, if the value has an expiry,
 * while a coarse clock says it surely hasn't passed. So a repeated get is
 * the same object, and a write of another key, or of this one with the
 * same value, costs the next get at most one read but no new object. A set
 * of a key that holds a slot puts the object stored there
 * (near_keep_stored). Only values read without the lock are kept: str and
 * bytes of up to NEAR_SMALL_VALUE bytes always, bigger ones up to
 * NEAR_MAX_VALUE while the objects kept fit the budget (near_room). The
 * objects are immutable (str, bytes, Pickled, int, float, True, False, None),
 * so handing out the same one twice is safe. Memory: NEAR_SLOT_BYTES per slot
 * once the first value is kept, plus the objects held.
 *
 * A hit saves building an object, but is no cheaper than a lookup when
 * the table and its objects are out of the CPU's caches (a working set of
 * far more keys than slots): a miss then costs a cold line for nothing.
 * So each window of NEAR_WINDOW gets that looked is judged, and after one
 * where more than a quarter found their slot held by another key, only one
 * get in NEAR_SAMPLE looks (and keeps what it reads), until a window (then
 * of NEAR_WINDOW gets) does better. (Measured with 100k keys read
 * uniformly, 32768 slots: a cache that answered 15% to 70% of the gets
 * was 10% to 40% slower than none.) */
#define NEAR_DEFAULT_SLOTS 32768
#define NEAR_MAX_SLOTS (1u << 22)
/* str and bytes of up to NEAR_SMALL_VALUE bytes are always kept; bigger
 * ones, up to NEAR_MAX_VALUE, only while the objects the cache holds stay
 * within NEAR_SLOT_BUDGET bytes per slot (16 MiB at the default). */
#define NEAR_SMALL_VALUE 256u
#define NEAR_MAX_VALUE 16384u
#define NEAR_SLOT_BUDGET 512u
#define NEAR_WINDOW 1024u
#define NEAR_SAMPLE 16u

struct near_slot {
    PyObject *key;   /* exact str, owned, or NULL */
    PyObject *value; /* owned */
    sd_near ref;     /* what the core checks the value against */
    uint32_t tag;    /* the top half of the key's Python hash */
    uint32_t cand;   /* the tag of a key that wanted the slot once */
};

#define NEAR_SLOT_BYTES sizeof(struct near_slot)
_Static_assert(sizeof(struct near_slot) == 64, "a slot is one cache line");

void near_clear(DictObject *self);
void near_keep(DictObject *self, PyObject *key, PyObject *value,
               const sd_value_out *o);
size_t near_bytes(const DictObject *self);
void near_keep_stored(DictObject *self, PyObject *key, PyObject *value,
                      const sd_value_in *v, const sd_near *kept);

static inline bool same_str(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return a == b ||
           (n == PyUnicode_GET_LENGTH(b) && kind == PyUnicode_KIND(b) &&
            memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b),
                   (size_t)n * (size_t)kind) == 0);
}

/* The slot for key (an exact str) and its tag, or NULL. */
static inline struct near_slot *near_slot_of(DictObject *self, PyObject *key,
                                             uint32_t *tag)
{
    /* The str caches its hash: read it, call only if not yet made. */
    Py_hash_t ph = ((PyASCIIObject *)key)->hash;
    if (ph == -1 && (ph = PyObject_Hash(key)) == -1) {
        PyErr_Clear();
        return NULL;
    }
    *tag = (uint32_t)((uint64_t)ph >> 32);
    return &self->near[(size_t)ph & (self->near_n - 1)];
}

/* Count a get that looked and found its slot held by another key, and
 * judge each window: NEAR_WINDOW looks, or while skipping NEAR_WINDOW /
 * NEAR_SAMPLE (as many gets), so that a working set that shrank is served
 * again soon. (A miss on an empty slot, or on the key's own whose value
 * changed, says nothing against the cache: it is filling.) */
static inline void near_judge(DictObject *self, int taken)
{
    self->near_probe_hits += (uint32_t)taken;
    uint32_t window =
        self->near_skip ? NEAR_WINDOW / NEAR_SAMPLE : NEAR_WINDOW;
    if (++self->near_probes >= window) {
        self->near_skip = self->near_probe_hits > window / 4;
        self->near_probes = self->near_probe_hits = 0;
    }
}

/* key's value as the near cache holds it (borrowed), if it is still
 * current (and, with `snap`, current at get_many's snapshot: the value
 * was checked at that sequence value of its stripe); else NULL, with no
 * exception, and *look says whether the value read instead may be kept.
 * k/klen: the key's bytes. Inline: it is the whole of a repeated get.
 * The caller has entered the handle. */
static inline PyObject *near_find(DictObject *self, PyObject *key,
                                  const char *k, Py_ssize_t klen,
                                  const uint64_t *snap, int *look)
{
    *look = 0;
    if (!self->near_n)
        return NULL;
    self->near_misses++; /* (taken back on a hit) */
    if (self->near_skip && ++self->near_tick % NEAR_SAMPLE)
        return NULL;
    *look = 1;
    uint32_t tag;
    struct near_slot *ns;
    if (!self->near || !PyUnicode_CheckExact(key) ||
        !(ns = near_slot_of(self, key, &tag))) {
        near_judge(self, 0);
        return NULL;
    }
    if (!ns->key || ns->tag != tag || !same_str(ns->key, key)) {
        near_judge(self, ns->key != NULL);
        return NULL;
    }
    near_judge(self, 0);
    if (!sd_near_check(self->h, k, (size_t)klen, &ns->ref) ||
        (snap && snap[sd_stripe_index(self->h, ns->ref.hash)] != ns->ref.seq))
        return NULL;
    self->near_misses--;
    self->near_hits++;
    return ns->value;
}

/* ---- reads shared by item.c, list.c and batch.c (item.c) -------------- */

/* A core call that copies a value out of key into `out`. */
typedef sd_status (*fetch_fn)(sd_handle *h, const char *k, size_t klen,
                              sd_value_out *out, void *arg);

PyObject *fetch_obj(DictObject *self, const char *op, PyObject *key,
                    fetch_fn fn, void *arg, PyObject *missing, sd_span *sp);
PyObject *lookup(DictObject *self, const char *op, PyObject *key,
                 const uint64_t *snap, int *stale, sd_span *sp);

/* ---- the methods, each defined with its docstring above it ------------ */

#define DICT_METHOD(name)                                                     \
    extern const char name##_doc[];                                           \
    PyObject *name(DictObject *self, PyObject *const *args, Py_ssize_t nargs, \
                   PyObject *kwnames)
#define DICT_METHOD_POS(name)                                                 \
    extern const char name##_doc[];                                           \
    PyObject *name(DictObject *self, PyObject *const *args, Py_ssize_t nargs)
#define DICT_METHOD_O(name)                                                   \
    extern const char name##_doc[];                                           \
    PyObject *name(DictObject *self, PyObject *arg)

/* item.c */
DICT_METHOD(Dict_get);
DICT_METHOD(Dict_set);
DICT_METHOD(Dict_add);
DICT_METHOD(Dict_replace);
DICT_METHOD(Dict_safe_set);
DICT_METHOD(Dict_safe_add);
DICT_METHOD(Dict_set_forcible);
DICT_METHOD_O(Dict_get_stale);
DICT_METHOD(Dict_pop);
DICT_METHOD(Dict_setdefault);
DICT_METHOD(Dict_cas);
DICT_METHOD_O(Dict_delete);
DICT_METHOD(Dict_incr);
DICT_METHOD_O(Dict_ttl);
DICT_METHOD(Dict_expire);
PyObject *Dict_subscript(DictObject *self, PyObject *key);
int Dict_ass_subscript(DictObject *self, PyObject *key, PyObject *value);
int Dict_contains(DictObject *self, PyObject *key);

/* list.c (lpush and rpush are METH_FASTCALL without keywords) */
DICT_METHOD_POS(Dict_lpush);
DICT_METHOD_POS(Dict_rpush);
DICT_METHOD_O(Dict_lpop);
DICT_METHOD_O(Dict_rpop);
DICT_METHOD_O(Dict_llen);
DICT_METHOD_O(Dict_lrange);

/* batch.c */
DICT_METHOD_O(Dict_get_many);
DICT_METHOD(Dict_set_many);
DICT_METHOD_O(Dict_delete_many);

#endif /* SHMDICT_BINDING_H */
