/*
 * dict.c - the Dict type: its life cycle (new, close, dealloc), the GIL
 * hooks the core calls around a wait, the methods on the whole dict
 * (flush_all, flush_expired, get_keys, len, verify, stats, ...), the
 * properties, and the tables that make the type. The methods on keys are
 * in item.c, list.c and batch.c, each with its docstring.
 */
#include "binding.h"

#include <structmember.h>

/* ---- life cycle -------------------------------------------------------- */

PyObject *closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "operation on a closed shmdict");
    return NULL;
}

void really_close(DictObject *self)
{
    sd_handle *h = self->h;
    self->h = NULL;
    sd_close(h);
    near_clear(self);
}

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

/* Dict(path, name, size=0, *, create=0, ...): every argument is checked
 * here (convert.c), in this order: create, size, mode, path, the
 * filesystem's size, stripes, lock_timeout. */
static PyObject *Dict_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "path",         "name",       "size",
        "create",       "mode",       "allow_foreign_owner",
        "lock_timeout", "evict",      "stripes",
        "reserve",      "near_cache", NULL};
    PyObject *path, *name, *size_obj = NULL, *mode_obj = NULL;
    PyObject *timeout_obj = NULL;
    int create = 0, foreign = 0, evict = 0, reserve = 0;
    unsigned int stripes = 0;
    Py_ssize_t near = NEAR_DEFAULT_SLOTS;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "UU|O$iOpOpIpn:Dict", kwlist,
                                     &path, &name, &size_obj, &create,
                                     &mode_obj, &foreign, &timeout_obj, &evict,
                                     &stripes, &reserve, &near))
        return NULL;
    if (near < 0 || near > (Py_ssize_t)NEAR_MAX_SLOTS) {
        PyErr_Format(PyExc_ValueError,
                     "near_cache must be 0 (off) to %u slots",
                     (unsigned)NEAR_MAX_SLOTS);
        return NULL;
    }
    uint32_t near_n = 0;
    if (near) /* a power of two, rounding up */
        for (near_n = 1; near_n < (uint32_t)near; near_n <<= 1)
            ;
    if (create < SD_ATTACH || create > SD_OPEN_ANY) {
        PyErr_SetString(PyExc_ValueError,
                        "create must be 0 (attach), 1 (create) or 2 (either)");
        return NULL;
    }
    unsigned long long size;
    unsigned mode;
    if (size_arg(size_obj, create, &size) < 0 || mode_arg(mode_obj, &mode) < 0)
        return NULL;
    Py_ssize_t plen;
    const char *cpath = PyUnicode_AsUTF8AndSize(path, &plen);
    if (!cpath)
        return NULL;
    if (strlen(cpath) != (size_t)plen) {
        PyErr_SetString(PyExc_ValueError, "path holds a NUL character");
        return NULL;
    }
    if (create && fits_filesystem(type, cpath, size) < 0)
        return NULL;
    if (stripes > SD_MAX_PARTS || (stripes & (stripes - 1))) {
        PyErr_Format(
            PyExc_ValueError,
            "stripes must be 0 (automatic) or a power of two up to %u",
            (unsigned)SD_MAX_PARTS);
        return NULL;
    }
    double timeout;
    int64_t timeout_ms;
    if (lock_timeout_arg(timeout_obj, &timeout, &timeout_ms) < 0)
        return NULL;
    sd_open_opts o = {
        .size = size,
        .mode = mode,
        .create = create,
        .reserve = reserve,
        .allow_foreign_owner = foreign,
        .evict = evict,
        .nparts = stripes,
        .lock_timeout_ms = timeout_ms,
    };
    DictObject *self = (DictObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    sd_handle *h = NULL;
    sd_status rc = sd_open(cpath, &o, &h);
    if (rc != SD_OK) {
        err_ctx cx = {
            .op = create ? "create" : "attach",
            .obj = path,
            .size = size,
            .stripes = stripes,
        };
        raise_status_ctx((PyObject *)self, rc, &cx);
        Py_DECREF(self);
        return NULL;
    }
    sd_set_block_hooks(h, gil_release, gil_acquire);
    sd_set_interrupt_hook(h, gil_interrupted);
    self->h = h;
    self->lock_timeout = timeout;
    self->near_n = near_n;
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

static const char Dict_close_doc[] =
    "close($self, /)\n--\n\n"
    "Unmap the dict. Idempotent. On the creating handle, in the creating\n"
    "process, also removes the file if its name still refers to it.";

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

/* ---- the whole dict --------------------------------------------------- */

static const char Dict_flush_expired_doc[] =
    "flush_expired($self, /, max_count=0)\n--\n\n"
    "Free up to max_count expired items (0: all); return how many. O(n),\n"
    "one slice of the table per hold of the lock.";

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
    uint64_t freed = 0;
    if (dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_flush_expired(self->h, max, &freed);
    dict_leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, "flush_expired", self->path);
    return PyLong_FromUnsignedLongLong(freed);
}

