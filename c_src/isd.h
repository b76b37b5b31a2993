/*
 * isd.h - the C core of IO::Socket::INET::Daemon.
 *
 * Plain C99 + POSIX, no Perl headers: everything here can be built and
 * unit-tested on its own (see t/c/).  The embedder (xs/Daemon.xs) drives it.
 *
 * Layers, bottom up:
 *   isd_buf / isd_outq   byte buffer and output chunk queue       (buf.c)
 *   isd_framing          where the next message ends              (frame.c)
 *   isd_loop             fds, backend (epoll/kqueue/poll)        (loop.c, be_*.c)
 *   isd_timer            deadlines of the loop                    (timer.c)
 *   isd_listen / accept  socket setup                             (sock.c)
 *   isd_proxy            the PROXY protocol header (HAProxy)     (proxy.c)
 *   isd_server/isd_conn  accept, read, frame, write, close        (conn.c)
 *   isd_conn_hook        a listener's connection preamble hook    (conn.c)
 *   isd_proxy_opts       the PROXY header as such a hook          (proxyconn.c)
 *   isd_tls_ctx          TLS server contexts (OpenSSL)            (tls.c)
 *
 * Conventions: functions return 0 (or a count) on success and -1 with errno
 * on failure; setup calls may also fill a caller's error buffer.  Nothing here
 * prints, exits or aborts.
 */
#ifndef ISD_H
#define ISD_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ buffers */

/* A contiguous byte buffer: data[rpos..wpos) is unread.  Zeroed = empty. */
typedef struct isd_buf {
    char  *data;
    size_t rpos, wpos, cap;
} isd_buf;

void isd_buf_init(isd_buf *b);
/* Release the memory; the buffer is empty and reusable afterwards. */
void isd_buf_free(isd_buf *b);
/* Make room for at least n more bytes at the tail (compacts or grows).
 * Returns 0, or -1/ENOMEM (buffer unchanged). */
int  isd_buf_reserve(isd_buf *b, size_t n);
/* Append n bytes.  Returns 0 or -1/ENOMEM (buffer unchanged). */
int  isd_buf_append(isd_buf *b, const void *p, size_t n);
/* Drop n (<= length) bytes from the head; an emptied buffer rewinds to 0. */
void isd_buf_consume(isd_buf *b, size_t n);
/* Put n bytes back in front of the unread data.  0 or -1/ENOMEM. */
int  isd_buf_prepend(isd_buf *b, const void *p, size_t n);

static inline size_t isd_buf_len(const isd_buf *b) { return b->wpos - b->rpos; }
static inline char  *isd_buf_head(const isd_buf *b)
{ return b->data ? b->data + b->rpos : (char *)""; }  /* never NULL + 0 */

/* Output queue: a list of chunks, written with writev.  Small appends fill
 * the tail chunk; large ones get a chunk of their own.  bytes = total queued. */
typedef struct isd_chunk isd_chunk;
typedef struct isd_outq {
    isd_chunk *head, *tail;
    size_t     bytes;
} isd_outq;

void   isd_outq_init(isd_outq *q);
/* Append n bytes (copied).  0 or -1/ENOMEM (queue unchanged). */
int    isd_outq_append(isd_outq *q, const void *p, size_t n);
/* Fill up to max iovecs with the queued bytes, oldest first; returns count. */
int    isd_outq_iov(const isd_outq *q, struct iovec *iov, int max);
/* Drop n (<= bytes) bytes from the front, freeing emptied chunks. */
void   isd_outq_consume(isd_outq *q, size_t n);
/* Drop everything. */
void   isd_outq_clear(isd_outq *q);
/* The same, with a spare: consume keeps an emptied small chunk in *spare
 * (if it is empty) instead of freeing it, and append takes its new small
 * chunk from there.  One spare shared by many queues (a server's) saves a
 * malloc and a free per short reply.  spare_free releases it. */
int    isd_outq_append_spare(isd_outq *q, const void *p, size_t n,
                             isd_chunk **spare);
void   isd_outq_consume_spare(isd_outq *q, size_t n, isd_chunk **spare);
void   isd_outq_spare_free(isd_chunk **spare);

/* Bytes shared by many queues (a broadcast): stored once, reference
 * counted; each queue holding them has a small entry of its own.
 * isd_blob_new copies n bytes (refcount 1, the caller's), or NULL/ENOMEM;
 * isd_outq_append_blob queues b (taking a reference of its own): 0 or
 * -1/ENOMEM. */
typedef struct isd_blob isd_blob;
isd_blob *isd_blob_new(const void *p, size_t n);
void      isd_blob_unref(isd_blob *b);
size_t    isd_blob_len(const isd_blob *b);
const char *isd_blob_data(const isd_blob *b);
isd_blob *isd_blob_ref(isd_blob *b);
int       isd_outq_append_blob(isd_outq *q, isd_blob *b);

/* ------------------------------------------------------------------ framing */

enum { ISD_FRAME_LINE = 0, ISD_FRAME_RAW = 1, ISD_FRAME_LENGTH = 2 };

/* The length prefix of LENGTH framing, as pack formats: C (1 byte), n/v
 * (2 bytes, big/little endian), N/V (4 bytes, big/little endian). */
enum { ISD_LEN_N = 0, ISD_LEN_n, ISD_LEN_V, ISD_LEN_v, ISD_LEN_C };

/* How a byte stream is cut into messages.  LINE: up to and including sep
 * (default "\n"); RAW: whatever is buffered; LENGTH: a length prefix in
 * lenfmt, then that many bytes.  max bounds one message (LENGTH: its
 * payload). */
typedef struct isd_framing {
    int         kind;
    int         lenfmt;   /* LENGTH: ISD_LEN_* */
    const char *sep;      /* LINE: terminator; NULL or seplen 0 mean "\n" */
    size_t      seplen;
    size_t      max;      /* longest message in bytes, terminator included */
} isd_framing;

/* Length of the first complete message in p[0..len), terminator or length
 * prefix included.  Returns >0 (a message), 0 (incomplete: need more bytes)
 * or -1 with errno = EMSGSIZE (the message cannot complete within f->max
 * bytes; LENGTH: the prefix claims more than max).  *scan carries how far
 * an earlier call already searched the same bytes, so a long line arriving
 * in small reads is scanned once; start it at 0 and reset it to 0 whenever
 * bytes are consumed from the front. */
ssize_t isd_frame_next(const isd_framing *f, const char *p, size_t len,
                       size_t *scan);

/* Bytes in front of each message's payload: LENGTH's prefix, else 0. */
size_t isd_frame_hdr(const isd_framing *f);

/* The prefix of a payload of n bytes in lenfmt, into out: its size, or 0
 * when n does not fit the format. */
size_t isd_frame_len_put(int lenfmt, uint64_t n, unsigned char out[4]);

/* --------------------------------------------------------------------- loop */

typedef struct isd_loop  isd_loop;
typedef struct isd_io    isd_io;
typedef struct isd_timer isd_timer;

enum { ISD_READ = 1u, ISD_WRITE = 2u };

typedef void (*isd_io_cb)(isd_loop *l, isd_io *w, unsigned revents);
typedef void (*isd_timer_cb)(isd_loop *l, isd_timer *t);

/* An fd watcher; embed it in your own struct.  fd < 0 means closed: a fired
 * event for it is dropped (redis-style re-check before every callback). */
struct isd_io {
    int       fd;
    unsigned  events;     /* current interest: ISD_READ | ISD_WRITE */
    isd_io_cb cb;
    int       slot;       /* backend bookkeeping (poll: index), -1 if none */
};

