#include "speedups.h"

/* --- Reed-Solomon encoding straight into the datagrams (ISA-L, as liberasurecode calls it) ----------
 *
 * pyeclib's encode copies the block into aligned buffers it allocates, computes the parity, writes
 * each fragment's 80-byte header, and copies every fragment again into a bytes object, which
 * pack_block then copies into the datagram (measured for a full block: 54 us for pyeclib's encode,
 * 176 us with the sealing; this, sealing with OpenSSL too, 132 us). Here the block is copied once,
 * into the datagram slots, ISA-L
 * (the library pyeclib's wheel bundles, loaded by path) writes the parity fragments in their slots,
 * and the fragment headers come from a template taken from pyeclib's own output. fec.py uses this
 * only after checking that it gives pyeclib's bytes exactly, and a test compares the two on random
 * blocks of every size class; the receiver decodes with pyeclib or ISA-L as before.
 */

#ifdef HAVE_CODER
#include <dlfcn.h>

#define LEC_HEADER 80
#define LEC_METADATA 59 /* the part of the header its CRC-32 covers */
#define LEC_CRC_AT 67

typedef void (*ec_encode_data_fn)(int, int, int, unsigned char *, unsigned char **, unsigned char **);
typedef void (*ec_init_tables_fn)(int, int, unsigned char *, unsigned char *);
typedef void (*gf_gen_cauchy1_matrix_fn)(unsigned char *, int, int);

typedef struct {
    PyObject_HEAD
    void *library;
    ec_encode_data_fn encode_data;
    ec_init_tables_fn init_tables;
    gf_gen_cauchy1_matrix_fn cauchy;
    unsigned char header[LEC_HEADER];
} CoderObject;

/* CRC-32 as zlib computes it (liberasurecode checksums each fragment header's metadata with zlib). */
static uint32_t crc_table[256];
/* The fragments of one block have the same header but for the index, a u32 below 256 at offset 0, and
 * a CRC is linear: crc(h with index i) = crc(h with index 0) ^ crc_index[i], with crc_index[i] the
 * CRC of the metadata-sized block holding only i, minus that of zeros. One CRC per block, not per
 * datagram (byte by byte it was a tenth of pack_payload). */
static uint32_t crc_index[MAX_FRAGMENTS + 1];

static void
crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int b = 0; b < 8; b++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t
crc32_of(const unsigned char *p, size_t size)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < size; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void
crc_index_init(void)
{
    unsigned char block[LEC_METADATA] = {0};
    uint32_t zeros = crc32_of(block, sizeof block);
    for (int i = 0; i <= MAX_FRAGMENTS; i++) {
        block[0] = (unsigned char)i;
        crc_index[i] = crc32_of(block, sizeof block) ^ zeros;
    }
}

static int
Coder_init(CoderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"library", "header", NULL};
    const char *path;
    Py_buffer header;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sy*:Coder", names, &path, &header))
        return -1;
    if (header.len != LEC_HEADER) {
        PyBuffer_Release(&header);
        PyErr_SetString(PyExc_ValueError, "Coder: the header template must be 80 bytes");
        return -1;
    }
    memcpy(self->header, header.buf, LEC_HEADER);
    PyBuffer_Release(&header);
    if (self->library != NULL)
        return 0; /* __init__ called again: keep the library already loaded */
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        PyErr_Format(PyExc_OSError, "Coder: cannot load %s", path);
        return -1;
    }
    self->encode_data = (ec_encode_data_fn)dlsym(library, "ec_encode_data");
    self->init_tables = (ec_init_tables_fn)dlsym(library, "ec_init_tables");
    self->cauchy = (gf_gen_cauchy1_matrix_fn)dlsym(library, "gf_gen_cauchy1_matrix");
    if (self->encode_data == NULL || self->init_tables == NULL || self->cauchy == NULL) {
        dlclose(library);
        PyErr_Format(PyExc_OSError, "Coder: %s is not ISA-L", path);
        return -1;
    }
    self->library = library;
    return 0;
}

