/*
 * The diode's per-datagram work in C: sealing and checking datagrams (HMAC-SHA256 with OpenSSL's
 * SHA-256, which uses the CPU's SHA extensions where it has them; the sender's pack_payload seals
 * sixteen at once with AVX-512 where it can), sendmmsg and recvmmsg; and the sender's per-block
 * work: encoding sample runs (otseam.core.columns) and Reed-Solomon with ISA-L into the datagrams.
 *
 * Why C: at a gigabit with one-frame datagrams each side handles 85,000 datagrams a second on one
 * core. In Python the header checks, the two hash-state copies and the slicing cost 3 to 4 us per
 * datagram on each side, close to half of the whole budget. Here they cost a fraction of that.
 *
 * The pure-Python code in wire.py and receiver.py stays the reference: the tests feed the same
 * datagrams, valid, forged and random, to both and require the same verdicts. The checks and their
 * order are the ones docs/diode.md documents: size, magic, version, exact length, MAC, consistency.
 * Nothing is trusted before the MAC; every length is checked before it is used.
 */
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
#include <netinet/in.h>
#include <sys/socket.h>
#define HAVE_MMSG 1
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
 * (2: runs carry their payloads joined; join_fragments). */
#define SPEEDUPS_API 2

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

/* An "O&" converter for a 64-bit unsigned field: refuses what does not fit (PyArg's "K" would silently
 * keep the low 64 bits of any integer, negative ones included, and seal a datagram nobody asked for). */
static int
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

/* --- Mac: HMAC-SHA256 truncated to 16 bytes, with both padded key blocks hashed once -------------- */

typedef struct {
    PyObject_HEAD
    SHA256_CTX inner;
    SHA256_CTX outer;
} MacObject;

static void
mac_compute(const MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = self->inner;
    SHA256_Update(&ctx, data, size);
    SHA256_Final(digest, &ctx);
    ctx = self->outer;
    SHA256_Update(&ctx, digest, sizeof digest);
    SHA256_Final(digest, &ctx);
    memcpy(out, digest, MAC_SIZE);
    OPENSSL_cleanse(&ctx, sizeof ctx);
}

/* The SHA-256 states after the key's ipad and opad blocks (RFC 2104), hashed once per key. */
static void
mac_keys(MacObject *self, const unsigned char *key, size_t size)
{
    unsigned char block[64] = {0}, pad[64];
    if (size > 64)
        SHA256(key, size, block); /* RFC 2104: a long key is hashed first */
    else
        memcpy(block, key, size);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&self->inner);
    SHA256_Update(&self->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&self->outer);
    SHA256_Update(&self->outer, pad, 64);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
}

/* --- Sixteen HMACs at once (AVX-512), for the datagrams of one block ---------------------------------
 *
 * Sealing is most of the sender's CPU once everything else is in C: one HMAC-SHA256 per datagram,
 * 72 per full block, each about 1.4 us with OpenSSL's SHA-256 (using the CPU's SHA extensions). The
 * datagrams of a block all have the same length, so sixteen of them can be hashed in lock step, one
 * per 32-bit lane of AVX-512 registers: about 1.8 times as fast here. This is SHA-256 as FIPS 180-4
 * defines it (the round constants are the cube roots it names), used only to seal: the receiver
 * checks with OpenSSL. It is used only where the CPU and the OS support AVX-512 and after it gave
 * OpenSSL's MACs on test messages at import (mb_check); the tests compare whole blocks with pack_block,
 * which seals with OpenSSL. Nothing is looked up by secret data: the time does not depend on the key.
 */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_MB 1

static const uint32_t sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

#define MB_LANES 16 /* 32-bit lanes of a 512-bit register */
#define XOR3 0x96 /* a ^ b ^ c */
#define CHOOSE 0xca /* a ? b : c */
#define MAJORITY 0xe8

/* Big-endian words: swap bytes within each 32-bit lane (AVX-512F only: two rotations and a blend). */
__attribute__((target("avx512f"))) static inline __m512i
mb_bswap(__m512i x)
{
    return _mm512_ternarylogic_epi32(_mm512_set1_epi32((int)0xff00ff00u), _mm512_ror_epi32(x, 8),
                                     _mm512_rol_epi32(x, 8), CHOOSE);
}