/* A one-shot timer in milliseconds of a monotonic clock. */
struct isd_timer {
    uint64_t     at;
    size_t       hidx;    /* 1-based heap index, 0 = not running */
    isd_timer_cb cb;
    void        *data;
};

/* Create a loop.  backend: "epoll", "kqueue", "poll" or NULL for the best one
 * (or the one named by $IO_SOCKET_INET_DAEMON_BACKEND).  NULL on failure,
 * with errno and a message in err. */
isd_loop   *isd_loop_new(const char *backend, char *err, size_t errlen);
void        isd_loop_free(isd_loop *l);
const char *isd_loop_backend(const isd_loop *l);
/* Names of the backends compiled in, e.g. "epoll poll". */
const char *isd_backends(void);

/* Set the interest of w (0 stops watching).  0 or -1/errno. */
int  isd_io_set(isd_loop *l, isd_io *w, unsigned events);
void isd_io_init(isd_io *w, int fd, isd_io_cb cb);

void isd_timer_init(isd_timer *t, isd_timer_cb cb, void *data);
/* (Re)arm t to fire after ms milliseconds.  0 or -1/ENOMEM. */
int  isd_timer_start(isd_loop *l, isd_timer *t, uint64_t ms);
void isd_timer_stop(isd_loop *l, isd_timer *t);
/* Re-arm t ms after its last deadline (a repeating timer that does not
 * drift), or ms from now if that is past (no catching up).  0 or
 * -1/ENOMEM. */
int  isd_timer_repeat(isd_loop *l, isd_timer *t, uint64_t ms);
static inline int isd_timer_active(const isd_timer *t) { return t->hidx != 0; }
uint64_t isd_now_ms(void);
/* The clock as it was when the loop last woke up (cheaper than
 * isd_now_ms, and the same for a whole batch of events). */
uint64_t isd_loop_now(const isd_loop *l);

/* A hook run before every wait and after every batch of events (and timers):
 * where servers flush output and finish deferred closes.  Returns how much
 * work it did (before the wait, any work means: do not block).  Embed it;
 * register once. */
typedef struct isd_hook {
    int  (*cb)(isd_loop *l, void *data);
    void *data;
    struct isd_hook *next;
} isd_hook;
void isd_loop_add_hook(isd_loop *l, isd_hook *h);
void isd_loop_del_hook(isd_loop *l, isd_hook *h);

/* Wait up to timeout_ms (-1: no limit; capped by the next timer), dispatch
 * what fired, run due timers and the hooks.  Returns the number of fd events
 * dispatched, or -1/EINTR when a signal interrupted the wait (hooks and timers
 * still ran), or -1/errno on a backend failure.
 * waitmask: NULL for a plain wait.  Otherwise the caller has blocked the
 * signals it cares about; the wait installs *waitmask atomically (as ppoll
 * does) so a signal cannot slip in between the caller's check and the wait,
 * and *waitmask is the thread's mask when this returns. */
int  isd_loop_run_once(isd_loop *l, int timeout_ms, const sigset_t *waitmask);
/* Run the hooks now (what isd_loop_run_once does before waiting), for a
 * caller that must do it before blocking signals.  Returns the work done:
 * non-zero means the next wait should not block. */
int  isd_loop_prepare(isd_loop *l);
/* Free the loop after fork in a process that does not use it: closes the
 * backend's descriptor without changing the interest it shares. */
#define isd_loop_abandon isd_loop_free
/* Non-zero while isd_loop_run_once is on the stack. */
int  isd_loop_running(const isd_loop *l);
/* For a loop run by another (embedding): the backend's descriptor (epoll,
 * kqueue), readable while an event is pending, to watch for reading; -1
 * for a backend without one (poll: the host calls run_once(0) on a
 * timer).  And the milliseconds until the earliest timer is due (0: it
 * is), or -1 when none is active. */
int  isd_loop_fd(const isd_loop *l);
int  isd_loop_next_timer(const isd_loop *l);

/* ------------------------------------------------------------------ sockets */

/* A socket address of any kind we serve (IPv4, IPv6). */
typedef union isd_addr {
    struct sockaddr     sa;
    struct sockaddr_in  in4;
    struct sockaddr_in6 in6;
} isd_addr;

/* Resolve host ("" or "*" = any) and listen on it: SO_REUSEADDR, non-blocking,
 * close-on-exec.  family: AF_INET, AF_INET6 or AF_UNSPEC.  Returns the fd, or
 * -1 with errno and err = "bind 127.0.0.1:5000: Address already in use". */
int isd_listen_tcp(const char *host, unsigned port, int family, int backlog,
                   char *err, size_t errlen);
/* How a listening socket is made. */
typedef struct isd_listen_opts {
    int backlog;      /* listen(2) backlog; <= 0: SOMAXCONN */
    int v6only;       /* IPv6: -1 the system's default, 0 IPv4 too, 1 not */
    int reuseport;    /* SO_REUSEPORT (where the system has it) */
    int mode;         /* UNIX: the socket file's permissions; -1: umask's */
    int rcvbuf;       /* SO_RCVBUF, SO_SNDBUF in bytes (SO_RCVBUFFORCE and */
    int sndbuf;       /* SO_SNDBUFFORCE first, where allowed); 0: default */
} isd_listen_opts;

/* Listen on a (an IPv4 or IPv6 address and port): SO_REUSEADDR,
 * non-blocking, close-on-exec.  The fd, or -1 with errno and err = "bind
 * [::1]:5000: Address already in use". */
int isd_listen_addr(const isd_addr *a, const isd_listen_opts *o, char *err,
                    size_t errlen);
/* Listen on every address, IPv4 and IPv6, at port: one IPv6 socket that
 * takes IPv4 too where the system allows it, else an IPv6 and an IPv4
 * socket on the same port (IPv4 alone without IPv6).  o->v6only 1 asks for
 * the two sockets.  Puts the fds in fds[0..1]; returns how many (1 or 2),
 * or -1 with errno and err (nothing left open). */
int isd_listen_any(unsigned port, const isd_listen_opts *o, int fds[2],
                   char *err, size_t errlen);
/* The same for UDP (a bound datagram socket, no listen(2)); type: SOCK_STREAM
 * or SOCK_DGRAM for isd_listen_any_type. */
int isd_listen_udp(const isd_addr *a, const isd_listen_opts *o, char *err,
                   size_t errlen);
int isd_listen_any_type(unsigned port, int type, const isd_listen_opts *o,
                        int fds[2], char *err, size_t errlen);
/* Listen on a UNIX stream socket at path.  A socket file nobody accepts on
 * (left by a server that died) is replaced; one that is live fails with
 * EADDRINUSE, and any other kind of file with EEXIST: neither is touched.
 * o->mode >= 0: chmod the file to it. */
int isd_listen_unix(const char *path, const isd_listen_opts *o, char *err,
                    size_t errlen);
/* Accept one connection, non-blocking and close-on-exec, retrying EINTR.
 * -1/EAGAIN when none is pending.  An IPv4 peer of a dual-stack socket
 * comes as plain IPv4 (not ::ffff:a.b.c.d); a UNIX one as AF_UNIX with no
 * path. */
int isd_accept(int lfd, isd_addr *peer);
/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) made plain IPv4, in place. */
void isd_addr_unmap(isd_addr *a);
/* Numeric host of a, into buf (>= 46 bytes); returns buf ("" if unknown). */
const char *isd_addr_host(const isd_addr *a, char *buf, size_t len);
unsigned    isd_addr_port(const isd_addr *a);
/* Length of the sockaddr in a (0 if unknown family). */
socklen_t   isd_addr_len(const isd_addr *a);

/* ---------------------------------------------------------- PROXY protocol */

