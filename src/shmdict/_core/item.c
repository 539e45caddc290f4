/*
 * item.c - the Dict methods on one key: reads (get, get_stale, pop,
 * setdefault, ttl, in), writes (set and its variants, delete, incr, cas,
 * expire), and the reading machinery list.c and batch.c share (fetch_obj,
 * lookup).
 */
#include "binding.h"

/* ---- reads ------------------------------------------------------------ */

/* Run a core call that copies a value out, growing the buffer while it
 * says SD_TOOBIG. 0 with the core's status in *rc, or -1 with an
 * exception set (no memory, or the handle was closed meanwhile). The
 * caller frees *heap. `sp` is the span of the Python call, or NULL if
 * this is the whole call. */
static int fetch(DictObject *self, const char *k, size_t klen, fetch_fn fn,
                 void *arg, sd_value_out *out, char *sbuf, size_t scap,
                 char **heap, sd_span *sp, sd_status *rc)
{
    sd_span own = SD_SPAN_INIT;
    *heap = NULL;
    out->buf = sbuf;
    out->cap = scap;
    out->waited_ns = 0;
    if (dict_enter(self) < 0)
        return -1;
    span_enter(self, sp);
    *rc = fn(self->h, k, klen, out, arg);
    span_leave(sp);
    dict_leave(self);
    while (*rc == SD_TOOBIG) {
        if (!sp) { /* the retries share what is left of one timeout */
            sd_span_charge(&own, out->waited_ns);
            sp = &own;
        }
        PyMem_Free(*heap);
        *heap = PyMem_Malloc(out->len ? out->len : 1);
        if (!*heap) {
            PyErr_NoMemory();
            return -1;
        }
        out->buf = *heap;
        out->cap = out->len;
        if (dict_enter(self) < 0)
            return -1;
        span_enter(self, sp);
        *rc = fn(self->h, k, klen, out, arg);
        span_leave(sp);
        dict_leave(self);
    }
    return 0;
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

/* The common shape of a read: look the key up with fn; on SD_NOTFOUND
 * return `missing` (a new reference) or raise KeyError when it is NULL.
 * `op` names the Python call for the messages; `sp` is the span of the
 * Python call, or NULL if this is the whole call. */
PyObject *fetch_obj(DictObject *self, const char *op, PyObject *key,
                    fetch_fn fn, void *arg, PyObject *missing, sd_span *sp)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    char sbuf[STACK_BUF], *heap = NULL;
    sd_value_out out;
    sd_status rc;
    PyObject *res = NULL;
    if (fetch(self, k, (size_t)klen, fn, arg, &out, sbuf, sizeof sbuf, &heap,
              sp, &rc) < 0)
        goto exit;
    if (rc == SD_OK)
        res = value_obj((PyObject *)self, &out);
    else if (rc == SD_NOTFOUND && missing)
        res = Py_NewRef(missing);
    else
        raise_status((PyObject *)self, rc, op, key);
exit:
    PyMem_Free(heap);
    return res;
}

/* A str or bytes value too big for the stack buffer (`out` says what the
 * last read found): read it straight into the object that will hold it,
 * one copy instead of two and no scratch buffer. If its type or size moved
 * meanwhile, the general way takes over. */
static PyObject *read_big(DictObject *self, const char *op, PyObject *key,
                          const char *k, Py_ssize_t klen, sd_value_out out,
                          sd_span *sp)
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
        if (dict_enter(self) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
        span_enter(self, sp);
        sd_status rc = sd_get(self->h, k, (size_t)klen, &got);
        span_leave(sp);
        dict_leave(self);
        if (rc == SD_OK && got.type == out.type && got.len == (size_t)len &&
            (!str || (got.ascii && is_ascii(buf, (size_t)len))))
            return obj;
        Py_DECREF(obj);
        if (rc == SD_NOTFOUND)
            return Py_NewRef(Py_Ellipsis);
        if (rc != SD_OK && rc != SD_TOOBIG) /* no retry */
            return raise_status((PyObject *)self, rc, op, key);
        if (rc != SD_TOOBIG)
            break;
        out = got; /* it grew: try again at its new size */
    }
    return fetch_obj(self, op, key, fetch_get, NULL, Py_Ellipsis, sp);
}

