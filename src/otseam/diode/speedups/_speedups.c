/*
 * The diode's per-datagram work in C: sealing and checking datagrams (AES-256-GCM tags from OpenSSL's
 * EVP interface, on the CPU's AES and carry-less multiply instructions), sendmmsg and recvmmsg; and the
 * per-block work: encoding sample runs (otseam.core.columns), Reed-Solomon with ISA-L.
 *
 * Why C: at a gigabit with one-frame datagrams each side handles 85,000 datagrams a second on one
 * core. In Python the header checks, the two hash-state copies and the slicing cost 3 to 4 us per
 * datagram on each side, close to half of the whole budget. Here they cost a fraction of that.
 *
 * The pure-Python code in wire.py and receiver.py stays the reference: the tests feed the same
 * datagrams, valid, forged and random, to both and require the same verdicts. The checks and their
 * order are the ones docs/diode.md documents: size, magic, version, exact length, MAC, consistency.
 * Nothing is trusted before the MAC; every length is checked before it is used.
 *
 * This file: the module and the Mac type (pack_block, parse_batch). Beside it: mac.c (the tags, from
 * OpenSSL), coder.c (Reed-Solomon with ISA-L and Seam's fragment header: pack_payload,
 * join_fragments, Coder), columns.c (the columnar sample encoder) and mmsg.c (sendmmsg and recvmmsg
 * with segmentation and coalescing); speedups.h is what they share.
 */

#include "speedups.h"

/* An "O&" converter for a 64-bit unsigned field: refuses what does not fit (PyArg's "K" would silently
 * keep the low 64 bits of any integer, negative ones included, and seal a datagram nobody asked for). */
int
to_u64(PyObject *object, void *out)
{
    PyObject *number = PyNumber_Index(object); /* a TypeError for anything but an integer */
    if (number == NULL)
        return 0;
    unsigned long long value = PyLong_AsUnsignedLongLong(number);
    Py_DECREF(number);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "session and sequence must be between 0 and 2**64 - 1");
        return 0;
    }
    *(unsigned long long *)out = value;
    return 1;
}

static int
Mac_init(MacObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"key", NULL};
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*:Mac", names, &key))
        return -1;
    int failed = mac_keys(self, key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "Mac: an empty key, or OpenSSL could not set up HKDF and AES-256-GCM");
        return -1;
    }
    return 0;
}

static void
Mac_dealloc(MacObject *self)
{
    mac_free(self); /* clears the key material */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Mac_call(MacObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"data", NULL};
    Py_buffer data;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*:Mac", names, &data))
        return NULL;
    if (data.len < HEADER_SIZE) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "Mac: a datagram's header and payload, at least 26 bytes");
        return NULL;
    }
    unsigned char out[MAC_SIZE];
    int failed = mac_compute(self, data.buf, (size_t)data.len, out);
    PyBuffer_Release(&data);
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "Mac: not initialised, or OpenSSL could not compute the MAC");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)out, MAC_SIZE);
}