/* The header HAProxy (and other load balancers) put in front of a
 * connection's bytes to say whom it is relayed for: version 1 is a text line
 * ("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"), version 2 a binary
 * block (a 12-byte signature, then command, family, length, addresses and
 * TLVs), as in HAProxy's doc/proxy-protocol.txt.  proxy.c parses both; it
 * needs libc only (inet_pton). */

#define ISD_PROXY_V1_MAX  107   /* longest v1 line, CRLF included (spec) */
#define ISD_PROXY_V2_MAX  4096  /* our bound on a v2 header's addresses and
                                 * TLVs (its length field); the format
                                 * allows 65535.  16 + this = longest v2. */

/* command: PROXY means "the addresses below are the client's"; LOCAL (a v2
 * health check, a v1 UNKNOWN line) means "use the connection's own". */
enum { ISD_PROXY_LOCAL = 0, ISD_PROXY_PROXY = 1 };

/* flags */
enum {
    ISD_PROXY_F_ADDRS   = 1u << 0,  /* src/dst (or the UNIX paths) are the
                                     * relayed endpoints: use them.  Set for
                                     * PROXY with a known family and
                                     * transport only. */
    ISD_PROXY_F_UNKNOWN = 1u << 1,  /* v1 "PROXY UNKNOWN": command LOCAL, the
                                     * rest of the line ignored */
    ISD_PROXY_F_CRC32C  = 1u << 2,  /* v2 carried a CRC32C TLV, and it matched */
    ISD_PROXY_F_SSL     = 1u << 3   /* v2 carried an SSL TLV: ssl_* below */
};

/* v2 TLV types (PP2_TYPE_*) and the SSL TLV's sub-types (PP2_SUBTYPE_SSL_*). */
enum {
    ISD_PP2_ALPN = 0x01, ISD_PP2_AUTHORITY = 0x02, ISD_PP2_CRC32C = 0x03,
    ISD_PP2_NOOP = 0x04, ISD_PP2_UNIQUE_ID = 0x05, ISD_PP2_SSL = 0x20,
    ISD_PP2_SSL_VERSION = 0x21, ISD_PP2_SSL_CN = 0x22,
    ISD_PP2_SSL_CIPHER = 0x23, ISD_PP2_SSL_SIG_ALG = 0x24,
    ISD_PP2_SSL_KEY_ALG = 0x25, ISD_PP2_NETNS = 0x30
};
/* The SSL TLV's client bits (PP2_CLIENT_*). */
enum { ISD_PP2_CLIENT_SSL = 0x01, ISD_PP2_CLIENT_CERT_CONN = 0x02,
       ISD_PP2_CLIENT_CERT_SESS = 0x04 };

/* A parsed header.  The pointers point into the caller's buffer: they are
 * valid as long as its bytes are. */
typedef struct isd_proxy {
    int         version;      /* 1 or 2 */
    int         command;      /* ISD_PROXY_LOCAL or ISD_PROXY_PROXY */
    unsigned    flags;        /* ISD_PROXY_F_* */
    int         family;       /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC */
    int         transport;    /* SOCK_STREAM, SOCK_DGRAM or 0 (unspecified) */
    isd_addr    src, dst;     /* AF_INET/AF_INET6: address and port; AF_UNIX:
                               * the family alone (see the paths) */
    const char *src_path;     /* AF_UNIX: the 108-byte address fields, */
    const char *dst_path;     /* as sent (an abstract name starts with NUL) */
    size_t      src_pathlen;  /* ... and their bytes before the first NUL */
    size_t      dst_pathlen;
    const char *tlv;          /* v2: the TLVs after the addresses */
    size_t      tlvlen;
    const char *ssl;          /* F_SSL: the SSL TLV's sub-TLVs */
    size_t      ssllen;
    unsigned    ssl_client;   /* F_SSL: ISD_PP2_CLIENT_* bits */
    uint32_t    ssl_verify;   /* F_SSL: 0 = a client certificate verified */
    const char *err;          /* after -1: why, a static string naming the
                               * version ("PROXY v1: bad source port") */
} isd_proxy;

/* Parse the header at the start of buf[0..len).  Returns its length (> 0:
 * the stream starts at buf + that, maybe within len), 0 when the bytes so
 * far are a valid beginning and more are needed, or -1 with out->err when
 * they cannot start a valid header: a byte is judged as soon as it arrives
 * ("GET " fails at 'G', "256." at the 6), a v1 IPv6 address (by
 * inet_pton) when the space after it does, a v2 address block and TLVs
 * when the whole header is in.  Never reads past len;
 * no allocation.  Call it again on the grown buffer after 0.  Rejected:
 * v1 without CRLF within 107 bytes, a lone CR or LF, anything but single
 * spaces, octal-looking numbers; v2 with a version other than 2, an
 * unassigned command, family or transport, a length over
 * ISD_PROXY_V2_MAX or (PROXY) shorter than its family's addresses, a TLV
 * or SSL sub-TLV overrunning its block, a wrong or malformed CRC32C, a
 * UNIQUE_ID over 128 bytes.  out is written in full on > 0; otherwise only
 * out->err means anything. */
int isd_proxy_parse(const char *buf, size_t len, isd_proxy *out);

/* Iterate the v2 TLVs of p (none for v1): start with *pos = 0; each call
 * gives the next one's type and value (in the caller's buffer) and returns
 * 1, or returns 0 after the last.  isd_proxy_ssl_next does the same over
 * the SSL TLV's sub-TLVs.  The parse checked every length, so these trust
 * them (a *pos not from them just ends the walk). */
int isd_proxy_tlv_next(const isd_proxy *p, size_t *pos, unsigned *type,
                       const char **val, size_t *len);
int isd_proxy_ssl_next(const isd_proxy *p, size_t *pos, unsigned *type,
                       const char **val, size_t *len);
/* The value of p's first TLV of type (top level), with *len; NULL if none. */
const char *isd_proxy_tlv_get(const isd_proxy *p, unsigned type, size_t *len);
/* CRC32C (Castagnoli, as in RFC 4960 appendix B) of p[0..n): what a
 * PP2_TYPE_CRC32C TLV holds, big-endian, computed with its own 4 bytes
 * zeroed.  isd_crc32c("123456789", 9) == 0xe3069283. */
uint32_t isd_crc32c(const void *p, size_t n);

/* ------------------------------------------------------ connections, servers */

typedef struct isd_server isd_server;
typedef struct isd_conn   isd_conn;

/* What the core tells its embedder.  Every callback may close any connection
 * (the current one included), call isd_server_close, or write anywhere: the
 * core re-checks its state after each one. */