/* One 64-byte block for 16 lanes; w holds its 16 message words (big-endian already read). */
__attribute__((target("avx512f"))) static inline void
mb_compress(__m512i s[8], __m512i w[16])
{
    __m512i a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma GCC unroll 64
    for (int t = 0; t < 64; t++) {
        __m512i wt;
        if (t < 16)
            wt = w[t];
        else {
            __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
            __m512i s0 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(w15, 7), _mm512_ror_epi32(w15, 18),
                                                   _mm512_srli_epi32(w15, 3), XOR3);
            __m512i s1 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(w2, 17), _mm512_ror_epi32(w2, 19),
                                                   _mm512_srli_epi32(w2, 10), XOR3);
            wt = _mm512_add_epi32(_mm512_add_epi32(w[t & 15], s0), _mm512_add_epi32(w[(t - 7) & 15], s1));
            w[t & 15] = wt;
        }
        __m512i S1 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(e, 6), _mm512_ror_epi32(e, 11),
                                               _mm512_ror_epi32(e, 25), XOR3);
        __m512i ch = _mm512_ternarylogic_epi32(e, f, g, CHOOSE);
        __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(h, S1),
                                      _mm512_add_epi32(_mm512_add_epi32(ch, _mm512_set1_epi32((int)sha256_k[t])), wt));
        __m512i S0 = _mm512_ternarylogic_epi32(_mm512_ror_epi32(a, 2), _mm512_ror_epi32(a, 13),
                                               _mm512_ror_epi32(a, 22), XOR3);
        __m512i t2 = _mm512_add_epi32(S0, _mm512_ternarylogic_epi32(a, b, c, MAJORITY));
        h = g;
        g = f;
        f = e;
        e = _mm512_add_epi32(d, t1);
        d = c;
        c = b;
        b = a;
        a = _mm512_add_epi32(t1, t2);
    }
    s[0] = _mm512_add_epi32(s[0], a);
    s[1] = _mm512_add_epi32(s[1], b);
    s[2] = _mm512_add_epi32(s[2], c);
    s[3] = _mm512_add_epi32(s[3], d);
    s[4] = _mm512_add_epi32(s[4], e);
    s[5] = _mm512_add_epi32(s[5], f);
    s[6] = _mm512_add_epi32(s[6], g);
    s[7] = _mm512_add_epi32(s[7], h);
}

/* Words t of lane i's block at base + offsets[i] + 4t, read big-endian. */
__attribute__((target("avx512f"))) static inline void
mb_load(__m512i w[16], const unsigned char *base, __m512i offsets)
{
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        w[t] = mb_bswap(_mm512_i32gather_epi32(_mm512_add_epi32(offsets, _mm512_set1_epi32(4 * t)), base, 1));
}

/*
 * HMAC-SHA256, truncated to 16 bytes, of ``lanes`` (1..16) messages of the same ``size`` bytes at
 * base + at[i], written to out[i]. ``inner`` and ``outer``: the SHA-256 states after the key's ipad
 * and opad blocks. Every at[i] + size + 64 must fit an int (gather offsets are 32-bit).
 */
