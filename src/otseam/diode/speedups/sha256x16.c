#include "speedups.h"

/* --- Sixteen HMACs at once (AVX-512), for the datagrams of one block ---------------------------------
 *
 * Sealing is most of the sender's CPU once everything else is in C: one HMAC-SHA256 per datagram,
 * 72 per full block, each about 1.4 us with OpenSSL's SHA-256 (using the CPU's SHA extensions). The
 * datagrams of a block all have the same length, so sixteen of them can be hashed in lock step, one
 * per 32-bit lane of AVX-512 registers: about 1.8 times as fast here. The receiver checks the same
 * way (check_all), runs of four or more datagrams of one length at a time. This is SHA-256 as
 * FIPS 180-4 defines it (the round constants are the cube roots it names). It is used only where the
 * CPU and the OS support AVX-512 and after it gave OpenSSL's MACs on test messages at import
 * (mb_check); the tests compare whole blocks with pack_block, which seals with OpenSSL, and the
 * receiver's verdicts with OpenSSL's MACs for every datagram size of a 1,500-byte link. Nothing is
 * looked up by secret data: the time does not depend on the key, and comparisons take constant time.
 */

#ifdef HAVE_MB
#include <immintrin.h>

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
int hmac_lanes = 1;

/* Seal ``count`` datagrams of the same ``size`` (header and payload) at base + i * stride: the MAC
 * goes right after each. The caller has checked that each datagram and its MAC fit its stride. */
void
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
void
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

/* At import: sixteen lanes only where the CPU has them and they give OpenSSL's MACs. */
void
lanes_init(void)
{
#ifdef HAVE_MB
    hmac_lanes = mb_check() ? MB_LANES : 1;
#endif
}
