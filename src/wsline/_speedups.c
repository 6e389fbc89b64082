/*
 * wsline._speedups: the compiled hot path.
 *
 * Three functions, each with a pure-Python twin in wsline/protocol/frames.py
 * that the test suite checks it against (WSLINE_NO_EXTENSIONS=1 forces the
 * twins everywhere):
 *
 *   apply_mask(data, mask)          XOR with a 4-byte key; returns bytes
 *   build_frame(b0, payload, mask)  header + key + (masked) payload, one copy
 *   parse_messages(buf, pos, end, is_server, max_size, events)
 *       appends the whole, unfragmented, uncompressed data messages found in
 *       buf[pos:end] to events and returns the position of the first byte it
 *       did not consume. It stops at anything else (control frames, fragments,
 *       RSV bits, a frame not all here, anything invalid) and leaves that to
 *       the Python parser, so it can only ever accept what the Python parser
 *       accepts, never judge.
 *   MessageBuffer(size)             a large message's bytes, filled in place
 *       while it arrives (write() copies and unmasks a piece, view() lets the
 *       socket read straight into it, unmask() unmasks what it wrote) and
 *       handed over whole by take(): no list of pieces, no join.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* XOR n bytes of src with the key (starting at key byte `phase`) into dst.
 * dst may equal src. Word-at-a-time with memcpy loads: no alignment needs,
 * and gcc -O3 turns the 32-byte loop body into SIMD. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key, int phase)
{
    unsigned char k[8];
    uint64_t k64;
    Py_ssize_t i = 0;
    int j;

    for (j = 0; j < 8; j++) {
        k[j] = key[(j + phase) & 3];
    }
    memcpy(&k64, k, 8);
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k64;
        b ^= k64;
        c ^= k64;
        d ^= k64;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= k64;
        memcpy(dst + i, &a, 8);
    }
    /* i is a multiple of 8 here, so byte i uses k[i & 3]. */
    for (; i < n; i++) {
        dst[i] = src[i] ^ k[i & 3];
    }
}

