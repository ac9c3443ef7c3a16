/*
 * A coverage-guided fuzzer (libFuzzer, clang) for every entry point of the diode's C module that sees
 * bytes from the network or the disk, built together with the module's sources under AddressSanitizer
 * and UndefinedBehaviorSanitizer (`make fuzz`; any report fails it).
 *
 * The module is linked in and registered as the built-in "_speedups_fuzz"; the Python interpreter is
 * embedded so that the functions run exactly as the receiver calls them. The first input byte picks
 * the target, the rest is its input:
 *
 *   0  recv_batch then parse_batch: the input, cut into datagrams (2-byte length prefixes), goes through
 *      a real datagram socket pair, recvmmsg (recv_batch) and the checks (parse_batch); with bit 7 of the
 *      selector set, every datagram is first sealed with the key, so that the checks after the MAC see
 *      authentic but arbitrary headers and payloads. Selectors 0, 10, 20, ... pass the positions as
 *      lists; 5, 15, 25, ... as the array('q') buffers the receiver has recv_batch fill in place.
 *   1  join_fragments(data, size, k)
 *   2  Coder.encode, then Coder.decode_tables and Coder.rebuild after losing fragments (a bitmask from
 *      the input): the block must come back byte for byte; then with one byte of a fragment changed
 *   3  the column decoders (otseam.core.columns.decode and inspect; Python, so libFuzzer's coverage
 *      guidance does not see inside them: they are fed every input of this target, and any exception
 *      other than ColumnsError aborts), and the C inspector (inspect_columns), which must accept only
 *      what columns.inspect accepts, with the same summary
 *   4  the block decoder (otseam.diode.blocks.decode, the same remark), BlockError being the only refusal
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

PyMODINIT_FUNC PyInit__speedups(void);

#define KEY "fuzz-key-fuzz-key-fuzz-key-fuzz!"
#define OVERHEAD 42
#define SLOT 1473
#define MAX_INDEX 255

static PyObject *starts_array, *sizes_array; /* array('q'), room for every datagram of one recv_batch */
static PyObject *module, *mac, *coder, *columns_decode, *columns_inspect, *columns_error, *columns_summary,
    *blocks_decode, *blocks_error;
static long qualities;
static int pair[2];

static void
fail(const char *what)
{
    fprintf(stderr, "fuzz harness: %s\n", what);
    PyErr_Print();
    abort();
}

static PyObject *
attribute(const char *module_name, const char *name)
{
    PyObject *m = PyImport_ImportModule(module_name);
    if (m == NULL)
        fail(module_name);
    PyObject *value = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    if (value == NULL)
        fail(name);
    return value;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (PyImport_AppendInittab("_speedups_fuzz", PyInit__speedups) < 0)
        abort();
    Py_Initialize();
    module = PyImport_ImportModule("_speedups_fuzz");
    if (module == NULL)
        fail("import _speedups_fuzz");
    mac = PyObject_CallMethod(module, "Mac", "y", KEY);
    coder = PyObject_CallMethod(module, "Coder", NULL);
    if (mac == NULL || coder == NULL)
        fail("Mac or Coder");
    columns_decode = attribute("otseam.core.columns", "decode");
    columns_inspect = attribute("otseam.core.columns", "inspect");
    columns_error = attribute("otseam.core.columns", "ColumnsError");
    columns_summary = attribute("otseam.core.columns", "Summary");
    PyObject *quality = attribute("otseam.core.records", "Quality");
    qualities = (long)PyObject_Length(quality);
    Py_DECREF(quality);
    blocks_decode = attribute("otseam.diode.blocks", "decode");
    blocks_error = attribute("otseam.diode.blocks", "BlockError");
    PyObject *array_type = attribute("array", "array");
    PyObject *zeros = PyBytes_FromStringAndSize(NULL, 8 * 64 * (SLOT / OVERHEAD + 1));
    if (zeros == NULL)
        fail("zeros");
    memset(PyBytes_AS_STRING(zeros), 0, (size_t)PyBytes_GET_SIZE(zeros));
    starts_array = PyObject_CallFunction(array_type, "sO", "q", zeros);
    sizes_array = PyObject_CallFunction(array_type, "sO", "q", zeros);
    Py_DECREF(zeros);
    Py_DECREF(array_type);
    if (starts_array == NULL || sizes_array == NULL)
        fail("array('q')");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) < 0)
        abort();
    int size = 4 << 20;
    setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return 0;
}