typedef struct isd_handlers {
    /* A connection was accepted.  Close it to refuse it. */
    void (*on_accept)(isd_server *s, isd_conn *c);
    /* A complete message is at the head of c's input: msg[0..len).  Whatever
     * the handler consumes with isd_conn_consume stays consumed; if it
     * consumes nothing, the message is dropped when it returns.  It may
     * take the messages after it itself with isd_conn_next. */
    void (*on_message)(isd_conn *c, const char *msg, size_t len);
    /* The core ends c: err 0 = the peer sent EOF (all its messages were
     * delivered), else why (ECONNRESET, EMSGSIZE: message over max,
     * EBADMSG: EOF inside a length-prefixed message, ENOBUFS: output over
     * max_output, ...).  Called once, never for a
     * connection the embedder closed itself.  Whatever err, c is still
     * open meanwhile (listed, writable) but reads no more; after it
     * returns the core closes c: gracefully (queued output delivered,
     * the replies to the messages before one over max included) after EOF,
     * EMSGSIZE, ETIMEDOUT or EBADMSG, at once after anything else. */
    void (*on_close)(isd_conn *c, int err);
    /* Something not tied to a connection failed (accept: EMFILE...). */
    void (*on_error)(isd_server *s, int err, const char *what);
    /* Optional: the embedder takes the messages itself, and on_message is
     * not used.  A readable connection (or one with input to deliver) is
     * then queued instead, and when the batch of events is over the core
     * calls on_ready once for the whole queue.  It takes each queued
     * connection with isd_server_ready, its messages with isd_conn_take,
     * and ends its turn with isd_conn_done; no core function is on the C
     * stack meanwhile (so one guard, a setjmp say, can cover a whole batch
     * of connections and unwind to itself).  What it leaves in the queue
     * is dropped when it returns. */
    void (*on_ready)(isd_server *s);
    /* Optional: c's queued output went above cfg.high_water (its input
     * was held meanwhile) and is now down to cfg.low_water; its input is
     * delivered again right after. */
    void (*on_drain)(isd_conn *c);
    /* Optional: a connection of a hooked listener (isd_conn_hook) was
     * refused before it was the embedder's: its hook refused it (err and
     * reason are the hook's, e.g. EACCES "PROXY: source 192.0.2.1 is not
     * a trusted proxy", EPROTO "PROXY v1: bad source port"), or it ended
     * before its preamble was complete: ETIMEDOUT "PROXY header not
     * complete within 3 s" (the hook's timeout_ms) or "... not complete:
     * no input for 30 s" (idle_ms), ECONNABORTED "... not complete at
     * EOF", a reset's errno "... not complete at a reset", EMSGSIZE (64
     * KiB without an end), or another errno.  reason names what failed
     * (the hook's `what`) and is valid during the call.  Called once per
     * such connection, never followed by on_accept or on_close; c is
     * closed right after (its addresses stay readable while the caller
     * holds a reference).  NULL: on_error(s, err, reason) instead. */
    void (*on_reject)(isd_server *s, isd_conn *c, int err, const char *reason);
} isd_handlers;

/* Connection flags (read with isd_conn_flags). */
enum {
    ISD_C_OPEN    = 1u << 0,  /* logically open: events are delivered */
    ISD_C_CLOSING = 1u << 1,  /* closed by us, still flushing output */
    ISD_C_CLOSED  = 1u << 2,  /* fd closed */
    ISD_C_EOF     = 1u << 3,  /* peer sent EOF */
    ISD_C_RDSHUT  = 1u << 4,  /* we stopped reading */
    ISD_C_WRSHUT  = 1u << 5,  /* shut down writing (after output drains) */
    ISD_C_PENDING = 1u << 6,  /* queued for the end-of-batch hook */
    ISD_C_FAILED  = 1u << 7,  /* error waiting for on_close */
    ISD_C_INMSG   = 1u << 8,  /* inside on_message (or between take and done) */
    ISD_C_PAUSED  = 1u << 9,  /* isd_conn_pause: input held */
    ISD_C_HIGH    = 1u << 10  /* output above high_water: input held */
};

typedef struct isd_server_cfg {
    isd_framing framing;
    size_t      max_output;   /* bytes queued per connection; 0 = no cap */
    unsigned    linger_ms;    /* how long a closed connection may flush */
    unsigned    idle_ms;      /* a connection silent this long fails with
                               * ETIMEDOUT; 0 = never (per connection:
                               * isd_conn_set_idle) */
    size_t      max_conns;    /* open connections at most (accepting stops
                               * meanwhile); 0 = no limit */
    size_t      high_water;   /* queued output above which input is held */
    size_t      low_water;    /* ... until it is down to this; 0 = empty */
} isd_server_cfg;

/* Counters of a server, since it was made. */
typedef struct isd_server_stats {
    uint64_t accepted;        /* connections accepted (on_accept ran: a
                               * hooked listener's once its preamble is
                               * complete) */
    uint64_t closed;          /* ... that ended since (open = the rest) */
    uint64_t bytes_in, bytes_out;
    uint64_t messages_in;     /* messages handed to the embedder */
    uint64_t failed;          /* connections ended by an error (on_close
                               * with err != 0) */
    uint64_t rejected;        /* connections of hooked listeners refused
                               * before on_accept (on_reject): not in
                               * accepted, closed or failed */
} isd_server_stats;

/* Counters of one connection. */
typedef struct isd_conn_stats {
    uint64_t bytes_in, bytes_out, messages_in;
    int64_t  connected;       /* time(NULL) when it was accepted */
} isd_conn_stats;

/* A server: listening sockets plus their connections on one loop.
 * Returns NULL/ENOMEM. */
isd_server *isd_server_new(isd_loop *l, const isd_handlers *h,
                           const isd_server_cfg *cfg, void *data);
/* Start accepting on an already listening fd too (the server owns it now):
 * a server has any number of listeners, TCP (IPv4, IPv6) or UNIX.  0, or
 * -1 with errno (the fd is then still the caller's). */
int   isd_server_listen_fd(isd_server *s, int fd);

/* A listener's connection hook: what a protocol layered under the
 * embedder's (the PROXY protocol header, later TLS) needs of the core, and
 * all the core knows of it.  A connection of a hooked listener is not the
 * embedder's until the hook is done with its start:
 *   - accepted(c, arg), right after accept, before anything is read:
 *     0 go on, -1 refuse c (with isd_conn_reject for the reason; else
 *     EACCES "<what>: refused").
 *   - preamble(c, in, len, arg), if set, on each read while c's preamble
 *     is pending, with all of c's input so far, in[0..len): > 0 the
 *     preamble was its first that many bytes (they are consumed; then
 *     on_accept runs and the bytes after it, come in the same read, are
 *     framed and delivered at once, EOF too), 0 more is needed, -1 refuse
 *     c (isd_conn_reject; else EPROTO "<what>: refused").  in stays valid
 *     during the call even if the hook refuses c.  Without preamble,
 *     on_accept follows accepted() at once.
 *   - release(c, arg), if set: c is closed (at the latest when the server
 *     is freed or abandoned): free the hook's state for c (see
 *     isd_conn_hook_data).  Called once per connection that went through
 *     accepted(), refused or not, after on_close / on_reject.
 *   - timeout_ms: the preamble must be complete within it, else c is
 *     refused (ETIMEDOUT "<what> not complete within 3 s"); 0: no limit
 *     but the server's idle_ms.  It takes the idle timer's place till
 *     then.
 *   - what: names the preamble in the core's reasons ("PROXY header");
 *     NULL: "connection preamble".
 * Meanwhile c holds an fd and counts for cfg.max_conns, but it is not
 * listed (isd_server_next_conn), broadcast to, counted by
 * isd_server_nconns or in the stats' accepted (until on_accept runs), and
 * isd_server_close_conns drops it without a callback.  A refused c goes to
 * on_reject (isd_handlers) and is closed at once, its output dropped.
 * The hooks may call isd_conn_set_addrs, the hook data accessors,
 * isd_conn_reject, the address getters and isd_conn_write (a greeting),
 * but not isd_conn_close or isd_conn_abort (c would go without a word).
 * The read path of a listener without a hook costs one flag test. */
typedef struct isd_conn_hook {
    int     (*accepted)(isd_conn *c, void *arg);
    ssize_t (*preamble)(isd_conn *c, const char *in, size_t len, void *arg);
    void    (*release)(isd_conn *c, void *arg);
    unsigned    timeout_ms;
    const char *what;
} isd_conn_hook;

