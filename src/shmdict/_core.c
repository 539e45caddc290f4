/*
 * _core.c - the CPython binding of the shmdict C core.
 *
 * This file only translates: Python objects to C arguments, core status
 * codes to exceptions (one table, raise_status), and C results back to
 * Python objects. It never calls into Python while the dict's lock is
 * held: the core copies results into buffers owned here, releases the
 * lock, and only then are objects built. When the core must wait for the
 * lock it calls gil_release/gil_acquire around the wait, so other threads
 * run meanwhile, and gil_interrupted between slices of it, which runs the
 * signal handlers (the core calls it only while this thread holds no
 * stripe's lock, so they may do anything), so Ctrl-C ends a wait.
 *
 * Each method is a METH_FASTCALL parser followed by the work in C types.
 * The module uses multi-phase init, a module state and a heap type.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <structmember.h>
#include <sys/statvfs.h>

#include "layout.h"
#include "shmdict.h"

#define SHM_DIR "/dev/shm"
#define STACK_BUF 4096 /* values this small are read without a malloc */
#define DEFAULT_LOCK_TIMEOUT 10.0 /* seconds; also shmdict's default */
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_LOCK_TIMEOUT_S STR(DEFAULT_LOCK_TIMEOUT)

typedef struct {
    PyTypeObject *DictType;
    PyTypeObject *PickledType; /* shmdict.Pickled: tagged bytes */
    PyObject *Error;
    PyObject *NoMemoryError;
    PyObject *CorruptError;
    PyObject *LockTimeout;
} module_state;

typedef struct {
    PyObject_HEAD sd_handle *h; /* owned; NULL once closed */
    PyObject *name;             /* str, owned */
    PyObject *path;             /* str, owned */
    double lock_timeout;        /* seconds, as given */
    int busy;               /* core calls in flight (they may drop the GIL) */
    int closing;            /* close() was called while busy */
    PyObject *weakreflist;  /* owned by the weakref machinery */
    struct near_slot *near; /* owned, NEAR_SLOTS of them, or NULL */
} DictObject;

/* ---- the near cache
 * ------------------------------------------------------------
 * Each handle keeps the last values it read, as the Python objects it
 * returned, in a small direct-mapped table keyed by the str key. An entry
 * is good while its stripe's sequence counter hasn't moved (no process has
 * taken that stripe's lock since), so a repeated get costs one shared load
 * instead of a lookup and a new object. Only values read without the lock
 * and with no expiry are kept, and only small ones: at most
 * NEAR_SLOTS * NEAR_MAX_VALUE bytes of values per handle. The objects are
 * immutable (str, bytes, int, float, True, False, None), so handing out the
 * same one twice is safe. */
#define NEAR_SLOTS 4096u
#define SNAP_PARTS 64u /* get_many reads this many stripes without locks */
#define NEAR_MAX_VALUE 256u

struct near_slot {
    PyObject *key;   /* exact str, owned, or NULL */
    PyObject *value; /* owned */
    Py_hash_t ph;    /* the key's Python hash */
    Py_hash_t cand;  /* a key that wanted the slot once (its hash) */
    uint64_t seq;
    uint32_t part;
    uint32_t hash;
};

static void near_clear(DictObject *self)
{
    struct near_slot *t = self->near;
    if (!t)
        return;
    self->near = NULL;
    for (unsigned i = 0; i < NEAR_SLOTS; i++) {
        Py_XDECREF(t[i].key);
        Py_XDECREF(t[i].value);
    }
    PyMem_Free(t);
}

static inline bool same_str(PyObject *a, PyObject *b)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return a == b ||
           (n == PyUnicode_GET_LENGTH(b) && kind == PyUnicode_KIND(b) &&
            memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b),
                   (size_t)n * (size_t)kind) == 0);
}

/* The slot for key (an exact str) and its Python hash, or NULL. */
static inline struct near_slot *near_slot_of(DictObject *self, PyObject *key,
                                             Py_hash_t *ph)
{
    *ph = PyObject_Hash(key); /* the str caches it */
    if (*ph == -1) {
        PyErr_Clear();
        return NULL;
    }
    return &self->near[(size_t)*ph & (NEAR_SLOTS - 1)];
}

/* Keep value as key's current value, if it may be kept. */
static void near_keep(DictObject *self, PyObject *key, PyObject *value,
                      const sd_value_out *o)
{
    if (!o->seq || o->expiring || !PyUnicode_CheckExact(key) ||
        ((o->type == SD_T_STR || o->type == SD_T_BYTES) &&
         o->len > NEAR_MAX_VALUE))
        return;
    if (!self->near) {
        self->near = PyMem_Calloc(NEAR_SLOTS, sizeof *self->near);
        if (!self->near)
            return; /* no cache, no harm */
    }
    Py_hash_t ph;
    struct near_slot *ns = near_slot_of(self, key, &ph);
    if (!ns)
        return;
    if (ns->key && ns->ph != ph && ns->cand != ph) {
        /* Another key holds the slot: take it only when this key comes
         * back (a second read soon after), so a scan of many keys doesn't
         * churn the table, and the holder's objects aren't freed cold. */
        ns->cand = ph;
        return;
    }
    ns->ph = ph;
    ns->cand = 0;
    PyObject *old_key = ns->key, *old_value = ns->value;
    ns->key = Py_NewRef(key);
    ns->value = Py_NewRef(value);
    ns->seq = o->seq;
    ns->part = o->part;
    ns->hash = o->hash;
    Py_XDECREF(old_key);
    Py_XDECREF(old_value);
}

static struct PyModuleDef core_module;

#if PY_VERSION_HEX < 0x030B0000
/* PyType_GetModuleByDef is new in 3.11; this is its 3.11 body for 3.10.
 * Walk the MRO, since self is usually an instance of SharedDict, a Python
 * subclass of Dict that has no module of its own. Like the real one it
 * returns a borrowed reference. */
static PyObject *PyType_GetModuleByDef(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE))
            continue;
        PyObject *m = ((PyHeapTypeObject *)t)->ht_module;
        if (m && PyModule_GetDef(m) == def)
            return m;
    }
    PyErr_Format(PyExc_TypeError,
                 "PyType_GetModuleByDef: No superclass of '%s' has the "
                 "given module",
                 type->tp_name);
    return NULL;
}
#endif

static module_state *state_of(PyObject *self)
{
    PyObject *m = PyType_GetModuleByDef(Py_TYPE(self), &core_module);
    return m ? PyModule_GetState(m) : NULL;
}

/* ---- errors ---------------------------------------------------------------
 */

enum exc_kind {
    EXC_NONE,
    EXC_KEY,
    EXC_TYPE,
    EXC_OVERFLOW,
    EXC_VALUE,
    EXC_NOMEM,
    EXC_CORRUPT,
    EXC_TIMEOUT,
    EXC_OS,
    EXC_ERROR
};

/* Which exception each core status raises. */
static const struct {
    sd_status status;
    enum exc_kind kind;
} status_table[] = {
    {SD_OK, EXC_NONE},           {SD_NOTFOUND, EXC_KEY},
    {SD_NOMEM, EXC_NOMEM},       {SD_NOTNUM, EXC_TYPE},
    {SD_OVERFLOW, EXC_OVERFLOW}, {SD_TOOBIG, EXC_ERROR},
    {SD_BADARG, EXC_VALUE},      {SD_CORRUPT, EXC_CORRUPT},
    {SD_FORMAT, EXC_CORRUPT},    {SD_TIMEDOUT, EXC_TIMEOUT},
    {SD_SYSERR, EXC_OS},         {SD_INTERNAL, EXC_ERROR},
    {SD_EXISTS, EXC_ERROR},      {SD_WRONGTYPE, EXC_TYPE},
    {SD_NOSPACE, EXC_NOMEM},     {SD_TORN, EXC_CORRUPT},
};

/* NoMemoryError for a filesystem with no page left: say which, how big,
 * and what to do about it. `path` is the dict's file (a str), or NULL. */
static void set_nospace(PyObject *exc, PyObject *path)
{
    const char *p =
        path && PyUnicode_Check(path) ? PyUnicode_AsUTF8(path) : NULL;
    if (!p) {
        PyErr_Clear();
        p = SHM_DIR "/";
    }
    char dir[4096];
    const char *slash = strrchr(p, '/');
    size_t n = slash && slash != p ? (size_t)(slash - p) : 1;
    if (n >= sizeof dir)
        n = sizeof dir - 1;
    memcpy(dir, slash ? p : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    struct statvfs vfs;
    double mib = 1024.0 * 1024.0, total = 0, avail = 0;
    if (statvfs(dir, &vfs) == 0) {
        total = (double)vfs.f_blocks * (double)vfs.f_frsize / mib;
        avail = (double)vfs.f_bavail * (double)vfs.f_frsize / mib;
    }
    char msg[4096 + 512];
    snprintf(msg, sizeof msg,
             "the shared-memory filesystem at %s is full (%.1f MiB, %.1f MiB "
             "free); nothing was stored. Free space there (remove unused "
             "dicts), or give it more: Docker --shm-size=256m, Kubernetes an "
             "emptyDir volume with medium: Memory and a sizeLimit; or create "
             "the dict with reserve=True to claim its memory up front",
             dir, total, avail);
    PyErr_SetString(exc, msg);
}

/* The file of the handle `self`, or `obj` while it has none yet. */
static PyObject *dict_path(PyObject *self, PyObject *obj)
{
    PyObject *p = ((DictObject *)self)->path;
    return p ? p : obj;
}

/* Raise the exception for `rc`. `obj` is the key (KeyError) or the path
 * (OSError); `self` finds the module state. Returns NULL. SD_INTERRUPTED
 * means a signal handler raised during a wait: that exception stands. */
static PyObject *raise_status(PyObject *self, sd_status rc, PyObject *obj)
{
    if (rc == SD_INTERRUPTED && PyErr_Occurred())
        return NULL;
    enum exc_kind kind = EXC_ERROR;
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].status == rc)
            kind = status_table[i].kind;
    const char *msg = sd_strstatus(rc);
    module_state *st = NULL;
    if (kind >= EXC_NOMEM && kind != EXC_OS) {
        st = state_of(self);
        if (!st)
            return NULL;
    }
    switch (kind) {
    case EXC_KEY:
        if (obj)
            PyErr_SetObject(PyExc_KeyError, obj);
        else
            PyErr_SetString(PyExc_KeyError, msg);
        break;
    case EXC_TYPE:
        PyErr_Format(PyExc_TypeError, "%s: %R", msg, obj ? obj : Py_None);
        break;
    case EXC_OVERFLOW:
        PyErr_SetString(PyExc_OverflowError, msg);
        break;
    case EXC_VALUE:
        PyErr_SetString(PyExc_ValueError, msg);
        break;
    case EXC_NOMEM:
        if (rc == SD_NOSPACE)
            set_nospace(st->NoMemoryError, dict_path(self, obj));
        else
            PyErr_SetString(st->NoMemoryError, msg);
        break;
    case EXC_CORRUPT:
        PyErr_Format(st->CorruptError, "%s: %S", msg, obj ? obj : Py_None);
        break;
    case EXC_TIMEOUT:
        PyErr_SetString(st->LockTimeout, msg);
        break;
    case EXC_OS:
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, obj);
        break;
    default:
        PyErr_SetString(st ? st->Error : PyExc_RuntimeError, msg);
    }
    return NULL;
}