/* pack_block(buffer, slot, flags, k, m, session, sequence, fragments) -> list of datagram lengths */
static PyObject *
Mac_pack_block(MacObject *self, PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t slot;
    int flags, k, m;
    unsigned long long session, sequence;
    PyObject *fragments;
    if (!PyArg_ParseTuple(args, "w*niiiO&O&O!:pack_block", &buffer, &slot, &flags, &k, &m, to_u64, &session, to_u64,
                          &sequence, &PyList_Type, &fragments))
        return NULL;
    PyObject *lengths = NULL;
    Py_ssize_t count = PyList_GET_SIZE(fragments);
    if (flags < 0 || flags > 255 || k < 1 || k > 255 || m < 0 || m > 255 || count != k + m || count > MAX_FRAGMENTS) {
        PyErr_SetString(PyExc_ValueError, "pack_block: flags, k and m must fit a byte and k + m fragments be given");
        goto done;
    }
    /* Divided, not multiplied: count * slot can overflow for a huge slot and pass as small. */
    if (slot < OVERHEAD || slot > buffer.len / count) {
        PyErr_SetString(PyExc_ValueError, "pack_block: the buffer is too small for these fragments");
        goto done;
    }
    lengths = PyList_New(count);
    if (lengths == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *fragment = PyList_GET_ITEM(fragments, i);
        if (!PyBytes_Check(fragment)) {
            PyErr_SetString(PyExc_TypeError, "pack_block: fragments must be bytes");
            Py_CLEAR(lengths);
            goto done;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(fragment);
        if (size > 0xffff || HEADER_SIZE + size + MAC_SIZE > slot) {
            PyErr_Format(PyExc_ValueError, "pack_block: a fragment of %zd bytes does not fit a %zd-byte datagram",
                         size, slot);
            Py_CLEAR(lengths);
            goto done;
        }
        unsigned char *out = (unsigned char *)buffer.buf + i * slot;
        write_header(out, flags, k, m, (int)i, session, sequence, size);
        memcpy(out + HEADER_SIZE, PyBytes_AS_STRING(fragment), (size_t)size);
        if (mac_compute(self, out, (size_t)(HEADER_SIZE + size), out + HEADER_SIZE + size) < 0) {
            PyErr_SetString(PyExc_RuntimeError, "pack_block: Mac not initialised, or OpenSSL failed");
            Py_CLEAR(lengths);
            goto done;
        }
        PyObject *length = PyLong_FromSsize_t(HEADER_SIZE + size + MAC_SIZE);
        if (length == NULL) {
            Py_CLEAR(lengths);
            goto done;
        }
        PyList_SET_ITEM(lengths, i, length);
    }
done:
    PyBuffer_Release(&buffer);
    return lengths;
}

/* The open run: authentic fragments of one block with consecutive indices and one payload size, as
 * they lie in the caller's buffer (copied out once, into one bytes object, when the run closes). */
typedef struct {
    int open;
    uint64_t session, sequence;
    int flags, k, m, first, next;
    Py_ssize_t size, count;
    const unsigned char *payload[MAX_FRAGMENTS];
} Run;

/* The block carried by a run that holds every data fragment of its block (fragments 0 .. k-1, parity
 * perhaps after them), copied once out of the datagrams without the fragment headers; NULL without an
 * exception when their headers do not agree on a block length these fragments carry (the checks of
 * join_fragments, which the general path then applies to the run). */
static PyObject *
run_block(const Run *run)
{
    if (run->first != 0 || run->count < run->k || run->size <= FRAGMENT_HEADER)
        return NULL;
    uint64_t data = (uint64_t)(run->size - FRAGMENT_HEADER), original = load32(run->payload[0]);
    if (original < 1 || (original - 1) / (uint64_t)run->k + 1 != data)
        return NULL;
    for (int i = 1; i < run->k; i++)
        if (load32(run->payload[i]) != original)
            return NULL;
    PyObject *block = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)original);
    if (block == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(block);
    uint64_t left = original;
    for (int i = 0; i < run->k && left; i++) {
        size_t part = left < data ? (size_t)left : (size_t)data;
        memcpy(out, run->payload[i] + FRAGMENT_HEADER, part);
        out += part;
        left -= part;
    }
    return block;
}

static int
run_close(Run *run, PyObject *items)
{
    if (!run->open)
        return 0;
    run->open = 0;
    PyObject *item;
    PyObject *block = run_block(run);
    if (block != NULL) { /* the usual case: one copy, and none of the parity that came with it */
        item = Py_BuildValue("(iKKiiinN)", ITEM_BLOCK, (unsigned long long)run->session,
                             (unsigned long long)run->sequence, run->flags, run->k, run->m, run->count, block);
    }
    else {
        if (PyErr_Occurred())
            return -1;
        /* count <= MAX_FRAGMENTS and size <= 0xffff: the product cannot overflow. */
        PyObject *joined = PyBytes_FromStringAndSize(NULL, run->count * run->size);
        if (joined == NULL)
            return -1;
        char *out = PyBytes_AS_STRING(joined);
        for (Py_ssize_t i = 0; i < run->count; i++)
            memcpy(out + i * run->size, run->payload[i], (size_t)run->size);
        item = Py_BuildValue("(iKKiiiinN)", ITEM_RUN, (unsigned long long)run->session,
                             (unsigned long long)run->sequence, run->flags, run->k, run->m, run->first, run->size,
                             joined);
    }
    if (item == NULL)
        return -1; /* Py_BuildValue's N took the bytes, even when it failed */
    int failed = PyList_Append(items, item);
    Py_DECREF(item);
    return failed;
}

/* A list of indices given to parse_batch: a sequence of Python integers, or a buffer of signed 64-bit
 * integers (array('q'), which recv_batch fills without an object per datagram). */
typedef struct {
    PyObject *fast;      /* the sequence's fast form, or NULL for a buffer */
    Py_buffer view;      /* the buffer, when view.obj is set */
    const int64_t *data; /* its entries */
    Py_ssize_t length;
} IndexList;