/* A call that may refuse its arguments (ValueError, TypeError, OverflowError) but nothing else. */
static void
expect(PyObject *result)
{
    if (result != NULL) {
        Py_DECREF(result);
        return;
    }
    if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError) ||
        PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        return;
    }
    fail("unexpected exception");
}

static void
receive_and_check(const uint8_t *data, size_t size, int seal, int arrays)
{
    uint8_t datagram[4096];
    size_t at = 0;
    int sent = 0;
    while (at + 2 <= size && sent < 64) {
        size_t length = ((size_t)data[at] << 8 | data[at + 1]) % 2048;
        at += 2;
        if (length > size - at)
            length = size - at;
        memcpy(datagram, data + at, length);
        at += length;
        if (seal && length >= OVERHEAD) {
            PyObject *tag = PyObject_CallFunction(mac, "y#", datagram, (Py_ssize_t)(length - 16));
            if (tag == NULL)
                fail("Mac()");
            memcpy(datagram + length - 16, PyBytes_AS_STRING(tag), 16);
            Py_DECREF(tag);
        }
        if (send(pair[0], datagram, length, MSG_DONTWAIT) < 0)
            break;
        sent++;
    }
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, SLOT * 64);
    if (buffer == NULL)
        fail("buffer");
    for (;;) {
        PyObject *got, *starts, *sizes;
        Py_ssize_t count;
        if (arrays) {
            got = PyObject_CallMethod(module, "recv_batch", "iOnnOO", pair[1], buffer, (Py_ssize_t)SLOT,
                                      (Py_ssize_t)64, starts_array, sizes_array);
            if (got == NULL)
                fail("recv_batch into arrays");
            count = PyLong_AsSsize_t(got);
            starts = starts_array;
            sizes = sizes_array;
        }
        else {
            got = PyObject_CallMethod(module, "recv_batch", "iOnn", pair[1], buffer, (Py_ssize_t)SLOT, (Py_ssize_t)64);
            if (got == NULL)
                fail("recv_batch");
            starts = PyTuple_GET_ITEM(got, 0);
            sizes = PyTuple_GET_ITEM(got, 1);
            count = PyList_GET_SIZE(starts);
        }
        if (count == 0) {
            Py_DECREF(got);
            break;
        }
        PyObject *checked =
            PyObject_CallMethod(mac, "parse_batch", "OOOnn", buffer, starts, sizes, count, (Py_ssize_t)(SLOT - 1));
        Py_DECREF(got);
        if (checked == NULL)
            fail("parse_batch");
        Py_DECREF(checked);
    }
    Py_DECREF(buffer);
}

/* Target 2: a block (the input after 4 bytes) encoded with k data and m parity fragments, some of them
 * lost (a bitmask from the input), rebuilt: it must give the block back, byte for byte (an oracle, not
 * only the sanitizers). Then the same with one byte of one fragment changed: any answer but a crash. */