static PyObject *closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "operation on a closed shmdict");
    return NULL;
}

/* ---- argument parsing ------------------------------------------------------
 */

/* A minimal FASTCALL parser: `names` lists every parameter; the first
 * `npos` may be given by position; the first `nreq` are required. */
static int parse_args(const char *fname, const char *const *names, int nnames,
                      int npos, int nreq, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames, PyObject **out)
{
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (int i = 0; i < nnames; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, j);
        int i = 0;
        while (i < nnames && PyUnicode_CompareWithASCIIString(kw, names[i]))
            i++;
        if (i == nnames) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument %R", fname,
                         kw);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + j];
    }
    for (int i = 0; i < nreq; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* A key as UTF-8 bytes, borrowed from the str object (cached there). */
static int key_arg(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (PyUnicode_CheckExact(key) && PyUnicode_IS_COMPACT_ASCII(key)) {
        /* The common case, without a call: ASCII is its own UTF-8. */
        *p = (const char *)PyUnicode_DATA(key);
        *n = PyUnicode_GET_LENGTH(key);
        if (*n != 0 && (size_t)*n <= SD_MAX_KEY)
            return 0;
    }
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "keys must be str, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(key, n);
    if (!*p)
        return -1;
    if (*n == 0) {
        PyErr_SetString(PyExc_ValueError, "keys must not be empty");
        return -1;
    }
    if ((size_t)*n > SD_MAX_KEY) {
        PyErr_Format(PyExc_ValueError,
                     "key is %zd bytes of UTF-8; the limit is %u", *n,
                     (unsigned)SD_MAX_KEY);
        return -1;
    }
    return 0;
}

/* A value argument. `self` (NULL for numbers) finds the Pickled type. */
static int value_arg(PyObject *self, PyObject *v, sd_value_in *out)
{
    out->ascii = 0;
    out->tag = 0;
    out->data = NULL;
    out->len = 0;
    if (v == Py_None) {
        out->type = SD_T_NONE;
    } else if (v == Py_True) {
        out->type = SD_T_TRUE;
    } else if (v == Py_False) {
        out->type = SD_T_FALSE;
    } else if (PyLong_Check(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError,
                            "int does not fit in 64 bits (shmdict stores "
                            "signed 64-bit ints)");
            return -1;
        }
        if (x == -1 && PyErr_Occurred())
            return -1;
        out->type = SD_T_INT;
        out->i = x;
    } else if (PyFloat_Check(v)) {
        out->type = SD_T_FLOAT;
        out->f = PyFloat_AS_DOUBLE(v);
    } else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        out->data = PyUnicode_AsUTF8AndSize(v, &n);
        if (!out->data)
            return -1;
        out->type = SD_T_STR;
        out->len = (size_t)n;
        out->ascii = PyUnicode_IS_ASCII(v) ? 1 : 0;
    } else if (PyBytes_Check(v)) {
        out->type = SD_T_BYTES;
        out->data = PyBytes_AS_STRING(v);
        out->len = (size_t)PyBytes_GET_SIZE(v);
        if (!PyBytes_CheckExact(v) && self) {
            module_state *st = state_of(self);
            if (!st)
                return -1;
            out->tag = PyObject_TypeCheck(v, st->PickledType) ? 1 : 0;
        }
    } else {
        PyErr_Format(PyExc_TypeError,
                     "values must be None, bool, int, float, str or bytes, "
                     "not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    if (out->len > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "value is larger than 4 GiB");
        return -1;
    }
    return 0;
}

/* A number argument that must be finite: exptime or delta. */
static int finite_number(PyObject *o, const char *what, double *d)
{
    if (PyBool_Check(o) || !(PyLong_Check(o) || PyFloat_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or float, not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    *d = PyFloat_Check(o) ? PyFloat_AS_DOUBLE(o) : PyLong_AsDouble(o);
    if (*d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is too large", what);
        return -1;
    }
    if (!isfinite(*d)) {
        PyErr_Format(PyExc_ValueError, "%s must be finite, not %R", what, o);
        return -1;
    }
    return 0;
}

/* exptime in seconds -> milliseconds: <= 0 means none (0); any positive
 * time lasts at least 1 ms. */
#define MAX_TTL_MS 9007199254740992.0 /* 2**53 ms, about 285,000 years */

static int ttl_arg(PyObject *o, int64_t *ms)
{
    double d;
    *ms = 0;
    if (!o)
        return 0;
    if (finite_number(o, "exptime", &d) < 0)
        return -1;
    if (d <= 0)
        return 0;
    double m = ceil(d * 1000.0);
    if (m > MAX_TTL_MS) {
        PyErr_SetString(PyExc_ValueError,
                        "exptime is too large (the limit is 2**53 ms)");
        return -1;
    }
    *ms = m < 1 ? 1 : (int64_t)m;
    return 0;
}

/* The lock timeout in seconds as the core's ms; the one place it is
 * checked. 0: try once, don't wait; math.inf (or anything beyond the
 * core's limit, about 139 years): no limit; any other positive time waits
 * at least 1 ms. */
static int lock_timeout_arg(double s, int64_t *ms)
{
    if (isnan(s) || s < 0) {
        PyObject *f = PyFloat_FromDouble(s);
        if (f) {
            PyErr_Format(PyExc_ValueError,
                         "lock_timeout must be >= 0 seconds (0: don't wait, "
                         "math.inf: no limit), not %R",
                         f);
            Py_DECREF(f);
        }
        return -1;
    }
    if (s * 1000.0 > (double)SD_MAX_TIMEOUT_MS)
        *ms = SD_WAIT_FOREVER;
    else
        *ms = (int64_t)ceil(s * 1000.0);
    return 0;
}

/* ---- results ---------------------------------------------------------------
 */

/* Whether every byte is below 128, a word at a time. */
static int is_ascii(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t acc = 0, w[4], a[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) { /* four chains: loads, not ORs, limit */
        memcpy(w, s + i, 32);
        a[0] |= w[0];
        a[1] |= w[1];
        a[2] |= w[2];
        a[3] |= w[3];
    }
    acc = a[0] | a[1] | a[2] | a[3];
    for (; i + 8 <= n; i += 8) {
        memcpy(w, s + i, 8);
        acc |= w[0];
    }
    for (; i < n; i++)
        acc |= s[i];
    return (acc & UINT64_C(0x8080808080808080)) == 0;
}

#define SD_LIKELY_OK(rc) __builtin_expect((rc) == SD_OK, 1)

static PyObject *value_obj(PyObject *self, const sd_value_out *o)
{
    switch (o->type) {
    case SD_T_NONE:
        Py_RETURN_NONE;
    case SD_T_TRUE:
        Py_RETURN_TRUE;
    case SD_T_FALSE:
        Py_RETURN_FALSE;
    case SD_T_INT:
        return PyLong_FromLongLong(o->i);
    case SD_T_FLOAT:
        return PyFloat_FromDouble(o->f);
    case SD_T_STR: {
        if (o->ascii && is_ascii(o->buf, o->len)) {
            /* Skip the decoder: the flag said ASCII and the bytes agree. */
            PyObject *s = PyUnicode_New((Py_ssize_t)o->len, 127);
            if (s)
                memcpy(PyUnicode_DATA(s), o->buf, o->len);
            return s;
        }
        PyObject *s = PyUnicode_DecodeUTF8(o->buf, (Py_ssize_t)o->len, NULL);
        if (!s && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return raise_status(self, SD_CORRUPT, NULL);
        }
        return s;
    }
    case SD_T_BYTES: {
        PyObject *b = PyBytes_FromStringAndSize(o->buf, (Py_ssize_t)o->len);
        if (!b || !o->tag)
            return b;
        module_state *st = state_of(self);
        PyObject *p =
            st ? PyObject_CallOneArg((PyObject *)st->PickledType, b) : NULL;
        Py_DECREF(b);
        return p;
    }
    default:
        return raise_status(self, SD_CORRUPT, NULL);
    }
}

/* ---- the Dict type
 * ------------------------------------------------------------ */

static void *gil_release(void)
{
    return PyEval_SaveThread();
}

static void gil_acquire(void *token)
{
    PyEval_RestoreThread((PyThreadState *)token);
}

/* The interrupt hook: called by a waiting thread every slice (20 ms), with
 * the thread state gil_release saved, and only while the thread holds no
 * stripe's lock. It takes the GIL back, runs the signal handlers (only
 * the main thread runs any), and drops the GIL again. Nonzero if one
 * raised: the core call then returns SD_INTERRUPTED, changing nothing,
 * and the exception stands. */
static int gil_interrupted(void *token)
{
    PyEval_RestoreThread((PyThreadState *)token);
    int raised = PyErr_CheckSignals() < 0;
    (void)PyEval_SaveThread(); /* returns token again */
    return raised;
}

static void really_close(DictObject *self)
{
    sd_handle *h = self->h;
    self->h = NULL;
    sd_close(h);
    near_clear(self);
}

/* Bracket every core call: a close() from another thread while this one
 * waits for the lock (GIL released) is deferred until the call returns. */
#define ENTER(self)                                                           \
    do {                                                                      \
        if (!(self)->h || (self)->closing)                                    \
            return closed_error();                                            \
        (self)->busy++;                                                       \
    } while (0)

static inline void leave(DictObject *self)
{
    if (--self->busy == 0 && self->closing && self->h)
        really_close(self);
}

/* busy++ and leave() for a core call that may be one of several making up
 * a Python call: `sp` (NULL: none) is that call's span, so that all their
 * lock waits together last at most one lock timeout. No Python code runs
 * inside a span, only core calls. The hot paths make their first call
 * outside any span (a thread-local costs a few ns there) and charge what
 * it waited to the span of the retries, if any (sd_span_charge). */
static inline void call_begin(DictObject *self, sd_span *sp)
{
    self->busy++;
    if (sp)
        sd_span_enter(self->h, sp);
}

static inline void call_end(DictObject *self, sd_span *sp)
{
    if (sp)
        sd_span_leave(sp);
    leave(self);
}

static PyObject *Dict_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path",         "name",  "size",
                             "create",       "mode",  "allow_foreign_owner",
                             "lock_timeout", "evict", "stripes",
                             "reserve",      NULL};
    PyObject *path, *name;
    unsigned long long size = 0;
    int create = 0, foreign = 0, evict = 0, reserve = 0;
    unsigned int stripes = 0;
    unsigned int mode = 0600;
    double timeout = DEFAULT_LOCK_TIMEOUT;
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "UU|K$iIpdpIp:Dict", kwlist, &path, &name, &size,
            &create, &mode, &foreign, &timeout, &evict, &stripes, &reserve))
        return NULL;
    if (create < SD_ATTACH || create > SD_OPEN_ANY) {
        PyErr_SetString(PyExc_ValueError,
                        "create must be 0 (attach), 1 (create) or 2 (either)");
        return NULL;
    }
    if (stripes > SD_MAX_PARTS || (stripes & (stripes - 1))) {
        PyErr_Format(
            PyExc_ValueError,
            "stripes must be 0 (automatic) or a power of two up to %u",
            (unsigned)SD_MAX_PARTS);
        return NULL;
    }
    int64_t timeout_ms;
    if (lock_timeout_arg(timeout, &timeout_ms) < 0)
        return NULL;
    Py_ssize_t plen;
    const char *cpath = PyUnicode_AsUTF8AndSize(path, &plen);
    if (!cpath)
        return NULL;
    if (strlen(cpath) != (size_t)plen) {
        PyErr_SetString(PyExc_ValueError, "path holds a NUL character");
        return NULL;
    }
    sd_open_opts o = {
        .size = size,
        .mode = mode & 07777,
        .create = create,
        .reserve = reserve,
        .allow_foreign_owner = foreign,
        .evict = evict,
        .nparts = stripes,
        .lock_timeout_ms = timeout_ms,
    };
    if (create && (size < SD_MIN_SIZE || size > SD_MAX_SIZE)) {
        PyErr_Format(
            PyExc_ValueError, "size must be between %llu and %llu bytes",
            (unsigned long long)SD_MIN_SIZE, (unsigned long long)SD_MAX_SIZE);
        return NULL;
    }
    DictObject *self = (DictObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    sd_handle *h = NULL;
    sd_status rc = sd_open(cpath, &o, &h);
    if (rc == SD_BADARG && create) {
        Py_DECREF(self);
        return PyErr_Format(PyExc_ValueError,
                            "a dict of %llu bytes can't have %u stripes "
                            "(each needs room for its own heap)",
                            size, stripes);
    }
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, path);
        Py_DECREF(self);
        return NULL;
    }
    sd_set_block_hooks(h, gil_release, gil_acquire);
    sd_set_interrupt_hook(h, gil_interrupted);
    self->h = h;
    self->lock_timeout = timeout;
    self->name = Py_NewRef(name);
    self->path = Py_NewRef(path);
    return (PyObject *)self;
}