static void
Coder_dealloc(CoderObject *self)
{
    if (self->library != NULL)
        dlclose(self->library);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
coder_ready(CoderObject *self)
{
    if (self->library == NULL) {
        PyErr_SetString(PyExc_ValueError, "Coder: not initialised");
        return 0;
    }
    return 1;
}

/* tables(k, m) -> bytes: ISA-L's expanded tables for the parity rows of the (k + m) x k Cauchy matrix,
 * as liberasurecode's isa_l_rs_cauchy backend builds them. */
static PyObject *
Coder_tables(CoderObject *self, PyObject *args)
{
    int k, m;
    if (!PyArg_ParseTuple(args, "ii:tables", &k, &m))
        return NULL;
    if (!coder_ready(self))
        return NULL;
    if (k < 1 || m < 1 || k + m > MAX_FRAGMENTS) {
        PyErr_SetString(PyExc_ValueError, "tables: k and m must be at least 1 and k + m at most 255");
        return NULL;
    }
    unsigned char *matrix = PyMem_Malloc((size_t)(k + m) * (size_t)k);
    if (matrix == NULL)
        return PyErr_NoMemory();
    PyObject *tables = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)32 * k * m);
    if (tables != NULL) {
        self->cauchy(matrix, k + m, k);
        self->init_tables(k, m, matrix + (size_t)k * (size_t)k, (unsigned char *)PyBytes_AS_STRING(tables));
    }
    PyMem_Free(matrix);
    return tables;
}

/*
 * rebuild(k, used, chosen, tables, missing) -> bytes | None
 *
 * What isal.Recovery.decode does after it has found the decode tables, without a Python object or a
 * copy per fragment: ``chosen`` are k fragments (liberasurecode's header, then data) with the indexes
 * ``used`` (ascending: the data fragments present, then parity), ``missing`` the data fragments to
 * rebuild with ``tables`` (from ec_init_tables; ignored when nothing is missing). None unless every
 * fragment is as long as the first, says it is the one at its index, and all agree on the data size
 * and on an original block size that k fragments can carry: the checks the Python path makes.
 */
