#include "speedups.h"

/* --- Mac: HMAC-SHA256 truncated to 16 bytes, with both padded key blocks hashed once -------------- */

void
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
void
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