static void Dict_dealloc(DictObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->h)
        really_close(self);
    near_clear(self);
    Py_CLEAR(self->name);
    Py_CLEAR(self->path);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Run a core call that copies a value out, growing the buffer while it
 * says SD_TOOBIG. The caller frees *heap. */
typedef sd_status (*fetch_fn)(sd_handle *h, const char *k, size_t klen,
                              sd_value_out *out, void *arg);

static sd_status fetch(DictObject *self, const char *k, size_t klen,
                       fetch_fn fn, void *arg, sd_value_out *out, char *sbuf,
                       size_t scap, char **heap, sd_span *sp)
{
    sd_span own = SD_SPAN_INIT;
    *heap = NULL;
    out->buf = sbuf;
    out->cap = scap;
    out->waited_ns = 0;
    call_begin(self, sp);
    sd_status rc = fn(self->h, k, klen, out, arg);
    while (rc == SD_TOOBIG) {
        call_end(self, sp);
        if (!sp) { /* the retries share what is left of one timeout */
            sd_span_charge(&own, out->waited_ns);
            sp = &own;
        }
        PyMem_Free(*heap);
        *heap = PyMem_Malloc(out->len ? out->len : 1);
        if (!*heap) {
            PyErr_NoMemory();
            return SD_STATUS_COUNT; /* an error is set */
        }
        if (!self->h || self->closing) {
            closed_error();
            return SD_STATUS_COUNT;
        }
        out->buf = *heap;
        out->cap = out->len;
        call_begin(self, sp);
        rc = fn(self->h, k, klen, out, arg);
    }
    call_end(self, sp);
    return rc;
}

static sd_status fetch_get(sd_handle *h, const char *k, size_t n,
                           sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_get(h, k, n, out);
}

static sd_status fetch_stale(sd_handle *h, const char *k, size_t n,
                             sd_value_out *out, void *arg)
{
    return sd_get_stale(h, k, n, out, arg);
}

static sd_status fetch_pop(sd_handle *h, const char *k, size_t n,
                           sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_pop(h, k, n, out);
}

static sd_status fetch_setdefault(sd_handle *h, const char *k, size_t n,
                                  sd_value_out *out, void *arg)
{
    return sd_setdefault(h, k, n, arg, out);
}

static sd_status fetch_lpop(sd_handle *h, const char *k, size_t n,
                            sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_list_pop(h, k, n, 1, out);
}

static sd_status fetch_rpop(sd_handle *h, const char *k, size_t n,
                            sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_list_pop(h, k, n, 0, out);
}

/* The exception for a read of key with fn that failed with rc. */
static PyObject *fetch_error(DictObject *self, PyObject *key, fetch_fn fn,
                             sd_status rc)
{
    if (rc == SD_WRONGTYPE)
        return PyErr_Format(PyExc_TypeError,
                            fn == fetch_lpop || fn == fetch_rpop
                                ? "%R does not hold a list"
                                : "%R holds a list: use the list methods",
                            key);
    if (rc == SD_STATUS_COUNT)
        return NULL; /* already raised */
    return raise_status((PyObject *)self, rc, key);
}

/* The common shape: look the key up with fn; on SD_NOTFOUND return
 * `missing` (a new reference) or raise KeyError when it is NULL. `sp` is
 * the span of the Python call, or NULL if this is the whole call. */
static PyObject *fetch_obj(DictObject *self, PyObject *key, fetch_fn fn,
                           void *arg, PyObject *missing, sd_span *sp)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    if (!self->h || self->closing)
        return closed_error();
    char sbuf[STACK_BUF], *heap;
    sd_value_out out;
    sd_status rc = fetch(self, k, (size_t)klen, fn, arg, &out, sbuf,
                         sizeof sbuf, &heap, sp);
    PyObject *res;
    if (rc == SD_OK)
        res = value_obj((PyObject *)self, &out);
    else if (rc == SD_NOTFOUND && missing)
        res = Py_NewRef(missing);
    else
        res = fetch_error(self, key, fn, rc);
    PyMem_Free(heap);
    return res;
}

/* get(key, default=None): fetch_obj's work, inlined for the hot path. */
/* A str or bytes value too big for the stack buffer (`out` says what the
 * last read found): read it straight into the object that will hold it,
 * one copy instead of two and no scratch buffer. If its type or size moved
 * meanwhile, the general way takes over. */
static PyObject *read_big(DictObject *self, PyObject *key, const char *k,
                          Py_ssize_t klen, sd_value_out out, sd_span *sp)
{
    for (int tries = 0; tries < 3; tries++) {
        int str = out.type == SD_T_STR;
        if (!(out.type == SD_T_BYTES || (str && out.ascii)))
            break;
        Py_ssize_t len = (Py_ssize_t)out.len;
        PyObject *obj = str ? PyUnicode_New(len, 127)
                            : PyBytes_FromStringAndSize(NULL, len);
        if (!obj)
            return NULL;
        void *buf = str ? PyUnicode_DATA(obj) : PyBytes_AS_STRING(obj);
        sd_value_out got = {.buf = buf, .cap = (size_t)len};
        if (!self->h || self->closing) {
            Py_DECREF(obj);
            return closed_error();
        }
        call_begin(self, sp);
        sd_status rc = sd_get(self->h, k, (size_t)klen, &got);
        call_end(self, sp);
        if (rc == SD_OK && got.type == out.type && got.len == (size_t)len &&
            (!str || (got.ascii && is_ascii(buf, (size_t)len))))
            return obj;
        Py_DECREF(obj);
        if (rc == SD_NOTFOUND)
            return Py_NewRef(Py_Ellipsis);
        if (rc != SD_OK && rc != SD_TOOBIG)
            return fetch_error(self, key, fetch_get, rc); /* no retry */
        if (rc != SD_TOOBIG)
            break;
        out = got; /* it grew: try again at its new size */
    }
    return fetch_obj(self, key, fetch_get, NULL, Py_Ellipsis, sp);
}

/* key's value as a new reference; Py_Ellipsis (never a stored value) if it
 * has none; NULL with an exception on an error. With `snap` (the stripes'
 * sequence values of a get_many), only what was read under those values
 * counts: anything else sets *stale and returns NULL with no exception.
 * `sp` is the span of the Python call, or NULL if this is the whole call.
 * A wait for the lock that timed out or was interrupted is never tried
 * again. */
