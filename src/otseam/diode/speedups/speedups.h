/* What the files of the diode's compiled module share: wire layout, byte order helpers, the Mac
 * object, and the functions one file offers the others. See _speedups.c for the module itself. */
#ifndef OTSEAM_SPEEDUPS_H
#define OTSEAM_SPEEDUPS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>

/* The low-level SHA-256 calls are deprecated in OpenSSL 3 in favour of EVP, which costs a provider
 * lookup and an allocation per context; a copied SHA256_CTX costs a memcpy. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#ifdef __linux__
#define HAVE_MMSG 1  /* mmsg.c */
#define HAVE_CODER 1 /* coder.c */
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_MB 1 /* sha256x16.c */
#endif

/* Wire layout; wire.py holds the same numbers and refuses this module if they differ. */
#define WIRE_VERSION 1
#define HEADER_SIZE 26
#define MAC_SIZE 16
#define OVERHEAD (HEADER_SIZE + MAC_SIZE)
#define KIND_DATA 1
#define KIND_PARITY 2
#define KIND_BEACON 3
#define FINGERPRINT_SIZE 16
#define BEACON_PAYLOAD 40 /* wire.BEACON.size */
#define MAX_FRAGMENTS 255

/* Rejected reasons, as wire.Rejected numbers them; counts are returned in this order, minus one. */
enum { R_SHORT = 1, R_MAGIC, R_VERSION, R_MAC, R_MALFORMED, R_COUNT = R_MALFORMED };

/* What wire.py expects of this module's functions; raised whenever one of them changes shape
 * (2: runs carry their payloads joined; join_fragments. 3: Coder.rebuild). */
#define SPEEDUPS_API 3

/* Items parse_batch returns, in arrival order. */
enum { ITEM_RUN = 1, ITEM_BEACON = 2, ITEM_FOREIGN_BEACON = 3 };

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t
load32le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static inline uint64_t
load64le(const unsigned char *p)
{
    return load32le(p) | load32le(p + 4) << 32;
}

static inline void
store64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* The datagram header (wire.py's HEADER) of fragment ``index`` of a block, at ``out``. */
static inline void
write_header(unsigned char *out, int flags, int k, int m, int index, uint64_t session, uint64_t sequence,
             Py_ssize_t length)
{
    out[0] = 'S';
    out[1] = 'D';
    out[2] = WIRE_VERSION;
    out[3] = index < k ? KIND_DATA : KIND_PARITY;
    out[4] = (unsigned char)flags;
    out[5] = (unsigned char)k;
    out[6] = (unsigned char)m;
    out[7] = (unsigned char)index;
    store64(out + 8, session);
    store64(out + 16, sequence);
    out[24] = (unsigned char)(length >> 8);
    out[25] = (unsigned char)(length & 0xff);
}

/* Little-endian stores, for liberasurecode's header and the columnar format. */
static inline void
store_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
store_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

typedef struct {
    PyObject_HEAD
    SHA256_CTX inner;
    SHA256_CTX outer;
} MacObject;

/* mac.c: HMAC-SHA256 truncated to 16 bytes, both padded key blocks hashed once. */
void mac_compute(const MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE]);
void mac_keys(MacObject *self, const unsigned char *key, size_t size);
/* An "O&" converter for session and sequence numbers (_speedups.c). */
int to_u64(PyObject *object, void *out);

/* sha256x16.c: many MACs at once where the CPU allows, else OpenSSL one by one. */
extern int hmac_lanes;
void lanes_init(void);
void seal_all(const MacObject *self, unsigned char *base, Py_ssize_t stride, Py_ssize_t size, int count);
void check_all(const MacObject *self, const unsigned char *data, Py_ssize_t length, const Py_ssize_t at[],
               const Py_ssize_t size[], Py_ssize_t count, unsigned char ok[]);

#ifdef HAVE_CODER
/* coder.c: Reed-Solomon with ISA-L straight into the datagrams. */
extern PyTypeObject CoderType;
void coder_init(void);
PyObject *Mac_pack_payload(MacObject *self, PyObject *args);
#endif

/* columns.c */
PyObject *speedups_encode_columns(PyObject *module, PyObject *args);

#ifdef HAVE_MMSG
/* mmsg.c */
PyObject *speedups_send_batch(PyObject *module, PyObject *args);
PyObject *speedups_recv_batch(PyObject *module, PyObject *args);
PyObject *speedups_enable_coalescing(PyObject *module, PyObject *args);
#endif

#endif /* OTSEAM_SPEEDUPS_H */
