#include "speedups.h"

#include <isa-l/erasure_code.h>

/* --- Reed-Solomon with Intel ISA-L (linked; Debian: libisal-dev), and Seam's fragment header --------
 *
 * A block of L bytes becomes k data fragments of d = ceil(L / k) bytes (the last padded with zeros)
 * and m parity fragments of d bytes, computed with the parity rows of ISA-L's (k + m) x k Cauchy
 * matrix: every k x k submatrix of it is invertible, so any k of the k + m fragments rebuild the
 * block. Each fragment travels behind Seam's 4-byte fragment header, the block length L (u32,
 * big-endian); the datagram header carries k, m and the fragment's index, under the MAC. Nothing here
 * reproduces another library's private format.
 *
 * The sender's pack_payload copies the block once, into the datagram slots, has ISA-L write the
 * parity in its slots, and seals the datagrams. The receiver joins the data fragments of a complete
 * block (join_fragments) or rebuilds the lost ones (rebuild) with decode tables that depend only on
 * which fragments arrived, computed by decode_tables and cached per pattern by fec.py.
 */

/* d for a block of ``length`` bytes in k fragments; the block length a fragment header may claim is
 * then any L with ceil(L / k) == d, which is how the receiver checks it. */
static inline Py_ssize_t
fragment_data(Py_ssize_t length, int k)
{
    return (length - 1) / k + 1; /* ceil, without length + k - 1 overflowing */
}

/* Is ``claimed`` a block length that k fragments of ``data`` bytes carry exactly as the sender
 * splits it? */
static inline int
plausible_length(uint64_t claimed, uint64_t data, uint64_t k)
{
    return claimed >= 1 && data >= 1 && (claimed - 1) / k + 1 == data;
}

typedef struct {
    PyObject_HEAD
} CoderObject;

static int
check_shape(int k, int m)
{
    if (k < 1 || m < 1 || k + m > MAX_FRAGMENTS) {
        PyErr_SetString(PyExc_ValueError, "k and m must be at least 1 and k + m at most 255");
        return 0;
    }
    return 1;
}

/* tables(k, m) -> bytes: ISA-L's expanded tables for the parity rows of the (k + m) x k Cauchy matrix. */
static PyObject *
Coder_tables(CoderObject *self, PyObject *args)
{
    int k, m;
    if (!PyArg_ParseTuple(args, "ii:tables", &k, &m) || !check_shape(k, m))
        return NULL;
    unsigned char *matrix = PyMem_Malloc((size_t)(k + m) * (size_t)k);
    if (matrix == NULL)
        return PyErr_NoMemory();
    PyObject *tables = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)32 * k * m);
    if (tables != NULL) {
        gf_gen_cauchy1_matrix(matrix, k + m, k);
        ec_init_tables(k, m, matrix + (size_t)k * (size_t)k, (unsigned char *)PyBytes_AS_STRING(tables));
    }
    PyMem_Free(matrix);
    return tables;
}

/* The k data fragments (header and data) of ``block`` written at out[i], and the m parity ones. */
static void
encode_into(int k, int m, const unsigned char *tables, const unsigned char *block, Py_ssize_t length,
            unsigned char *out[])
{
    Py_ssize_t size = fragment_data(length, k);
    unsigned char *data[MAX_FRAGMENTS], *parity[MAX_FRAGMENTS];
    for (int i = 0; i < k + m; i++) {
        store32(out[i], (uint32_t)length);
        unsigned char *chunk = out[i] + FRAGMENT_HEADER;
        if (i < k) {
            data[i] = chunk;
            Py_ssize_t at = (Py_ssize_t)i * size;
            Py_ssize_t have = length - at < 0 ? 0 : (length - at < size ? length - at : size);
            if (have > 0)
                memcpy(chunk, block + at, (size_t)have);
            memset(chunk + have, 0, (size_t)(size - have));
        }
        else
            parity[i - k] = chunk;
    }
    ec_encode_data((int)size, k, m, (unsigned char *)tables, data, parity);
}

static int
check_block(Py_ssize_t length, int k, Py_ssize_t tables, int m)
{
    if (length < 1 || length > UINT32_MAX || tables != (Py_ssize_t)32 * k * m) {
        PyErr_SetString(PyExc_ValueError, "an empty or oversized block, or tables not made for this k and m");
        return 0;
    }
    if (fragment_data(length, k) > 0xffff - FRAGMENT_HEADER) {
        PyErr_SetString(PyExc_ValueError, "the fragments of this block would not fit a datagram");
        return 0;
    }
    return 1;
}