/* A connection's transport: what its bytes go through instead of the
 * socket's recv, sendmsg and shutdown (TLS: tls.c), and all the core
 * knows of it.  A listener given one (isd_server_listen_fd_ex) opens it
 * for each connection once the listener's hook, if any, is done with its
 * preamble (a PROXY header comes before the TLS handshake); or
 * isd_conn_start_transport opens one on a connection of the embedder's
 * (STARTTLS).  A connection is the embedder's (on_accept) once its
 * transport has started.  Its state t, from open:
 *   - open(c, fd, arg): t for c, or NULL/errno (c is refused / fails);
 *   - feed(t, p, n): bytes already read from the socket before t was
 *     opened (what came after a PROXY header or a STARTTLS command): t's
 *     first input.  0 or -1/errno;
 *   - start(t, *want): its start (a handshake): 1 done, 0 not yet (*want:
 *     what the socket must become, ISD_READ or ISD_WRITE), -1/errno
 *     failed: ENODATA when the peer closed having sent no byte at all (a
 *     port check: c goes without a word), else error() says why (""
 *     after EOF or a reset: the core says "TLS handshake not complete
 *     at EOF", with `what`);
 *   - recv, sendv: as recv and writev, -1/EAGAIN with *want (a TLS read
 *     may have to write, and the other way round); sendv may take less
 *     than the socket would (a record at a time); after EAGAIN its next
 *     call starts with the same bytes;
 *   - pending(t): whether it holds input that recv gives without the
 *     socket being readable (the core reads until it holds none);
 *   - shutdown(t): its orderly end (close_notify), sent once when c
 *     closes gracefully or shuts down writing; it does not wait;
 *   - error(t): why its last call failed, whole ("TLS: bad record mac",
 *     "TLS handshake: wrong version number"), or ""; free(t): c closed.
 *   - timeout_ms: the start must be complete within it (0: the idle
 *     timeout's); what: names the start in reasons ("TLS handshake").
 * While it starts, c's input is held and its output (but what was queued
 * before isd_conn_start_transport) waits.  Plain connections pay one
 * pointer test per read and write. */
typedef struct isd_transport {
    void   *(*open)(isd_conn *c, int fd, void *arg);
    int     (*feed)(void *t, const void *p, size_t n);
    int     (*start)(void *t, unsigned *want);
    ssize_t (*recv)(void *t, void *buf, size_t len, unsigned *want);
    ssize_t (*sendv)(void *t, const struct iovec *iov, int iovcnt,
                     unsigned *want);
    int     (*pending)(void *t);
    void    (*shutdown)(void *t);
    const char *(*error)(void *t);
    void    (*free)(void *t);
    unsigned    timeout_ms;
    const char *what;
    int         deferred;     /* a listener's: not opened at accept, but by
                               * isd_conn_start_transport(c, NULL, NULL) */
} isd_transport;

/* isd_server_listen_fd, with h (copied) for its connections, each call
 * given arg (which must stay valid until every connection of this
 * listener is closed: isd_server_free closes them all).  h NULL or all
 * its functions NULL: isd_server_listen_fd.  0 or -1/errno. */
int   isd_server_listen_fd_hook(isd_server *s, int fd, const isd_conn_hook *h,
                                void *arg);
/* ... and with tp (copied; NULL: none) for them too, opened with targ
 * (valid as arg is) once h's preamble is done.  0 or -1/errno. */
int   isd_server_listen_fd_ex(isd_server *s, int fd, const isd_conn_hook *h,
                              void *arg, const isd_transport *tp,
                              void *targ);
/* Stop accepting and close every listening socket. */
void  isd_server_unlisten(isd_server *s);
/* Stop accepting and hand the listening fds to the caller (not closed), in
 * the order they were added: up to max into fds (the rest are closed);
 * returns how many.  For a forked child that serves anew. */
size_t isd_server_take_listeners(isd_server *s, int *fds, size_t max);
/* Whether s listens at all; how many listeners; the i-th's fd (-1 past the
 * end). */
int   isd_server_listening(const isd_server *s);
size_t isd_server_nlisteners(const isd_server *s);
int   isd_server_listener_fd(const isd_server *s, size_t i);
/* The i-th listener's connection hook (NULL: none, or past the end), and
 * its arg in *arg: what a forked child needs to serve the fds of
 * isd_server_take_listeners as they were served (same order). */
const isd_conn_hook *isd_server_listener_hook(const isd_server *s, size_t i,
                                              void **arg);
/* ... and its transport (NULL: none), with its targ in *targ. */
const isd_transport *isd_server_listener_transport(const isd_server *s,
                                                   size_t i, void **targ);
/* Non-zero in a child forked since s was made: its loop is the parent's
 * (the child neither sends the output queued before the fork nor changes
 * the interest it shares), and only isd_server_abandon, or writes and
 * isd_conn_flush_wait on its connections, make sense there. */
int   isd_server_forked(const isd_server *s);
/* Local address of the (first) listening socket; -1/ENOTCONN if none. */
int   isd_server_sockaddr(const isd_server *s, isd_addr *a);
/* Close every connection gracefully (no on_close), then wait up to
 * timeout_ms for their output to drain, aborting what is left.  Safe from
 * inside any handler.  The same in three steps, for a caller that must
 * act on signals while it waits: close_conns closes every open connection
 * gracefully; drain waits up to timeout_ms (0: no wait) for closed
 * connections' output to be written, returning 0 once there is none, or
 * -1/ETIMEDOUT, -1/EINTR (a signal: deal with it, call again); waitmask as
 * for isd_loop_run_once; abort_closing drops what is left. */
void  isd_server_close_all(isd_server *s, int timeout_ms);
void  isd_server_close_conns(isd_server *s);
int   isd_server_drain(isd_server *s, int timeout_ms,
                       const sigset_t *waitmask);
void  isd_server_abort_closing(isd_server *s);
/* Free the server: closes everything at once.  Not from inside a handler. */
void  isd_server_free(isd_server *s);
/* After fork, in a process that does not serve: close this process's copies
 * of every descriptor without touching the sockets (no read, write, shutdown
 * or interest change, which would act on the other process's sockets) and
 * drop every connection.  No callbacks.  The server stays usable. */
void  isd_server_abandon(isd_server *s);
void *isd_server_data(const isd_server *s);
isd_loop *isd_server_loop(const isd_server *s);
/* Open connections of the embedder's (on_accept ran): those whose
 * listener's hook has not let them through yet are not counted (they
 * count for cfg.max_conns). */
size_t isd_server_nconns(const isd_server *s);
/* ... and those with their preamble pending too (a graceful stop waits for
 * them); and whether s has work queued for the end of a batch (output to
 * flush, input to deliver: the next step should not wait). */
size_t isd_server_nopen(const isd_server *s);
int    isd_server_busy(const isd_server *s);
/* Iterate the open connections: first with c = NULL. */
isd_conn *isd_server_next_conn(const isd_server *s, const isd_conn *c);
isd_server_cfg *isd_server_config(isd_server *s);
void isd_server_stats_get(const isd_server *s, isd_server_stats *st);
void isd_conn_stats_get(const isd_conn *c, isd_conn_stats *st);
/* Change cfg.max_conns now: accepting stops or starts again at once. */
void isd_server_set_max_conns(isd_server *s, size_t n);

/* Reference counting: the server holds one reference while c is open or
 * flushing; embedders take their own.  The memory goes with the last one;
 * until then a closed connection still answers (flags, addresses). */
void isd_conn_ref(isd_conn *c);
void isd_conn_unref(isd_conn *c);