static const char Dict_capacity_doc[] =
    "capacity($self, /)\n--\n\n"
    "Bytes of heap for items (the file minus header and index). O(1).";

static PyObject *Dict_capacity(DictObject *self, PyObject *Py_UNUSED(arg))
{
    uint64_t cap, free_bytes;
    if (dict_enter(self) < 0)
        return NULL;
    sd_space(self->h, &cap, &free_bytes);
    dict_leave(self);
    return PyLong_FromUnsignedLongLong(cap);
}

static const char Dict_free_space_doc[] =
    "free_space($self, /)\n--\n\n"
    "Heap bytes not in use. Fragmentation may keep a value of this size\n"
    "from fitting. O(1), no lock.";

static PyObject *Dict_free_space(DictObject *self, PyObject *Py_UNUSED(arg))
{
    uint64_t cap, free_bytes;
    if (dict_enter(self) < 0)
        return NULL;
    sd_space(self->h, &cap, &free_bytes);
    dict_leave(self);
    return PyLong_FromUnsignedLongLong(free_bytes);
}

static const char Dict_flush_all_doc[] =
    "flush_all($self, /)\n--\n\n"
    "Remove every item and give its memory back. O(size of the index).";

static PyObject *Dict_flush_all(DictObject *self, PyObject *Py_UNUSED(arg))
{
    if (dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_flush_all(self->h);
    dict_leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, "flush_all", self->path);
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

/* The live keys, at most max (0: all), read a slice of the index at a
 * time; the handle stays entered throughout, each slice in the span. */
static PyObject *keys_list(DictObject *self, const char *op, Py_ssize_t max)
{
    if (dict_enter(self) < 0)
        return NULL;
    sd_span span = SD_SPAN_INIT; /* for the waits of all the chunks */
    PyObject *res = NULL, *list = PyList_New(0);
    size_t cap = 64 * 1024;
    unsigned char *buf = PyMem_Malloc(cap);
    if (!list || !buf) {
        PyErr_NoMemory();
        goto exit;
    }
    uint64_t cursor = 0;
    for (;;) {
        size_t used = 0, need = 0;
        span_enter(self, &span);
        sd_status rc = sd_keys_chunk(self->h, &cursor, buf, cap, &used, &need);
        span_leave(&span);
        if (rc == SD_TOOBIG) {
            unsigned char *bigger = PyMem_Realloc(buf, need);
            if (!bigger) {
                PyErr_NoMemory();
                goto exit;
            }
            buf = bigger;
            cap = need;
            continue; /* the cursor points at that bucket: redo it */
        }
        if (rc != SD_OK) {
            raise_status((PyObject *)self, rc, op, self->path);
            goto exit;
        }
        if (decode_keys(list, buf, used, max) < 0) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                raise_status((PyObject *)self, SD_CORRUPT, op, self->path);
            }
            goto exit;
        }
        if (cursor == 0 || (max != 0 && PyList_GET_SIZE(list) >= max))
            break;
    }
    res = Py_NewRef(list);