__attribute__((target("avx512f"))) static void
mb_hmac_at(const uint32_t inner[8], const uint32_t outer[8], const unsigned char *base, const int32_t at[],
           int size, int lanes, unsigned char out[][MAC_SIZE])
{
    int32_t lane_offsets[MB_LANES];
    for (int i = 0; i < MB_LANES; i++)
        lane_offsets[i] = at[i < lanes ? i : 0]; /* idle lanes repeat lane 0, their result unused */
    __m512i offsets = _mm512_loadu_si512(lane_offsets), s[8], w[16];
    for (int j = 0; j < 8; j++)
        s[j] = _mm512_set1_epi32((int)inner[j]);
    int full = size / 64;
    for (int blk = 0; blk < full; blk++) {
        mb_load(w, base, _mm512_add_epi32(offsets, _mm512_set1_epi32(64 * blk)));
        mb_compress(s, w);
    }
    /* The tail and the padding: the bit length counts the key block before the message. */
    int rest = size - 64 * full, tail_blocks = rest + 9 > 64 ? 2 : 1;
    unsigned char tail[MB_LANES][128];
    uint64_t bits = (uint64_t)(64 + (uint64_t)size) * 8;
    for (int i = 0; i < MB_LANES; i++) {
        memset(tail[i], 0, sizeof tail[i]);
        memcpy(tail[i], base + lane_offsets[i] + 64 * full, (size_t)rest);
        tail[i][rest] = 0x80;
        for (int b = 0; b < 8; b++)
            tail[i][64 * tail_blocks - 1 - b] = (unsigned char)(bits >> (8 * b));
    }
    __m512i tail_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                              _mm512_set1_epi32(128));
    for (int blk = 0; blk < tail_blocks; blk++) {
        mb_load(w, (const unsigned char *)tail, _mm512_add_epi32(tail_offsets, _mm512_set1_epi32(64 * blk)));
        mb_compress(s, w);
    }
    /* Outer hash: the opad state, then one block holding the inner digest and its padding. */
    for (int j = 0; j < 8; j++) {
        w[j] = s[j];
        s[j] = _mm512_set1_epi32((int)outer[j]);
    }
    w[8] = _mm512_set1_epi32((int)0x80000000u);
    for (int j = 9; j < 15; j++)
        w[j] = _mm512_setzero_si512();
    w[15] = _mm512_set1_epi32((64 + 32) * 8);
    mb_compress(s, w);
    uint32_t words[4][MB_LANES];
    for (int j = 0; j < 4; j++)
        _mm512_storeu_si512(words[j], s[j]);
    for (int i = 0; i < lanes; i++) {
        unsigned char *mac = out[i];
        for (int j = 0; j < 4; j++) {
            mac[4 * j] = (unsigned char)(words[j][i] >> 24);
            mac[4 * j + 1] = (unsigned char)(words[j][i] >> 16);
            mac[4 * j + 2] = (unsigned char)(words[j][i] >> 8);
            mac[4 * j + 3] = (unsigned char)words[j][i];
        }
    }
    /* As mac_compute does: no hash state of the key or the message is left behind. */
    OPENSSL_cleanse(tail, sizeof tail);
    OPENSSL_cleanse(s, sizeof s);
    OPENSSL_cleanse(w, sizeof w);
    OPENSSL_cleanse(words, sizeof words);
}

/* The same, sealing: messages at base + i * stride, each MAC written right after its message. */
__attribute__((target("avx512f"))) static void
mb_hmac(const uint32_t inner[8], const uint32_t outer[8], unsigned char *base, int stride, int size, int lanes)
{
    int32_t at[MB_LANES] = {0};
    unsigned char macs[MB_LANES][MAC_SIZE];
    for (int i = 0; i < lanes; i++)
        at[i] = i * stride;
    mb_hmac_at(inner, outer, base, at, size, lanes, macs);
    for (int i = 0; i < lanes; i++)
        memcpy(base + (size_t)i * (size_t)stride + size, macs[i], MAC_SIZE);
}

/* MACs for sizes around the block boundaries, checked against OpenSSL; 1 if they all agree. */
static int
mb_check(void)
{
    if (!__builtin_cpu_supports("avx512f"))
        return 0;
    static const int sizes[] = {1, 55, 56, 63, 64, 65, 119, 120, 1456, 8998};
    const int stride = 9016;
    MacObject mac;
    unsigned char key[32], *buffer = PyMem_Malloc((size_t)stride * MB_LANES);
    if (buffer == NULL)
        return 0;
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(i * 37 + 11);
    mac_keys(&mac, key, sizeof key);
    int same = 1;
    for (size_t n = 0; n < sizeof sizes / sizeof sizes[0] && same; n++) {
        int size = sizes[n], lanes = 7 + (int)n; /* 7 to 16 lanes */
        for (int i = 0; i < stride * MB_LANES; i++)
            buffer[i] = (unsigned char)(i * 131 + n);
        mb_hmac(mac.inner.h, mac.outer.h, buffer, stride, size, lanes);
        for (int i = 0; i < lanes; i++) {
            unsigned char expected[MAC_SIZE];
            mac_compute(&mac, buffer + i * stride, (size_t)size, expected);
            same &= memcmp(expected, buffer + i * stride + size, MAC_SIZE) == 0;
        }
    }
    PyMem_Free(buffer);
    OPENSSL_cleanse(&mac, sizeof mac);
    return same;
}
#endif

/* Set at import: the lanes seal_all hashes at once (1: OpenSSL, one datagram at a time). */
static int hmac_lanes = 1;

/* Seal ``count`` datagrams of the same ``size`` (header and payload) at base + i * stride: the MAC
 * goes right after each. The caller has checked that each datagram and its MAC fit its stride. */