/* encode(k, m, tables, block) -> list of k + m fragments (Seam's header, then data) */
static PyObject *
Coder_encode(CoderObject *self, PyObject *args)
{
    int k, m;
    Py_buffer tables, block;
    if (!PyArg_ParseTuple(args, "iiy*y*:encode", &k, &m, &tables, &block))
        return NULL;
    PyObject *result = NULL;
    unsigned char *out[MAX_FRAGMENTS];
    if (!check_shape(k, m) || !check_block(block.len, k, tables.len, m))
        goto done;
    Py_ssize_t size = FRAGMENT_HEADER + fragment_data(block.len, k);
    result = PyList_New(k + m);
    if (result == NULL)
        goto done;
    for (int i = 0; i < k + m; i++) {
        PyObject *fragment = PyBytes_FromStringAndSize(NULL, size);
        if (fragment == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        out[i] = (unsigned char *)PyBytes_AS_STRING(fragment);
        PyList_SET_ITEM(result, i, fragment);
    }
    encode_into(k, m, tables.buf, block.buf, block.len, out);
done:
    PyBuffer_Release(&tables);
    PyBuffer_Release(&block);
    return result;
}

/*
 * decode_tables(k, m, used) -> bytes | None
 *
 * ``used``: k ascending fragment indexes, the data fragments present then e parity ones. The tables
 * (for ec_encode_data, 32 * k * e bytes) that turn those k fragments, in that order, into the e data
 * fragments missing from them, ascending. Only an e x e matrix is inverted: with D the present data
 * fragments, E the missing ones and P the parity rows used, d_E = A[P,E]^-1 (p_P + A[P,D] d_D)
 * (addition is XOR in GF(2^8)). None if it cannot be inverted (never, for a Cauchy matrix).
 */
static PyObject *
Coder_decode_tables(CoderObject *self, PyObject *args)
{
    int k, m;
    PyObject *used_object;
    if (!PyArg_ParseTuple(args, "iiO!:decode_tables", &k, &m, &PyTuple_Type, &used_object) || !check_shape(k, m))
        return NULL;
    if (PyTuple_GET_SIZE(used_object) != k) {
        PyErr_SetString(PyExc_ValueError, "decode_tables: k indexes");
        return NULL;
    }
    int used[MAX_FRAGMENTS], missing[MAX_FRAGMENTS], present[MAX_FRAGMENTS] = {0};
    int e = 0;
    for (int i = 0; i < k; i++) {
        long index = PyLong_AsLong(PyTuple_GET_ITEM(used_object, i));
        if (index == -1 && PyErr_Occurred())
            return NULL;
        if (index < 0 || index >= k + m || (i > 0 && index <= used[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "decode_tables: indexes must ascend, below k + m");
            return NULL;
        }
        used[i] = (int)index;
        if (index < k)
            present[index] = 1;
    }
    for (int j = 0; j < k; j++)
        if (!present[j])
            missing[e++] = j;
    int d = k - e; /* used[0 .. d) are data, used[d .. k) parity */
    if (e == 0)
        return PyBytes_FromStringAndSize(NULL, 0);
    PyObject *result = NULL;
    unsigned char *matrix = PyMem_Malloc((size_t)(k + m) * (size_t)k);
    unsigned char *square = PyMem_Malloc((size_t)e * (size_t)e), *inverse = PyMem_Malloc((size_t)e * (size_t)e);
    unsigned char *rows = PyMem_Calloc((size_t)e * (size_t)k, 1);
    if (matrix == NULL || square == NULL || inverse == NULL || rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    gf_gen_cauchy1_matrix(matrix, k + m, k);
    for (int s = 0; s < e; s++)
        for (int t = 0; t < e; t++)
            square[s * e + t] = matrix[(size_t)used[d + s] * k + missing[t]];
    if (gf_invert_matrix(square, inverse, e) != 0) { /* works in place on square */
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* Row t: (C A[P,D]) row t over the present data columns, then C row t over the parity columns. */
    for (int t = 0; t < e; t++) {
        unsigned char *row = rows + (size_t)t * k;
        for (int j = 0; j < d; j++) {
            unsigned char sum = 0;
            for (int s = 0; s < e; s++)
                sum ^= gf_mul(inverse[t * e + s], matrix[(size_t)used[d + s] * k + used[j]]);
            row[j] = sum;
        }
        for (int s = 0; s < e; s++)
            row[d + s] = inverse[t * e + s];
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)32 * k * e);
    if (result != NULL)
        ec_init_tables(k, e, rows, (unsigned char *)PyBytes_AS_STRING(result));
done:
    PyMem_Free(matrix);
    PyMem_Free(square);
    PyMem_Free(inverse);
    PyMem_Free(rows);
    return result;
}

/*
 * rebuild(k, used, chosen, tables, missing) -> bytes | None
 *
 * ``chosen`` are k fragments (Seam's header, then data) with the indexes ``used`` (ascending: the data
 * fragments present, then parity), ``missing`` the data fragments to rebuild with ``tables`` (from
 * decode_tables; ignored when nothing is missing). None unless every fragment is as long as the first
 * and all claim the same block length, one that k fragments of their size carry.
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
    long previous = -1;
    for (int i = 0; i < k; i++) {
        PyObject *fragment = PyList_GET_ITEM(chosen, i), *index_object = PyTuple_GET_ITEM(used, i);
        if (!PyBytes_Check(fragment) || !PyLong_Check(index_object)) {
            PyErr_SetString(PyExc_TypeError, "rebuild: fragments are bytes, indexes int");
            goto done;
        }
        long index = PyLong_AsLong(index_object);
        if (index < 0 || index >= MAX_FRAGMENTS || index <= previous) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "rebuild: indexes must ascend, below 255");
            goto done;
        }
        previous = index;
        const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(fragment);
        Py_ssize_t size = PyBytes_GET_SIZE(fragment);
        if (i == 0) {
            if (size <= FRAGMENT_HEADER)
                goto refuse;
            length = size;
            data_size = (uint64_t)(size - FRAGMENT_HEADER);
            original = load32(h);
            if (!plausible_length(original, data_size, (uint64_t)k))
                goto refuse;
        }
        if (size != length || load32(h) != original)
            goto refuse;
        sources[i] = h + FRAGMENT_HEADER;
        if (index < k)
            present_data[index] = i;
    }
    Py_ssize_t absent = 0;
    for (int j = 0; j < k; j++)
        absent += present_data[j] == -1;
    if (absent != e) {
        PyErr_SetString(PyExc_ValueError, "rebuild: missing must name every absent data fragment");
        goto done;
    }
    previous = -1;
    for (Py_ssize_t t = 0; t < e; t++) {
        long index = PyLong_AsLong(PyTuple_GET_ITEM(missing, t));
        if (index < 0 || index >= k || present_data[index] != -1 || index <= previous) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "rebuild: missing must name every absent data fragment");
            goto done;
        }
        previous = index;
    }
    if (e > 0) {
        scratch = PyMem_Malloc((size_t)e * (size_t)data_size);
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t t = 0; t < e; t++)
            outputs[t] = scratch + (size_t)t * (size_t)data_size;
        Py_BEGIN_ALLOW_THREADS
        ec_encode_data((int)data_size, k, (int)e, (unsigned char *)tables.buf, (unsigned char **)sources, outputs);
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
    {"encode", (PyCFunction)Coder_encode, METH_VARARGS,
     "encode(k, m, tables, block) -> list of bytes\n\nThe k data and m parity fragments of block, each behind "
     "Seam's fragment header."},
    {"decode_tables", (PyCFunction)Coder_decode_tables, METH_VARARGS,
     "decode_tables(k, m, used) -> bytes | None\n\nTables that rebuild the data fragments missing from the k "
     "fragments used (ascending indexes)."},
    {"rebuild", (PyCFunction)Coder_rebuild, METH_VARARGS,
     "rebuild(k, used, chosen, tables, missing) -> bytes | None\n\nThe block from k fragments, lost data "
     "fragments rebuilt with the decode tables; None if the fragments do not fit together."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject CoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otseam.diode._speedups.Coder",
    .tp_doc = PyDoc_STR("Coder(): Reed-Solomon with ISA-L's Cauchy matrix and Seam's fragment header."),
    .tp_basicsize = sizeof(CoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = Coder_methods,
};

/*
 * Mac.pack_payload(buffer, slot, flags, k, m, session, sequence, payload, tables) -> lengths
 *
 * Coder.encode followed by pack_block, without the fragments as objects: the fragments are written in
 * their datagrams (datagram i at i * slot), ISA-L writes the parity in place, and all are sealed.
 */
PyObject *
Mac_pack_payload(MacObject *self, PyObject *args)
{
    Py_buffer buffer, payload, tables;
    Py_ssize_t slot;
    int flags, k, m;
    unsigned long long session, sequence;
    if (!PyArg_ParseTuple(args, "w*niiiO&O&y*y*:pack_payload", &buffer, &slot, &flags, &k, &m, to_u64, &session,
                          to_u64, &sequence, &payload, &tables))
        return NULL;
    PyObject *lengths = NULL;
    unsigned char *out[MAX_FRAGMENTS];
    int count = k + m;
    if (!mac_ready(self)) {
        PyErr_SetString(PyExc_RuntimeError, "pack_payload: Mac not initialised");
        goto done;
    }
    if (flags < 0 || flags > 255) {
        PyErr_SetString(PyExc_ValueError, "pack_payload: flags must fit a byte");
        goto done;
    }
    if (!check_shape(k, m) || !check_block(payload.len, k, tables.len, m))
        goto done;
    Py_ssize_t fragment = FRAGMENT_HEADER + fragment_data(payload.len, k);
    /* Divisions, not products, so that nothing can overflow and pass. */
    if (slot < OVERHEAD + fragment || slot > buffer.len / count) {
        PyErr_SetString(PyExc_ValueError, "pack_payload: the fragments do not fit the buffer's datagrams");
        goto done;
    }
    unsigned char *base = (unsigned char *)buffer.buf;
    for (int i = 0; i < count; i++) {
        write_header(base + (Py_ssize_t)i * slot, flags, k, m, i, session, sequence, fragment);
        out[i] = base + (Py_ssize_t)i * slot + HEADER_SIZE;
    }
    Py_BEGIN_ALLOW_THREADS
    encode_into(k, m, tables.buf, payload.buf, payload.len, out);
    Py_END_ALLOW_THREADS
    if (seal_all(self, base, slot, HEADER_SIZE + fragment, count) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "pack_payload: OpenSSL could not compute a MAC");
        goto done;
    }
    PyObject *length = PyLong_FromSsize_t(HEADER_SIZE + fragment + MAC_SIZE); /* the datagrams are one size */
    lengths = length == NULL ? NULL : PyList_New(count);
    if (lengths == NULL) {
        Py_XDECREF(length);
        goto done;
    }
    for (int i = 0; i < count; i++)
        PyList_SET_ITEM(lengths, i, Py_NewRef(length));
    Py_DECREF(length);
done:
    PyBuffer_Release(&buffer);
    PyBuffer_Release(&payload);
    PyBuffer_Release(&tables);
    return lengths;
}

/*
 * join_fragments(joined, size, k) -> bytes | None
 *
 * The block carried by k data fragments of ``size`` bytes each (Seam's header, then data), laid end to
 * end in ``joined`` (which may hold more fragments after them, parity, ignored). With every data
 * fragment present, decoding is only this concatenation. None unless all k claim the same block
 * length, one that k fragments of this size carry: the checks rebuild makes (tested against it).
 */
PyObject *
speedups_join_fragments(PyObject *module, PyObject *args)
{
    Py_buffer joined;
    Py_ssize_t size, k;
    if (!PyArg_ParseTuple(args, "y*nn:join_fragments", &joined, &size, &k))
        return NULL;
    PyObject *result = NULL;
    if (k < 1 || k > MAX_FRAGMENTS || size < 1 || size > 0xffff || joined.len / size < k) {
        PyErr_SetString(PyExc_ValueError, "join_fragments: k or size out of range, or fewer than k fragments");
        goto done;
    }
    const unsigned char *base = joined.buf;
    if (size <= FRAGMENT_HEADER) { /* no room for a header and data (found by the fuzzer: read past it) */
        result = Py_NewRef(Py_None);
        goto done;
    }
    uint64_t data = (uint64_t)(size - FRAGMENT_HEADER);
    uint64_t original = load32(base);
    if (!plausible_length(original, data, (uint64_t)k)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (Py_ssize_t i = 1; i < k; i++)
        if (load32(base + i * size) != original) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)original);
    if (result == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    uint64_t left = original;
    for (Py_ssize_t i = 0; i < k && left; i++) {
        size_t part = left < data ? (size_t)left : (size_t)data;
        memcpy(out, base + i * size + FRAGMENT_HEADER, part);
        out += part;
        left -= part;
    }
done:
    PyBuffer_Release(&joined);
    return result;
}