static PyObject *lookup(DictObject *self, PyObject *key, const uint64_t *snap,
                        int *stale, sd_span *sp)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    if (!self->h || self->closing)
        return closed_error();
    if (self->near && PyUnicode_CheckExact(key)) {
        Py_hash_t ph;
        struct near_slot *ns = near_slot_of(self, key, &ph);
        if (ns && ns->ph == ph && ns->key && same_str(ns->key, key) &&
            (!snap || snap[ns->part] == ns->seq) &&
            sd_still_current(self->h, ns->part, ns->hash, ns->seq))
            return Py_NewRef(ns->value);
    }
    char sbuf[STACK_BUF];
    sd_value_out out = {.buf = sbuf, .cap = sizeof sbuf};
    call_begin(self, sp);
    sd_status rc = sd_get(self->h, k, (size_t)klen, &out);
    call_end(self, sp);
    if (rc == SD_TIMEDOUT || rc == SD_INTERRUPTED)
        return raise_status((PyObject *)self, rc, key);
    if (snap && (!(rc == SD_OK || rc == SD_NOTFOUND) || !out.seq ||
                 out.part >= SNAP_PARTS || out.seq != snap[out.part])) {
        /* 1: changed meanwhile, or read under the lock: try again. 2: big,
         * a list, or an error: leave it to the locked way. */
        *stale = rc == SD_OK || rc == SD_NOTFOUND ? 1 : 2;
        return NULL;
    }
    if (SD_LIKELY_OK(rc)) {
        PyObject *res = value_obj((PyObject *)self, &out);
        if (res)
            near_keep(self, key, res, &out);
        return res;
    }
    if (rc == SD_NOTFOUND)
        return Py_NewRef(Py_Ellipsis);
    if (rc == SD_TOOBIG) {
        sd_span own = SD_SPAN_INIT; /* for the retries */
        if (!sp) {
            sd_span_charge(&own, out.waited_ns);
            sp = &own;
        }
        return read_big(self, key, k, klen, out, sp);
    }
    return fetch_error(self, key, fetch_get, rc);
}

static PyObject *do_get(DictObject *self, PyObject *key, PyObject *dflt,
                        int raise_missing)
{
    PyObject *res = lookup(self, key, NULL, NULL, NULL);
    if (res != Py_Ellipsis)
        return res;
    Py_DECREF(res);
    if (!raise_missing)
        return Py_NewRef(dflt);
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static PyObject *Dict_get(DictObject *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && nargs == 1)
        return do_get(self, args[0], Py_None, 0);
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (parse_args("get", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    return do_get(self, a[0], a[1] ? a[1] : Py_None, 0);
}

static PyObject *Dict_subscript(DictObject *self, PyObject *key)
{
    return do_get(self, key, NULL, 1);
}

/* Store with sd_set_ex. Returns the status (after raising for errors other
 * than SD_EXISTS and SD_NOTFOUND, which add/replace report as False), or
 * -1 if an argument was bad. */
static int do_set(DictObject *self, PyObject *key, PyObject *value,
                  PyObject *exptime, unsigned flags, uint64_t *evicted)
{
    const char *k;
    Py_ssize_t klen;
    sd_value_in v;
    int64_t ttl;
    if (key_arg(key, &k, &klen) < 0 ||
        value_arg((PyObject *)self, value, &v) < 0 ||
        ttl_arg(exptime, &ttl) < 0)
        return -1;
    if (!self->h || self->closing) {
        closed_error();
        return -1;
    }
    self->busy++;
    sd_status rc =
        sd_set_ex(self->h, k, (size_t)klen, &v, ttl, flags, evicted);
    leave(self);
    if (rc == SD_OK || rc == SD_EXISTS || rc == SD_NOTFOUND)
        return (int)rc;
    uint64_t item = ((uint64_t)klen + 7) / 8 * 8 + (v.len + 7) / 8 * 8;
    if (rc == SD_NOMEM && self->h && item > sd_max_item(self->h)) {
        module_state *st = state_of((PyObject *)self);
        if (st)
            PyErr_Format(st->NoMemoryError,
                         "no memory: an item of %llu bytes can never fit; "
                         "the largest this dict holds is %llu bytes (one "
                         "stripe's heap: see new(..., stripes=))",
                         (unsigned long long)item,
                         (unsigned long long)sd_max_item(self->h));
        return -1;
    }
    raise_status((PyObject *)self, rc, key);
    return -1;
}

/* The shared parser of set, add, replace, safe_set, safe_add and
 * set_forcible: (key, value, exptime=0). */
static int set_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames, PyObject **a)
{
    static const char *const names[] = {"key", "value", "exptime"};
    if (!kwnames && (nargs == 2 || nargs == 3)) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = nargs == 3 ? args[2] : NULL;
        return 0;
    }
    return parse_args(fname, names, 3, 3, 2, args, nargs, kwnames, a);
}

