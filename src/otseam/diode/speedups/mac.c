#include "speedups.h"

#include <limits.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

/* --- Mac: an AES-256-GCM tag (GMAC) per datagram, from OpenSSL's EVP interface -------------------
 *
 * Nothing here is cryptography of our own: OpenSSL derives the keys (HKDF-SHA256) and computes the
 * tags (AES-GCM with the datagram as associated data and nothing encrypted, which is GMAC; GHASH runs
 * on the CPU's carry-less multiply). docs/diode.md says why this construction, how the nonce is made
 * and why it never repeats under one key; bench/bench_diode_mac.py has the figures.
 *
 * Each session (a sender's run) has its own key, HKDF(master key, info = SESSION_KEY_INFO + session id).
 * Its GCM context is keyed once and kept in a small table: a datagram then costs an IV set-up, one
 * GHASH pass over its bytes and the tag, with no allocation. Forged datagrams naming random sessions
 * can only take the slots that never authenticated anything (see session_gcm). */

static const char SESSION_KEY_INFO[] = "seam diode wire 3: AES-256-GCM key of session ";
#define INFO_SIZE (sizeof SESSION_KEY_INFO - 1 + 8)

static void
forget_keys(MacObject *self)
{
    for (int i = 0; i < SESSION_KEYS; i++) {
        EVP_CIPHER_CTX_free(self->keys[i].gcm); /* OpenSSL clears the key schedule it held */
        self->keys[i].gcm = NULL;
        self->keys[i].used = 0;
    }
    self->last = NULL;
    self->ready = 0;
    EVP_KDF_CTX_free(self->kdf); /* clears the pseudorandom key it held */
    self->kdf = NULL;
    EVP_CIPHER_free(self->aes);
    self->aes = NULL;
}

void
mac_free(MacObject *self)
{
    forget_keys(self);
}

int
mac_ready(const MacObject *self)
{
    return self->ready;
}

/* An HKDF-SHA256 context in ``mode`` keyed with key[0 .. size); NULL if OpenSSL failed. */
static EVP_KDF_CTX *
hkdf(const unsigned char *key, size_t size, int mode)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL);
    EVP_KDF_CTX *ctx = kdf == NULL ? NULL : EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf); /* the context holds its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, size),
        OSSL_PARAM_construct_end(),
    };
    if (ctx != NULL && !EVP_KDF_CTX_set_params(ctx, params)) {
        EVP_KDF_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int
mac_keys(MacObject *self, const unsigned char *key, size_t size)
{
    forget_keys(self);
    if (size == 0)
        return -1;
    /* HKDF's extract step once (no salt), here; derive() runs the expand step per session. */
    unsigned char prk[32];
    EVP_KDF_CTX *extract = hkdf(key, size, EVP_KDF_HKDF_MODE_EXTRACT_ONLY);
    int failed = extract == NULL || EVP_KDF_derive(extract, prk, sizeof prk, NULL) <= 0;
    EVP_KDF_CTX_free(extract);
    self->kdf = failed ? NULL : hkdf(prk, sizeof prk, EVP_KDF_HKDF_MODE_EXPAND_ONLY);
    OPENSSL_cleanse(prk, sizeof prk);
    self->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (self->kdf == NULL || self->aes == NULL) {
        forget_keys(self);
        return -1;
    }
    for (int i = 0; i < SESSION_KEYS; i++) {
        self->keys[i].gcm = EVP_CIPHER_CTX_new();
        if (self->keys[i].gcm == NULL) {
            forget_keys(self);
            return -1;
        }
    }
    self->ready = 1;
    return 0;
}

/* HKDF-SHA256(master, no salt, info) into out: the session's AES-256 key. The extract step ran once, in
 * mac_keys; self->kdf expands from its pseudorandom key, with only the info set per session. */
static int
derive(MacObject *self, uint64_t session, unsigned char out[32])
{
    unsigned char info[INFO_SIZE];
    memcpy(info, SESSION_KEY_INFO, sizeof SESSION_KEY_INFO - 1);
    store64(info + sizeof SESSION_KEY_INFO - 1, session);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof info),
        OSSL_PARAM_construct_end(),
    };
    return EVP_KDF_derive(self->kdf, out, 32, params) ? 0 : -1;
}