static void
seal_all(const MacObject *self, unsigned char *base, Py_ssize_t stride, Py_ssize_t size, int count)
{
    int first = 0;
#ifdef HAVE_MB
    /* Gather offsets are 32-bit: lane 15 reads up to 15 strides and a message further on. */
    if (hmac_lanes == MB_LANES && stride <= (INT32_MAX - 2 * 65536) / MB_LANES && size <= 65536) {
        /* A pass costs the same however many lanes are busy: below half of them, OpenSSL is faster. */
        for (; count - first >= MB_LANES / 2; first += MB_LANES) {
            int lanes = count - first < MB_LANES ? count - first : MB_LANES;
            mb_hmac(self->inner.h, self->outer.h, base + first * stride, (int)stride, (int)size, lanes);
        }
    }
#endif
    for (int i = first; i < count; i++) /* none left when the last pass took fewer than 16 */
        mac_compute(self, base + i * stride, (size_t)size, base + i * stride + size);
}

/*
 * Check the MACs of ``count`` datagrams: datagram i is data[at[i] : at[i] + size[i]], its last 16 bytes
 * the MAC of the rest; ok[i] is set to 1 where it matches. Consecutive datagrams of one size (a block's
 * fragments, as they arrive) are hashed sixteen at a time where the CPU allows, the rest one by one
 * with OpenSSL; comparisons take constant time either way.
 */
static void
check_all(const MacObject *self, const unsigned char *data, Py_ssize_t length, const Py_ssize_t at[],
          const Py_ssize_t size[], Py_ssize_t count, unsigned char ok[])
{
    unsigned char expected[MAC_SIZE];
    Py_ssize_t i = 0;
#ifdef HAVE_MB
    /* Gather offsets are 32-bit: only buffers whose every offset, plus a message, fits one. */
    if (hmac_lanes == MB_LANES && length <= INT32_MAX - 2 * 65536) {
        int32_t lane_at[MB_LANES];
        unsigned char macs[MB_LANES][MAC_SIZE];
        while (i < count) {
            Py_ssize_t lanes = 1;
            while (i + lanes < count && lanes < MB_LANES && size[i + lanes] == size[i])
                lanes++;
            if (lanes < 4) { /* too few to pay for the lanes left idle */
                for (Py_ssize_t j = i; j < i + lanes; j++) {
                    mac_compute(self, data + at[j], (size_t)(size[j] - MAC_SIZE), expected);
                    ok[j] = CRYPTO_memcmp(expected, data + at[j] + size[j] - MAC_SIZE, MAC_SIZE) == 0;
                }
            }
            else {
                for (Py_ssize_t j = 0; j < lanes; j++)
                    lane_at[j] = (int32_t)at[i + j];
                mb_hmac_at(self->inner.h, self->outer.h, data, lane_at, (int)(size[i] - MAC_SIZE), (int)lanes, macs);
                for (Py_ssize_t j = 0; j < lanes; j++)
                    ok[i + j] = CRYPTO_memcmp(macs[j], data + at[i + j] + size[i] - MAC_SIZE, MAC_SIZE) == 0;
                OPENSSL_cleanse(macs, sizeof macs);
            }
            i += lanes;
        }
        return;
    }
#endif
    (void)length;
    for (; i < count; i++) {
        mac_compute(self, data + at[i], (size_t)(size[i] - MAC_SIZE), expected);
        ok[i] = CRYPTO_memcmp(expected, data + at[i] + size[i] - MAC_SIZE, MAC_SIZE) == 0;
    }
}

static int
Mac_init(MacObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"key", NULL};
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*:Mac", names, &key))
        return -1;
    mac_keys(self, key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    return 0;
}