unsigned     isd_conn_flags(const isd_conn *c);
int          isd_conn_fd(const isd_conn *c);          /* -1 once closed */
isd_server  *isd_conn_server(const isd_conn *c);      /* NULL once closed */
const isd_addr *isd_conn_peer(const isd_conn *c);
const isd_addr *isd_conn_local(const isd_conn *c);
/* The socket path of c's UNIX listener, or NULL (not a UNIX connection). */
const char *isd_conn_path(const isd_conn *c);
void        *isd_conn_data(const isd_conn *c);
void         isd_conn_set_data(isd_conn *c, void *data);
/* A word of flags that belongs to the embedder. */
unsigned    *isd_conn_uflags(isd_conn *c);
/* For connection hooks (isd_conn_hook).  The hook's own pointer for c
 * (NULL until it sets one; it frees it in release).  The hook c came
 * through (the listener's copy), or NULL: none, or c was released. */
void        *isd_conn_hook_data(const isd_conn *c);
void         isd_conn_set_hook_data(isd_conn *c, void *data);
const isd_conn_hook *isd_conn_hook_of(const isd_conn *c);
/* Replace c's peer and local addresses, as isd_conn_peer / isd_conn_local
 * give them from now on (a PROXY header's: the client's and the address
 * it connected to); NULL keeps one.  0, or -1/EAFNOSUPPORT (not IPv4,
 * IPv6 or UNIX). */
int isd_conn_set_addrs(isd_conn *c, const isd_addr *peer,
                       const isd_addr *local);
/* Refuse c, whose hook's preamble is pending (from the hook's accepted()
 * or preamble(), or a timer of its own): on_reject(err, reason) now (the
 * reason need only be valid during the call), then c is closed at once.
 * 0, or -1/EINVAL: c is not pending (already refused, or the
 * embedder's). */
int isd_conn_reject(isd_conn *c, int err, const char *reason);
/* From the hook's preamble(), before it returns the preamble's length:
 * c is the embedder's only once a byte of the stream follows it, or when
 * the hook's timeout_ms is up; if c ends first (EOF, a reset, the idle
 * timeout) it is closed without a word: no on_accept, no on_reject (a
 * load balancer's health check: a PROXY LOCAL header, then close).  A
 * connection that ends having sent no byte at all goes the same way (a
 * TCP port check); one that ends inside its preamble is refused. */
void isd_conn_pre_defer(isd_conn *c);
/* Open tp (with arg) on c, a connection of the embedder's with none yet
 * (STARTTLS): what c has queued so far is written as it is, then tp
 * starts (input held meanwhile; the input c read past the current
 * message is tp's); what is written from now on goes through tp once it
 * has started.  A failed start ends c: on_close(err), with
 * isd_conn_transport_error saying why.  0, or -1/errno: EALREADY (c has
 * a transport), ENOTCONN; ENOPROTOOPT: tp NULL (the deferred transport of
 * c's listener) and there is none. */
int isd_conn_start_transport(isd_conn *c, const isd_transport *tp, void *arg);
/* c's transport state (the t of tp's open) and *tp, or NULL: none, not
 * opened yet, or c is closed. */
void *isd_conn_transport(const isd_conn *c, const isd_transport **tp);
/* Whether c's transport is still starting (or waits to). */
int isd_conn_transport_starting(const isd_conn *c);
/* Why c's transport failed, for on_close: "TLS handshake: wrong version
 * number", "TLS handshake not complete within 10 s", "TLS: the peer went
 * without close_notify"; "" if it did not (or c has none).  In buf. */
const char *isd_conn_transport_error(const isd_conn *c, char *buf,
                                     size_t len);
static inline int isd_conn_is_open(const isd_conn *c)
{ return (isd_conn_flags(c) & ISD_C_OPEN) != 0; }

/* Queue bytes for c.  An empty queue is written straight away (one syscall,
 * for latency); anything left is sent as the peer reads.  Returns 0, or -1
 * with errno: ENOTCONN (c is closed), EPERM (c has a transport, TLS,
 * and this is a forked child: only the parent may write), ENOBUFS (over max_output: c fails and
 * on_close(ENOBUFS) follows from the loop), ENOMEM. */
int  isd_conn_write(isd_conn *c, const void *p, size_t n);
/* isd_conn_write of a blob's bytes (shared, not copied). */
int  isd_conn_write_blob(isd_conn *c, isd_blob *b);
/* Queue the same n bytes for every open connection of s but those in
 * except[0..nexcept), and whose embedder's word has (uflags & umask) ==
 * uwant (umask 0: all): stored once, shared by the queues (above a small
 * size), each write as isd_conn_write (max_output fails a connection,
 * high_water holds its input).  Returns how many got them.  Safe from
 * any handler. */
size_t isd_server_broadcast(isd_server *s, const void *p, size_t n,
                            isd_conn *const *except, size_t nexcept,
                            unsigned umask, unsigned uwant);
/* Try to write queued output now, without waiting.  0 or -1/errno. */
int  isd_conn_flush(isd_conn *c);
/* Write queued output, waiting up to timeout_ms (-1: no limit) for the
 * peer to take it all: 0, or -1 with ETIMEDOUT, EINTR (a signal, with
 * waitmask as for isd_loop_run_once: deal with it, call again), EAGAIN
 * (its transport is starting: only the loop drives that), ENOTCONN
 * or the write's errno.  For a process whose loop will not flush later
 * (a forked child's: see isd_server_forked). */
int  isd_conn_flush_wait(isd_conn *c, int timeout_ms, const sigset_t *waitmask);
size_t isd_conn_out_bytes(const isd_conn *c);

/* Unread input: the bytes received and not yet consumed. */
const char *isd_conn_in(const isd_conn *c, size_t *len);
void isd_conn_consume(isd_conn *c, size_t n);
/* Inside on_message only: drop the current message (unless the handler
 * consumed input itself) and make the next complete message in c's input
 * the current one: 1 with *msg, *len (at the head of the input), or 0 when
 * there is none yet or c no longer reads.  A handler that loops on it
 * delivers a whole read with one call from the core; what it leaves
 * (partial messages, EOF, a message over max) is the core's as usual. */
int  isd_conn_next(isd_conn *c, const char **msg, size_t *len);
/* For on_ready (see isd_handlers).  isd_server_ready: the next queued
 * connection, or NULL; its turn holds a reference until isd_conn_done.
 * isd_conn_take: 1 with the next complete message of c at the head of its
 * input, msg[0..len), which stays valid until the next take or done (as in
 * on_message: whatever the embedder consumes itself stays consumed, else
 * the message is dropped then); 0 when there is none (yet), or c no longer
 * reads: as for on_message, a message over max fails c, and at EOF the
 * last one is followed by on_close (called from here).  A connection that
 * was readable is read once, when take first runs out of messages (so one
 * input buffer serves a whole batch of connections, one at a time).  isd_conn_done: the
 * turn is over; output is flushed.  Stopping before take says 0 leaves the
 * rest of c's messages for another turn after this batch. */
isd_conn *isd_server_ready(isd_server *s);
/* The first (up to) n connections of the queue into v, head first; how
 * many.  For an embedder that prefetches its own data ahead of their turn. */
unsigned isd_server_ready_ahead(const isd_server *s, isd_conn **v, unsigned n);
/* A hint: c's state will be wanted soon (starts its loads, no effect). */
void isd_conn_prefetch(const isd_conn *c);
/* The same hint for any address (embedders' own per-connection data);
 * nothing where the compiler has no prefetch. */
#if defined(__GNUC__) || defined(__clang__)
#  define ISD_PREFETCH(p) __builtin_prefetch(p)
#else
#  define ISD_PREFETCH(p) ((void)(p))
#endif
int  isd_conn_take(isd_conn *c, const char **msg, size_t *len);
void isd_conn_done(isd_conn *c);
/* Hold c's input (no reads, no messages delivered) or let it go again:
 * on resume the complete messages already buffered are delivered at the
 * end of the current batch (or before the next wait), not when more
 * bytes arrive.  The idle clock stops meanwhile. */