static int
index_list_open(IndexList *list, PyObject *object, const char *what)
{
    memset(list, 0, sizeof *list);
    if (!PyList_Check(object) && !PyTuple_Check(object) && PyObject_CheckBuffer(object)) {
        if (PyObject_GetBuffer(object, &list->view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
            return -1;
        const char *format = list->view.format ? list->view.format : "B";
        if (list->view.itemsize != (Py_ssize_t)sizeof(int64_t) || (strcmp(format, "q") != 0 && strcmp(format, "l") != 0)) {
            PyBuffer_Release(&list->view);
            PyErr_Format(PyExc_TypeError, "parse_batch: %s must be a sequence of integers or an array('q')", what);
            return -1;
        }
        list->data = list->view.buf;
        list->length = list->view.len / (Py_ssize_t)sizeof(int64_t);
        return 0;
    }
    list->fast = PySequence_Fast(object, "parse_batch: starts and sizes must be sequences");
    if (list->fast == NULL)
        return -1;
    list->length = PySequence_Fast_GET_SIZE(list->fast);
    return 0;
}

/* Entry i (i < length); -1 with an exception set when a sequence holds something that is not an integer. */
static Py_ssize_t
index_list_get(const IndexList *list, Py_ssize_t i)
{
    if (list->fast == NULL)
        return (Py_ssize_t)list->data[i];
    return PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(list->fast, i));
}

static void
index_list_close(IndexList *list)
{
    Py_CLEAR(list->fast);
    if (list->view.obj != NULL)
        PyBuffer_Release(&list->view);
}

/*
 * parse_batch(buffer, starts, sizes, count, limit) -> (received_bytes, rejected, items)
 *
 * Datagram i is buffer[starts[i] : starts[i] + sizes[i]]; a size of -1 or above ``limit`` is too long.
 * A size that runs past the buffer is the caller's bug, raised as ValueError.
 * ``rejected`` counts SHORT, MAGIC, VERSION, MAC, MALFORMED in that order. ``items``, in arrival order:
 *   (1, session, sequence, flags, k, m, first_index, size, joined)  authentic fragments of one block
 *       with consecutive indices and one payload size, as they arrived one after the other: fragment
 *       first_index + i is joined[i * size : (i + 1) * size];
 *   (2, session, sequence, payload)  an authentic beacon;
 *   (3, claimed_fingerprint)  a datagram that failed the MAC but is shaped like a beacon: the
 *       fingerprint it claims, unchecked, to explain the failure, never to act on.
 */
static PyObject *
Mac_parse_batch(MacObject *self, PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t count, limit;
    PyObject *starts, *sizes;
    if (!PyArg_ParseTuple(args, "y*OOnn:parse_batch", &buffer, &starts, &sizes, &count, &limit))
        return NULL;
    PyObject *result = NULL, *items = NULL;
    IndexList starts_list = {0}, sizes_list = {0}; /* closing one never opened does nothing */
    Py_ssize_t *at = NULL, *length_of = NULL;
    unsigned char *mac_ok = NULL;
    Run run;
    run.open = 0;
    unsigned long long rejected[R_COUNT] = {0};
    long long received = 0;

    /* starts and sizes: lists of integers, or array('q') as recv_batch fills them (no object per entry). */
    if (index_list_open(&starts_list, starts, "starts") < 0)
        goto done;
    if (index_list_open(&sizes_list, sizes, "sizes") < 0)
        goto done;
    if (count < 0 || count > sizes_list.length || count > starts_list.length) {
        PyErr_SetString(PyExc_ValueError, "parse_batch: count exceeds starts or sizes");
        goto done;
    }
    items = PyList_New(0);
    /* Per datagram that passes the checks before the MAC: where it starts, its size, whether its MAC matched. */
    at = PyMem_Malloc((size_t)(count ? count : 1) * sizeof *at);
    length_of = PyMem_Malloc((size_t)(count ? count : 1) * sizeof *length_of);
    mac_ok = PyMem_Malloc((size_t)(count ? count : 1));
    if (items == NULL || at == NULL || length_of == NULL || mac_ok == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }

    /* First pass: the checks before the MAC, in their documented order. */
    Py_ssize_t candidates = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t size = index_list_get(&sizes_list, i);
        if (size == -1 && PyErr_Occurred())
            goto done;
        if (size < OVERHEAD || size > limit) {
            rejected[R_SHORT - 1]++;
            continue;
        }
        Py_ssize_t start = index_list_get(&starts_list, i);
        if (start == -1 && PyErr_Occurred())
            goto done;
        /* Not start + size > buffer.len: that overflows for a start near the top of the range. */
        if (start < 0 || start > buffer.len - size) {
            PyErr_SetString(PyExc_ValueError, "parse_batch: a datagram runs past the buffer");
            goto done;
        }
        received += size;
        const unsigned char *d = (const unsigned char *)buffer.buf + start;
        if (d[0] != 'S' || d[1] != 'D') {
            rejected[R_MAGIC - 1]++;
            continue;
        }
        if (d[2] != WIRE_VERSION) {
            rejected[R_VERSION - 1]++;
            continue;
        }
        Py_ssize_t length = ((Py_ssize_t)d[24] << 8) | d[25];
        if (HEADER_SIZE + length + MAC_SIZE != size) {
            rejected[R_SHORT - 1]++;
            continue;
        }
        at[candidates] = start;
        length_of[candidates++] = size;
    }
    /* The MACs of all that is left, then the second pass, in arrival order. */
    if (check_all(self, buffer.buf, at, length_of, candidates, mac_ok) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "parse_batch: Mac not initialised, or OpenSSL failed");
        goto done;
    }
    for (Py_ssize_t c = 0; c < candidates; c++) {
        const unsigned char *d = (const unsigned char *)buffer.buf + at[c];
        Py_ssize_t size = length_of[c], length = size - OVERHEAD;
        int kind = d[3], flags = d[4], k = d[5], m = d[6], index = d[7];
        if (!mac_ok[c]) {
            rejected[R_MAC - 1]++;
            if (kind == KIND_BEACON && size >= OVERHEAD + BEACON_PAYLOAD) {
                if (run_close(&run, items) < 0)
                    goto done;
                PyObject *item = Py_BuildValue("(iy#)", ITEM_FOREIGN_BEACON, d + HEADER_SIZE, (Py_ssize_t)FINGERPRINT_SIZE);
                if (item == NULL || PyList_Append(items, item) < 0) {
                    Py_XDECREF(item);
                    goto done;
                }
                Py_DECREF(item);
            }
            continue;
        }
        uint64_t session = load64(d + 8), sequence = load64(d + 16);
        if (kind != KIND_DATA && kind != KIND_PARITY) {
            if (kind == KIND_BEACON && !(k || m || index)) {
                if (run_close(&run, items) < 0)
                    goto done;
                PyObject *item = Py_BuildValue("(iKKy#)", ITEM_BEACON, (unsigned long long)session,
                                               (unsigned long long)sequence, d + HEADER_SIZE, length);
                if (item == NULL || PyList_Append(items, item) < 0) {
                    Py_XDECREF(item);
                    goto done;
                }
                Py_DECREF(item);
            }
            else
                rejected[R_MALFORMED - 1]++;
            continue;
        }
        if (k < 1 || m < 1 || index >= k + m || (kind == KIND_DATA) != (index < k) || length == 0) {
            rejected[R_MALFORMED - 1]++;
            continue;
        }
        if (!(run.open && run.session == session && run.sequence == sequence && run.flags == flags && run.k == k &&
              run.m == m && run.next == index && run.size == length)) {
            if (run_close(&run, items) < 0)
                goto done;
            run.open = 1;
            run.session = session;
            run.sequence = sequence;
            run.flags = flags;
            run.k = k;
            run.m = m;
            run.first = index;
            run.size = length;
            run.count = 0;
        }
        /* Indices are consecutive and below k + m <= 2 * 255, and a run starts at its first index: it
         * holds at most 255 fragments only if k + m does; close it early rather than overrun. */
        if (run.count == MAX_FRAGMENTS) {
            if (run_close(&run, items) < 0)
                goto done;
            run.open = 1;
            run.first = index;
            run.count = 0;
        }
        run.next = index + 1;
        /* The buffer outlives the run: it is released only after the last run_close below. */
        run.payload[run.count++] = d + HEADER_SIZE;
    }
    if (run_close(&run, items) < 0)
        goto done;
    result = Py_BuildValue("(L(KKKKK)O)", received, rejected[0], rejected[1], rejected[2], rejected[3], rejected[4],
                           items);