static void
Mac_dealloc(MacObject *self)
{
    OPENSSL_cleanse(&self->inner, sizeof self->inner);
    OPENSSL_cleanse(&self->outer, sizeof self->outer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Mac_call(MacObject *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"data", NULL};
    Py_buffer data;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*:Mac", names, &data))
        return NULL;
    unsigned char out[MAC_SIZE];
    mac_compute(self, data.buf, (size_t)data.len, out);
    PyBuffer_Release(&data);
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
        out[0] = 'S';
        out[1] = 'D';
        out[2] = WIRE_VERSION;
        out[3] = i < k ? KIND_DATA : KIND_PARITY;
        out[4] = (unsigned char)flags;
        out[5] = (unsigned char)k;
        out[6] = (unsigned char)m;
        out[7] = (unsigned char)i;
        store64(out + 8, session);
        store64(out + 16, sequence);
        out[24] = (unsigned char)(size >> 8);
        out[25] = (unsigned char)(size & 0xff);
        memcpy(out + HEADER_SIZE, PyBytes_AS_STRING(fragment), (size_t)size);
        mac_compute(self, out, (size_t)(HEADER_SIZE + size), out + HEADER_SIZE + size);
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

static int
run_close(Run *run, PyObject *items)
{
    if (!run->open)
        return 0;
    run->open = 0;
    /* count <= MAX_FRAGMENTS and size <= 0xffff: the product cannot overflow. */
    PyObject *joined = PyBytes_FromStringAndSize(NULL, run->count * run->size);
    if (joined == NULL)
        return -1;
    char *out = PyBytes_AS_STRING(joined);
    for (Py_ssize_t i = 0; i < run->count; i++)
        memcpy(out + i * run->size, run->payload[i], (size_t)run->size);
    PyObject *item = Py_BuildValue("(iKKiiiinN)", ITEM_RUN, (unsigned long long)run->session,
                                   (unsigned long long)run->sequence, run->flags, run->k, run->m, run->first,
                                   run->size, joined);
    if (item == NULL)
        return -1; /* Py_BuildValue's N took joined, even when it failed */
    int failed = PyList_Append(items, item);
    Py_DECREF(item);
    return failed;
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
    PyObject *result = NULL, *items = NULL, *sizes_fast = NULL, *starts_fast = NULL;
    Py_ssize_t *at = NULL, *length_of = NULL;
    unsigned char *mac_ok = NULL;
    Run run;
    run.open = 0;
    unsigned long long rejected[R_COUNT] = {0};
    long long received = 0;

    sizes_fast = PySequence_Fast(sizes, "parse_batch: sizes must be a sequence");
    starts_fast = PySequence_Fast(starts, "parse_batch: starts must be a sequence");
    if (sizes_fast == NULL || starts_fast == NULL)
        goto done;
    if (count < 0 || count > PySequence_Fast_GET_SIZE(sizes_fast) || count > PySequence_Fast_GET_SIZE(starts_fast)) {
        PyErr_SetString(PyExc_ValueError, "parse_batch: count exceeds starts or sizes");
        goto done;
    }
    items = PyList_New(0);
    /* Per datagram: where it starts, how long it is (0: refused before the MAC), whether its MAC matched. */
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
        length_of[i] = 0;
        Py_ssize_t size = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(sizes_fast, i));
        if (size == -1 && PyErr_Occurred())
            goto done;
        if (size < OVERHEAD || size > limit) {
            rejected[R_SHORT - 1]++;
            continue;
        }
        Py_ssize_t start = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(starts_fast, i));
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
    check_all(self, buffer.buf, buffer.len, at, length_of, candidates, mac_ok);
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
    Py_XDECREF(sizes_fast);
    Py_XDECREF(starts_fast);
    PyBuffer_Release(&buffer);
    return result;
}

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

#ifdef __linux__
#include <dlfcn.h>
#define HAVE_CODER 1

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

