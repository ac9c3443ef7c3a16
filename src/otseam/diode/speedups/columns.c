#include "speedups.h"

/* --- The columnar sample format (otseam.core.columns), encoded in one pass ---------------------------
 *
 * columns.encode in Python zips the samples into five tuples, packs each column into an array, joins
 * the text values, encodes them, and joins everything again: five copies of the bulk and a Python
 * object per step, about a third of the sender's CPU per block. Here the common cases (every value a
 * float, or every value a str) are written straight into one bytes object. Anything else (other value
 * types, subclasses, a lone surrogate, a field of an unexpected type or range) returns None and the
 * Python encoder, the reference, does the work: so the result is either byte for byte what it gives,
 * or it is not produced here at all (a differential test holds the two together).
 */

#define COLUMNS_TAG 3
#define COLUMNS_HEAD 10 /* u8 tag, u32 count, u32 json length, u8 value kind */
#define VALUES_FLOAT 1
#define VALUES_TEXT 2

static inline void
store_double(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits); /* the array module stores a double's bits as they are (NaN too) */
    store_le64(p, bits);
}

/* The UTF-8 of an exact str: its own data when it is ASCII, else a new bytes object kept in ``keep``.
 * 0 with no exception set when it has none (a lone surrogate), -1 with an exception on a real error. */