/* The keyed GCM context of a session: found in the table, or derived into a slot. The slot taken is
 * an empty one, else the one least recently used among those that never authenticated a datagram,
 * else the least recently used: forgeries naming other sessions cannot evict a live session's key. */
static SessionKey *
session_key(MacObject *self, uint64_t session)
{
    SessionKey *last = self->last;
    self->clock++;
    if (last != NULL && last->used && last->session == session) {
        last->used = self->clock;
        return last;
    }
    SessionKey *victim = NULL;
    for (int i = 0; i < SESSION_KEYS; i++) {
        SessionKey *s = &self->keys[i];
        if (s->used && s->session == session) {
            s->used = self->clock;
            self->last = s;
            return s;
        }
        if (victim == NULL || !s->used ||
            (victim->used && (victim->trusted > s->trusted || (victim->trusted == s->trusted && s->used < victim->used))))
            victim = s;
    }
    unsigned char key[32];
    int failed = derive(self, session, key) < 0 || !EVP_EncryptInit_ex(victim->gcm, self->aes, NULL, key, NULL);
    OPENSSL_cleanse(key, sizeof key);
    if (failed) {
        victim->used = 0;
        return NULL;
    }
    victim->session = session;
    victim->used = self->clock;
    victim->trusted = 0;
    self->last = victim;
    return victim;
}

/* The tag of the datagram whose header and payload are data[0 .. size), size >= HEADER_SIZE. The nonce
 * (96 bits): the block sequence (bytes 16-23; in a beacon, its beacon number, the payload's last 8
 * bytes), the type, the fragment index, two zero bytes. */
static int
tag(MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE], SessionKey **used)
{
    if (!self->ready || size < HEADER_SIZE || size > INT_MAX)
        return -1;
    SessionKey *key = session_key(self, load64(data + 8));
    if (key == NULL)
        return -1;
    unsigned char nonce[12];
    const unsigned char *counter = data[3] == KIND_BEACON && size >= HEADER_SIZE + 8 ? data + size - 8 : data + 16;
    memcpy(nonce, counter, 8);
    nonce[8] = data[3];
    nonce[9] = data[7];
    nonce[10] = nonce[11] = 0;
    unsigned char nothing[16];
    int length;
    if (!EVP_EncryptInit_ex(key->gcm, NULL, NULL, NULL, nonce) ||
        !EVP_EncryptUpdate(key->gcm, NULL, &length, data, (int)size) ||
        !EVP_EncryptFinal_ex(key->gcm, nothing, &length) ||
        !EVP_CIPHER_CTX_ctrl(key->gcm, EVP_CTRL_AEAD_GET_TAG, MAC_SIZE, out))
        return -1;
    *used = key;
    return 0;
}

int
mac_compute(MacObject *self, const unsigned char *data, size_t size, unsigned char out[MAC_SIZE])
{
    SessionKey *used;
    return tag(self, data, size, out, &used);
}

/* Seal ``count`` datagrams of one length: datagram i at base + i * stride, its MAC after its first
 * ``size`` bytes. */
int
seal_all(MacObject *self, unsigned char *base, Py_ssize_t stride, Py_ssize_t size, int count)
{
    SessionKey *used;
    for (int i = 0; i < count; i++) {
        unsigned char *d = base + (Py_ssize_t)i * stride;
        if (tag(self, d, (size_t)size, d + size, &used) < 0)
            return -1;
        used->trusted = 1; /* our own session */
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
    SessionKey *used;
    for (Py_ssize_t c = 0; c < count; c++) {
        const unsigned char *d = data + at[c];
        size_t body = (size_t)(size[c] - MAC_SIZE);
        if (tag(self, d, body, expected, &used) < 0)
            return -1;
        ok[c] = CRYPTO_memcmp(expected, d + body, MAC_SIZE) == 0;
        if (ok[c])
            used->trusted = 1;
    }
    return 0;
}