static PyObject *
Coder_rebuild(CoderObject *self, PyObject *args)
{
    int k;
    PyObject *used, *chosen, *missing;
    Py_buffer tables;
    if (!PyArg_ParseTuple(args, "iO!O!y*O!:rebuild", &k, &PyTuple_Type, &used, &PyList_Type, &chosen, &tables,
                          &PyTuple_Type, &missing))
        return NULL;
    PyObject *result = NULL;
    const unsigned char *sources[MAX_FRAGMENTS];
    int present_data[MAX_FRAGMENTS]; /* by data index: position in chosen, or -1 if rebuilt */
    unsigned char *outputs[MAX_FRAGMENTS];
    unsigned char *scratch = NULL;
    if (!coder_ready(self))
        goto done;
    Py_ssize_t e = PyTuple_GET_SIZE(missing);
    if (k < 1 || k > MAX_FRAGMENTS || PyTuple_GET_SIZE(used) != k || PyList_GET_SIZE(chosen) != k || e > k ||
        (e > 0 && tables.len != (Py_ssize_t)32 * k * e)) {
        PyErr_SetString(PyExc_ValueError, "rebuild: k indexes and k fragments, and tables for the missing ones");
        goto done;
    }
    for (int j = 0; j < k; j++)
        present_data[j] = -1;
    Py_ssize_t length = -1;
    uint64_t original = 0, data_size = 0;
    for (int i = 0; i < k; i++) {
        PyObject *fragment = PyList_GET_ITEM(chosen, i), *index_object = PyTuple_GET_ITEM(used, i);
        if (!PyBytes_Check(fragment) || !PyLong_Check(index_object)) {
            PyErr_SetString(PyExc_TypeError, "rebuild: fragments are bytes, indexes int");
            goto done;
        }
        long index = PyLong_AsLong(index_object);
        if (index < 0 || index >= MAX_FRAGMENTS || (i > 0 && index <= PyLong_AsLong(PyTuple_GET_ITEM(used, i - 1)))) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "rebuild: indexes must ascend, below 255");
            goto done;
        }
        const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(fragment);
        Py_ssize_t size = PyBytes_GET_SIZE(fragment);
        if (i == 0) {
            if (size < LEC_HEADER)
                goto refuse;
            length = size;
            data_size = load32le(h + 4);
            original = load64le(h + 12);
            /* ISA-L takes the length as an int: no datagram comes near, but a caller could. */
            if (data_size != (uint64_t)(length - LEC_HEADER) || data_size > INT_MAX ||
                original > data_size * (uint64_t)k)
                goto refuse;
        }
        if (size != length || load32le(h) != (uint64_t)index || load32le(h + 4) != data_size ||
            load64le(h + 12) != original)
            goto refuse;
        sources[i] = h + LEC_HEADER;
        if (index < k)
            present_data[index] = i;
    }
    /* The tables rebuild exactly the absent data fragments, in ascending order. */
    Py_ssize_t absent = 0;
    for (int j = 0; j < k; j++)
        absent += present_data[j] == -1;
    if (absent != e) {
        PyErr_SetString(PyExc_ValueError, "rebuild: missing must name every absent data fragment");
        goto done;
    }
    for (Py_ssize_t t = 0; t < e; t++) {
        long index = PyLong_AsLong(PyTuple_GET_ITEM(missing, t));
        long previous = t > 0 ? PyLong_AsLong(PyTuple_GET_ITEM(missing, t - 1)) : -1;
        if (index < 0 || index >= k || present_data[index] != -1 || index <= previous) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "rebuild: missing must name every absent data fragment");
            goto done;
        }
    }
    if (e > 0 && data_size > 0) { /* fragments of no data (an empty block) have nothing to rebuild */
        scratch = PyMem_Malloc((size_t)e * (size_t)data_size);
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t t = 0; t < e; t++)
            outputs[t] = scratch + (size_t)t * (size_t)data_size;
        Py_BEGIN_ALLOW_THREADS
        self->encode_data((int)data_size, k, (int)e, (unsigned char *)tables.buf, (unsigned char **)sources, outputs);
        Py_END_ALLOW_THREADS
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)original);
    if (result == NULL)
        goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_ssize_t rebuilt = 0;
    for (int j = 0; j < k; j++) {
        uint64_t at = (uint64_t)j * data_size;
        int was_missing = present_data[j] < 0;
        if (at < original) {
            const unsigned char *from = was_missing ? outputs[rebuilt] : sources[present_data[j]];
            memcpy(out + at, from, (size_t)(original - at < data_size ? original - at : data_size));
        }
        rebuilt += was_missing;
    }
    goto done;
refuse:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(scratch);
    PyBuffer_Release(&tables);
    return result;
}