void isd_conn_pause(isd_conn *c, int pause);
/* c's framing from now on (a copy of f and its separator; NULL: the
 * server's again), for the bytes already buffered too: messages that are
 * complete the new way are delivered in this cycle.  max and all are f's.
 * Called from on_message, it applies after the current message.  0, or
 * -1/ENOMEM, -1/ENOTCONN.  isd_conn_framing: what c uses (NULL once c is
 * closed). */
int  isd_conn_set_framing(isd_conn *c, const isd_framing *f);
const isd_framing *isd_conn_framing(const isd_conn *c);
/* c's idle timeout in ms (0: none), counted from now. */
void isd_conn_set_idle(isd_conn *c, unsigned ms);
unsigned isd_conn_idle(const isd_conn *c);
/* Put bytes back in front of the unread input.  0 or -1/ENOMEM. */
int  isd_conn_unread(isd_conn *c, const void *p, size_t n);
/* Wait up to timeout_ms (-1: forever) for this connection alone to become
 * readable, flushing its output meanwhile, and read once into its input.
 * Returns bytes read, 0 at EOF (ISD_C_EOF set), -1/ETIMEDOUT, -1/EINTR (a
 * signal: deal with it and call again), -1/ENOTCONN, or another errno (the
 * connection then fails: on_close follows from the loop).  waitmask as for
 * isd_loop_run_once. */
ssize_t isd_conn_fill(isd_conn *c, int timeout_ms, const sigset_t *waitmask);

/* Close gracefully: stop reading, deliver queued output (within linger_ms),
 * then close.  No on_close.  Idempotent. */
void isd_conn_close(isd_conn *c);
/* Fail c: stop its I/O now; on_close(err) follows from the loop. */
void isd_conn_fail(isd_conn *c, int err);
/* Close at once, dropping queued output.  No on_close.  Idempotent. */
void isd_conn_abort(isd_conn *c);
/* Half-close: how = SHUT_RD stops reading; SHUT_WR sends EOF once the
 * queued output is written; SHUT_RDWR is isd_conn_close.  0 or -1/errno. */
int  isd_conn_shutdown(isd_conn *c, int how);

/* --------------------------------------------- PROXY protocol on a listener */

/* proxyconn.c: a connection hook (isd_conn_hook) that takes the PROXY
 * header (v1 or v2, proxy.c) in front of each connection of a listener. */

/* A block of addresses: the first `bits` bits of addr (network byte
 * order; IPv4 in addr[0..4)). */
typedef struct isd_cidr {
    int           family;     /* AF_INET or AF_INET6 */
    unsigned      bits;
    unsigned char addr[16];
} isd_cidr;

/* Parse "10.0.0.0/8", "127.0.0.1" (a /32), "::1" (a /128), "fd00::/8".
 * Bits past the prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8); an
 * IPv4-mapped block ("::ffff:10.0.0.0/104") is made the IPv4 one.  0 or
 * -1/EINVAL. */
int isd_cidr_parse(const char *s, isd_cidr *out);
/* Whether a is in c; an IPv4-mapped IPv6 address (an IPv4 peer of a
 * dual-stack socket) is taken as the IPv4 one (so "::/0" matches IPv6
 * peers only). */
int isd_cidr_match(const isd_cidr *c, const isd_addr *a);

typedef struct isd_proxy_opts {
    unsigned        timeout_ms;   /* the header must be complete within
                                   * this; 0: no limit (but idle_ms) */
    const isd_cidr *trusted;      /* the peers that may send a header;  */
    size_t          ntrusted;     /* 0: every peer.  A UNIX one always */
} isd_proxy_opts;

/* A connection's header, kept once it is complete.  hdr is the parse (its
 * pointers point into a copy of the header's bytes, freed with the info:
 * the TLV iterators work on &info->hdr); len the header's length;
 * via_peer and via_local the socket's own addresses (the proxy's). */
typedef struct isd_proxy_info {
    isd_proxy hdr;
    size_t    len;
    isd_addr  via_peer, via_local;
} isd_proxy_info;

/* Fill h for a listener whose connections start with a PROXY header:
 * then isd_server_listen_fd_hook(s, fd, h, (void *)o), where o (and its
 * trusted blocks) stay valid as the hook's arg.  The hook:
 *   - refuses a peer outside o->trusted at accept, before reading:
 *     EACCES "PROXY: source 192.0.2.1 is not a trusted proxy";
 *   - refuses a header the parser refuses, at the first byte that cannot
 *     be one (so plain text or TLS fails at once): EPROTO with the
 *     parser's reason ("PROXY v1: bad source port");
 *   - a header not complete within o->timeout_ms: ETIMEDOUT "PROXY
 *     header not complete within 3 s" (the core's);
 *   - on a complete header with ISD_PROXY_F_ADDRS and an IPv4 or IPv6
 *     family, makes its source and destination c's peer and local
 *     addresses (IPv4-mapped ones as IPv4); LOCAL, UNKNOWN and UNIX
 *     headers leave the socket's.  The stream after the header is c's.
 *   - defers (isd_conn_pre_defer) a header of the proxy's own, not a
 *     client's: LOCAL, or addresses that are c's own (HAProxy's v1 health
 *     checks): c is the embedder's once a byte follows or timeout_ms is
 *     up, and goes without a word if it ends first.
 * isd_server_listen_fd_proxy does both (h is copied). */
void isd_proxy_hook_init(isd_conn_hook *h, const isd_proxy_opts *o);
int  isd_server_listen_fd_proxy(isd_server *s, int fd,
                                const isd_proxy_opts *o);
/* c's header, from on_accept until c is closed (on_close included), or
 * NULL: c's listener has no PROXY hook, or c is closed. */
const isd_proxy_info *isd_conn_proxy(const isd_conn *c);

/* -------------------------------------------------------------------- TLS */

/* tls.c: a TLS server context (OpenSSL's SSL_CTX, with one more per SNI
 * name): made once from a listener's options, counted, shared by the
 * connections that start with it.  Reloading certificates is making a new
 * one; connections keep theirs.  Without OpenSSL at build time
 * isd_tls_available() is 0 and isd_tls_ctx_new fails, saying so. */
typedef struct isd_tls_ctx isd_tls_ctx;

enum { ISD_TLS_VERIFY_NONE = 0,      /* no client certificate asked */
       ISD_TLS_VERIFY_OPTIONAL = 1,  /* asked; one sent must verify */
       ISD_TLS_VERIFY_REQUIRE = 2 }; /* asked; none or a bad one fails */

typedef struct isd_tls_sni {
    const char *host;         /* "mail.example", or "*.example" (one label) */
    const char *cert_file;    /* PEM: its certificate, then the chain */
    const char *key_file;     /* PEM: its key (NULL: in cert_file) */
} isd_tls_sni;

typedef struct isd_tls_opts {
    const char *cert_file;    /* PEM: the certificate, then its chain */
    const char *key_file;     /* PEM: its private key (NULL: in cert_file) */
    const char *ca_file;      /* the CAs client certificates are checked */
    const char *ca_path;      /* against (a PEM file, a hashed directory) */
    int         verify;       /* ISD_TLS_VERIFY_* */
    const char *ciphers;      /* TLS 1.2 cipher list (NULL: OpenSSL's) */
    const char *ciphersuites; /* TLS 1.3 suites (NULL: OpenSSL's) */
    int         min_version;  /* 0x0303 TLS 1.2 (0: that), 0x0304 TLS 1.3 */
    const char *const *alpn;  /* protocols, by preference; NULL-terminated */
    const isd_tls_sni *sni;   /* other certificates, by the name the */
    size_t      nsni;         /* client asks for (the default otherwise) */
} isd_tls_opts;