/* key's value as a new reference; Py_Ellipsis (never a stored value) if it
 * has none; NULL with an exception on an error. With `snap` (the stripes'
 * sequence values of a get_many), only what was read under those values
 * counts: anything else sets *stale and returns NULL with no exception.
 * `sp` is the span of the Python call, or NULL if this is the whole call.
 * A wait for the lock that timed out or was interrupted is never tried
 * again. */
PyObject *lookup(DictObject *self, const char *op, PyObject *key,
                 const uint64_t *snap, int *stale, sd_span *sp)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0)
        return NULL;
    if (dict_enter(self) < 0)
        return NULL;
    int look;
    PyObject *near = near_find(self, key, k, klen, snap, &look);
    if (near) {
        Py_INCREF(near);
        dict_leave(self);
        return near;
    }
    char sbuf[STACK_BUF];
    sd_value_out out = {.buf = sbuf, .cap = sizeof sbuf};
    span_enter(self, sp);
    sd_status rc = sd_get(self->h, k, (size_t)klen, &out);
    span_leave(sp);
    dict_leave(self);
    if (rc == SD_TIMEDOUT || rc == SD_INTERRUPTED)
        return raise_status((PyObject *)self, rc, op, key);
    if (snap && (!(rc == SD_OK || rc == SD_NOTFOUND) || !out.seq ||
                 out.part >= SNAP_PARTS || out.seq != snap[out.part])) {
        /* 1: changed meanwhile, or read under the lock: try again. 2: big,
         * a list, or an error: leave it to the locked way. */
        *stale = rc == SD_OK || rc == SD_NOTFOUND ? 1 : 2;
        return NULL;
    }
    if (SD_LIKELY_OK(rc)) {
        PyObject *res = value_obj((PyObject *)self, &out);
        if (res && look)
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
        return read_big(self, op, key, k, klen, out, sp);
    }
    return raise_status((PyObject *)self, rc, op, key);
}

