/* What the files of the diode's compiled module share: wire layout, byte order helpers, the Mac
 * object, and the functions one file offers the others. See _speedups.c for the module itself. */
#ifndef OTSEAM_SPEEDUPS_H
#define OTSEAM_SPEEDUPS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#ifdef __linux__
#define HAVE_MMSG 1  /* mmsg.c */
#endif

/* Wire layout; wire.py holds the same numbers and refuses this module if they differ. */
#define WIRE_VERSION 3
#define HEADER_SIZE 26
#define MAC_SIZE 16
#define OVERHEAD (HEADER_SIZE + MAC_SIZE)
#define KIND_DATA 1
#define KIND_PARITY 2
#define KIND_BEACON 3
#define FINGERPRINT_SIZE 16
#define BEACON_PAYLOAD 48 /* wire.BEACON.size */
#define MAX_FRAGMENTS 255
/* Seam's fragment header, at the start of every fragment's payload: the block's length in bytes
 * (u32, big-endian). A block of L bytes in k fragments gives each ceil(L / k) data bytes, the last
 * padded with zeros. */
#define FRAGMENT_HEADER 4

/* Rejected reasons, as wire.Rejected numbers them; counts are returned in this order, minus one. */
enum { R_SHORT = 1, R_MAGIC, R_VERSION, R_MAC, R_MALFORMED, R_COUNT = R_MALFORMED };

/* What wire.py expects of this module's functions; raised whenever one of them changes shape
 * (2: runs carry their payloads joined; join_fragments. 3: Coder.rebuild. 4: Seam's own fragment
 * header, ISA-L linked, HMAC through EVP_MAC. 5: AES-256-GCM tags with per-session keys. 6: a run that
 * holds a whole block comes as the block, ITEM_BLOCK). */
#define SPEEDUPS_API 6

/* Items parse_batch returns, in arrival order. */
enum { ITEM_RUN = 1, ITEM_BEACON = 2, ITEM_FOREIGN_BEACON = 3, ITEM_BLOCK = 4 };

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

static inline uint32_t
load32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void
store32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Little-endian stores, for the columnar format. */
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

/* A session's key, derived from the master key, keyed into an AES-256-GCM context (mac.c). */
#define SESSION_KEYS 8
typedef struct {
    uint64_t session;
    uint64_t used;  /* the Mac's clock at its last use; 0: an empty slot */
    int trusted;    /* a datagram of this session was authenticated (or sealed) with it */
    EVP_CIPHER_CTX *gcm;
} SessionKey;

typedef struct {
    PyObject_HEAD
    int ready;             /* keyed; 0 before __init__ */
    EVP_KDF_CTX *kdf;      /* HKDF-SHA256's expand step, keyed with the master key's extract */
    EVP_CIPHER *aes;       /* AES-256-GCM */
    uint64_t clock;
    SessionKey keys[SESSION_KEYS];
    SessionKey *last;      /* the slot used last: the usual case is one session */
} MacObject;

/* mac.c: the AES-256-GCM tag (GMAC) of a datagram, under its session's key (OpenSSL EVP). Each returns
 * -1 if OpenSSL failed or the Mac was never keyed. */
int mac_keys(MacObject *self, const unsigned char *key, size_t size);
int mac_ready(const MacObject *self);
void mac_free(MacObject *self);
int mac_compute(MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE]);
int seal_all(MacObject *self, unsigned char *base, Py_ssize_t stride, Py_ssize_t size, int count);
int check_all(MacObject *self, const unsigned char *data, const Py_ssize_t at[], const Py_ssize_t size[],
              Py_ssize_t count, unsigned char ok[]);
/* An "O&" converter for session and sequence numbers (_speedups.c). */
int to_u64(PyObject *object, void *out);

/* coder.c: Reed-Solomon with ISA-L (linked), Seam's fragment header. */
extern PyTypeObject CoderType;
void coder_init(void);
PyObject *Mac_pack_payload(MacObject *self, PyObject *args);
PyObject *speedups_join_fragments(PyObject *module, PyObject *args);

/* columns.c */
PyObject *speedups_encode_columns(PyObject *module, PyObject *args);
PyObject *speedups_inspect_columns(PyObject *module, PyObject *args);

#ifdef HAVE_MMSG
/* mmsg.c */
PyObject *speedups_send_batch(PyObject *module, PyObject *args);
PyObject *speedups_recv_batch(PyObject *module, PyObject *args);
PyObject *speedups_enable_coalescing(PyObject *module, PyObject *args);
#endif

#endif /* OTSEAM_SPEEDUPS_H */