exit:
    PyMem_Free(buf);
    Py_XDECREF(list);
    dict_leave(self);
    return res;
}

static const char Dict_get_keys_doc[] =
    "get_keys($self, /, max_count=0)\n--\n\n"
    "A list of the live keys, at most max_count of them (0: all). O(n);\n"
    "the lock is held for one slice of the table at a time, so keys set\n"
    "or deleted meanwhile may or may not be listed.";

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
    return keys_list(self, "get_keys", max);
}

/* iter(d): an iterator over a list of the keys. */
static PyObject *Dict_iter(DictObject *self)
{
    PyObject *keys = keys_list(self, "__iter__", 0);
    if (!keys)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

/* len(d) */
static Py_ssize_t Dict_len(DictObject *self)
{
    uint64_t n = 0;
    if (dict_enter(self) < 0)
        return -1;
    sd_status rc = sd_count(self->h, &n);
    dict_leave(self);
    if (rc == SD_OK && n > (uint64_t)PY_SSIZE_T_MAX)
        rc = SD_CORRUPT; /* a damaged count */
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, "__len__", self->path);
        return -1;
    }
    return (Py_ssize_t)n;
}

static const char Dict_verify_doc[] =
    "verify($self, /)\n--\n\n"
    "Check every structure of the dict; return a list of the problems\n"
    "found (empty when healthy). O(n) under the lock.";

static PyObject *Dict_verify(DictObject *self, PyObject *Py_UNUSED(arg))
{
    size_t cap = 64 * 1024, problems = 0;
    PyObject *res = NULL, *text = NULL;
    if (dict_enter(self) < 0)
        return NULL;
    char *buf = PyMem_Malloc(cap);
    sd_status rc = buf ? sd_verify(self->h, buf, cap, &problems) : SD_OK;
    dict_leave(self);
    if (!buf) {
        PyErr_NoMemory();
        goto exit;
    }
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, "verify", self->path);
        goto exit;
    }
    if (problems == 0) {
        res = PyList_New(0);
        goto exit;
    }
    text = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf), "replace");
    if (!text || !(res = PyUnicode_Splitlines(text, 0)))
        goto exit;
    if ((size_t)PyList_GET_SIZE(res) < problems) {
        PyObject *more =
            PyUnicode_FromFormat("... and %zu more problems",
                                 problems - (size_t)PyList_GET_SIZE(res));
        if (!more || PyList_Append(res, more) < 0)
            Py_CLEAR(res);
        Py_XDECREF(more);
    }
exit:
    Py_XDECREF(text);
    PyMem_Free(buf);
    return res;
}

static const char Dict_stats_doc[] =
    "stats($self, /)\n--\n\n"
    "Counters: entries, expiring, bytes_used, bytes_free, capacity, hits,\n"
    "misses, sets, evictions, expirations, lock_waits, recoveries (dead\n"
    "lock holders repaired), pending_free (list items not yet freed),\n"
    "buckets, evict, stripes, bytes_reserved (bytes of the file the\n"
    "filesystem backs) and reserved (made with reserve=True); and of this\n"
    "handle's near cache (the values it returned, kept as objects):\n"
    "near_hits, near_misses (gets it answered, and didn't), near_slots\n"
    "(its size; 0: off) and near_bytes (the memory it holds: its table\n"
    "and, approximately, the key and value objects).\n"
    "O(stripes) plus the pending list items.";