static PyObject *do_get(DictObject *self, const char *op, PyObject *key,
                        PyObject *dflt, int raise_missing)
{
    PyObject *res = lookup(self, op, key, NULL, NULL, NULL);
    if (res != Py_Ellipsis)
        return res;
    Py_DECREF(res);
    if (!raise_missing)
        return Py_NewRef(dflt);
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

const char Dict_get_doc[] =
    "get($self, /, key, default=None)\n--\n\n"
    "The value of key, or default when it is missing or expired.\n"
    "O(1) on average; takes no lock unless a writer is busy. A small value\n"
    "read again, with no write to its stripe in between, is the same\n"
    "object as before (one shared load, no copy).";

PyObject *Dict_get(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    if (!kwnames && nargs == 1)
        return do_get(self, "get", args[0], Py_None, 0);
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (parse_args("get", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    return do_get(self, "get", a[0], a[1] ? a[1] : Py_None, 0);
}

/* d[key] */
PyObject *Dict_subscript(DictObject *self, PyObject *key)
{
    return do_get(self, "__getitem__", key, NULL, 1);
}

const char Dict_get_stale_doc[] =
    "get_stale($self, key, /)\n--\n\n"
    "(value, is_stale), or None if missing: an expired value that has not\n"
    "been reclaimed yet comes back with is_stale True. O(1) on average.";

PyObject *Dict_get_stale(DictObject *self, PyObject *key)
{
    int stale = 0;
    PyObject *v =
        fetch_obj(self, "get_stale", key, fetch_stale, &stale, NULL, NULL);
    if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NO)", v, stale ? Py_True : Py_False);
}

const char Dict_pop_doc[] =
    "pop($self, /, key, default=<missing>)\n--\n\n"
    "Remove key and return its value, atomically; default (or KeyError)\n"
    "if missing. O(1) on average.";

PyObject *Dict_pop(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"key", "default"};
    PyObject *a[2];
    if (parse_args("pop", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    return fetch_obj(self, "pop", a[0], fetch_pop, NULL, a[1], NULL);
}

const char Dict_setdefault_doc[] =
    "setdefault($self, /, key, default=None)\n--\n\n"
    "The value of key; if missing, store default and return it, atomically.\n"
    "O(1) on average.";

PyObject *Dict_setdefault(DictObject *self, PyObject *const *args,
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
    return fetch_obj(self, "setdefault", a[0], fetch_setdefault, &v, dflt,
                     NULL);
}

const char Dict_ttl_doc[] =
    "ttl($self, key, /)\n--\n\n"
    "Seconds until key expires (> 0), 0 if it never does, None if it is\n"
    "missing. O(1) on average.";

PyObject *Dict_ttl(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    int64_t ns = 0;
    if (key_arg(key, &k, &klen) < 0 || dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_ttl(self->h, k, (size_t)klen, &ns);
    dict_leave(self);
    if (rc == SD_NOTFOUND)
        Py_RETURN_NONE;
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, "ttl", key);
    return PyFloat_FromDouble((double)ns / 1e9);
}

/* key in d: False for a key that could never be stored. */
int Dict_contains(DictObject *self, PyObject *key)
{
    if (!PyUnicode_Check(key))
        return 0;
    Py_ssize_t klen;
    const char *k = PyUnicode_AsUTF8AndSize(key, &klen);
    if (!k)
        return -1;
    if (klen == 0 || (size_t)klen > SD_MAX_KEY)
        return 0;
    int64_t ns;
    if (dict_enter(self) < 0)
        return -1;
    sd_status rc = sd_ttl(self->h, k, (size_t)klen, &ns);
    dict_leave(self);
    if (rc == SD_OK)
        return 1;
    if (rc == SD_NOTFOUND)
        return 0;
    raise_status((PyObject *)self, rc, "__contains__", key);
    return -1;
}

/* ---- writes ----------------------------------------------------------- */

/* Store with sd_set_ex. Returns the status (after raising for errors other
 * than SD_EXISTS and SD_NOTFOUND, which add/replace report as False), or
 * -1 with an exception. */
static int do_set(DictObject *self, const char *op, PyObject *key,
                  PyObject *value, PyObject *exptime, unsigned flags,
                  uint64_t *evicted)
{
    const char *k;
    Py_ssize_t klen;
    sd_value_in v;
    int64_t ttl;
    if (key_arg(key, &k, &klen) < 0 ||
        value_arg((PyObject *)self, value, &v) < 0 ||
        ttl_arg(exptime, &ttl) < 0 || dict_enter(self) < 0)
        return -1;
    sd_near kept;
    sd_status rc = sd_set_near(self->h, k, (size_t)klen, &v, ttl, flags,
                               evicted, self->near_n ? &kept : NULL);
    dict_leave(self);
    if (rc == SD_OK && self->near_n)
        near_keep_stored(self, key, value, &v, &kept);
    if (rc == SD_OK || rc == SD_EXISTS || rc == SD_NOTFOUND)
        return (int)rc;
    err_ctx cx = {
        .op = op,
        .obj = key,
        .item = ((uint64_t)klen + 7) / 8 * 8 + (v.len + 7) / 8 * 8,
    };
    raise_status_ctx((PyObject *)self, rc, &cx);
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

/* add, replace, safe_set, safe_add: True if stored, False if the mode
 * said no. */
static PyObject *set_if(DictObject *self, const char *op, unsigned flags,
                        PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    PyObject *a[3];
    if (set_args(op, args, nargs, kwnames, a) < 0)
        return NULL;
    int r = do_set(self, op, a[0], a[1], a[2], flags, NULL);
    return r < 0 ? NULL : PyBool_FromLong(r == SD_OK);
}

const char Dict_set_doc[] =
    "set($self, /, key, value, exptime=0)\n--\n\n"
    "Store value under key; it expires after exptime seconds if > 0.\n"
    "Returns True. O(1) on average. Raises NoMemoryError when the dict is\n"
    "full (the old value stays), TypeError/OverflowError for values it\n"
    "can't store, ValueError for a NaN or infinite exptime.";

PyObject *Dict_set(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    PyObject *a[3];
    if (set_args("set", args, nargs, kwnames, a) < 0 ||
        do_set(self, "set", a[0], a[1], a[2], SD_MODE_SET, NULL) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

const char Dict_add_doc[] =
    "add($self, /, key, value, exptime=0)\n--\n\n"
    "Store value only if key is missing or expired; True if stored, False\n"
    "if the key exists. Atomic. O(1) on average.";

PyObject *Dict_add(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    return set_if(self, "add", SD_MODE_ADD, args, nargs, kwnames);
}

const char Dict_replace_doc[] =
    "replace($self, /, key, value, exptime=0)\n--\n\n"
    "Store value only if key exists; True if stored, False if missing.\n"
    "O(1) on average.";

PyObject *Dict_replace(DictObject *self, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames)
{
    return set_if(self, "replace", SD_MODE_REPLACE, args, nargs, kwnames);
}

const char Dict_safe_set_doc[] =
    "safe_set($self, /, key, value, exptime=0)\n--\n\n"
    "set() that never evicts live items: NoMemoryError instead.";

PyObject *Dict_safe_set(DictObject *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    return set_if(self, "safe_set", SD_MODE_SET | SD_NOEVICT, args, nargs,
                  kwnames);
}

const char Dict_safe_add_doc[] =
    "safe_add($self, /, key, value, exptime=0)\n--\n\n"
    "add() that never evicts live items: NoMemoryError instead.";

PyObject *Dict_safe_add(DictObject *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    return set_if(self, "safe_add", SD_MODE_ADD | SD_NOEVICT, args, nargs,
                  kwnames);
}

const char Dict_set_forcible_doc[] =
    "set_forcible($self, /, key, value, exptime=0)\n--\n\n"
    "set(), returning how many live items were evicted to make room (0\n"
    "unless the dict was made with evict=True and was full): ngx's\n"
    "'forcible' flag is set_forcible(...) > 0.";

PyObject *Dict_set_forcible(DictObject *self, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[3];
    uint64_t evicted = 0;
    if (set_args("set_forcible", args, nargs, kwnames, a) < 0 ||
        do_set(self, "set_forcible", a[0], a[1], a[2], SD_MODE_SET, &evicted) <
            0)
        return NULL;
    return PyLong_FromUnsignedLongLong(evicted);
}

/* delete(key) -> bool; del d[key] raises KeyError. 1 deleted, 0 missing,
 * -1 with an exception. */
static int do_delete(DictObject *self, const char *op, PyObject *key,
                     int raise_missing)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0 || dict_enter(self) < 0)
        return -1;
    sd_status rc = sd_delete(self->h, k, (size_t)klen);
    dict_leave(self);
    if (rc == SD_OK)
        return 1;
    if (rc == SD_NOTFOUND && !raise_missing)
        return 0;
    raise_status((PyObject *)self, rc, op, key);
    return -1;
}

const char Dict_delete_doc[] = "delete($self, key, /)\n--\n\n"
                               "Remove key. True if it existed. O(1) on "
                               "average.";

PyObject *Dict_delete(DictObject *self, PyObject *key)
{
    int r = do_delete(self, "delete", key, 0);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

/* d[key] = value; del d[key] */
int Dict_ass_subscript(DictObject *self, PyObject *key, PyObject *value)
{
    if (value)
        return do_set(self, "__setitem__", key, value, NULL, SD_MODE_SET,
                      NULL) < 0
                   ? -1
                   : 0;
    return do_delete(self, "__delitem__", key, 1) < 0 ? -1 : 0;
}

const char Dict_incr_doc[] =
    "incr($self, /, key, delta, exptime=None, *, init=None, "
    "init_ttl=None)\n--\n\n"
    "Add delta to the number at key and return the new value, atomically.\n"
    "int + int stays int; a float on either side gives a float. exptime\n"
    "None keeps the key's expiry, otherwise replaces it (<= 0 clears it).\n"
    "KeyError if missing, TypeError if not a number, OverflowError past\n"
    "64 bits (the value is unchanged). With init, a missing key starts\n"
    "at init (+ delta) with expiry init_ttl (or exptime), atomically, as\n"
    "ngx.shared.DICT's incr does. O(1) on average.";

PyObject *Dict_incr(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    static const char *const names[] = {"key", "delta", "exptime", "init",
                                        "init_ttl"};
    PyObject *a[5];
    if (parse_args("incr", names, 5, 3, 2, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    sd_value_in d, init;
    if (key_arg(a[0], &k, &klen) < 0 || number_arg(a[1], "delta", &d) < 0)
        return NULL;
    int ttl_mode = -1; /* keep the expiry */
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
    if (dict_enter(self) < 0)
        return NULL;
    sd_value_out out = {0};
    sd_status rc = sd_incr_init(self->h, k, (size_t)klen, &d, ttl_mode, ttl,
                                has_init ? &init : NULL, init_ttl, &out);
    dict_leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, "incr", a[0]);
    return out.type == SD_T_INT ? PyLong_FromLongLong(out.i)
                                : PyFloat_FromDouble(out.f);
}

const char Dict_cas_doc[] =
    "cas($self, /, key, expected, new, exptime=None)\n--\n\n"
    "Compare-and-set: if key holds a value of the same type equal to\n"
    "expected, store new and return True; otherwise False. exptime None\n"
    "keeps the expiry. Atomic. O(1) on average plus the value sizes.";

PyObject *Dict_cas(DictObject *self, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames)
{
    static const char *const names[] = {"key", "expected", "new", "exptime"};
    PyObject *a[4];
    if (parse_args("cas", names, 4, 4, 3, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    sd_value_in expected, nv;
    int64_t ttl = 0;
    int ttl_mode = -1; /* keep the expiry */
    if (key_arg(a[0], &k, &klen) < 0 ||
        value_arg((PyObject *)self, a[1], &expected) < 0 ||
        value_arg((PyObject *)self, a[2], &nv) < 0)
        return NULL;
    if (a[3] && a[3] != Py_None) {
        if (ttl_arg(a[3], &ttl) < 0)
            return NULL;
        ttl_mode = 0;
    }
    if (dict_enter(self) < 0)
        return NULL;
    sd_status rc =
        sd_cas(self->h, k, (size_t)klen, &expected, &nv, ttl_mode, ttl);
    dict_leave(self);
    if (rc == SD_OK)
        Py_RETURN_TRUE;
    if (rc == SD_NOTFOUND || rc == SD_EXISTS)
        Py_RETURN_FALSE;
    return raise_status((PyObject *)self, rc, "cas", a[0]);
}

const char Dict_expire_doc[] =
    "expire($self, /, key, exptime)\n--\n\n"
    "Set key to expire after exptime seconds; <= 0 clears its expiry.\n"
    "True on success, False if key is missing. O(1) on average.";

PyObject *Dict_expire(DictObject *self, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"key", "exptime"};
    PyObject *a[2];
    if (parse_args("expire", names, 2, 2, 2, args, nargs, kwnames, a) < 0)
        return NULL;
    const char *k;
    Py_ssize_t klen;
    int64_t ttl;
    if (key_arg(a[0], &k, &klen) < 0 || ttl_arg(a[1], &ttl) < 0 ||
        dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_expire(self->h, k, (size_t)klen, ttl);
    dict_leave(self);
    if (rc == SD_OK)
        Py_RETURN_TRUE;
    if (rc == SD_NOTFOUND)
        Py_RETURN_FALSE;
    return raise_status((PyObject *)self, rc, "expire", a[0]);
}
