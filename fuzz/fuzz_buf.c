/*
 * fuzz_buf.c - libFuzzer target for the buffers (c_src/buf.c): isd_buf and
 * isd_outq driven by a program read from the input, against a model (a
 * plain byte array each).  After every operation the contents, lengths and
 * invariants must match the model; writev's view (isd_outq_iov) must be the
 * model's bytes in order.
 *
 * Program: a sequence of (opcode, argument) byte pairs; data for appends
 * and prepends is taken from the input that follows, or generated (large
 * appends, to reach the big-chunk path of isd_outq).
 *
 * Build: see fuzz/run (clang -fsanitize=fuzzer,address,undefined).
 */
#include "isd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define CHECK(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "fuzz_buf: %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

#define LIMIT 262144    /* generated appends stop past this much */

typedef struct model {
    unsigned char *p;
    size_t len, cap;
} model;

static void m_reserve(model *m, size_t n)
{
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2 + 16;
        m->p = realloc(m->p, m->cap);
        CHECK(m->p != NULL, "model out of memory");
    }
}

static void m_append(model *m, const void *p, size_t n)
{
    if (!n)
        return;
    m_reserve(m, n);
    memcpy(m->p + m->len, p, n);
    m->len += n;
}

static void m_prepend(model *m, const void *p, size_t n)
{
    if (!n)
        return;
    m_reserve(m, n);
    memmove(m->p + n, m->p, m->len);
    memcpy(m->p, p, n);
    m->len += n;
}

static void m_consume(model *m, size_t n)
{
    if (!n)
        return;
    memmove(m->p, m->p + n, m->len - n);
    m->len -= n;
}

static void check_buf(const isd_buf *b, const model *m)
{
    CHECK(b->rpos <= b->wpos && b->wpos <= b->cap, "rpos %zu wpos %zu cap %zu",
          b->rpos, b->wpos, b->cap);
    CHECK(isd_buf_len(b) == m->len, "buf len %zu, model %zu", isd_buf_len(b), m->len);
    CHECK(isd_buf_head(b) != NULL, "head NULL");
    CHECK(m->len == 0 || memcmp(isd_buf_head(b), m->p, m->len) == 0, "buf contents differ");
    CHECK(b->cap == 0 || b->data != NULL, "cap without data");
}

static void check_outq(const isd_outq *q, const model *m, int maxiov)
{
    struct iovec iov[64];
    size_t off = 0;
    int i, n;

    CHECK(q->bytes == m->len, "outq bytes %zu, model %zu", q->bytes, m->len);
    CHECK((q->head == NULL) == (q->tail == NULL), "head/tail disagree");
    CHECK(m->len || q->head == NULL, "empty queue keeps chunks");
    n = isd_outq_iov(q, iov, maxiov);
    CHECK(n >= 0 && n <= maxiov, "iov count %d of %d", n, maxiov);
    for (i = 0; i < n; i++) {
        CHECK(iov[i].iov_len > 0, "empty iovec %d", i);
        CHECK(off + iov[i].iov_len <= m->len, "iov past the end");
        CHECK(memcmp(iov[i].iov_base, m->p + off, iov[i].iov_len) == 0, "iov %d differs", i);
        off += iov[i].iov_len;
    }
    if (n < maxiov)
        CHECK(off == m->len, "iovs cover %zu of %zu", off, m->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    isd_buf b;
    isd_outq q;
    model mb = { NULL, 0, 0 }, mq = { NULL, 0, 0 };
    size_t i = 0;
    static unsigned char big[200000];
    static int big_init;

    if (!big_init) {
        for (i = 0; i < sizeof big; i++)
            big[i] = (unsigned char)(i * 7 + (i >> 8));
        big_init = 1;
        i = 0;
    }
    isd_buf_init(&b);
    isd_outq_init(&q);
    while (i + 2 <= size) {
        unsigned op = data[i] % 12, arg = data[i + 1];
        size_t n;
        i += 2;
        switch (op) {
        case 0:     /* buf append, data from the input */
        case 1:
            n = arg % 97;
            if (n > size - i)
                n = size - i;
            CHECK(isd_buf_append(&b, data + i, n) == 0, "append");
            m_append(&mb, data + i, n);
            i += n;
            break;
        case 2:     /* buf append, generated, up to ~50 KiB */
            n = (size_t)arg * 199;
            if (mb.len > LIMIT)
                break;              /* checks stay fast */
            CHECK(isd_buf_append(&b, big + arg, n) == 0, "append big");
            m_append(&mb, big + arg, n);
            break;
        case 3:     /* buf consume */
            n = mb.len ? arg % (mb.len + 1) : 0;
            if (arg > 250)
                n = mb.len;
            isd_buf_consume(&b, n);
            m_consume(&mb, n);
            if (!mb.len)
                CHECK(b.rpos == 0 && b.wpos == 0, "emptied buffer not rewound");
            break;
        case 4:     /* buf prepend */
            n = arg % 40;
            if (n > size - i)
                n = size - i;
            CHECK(isd_buf_prepend(&b, data + i, n) == 0, "prepend");
            m_prepend(&mb, data + i, n);
            i += n;
            break;
        case 5:     /* buf reserve */
            n = (size_t)arg * 131;
            CHECK(isd_buf_reserve(&b, n) == 0, "reserve");
            CHECK(b.cap - b.wpos >= n, "reserve %zu left %zu", n, b.cap - b.wpos);
            break;
        case 6:     /* buf free (rarely) */
            if (arg < 16) {
                isd_buf_free(&b);
                mb.len = 0;
            }
            break;
        case 7:     /* outq append, from the input */
            n = arg % 113;
            if (n > size - i)
                n = size - i;
            CHECK(isd_outq_append(&q, data + i, n) == 0, "outq append");
            m_append(&mq, data + i, n);
            i += n;
            break;
        case 8:     /* outq append, generated: small to past a chunk */
            n = (arg & 1) ? (size_t)arg * 13 : (size_t)arg * 731;
            if (mq.len > LIMIT)
                break;
            if (n > sizeof big - arg)
                n = sizeof big - arg;
            CHECK(isd_outq_append(&q, big + arg, n) == 0, "outq append big");
            m_append(&mq, big + arg, n);
            break;
        case 9:     /* outq consume (as a partial writev would) */
            n = mq.len ? ((size_t)arg * 977) % (mq.len + 1) : 0;
            if (arg > 250)
                n = mq.len;
            isd_outq_consume(&q, n);
            m_consume(&mq, n);
            break;
        case 10:    /* outq clear (rarely) */
            if (arg < 16) {
                isd_outq_clear(&q);
                mq.len = 0;
            }
            break;
        case 11:    /* a writev view with few iovecs */
            check_outq(&q, &mq, 1 + arg % 64);
            break;
        }
        check_buf(&b, &mb);
        check_outq(&q, &mq, 64);
    }
    isd_buf_free(&b);
    isd_outq_clear(&q);
    free(mb.p);
    free(mq.p);
    return 0;
}
