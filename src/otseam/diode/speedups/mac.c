#include "speedups.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

/* --- Mac: HMAC-SHA256 from OpenSSL's EVP_MAC interface, truncated to MAC_SIZE bytes ----------------
 *
 * Nothing here computes a hash: OpenSSL does (with the CPU's SHA extensions where it has them). The
 * keyed context is set up once; EVP_MAC_init with no key starts the next message from the key's
 * already-hashed padded blocks (RFC 2104's precomputation, done by OpenSSL), so a datagram costs two
 * SHA-256 passes over its own bytes and no allocation. See bench/bench_diode_mac.py for the figures
 * behind the choice of HMAC-SHA256. */

int
mac_keys(MacObject *self, const unsigned char *key, size_t size)
{
    if (self->ctx != NULL) {
        EVP_MAC_CTX_free(self->ctx);
        self->ctx = NULL;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (mac == NULL)
        return -1;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); /* the context holds its own reference */
    if (ctx == NULL)
        return -1;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    /* A zero-length key is valid HMAC; OpenSSL wants a non-NULL pointer for it. */
    static const unsigned char empty[1] = {0};
    if (!EVP_MAC_init(ctx, size ? key : empty, size, params)) {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }
    self->ctx = ctx;
    return 0;
}

int
mac_compute(MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    size_t length = 0;
    if (self->ctx == NULL || !EVP_MAC_init(self->ctx, NULL, 0, NULL) || !EVP_MAC_update(self->ctx, data, size) ||
        !EVP_MAC_final(self->ctx, digest, &length, sizeof digest) || length < MAC_SIZE)
        return -1;
    memcpy(out, digest, MAC_SIZE);
    OPENSSL_cleanse(digest, sizeof digest);
    return 0;
}

/* Seal ``count`` datagrams of one length: datagram i at base + i * stride, its MAC after its first
 * ``size`` bytes. */
int
seal_all(MacObject *self, unsigned char *base, Py_ssize_t stride, Py_ssize_t size, int count)
{
    for (int i = 0; i < count; i++) {
        unsigned char *d = base + (Py_ssize_t)i * stride;
        if (mac_compute(self, d, (size_t)size, d + size) < 0)
            return -1;
    }
    return 0;
}

/* ok[c] = whether datagram c (at data + at[c], size[c] bytes, MAC last) carries the right MAC, compared
 * in constant time. -1 if OpenSSL failed (then nothing is trusted). */
int
check_all(MacObject *self, const unsigned char *data, const Py_ssize_t at[], const Py_ssize_t size[], Py_ssize_t count,
          unsigned char ok[])
{
    unsigned char expected[MAC_SIZE];
    for (Py_ssize_t c = 0; c < count; c++) {
        const unsigned char *d = data + at[c];
        size_t body = (size_t)(size[c] - MAC_SIZE);
        if (mac_compute(self, d, body, expected) < 0)
            return -1;
        ok[c] = CRYPTO_memcmp(expected, d + body, MAC_SIZE) == 0;
    }
    return 0;
}
