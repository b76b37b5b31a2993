/*
 * buf.c - input byte buffer and output chunk queue.
 *
 * isd_buf grows by doubling and compacts (moves unread bytes to the front)
 * before growing when at least half of it is already consumed, so a buffer
 * that is read as fast as it is filled never grows.  An emptied buffer
 * rewinds to offset 0 for free.
 *
 * isd_outq keeps output as a list of chunks so that a large print is copied
 * once (into a chunk of its own) instead of being re-copied by every
 * realloc of one growing buffer; writev sends many chunks in one syscall.
 *
 * Memory of BIG_MIN bytes and more (a long line, a large print) is mapped
 * pages of its own, so it goes back to the system the moment it is freed.
 * Through malloc it would not stay so: glibc raises its mmap threshold to
 * the size of each mapped block it frees, after which megabyte buffers come
 * from the heap, and a few hostile clients with megabyte lines leave the
 * heap fragmented and the server's RSS up by tens of MiB for good
 * (xt/hostile-memory.t measures it).
 */
#include "isd_int.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/uio.h>
#include <sys/mman.h>

#define BUF_MIN 4096

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#  define MAP_ANONYMOUS MAP_ANON
#endif
/* Under AddressSanitizer everything stays with malloc, which it checks
 * byte by byte (a mapping is only checked at its page-rounded end). */
#if defined(__SANITIZE_ADDRESS__)
#  define ISD_MALLOC_ONLY 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define ISD_MALLOC_ONLY 1
#  endif
#endif
#if defined(MAP_ANONYMOUS) && !defined(ISD_MALLOC_ONLY)
#  define ISD_BIG_MAPS 1
#endif
#define BIG_MIN ((size_t)128 * 1024)   /* used only with ISD_BIG_MAPS */

/* mem_alloc/mem_free/mem_grow: malloc below BIG_MIN, pages of their own
 * from there on.  The size decides which, so callers pass it back. */
static void *mem_alloc(size_t n)
{
#ifdef ISD_BIG_MAPS
    if (n >= BIG_MIN) {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
#endif
    return malloc(n);
}

static void mem_free(void *p, size_t n)
{
    (void)n;
    if (!p)
        return;
#ifdef ISD_BIG_MAPS
    if (n >= BIG_MIN) {
        munmap(p, n);
        return;
    }
#endif
    free(p);
}

/* Grow p (size old, first keep bytes in use) to n > old bytes. */
static void *mem_grow(void *p, size_t old, size_t n, size_t keep)
{
#ifdef ISD_BIG_MAPS
    void *q;

    if (n >= BIG_MIN) {
#  if defined(__linux__) && defined(MREMAP_MAYMOVE)
        if (p && old >= BIG_MIN) {
            q = mremap(p, old, n, MREMAP_MAYMOVE);
            return q == MAP_FAILED ? NULL : q;
        }
#  endif
        q = mem_alloc(n);
        if (!q)
            return NULL;
        if (keep)
            memcpy(q, p, keep);
        mem_free(p, old);
        return q;
    }
#endif
    (void)old;
    (void)keep;
    return realloc(p, n);
}

void isd_buf_init(isd_buf *b)
{
    b->data = NULL;
    b->rpos = b->wpos = b->cap = 0;
}

void isd_buf_free(isd_buf *b)
{
    mem_free(b->data, b->cap);
    isd_buf_init(b);
}

int isd_buf_reserve(isd_buf *b, size_t n)
{
    size_t len = b->wpos - b->rpos, want, cap;
    char *p;

    if (b->cap - b->wpos >= n)
        return 0;
    if (len > SIZE_MAX - n) {
        errno = ENOMEM;
        return -1;
    }
    want = len + n;
    /* Compact when that alone makes room and the move is cheap enough. */
    if (b->cap >= want && b->rpos >= len) {
        memmove(b->data, b->data + b->rpos, len);
        b->rpos = 0;
        b->wpos = len;
        return 0;
    }
    cap = b->cap ? b->cap : BUF_MIN;
    while (cap < want) {
        if (cap > SIZE_MAX / 2) {
            cap = want;
            break;
        }
        cap *= 2;
    }
    if (b->rpos == 0) {
        p = mem_grow(b->data, b->cap, cap, len);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
    } else {
        p = mem_alloc(cap);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        if (len)
            memcpy(p, b->data + b->rpos, len);
        mem_free(b->data, b->cap);
    }
    b->data = p;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = len;
    return 0;
}

int isd_buf_append(isd_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (isd_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->wpos, p, n);
    b->wpos += n;
    return 0;
}

void isd_buf_consume(isd_buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos >= b->wpos)
        b->rpos = b->wpos = 0;
}

int isd_buf_prepend(isd_buf *b, const void *p, size_t n)
{
    size_t len = isd_buf_len(b);

    if (n == 0)
        return 0;
    if (b->rpos >= n) {
        b->rpos -= n;
        memcpy(b->data + b->rpos, p, n);
        return 0;
    }
    if (isd_buf_reserve(b, n) < 0)
        return -1;
    memmove(b->data + b->rpos + n, b->data + b->rpos, len);
    memcpy(b->data + b->rpos, p, n);
    b->wpos += n;
    return 0;
}

/* ---------------------------------------------------------------- outq */

/* A chunk holds its bytes itself (data[0..cap)), or, with blob set, stands
 * for a shared blob's bytes (cap 0: nothing can be appended to it). */