static PyObject *Dict_set(DictObject *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    if (set_args("set", args, nargs, kwnames, a) < 0 ||
        do_set(self, a[0], a[1], a[2], SD_MODE_SET, NULL) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

#define SET_VARIANT(fn, pyname, flags)                                        \
    static PyObject *fn(DictObject *self, PyObject *const *args,              \
                        Py_ssize_t nargs, PyObject *kwnames)                  \
    {                                                                         \
        PyObject *a[3];                                                       \
        if (set_args(pyname, args, nargs, kwnames, a) < 0)                    \
            return NULL;                                                      \
        int r = do_set(self, a[0], a[1], a[2], (flags), NULL);                \
        return r < 0 ? NULL : PyBool_FromLong(r == SD_OK);                    \
    }

SET_VARIANT(Dict_add, "add", SD_MODE_ADD)
SET_VARIANT(Dict_replace, "replace", SD_MODE_REPLACE)
SET_VARIANT(Dict_safe_set, "safe_set", SD_MODE_SET | SD_NOEVICT)
SET_VARIANT(Dict_safe_add, "safe_add", SD_MODE_ADD | SD_NOEVICT)

static PyObject *Dict_set_forcible(DictObject *self, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    uint64_t evicted = 0;
    if (set_args("set_forcible", args, nargs, kwnames, a) < 0 ||
        do_set(self, a[0], a[1], a[2], SD_MODE_SET, &evicted) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(evicted);
}

/* delete(key) -> bool; del d[key] raises KeyError. */
static int do_delete(DictObject *self, PyObject *key, int raise_missing)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return -1;
    if (!self->h || self->closing) {
        closed_error();
        return -1;
    }
    self->busy++;
    sd_status rc = sd_delete(self->h, k, (size_t)klen);
    leave(self);
    if (rc == SD_OK)
        return 1;
    if (rc == SD_NOTFOUND && !raise_missing)
        return 0;
    raise_status((PyObject *)self, rc, key);
    return -1;
}

static PyObject *Dict_delete(DictObject *self, PyObject *key)
{
    int r = do_delete(self, key, 0);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static int Dict_ass_subscript(DictObject *self, PyObject *key, PyObject *value)
{
    if (value)
        return do_set(self, key, value, NULL, SD_MODE_SET, NULL) < 0 ? -1 : 0;
    return do_delete(self, key, 1) < 0 ? -1 : 0;
}

/* A number argument for incr: delta or init. */
static int number_arg(PyObject *o, const char *what, sd_value_in *v)
{
    memset(v, 0, sizeof *v);
    if (PyLong_Check(o) && !PyBool_Check(o))
        return value_arg(NULL, o, v);
    if (finite_number(o, what, &v->f) < 0)
        return -1;
    v->type = SD_T_FLOAT;
    return 0;
}

static PyObject *Dict_incr(DictObject *self, PyObject *const *args,
                           Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "exptime", "init",
                                        "init_ttl"};
    PyObject *a[5];
    if (parse_args("incr", names, 5, 3, 2, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    if (key_arg(a[0], &k, &klen) < 0)
        return NULL;
    sd_value_in d, init;
    if (number_arg(a[1], "delta", &d) < 0)
        return NULL;
    int ttl_mode = -1;
    int64_t ttl = 0, init_ttl = 0;
    if (a[2] && a[2] != Py_None) {
        if (ttl_arg(a[2], &ttl) < 0)
            return NULL;
        ttl_mode = 0;
    }
    bool has_init = a[3] && a[3] != Py_None;
    if (has_init && number_arg(a[3], "init", &init) < 0)
        return NULL;
    if (a[4] && a[4] != Py_None && ttl_arg(a[4], &init_ttl) < 0)
        return NULL;
    ENTER(self);
    sd_value_out out = {0};
    sd_status rc = sd_incr_init(self->h, k, (size_t)klen, &d, ttl_mode, ttl,
                                has_init ? &init : NULL, init_ttl, &out);
    leave(self);
    if (rc == SD_OK)
        return out.type == SD_T_INT ? PyLong_FromLongLong(out.i)
                                    : PyFloat_FromDouble(out.f);
    if (rc == SD_NOTNUM || rc == SD_WRONGTYPE) {
        PyErr_Format(PyExc_TypeError,
                     "incr: the value of %R is not an int or float", a[0]);
        return NULL;
    }
    if (rc == SD_OVERFLOW) {
        PyErr_Format(PyExc_OverflowError,
                     "incr: the result for %R does not fit in 64 bits", a[0]);
        return NULL;
    }
    return raise_status((PyObject *)self, rc, a[0]);
}

static PyObject *Dict_get_stale(DictObject *self, PyObject *key)
{
    int stale = 0;
    PyObject *v = fetch_obj(self, key, fetch_stale, &stale, NULL, NULL);
    if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NO)", v, stale ? Py_True : Py_False);
}

static PyObject *Dict_pop(DictObject *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (parse_args("pop", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    return fetch_obj(self, a[0], fetch_pop, NULL, a[1], NULL);
}

static PyObject *Dict_setdefault(DictObject *self, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (parse_args("setdefault", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    PyObject *dflt = a[1] ? a[1] : Py_None;
    sd_value_in v;
    if (value_arg((PyObject *)self, dflt, &v) < 0)
        return NULL;
    return fetch_obj(self, a[0], fetch_setdefault, &v, dflt, NULL);
}

static PyObject *Dict_cas(DictObject *self, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "expected", "new", "exptime"};
    PyObject *a[4];
    if (parse_args("cas", names, 4, 4, 3, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    sd_value_in expected, nv;
    int64_t ttl = 0;
    int ttl_mode = -1;
    if (key_arg(a[0], &k, &klen) < 0 ||
        value_arg((PyObject *)self, a[1], &expected) < 0 ||
        value_arg((PyObject *)self, a[2], &nv) < 0)
        return NULL;
    if (a[3] && a[3] != Py_None) {
        if (ttl_arg(a[3], &ttl) < 0)
            return NULL;
        ttl_mode = 0;
    }
    ENTER(self);
    sd_status rc =
        sd_cas(self->h, k, (size_t)klen, &expected, &nv, ttl_mode, ttl);
    leave(self);
    if (rc == SD_OK)
        Py_RETURN_TRUE;
    if (rc == SD_NOTFOUND || rc == SD_EXISTS)
        Py_RETURN_FALSE;
    if (rc == SD_WRONGTYPE)
        return PyErr_Format(PyExc_TypeError,
                            "%R holds a list: use the list methods", a[0]);
    return raise_status((PyObject *)self, rc, a[0]);
}

static PyObject *push(DictObject *self, PyObject *const *args,
                      Py_ssize_t nargs, int left)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)",
                     left ? "lpush" : "rpush", nargs);
        return NULL;
    }
    const char *k;
    Py_ssize_t klen;
    sd_value_in v;
    if (key_arg(args[0], &k, &klen) < 0 ||
        value_arg((PyObject *)self, args[1], &v) < 0)
        return NULL;
    ENTER(self);
    uint64_t len = 0;
    sd_status rc = sd_push(self->h, k, (size_t)klen, left, &v, &len);
    leave(self);
    if (rc == SD_OK)
        return PyLong_FromUnsignedLongLong(len);
    if (rc == SD_WRONGTYPE)
        return PyErr_Format(PyExc_TypeError, "%R does not hold a list",
                            args[0]);
    return raise_status((PyObject *)self, rc, args[0]);
}

static PyObject *Dict_lpush(DictObject *self, PyObject *const *args,
                            Py_ssize_t nargs)
{
    return push(self, args, nargs, 1);
}

static PyObject *Dict_rpush(DictObject *self, PyObject *const *args,
                            Py_ssize_t nargs)
{
    return push(self, args, nargs, 0);
}

static PyObject *Dict_lpop(DictObject *self, PyObject *key)
{
    return fetch_obj(self, key, fetch_lpop, NULL, Py_None, NULL);
}

static PyObject *Dict_rpop(DictObject *self, PyObject *key)
{
    return fetch_obj(self, key, fetch_rpop, NULL, Py_None, NULL);
}

static PyObject *Dict_llen(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    ENTER(self);
    uint64_t len = 0;
    sd_status rc = sd_llen(self->h, k, (size_t)klen, &len);
    leave(self);
    if (rc == SD_OK || rc == SD_NOTFOUND)
        return PyLong_FromUnsignedLongLong(len);
    if (rc == SD_WRONGTYPE)
        return PyErr_Format(PyExc_TypeError, "%R does not hold a list", key);
    return raise_status((PyObject *)self, rc, key);
}

/* The value of one record of sd_get_many's format (also sd_list_items'). */
static PyObject *record_value(PyObject *self, const unsigned char *rec,
                              const unsigned char *body)
{
    sd_value_out o = {.type = rec[0], .ascii = rec[1], .tag = rec[2]};
    uint32_t len;
    memcpy(&len, rec + 4, 4);
    o.len = len;
    o.buf = (void *)body;
    if (o.type == SD_T_INT)
        memcpy(&o.i, body, 8);
    else if (o.type == SD_T_FLOAT)
        memcpy(&o.f, body, 8);
    return value_obj(self, &o);
}

/* The bytes one such record takes, header and padded body. */
static size_t record_size(const unsigned char *rec)
{
    uint32_t len;
    memcpy(&len, rec + 4, 4);
    return 8 + (rec[0] == SD_T_STR || rec[0] == SD_T_BYTES
                    ? ((size_t)len + 7) / 8 * 8
                : rec[0] == SD_T_INT || rec[0] == SD_T_FLOAT ? 8
                                                             : 0);
}

static PyObject *Dict_lrange(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    ENTER(self);
    sd_span span = SD_SPAN_INIT; /* one timeout for the retries too */
    size_t cap = 4096, used = 0;
    uint64_t count = 0;
    unsigned char *buf = PyMem_Malloc(cap);
    sd_status rc = SD_TOOBIG;
    while (buf && rc == SD_TOOBIG) {
        sd_span_enter(self->h, &span);
        rc = sd_list_items(self->h, k, (size_t)klen, buf, cap, &used, &count);
        sd_span_leave(&span);
        if (rc == SD_TOOBIG) {
            unsigned char *bigger = PyMem_Realloc(buf, used);
            if (!bigger)
                PyMem_Free(buf);
            buf = bigger;
            cap = used;
        }
    }
    leave(self);
    PyObject *res = NULL;
    if (!buf) {
        PyErr_NoMemory();
    } else if (rc == SD_NOTFOUND) {
        res = PyList_New(0);
    } else if (rc == SD_WRONGTYPE) {
        PyErr_Format(PyExc_TypeError, "%R does not hold a list", key);
    } else if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, key);
    } else if ((res = PyList_New((Py_ssize_t)count))) {
        size_t pos = 0;
        for (uint64_t i = 0; i < count; i++) {
            const unsigned char *rec = buf + pos;
            pos += record_size(rec);
            PyObject *v = record_value((PyObject *)self, rec, rec + 8);
            if (!v) {
                Py_CLEAR(res);
                break;
            }
            PyList_SET_ITEM(res, (Py_ssize_t)i, v);
        }
    }
    PyMem_Free(buf);
    return res;
}

/* ---- batches ---- */

/* Keys of an iterable, as UTF-8 arrays that borrow from `*seq`. */
typedef struct key_batch {
    PyObject *seq; /* owned: a list or tuple holding the keys */
    Py_ssize_t n;
    const char **keys;
    size_t *klens;
} key_batch;

static void batch_free(key_batch *b)
{
    Py_CLEAR(b->seq);
    PyMem_Free(b->keys);
    PyMem_Free(b->klens);
    b->keys = NULL;
    b->klens = NULL;
}

static int batch_keys(PyObject *iterable, key_batch *b)
{
    memset(b, 0, sizeof *b);
    if (PyUnicode_Check(iterable)) {
        PyErr_SetString(PyExc_TypeError,
                        "expected an iterable of keys, not one str");
        return -1;
    }
    b->seq = PySequence_Fast(iterable, "expected an iterable of keys");
    if (!b->seq)
        return -1;
    b->n = PySequence_Fast_GET_SIZE(b->seq);
    b->keys = PyMem_Calloc((size_t)b->n + 1, sizeof *b->keys);
    b->klens = PyMem_Calloc((size_t)b->n + 1, sizeof *b->klens);
    if (!b->keys || !b->klens) {
        batch_free(b);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(b->seq);
    for (Py_ssize_t i = 0; i < b->n; i++) {
        Py_ssize_t len;
        if (key_arg(items[i], &b->keys[i], &len) < 0) {
            batch_free(b);
            return -1;
        }
        b->klens[i] = (size_t)len;
    }
    return 0;
}

/* get_many under every stripe's lock: the way when readers keep meeting
 * writers, or a value needs more than a plain lock-free get. */
static PyObject *get_many_locked(DictObject *self, key_batch *bp, sd_span *sp)
{
    key_batch b = *bp;
    if (!self->h || self->closing)
        return closed_error();
    size_t cap = 4096, need = 0;
    unsigned char *buf = PyMem_Malloc(cap);
    PyObject *res = NULL;
    sd_status rc = SD_TOOBIG;
    while (buf && rc == SD_TOOBIG) {
        if (!self->h || self->closing) {
            PyMem_Free(buf);
            return closed_error();
        }
        call_begin(self, sp);
        rc = sd_get_many(self->h, (size_t)b.n, b.keys, b.klens, buf, cap,
                         &need);
        call_end(self, sp);
        if (rc == SD_TOOBIG) {
            PyMem_Free(buf);
            cap = need;
            buf = PyMem_Malloc(cap);
        }
    }
    if (!buf) {
        PyErr_NoMemory();
    } else if (rc == SD_WRONGTYPE) {
        PyErr_SetString(PyExc_TypeError,
                        "get_many: one of the keys holds a list");
    } else if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, self->path);
    } else if ((res = PyDict_New())) {
        PyObject **items = PySequence_Fast_ITEMS(b.seq);
        size_t pos = 0;
        for (Py_ssize_t i = 0; i < b.n; i++) {
            const unsigned char *rec = buf + pos;
            pos += record_size(rec);
            if (rec[0] == 0)
                continue; /* missing */
            PyObject *v = record_value((PyObject *)self, rec, rec + 8);
            if (!v || PyDict_SetItem(res, items[i], v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(res);
                break;
            }
            Py_DECREF(v);
        }
    }
    PyMem_Free(buf);
    return res;
}

/* Read every key without a lock, as get() does, and keep the result only if
 * no stripe's sequence counter moved meanwhile: then all the values were
 * current at one moment, as under the locks, which is the way after a few
 * tries. */
static PyObject *Dict_get_many(DictObject *self, PyObject *keys)
{
    key_batch b;
    if (batch_keys(keys, &b) < 0) /* every key is checked before any read */
        return NULL;
    if (!self->h || self->closing) {
        batch_free(&b);
        return closed_error();
    }
    unsigned np = sd_nparts(self->h);
    uint64_t snap[SNAP_PARTS];
    sd_span span = SD_SPAN_INIT; /* the lookups and the locked way */
    PyObject **items = PySequence_Fast_ITEMS(b.seq);
    PyObject *res = NULL;
    for (int attempt = 0; np <= SNAP_PARTS && attempt < 3; attempt++) {
        int stale = 0;
        if (!self->h || self->closing) /* closed by a thread while we read */
            break;                     /* (get_many_locked says so) */
        for (unsigned p = 0; p < np; p++)
            stale |= (int)((snap[p] = sd_part_seq(self->h, p)) & 1);
        if (stale)
            continue; /* a writer is in */
        if (!(res = PyDict_New()))
            goto done;
        for (Py_ssize_t i = 0; i < b.n && !stale; i++) {
            PyObject *v = lookup(self, items[i], snap, &stale, &span);
            if (!v && !stale) {
                Py_CLEAR(res);
                goto done;
            }
            if (v && v != Py_Ellipsis && PyDict_SetItem(res, items[i], v) < 0)
                Py_CLEAR(res);
            Py_XDECREF(v);
            if (!res)
                goto done;
        }
        if (!self->h || self->closing) {
            Py_CLEAR(res);
            break;
        }
        for (unsigned p = 0; p < np && !stale; p++)
            stale = sd_part_seq(self->h, p) != snap[p];
        if (!stale)
            goto done;
        Py_CLEAR(res);
        if (stale == 2)
            break;
    }
    res = get_many_locked(self, &b, &span);
done:
    batch_free(&b);
    return res;
}

static PyObject *Dict_set_many(DictObject *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "exptime"};
    PyObject *a[2];
    if (parse_args("set_many", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    int64_t ttl;
    if (ttl_arg(a[1], &ttl) < 0)
        return NULL;
    if (!PyDict_Check(a[0]) && !PyObject_HasAttrString(a[0], "items")) {
        PyErr_SetString(PyExc_TypeError, "set_many expects a mapping");
        return NULL;
    }
    PyObject *items = PyMapping_Items(a[0]);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *keys = PyList_New(n);
    sd_value_in *vals = PyMem_Calloc((size_t)n + 1, sizeof *vals);
    key_batch b = {0};
    PyObject *res = NULL;
    if (!keys || !vals) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
            PyErr_SetString(PyExc_TypeError, "mapping items must be pairs");
            goto done;
        }
        PyList_SET_ITEM(keys, i, Py_NewRef(PyTuple_GET_ITEM(kv, 0)));
        if (value_arg((PyObject *)self, PyTuple_GET_ITEM(kv, 1), &vals[i]) < 0)
            goto done;
    }
    if (batch_keys(keys, &b) < 0)
        goto done;
    if (!self->h || self->closing) {
        closed_error();
        goto done;
    }
    size_t stored = 0;
    uint64_t evicted = 0;
    self->busy++;
    sd_status rc = sd_set_many(self->h, (size_t)n, b.keys, b.klens, vals, ttl,
                               &stored, &evicted);
    leave(self);
    if (rc == SD_OK) {
        res = Py_NewRef(Py_None);
    } else if (rc == SD_NOMEM) {
        module_state *st = state_of((PyObject *)self);
        PyObject *exc =
            st ? PyObject_CallFunction(st->NoMemoryError, "s",
                                       "no memory: the dict is full")
               : NULL;
        PyObject *num = PyLong_FromSize_t(stored);
        if (exc && num && PyObject_SetAttrString(exc, "stored", num) == 0)
            PyErr_SetObject(st->NoMemoryError, exc);
        Py_XDECREF(exc);
        Py_XDECREF(num);
    } else {
        raise_status((PyObject *)self, rc, self->path);
    }
done:
    batch_free(&b);
    PyMem_Free(vals);
    Py_XDECREF(keys);
    Py_DECREF(items);
    return res;
}

static PyObject *Dict_delete_many(DictObject *self, PyObject *keys)
{
    key_batch b;
    if (batch_keys(keys, &b) < 0)
        return NULL;
    if (!self->h || self->closing) {
        batch_free(&b);
        return closed_error();
    }
    size_t deleted = 0;
    self->busy++;
    sd_status rc =
        sd_delete_many(self->h, (size_t)b.n, b.keys, b.klens, &deleted);
    leave(self);
    batch_free(&b);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, self->path);
    return PyLong_FromSize_t(deleted);
}