int          isd_tls_available(void);
/* OpenSSL's version ("OpenSSL 3.0.19 ..."), or NULL without it. */
const char  *isd_tls_version(void);
/* A context, or NULL/errno with err naming the option, the file and
 * OpenSSL's reason ("key_file k.pem does not go with cert_file c.pem:
 * key values mismatch").  Renegotiation and compression are off, TLS 1.2
 * is the least version unless min_version says more, buffers of idle
 * connections are released (SSL_MODE_RELEASE_BUFFERS), the server's
 * cipher and ALPN preferences win (no ALPN in common: none agreed). */
isd_tls_ctx *isd_tls_ctx_new(const isd_tls_opts *o, char *err, size_t errlen);
isd_tls_ctx *isd_tls_ctx_ref(isd_tls_ctx *t);
void         isd_tls_ctx_unref(isd_tls_ctx *t);
/* The default SSL_CTX (an SSL_CTX *), for tls.c's connections and tests. */
void        *isd_tls_ctx_ssl_ctx(const isd_tls_ctx *t);

/* One connection's TLS, server side, on a non-blocking socket: what the
 * core's transport calls instead of recv, writev and shutdown.  Each call
 * that cannot go on says in *want what the socket must become (ISD_READ,
 * ISD_WRITE: a TLS read may have to write, and the other way round).
 * Errors: -1 with errno EAGAIN (*want), ECONNRESET (the peer went without
 * close_notify, or reset), EPROTO (bad records, a failed handshake or
 * verification: isd_tls_error says why). */
typedef struct isd_tls_conn isd_tls_conn;
/* NULL/errno (ENOMEM).  The connection holds a reference to t. */
isd_tls_conn *isd_tls_conn_new(isd_tls_ctx *t, int fd);
void          isd_tls_conn_free(isd_tls_conn *tc);
/* 1 done, 0 not yet (*want), -1 failed. */
int           isd_tls_handshake(isd_tls_conn *tc, unsigned *want);
/* As recv: > 0 bytes, 0 at the peer's close_notify, -1/errno. */
ssize_t       isd_tls_read(isd_tls_conn *tc, void *buf, size_t len,
                           unsigned *want);
/* As writev, but what it took (> 0) is taken: after -1/EAGAIN the next
 * call must start with the same bytes (the queue's head; OpenSSL retries
 * its record).  Small pieces are gathered into records of up to 16 KiB. */
ssize_t       isd_tls_writev(isd_tls_conn *tc, const struct iovec *iov,
                             int iovcnt, unsigned *want);
/* Bytes read from the socket before the handshake (what followed a PROXY
 * header): the handshake's first input.  0 or -1/ENOMEM. */
int           isd_tls_conn_feed(isd_tls_conn *tc, const void *p, size_t n);
/* Whether it holds input the socket no longer shows (records read
 * ahead): read again before waiting. */
int           isd_tls_pending(const isd_tls_conn *tc);
/* Send close_notify: 1 sent (or the peer's already came), 0 not yet
 * (*want), -1/errno. */
int           isd_tls_shutdown(isd_tls_conn *tc, unsigned *want);
/* Why the last call failed ("certificate verify failed", "wrong version
 * number"), or "". */
const char   *isd_tls_error(const isd_tls_conn *tc);

/* What a handshake agreed (strings valid while tc is). */
typedef struct isd_tls_info {
    const char *version;      /* "TLSv1.3" */
    const char *cipher;       /* "TLS_AES_256_GCM_SHA384" */
    const char *sni;          /* the name the client asked for, or NULL */
    const char *alpn;         /* the protocol agreed, or NULL */
    size_t      alpnlen;
    int         peer_verified;/* a client certificate was sent and verified */
} isd_tls_info;
int           isd_tls_info_get(const isd_tls_conn *tc, isd_tls_info *out);
/* The verified client certificate's subject and issuer, one line each
 * ("CN=client,O=Example"): into buf, or "" without one. */
const char   *isd_tls_peer_subject(const isd_tls_conn *tc, char *buf,
                                   size_t len);
const char   *isd_tls_peer_issuer(const isd_tls_conn *tc, char *buf,
                                  size_t len);

/* The TLS transport (isd_transport) of a listener or a STARTTLS: each
 * connection opens with the context *(isd_tls_ctx **)arg holds at that
 * moment (a reload stores another there: open connections keep theirs);
 * the handshake must be done within timeout_ms.  Reasons start "TLS
 * handshake: " or "TLS: ". */
void          isd_tls_transport_init(isd_transport *tp, unsigned timeout_ms);
/* c's TLS connection (from that transport, once it is opened), or NULL. */
isd_tls_conn *isd_conn_tls(const isd_conn *c);

#ifdef __cplusplus
}
#endif
/* --------------------------------------------------------------------- udp */

/* A UDP socket served on a loop (udp.c).  Each datagram is a message; a
 * reply is one datagram to an address.  Counted: the embedder's reference
 * from isd_udp_new, one more held while a handler runs. */
typedef struct isd_udp isd_udp;

typedef struct isd_udp_stats {
    uint64_t datagrams_in, bytes_in, datagrams_out, bytes_out;
    uint64_t dropped_in;      /* over max */
    uint64_t dropped_out;     /* queue over max_output, or refused */
} isd_udp_stats;

typedef struct isd_udp_handlers {
    /* A datagram from `from` (an IPv4 peer of an IPv6 socket as IPv4):
     * p[0..n) until the handler returns. */
    void (*on_datagram)(isd_udp *u, const isd_addr *from, const char *p,
                        size_t n);
    /* A datagram from `from` over max was dropped (EMSGSIZE), a reply to
     * `from` could not be sent, or a receive failed (from NULL). */
    void (*on_error)(isd_udp *u, int err, const isd_addr *from);
} isd_udp_handlers;

/* Serve fd (a bound UDP socket; ours from now on): datagrams of at most
 * max bytes (0 or over 65535: any), replies queued up to max_output bytes
 * (0: no bound) while the kernel cannot take them.  NULL/errno. */
isd_udp *isd_udp_new(isd_loop *l, int fd, const isd_udp_handlers *h,
                     size_t max, size_t max_output, void *data);
/* Queue one datagram to `to`; it is sent when the current batch of events
 * is over (at once outside the loop).  0, or -1: EMSGSIZE (too long for a
 * datagram), ENOBUFS (max_output), ENOTCONN (closed), ENOMEM. */
int   isd_udp_send(isd_udp *u, const isd_addr *to, const void *p, size_t n);
/* Stop serving: close closes the fd (what is queued is sent if the kernel
 * takes it now); take_fd hands the fd back instead (a forked child that
 * serves anew); abandon, in a forked child, closes it without touching
 * the interest it shares with its parent.  The struct stays until the
 * last unref. */
void  isd_udp_close(isd_udp *u);
int   isd_udp_take_fd(isd_udp *u);
void  isd_udp_abandon(isd_udp *u);
isd_udp *isd_udp_ref(isd_udp *u);
void  isd_udp_unref(isd_udp *u);
int   isd_udp_fd(const isd_udp *u);
void *isd_udp_data(const isd_udp *u);
void  isd_udp_set_data(isd_udp *u, void *data);
size_t isd_udp_pending(const isd_udp *u);
void  isd_udp_stats_get(const isd_udp *u, isd_udp_stats *st);

#endif /* ISD_H */