struct isd_chunk {
    isd_chunk *next;
    size_t     rpos, wpos, cap;
    isd_blob  *blob;
    char       data[];
};

struct isd_blob {
    size_t refcnt, len;
    char   data[];
};

static char *chunk_bytes(const isd_chunk *c)
{
    return c->blob ? c->blob->data : (char *)c->data;
}

isd_blob *isd_blob_new(const void *p, size_t n)
{
    isd_blob *b;

    if (n > SIZE_MAX - sizeof *b || !(b = mem_alloc(sizeof *b + n))) {
        errno = ENOMEM;
        return NULL;
    }
    b->refcnt = 1;
    b->len = n;
    if (n)
        memcpy(b->data, p, n);
    return b;
}

void isd_blob_unref(isd_blob *b)
{
    if (b && !--b->refcnt)
        mem_free(b, sizeof *b + b->len);
}

size_t isd_blob_len(const isd_blob *b) { return b->len; }
const char *isd_blob_data(const isd_blob *b) { return b->data; }

isd_blob *isd_blob_ref(isd_blob *b)
{
    b->refcnt++;
    return b;
}

static void chunk_free(isd_chunk *c)
{
    if (c->blob)
        isd_blob_unref(c->blob);
    mem_free(c, sizeof *c + c->cap);
}

int isd_outq_append_blob(isd_outq *q, isd_blob *b)
{
    isd_chunk *c;

    if (!b->len)
        return 0;
    if (!(c = malloc(sizeof *c))) {
        errno = ENOMEM;
        return -1;
    }
    c->next = NULL;
    c->rpos = 0;
    c->wpos = b->len;
    c->cap = 0;
    c->blob = b;
    b->refcnt++;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += b->len;
    return 0;
}

/* Small appends go to a tail chunk that starts small and doubles up to
 * CHUNK_SIZE: a one-line reply costs a 512-byte block (malloc's fast
 * path), not 16 KiB, so a batch that answers a thousand connections stays
 * within the caches; a stream of prints still ends up in 16 KiB chunks. */
#define CHUNK_SIZE  16384
#define CHUNK_FIRST (512 - sizeof(isd_chunk))

void isd_outq_init(isd_outq *q)
{
    q->head = q->tail = NULL;
    q->bytes = 0;
}

int isd_outq_append(isd_outq *q, const void *p, size_t n)
{
    return isd_outq_append_spare(q, p, n, NULL);
}

int isd_outq_append_spare(isd_outq *q, const void *p, size_t n,
                          isd_chunk **spare)
{
    isd_chunk *t = q->tail, *c;
    size_t room, cap;

    if (n == 0)
        return 0;
    if (t && !t->blob && (room = t->cap - t->wpos) >= n) {
        memcpy(t->data + t->wpos, p, n);
        t->wpos += n;
        q->bytes += n;
        return 0;
    }
    /* Small appends share a fresh chunk, twice the last one's size (up to
     * CHUNK_SIZE); a large one gets an exact-size chunk of its own (one
     * copy, no waste). */
    if (n >= CHUNK_SIZE)
        cap = n;
    else {
        cap = t && t->cap ? (t->cap >= CHUNK_SIZE / 2 ? CHUNK_SIZE : t->cap * 2 + sizeof *c) : CHUNK_FIRST;
        while (cap < n)
            cap = cap * 2 + sizeof *c;
        if (cap > CHUNK_SIZE)
            cap = CHUNK_SIZE;
    }
    if (cap > SIZE_MAX - sizeof *c) {
        errno = ENOMEM;
        return -1;
    }
    if (cap == CHUNK_FIRST && spare && *spare) {
        c = *spare;
        *spare = NULL;
    } else {
        c = mem_alloc(sizeof *c + cap);
    }
    if (!c) {
        errno = ENOMEM;
        return -1;
    }
    c->next = NULL;
    c->rpos = 0;
    c->wpos = n;
    c->cap = cap;
    c->blob = NULL;
    memcpy(c->data, p, n);
    if (t)
        t->next = c;
    else
        q->head = c;
    q->tail = c;
    q->bytes += n;
    return 0;
}

int isd_outq_iov(const isd_outq *q, struct iovec *iov, int max)
{
    const isd_chunk *c;
    int n = 0;

    for (c = q->head; c && n < max; c = c->next) {
        iov[n].iov_base = (void *)(chunk_bytes(c) + c->rpos);
        iov[n].iov_len = c->wpos - c->rpos;
        n++;
    }
    return n;
}

void isd_outq_consume(isd_outq *q, size_t n)
{
    isd_outq_consume_spare(q, n, NULL);
}

void isd_outq_consume_spare(isd_outq *q, size_t n, isd_chunk **spare)
{
    while (n && q->head) {
        isd_chunk *c = q->head;
        size_t have = c->wpos - c->rpos;

        if (n < have) {
            c->rpos += n;
            q->bytes -= n;
            return;
        }
        n -= have;
        q->bytes -= have;
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        if (c->cap == CHUNK_FIRST && spare && !*spare)
            *spare = c;
        else
            chunk_free(c);
    }
}

void isd_outq_spare_free(isd_chunk **spare)
{
    if (*spare)
        mem_free(*spare, sizeof **spare + (*spare)->cap);
    *spare = NULL;
}

void isd_outq_clear(isd_outq *q)
{
    isd_chunk *c = q->head, *next;

    for (; c; c = next) {
        next = c->next;
        chunk_free(c);
    }
    isd_outq_init(q);
}