static PyObject *Dict_flush_expired(DictObject *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"max_count"};
    PyObject *a[1];
    if (parse_args("flush_expired", names, 1, 1, 0, args, nargs, kwnames, a) <
        0)
        return NULL;
    unsigned long long max = 0;
    if (a[0]) {
        if (!PyLong_Check(a[0]) || PyBool_Check(a[0]))
            return PyErr_Format(PyExc_TypeError, "max_count must be an int");
        long long m = PyLong_AsLongLong(a[0]);
        if (m == -1 && PyErr_Occurred())
            return NULL;
        if (m < 0)
            return PyErr_Format(PyExc_ValueError, "max_count must be >= 0");
        max = (unsigned long long)m;
    }
    ENTER(self);
    uint64_t freed = 0;
    sd_status rc = sd_flush_expired(self->h, max, &freed);
    leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, self->path);
    return PyLong_FromUnsignedLongLong(freed);
}

static PyObject *Dict_capacity(DictObject *self, PyObject *Py_UNUSED(arg))
{
    if (!self->h || self->closing)
        return closed_error();
    uint64_t cap, free_bytes;
    sd_space(self->h, &cap, &free_bytes);
    return PyLong_FromUnsignedLongLong(cap);
}

static PyObject *Dict_free_space(DictObject *self, PyObject *Py_UNUSED(arg))
{
    if (!self->h || self->closing)
        return closed_error();
    uint64_t cap, free_bytes;
    sd_space(self->h, &cap, &free_bytes);
    return PyLong_FromUnsignedLongLong(free_bytes);
}

static PyObject *Dict_ttl(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    ENTER(self);
    int64_t ns = 0;
    sd_status rc = sd_ttl(self->h, k, (size_t)klen, &ns);
    leave(self);
    if (rc == SD_NOTFOUND)
        Py_RETURN_NONE;
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, key);
    return PyFloat_FromDouble((double)ns / 1e9);
}

static PyObject *Dict_expire(DictObject *self, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "exptime"};
    PyObject *a[2];
    if (parse_args("expire", names, 2, 2, 2, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    int64_t ttl;
    if (key_arg(a[0], &k, &klen) < 0 || ttl_arg(a[1], &ttl) < 0)
        return NULL;
    ENTER(self);
    sd_status rc = sd_expire(self->h, k, (size_t)klen, ttl);
    leave(self);
    if (rc == SD_OK)
        Py_RETURN_TRUE;
    if (rc == SD_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_status((PyObject *)self, rc, a[0]);
}

static PyObject *Dict_flush_all(DictObject *self, PyObject *Py_UNUSED(arg))
{
    ENTER(self);
    sd_status rc = sd_flush_all(self->h);
    leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, self->path);
    Py_RETURN_NONE;
}

/* Append the [u32 len][bytes] records in buf to list, up to max (0: all). */
static int decode_keys(PyObject *list, const unsigned char *buf, size_t used,
                       Py_ssize_t max)
{
    size_t pos = 0;
    while (pos + 4 <= used && (max == 0 || PyList_GET_SIZE(list) < max)) {
        uint32_t n;
        memcpy(&n, buf + pos, 4);
        if (n > used - pos - 4) {
            PyErr_SetString(PyExc_UnicodeDecodeError, "truncated key record");
            return -1;
        }
        PyObject *s =
            PyUnicode_DecodeUTF8((const char *)buf + pos + 4, n, NULL);
        if (!s)
            return -1; /* the caller turns a decode error into CorruptError */
        int r = PyList_Append(list, s);
        Py_DECREF(s);
        if (r < 0)
            return -1;
        pos += 4 + n;
    }
    return 0;
}

static PyObject *keys_list(DictObject *self, Py_ssize_t max)
{
    ENTER(self);
    sd_span span = SD_SPAN_INIT; /* for the waits of all the chunks */
    PyObject *list = PyList_New(0);
    size_t cap = 64 * 1024;
    unsigned char *buf = PyMem_Malloc(cap);
    if (!list || !buf)
        goto fail_nomem;
    uint64_t cursor = 0;
    for (;;) {
        size_t used = 0, need = 0;
        sd_span_enter(self->h, &span);
        sd_status rc = sd_keys_chunk(self->h, &cursor, buf, cap, &used, &need);
        sd_span_leave(&span);
        if (rc == SD_TOOBIG) {
            unsigned char *bigger = PyMem_Realloc(buf, need);
            if (!bigger)
                goto fail_nomem;
            buf = bigger;
            cap = need;
            continue; /* the cursor points at that bucket: redo it */
        }
        if (rc != SD_OK) {
            raise_status((PyObject *)self, rc, self->path);
            goto fail;
        }
        if (decode_keys(list, buf, used, max) < 0) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                raise_status((PyObject *)self, SD_CORRUPT, self->path);
            }
            goto fail;
        }
        if (cursor == 0 || (max != 0 && PyList_GET_SIZE(list) >= max))
            break;
    }
    PyMem_Free(buf);
    leave(self);
    return list;
fail_nomem:
    PyErr_NoMemory();
fail:
    PyMem_Free(buf);
    Py_XDECREF(list);
    leave(self);
    return NULL;
}

static PyObject *Dict_get_keys(DictObject *self, PyObject *const *args,
                               Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"max_count"};
    PyObject *a[1];
    if (parse_args("get_keys", names, 1, 1, 0, args, nargs, kwnames, a) < 0)
        return NULL;
    Py_ssize_t max = 0;
    if (a[0]) {
        if (!PyLong_Check(a[0]) || PyBool_Check(a[0])) {
            PyErr_SetString(PyExc_TypeError, "max_count must be an int");
            return NULL;
        }
        max = PyLong_AsSsize_t(a[0]);
        if (max == -1 && PyErr_Occurred())
            return NULL;
        if (max < 0) {
            PyErr_SetString(PyExc_ValueError, "max_count must be >= 0");
            return NULL;
        }
    }
    return keys_list(self, max);
}

