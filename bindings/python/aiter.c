/* aiter.c - `async for row in stream` of pgspout.aio at the cost of a list
 * index per row. The rows of a chunk come converted in one list (fetch, as
 * in the sync API); this asynchronous iterator hands them out one by one,
 * and __anext__ then returns the iterator itself as an awaitable that is
 * already complete: awaiting it gives the row at once (am_send, Python >=
 * 3.10, without even a StopIteration), never suspending the task. Only
 * when the list is used up does __anext__ return a real coroutine, the
 * Python refill callable's (it awaits the next chunk through the event loop
 * and hands the list over with set()). An async generator would cost about
 * ten times more per row than the whole conversion of a typed row's values
 * takes. */
#include "convert.h"

typedef struct rowaiter {
    PyObject_HEAD PyObject *rows; /* the current chunk (list), or NULL */
    Py_ssize_t pos;               /* its next row */
    PyObject *refill;             /* callable: a coroutine giving the next row */
} rowaiter;

static void ra_dealloc(PyObject *o)
{
    rowaiter *r = (rowaiter *)o;
    PyObject_GC_UnTrack(o);
    Py_CLEAR(r->rows);
    Py_CLEAR(r->refill);
    PyObject_GC_Del(o);
}

static int ra_traverse(PyObject *o, visitproc visit, void *arg)
{
    rowaiter *r = (rowaiter *)o;
    Py_VISIT(r->rows);
    Py_VISIT(r->refill);
    return 0;
}

static int ra_clear(PyObject *o)
{
    rowaiter *r = (rowaiter *)o;
    Py_CLEAR(r->rows);
    Py_CLEAR(r->refill);
    return 0;
}

/* A row is waiting (the list may have been emptied since: a cancel). */
static int ra_ready(rowaiter *r) { return r->rows != NULL && r->pos < PyList_GET_SIZE(r->rows); }

static PyObject *ra_aiter(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static PyObject *ra_anext(PyObject *o)
{
    rowaiter *r = (rowaiter *)o;
    if (ra_ready(r)) {
        Py_INCREF(o); /* the awaitable: complete already */
        return o;
    }
    Py_CLEAR(r->rows);
    return PyObject_CallNoArgs(r->refill);
}

static PyObject *ra_await(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

/* The awaited result: the next row. */
static PyObject *ra_take(rowaiter *r)
{
    if (!ra_ready(r)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "pgspout.aio: a row awaitable was awaited twice or after a cancel");
        return NULL;
    }
    PyObject *row = PyList_GET_ITEM(r->rows, r->pos);
    r->pos++;
    Py_INCREF(row);
    return row;
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult ra_send(PyObject *o, PyObject *arg, PyObject **result)
{
    (void)arg;
    *result = ra_take((rowaiter *)o);
    return *result ? PYGEN_RETURN : PYGEN_ERROR;
}
#endif

/* The iterator protocol of the awaitable (Python 3.9, or a caller that
 * iterates it): the row as StopIteration's value. */
static PyObject *ra_next(PyObject *o)
{
    PyObject *row = ra_take((rowaiter *)o);
    if (row == NULL)
        return NULL;
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, row);
    Py_DECREF(row);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

/* set(rows, pos): the next chunk, from its row pos on. */
static PyObject *ra_set(PyObject *o, PyObject *args)
{
    rowaiter *r = (rowaiter *)o;
    PyObject *rows;
    Py_ssize_t pos;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &rows, &pos))
        return NULL;
    Py_INCREF(rows);
    Py_XSETREF(r->rows, rows);
    r->pos = pos < 0 ? 0 : pos;
    Py_RETURN_NONE;
}

static PyMethodDef ra_methods[] = {
    {"set", ra_set, METH_VARARGS, "set(rows, pos): hand out rows[pos:] next"},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods ra_async = {
    .am_await = ra_await,
    .am_aiter = ra_aiter,
    .am_anext = ra_anext,
#if PY_VERSION_HEX >= 0x030A0000
    .am_send = ra_send,
#endif
};

static PyTypeObject ra_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pgspout._pgspout.RowAIter",
    .tp_basicsize = sizeof(rowaiter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "async for over converted chunks (pgspout.aio)",
    .tp_dealloc = ra_dealloc,
    .tp_traverse = ra_traverse,
    .tp_clear = ra_clear,
    .tp_as_async = &ra_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = ra_next,
    .tp_methods = ra_methods,
};

PyObject *pgspy_rowaiter_new(PyObject *refill)
{
    if (!PyCallable_Check(refill))
        return PyErr_Format(PyExc_TypeError, "refill must be callable");
    if (!(ra_type.tp_flags & Py_TPFLAGS_READY) && PyType_Ready(&ra_type) < 0)
        return NULL;
    rowaiter *r = PyObject_GC_New(rowaiter, &ra_type);
    if (r == NULL)
        return NULL;
    r->rows = NULL;
    r->pos = 0;
    Py_INCREF(refill);
    r->refill = refill;
    PyObject_GC_Track((PyObject *)r);
    return (PyObject *)r;
}