done:
    PyMem_Free(at);
    PyMem_Free(length_of);
    PyMem_Free(mac_ok);
    Py_XDECREF(items);
    index_list_close(&sizes_list);
    index_list_close(&starts_list);
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef Mac_methods[] = {
    {"pack_payload", (PyCFunction)Mac_pack_payload, METH_VARARGS,
     "pack_payload(buffer, slot, flags, k, m, session, sequence, payload, tables) -> lengths\n\n"
     "Split payload into k fragments and m parity fragments (tables: Coder().tables(k, m)) behind "
     "Seam's fragment header, and seal them as pack_block does; their lengths."},
    {"pack_block", (PyCFunction)Mac_pack_block, METH_VARARGS,
     "pack_block(buffer, slot, flags, k, m, session, sequence, fragments) -> lengths\n\n"
     "Write the datagrams of one block into buffer, datagram i at i * slot; their lengths."},
    {"parse_batch", (PyCFunction)Mac_parse_batch, METH_VARARGS,
     "parse_batch(buffer, starts, sizes, count, limit) -> (received_bytes, rejected, items)\n\n"
     "Check a batch of datagrams; authentic fragments grouped into runs, beacons, and claimed "
     "fingerprints of beacons that failed the MAC."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MacType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otseam.diode._speedups.Mac",
    .tp_doc = PyDoc_STR("Mac(key): the AES-256-GCM tag of a datagram under its session's key (HKDF of key), and the "
                        "diode's datagram packing and checks."),
    .tp_basicsize = sizeof(MacObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Mac_init,
    .tp_dealloc = (destructor)Mac_dealloc,
    .tp_call = (ternaryfunc)Mac_call,
    .tp_methods = Mac_methods,
};

static PyMethodDef speedups_methods[] = {
    {"join_fragments", speedups_join_fragments, METH_VARARGS,
     "join_fragments(joined, size, k) -> bytes | None\n\n"
     "The block of k complete data fragments laid end to end, if their headers agree; else None."},
    {"encode_columns", speedups_encode_columns, METH_VARARGS,
     "encode_columns(source, offsets, samples) -> bytes or None\n\n"
     "otseam.core.columns.encode for runs whose values are all floats or all str, byte for byte; None "
     "where the Python encoder must decide."},
    {"inspect_columns", speedups_inspect_columns, METH_VARARGS,
     "inspect_columns(payload, qualities) -> summary fields or None\n\n"
     "otseam.core.columns.inspect for the common runs (plain JSON document, float or ASCII text values, "
     "consecutive offsets): Summary's fields, or None where the Python must decide."},
#ifdef HAVE_MMSG
    {"send_batch", speedups_send_batch, METH_VARARGS,
     "send_batch(fd, address, buffer, slot, lengths, first, count, segment) -> sent\n\n"
     "sendmmsg datagrams first .. first+count-1 (datagram i at i * slot, lengths[i] long) to a packed "
     "sockaddr, runs of equal length as one segmented message if segment; how many datagrams left "
     "(0 when the socket's queue is full)."},
    {"recv_batch", speedups_recv_batch, METH_VARARGS,
     "recv_batch(fd, buffer, slot, count[, starts, sizes]) -> (starts, sizes) or count\n\n"
     "recvmmsg up to count messages, message i at i * slot, cut into datagrams where the kernel "
     "coalesced them; empty lists when none is queued."},
    {"enable_coalescing", speedups_enable_coalescing, METH_VARARGS,
     "enable_coalescing(fd) -> bool\n\nAsk the kernel for coalesced runs of datagrams (UDP_GRO)."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, .m_name = "otseam.diode._speedups",
    .m_doc = "The diode's per-datagram hot paths in C (see wire.py for the reference implementation).",
    .m_size = -1, .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&MacType) < 0)
        return NULL;
    if (PyType_Ready(&CoderType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Coder", (PyObject *)&CoderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Mac", (PyObject *)&MacType) < 0 ||
        PyModule_AddIntConstant(module, "VERSION", WIRE_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "API", SPEEDUPS_API) < 0 ||
        PyModule_AddIntConstant(module, "FRAGMENT_HEADER", FRAGMENT_HEADER) < 0 ||
        PyModule_AddIntConstant(module, "HEADER_SIZE", HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "MAC_SIZE", MAC_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "BEACON_PAYLOAD", BEACON_PAYLOAD) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_RUN", ITEM_RUN) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_BLOCK", ITEM_BLOCK) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_BEACON", ITEM_BEACON) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_FOREIGN_BEACON", ITEM_FOREIGN_BEACON) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