static PyObject *Dict_iter(DictObject *self)
{
    PyObject *keys = keys_list(self, 0);
    if (!keys)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static Py_ssize_t Dict_len(DictObject *self)
{
    if (!self->h || self->closing) {
        closed_error();
        return -1;
    }
    self->busy++;
    uint64_t n = 0;
    sd_status rc = sd_count(self->h, &n);
    leave(self);
    if (rc == SD_OK && n > (uint64_t)PY_SSIZE_T_MAX)
        rc = SD_CORRUPT; /* a damaged count */
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, self->path);
        return -1;
    }
    return (Py_ssize_t)n;
}

static int Dict_contains(DictObject *self, PyObject *key)
{
    if (!PyUnicode_Check(key))
        return 0;
    const char *k;
    Py_ssize_t klen;
    k = PyUnicode_AsUTF8AndSize(key, &klen);
    if (!k)
        return -1;
    if (klen == 0 || (size_t)klen > SD_MAX_KEY)
        return 0;
    if (!self->h || self->closing) {
        closed_error();
        return -1;
    }
    self->busy++;
    int64_t ns;
    sd_status rc = sd_ttl(self->h, k, (size_t)klen, &ns);
    leave(self);
    if (rc == SD_OK)
        return 1;
    if (rc == SD_NOTFOUND)
        return 0;
    raise_status((PyObject *)self, rc, key);
    return -1;
}

static PyObject *Dict_close(DictObject *self, PyObject *Py_UNUSED(arg))
{
    if (self->h) {
        if (self->busy)
            self->closing = 1; /* the last call in flight closes it */
        else
            really_close(self);
    }
    Py_RETURN_NONE;
}

static PyObject *Dict_verify(DictObject *self, PyObject *Py_UNUSED(arg))
{
    ENTER(self);
    size_t cap = 64 * 1024, problems = 0;
    char *buf = PyMem_Malloc(cap);
    if (!buf) {
        leave(self);
        return PyErr_NoMemory();
    }
    sd_status rc = sd_verify(self->h, buf, cap, &problems);
    leave(self);
    PyObject *res = NULL;
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, self->path);
    } else if (problems == 0) {
        res = PyList_New(0);
    } else {
        PyObject *text =
            PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf), "replace");
        if (text) {
            res = PyUnicode_Splitlines(text, 0);
            Py_DECREF(text);
        }
        if (res && (size_t)PyList_GET_SIZE(res) < problems) {
            PyObject *more =
                PyUnicode_FromFormat("... and %zu more problems",
                                     problems - (size_t)PyList_GET_SIZE(res));
            if (!more || PyList_Append(res, more) < 0)
                Py_CLEAR(res);
            Py_XDECREF(more);
        }
    }
    PyMem_Free(buf);
    return res;
}

static PyObject *Dict_stats(DictObject *self, PyObject *Py_UNUSED(arg))
{
    ENTER(self);
    sd_stats st;
    sd_status rc = sd_get_stats(self->h, &st);
    leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, self->path);
#define U(x) ((unsigned long long)(x))
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsOsIsKsO}", "entries", U(st.count),
        "expiring", U(st.n_expiring), "bytes_used", U(st.used_bytes),
        "bytes_free", U(st.heap_size - st.used_bytes), "capacity",
        U(st.heap_size), "hits", U(st.hits), "misses", U(st.misses), "sets",
        U(st.sets), "evictions", U(st.evictions), "expirations",
        U(st.expirations), "lock_waits", U(st.lock_waits), "recoveries",
        U(st.recoveries), "pending_free", U(st.pending_free), "buckets",
        U(st.nbuckets), "evict", st.evict ? Py_True : Py_False, "stripes",
        st.nparts, "bytes_reserved", U(st.reserved_bytes), "reserved",
        st.reserved ? Py_True : Py_False);
#undef U
}

static PyObject *Dict_get_name(DictObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->name);
}

static PyObject *Dict_get_path(DictObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->path);
}

static PyObject *Dict_get_size(DictObject *self, void *Py_UNUSED(c))
{
    if (!self->h)
        return closed_error();
    return PyLong_FromUnsignedLongLong(sd_file_size(self->h));
}

static PyObject *Dict_get_closed(DictObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(!self->h || self->closing);
}

static PyObject *Dict_get_owner(DictObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->h && sd_is_owner(self->h));
}

static PyObject *Dict_get_created(DictObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->h && sd_created(self->h));
}

static PyObject *Dict_get_lock_timeout(DictObject *self, void *Py_UNUSED(c))
{
    return PyFloat_FromDouble(self->lock_timeout);
}

static PyGetSetDef Dict_getset[] = {
    {"name", (getter)Dict_get_name, NULL, "The dict's name.", NULL},
    {"path", (getter)Dict_get_path, NULL, "The file that holds the dict.",
     NULL},
    {"size", (getter)Dict_get_size, NULL, "The file's size in bytes.", NULL},
    {"closed", (getter)Dict_get_closed, NULL, "True after close().", NULL},
    {"owner", (getter)Dict_get_owner, NULL,
     "True for the handle that created the dict, in its own process: its "
     "close removes the file.",
     NULL},
    {"created", (getter)Dict_get_created, NULL,
     "True if this handle made the file (new(), or the open() call that "
     "found no dict), in any process.",
     NULL},
    {"lock_timeout", (getter)Dict_get_lock_timeout, NULL,
     "Seconds a call waits for the lock before LockTimeout.", NULL},
    {NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Dict_get, FASTKW,
     "get($self, /, key, default=None)\n--\n\n"
     "The value of key, or default when it is missing or expired.\n"
     "O(1) on average; takes no lock unless a writer is busy. A small value\n"
     "read again, with no write to its stripe in between, is the same\n"
     "object as before (one shared load, no copy)."},
    {"set", (PyCFunction)(void (*)(void))Dict_set, FASTKW,
     "set($self, /, key, value, exptime=0)\n--\n\n"
     "Store value under key; it expires after exptime seconds if > 0.\n"
     "Returns True. O(1) on average. Raises NoMemoryError when the dict is\n"
     "full (the old value stays), TypeError/OverflowError for values it\n"
     "can't store, ValueError for a NaN or infinite exptime."},
    {"add", (PyCFunction)(void (*)(void))Dict_add, FASTKW,
     "add($self, /, key, value, exptime=0)\n--\n\n"
     "Store value only if key is missing or expired; True if stored, False\n"
     "if the key exists. Atomic. O(1) on average."},
    {"replace", (PyCFunction)(void (*)(void))Dict_replace, FASTKW,
     "replace($self, /, key, value, exptime=0)\n--\n\n"
     "Store value only if key exists; True if stored, False if missing.\n"
     "O(1) on average."},
    {"safe_set", (PyCFunction)(void (*)(void))Dict_safe_set, FASTKW,
     "safe_set($self, /, key, value, exptime=0)\n--\n\n"
     "set() that never evicts live items: NoMemoryError instead."},
    {"safe_add", (PyCFunction)(void (*)(void))Dict_safe_add, FASTKW,
     "safe_add($self, /, key, value, exptime=0)\n--\n\n"
     "add() that never evicts live items: NoMemoryError instead."},
    {"set_forcible", (PyCFunction)(void (*)(void))Dict_set_forcible, FASTKW,
     "set_forcible($self, /, key, value, exptime=0)\n--\n\n"
     "set(), returning how many live items were evicted to make room (0\n"
     "unless the dict was made with evict=True and was full): ngx's\n"
     "'forcible' flag is set_forcible(...) > 0."},
    {"get_stale", (PyCFunction)Dict_get_stale, METH_O,
     "get_stale($self, key, /)\n--\n\n"
     "(value, is_stale), or None if missing: an expired value that has not\n"
     "been reclaimed yet comes back with is_stale True. O(1) on average."},
    {"pop", (PyCFunction)(void (*)(void))Dict_pop, FASTKW,
     "pop($self, /, key, default=<missing>)\n--\n\n"
     "Remove key and return its value, atomically; default (or KeyError)\n"
     "if missing. O(1) on average."},
    {"setdefault", (PyCFunction)(void (*)(void))Dict_setdefault, FASTKW,
     "setdefault($self, /, key, default=None)\n--\n\n"
     "The value of key; if missing, store default and return it, atomically.\n"
     "O(1) on average."},
    {"cas", (PyCFunction)(void (*)(void))Dict_cas, FASTKW,
     "cas($self, /, key, expected, new, exptime=None)\n--\n\n"
     "Compare-and-set: if key holds a value of the same type equal to\n"
     "expected, store new and return True; otherwise False. exptime None\n"
     "keeps the expiry. Atomic. O(1) on average plus the value sizes."},
    {"lpush", (PyCFunction)(void (*)(void))Dict_lpush, METH_FASTCALL,
     "lpush($self, key, value, /)\n--\n\n"
     "Put value at the head of the list at key (made if missing); return\n"
     "the new length. TypeError if key holds a scalar. O(1)."},
    {"rpush", (PyCFunction)(void (*)(void))Dict_rpush, METH_FASTCALL,
     "rpush($self, key, value, /)\n--\n\n"
     "Put value at the tail of the list at key; return the new length. O(1)."},
    {"lpop", (PyCFunction)Dict_lpop, METH_O,
     "lpop($self, key, /)\n--\n\n"
     "Remove and return the head of the list at key, or None. A list that\n"
     "becomes empty is removed. O(1)."},
    {"rpop", (PyCFunction)Dict_rpop, METH_O,
     "rpop($self, key, /)\n--\n\n"
     "Remove and return the tail of the list at key, or None. O(1)."},
    {"llen", (PyCFunction)Dict_llen, METH_O,
     "llen($self, key, /)\n--\n\n"
     "The length of the list at key (0 if missing). O(1)."},
    {"lrange", (PyCFunction)Dict_lrange, METH_O,
     "lrange($self, key, /)\n--\n\n"
     "Every item of the list at key, head first, as they were at one moment\n"
     "([] if missing); the list is left as it is. O(n) under the lock.\n"
     "TypeError if key holds a scalar."},
    {"get_many", (PyCFunction)Dict_get_many, METH_O,
     "get_many($self, keys, /)\n--\n\n"
     "A dict of the keys that exist, all as they were at one moment. Every\n"
     "key is checked first; then they are read without a lock, as get()\n"
     "reads, and read again under every stripe's lock if a writer came\n"
     "in meanwhile (or a value is over 4 KiB). O(len(keys))."},
    {"set_many", (PyCFunction)(void (*)(void))Dict_set_many, FASTKW,
     "set_many($self, /, mapping, exptime=0)\n--\n\n"
     "Store every item under one hold of the lock. Every input is checked\n"
     "first. If the dict runs out of room, NoMemoryError is raised and\n"
     "e.stored says how many items were kept: none for a batch of dozens\n"
     "of items, unless one only fitted in its own old place in a full dict\n"
     "(that commits what came before it). Each item is atomic, the batch\n"
     "is not: a reader or a crash may see some items stored and not yet\n"
     "the others. O(len(mapping))."},
    {"delete_many", (PyCFunction)Dict_delete_many, METH_O,
     "delete_many($self, keys, /)\n--\n\n"
     "Delete the keys under one hold of the lock; return how many existed.\n"
     "Each delete is atomic, the batch is not (see set_many). O(len(keys))."},
    {"flush_expired", (PyCFunction)(void (*)(void))Dict_flush_expired, FASTKW,
     "flush_expired($self, /, max_count=0)\n--\n\n"
     "Free up to max_count expired items (0: all); return how many. O(n),\n"
     "one slice of the table per hold of the lock."},
    {"capacity", (PyCFunction)Dict_capacity, METH_NOARGS,
     "capacity($self, /)\n--\n\n"
     "Bytes of heap for items (the file minus header and index). O(1)."},
    {"free_space", (PyCFunction)Dict_free_space, METH_NOARGS,
     "free_space($self, /)\n--\n\n"
     "Heap bytes not in use. Fragmentation may keep a value of this size\n"
     "from fitting. O(1), no lock."},
    {"delete", (PyCFunction)Dict_delete, METH_O,
     "delete($self, key, /)\n--\n\n"
     "Remove key. True if it existed. O(1) on average."},
    {"incr", (PyCFunction)(void (*)(void))Dict_incr, FASTKW,
     "incr($self, /, key, delta, exptime=None, *, init=None, "
     "init_ttl=None)\n--\n\n"
     "Add delta to the number at key and return the new value, atomically.\n"
     "int + int stays int; a float on either side gives a float. exptime\n"
     "None keeps the key's expiry, otherwise replaces it (<= 0 clears it).\n"
     "KeyError if missing, TypeError if not a number, OverflowError past\n"
     "64 bits (the value is unchanged). With init, a missing key starts\n"
     "at init (+ delta) with expiry init_ttl (or exptime), atomically, as\n"
     "ngx.shared.DICT's incr does. O(1) on average."},
    {"ttl", (PyCFunction)Dict_ttl, METH_O,
     "ttl($self, key, /)\n--\n\n"
     "Seconds until key expires (> 0), 0 if it never does, None if it is\n"
     "missing. O(1) on average."},
    {"expire", (PyCFunction)(void (*)(void))Dict_expire, FASTKW,
     "expire($self, /, key, exptime)\n--\n\n"
     "Set key to expire after exptime seconds; <= 0 clears its expiry.\n"
     "True on success, False if key is missing. O(1) on average."},
    {"flush_all", (PyCFunction)Dict_flush_all, METH_NOARGS,
     "flush_all($self, /)\n--\n\n"
     "Remove every item and give its memory back. O(size of the index)."},
    {"get_keys", (PyCFunction)(void (*)(void))Dict_get_keys, FASTKW,
     "get_keys($self, /, max_count=0)\n--\n\n"
     "A list of the live keys, at most max_count of them (0: all). O(n);\n"
     "the lock is held for one slice of the table at a time, so keys set\n"
     "or deleted meanwhile may or may not be listed."},
    {"close", (PyCFunction)Dict_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Unmap the dict. Idempotent. On the creating handle, in the creating\n"
     "process, also removes the file if its name still refers to it."},
    {"verify", (PyCFunction)Dict_verify, METH_NOARGS,
     "verify($self, /)\n--\n\n"
     "Check every structure of the dict; return a list of the problems\n"
     "found (empty when healthy). O(n) under the lock."},
    {"stats", (PyCFunction)Dict_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "Counters: entries, expiring, bytes_used, bytes_free, capacity, hits,\n"
     "misses, sets, evictions, expirations, lock_waits, recoveries (dead\n"
     "lock holders repaired), pending_free (list items not yet freed),\n"
     "buckets, evict, stripes, bytes_reserved (bytes of the file the\n"
     "filesystem backs) and reserved (made with reserve=True).\n"
     "O(stripes) plus the pending list items."},
    {NULL},
};