static PyMethodDef Coder_methods[] = {
    {"tables", (PyCFunction)Coder_tables, METH_VARARGS,
     "tables(k, m) -> bytes\n\nISA-L's encoding tables for k data and m parity fragments (32 * k * m bytes)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoderType = {
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
static PyObject *
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
        out[0] = 'S';
        out[1] = 'D';
        out[2] = WIRE_VERSION;
        out[3] = i < k ? KIND_DATA : KIND_PARITY;
        out[4] = (unsigned char)flags;
        out[5] = (unsigned char)k;
        out[6] = (unsigned char)m;
        out[7] = (unsigned char)i;
        store64(out + 8, session);
        store64(out + 16, sequence);
        out[24] = (unsigned char)(fragment >> 8);
        out[25] = (unsigned char)(fragment & 0xff);
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

#endif /* __linux__ */

static PyMethodDef Mac_methods[] = {
#ifdef HAVE_CODER
    {"pack_payload", (PyCFunction)Mac_pack_payload, METH_VARARGS,
     "pack_payload(buffer, slot, flags, k, m, session, sequence, payload, coder, tables) -> lengths\n\n"
     "Split payload into k fragments and m parity fragments (coder: ISA-L; tables: coder.tables(k, m)) "
     "with liberasurecode's headers, and seal them as pack_block does; their lengths."},
#endif
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
    .tp_doc = PyDoc_STR("Mac(key): HMAC-SHA256 truncated to 16 bytes, and the diode's datagram packing and checks."),
    .tp_basicsize = sizeof(MacObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Mac_init,
    .tp_dealloc = (destructor)Mac_dealloc,
    .tp_call = (ternaryfunc)Mac_call,
    .tp_methods = Mac_methods,
};

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
static PyObject *
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

/* --- sendmmsg and recvmmsg, with UDP segmentation and receive coalescing ---------------------------
 *
 * With ``segment`` (UDP_SEGMENT, Linux 4.18+), consecutive datagrams of equal length leave in one
 * message: the kernel (or the network card) cuts it into separate datagrams, each its own frame on
 * the link, each with its own header and MAC; only the per-datagram trip through the stack is saved.
 * With UDP_GRO set on the receiving socket (Linux 5.0+), the kernel hands over a run of datagrams of
 * one size from one sender as one message, with the size in a control message; it is cut again here,
 * and every datagram is checked on its own as before.
 */

#ifdef HAVE_MMSG

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
/* The kernel's cap on segments per message (UDP_MAX_SEGMENTS was 64 before Linux 6.11) and the
 * largest UDP payload. */
#define MAX_SEGMENTS 64
#define MAX_UDP_PAYLOAD 65507

/* send_batch(fd, address, buffer, slot, lengths, first, count, segment) -> datagrams sent */
static PyObject *
speedups_send_batch(PyObject *module, PyObject *args)
{
    int fd, segment;
    Py_buffer address, buffer;
    Py_ssize_t slot, first, count;
    PyObject *lengths;
    if (!PyArg_ParseTuple(args, "iy*y*nO!nnp:send_batch", &fd, &address, &buffer, &slot, &PyList_Type, &lengths,
                          &first, &count, &segment))
        return NULL;
    PyObject *result = NULL;
    struct mmsghdr messages[MAX_FRAGMENTS];
    struct iovec vectors[MAX_FRAGMENTS];
    /* One control message per message: the segment size. */
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[MAX_FRAGMENTS];
    int datagrams_in[MAX_FRAGMENTS];
    /* Subtracted and divided rather than added and multiplied, which could overflow and pass. */
    if (count < 0 || count > MAX_FRAGMENTS || first < 0 || first > PyList_GET_SIZE(lengths) - count || slot < 1 ||
        (first + count > 0 && slot > buffer.len / (first + count)) ||
        address.len > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "send_batch: first, count, lengths and slot do not fit the buffer");
        goto done;
    }
    int nmessages = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t length = PyLong_AsSsize_t(PyList_GET_ITEM(lengths, first + i));
        if (length == -1 && PyErr_Occurred())
            goto done;
        if (length < 1 || length > slot) {
            PyErr_SetString(PyExc_ValueError, "send_batch: a length is not within the slot");
            goto done;
        }
        vectors[i].iov_base = (char *)buffer.buf + (first + i) * slot;
        vectors[i].iov_len = (size_t)length;
        struct msghdr *open = nmessages ? &messages[nmessages - 1].msg_hdr : NULL;
        /* Join the open message if segmenting and this datagram has its size and still fits. */
        if (segment && open != NULL && vectors[i - 1].iov_len == (size_t)length &&
            datagrams_in[nmessages - 1] < MAX_SEGMENTS &&
            (Py_ssize_t)(datagrams_in[nmessages - 1] + 1) * length <= MAX_UDP_PAYLOAD) {
            open->msg_iovlen++;
            datagrams_in[nmessages - 1]++;
            continue;
        }
        struct msghdr *header = &messages[nmessages].msg_hdr;
        memset(&messages[nmessages], 0, sizeof messages[nmessages]);
        header->msg_name = address.buf;
        header->msg_namelen = (socklen_t)address.len;
        header->msg_iov = &vectors[i];
        header->msg_iovlen = 1;
        datagrams_in[nmessages] = 1;
        nmessages++;
    }
    for (int j = 0; j < nmessages; j++) {
        struct msghdr *header = &messages[j].msg_hdr;
        if (datagrams_in[j] < 2)
            continue; /* a lone datagram goes as it is */
        memset(&controls[j], 0, sizeof controls[j]);
        header->msg_control = controls[j].buf;
        header->msg_controllen = sizeof controls[j].buf;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(header);
        cmsg->cmsg_level = SOL_UDP;
        cmsg->cmsg_type = UDP_SEGMENT;
        cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)header->msg_iov[0].iov_len;
        memcpy(CMSG_DATA(cmsg), &size, sizeof size);
    }
    int sent;
    Py_BEGIN_ALLOW_THREADS
    sent = nmessages ? sendmmsg(fd, messages, (unsigned int)nmessages, MSG_DONTWAIT) : 0;
    Py_END_ALLOW_THREADS
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
            sent = 0;
        else {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    long datagrams = 0;
    for (int j = 0; j < sent; j++)
        datagrams += datagrams_in[j];
    result = PyLong_FromLong(datagrams);
done:
    PyBuffer_Release(&address);
    PyBuffer_Release(&buffer);
    return result;
}

/*
 * recv_batch(fd, buffer, slot, count) -> (starts, sizes)
 *
 * recvmmsg up to ``count`` messages, message i into buffer[i * slot : (i + 1) * slot]. Each message is
 * one datagram, or (UDP_GRO) a run of datagrams of the size its control message gives, the last one
 * possibly shorter. Returns where each datagram starts in the buffer and its size: -1 for a message
 * the kernel truncated (longer than slot: it cannot be ours), and a message whose segment size is
 * below the smallest datagram of ours counts as one datagram of size -1. Empty lists: none queued.
 */
static PyObject *
speedups_recv_batch(PyObject *module, PyObject *args)
{
    int fd;
    Py_buffer buffer;
    Py_ssize_t slot, count;
    if (!PyArg_ParseTuple(args, "iw*nn:recv_batch", &fd, &buffer, &slot, &count))
        return NULL;
    PyObject *result = NULL, *starts = NULL, *sizes = NULL;
    struct mmsghdr messages[1024];
    struct iovec vectors[1024];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } controls[1024];
    if (count < 1 || count > 1024 || slot < 1 || slot > buffer.len / count) { /* count * slot could overflow */
        PyErr_SetString(PyExc_ValueError, "recv_batch: count and slot do not fit the buffer");
        goto done;
    }
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (Py_ssize_t i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffer.buf + i * slot;
        vectors[i].iov_len = (size_t)slot;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_control = controls[i].buf;
        messages[i].msg_hdr.msg_controllen = sizeof controls[i].buf;
    }
    int got;
    Py_BEGIN_ALLOW_THREADS
    got = recvmmsg(fd, messages, (unsigned int)count, MSG_DONTWAIT, NULL);
    Py_END_ALLOW_THREADS
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            got = 0;
        else {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    starts = PyList_New(0);
    sizes = PyList_New(0);
    if (starts == NULL || sizes == NULL)
        goto done;
    for (int i = 0; i < got; i++) {
        struct msghdr *header = &messages[i].msg_hdr;
        Py_ssize_t total = (Py_ssize_t)messages[i].msg_len, base = i * slot, segment = total;
        if ((header->msg_flags & MSG_TRUNC) || total > slot)
            segment = total = -1;
        else {
            for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c)) {
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                    int value;
                    memcpy(&value, CMSG_DATA(c), sizeof value);
                    segment = value;
                }
            }
            if (segment < OVERHEAD)
                segment = total = -1; /* nothing of ours is this small: one rejection, not thousands */
        }
        Py_ssize_t position = 0;
        do {
            Py_ssize_t size = total < 0 ? -1 : (total - position < segment ? total - position : segment);
            PyObject *start = PyLong_FromSsize_t(base + position), *length = PyLong_FromSsize_t(size);
            int failed = start == NULL || length == NULL || PyList_Append(starts, start) < 0 ||
                         PyList_Append(sizes, length) < 0;
            Py_XDECREF(start);
            Py_XDECREF(length);
            if (failed)
                goto done;
            position += segment;
        } while (total > 0 && position < total);
    }
    result = PyTuple_Pack(2, starts, sizes);