static int
utf8_of(PyObject *text, PyObject *keep, const char **data, Py_ssize_t *size)
{
    if (PyUnicode_READY(text) < 0) /* a no-op but for strings made with the old C API (Python < 3.12) */
        return -1;
    if (PyUnicode_IS_ASCII(text)) {
        *data = (const char *)PyUnicode_DATA(text);
        *size = PyUnicode_GET_LENGTH(text);
        return 1;
    }
    PyObject *encoded = PyUnicode_AsUTF8String(text);
    if (encoded == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    int failed = PyList_Append(keep, encoded);
    Py_DECREF(encoded);
    if (failed)
        return -1;
    *data = PyBytes_AS_STRING(encoded); /* kept alive by ``keep`` */
    *size = PyBytes_GET_SIZE(encoded);
    return 1;
}

/* What json.JSONEncoder(ensure_ascii=False) escapes, on UTF-8 bytes: only ASCII below 0x20, '"' and
 * '\\' (no byte of a multi-byte UTF-8 sequence is below 0x80, so escaping the bytes is escaping the
 * characters). The short forms, as the json module writes them; any other control byte is \u00xx. */
static char
json_short_form(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

static inline int
json_plain(unsigned char c)
{
    return c >= 0x20 && c != '"' && c != '\\';
}

/* The quoted, escaped string's size, or (``out`` not NULL) the string written there. */
static Py_ssize_t
json_string(const unsigned char *s, Py_ssize_t size, unsigned char *out)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t plain = 0;
    while (plain < size && json_plain(s[plain])) /* point keys and sources rarely need escaping */
        plain++;
    if (out) {
        out[0] = '"';
        memcpy(out + 1, s, (size_t)plain);
    }
    Py_ssize_t n = 1 + plain;
    for (Py_ssize_t i = plain; i < size; i++) {
        unsigned char c = s[i];
        char short_form = json_short_form(c);
        if (json_plain(c)) {
            if (out)
                out[n] = c;
            n++;
        }
        else if (short_form) {
            if (out) {
                out[n] = '\\';
                out[n + 1] = (unsigned char)short_form;
            }
            n += 2;
        }
        else {
            if (out)
                memcpy(out + n, (char[]){'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]}, 6);
            n += 6;
        }
    }
    if (out)
        out[n] = '"';
    return n + 1;
}

typedef struct {
    const char *data;
    Py_ssize_t size;
} Utf8;

/* The meta document {"s":source,"p":[points...],"v":null}: its size, or written when out is not NULL. */
static Py_ssize_t
columns_meta(const Utf8 *source, const Utf8 *table, Py_ssize_t distinct, unsigned char *out)
{
    static const char open_s[] = "{\"s\":", open_p[] = ",\"p\":[", close[] = "],\"v\":null}";
    Py_ssize_t n = 0;
#define PUT(text, length)                                                                                             \
    do {                                                                                                              \
        if (out)                                                                                                      \
            memcpy(out + n, text, length);                                                                            \
        n += (length);                                                                                                \
    } while (0)
    PUT(open_s, sizeof open_s - 1);
    n += json_string((const unsigned char *)source->data, source->size, out ? out + n : NULL);
    PUT(open_p, sizeof open_p - 1);
    for (Py_ssize_t i = 0; i < distinct; i++) {
        if (i)
            PUT(",", 1);
        n += json_string((const unsigned char *)table[i].data, table[i].size, out ? out + n : NULL);
    }
    PUT(close, sizeof close - 1);
#undef PUT
    return n;
}

/* A float column entry: exact floats only (the Python path takes anything else). */
static inline int
exact_double(PyObject *object, double *out)
{
    if (!PyFloat_CheckExact(object))
        return 0;
    *out = PyFloat_AS_DOUBLE(object);
    return 1;
}

/*
 * encode_columns(source, offsets, samples) -> bytes or None
 *
 * Each sample a 5-tuple (point, value, quality, source_ts, gateway_ts) as records.Sample is. None
 * whenever the Python encoder must decide (see above); the caller then runs it.
 */
PyObject *
speedups_encode_columns(PyObject *module, PyObject *args)
{
    PyObject *source, *offsets_in, *samples_in;
    if (!PyArg_ParseTuple(args, "OOO:encode_columns", &source, &offsets_in, &samples_in))
        return NULL;
    PyObject *result = NULL, *offsets = NULL, *samples = NULL, *positions = NULL, *keep = NULL;
    uint32_t *indexes = NULL;
    Utf8 *table = NULL, *texts = NULL;
    Py_ssize_t distinct = 0;

    if (!PyUnicode_CheckExact(source))
        goto done;
    offsets = PySequence_Fast(offsets_in, "encode_columns: offsets must be a sequence");
    samples = PySequence_Fast(samples_in, "encode_columns: samples must be a sequence");
    if (offsets == NULL || samples == NULL) {
        PyErr_Clear(); /* not sequences: the Python encoder says what is wrong */
        goto done;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(samples);
    /* The count travels as a u32; the bound on it also keeps every size below from overflowing. */
    if (count < 1 || count > (Py_ssize_t)UINT32_MAX || count > (PY_SSIZE_T_MAX / 64) ||
        PySequence_Fast_GET_SIZE(offsets) != count)
        goto done;
    PyObject **items = PySequence_Fast_ITEMS(samples);
    int value_kind = 0;
    positions = PyDict_New();
    keep = PyList_New(0);
    indexes = PyMem_Malloc((size_t)count * sizeof *indexes);
    table = PyMem_Malloc((size_t)count * sizeof *table);
    if (positions == NULL || keep == NULL || indexes == NULL || table == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }

    /* Pass 1: check every field, number the distinct points, size the text column. */
    Py_ssize_t text_size = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *sample = items[i];
        if (!PyTuple_Check(sample) || PyTuple_GET_SIZE(sample) != 5)
            goto done;
        PyObject *point = PyTuple_GET_ITEM(sample, 0), *value = PyTuple_GET_ITEM(sample, 1);
        PyObject *quality = PyTuple_GET_ITEM(sample, 2);
        double unused;
        if (!PyUnicode_CheckExact(point) || !exact_double(PyTuple_GET_ITEM(sample, 3), &unused) ||
            !exact_double(PyTuple_GET_ITEM(sample, 4), &unused) || !PyLong_Check(quality))
            goto done;
        long q = PyLong_AsLong(quality); /* an int subclass (Quality) reads as its value, no Python code */
        if (q < 0 || q > 255) {
            PyErr_Clear();
            goto done;
        }
        if (i == 0) {
            value_kind = PyFloat_CheckExact(value) ? VALUES_FLOAT : PyUnicode_CheckExact(value) ? VALUES_TEXT : 0;
            if (!value_kind)
                goto done;
            if (value_kind == VALUES_TEXT) {
                texts = PyMem_Malloc((size_t)count * sizeof *texts);
                if (texts == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
            }
        }
        if (value_kind == VALUES_FLOAT) {
            if (!PyFloat_CheckExact(value))
                goto done;
        }
        else {
            if (!PyUnicode_CheckExact(value))
                goto done;
            if (utf8_of(value, keep, &texts[i].data, &texts[i].size) <= 0)
                goto done;
            /* The column's size travels as a u32, and so each value's length in characters, which
             * is at most its size in UTF-8. */
            if (texts[i].size > (Py_ssize_t)UINT32_MAX - text_size)
                goto done;
            text_size += texts[i].size;
        }
        PyObject *offset = PySequence_Fast_GET_ITEM(offsets, i);
        if (!PyLong_CheckExact(offset))
            goto done;
        int overflow;
        (void)PyLong_AsLongLongAndOverflow(offset, &overflow);
        if (overflow)
            goto done;
        PyObject *known = PyDict_GetItemWithError(positions, point);
        if (known != NULL)
            indexes[i] = (uint32_t)PyLong_AsSsize_t(known);
        else if (PyErr_Occurred())
            goto done;
        else {
            PyObject *number = PyLong_FromSsize_t(distinct);
            int failed = number == NULL || PyDict_SetItem(positions, point, number) < 0;
            Py_XDECREF(number);
            if (failed || utf8_of(point, keep, &table[distinct].data, &table[distinct].size) <= 0)
                goto done;
            indexes[i] = (uint32_t)distinct++;
        }
    }
    Utf8 source_utf8;
    if (utf8_of(source, keep, &source_utf8.data, &source_utf8.size) <= 0)
        goto done;
    /* Every string's escaped form is at most six times its size, so none of these sums can overflow
     * once each part is bounded by the u32 it travels as. */
    Py_ssize_t meta_size = columns_meta(&source_utf8, table, distinct, NULL);
    if (meta_size > (Py_ssize_t)UINT32_MAX)
        goto done;
    Py_ssize_t fixed = COLUMNS_HEAD + count * (4 + 8 + 1 + 8 + 8);
    Py_ssize_t values_size = value_kind == VALUES_FLOAT ? count * 8 : count * 4 + 4 + text_size;
    if (meta_size > PY_SSIZE_T_MAX - fixed - values_size)
        goto done;
    result = PyBytes_FromStringAndSize(NULL, fixed + meta_size + values_size);
    if (result == NULL)
        goto done;

    /* Pass 2: write. No Python code ran since pass 1 (exact types only), so the samples are unchanged. */
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    out[0] = COLUMNS_TAG;
    store_le32(out + 1, (uint32_t)count);
    store_le32(out + 5, (uint32_t)meta_size);
    out[9] = (unsigned char)value_kind;
    unsigned char *p = out + COLUMNS_HEAD;
    p += columns_meta(&source_utf8, table, distinct, p);
    unsigned char *points_at = p, *offsets_at = points_at + 4 * count, *quality_at = offsets_at + 8 * count;
    unsigned char *source_ts_at = quality_at + count, *gateway_ts_at = source_ts_at + 8 * count;
    unsigned char *values_at = gateway_ts_at + 8 * count;
    unsigned char *text_at = values_at + 4 * count + 4;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *sample = items[i];
        store_le32(points_at + 4 * i, indexes[i]);
        int overflow;
        long long offset = PyLong_AsLongLongAndOverflow(PySequence_Fast_GET_ITEM(offsets, i), &overflow);
        store_le64(offsets_at + 8 * i, (uint64_t)offset);
        quality_at[i] = (unsigned char)PyLong_AsLong(PyTuple_GET_ITEM(sample, 2));
        store_double(source_ts_at + 8 * i, PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(sample, 3)));
        store_double(gateway_ts_at + 8 * i, PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(sample, 4)));
        PyObject *value = PyTuple_GET_ITEM(sample, 1);
        if (value_kind == VALUES_FLOAT)
            store_double(values_at + 8 * i, PyFloat_AS_DOUBLE(value));
        else {
            store_le32(values_at + 4 * i, (uint32_t)PyUnicode_GET_LENGTH(value));
            memcpy(text_at, texts[i].data, (size_t)texts[i].size);
            text_at += texts[i].size;
        }
    }
    if (value_kind == VALUES_TEXT)
        store_le32(values_at + 4 * count, (uint32_t)text_size);
done:
    /* Every path that leaves the decision to Python sets no exception; a real error (memory) does. */
    if (result == NULL && !PyErr_Occurred())
        result = Py_NewRef(Py_None);
    Py_XDECREF(offsets);
    Py_XDECREF(samples);
    Py_XDECREF(positions);
    Py_XDECREF(keep);
    PyMem_Free(indexes);
    PyMem_Free(table);
    PyMem_Free(texts);
    return result;
}


/* --- inspect_columns: columns.inspect for the runs the diode sends, without Python per block ----------
 *
 * The receiver checks every arriving sample run before storing it as it came (receiver._store_as_is).
 * columns.inspect does that in Python, about a fifth of the receiver's CPU. Here the common shape only:
 * a compact JSON document {"s":"source","p":["key",...],"v":null} of printable ASCII without escapes,
 * float or ASCII text values, offsets consecutive from a non-negative first. Anything else returns None
 * and the caller asks columns.inspect, the reference. So a payload accepted here is one columns.inspect
 * accepts with the same summary (a differential test holds them together), never the other way round. */

static int
is_ascii(const unsigned char *p, Py_ssize_t size)
{
    uint64_t any = 0, word;
    Py_ssize_t i = 0;
    for (; i + 8 <= size; i += 8) {
        memcpy(&word, p + i, sizeof word);
        any |= word;
    }
    for (; i < size; i++)
        any |= p[i];
    return (any & 0x8080808080808080ULL) == 0;
}

/* A JSON string of printable ASCII without escapes at p[*at]: its bounds; 0 if not that shape. */
static int
plain_string(const unsigned char *p, Py_ssize_t end, Py_ssize_t *at, Py_ssize_t *start, Py_ssize_t *size)
{
    Py_ssize_t i = *at;
    if (i >= end || p[i] != '"')
        return 0;
    *start = ++i;
    while (i < end && p[i] != '"') {
        if (p[i] < 0x20 || p[i] > 0x7e || p[i] == '\\')
            return 0;
        i++;
    }
    if (i >= end)
        return 0;
    *size = i - *start;
    *at = i + 1;
    return 1;
}

static int
literal(const unsigned char *p, Py_ssize_t end, Py_ssize_t *at, const char *text)
{
    size_t n = strlen(text);
    if (end - *at < (Py_ssize_t)n || memcmp(p + *at, text, n) != 0)
        return 0;
    *at += (Py_ssize_t)n;
    return 1;
}

/* The document: the source's bounds and the number of keys in the point table; 0 if not the shape. */
static int
plain_document(const unsigned char *p, Py_ssize_t size, Py_ssize_t *source, Py_ssize_t *source_size,
               Py_ssize_t *keys)
{
    Py_ssize_t at = 0, start, length;
    if (!literal(p, size, &at, "{\"s\":") || !plain_string(p, size, &at, source, source_size) ||
        !literal(p, size, &at, ",\"p\":["))
        return 0;
    *keys = 0;
    do {
        if (!plain_string(p, size, &at, &start, &length))
            return 0;
        ++*keys;
    } while (at < size && p[at] == ',' && ++at);
    return literal(p, size, &at, "],\"v\":null}") && at == size;
}

/*
 * inspect_columns(payload, qualities) -> (source, count, first_offset, last_offset, True, last_gateway_ts,
 *                                        first_gateway_ts) or None
 *
 * columns.Summary's fields, for a payload of the common shape that columns.inspect accepts and whose
 * offsets are consecutive; None for anything else. ``qualities``: how many quality values are valid.
 */
PyObject *
speedups_inspect_columns(PyObject *module, PyObject *args)
{
    Py_buffer view;
    int qualities;
    if (!PyArg_ParseTuple(args, "y*i:inspect_columns", &view, &qualities))
        return NULL;
    PyObject *result = NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t size = view.len;
    if (size < COLUMNS_HEAD || p[0] != COLUMNS_TAG)
        goto none;
    Py_ssize_t count = (Py_ssize_t)load32le(p + 1), meta = (Py_ssize_t)load32le(p + 5);
    int kind = p[9];
    if (count == 0 || (kind != VALUES_FLOAT && kind != VALUES_TEXT) || meta > size - COLUMNS_HEAD)
        goto none;
    Py_ssize_t source, source_size, keys;
    if (!plain_document(p + COLUMNS_HEAD, meta, &source, &source_size, &keys))
        goto none;
    /* Column by column, each bound checked by division so that nothing can overflow. */
    Py_ssize_t at = COLUMNS_HEAD + meta, rest = size - at;
    Py_ssize_t per_sample = 4 + 8 + 1 + 8 + 8 + (kind == VALUES_FLOAT ? 8 : 4);
    if (count > rest / per_sample)
        goto none;
    const unsigned char *points = p + at, *offsets = points + 4 * count, *quality = offsets + 8 * count;
    const unsigned char *gateway = quality + count + 8 * count, *values = gateway + 8 * count;
    /* Loops without an early exit, which the compiler vectorises: a block holds tens of kilobytes. */
    uint64_t highest = 0, differs = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t point = load32le(points + 4 * i);
        highest = point > highest ? point : highest;
    }
    if (highest >= (uint64_t)keys)
        goto none;
    uint64_t first = load64le(offsets);
    if (first > (uint64_t)INT64_MAX - (uint64_t)count)
        goto none;
    for (Py_ssize_t i = 0; i < count; i++)
        differs |= load64le(offsets + 8 * i) ^ (first + (uint64_t)i);
    if (differs)
        goto none;
    unsigned char worst = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        worst = quality[i] > worst ? quality[i] : worst;
    if (worst >= qualities)
        goto none;
    Py_ssize_t end = at + per_sample * count;
    if (kind == VALUES_TEXT) {
        if (size - end < 4)
            goto none;
        uint64_t text = load32le(p + end), characters = 0;
        end += 4;
        if (text != (uint64_t)(size - end))
            goto none;
        for (Py_ssize_t i = 0; i < count; i++)
            characters += load32le(values + 4 * i);
        if (!is_ascii(p + end, size - end)) /* one character per byte only then; else the reference decides */
            goto none;
        if (characters != text)
            goto none;
        end = size;
    }
    if (end != size)
        goto none;
    double first_ts, last_ts;
    uint64_t bits = load64le(gateway);
    memcpy(&first_ts, &bits, sizeof first_ts);
    bits = load64le(gateway + 8 * (count - 1));
    memcpy(&last_ts, &bits, sizeof last_ts);
    result = Py_BuildValue("(s#nKKOdd)", (const char *)p + COLUMNS_HEAD + source, source_size, count,
                           (unsigned long long)first, (unsigned long long)(first + (uint64_t)count - 1), Py_True,
                           last_ts, first_ts);
    PyBuffer_Release(&view);
    return result;
none:
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}