static PyMemberDef Dict_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(DictObject, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Dict_slots[] = {
    {Py_tp_new, Dict_new},
    {Py_tp_dealloc, Dict_dealloc},
    {Py_tp_methods, Dict_methods},
    {Py_tp_getset, Dict_getset},
    {Py_tp_members, Dict_members},
    {Py_tp_iter, Dict_iter},
    {Py_mp_subscript, Dict_subscript},
    {Py_mp_ass_subscript, Dict_ass_subscript},
    {Py_mp_length, Dict_len},
    {Py_sq_contains, Dict_contains},
    {Py_tp_doc,
     "Dict(path, name, size=0, *, create=0, mode=0o600, "
     "allow_foreign_owner=False, lock_timeout=" DEFAULT_LOCK_TIMEOUT_S
     ", evict=False, stripes=0, reserve=False)\n--\n\n"
     "A handle on a shared-memory dict. Use shmdict.new(), shmdict.get()\n"
     "and shmdict.open(). create: 0 attaches, 1 creates (the handle owns\n"
     "the file), 2 attaches or creates a dict no handle owns."},
    {0, NULL},
};

static PyType_Spec Dict_spec = {
    .name = "shmdict._core.Dict",
    .basicsize = sizeof(DictObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Dict_slots,
};

/* ---- module
 * ------------------------------------------------------------------- */

static PyObject *core_creator_alive(PyObject *Py_UNUSED(m), PyObject *arg)
{
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    int r = sd_creator_alive(PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    if (r < 0)
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
    return PyBool_FromLong(r);
}

static PyObject *arm_crash(PyObject *arg, int sig)
{
    int n =
        PyLong_AsLong(arg) > INT32_MAX ? INT32_MAX : (int)PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    sd_set_crash_signal(sig);
    return PyLong_FromLong(sd_set_crash_countdown(n < 0 ? 0 : n));
}

static PyObject *core_crash_after(PyObject *Py_UNUSED(m), PyObject *arg)
{
    return arm_crash(arg, SIGKILL);
}

static PyObject *core_stop_after(PyObject *Py_UNUSED(m), PyObject *arg)
{
    return arm_crash(arg, SIGSTOP);
}

static PyMethodDef core_methods[] = {
    {"_crash_after", core_crash_after, METH_O,
     "_crash_after(n, /)\n--\n\n"
     "Test hook: SIGKILL this process at the n-th step of a write from now\n"
     "(0 turns it off). Returns what was left of the previous countdown.\n"
     "Used by the crash tests."},
    {"_stop_after", core_stop_after, METH_O,
     "_stop_after(n, /)\n--\n\n"
     "Test hook: as _crash_after, but SIGSTOP: the process stops at that\n"
     "step, alive and holding the stripe's lock, until SIGCONT; then the\n"
     "write goes on. Used by the lock-wait tests."},
    {"creator_alive", core_creator_alive, METH_O,
     "creator_alive(path, /)\n--\n\n"
     "Whether the process that created the dict at path still runs."},
    {NULL},
};

static int add_u64(PyObject *m, const char *name, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o)
        return -1;
    int r = PyModule_AddObjectRef(m, name, o);
    Py_DECREF(o);
    return r;
}

static int core_exec(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    PyObject *errors = PyImport_ImportModule("shmdict.errors");
    if (!errors)
        return -1;
    st->Error = PyObject_GetAttrString(errors, "Error");
    st->NoMemoryError = PyObject_GetAttrString(errors, "NoMemoryError");
    st->CorruptError = PyObject_GetAttrString(errors, "CorruptError");
    st->LockTimeout = PyObject_GetAttrString(errors, "LockTimeout");
    Py_DECREF(errors);
    if (!st->Error || !st->NoMemoryError || !st->CorruptError ||
        !st->LockTimeout)
        return -1;
    PyObject *pickled = PyImport_ImportModule("shmdict._pickled");
    if (!pickled)
        return -1;
    st->PickledType =
        (PyTypeObject *)PyObject_GetAttrString(pickled, "Pickled");
    Py_DECREF(pickled);
    if (!st->PickledType)
        return -1;
    st->DictType =
        (PyTypeObject *)PyType_FromModuleAndSpec(m, &Dict_spec, NULL);
    if (!st->DictType || PyModule_AddType(m, st->DictType) < 0)
        return -1;
    if (PyModule_AddStringConstant(m, "SHM_DIR", SHM_DIR) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEY_BYTES", SD_MAX_KEY) < 0 ||
        add_u64(m, "MAX_SIZE", SD_MAX_SIZE) < 0 ||
        add_u64(m, "MIN_SIZE", SD_MIN_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_VERSION", SD_VERSION) < 0)
        return -1;
    PyObject *t = PyFloat_FromDouble(DEFAULT_LOCK_TIMEOUT);
    if (!t || PyModule_AddObjectRef(m, "DEFAULT_LOCK_TIMEOUT", t) < 0) {
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    return 0;
}

static int core_traverse(PyObject *m, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(m);
    Py_VISIT(st->DictType);
    Py_VISIT(st->PickledType);
    Py_VISIT(st->Error);
    Py_VISIT(st->NoMemoryError);
    Py_VISIT(st->CorruptError);
    Py_VISIT(st->LockTimeout);
    return 0;
}

static int core_clear(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    Py_CLEAR(st->DictType);
    Py_CLEAR(st->PickledType);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->NoMemoryError);
    Py_CLEAR(st->CorruptError);
    Py_CLEAR(st->LockTimeout);
    return 0;
}

static void core_free(void *m)
{
    core_clear((PyObject *)m);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmdict._core",
    .m_doc = "The C engine of shmdict (private; use the shmdict package).",
    .m_size = sizeof(module_state),
    .m_methods = core_methods,
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC PyInit__core(void);
PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
