/* arrow.c - Stream.__arrow_c_stream__: the core's ArrowArrayStream
 * (pgspout_stream_arrow) in a PyCapsule "arrow_array_stream", wrapped so
 * that the Stream object stays alive while any consumer (pyarrow, polars,
 * duckdb, pandas) holds the Arrow stream, and so that reading a batch marks
 * the connection busy and releases the GIL as every blocking read does. */
#include "convert.h"

typedef struct wrapped {
    struct ArrowArrayStream inner;
    PyObject *owner; /* keeps w alive */
    pgspy_stream *w;
    char err[160];
} wrapped;

static int w_get_schema(struct ArrowArrayStream *st, struct ArrowSchema *out)
{
    wrapped *p = st->private_data;
    return p->inner.get_schema(&p->inner, out);
}

static int w_get_next(struct ArrowArrayStream *st, struct ArrowArray *out)
{
    wrapped *p = st->private_data;
    int rc = EIO;
    PyGILState_STATE g = PyGILState_Ensure();
    pgspy_stream *w = p->w;
    p->err[0] = '\0';
    out->release = NULL;
    if (w->s == NULL) {
        snprintf(p->err, sizeof p->err, "estate: the stream is closed");
    } else if (w->conn->busy) {
        snprintf(p->err, sizeof p->err, "ebusy: the stream is being read by another thread");
    } else {
        pgspy_busy(w->conn, 1);
        Py_BEGIN_ALLOW_THREADS rc = p->inner.get_next(&p->inner, out);
        Py_END_ALLOW_THREADS pgspy_busy(w->conn, -1);
    }
    PyGILState_Release(g);
    return rc;
}

static const char *w_get_last_error(struct ArrowArrayStream *st)
{
    wrapped *p = st->private_data;
    return p->err[0] ? p->err : p->inner.get_last_error(&p->inner);
}

static void w_release(struct ArrowArrayStream *st)
{
    wrapped *p = st->private_data;
    PyGILState_STATE g = PyGILState_Ensure();
    if (p->inner.release != NULL)
        p->inner.release(&p->inner);
    Py_DECREF(p->owner);
    PyGILState_Release(g);
    PyMem_RawFree(p);
    st->release = NULL;
}

static void capsule_free(PyObject *capsule)
{
    struct ArrowArrayStream *st = PyCapsule_GetPointer(capsule, "arrow_array_stream");
    if (st != NULL && st->release != NULL)
        st->release(st);
    PyMem_RawFree(st);
}

PyObject *pgspy_arrow_capsule(pgspy_stream *w, PyObject *owner)
{
    struct ArrowArrayStream inner;
    if (w->s == NULL)
        return pgspy_raise(PGSPOUT_ESTATE, "the stream is closed", NULL);
    if (w->conn->busy)
        return pgspy_raise(PGSPOUT_EBUSY, "the stream is being read by another thread", NULL);
    int rc = pgspout_stream_arrow(w->s, &inner);
    if (rc != PGSPOUT_OK)
        return pgspy_raise(rc,
                           rc == PGSPOUT_ESTATE ? "the stream is already exported to Arrow"
                                                : pgspout_strerror(rc),
                           NULL);
    wrapped *p = PyMem_RawCalloc(1, sizeof *p);
    struct ArrowArrayStream *st = PyMem_RawCalloc(1, sizeof *st);
    PyObject *cap = p && st ? PyCapsule_New(st, "arrow_array_stream", capsule_free) : NULL;
    if (cap == NULL) {
        inner.release(&inner);
        PyMem_RawFree(p);
        PyMem_RawFree(st);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    /* rows converted for next() but not handed out are the core's again */
    Py_CLEAR(w->rows);
    w->pos = 0;
    p->inner = inner;
    p->w = w;
    p->owner = owner;
    Py_INCREF(owner);
    *st = (struct ArrowArrayStream){w_get_schema, w_get_next, w_get_last_error, w_release, p};
    return cap;
}
