/*
 * module.c - the module shmdict._core: multi-phase init, the module state
 * (the Dict type and the exception classes), the constants, and the
 * module-level functions.
 */
#include "binding.h"

#include <signal.h>

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

module_state *state_of_type(PyTypeObject *type)
{
    PyObject *m = PyType_GetModuleByDef(type, &core_module);
    return m ? PyModule_GetState(m) : NULL;
}

/* ---- module-level functions ------------------------------------------- */

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
    if (!sd_crash_points_built()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this build of shmdict._core has no crash points "
                        "(they are a test hook: build with SHMDICT_DEV=1)");
        return NULL;
    }
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

/* ---- init --------------------------------------------------------------- */

static int add_u64(PyObject *m, const char *name, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o)
        return -1;
    int r = PyModule_AddObjectRef(m, name, o);
    Py_DECREF(o);
    return r;
}

/* The module's constants: the file format's (layout.h, shmdict.h) and the
 * defaults of Dict(), which the Python layer reads from here. */
static int add_constants(PyObject *m)
{
    if (PyModule_AddStringConstant(m, "SHM_DIR", SHM_DIR) < 0 ||
        PyModule_AddIntConstant(m, "MAX_KEY_BYTES", SD_MAX_KEY) < 0 ||
        add_u64(m, "MAX_SIZE", SD_MAX_SIZE) < 0 ||
        add_u64(m, "MIN_SIZE", SD_MIN_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "FORMAT_VERSION", SD_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "DEFAULT_NEAR_CACHE", NEAR_DEFAULT_SLOTS) <
            0 ||
        PyModule_AddIntConstant(m, "NEAR_SLOT_BYTES", (long)NEAR_SLOT_BYTES) <
            0 ||
        PyModule_AddIntConstant(m, "NEAR_SMALL_VALUE", NEAR_SMALL_VALUE) < 0 ||
        PyModule_AddIntConstant(m, "NEAR_MAX_VALUE", NEAR_MAX_VALUE) < 0 ||
        PyModule_AddIntConstant(m, "NEAR_SLOT_BUDGET", NEAR_SLOT_BUDGET) < 0 ||
        PyModule_AddIntConstant(m, "CRASH_POINTS", sd_crash_points_built()) <
            0 ||
        add_u64(m, "MAGIC", SD_MAGIC) < 0)
        return -1;
    PyObject *t = PyFloat_FromDouble(DEFAULT_LOCK_TIMEOUT);
    int r = t ? PyModule_AddObjectRef(m, "DEFAULT_LOCK_TIMEOUT", t) : -1;
    Py_XDECREF(t);
    return r;
}

/* The exception classes live in shmdict.errors and Pickled in
 * shmdict._pickled (pure Python); the state holds them. */
static int core_exec(PyObject *m)
{
    module_state *st = PyModule_GetState(m);
    if (!status_table_complete()) { /* a new sd_status needs its row */
        PyErr_SetString(PyExc_SystemError,
                        "an sd_status has no row in the status table");
        return -1;
    }
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
    return add_constants(m);
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

struct PyModuleDef core_module = {
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