static int
get_key(PyObject *obj, Py_buffer *key)
{
    if (PyObject_GetBuffer(obj, key, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (key->len != 4) {
        PyBuffer_Release(key);
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
        return -1;
    }
    return 0;
}

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *out;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask(data, mask) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (get_key(args[1], &key) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, data.len);
    if (out != NULL && data.len) {
        xor_mask((unsigned char *)PyBytes_AS_STRING(out), data.buf, data.len, key.buf, 0);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *
build_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer payload, key;
    int has_key;
    long b0;
    Py_ssize_t n, hlen;
    unsigned char *p;
    PyObject *out;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build_frame(b0, payload, mask) takes 3 arguments");
        return NULL;
    }
    b0 = PyLong_AsLong(args[0]);
    if (b0 == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (b0 < 0 || b0 > 255) {
        PyErr_SetString(PyExc_ValueError, "the first header byte must be in 0..255");
        return NULL;
    }
    has_key = args[2] != Py_None;
    if (PyObject_GetBuffer(args[1], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (has_key && get_key(args[2], &key) < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    n = payload.len;
    hlen = n < 126 ? 2 : (n < 65536 ? 4 : 10);
    out = PyBytes_FromStringAndSize(NULL, hlen + (has_key ? 4 : 0) + n);
    if (out != NULL) {
        p = (unsigned char *)PyBytes_AS_STRING(out);
        p[0] = (unsigned char)b0;
        if (n < 126) {
            p[1] = (unsigned char)n;
        }
        else if (n < 65536) {
            p[1] = 126;
            p[2] = (unsigned char)(n >> 8);
            p[3] = (unsigned char)n;
        }
        else {
            uint64_t len = (uint64_t)n;
            int i;
            p[1] = 127;
            for (i = 0; i < 8; i++) {
                p[2 + i] = (unsigned char)(len >> (56 - 8 * i));
            }
        }
        p += hlen;
        if (has_key) {
            p[-hlen + 1] |= 0x80;
            memcpy(p, key.buf, 4);
            p += 4;
            xor_mask(p, payload.buf, n, key.buf, 0);
        }
        else if (n) {
            memcpy(p, payload.buf, n);
        }
    }
    if (has_key) {
        PyBuffer_Release(&key);
    }
    PyBuffer_Release(&payload);
    return out;
}

/* One decoded message from len bytes at src (unmasked with key if not NULL).
 * Returns NULL with no exception set for invalid UTF-8 (the caller stops and
 * lets the Python parser fail the connection), NULL with an exception for
 * real errors (memory). */
static PyObject *
make_message(int opcode, const unsigned char *src, Py_ssize_t len, const unsigned char *key)
{
    PyObject *msg;
    unsigned char small[256];
    unsigned char *tmp;

    if (opcode == 2) {
        if (key == NULL) {
            return PyBytes_FromStringAndSize((const char *)src, len);
        }
        msg = PyBytes_FromStringAndSize(NULL, len);
        if (msg != NULL) {
            xor_mask((unsigned char *)PyBytes_AS_STRING(msg), src, len, key, 0);
        }
        return msg;
    }
    if (key == NULL) {
        msg = PyUnicode_DecodeUTF8((const char *)src, len, NULL);
    }
    else {
        tmp = len <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc(len);
        if (tmp == NULL) {
            return PyErr_NoMemory();
        }
        xor_mask(tmp, src, len, key, 0);
        msg = PyUnicode_DecodeUTF8((const char *)tmp, len, NULL);
        if (tmp != small) {
            PyMem_Free(tmp);
        }
    }
    if (msg == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return msg;
}

static PyObject *
parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, end;
    int is_server;
    unsigned long long max_size;
    PyObject *events;
    const unsigned char *p;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_messages(buf, pos, end, is_server, max_size, events) takes 6 arguments");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    is_server = PyObject_IsTrue(args[3]);
    if (is_server < 0) {
        return NULL;
    }
    max_size = PyLong_AsUnsignedLongLong(args[4]);
    if (max_size == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    events = args[5];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || end < pos || end > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos and end must satisfy 0 <= pos <= end <= len(buf)");
        return NULL;
    }
    p = view.buf;
    while (end - pos >= 2) {
        unsigned int b0 = p[pos], b1 = p[pos + 1];
        int opcode = b0 & 0x0F;
        uint64_t len = b1 & 0x7F;
        Py_ssize_t hlen = 2;
        const unsigned char *key = NULL;
        PyObject *msg;

        /* FIN set, no RSV bits, text or binary, masked exactly when from a client. */
        if ((b0 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2) || ((b1 & 0x80) != 0) != is_server) {
            break;
        }
        if (len == 126) {
            if (end - pos < 4) {
                break;
            }
            len = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
            hlen = 4;
        }
        else if (len == 127) {
            int i;
            if (end - pos < 10) {
                break;
            }
            len = 0;
            for (i = 0; i < 8; i++) {
                len = (len << 8) | p[pos + 2 + i];
            }
            hlen = 10;
        }
        if (is_server) {
            if (end - pos < hlen + 4) {
                break;
            }
            key = p + pos + hlen;
            hlen += 4;
        }
        if (len > max_size || len > (uint64_t)(end - pos - hlen)) {
            break;
        }
        msg = make_message(opcode, p + pos + hlen, (Py_ssize_t)len, key);
        if (msg == NULL) {
            if (PyErr_Occurred()) {
                PyBuffer_Release(&view);
                return NULL;
            }
            break; /* invalid UTF-8: the Python parser reports it */
        }
        if (PyList_Append(events, msg) < 0) {
            Py_DECREF(msg);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(msg);
        pos += hlen + (Py_ssize_t)len;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
}

/* ------------------------------------------------------------ MessageBuffer
 *
 * Owns a bytes object of `size` bytes that nobody else sees until take().
 * The buffer protocol exports it writable (view()), so that a transport can
 * recv_into() it; the export keeps this object, hence the bytes, alive. After
 * take() the bytes belong to the caller; exports still alive (the transport's
 * own reference to the view, dropped when its read callback returns) keep
 * the memory valid, and no new export or write is allowed. */
typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes */
    int taken;
} MessageBuffer;

static PyObject *
MessageBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    MessageBuffer *self;

    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "MessageBuffer() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "n:MessageBuffer", &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = PyBytes_FromStringAndSize(NULL, size);
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->taken = 0;
    return (PyObject *)self;
}

static void
MessageBuffer_dealloc(MessageBuffer *self)
{
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
MessageBuffer_getbuffer(MessageBuffer *self, Py_buffer *view, int flags)
{
    if (self->taken) {
        PyErr_SetString(PyExc_BufferError, "the message was taken");
        view->obj = NULL;
        return -1;
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->data),
                             PyBytes_GET_SIZE(self->data), 0, flags);
}

static PyBufferProcs MessageBuffer_as_buffer = {(getbufferproc)MessageBuffer_getbuffer, NULL};

static int
check_range(MessageBuffer *self, Py_ssize_t start, Py_ssize_t n)
{
    if (self->taken) {
        PyErr_SetString(PyExc_BufferError, "the message was taken");
        return -1;
    }
    if (start < 0 || n < 0 || start > PyBytes_GET_SIZE(self->data) - n) {
        PyErr_SetString(PyExc_ValueError, "range outside the message");
        return -1;
    }
    return 0;
}

/* write(offset, data, mask, phase): data (unmasked with mask, starting at key byte phase, if
 * mask is not None) copied to offset. */
static PyObject *
MessageBuffer_write(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    Py_ssize_t offset;
    int phase, has_key;
    unsigned char *dst;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "write(offset, data, mask, phase) takes 4 arguments");
        return NULL;
    }
    offset = PyLong_AsSsize_t(args[0]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    phase = (int)PyLong_AsLong(args[3]);
    if (phase == -1 && PyErr_Occurred()) {
        return NULL;
    }
    has_key = args[2] != Py_None;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (has_key && get_key(args[2], &key) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (check_range(self, offset, data.len) < 0) {
        goto error;
    }
    dst = (unsigned char *)PyBytes_AS_STRING(self->data) + offset;
    if (has_key) {
        xor_mask(dst, data.buf, data.len, key.buf, phase & 3);
        PyBuffer_Release(&key);
    }
    else if (data.len) {
        memcpy(dst, data.buf, data.len);
    }
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
error:
    if (has_key) {
        PyBuffer_Release(&key);
    }
    PyBuffer_Release(&data);
    return NULL;
}

/* unmask(start, end, mask, phase): XOR bytes start..end in place. */
static PyObject *
MessageBuffer_unmask(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key;
    Py_ssize_t start, end;
    int phase;
    unsigned char *p;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "unmask(start, end, mask, phase) takes 4 arguments");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[0]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    end = PyLong_AsSsize_t(args[1]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    phase = (int)PyLong_AsLong(args[3]);
    if (phase == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (check_range(self, start, end - start) < 0) {
        return NULL;
    }
    if (get_key(args[2], &key) < 0) {
        return NULL;
    }
    p = (unsigned char *)PyBytes_AS_STRING(self->data) + start;
    xor_mask(p, p, end - start, key.buf, phase & 3);
    PyBuffer_Release(&key);
    Py_RETURN_NONE;
}

static PyObject *
MessageBuffer_view(MessageBuffer *self, PyObject *unused)
{
    return PyMemoryView_FromObject((PyObject *)self);
}

static PyObject *
MessageBuffer_take(MessageBuffer *self, PyObject *unused)
{
    if (self->taken) {
        PyErr_SetString(PyExc_BufferError, "the message was taken");
        return NULL;
    }
    self->taken = 1;
    Py_INCREF(self->data);
    return self->data;
}

static PyMethodDef MessageBuffer_methods[] = {
    {"write", (PyCFunction)(void (*)(void))MessageBuffer_write, METH_FASTCALL,
     "write(offset, data, mask, phase): copy data to offset, unmasked with mask (or None)."},
    {"unmask", (PyCFunction)(void (*)(void))MessageBuffer_unmask, METH_FASTCALL,
     "unmask(start, end, mask, phase): XOR bytes start..end in place."},
    {"view", (PyCFunction)MessageBuffer_view, METH_NOARGS, "view() -> a writable memoryview of the bytes."},
    {"take", (PyCFunction)MessageBuffer_take, METH_NOARGS, "take() -> bytes: the message (once)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MessageBuffer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wsline._speedups.MessageBuffer",
    .tp_basicsize = sizeof(MessageBuffer),
    .tp_dealloc = (destructor)MessageBuffer_dealloc,
    .tp_as_buffer = &MessageBuffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MessageBuffer(size): a large message's bytes, filled in place, taken whole.",
    .tp_methods = MessageBuffer_methods,
    .tp_new = MessageBuffer_new,
};

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes: XOR data with the 4-byte mask repeated."},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL,
     "build_frame(b0, payload, mask) -> bytes: one frame; mask is 4 bytes or None."},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL,
     "parse_messages(buf, pos, end, is_server, max_size, events) -> int: consume whole simple "
     "data messages, append them to events, return the new position."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "wsline._speedups", "The compiled hot path of wsline.", 0, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m;

    if (PyType_Ready(&MessageBuffer_Type) < 0) {
        return NULL;
    }
    m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&MessageBuffer_Type);
    if (PyModule_AddObject(m, "MessageBuffer", (PyObject *)&MessageBuffer_Type) < 0) {
        Py_DECREF(&MessageBuffer_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