static PyObject *Dict_stats(DictObject *self, PyObject *Py_UNUSED(arg))
{
    sd_stats st;
    if (dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_get_stats(self->h, &st);
    dict_leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, "stats", self->path);
#define U(x) ((unsigned long long)(x))
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsOsIsKsOsKsKsIsK}", "entries",
        U(st.count), "expiring", U(st.n_expiring), "bytes_used",
        U(st.used_bytes), "bytes_free", U(st.heap_size - st.used_bytes),
        "capacity", U(st.heap_size), "hits", U(st.hits), "misses",
        U(st.misses), "sets", U(st.sets), "evictions", U(st.evictions),
        "expirations", U(st.expirations), "lock_waits", U(st.lock_waits),
        "recoveries", U(st.recoveries), "pending_free", U(st.pending_free),
        "buckets", U(st.nbuckets), "evict", st.evict ? Py_True : Py_False,
        "stripes", st.nparts, "bytes_reserved", U(st.reserved_bytes),
        "reserved", st.reserved ? Py_True : Py_False, "near_hits",
        U(self->near_hits), "near_misses", U(self->near_misses), "near_slots",
        (unsigned)self->near_n, "near_bytes", U(near_bytes(self)));
#undef U
}

/* ---- properties ------------------------------------------------------- */
/* Plain reads of the handle: no core call that could wait, so no
 * dict_enter; name, path, closed and lock_timeout answer after close(). */

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

/* ---- the type ---------------------------------------------------------- */

#define METHOD(name, fn, flags)                                               \
    {                                                                         \
        name, (PyCFunction)(void (*)(void))fn, flags, fn##_doc                \
    }

static PyMethodDef Dict_methods[] = {
    METHOD("get", Dict_get, FASTKW),
    METHOD("set", Dict_set, FASTKW),
    METHOD("add", Dict_add, FASTKW),
    METHOD("replace", Dict_replace, FASTKW),
    METHOD("safe_set", Dict_safe_set, FASTKW),
    METHOD("safe_add", Dict_safe_add, FASTKW),
    METHOD("set_forcible", Dict_set_forcible, FASTKW),
    METHOD("get_stale", Dict_get_stale, METH_O),
    METHOD("pop", Dict_pop, FASTKW),
    METHOD("setdefault", Dict_setdefault, FASTKW),
    METHOD("cas", Dict_cas, FASTKW),
    METHOD("lpush", Dict_lpush, METH_FASTCALL),
    METHOD("rpush", Dict_rpush, METH_FASTCALL),
    METHOD("lpop", Dict_lpop, METH_O),
    METHOD("rpop", Dict_rpop, METH_O),
    METHOD("llen", Dict_llen, METH_O),
    METHOD("lrange", Dict_lrange, METH_O),
    METHOD("get_many", Dict_get_many, METH_O),
    METHOD("set_many", Dict_set_many, FASTKW),
    METHOD("delete_many", Dict_delete_many, METH_O),
    METHOD("flush_expired", Dict_flush_expired, FASTKW),
    METHOD("capacity", Dict_capacity, METH_NOARGS),
    METHOD("free_space", Dict_free_space, METH_NOARGS),
    METHOD("delete", Dict_delete, METH_O),
    METHOD("incr", Dict_incr, FASTKW),
    METHOD("ttl", Dict_ttl, METH_O),
    METHOD("expire", Dict_expire, FASTKW),
    METHOD("flush_all", Dict_flush_all, METH_NOARGS),
    METHOD("get_keys", Dict_get_keys, FASTKW),
    METHOD("close", Dict_close, METH_NOARGS),
    METHOD("verify", Dict_verify, METH_NOARGS),
    METHOD("stats", Dict_stats, METH_NOARGS),
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
     ", evict=False, stripes=0, reserve=False, near_cache=" STR(
         NEAR_DEFAULT_SLOTS) ")\n--\n\n"
                             "A handle on a shared-memory dict. Use "
                             "shmdict.new(), shmdict.get()\n"
                             "and shmdict.open(). create: 0 attaches, 1 "
                             "creates (the handle owns\n"
                             "the file), 2 attaches or creates a dict no "
                             "handle owns. near_cache:\n"
                             "the slots of this handle's cache of values it "
                             "returned (0: none)."},
    {0, NULL},
};

PyType_Spec Dict_spec = {
    .name = "shmdict._core.Dict",
    .basicsize = sizeof(DictObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = Dict_slots,
};