done:
    Py_XDECREF(starts);
    Py_XDECREF(sizes);
    PyBuffer_Release(&buffer);
    return result;
}

/* enable_coalescing(fd) -> True if the kernel will hand over runs of datagrams (UDP_GRO). */
static PyObject *
speedups_enable_coalescing(PyObject *module, PyObject *args)
{
    int fd, on = 1;
    if (!PyArg_ParseTuple(args, "i:enable_coalescing", &fd))
        return NULL;
    return PyBool_FromLong(setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0);
}

#endif /* HAVE_MMSG */

/*
 * join_fragments(joined, size, k, header_size) -> bytes | None
 *
 * The block carried by k data fragments of ``size`` bytes each, laid end to end in ``joined`` (which
 * may hold more fragments after them, parity, ignored): each fragment is liberasurecode's header of
 * ``header_size`` bytes, starting u32 index, u32 data size, u32 backend metadata size, u64 original
 * block size (little-endian), then its data. With every data fragment present, Reed-Solomon decoding
 * is only this concatenation. None unless each fragment says it is the one at its position, every
 * data size is size - header_size, and all claim the same original size, no larger than k fragments
 * carry: the checks isal.Recovery.decode makes, so both give the same answer (tested).
 */
static PyObject *
speedups_join_fragments(PyObject *module, PyObject *args)
{
    Py_buffer joined;
    Py_ssize_t size, k, header_size;
    if (!PyArg_ParseTuple(args, "y*nnn:join_fragments", &joined, &size, &k, &header_size))
        return NULL;
    PyObject *result = NULL;
    if (k < 1 || k > MAX_FRAGMENTS || header_size < 20 || size < 1 || size > 0xffff || joined.len / size < k) {
        PyErr_SetString(PyExc_ValueError, "join_fragments: k, size or header_size out of range, or fewer than k fragments");
        goto done;
    }
    if (size < header_size) { /* a fragment shorter than its own header: nothing to join */
        result = Py_NewRef(Py_None);
        goto done;
    }
    const unsigned char *base = joined.buf;
    uint64_t data = (uint64_t)(size - header_size);
    uint64_t original = load64le(base + 12);
    if (original > data * (uint64_t)k) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        const unsigned char *h = base + i * size;
        if (load32le(h) != (uint64_t)i || load32le(h + 4) != data || load64le(h + 12) != original) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)original);
    if (result == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    uint64_t left = original;
    for (Py_ssize_t i = 0; i < k && left; i++) {
        size_t part = left < data ? (size_t)left : (size_t)data;
        memcpy(out, base + i * size + header_size, part);
        out += part;
        left -= part;
    }
done:
    PyBuffer_Release(&joined);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"join_fragments", speedups_join_fragments, METH_VARARGS,
     "join_fragments(joined, size, k, header_size) -> bytes | None\n\n"
     "The block of k complete data fragments laid end to end, if their headers agree; else None."},
    {"encode_columns", speedups_encode_columns, METH_VARARGS,
     "encode_columns(source, offsets, samples) -> bytes or None\n\n"
     "otseam.core.columns.encode for runs whose values are all floats or all str, byte for byte; None "
     "where the Python encoder must decide."},