static PyMethodDef Coder_methods[] = {
    {"tables", (PyCFunction)Coder_tables, METH_VARARGS,
     "tables(k, m) -> bytes\n\nISA-L's encoding tables for k data and m parity fragments (32 * k * m bytes)."},
    {"rebuild", (PyCFunction)Coder_rebuild, METH_VARARGS,
     "rebuild(k, used, chosen, tables, missing) -> bytes | None\n\nThe block from k fragments, lost data "
     "fragments rebuilt with the decode tables; None if the fragments do not fit together."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject CoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otseam.diode._speedups.Coder",
    .tp_doc = PyDoc_STR("Coder(library, header): ISA-L's Reed-Solomon encoder, loaded from library, with "
                        "liberasurecode's 80-byte fragment header template."),
    .tp_basicsize = sizeof(CoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Coder_init,
    .tp_dealloc = (destructor)Coder_dealloc,
    .tp_methods = Coder_methods,
};

/*
 * Mac.pack_payload(buffer, slot, flags, k, m, session, sequence, payload, coder, tables) -> lengths
 *
 * What pyeclib's encode followed by pack_block gives, without the fragments as objects: the block
 * split into k fragments of ceil(len / k) bytes (the last padded with zeros), m parity fragments,
 * each behind liberasurecode's header, sealed into datagram i at i * slot.
 */
PyObject *
Mac_pack_payload(MacObject *self, PyObject *args)
{
    Py_buffer buffer, payload, tables;
    Py_ssize_t slot;
    int flags, k, m;
    unsigned long long session, sequence;
    CoderObject *coder;
    if (!PyArg_ParseTuple(args, "w*niiiO&O&y*O!y*:pack_payload", &buffer, &slot, &flags, &k, &m, to_u64, &session,
                          to_u64, &sequence, &payload, &CoderType, &coder, &tables))
        return NULL;
    PyObject *lengths = NULL;
    unsigned char *data[MAX_FRAGMENTS], *parity[MAX_FRAGMENTS];
    int count = k + m;
    if (!coder_ready(coder))
        goto done;
    if (flags < 0 || flags > 255 || k < 1 || k > 255 || m < 1 || m > 255 || count > MAX_FRAGMENTS) {
        PyErr_SetString(PyExc_ValueError, "pack_payload: flags, k and m must fit a byte, k + m at most 255");
        goto done;
    }
    if (payload.len < 1 || tables.len != (Py_ssize_t)32 * k * m) {
        PyErr_SetString(PyExc_ValueError, "pack_payload: an empty block, or tables not made for this k and m");
        goto done;
    }
    /* Divisions, not products, so that nothing can overflow and pass. */
    Py_ssize_t size = (payload.len - 1) / k + 1; /* ceil(len / k), without len + k - 1 overflowing */
    if (slot < OVERHEAD + LEC_HEADER || size > 0xffff - LEC_HEADER || size > slot - OVERHEAD - LEC_HEADER ||
        slot > buffer.len / count) {
        PyErr_SetString(PyExc_ValueError, "pack_payload: the fragments do not fit the buffer's datagrams");
        goto done;
    }
    Py_ssize_t fragment = LEC_HEADER + size, datagram = HEADER_SIZE + fragment + MAC_SIZE;
    unsigned char *base = (unsigned char *)buffer.buf;
    for (int i = 0; i < count; i++) {
        unsigned char *chunk = base + (Py_ssize_t)i * slot + HEADER_SIZE + LEC_HEADER;
        if (i < k) {
            data[i] = chunk;
            Py_ssize_t at = (Py_ssize_t)i * size;
            Py_ssize_t have = payload.len - at < 0 ? 0 : (payload.len - at < size ? payload.len - at : size);
            if (have > 0)
                memcpy(chunk, (const unsigned char *)payload.buf + at, (size_t)have);
            memset(chunk + have, 0, (size_t)(size - have));
        }
        else
            parity[i - k] = chunk;
    }
    Py_BEGIN_ALLOW_THREADS
    coder->encode_data((int)size, k, m, (unsigned char *)tables.buf, data, parity);
    Py_END_ALLOW_THREADS
    unsigned char first[LEC_HEADER]; /* fragment 0's header; the others differ in index and CRC */
    memcpy(first, coder->header, LEC_HEADER);
    store_le32(first, 0);
    store_le32(first + 4, (uint32_t)size);
    store_le64(first + 12, (uint64_t)payload.len);
    uint32_t crc = crc32_of(first, LEC_METADATA);
    PyObject *length = PyLong_FromSsize_t(datagram); /* one object for all: the datagrams are one size */
    lengths = length == NULL ? NULL : PyList_New(count);
    if (lengths == NULL) {
        Py_XDECREF(length);
        goto done;
    }
    for (int i = 0; i < count; i++) {
        unsigned char *out = base + (Py_ssize_t)i * slot, *header = out + HEADER_SIZE;
        write_header(out, flags, k, m, (int)i, session, sequence, fragment);
        memcpy(header, first, LEC_HEADER);
        store_le32(header, (uint32_t)i);
        store_le32(header + LEC_CRC_AT, crc ^ crc_index[i]);
        PyList_SET_ITEM(lengths, i, Py_NewRef(length));
    }
    Py_DECREF(length);
    seal_all(self, base, slot, HEADER_SIZE + fragment, count);
done:
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&payload);
    PyBuffer_Release(&tables);
    return lengths;
}

/* At import: the CRC tables for liberasurecode's fragment headers. */
void
coder_init(void)
{
    crc_init();
    crc_index_init();
}

#endif /* HAVE_CODER */