static void
rebuild(const uint8_t *data, size_t size)
{
    if (size < 5)
        return;
    int k = data[0] % 64 + 1, m = data[1] % 16 + 1;
    uint32_t mask = (uint32_t)data[2] << 8 | data[3];
    const uint8_t *block = data + 4;
    Py_ssize_t length = (Py_ssize_t)(size - 4);
    PyObject *tables = PyObject_CallMethod(coder, "tables", "ii", k, m);
    if (tables == NULL)
        fail("tables");
    PyObject *fragments = PyObject_CallMethod(coder, "encode", "iiOy#", k, m, tables, block, length);
    Py_DECREF(tables);
    if (fragments == NULL) {
        expect(NULL); /* a block too large for its fragments is refused */
        return;
    }
    int kept[MAX_INDEX], count = 0, present[MAX_INDEX] = {0};
    for (int i = 0; i < k + m && count < k; i++)
        if (mask >> (i % 16) & 1 || i >= 16) { /* lose some of the first 16, as the mask says */
            kept[count++] = i;
            present[i] = 1;
        }
    for (int i = 0; i < k + m && count < k; i++) /* too many lost: take the lowest left, in order */
        if (!present[i]) {
            present[i] = 1;
            count++;
        }
    count = 0;
    for (int i = 0; i < k + m && count < k; i++)
        if (present[i])
            kept[count++] = i;
    PyObject *used = PyTuple_New(k), *chosen = PyList_New(k), *missing_list = PyList_New(0);
    for (int i = 0; i < k; i++) {
        PyTuple_SET_ITEM(used, i, PyLong_FromLong(kept[i]));
        PyObject *fragment = PyList_GET_ITEM(fragments, kept[i]);
        Py_INCREF(fragment);
        PyList_SET_ITEM(chosen, i, fragment);
    }
    for (int j = 0; j < k; j++)
        if (!present[j]) {
            PyObject *number = PyLong_FromLong(j);
            PyList_Append(missing_list, number);
            Py_DECREF(number);
        }
    PyObject *missing = PyList_AsTuple(missing_list);
    Py_DECREF(missing_list);
    PyObject *decode = PyObject_CallMethod(coder, "decode_tables", "iiO", k, m, used);
    if (decode == NULL || decode == Py_None)
        fail("decode_tables refused a valid pattern");
    PyObject *result = PyObject_CallMethod(coder, "rebuild", "iOOOO", k, used, chosen, decode, missing);
    if (result == NULL || !PyBytes_Check(result) || PyBytes_GET_SIZE(result) != length ||
        memcmp(PyBytes_AS_STRING(result), block, (size_t)length) != 0)
        fail("rebuild did not give the block back");
    Py_DECREF(result);
    /* One byte changed, in the header or the data of one fragment. */
    int which = data[2] % k;
    PyObject *original = PyList_GET_ITEM(chosen, which);
    Py_ssize_t fragment_size = PyBytes_GET_SIZE(original);
    PyObject *changed = PyBytes_FromStringAndSize(PyBytes_AS_STRING(original), fragment_size);
    PyBytes_AS_STRING(changed)[data[3] % fragment_size] ^= (char)(data[1] | 1);
    PyList_SET_ITEM(chosen, which, changed); /* steals changed, releases original's reference */
    Py_DECREF(original);
    expect(PyObject_CallMethod(coder, "rebuild", "iOOOO", k, used, chosen, decode, missing));
    Py_DECREF(decode);
    Py_DECREF(used);
    Py_DECREF(chosen);
    Py_DECREF(missing);
    Py_DECREF(fragments);
}

/* A Python decoder: returns, or raises its own refusal (``refusal``); anything else is a bug. */
static void
decode_with(PyObject *decoder, PyObject *refusal, const uint8_t *data, size_t size)
{
    PyObject *result = PyObject_CallFunction(decoder, "y#", data, (Py_ssize_t)size);
    if (result != NULL) {
        Py_DECREF(result);
        return;
    }
    if (PyErr_ExceptionMatches(refusal)) {
        PyErr_Clear();
        return;
    }
    fail("a decoder raised something other than its refusal");
}

/* The C inspector accepts only what columns.inspect accepts, with the same summary (compared by repr, so
 * that a NaN timestamp equals itself). */
static void
inspect_agrees(const uint8_t *data, size_t size)
{
    PyObject *fields = PyObject_CallMethod(module, "inspect_columns", "y#l", data, (Py_ssize_t)size, qualities);
    if (fields == NULL)
        fail("inspect_columns raised");
    if (fields == Py_None) {
        Py_DECREF(fields);
        return;
    }
    PyObject *reference = PyObject_CallFunction(columns_inspect, "y#", data, (Py_ssize_t)size);
    if (reference == NULL)
        fail("inspect_columns accepted what columns.inspect refuses");
    PyObject *ours = PyObject_CallObject(columns_summary, fields);
    PyObject *a = ours == NULL ? NULL : PyObject_Repr(ours), *b = PyObject_Repr(reference);
    if (a == NULL || b == NULL || PyUnicode_Compare(a, b) != 0)
        fail("inspect_columns and columns.inspect disagree on a summary");
    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(ours);
    Py_DECREF(reference);
    Py_DECREF(fields);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int target = data[0] & 0x7f, flag = data[0] & 0x80;
    data++;
    size--;
    switch (target % 5) {
    case 0:
        receive_and_check(data, size, flag, (target / 5) % 2);
        break;
    case 1:
        if (size >= 3)
            expect(PyObject_CallMethod(module, "join_fragments", "y#nn", data + 3, (Py_ssize_t)(size - 3),
                                       (Py_ssize_t)((data[0] << 8 | data[1]) + 1), (Py_ssize_t)(data[2] + 1)));
        break;
    case 2:
        rebuild(data, size);
        break;
    case 3:
        decode_with(columns_decode, columns_error, data, size);
        decode_with(columns_inspect, columns_error, data, size);
        inspect_agrees(data, size);
        break;
    case 4:
        decode_with(blocks_decode, blocks_error, data, size);
        break;
    }
    return 0;
}