#ifdef HAVE_MMSG
    {"send_batch", speedups_send_batch, METH_VARARGS,
     "send_batch(fd, address, buffer, slot, lengths, first, count, segment) -> sent\n\n"
     "sendmmsg datagrams first .. first+count-1 (datagram i at i * slot, lengths[i] long) to a packed "
     "sockaddr, runs of equal length as one segmented message if segment; how many datagrams left "
     "(0 when the socket's queue is full)."},
    {"recv_batch", speedups_recv_batch, METH_VARARGS,
     "recv_batch(fd, buffer, slot, count) -> (starts, sizes)\n\n"
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
#ifdef HAVE_CODER
    if (PyType_Ready(&CoderType) < 0)
        return NULL;
    crc_init();
    crc_index_init();
#endif
#ifdef HAVE_MB
    hmac_lanes = mb_check() ? MB_LANES : 1;
#endif
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
#ifdef HAVE_CODER
    if (PyModule_AddObjectRef(module, "Coder", (PyObject *)&CoderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    if (PyModule_AddObjectRef(module, "Mac", (PyObject *)&MacType) < 0 ||
        PyModule_AddIntConstant(module, "VERSION", WIRE_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "API", SPEEDUPS_API) < 0 ||
        PyModule_AddIntConstant(module, "HMAC_LANES", hmac_lanes) < 0 ||
        PyModule_AddIntConstant(module, "HEADER_SIZE", HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "MAC_SIZE", MAC_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "BEACON_PAYLOAD", BEACON_PAYLOAD) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_RUN", ITEM_RUN) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_BEACON", ITEM_BEACON) < 0 ||
        PyModule_AddIntConstant(module, "ITEM_FOREIGN_BEACON", ITEM_FOREIGN_BEACON) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
