/* test_tlsconn.c - the core's TLS transport (c_src/conn.c's isd_transport,
 * c_src/tls.c's transport): a server on a loop, on every backend, with TLS
 * listeners on 127.0.0.1 (plain, behind a PROXY header, STARTTLS), and real
 * OpenSSL clients in the same process: non-blocking sockets, driven in step
 * with isd_loop_run_once, every wait with a deadline.  Certificates are made
 * with the openssl command in a temporary directory (removed at the end).
 * Without OpenSSL at build time: that isd_tls_available() is 0, the rest
 * skipped. */
// Build and run by hand from the distribution root:
//   cc -std=c99 -D_GNU_SOURCE -DISD_HAVE_OPENSSL -Wall -Wextra -Ic_src
//      t/c/test_tlsconn.c c_src/*.c -o /tmp/ttc -lssl -lcrypto && /tmp/ttc
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "isd.h"
#include "tap.h"
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef ISD_HAVE_OPENSSL

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

static const char *BE;
static int PULL;
#define T(fmt) "[%s%s] " fmt, BE ? BE : "-", PULL ? " pull" : ""

static char dir[256];

static int sh(const char *fmt, const char *a)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, a, a, a, a, a);
    return system(cmd);
}

static void path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Two self-signed certificates: CN=localhost (the first context) and
 * CN=reloaded (what a reload brings). */
static int make_certs(void)
{
    const char *mk =
        "cd %s && exec >openssl.log 2>&1 && "
        "for n in localhost reloaded; do "
        "  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "    -nodes -keyout $n.key -out $n.pem -days 2 -subj /CN=$n || exit 1; "
        "done";
    return sh(mk, dir);
}

static isd_tls_ctx *ctx_of(const char *name)
{
    char cert[400], key[400], file[64], err[512];
    isd_tls_opts o;
    isd_tls_ctx *t;

    memset(&o, 0, sizeof o);
    snprintf(file, sizeof file, "%s.pem", name);
    path(cert, sizeof cert, file);
    snprintf(file, sizeof file, "%s.key", name);
    path(key, sizeof key, file);
    o.cert_file = cert;
    o.key_file = key;
    if (!(t = isd_tls_ctx_new(&o, err, sizeof err)))
        diag("isd_tls_ctx_new(%s): %s", name, err);
    return t;
}

/* ------------------------------------------- the transport, watched */

/* The TLS transport's sendv, counted: how often it said EAGAIN, and how
 * many bytes it took after the first EAGAIN (the resumption). */
static ssize_t (*real_sendv)(void *, const struct iovec *, int, unsigned *);
static int g_eagain;
static size_t g_after_eagain;

static ssize_t counting_sendv(void *t, const struct iovec *iov, int iovcnt,
                              unsigned *want)
{
    ssize_t r = real_sendv(t, iov, iovcnt, want);
    if (r < 0 && errno == EAGAIN)
        g_eagain++;
    else if (r > 0 && g_eagain)
        g_after_eagain += (size_t)r;
    return r;
}

/* ---------------------------------------------------------- the server */

#define BIG (4u << 20)
static char *big;                      /* BIG bytes of a pattern */

typedef struct ctx {
    isd_loop       *l;
    isd_server     *s;
    isd_tls_ctx    *slot;              /* the transports' arg */
    isd_transport   tp, tp_stall, tp_defer;
    isd_conn_hook   ph;
    isd_proxy_opts  popts;
    unsigned        port_tls, port_plain, port_proxy, port_stall, port_st;
    int             naccept, nmsg, nclose, nreject;
    /* on_accept */
    int             acc_tls, acc_starting, acc_info;
    char            acc_version[32], acc_cipher[64], acc_peer[80];
    int             small_sndbuf;      /* shrink the next conn's SO_SNDBUF */
    /* on_close */
    int             close_err;
    char            close_why[300];
    /* on_reject */
    int             rej_err;
    char            rej_why[300];
    /* STARTTLS */
    int             st_r1, st_e1, st_r2, st_e2, nstarttls;
} ctx;

static void hostport(const isd_addr *a, char *buf, size_t len)
{
    char h[64];
    snprintf(buf, len, "%s:%u", isd_addr_host(a, h, sizeof h), isd_addr_port(a));
}

static void h_accept(isd_server *s, isd_conn *c)
{
    ctx *x = isd_server_data(s);
    isd_tls_conn *tc = isd_conn_tls(c);
    isd_tls_info in;

    isd_conn_set_data(c, x);
    x->naccept++;
    x->acc_tls = tc != NULL;
    x->acc_starting = isd_conn_transport_starting(c);
    x->acc_info = -1;
    x->acc_version[0] = x->acc_cipher[0] = '\0';
    hostport(isd_conn_peer(c), x->acc_peer, sizeof x->acc_peer);
    if (tc) {
        x->acc_info = isd_tls_info_get(tc, &in);
        snprintf(x->acc_version, sizeof x->acc_version, "%s",
                 in.version ? in.version : "");
        snprintf(x->acc_cipher, sizeof x->acc_cipher, "%s",
                 in.cipher ? in.cipher : "");
    }
    if (x->small_sndbuf) {
        int n = 8192;
        setsockopt(isd_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &n, sizeof n);
        x->small_sndbuf = 0;
    }
}

/* "STARTTLS": "220 go", then the transport (twice: the second fails);
 * "STARTTLS+": and "welcome" after it; "BIG": 4 MiB; "BIGBYE": and close;
 * "BYE": "bye", then close; "HALF": "half", then SHUT_WR; "NOOP": no
 * answer; "TLS?": whether it is TLS now; anything else: echoed. */
static void h_message(isd_conn *c, const char *m, size_t n)
{
    ctx *x = isd_conn_data(c);

    x->nmsg++;
    if (n == 9 && memcmp(m, "STARTTLS\n", 9) == 0) {
        isd_conn_write(c, "220 go\n", 7);
        errno = 0;
        x->st_r1 = isd_conn_start_transport(c, NULL, NULL);
        x->st_e1 = errno;
        errno = 0;
        x->st_r2 = isd_conn_start_transport(c, NULL, NULL);
        x->st_e2 = errno;
        x->nstarttls++;
    } else if (n == 10 && memcmp(m, "STARTTLS+\n", 10) == 0) {
        /* what is written after the start waits for the handshake */
        isd_conn_write(c, "220 go\n", 7);
        x->st_r1 = isd_conn_start_transport(c, NULL, NULL);
        isd_conn_write(c, "welcome\n", 8);
        x->nstarttls++;
    } else if (n == 4 && memcmp(m, "BIG\n", 4) == 0) {
        isd_conn_write(c, big, BIG);
    } else if (n == 7 && memcmp(m, "BIGBYE\n", 7) == 0) {
        isd_conn_write(c, big, BIG);
        isd_conn_close(c);
    } else if (n == 5 && memcmp(m, "HALF\n", 5) == 0) {
        isd_conn_write(c, "half\n", 5);
        isd_conn_shutdown(c, SHUT_WR);
    } else if (n == 5 && memcmp(m, "NOOP\n", 5) == 0) {
        ;
    } else if (n == 4 && memcmp(m, "BYE\n", 4) == 0) {
        isd_conn_write(c, "bye\n", 4);
        isd_conn_close(c);
    } else if (n == 5 && memcmp(m, "TLS?\n", 5) == 0) {
        char b[64];
        isd_tls_conn *tc = isd_conn_tls(c);
        isd_tls_info in;
        if (tc && isd_tls_info_get(tc, &in) == 0)
            snprintf(b, sizeof b, "tls %s\n", in.version);
        else
            snprintf(b, sizeof b, "plain\n");
        isd_conn_write(c, b, strlen(b));
    } else {
        isd_conn_write(c, m, n);
    }
}

static void h_close(isd_conn *c, int err)
{
    ctx *x = isd_conn_data(c);
    x->nclose++;
    x->close_err = err;
    isd_conn_transport_error(c, x->close_why, sizeof x->close_why);
}

static void h_error(isd_server *s, int err, const char *what)
{
    (void)s;
    diag("on_error %d: %s", err, what);
}

static void h_reject(isd_server *s, isd_conn *c, int err, const char *reason)
{
    ctx *x = isd_server_data(s);
    (void)c;
    x->nreject++;
    x->rej_err = err;
    snprintf(x->rej_why, sizeof x->rej_why, "%s", reason);
}

static void h_ready(isd_server *s)
{
    isd_conn *c;
    const char *m;
    size_t len;
    while ((c = isd_server_ready(s)) != NULL) {
        while (isd_conn_take(c, &m, &len))
            h_message(c, m, len);
        isd_conn_done(c);
    }
}

static const isd_handlers H = { h_accept, h_message, h_close, h_error, NULL,
                                NULL, h_reject };
static const isd_handlers H_PULL = { h_accept, NULL, h_close, h_error, h_ready,
                                     NULL, h_reject };

static unsigned fd_port(int fd)
{
    isd_addr a;
    socklen_t len = sizeof a;
    getsockname(fd, &a.sa, &len);
    return isd_addr_port(&a);
}

static int listen1(unsigned *port)
{
    char err[256];
    int fd = isd_listen_tcp("127.0.0.1", 0, AF_INET, 64, err, sizeof err);
    if (fd < 0)
        diag("listen: %s", err);
    else
        *port = fd_port(fd);
    return fd;
}

/* A server with five listeners: TLS, plain, PROXY then TLS, TLS with a
 * 300 ms handshake deadline, and plain with a deferred TLS (STARTTLS). */
static int setup(ctx *x)
{
    char err[256] = "";
    isd_server_cfg cfg;
    int fd;

    memset(x, 0, sizeof *x);
    memset(&cfg, 0, sizeof cfg);
    cfg.framing.kind = ISD_FRAME_LINE;
    cfg.framing.max = 65536;
    cfg.linger_ms = 3000;
    x->l = isd_loop_new(BE, err, sizeof err);
    if (!x->l) { diag("loop: %s", err); return -1; }
    x->s = isd_server_new(x->l, PULL ? &H_PULL : &H, &cfg, x);
    if (!x->s) return -1;
    if (!(x->slot = ctx_of("localhost")))
        return -1;

    isd_tls_transport_init(&x->tp, 5000);
    real_sendv = x->tp.sendv;
    x->tp.sendv = counting_sendv;
    isd_tls_transport_init(&x->tp_stall, 300);
    isd_tls_transport_init(&x->tp_defer, 5000);
    x->tp_defer.deferred = 1;
    x->popts.timeout_ms = 5000;
    isd_proxy_hook_init(&x->ph, &x->popts);

    if ((fd = listen1(&x->port_tls)) < 0
        || isd_server_listen_fd_ex(x->s, fd, NULL, NULL, &x->tp, &x->slot) < 0)
        return -1;
    if ((fd = listen1(&x->port_plain)) < 0
        || isd_server_listen_fd(x->s, fd) < 0)
        return -1;
    if ((fd = listen1(&x->port_proxy)) < 0
        || isd_server_listen_fd_ex(x->s, fd, &x->ph, &x->popts, &x->tp,
                                   &x->slot) < 0)
        return -1;
    if ((fd = listen1(&x->port_stall)) < 0
        || isd_server_listen_fd_ex(x->s, fd, NULL, NULL, &x->tp_stall,
                                   &x->slot) < 0)
        return -1;
    if ((fd = listen1(&x->port_st)) < 0
        || isd_server_listen_fd_ex(x->s, fd, NULL, NULL, &x->tp_defer,
                                   &x->slot) < 0)
        return -1;
    g_eagain = 0;
    g_after_eagain = 0;
    return 0;
}

static void teardown(ctx *x)
{
    if (x->s) isd_server_free(x->s);
    if (x->l) isd_loop_free(x->l);
    isd_tls_ctx_unref(x->slot);
    x->s = NULL;
    x->l = NULL;
    x->slot = NULL;
}

/* ---------------------------------------------------------- the clients */

static SSL_CTX *cctx;

static void cctx_new(void)
{
    cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(cctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                           | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

static void cctx_free(void)
{
    SSL_CTX_free(cctx);
    cctx = NULL;
    ERR_clear_error();
}

/* a TCP client of 127.0.0.1:port (rcvbuf: SO_RCVBUF first, 0: default),
 * non-blocking once connected */
static int tcp_client(unsigned port, int rcvbuf)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

typedef struct cli {
    int  fd;
    SSL *ssl;
} cli;

static void cli_free(cli *k)
{
    if (k->ssl)
        SSL_free(k->ssl);
    if (k->fd >= 0)
        close(k->fd);
    k->ssl = NULL;
    k->fd = -1;
    ERR_clear_error();
}

/* An SSL of the client context whose ClientHello is made into a memory
 * BIO (the handshake waits for the ServerHello): into hello, *hlen. */
static SSL *hello_first(char *hello, size_t cap, size_t *hlen)
{
    SSL *s = SSL_new(cctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    int r, n;

    SSL_set_bio(s, rb, wb);
    SSL_set_connect_state(s);
    r = SSL_do_handshake(s);
    *hlen = 0;
    if (r != -1 || SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
        return s;
    n = BIO_read(wb, hello, (int)cap);
    *hlen = n > 0 ? (size_t)n : 0;
    return s;
}

/* finish (or do) the handshake: 1 done, 0 failed or out of time */
static int cli_handshake(ctx *x, SSL *s, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    int r, e;

    while (isd_now_ms() < end) {
        r = SSL_do_handshake(s);
        if (r == 1)
            return 1;
        e = SSL_get_error(s, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return 0;
        isd_loop_run_once(x->l, 2, NULL);
    }
    return 0;
}

static int cli_tls(ctx *x, cli *k, unsigned port, int rcvbuf)
{
    k->ssl = NULL;
    if ((k->fd = tcp_client(port, rcvbuf)) < 0)
        return 0;
    k->ssl = SSL_new(cctx);
    SSL_set_fd(k->ssl, k->fd);
    SSL_set_connect_state(k->ssl);
    return cli_handshake(x, k->ssl, 5000);
}

static int cli_write(ctx *x, SSL *s, const void *p, size_t n, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    size_t done = 0, w;
    int r, e;

    while (done < n && isd_now_ms() < end) {
        r = SSL_write_ex(s, (const char *)p + done, n - done, &w);
        if (r == 1) {
            done += w;
            continue;
        }
        e = SSL_get_error(s, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return 0;
        isd_loop_run_once(x->l, 2, NULL);
    }
    return done == n;
}

static int cli_writes(ctx *x, SSL *s, const char *str)
{
    return cli_write(x, s, str, strlen(str), 5000);
}

/* Read until want bytes, the peer's close_notify (*end 1), an error (*end
 * -1, *sslerr), or ms are up; step bytes at most a call (0: any), the
 * loop turned between calls. */
static size_t cli_read(ctx *x, SSL *s, char *buf, size_t want, size_t step,
                       int ms, int *end, int *sslerr)
{
    uint64_t until = isd_now_ms() + (uint64_t)ms;
    size_t got = 0, r;
    int e;

    *end = 0;
    if (sslerr)
        *sslerr = 0;
    while (got < want && isd_now_ms() < until) {
        size_t n = want - got;
        if (step && n > step)
            n = step;
        if (SSL_read_ex(s, buf + got, n, &r) == 1) {
            got += r;
            if (step)
                isd_loop_run_once(x->l, 0, NULL);
            continue;
        }
        e = SSL_get_error(s, 0);
        if (e == SSL_ERROR_ZERO_RETURN) {
            *end = 1;
            break;
        }
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            *end = -1;
            if (sslerr)
                *sslerr = e;
            break;
        }
        isd_loop_run_once(x->l, 2, NULL);
    }
    return got;
}

/* plain bytes from a socket: exactly want (never more), or what came in ms */
static size_t raw_read(ctx *x, int fd, char *buf, size_t want, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    size_t got = 0;

    while (got < want && isd_now_ms() < end) {
        ssize_t r = recv(fd, buf + got, want - got, MSG_DONTWAIT);
        if (r > 0) { got += (size_t)r; continue; }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            break;
        isd_loop_run_once(x->l, 2, NULL);
    }
    return got;
}

/* a line through the client and back */
static int roundtrip(ctx *x, SSL *s, const char *line)
{
    char buf[256];
    int end;
    size_t n = strlen(line), got;

    if (!cli_write(x, s, line, n, 3000))
        return 0;
    got = cli_read(x, s, buf, n, 0, 3000, &end, NULL);
    return got == n && memcmp(buf, line, n) == 0;
}

static void peer_cn(SSL *s, char *buf, size_t len)
{
    X509 *c = SSL_get1_peer_certificate(s);
    buf[0] = '\0';
    if (c) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName,
                                  buf, (int)len);
        X509_free(c);
    }
}

/* --------------------------------------------------------------- tests */

/* 1. lines, a pipeline of 200, 4 MiB to a slow reader */
static void test_echo(void)
{
    ctx x;
    cli k = { -1, NULL };
    char *buf, pipe_out[200 * 9 + 1];
    int end, i, bad;
    size_t n, left;
    isd_conn *c;

    cctx_new();
    buf = malloc(BIG);
    if (!buf || setup(&x) < 0) { fail(T("setup")); goto out; }
    ok(cli_tls(&x, &k, x.port_tls, 16384), T("a TLS client: handshake done"));
    ok(roundtrip(&x, k.ssl, "hello over TLS\n"), T("a line comes back"));
    ok(roundtrip(&x, k.ssl, "second line\n"), T("... and another"));
    is_int(x.nmsg, 2, T("two messages through the handler"));

    for (i = 0; i < 200; i++)
        snprintf(pipe_out + i * 9, 10, "line %03d\n", i);
    ok(cli_write(&x, k.ssl, pipe_out, 200 * 9, 3000), T("200 lines in one write"));
    n = cli_read(&x, k.ssl, buf, 200 * 9, 0, 5000, &end, NULL);
    is_mem(buf, n, pipe_out, 200 * 9, T("... all 200 back, in order, intact"));
    is_int(x.nmsg, 202, T("... as 200 messages"));

    /* the client's close_notify: EOF, on_close(0), no transport error */
    SSL_shutdown(k.ssl);
    ok(pump_until(&x, &x.nclose, 1, 3000), T("the client's close_notify: on_close"));
    is_int(x.close_err, 0, T("... err 0 (EOF)"));
    is_str(x.close_why, "", T("... isd_conn_transport_error: \"\""));
    cli_free(&k);

    /* 4 MiB to a client that does not read for a while, then slowly */
    x.small_sndbuf = 1;
    ok(cli_tls(&x, &k, x.port_tls, 16384), T("a slow client: handshake done"));
    ok(cli_writes(&x, k.ssl, "BIG\n"), T("it asks for 4 MiB"));
    pump(&x, 200);
    c = isd_server_next_conn(x.s, NULL);
    left = c ? isd_conn_out_bytes(c) : 0;
    ok(left > 0, T("the server's output backs up (%zu bytes queued)"), left);
    ok(g_eagain > 0, T("the transport's sendv said EAGAIN (%d times)"), g_eagain);
    n = cli_read(&x, k.ssl, buf, BIG, 16384, 30000, &end, NULL);
    is_int(n, BIG, T("the client reads all 4 MiB, 16 KiB at a time"));
    for (i = 0, bad = 0; (size_t)i < n && !bad; i++)
        bad = buf[i] != big[i];
    ok(n == BIG && !bad, T("... byte for byte"));
    ok(g_after_eagain >= left, T("sendv resumed after EAGAIN (%zu bytes)"), g_after_eagain);
    c = isd_server_next_conn(x.s, NULL);
    ok(c && isd_conn_out_bytes(c) == 0, T("nothing left queued"));
    ok(roundtrip(&x, k.ssl, "still there\n"), T("the connection works after"));
    is_int(x.nclose, 1, T("no on_close meanwhile"));

    /* 4 MiB, then the server's close: all of it, then close_notify */
    ok(cli_writes(&x, k.ssl, "BIGBYE\n"), T("4 MiB and a close"));
    pump(&x, 100);
    n = cli_read(&x, k.ssl, buf, BIG, 16384, 30000, &end, NULL);
    ok(n == BIG && memcmp(buf, big, BIG) == 0, T("all 4 MiB, byte for byte (%zu)"), n);
    if (n == BIG) {
        char one;
        cli_read(&x, k.ssl, &one, 1, 0, 3000, &end, NULL);
    }
    ok(end == 1, T("then the server's close_notify (%d)"), end);
    is_int(x.nclose, 1, T("no on_close for it"));
out:
    cli_free(&k);
    teardown(&x);
    free(buf);
    cctx_free();
}

/* A client on memory BIOs over socket fd: what it writes is sent when
 * asked (mem_flush: all of it in one send()), what comes is fed to it. */
static int mem_flush(SSL *s, int fd)
{
    char *p;
    long n = BIO_get_mem_data(SSL_get_wbio(s), &p);
    int ok_ = 1;

    if (n > 0) {
        ok_ = send(fd, p, (size_t)n, MSG_NOSIGNAL) == n;
        (void)BIO_reset(SSL_get_wbio(s));
    }
    return ok_;
}

static void mem_fill(SSL *s, int fd)
{
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
        BIO_write(SSL_get_rbio(s), buf, (int)n);
}

static size_t mem_read(ctx *x, SSL *s, int fd, char *out, size_t want, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    size_t got = 0, r;

    while (got < want && isd_now_ms() < end) {
        if (SSL_read_ex(s, out + got, want - got, &r) == 1) {
            got += r;
            continue;
        }
        if (SSL_get_error(s, 0) != SSL_ERROR_WANT_READ)
            break;
        mem_flush(s, fd);
        isd_loop_run_once(x->l, 2, NULL);
        mem_fill(s, fd);
    }
    return got;
}

/* 1b. the client's Finished and its first lines in one write: the lines
 * are read with the last of the handshake (read-ahead), and delivered
 * though the socket no longer says so */
static void test_finished_data(void)
{
    ctx x;
    cli k = { -1, NULL };
    char buf[256];
    const char *lines = "first\nsecond\nthird\n";
    size_t n = strlen(lines), w;
    uint64_t end;
    int r = 0;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    k.fd = tcp_client(x.port_tls, 0);
    k.ssl = SSL_new(cctx);
    SSL_set_bio(k.ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(k.ssl);
    end = isd_now_ms() + 5000;
    while (isd_now_ms() < end) {
        r = SSL_do_handshake(k.ssl);
        if (r == 1 || SSL_get_error(k.ssl, r) != SSL_ERROR_WANT_READ)
            break;
        mem_flush(k.ssl, k.fd);
        isd_loop_run_once(x.l, 2, NULL);
        mem_fill(k.ssl, k.fd);
    }
    ok(r == 1, T("the client's handshake is done, its Finished not sent yet"));
    ok(SSL_write_ex(k.ssl, lines, n, &w) == 1 && w == n, T("three lines after it"));
    ok(mem_flush(k.ssl, k.fd), T("Finished and the lines in one send()"));
    ok(pump_until(&x, &x.nmsg, 3, 3000), T("three messages delivered"));
    is_int(x.naccept, 1, T("after on_accept"));
    is_mem(buf, mem_read(&x, k.ssl, k.fd, buf, n, 3000), lines, n, T("all three back"));
out:
    cli_free(&k);
    teardown(&x);
    cctx_free();
}

/* 2. on_accept after the handshake, with the TLS connection */
static void test_accept(void)
{
    ctx x;
    cli k = { -1, NULL };
    int fd;
    char buf[64];

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    fd = tcp_client(x.port_tls, 0);
    pump(&x, 100);
    is_int(x.naccept, 0, T("connected, no handshake yet: no on_accept"));
    is_int(isd_server_nconns(x.s), 0, T("... not counted in nconns"));
    is_int(isd_server_nopen(x.s), 1, T("... but open (nopen)"));
    k.fd = fd;
    k.ssl = SSL_new(cctx);
    SSL_set_fd(k.ssl, fd);
    SSL_set_connect_state(k.ssl);
    ok(cli_handshake(&x, k.ssl, 5000), T("then the handshake"));
    ok(pump_until(&x, &x.naccept, 1, 3000), T("on_accept after it"));
    ok(x.acc_tls, T("isd_conn_tls(c) in on_accept: non-NULL"));
    ok(!x.acc_starting, T("the transport is no longer starting"));
    is_int(x.acc_info, 0, T("isd_tls_info_get: 0"));
    is_str(x.acc_version, SSL_get_version(k.ssl), T("version %s, as the client has it"), x.acc_version);
    is_str(x.acc_cipher, SSL_get_cipher_name(k.ssl), T("cipher %s, as the client has it"), x.acc_cipher);
    is_int(isd_server_nconns(x.s), 1, T("nconns 1"));
    {
        char want[64];
        int end;
        snprintf(want, sizeof want, "tls %s\n", SSL_get_version(k.ssl));
        ok(cli_writes(&x, k.ssl, "TLS?\n"), T("TLS?"));
        is_mem(buf, cli_read(&x, k.ssl, buf, strlen(want), 0, 3000, &end, NULL),
               want, strlen(want), T("... the handler sees TLS too"));
    }
    cli_free(&k);

    /* a plain listener's connection: no TLS */
    fd = tcp_client(x.port_plain, 0);
    ok(pump_until(&x, &x.naccept, 2, 3000), T("a plain connection: on_accept"));
    ok(!x.acc_tls, T("isd_conn_tls(c): NULL"));
    ok(send(fd, "TLS?\n", 5, MSG_NOSIGNAL) == 5, T("sent"));
    is_mem(buf, raw_read(&x, fd, buf, 6, 3000), "plain\n", 6, T("it says plain"));
    close(fd);
out:
    cli_free(&k);
    teardown(&x);
    cctx_free();
}

/* 3. a PROXY v1 header and the ClientHello in one write */
static void test_proxy(void)
{
    ctx x;
    cli k = { -1, NULL };
    char hello[4096], out[4200];
    const char *hdr = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
    size_t hlen, hl = strlen(hdr);
    const isd_proxy_info *pi = NULL;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    k.ssl = hello_first(hello, sizeof hello, &hlen);
    ok(hlen > 0, T("a ClientHello of %zu bytes in a memory BIO"), hlen);
    memcpy(out, hdr, hl);
    memcpy(out + hl, hello, hlen);
    k.fd = tcp_client(x.port_proxy, 0);
    ok(send(k.fd, out, hl + hlen, MSG_NOSIGNAL) == (ssize_t)(hl + hlen),
       T("header and ClientHello in one send()"));
    SSL_set_fd(k.ssl, k.fd);
    ok(cli_handshake(&x, k.ssl, 5000), T("the handshake completes over the socket"));
    ok(pump_until(&x, &x.naccept, 1, 3000), T("on_accept"));
    ok(x.acc_tls, T("... a TLS connection"));
    is_str(x.acc_peer, "192.0.2.1:56324", T("... its peer is the header's"));
    {
        isd_conn *c = isd_server_next_conn(x.s, NULL);
        pi = c ? isd_conn_proxy(c) : NULL;
        ok(pi && pi->hdr.version == 1 && pi->len == hl, T("isd_conn_proxy: the v1 header"));
    }
    ok(roundtrip(&x, k.ssl, "behind a proxy\n"), T("a line comes back"));
    is_int(x.nreject, 0, T("no on_reject"));
out:
    cli_free(&k);
    teardown(&x);
    cctx_free();
}

/* 4. STARTTLS */
static void test_starttls(void)
{
    ctx x;
    cli k = { -1, NULL };
    char hello[4096], out[4200], buf[64];
    size_t hlen;
    int fd, end, i;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    k.fd = tcp_client(x.port_st, 0);
    ok(pump_until(&x, &x.naccept, 1, 3000), T("a STARTTLS listener: on_accept at once"));
    ok(!x.acc_tls, T("... plain so far"));
    ok(send(k.fd, "plain\n", 6, MSG_NOSIGNAL) == 6, T("a plain line"));
    is_mem(buf, raw_read(&x, k.fd, buf, 6, 3000), "plain\n", 6, T("... echoed plain"));

    /* (one with a '\n' in it: the line framing must leave it alone) */
    for (i = 0; i < 200; i++) {
        k.ssl = hello_first(hello, sizeof hello, &hlen);
        if (memchr(hello, '\n', hlen))
            break;
        SSL_free(k.ssl);
        k.ssl = NULL;
    }
    if (!k.ssl)
        k.ssl = hello_first(hello, sizeof hello, &hlen);
    note(T("a ClientHello with a newline in it: %s"), memchr(hello, '\n', hlen) ? "yes" : "no");
    memcpy(out, "STARTTLS\n", 9);
    memcpy(out + 9, hello, hlen);
    ok(hlen > 0 && send(k.fd, out, 9 + hlen, MSG_NOSIGNAL) == (ssize_t)(9 + hlen),
       T("STARTTLS and the ClientHello in one send()"));
    is_mem(buf, raw_read(&x, k.fd, buf, 7, 3000), "220 go\n", 7, T("\"220 go\" read in plain"));
    is_int(x.nstarttls, 1, T("the handler ran"));
    ok(x.st_r1 == 0, T("isd_conn_start_transport: 0 (%s)"), strerror(x.st_e1));
    ok(x.st_r2 == -1 && x.st_e2 == EALREADY, T("... twice: EALREADY (%s)"), strerror(x.st_e2));
    SSL_set_fd(k.ssl, k.fd);
    ok(cli_handshake(&x, k.ssl, 5000), T("then the handshake completes"));
    ok(roundtrip(&x, k.ssl, "encrypted now\n"), T("a line after it comes back, encrypted"));
    ok(cli_writes(&x, k.ssl, "TLS?\n"), T("TLS?"));
    snprintf(out, sizeof out, "tls %s\n", SSL_get_version(k.ssl));
    is_mem(buf, cli_read(&x, k.ssl, buf, strlen(out), 0, 3000, &end, NULL),
           out, strlen(out), T("isd_conn_tls(c) after STARTTLS: %s"), SSL_get_version(k.ssl));
    is_int(x.naccept, 1, T("on_accept once"));
    cli_free(&k);

    /* STARTTLS alone, the handshake after the reply (no bytes fed) */
    x.nstarttls = 0;
    k.fd = tcp_client(x.port_st, 0);
    ok(send(k.fd, "STARTTLS\n", 9, MSG_NOSIGNAL) == 9, T("STARTTLS alone"));
    is_mem(buf, raw_read(&x, k.fd, buf, 7, 3000), "220 go\n", 7, T("\"220 go\""));
    ok(x.nstarttls == 1 && x.st_r1 == 0, T("the transport started"));
    pump(&x, 50);
    ok(isd_server_nconns(x.s) == 1 && isd_conn_transport_starting(isd_server_next_conn(x.s, NULL)),
       T("isd_conn_transport_starting while the handshake waits"));
    k.ssl = SSL_new(cctx);
    SSL_set_fd(k.ssl, k.fd);
    SSL_set_connect_state(k.ssl);
    ok(cli_handshake(&x, k.ssl, 5000), T("then a handshake of its own"));
    ok(roundtrip(&x, k.ssl, "encrypted\n"), T("a line comes back"));
    pump(&x, 20);
    i = x.nclose;                       /* (the first one's: a reset) */
    SSL_shutdown(k.ssl);
    ok(pump_until(&x, &x.nclose, i + 1, 3000) && x.close_err == 0, T("close_notify: on_close(0)"));
    cli_free(&k);

    /* what the handler writes after isd_conn_start_transport: encrypted */
    k.fd = tcp_client(x.port_st, 0);
    ok(send(k.fd, "STARTTLS+\n", 10, MSG_NOSIGNAL) == 10, T("STARTTLS+"));
    is_mem(buf, raw_read(&x, k.fd, buf, 7, 3000), "220 go\n", 7, T("\"220 go\" in plain, nothing more"));
    is_int(raw_read(&x, k.fd, buf, 1, 100), 0, T("... (the rest waits for the handshake)"));
    k.ssl = SSL_new(cctx);
    SSL_set_fd(k.ssl, k.fd);
    SSL_set_connect_state(k.ssl);
    ok(cli_handshake(&x, k.ssl, 5000), T("the handshake"));
    is_mem(buf, cli_read(&x, k.ssl, buf, 8, 0, 3000, &end, NULL), "welcome\n", 8,
           T("what was written after the start: encrypted"));
    cli_free(&k);

    /* a listener without a deferred transport */
    x.nstarttls = 0;
    fd = tcp_client(x.port_plain, 0);
    ok(send(fd, "STARTTLS\n", 9, MSG_NOSIGNAL) == 9, T("STARTTLS on a plain listener"));
    is_mem(buf, raw_read(&x, fd, buf, 7, 3000), "220 go\n", 7, T("(the reply)"));
    ok(x.st_r1 == -1 && x.st_e1 == ENOPROTOOPT,
       T("isd_conn_start_transport(c, NULL, NULL): ENOPROTOOPT (%s)"), strerror(x.st_e1));
    ok(send(fd, "still plain\n", 12, MSG_NOSIGNAL) == 12, T("a line"));
    is_mem(buf, raw_read(&x, fd, buf, 12, 3000), "still plain\n", 12, T("... echoed plain"));
    close(fd);
out:
    cli_free(&k);
    teardown(&x);
    cctx_free();
}

/* 5. handshakes that fail: on_reject with the reason; a port check: quiet */
static void test_reject(void)
{
    ctx x;
    char hello[4096];
    size_t hlen;
    int fd;
    uint64_t t0, dt;
    SSL *s;
    isd_server_stats st;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    s = hello_first(hello, sizeof hello, &hlen);
    SSL_free(s);

    fd = tcp_client(x.port_tls, 0);
    send(fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL);
    ok(pump_until(&x, &x.nreject, 1, 3000), T("plain text on a TLS port: on_reject"));
    is_int(x.rej_err, EPROTO, T("... EPROTO"));
    ok(strncmp(x.rej_why, "TLS handshake: ", 15) == 0 && x.rej_why[15],
       T("... \"%s\""), x.rej_why);
    close(fd);

    fd = tcp_client(x.port_stall, 0);
    t0 = isd_now_ms();
    send(fd, hello, hlen / 2, MSG_NOSIGNAL);
    ok(pump_until(&x, &x.nreject, 2, 3000), T("half a ClientHello, then nothing: on_reject"));
    dt = isd_now_ms() - t0;
    is_int(x.rej_err, ETIMEDOUT, T("... ETIMEDOUT"));
    is_str(x.rej_why, "TLS handshake not complete within 300 ms", T("... the reason"));
    ok(dt >= 280 && dt < 2000, T("... after about 300 ms (%llu)"), (unsigned long long)dt);
    close(fd);

    fd = tcp_client(x.port_tls, 0);
    send(fd, hello, hlen / 2, MSG_NOSIGNAL);
    pump(&x, 50);
    close(fd);
    ok(pump_until(&x, &x.nreject, 3, 3000), T("half a ClientHello, then EOF: on_reject"));
    is_int(x.rej_err, ECONNABORTED, T("... ECONNABORTED"));
    is_str(x.rej_why, "TLS handshake not complete at EOF", T("... the reason"));

    fd = tcp_client(x.port_tls, 0);
    pump(&x, 50);
    close(fd);
    pump(&x, 200);
    is_int(x.nreject, 3, T("connected and closed having sent nothing: no on_reject"));
    is_int(x.naccept, 0, T("... and no on_accept, ever"));
    is_int(isd_server_nopen(x.s), 0, T("... all closed"));
    isd_server_stats_get(x.s, &st);
    is_int(st.rejected, 3, T("stats: rejected 3"));
    is_int(st.accepted, 0, T("stats: accepted 0"));
    is_int(x.nclose, 0, T("no on_close"));
out:
    teardown(&x);
    cctx_free();
}

/* 6. endings after the handshake */
static void test_endings(void)
{
    ctx x;
    cli k = { -1, NULL };
    char buf[64];
    int end, e, i;
    size_t n;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }

    /* the peer goes without close_notify */
    ok(cli_tls(&x, &k, x.port_tls, 0) && roundtrip(&x, k.ssl, "one\n"), T("a connection"));
    close(k.fd);
    k.fd = -1;
    ok(pump_until(&x, &x.nclose, 1, 3000), T("the client closes without close_notify: on_close"));
    ok(x.close_err != 0, T("... with an error (%s)"), strerror(x.close_err));
    is_str(x.close_why, "TLS: the peer went without close_notify",
           T("isd_conn_transport_error says so"));
    cli_free(&k);

    /* garbage after the handshake */
    ok(cli_tls(&x, &k, x.port_tls, 0) && roundtrip(&x, k.ssl, "two\n"), T("a connection"));
    ok(send(k.fd, "\x17\x03\x03\x00\x05garbage!", 13, MSG_NOSIGNAL) == 13,
       T("garbage on its socket (a record that does not decrypt)"));
    ok(pump_until(&x, &x.nclose, 2, 3000), T("on_close"));
    is_int(x.close_err, EPROTO, T("... EPROTO (%s)"), strerror(x.close_err));
    ok(strncmp(x.close_why, "TLS: ", 5) == 0 && x.close_why[5],
       T("... \"%s\""), x.close_why);
    cli_free(&k);

    /* a last line and close_notify in one go: delivered, answered, then
     * on_close(0), and the server's close_notify after the answer */
    ok(cli_tls(&x, &k, x.port_tls, 0) && roundtrip(&x, k.ssl, "2b\n"), T("a connection"));
    {
        BIO *wb = BIO_new(BIO_s_mem()), *sock = SSL_get_wbio(k.ssl);
        char *p;
        long m;
        BIO_up_ref(sock);
        SSL_set0_wbio(k.ssl, wb);
        SSL_write(k.ssl, "last\n", 5);
        SSL_shutdown(k.ssl);
        m = BIO_get_mem_data(wb, &p);
        ok(m > 0 && send(k.fd, p, (size_t)m, MSG_NOSIGNAL) == m,
           T("a line and close_notify in one send()"));
        SSL_set0_wbio(k.ssl, sock);
    }
    ok(pump_until(&x, &x.nclose, 3, 3000), T("on_close"));
    is_int(x.close_err, 0, T("... err 0"));
    n = cli_read(&x, k.ssl, buf, sizeof buf, 0, 3000, &end, &e);
    is_mem(buf, n, "last\n", 5, T("the last line answered"));
    ok(end == 1, T("... then the server's close_notify (%d %d)"), end, e);
    cli_free(&k);

    /* SHUT_WR: close_notify after the bytes, the input still read */
    ok(cli_tls(&x, &k, x.port_tls, 0) && roundtrip(&x, k.ssl, "2c\n"), T("a connection"));
    ok(cli_writes(&x, k.ssl, "HALF\n"), T("HALF"));
    n = cli_read(&x, k.ssl, buf, sizeof buf, 0, 3000, &end, &e);
    is_mem(buf, n, "half\n", 5, T("the reply"));
    ok(end == 1, T("then close_notify (isd_conn_shutdown SHUT_WR)"));
    i = x.nmsg;
    ok(cli_writes(&x, k.ssl, "NOOP\n"), T("the client still writes"));
    ok(pump_until(&x, &x.nmsg, i + 1, 3000), T("... and the server still reads it"));
    i = x.nclose;
    SSL_shutdown(k.ssl);
    ok(pump_until(&x, &x.nclose, i + 1, 3000) && x.close_err == 0, T("the client's close_notify: on_close(0)"));
    cli_free(&k);

    /* the server closes after a write: close_notify after the bytes */
    ok(cli_tls(&x, &k, x.port_tls, 0) && roundtrip(&x, k.ssl, "three\n"), T("a connection"));
    ok(cli_writes(&x, k.ssl, "BYE\n"), T("BYE"));
    n = cli_read(&x, k.ssl, buf, sizeof buf, 0, 3000, &end, &e);
    is_mem(buf, n, "bye\n", 4, T("the reply before the close"));
    ok(end == 1, T("then SSL_read: 0, SSL_ERROR_ZERO_RETURN (close_notify; %d %d)"), end, e);
    is_int(x.nclose, 4, T("no on_close for a close of the server's"));
out:
    cli_free(&k);
    teardown(&x);
    cctx_free();
}

/* 7. reloading the context: new connections get it, open ones keep theirs */
static void test_reload(void)
{
    ctx x;
    cli a = { -1, NULL }, b = { -1, NULL };
    char cn[64];
    isd_tls_ctx *t2;

    cctx_new();
    if (setup(&x) < 0) { fail(T("setup")); goto out; }
    ok(cli_tls(&x, &a, x.port_tls, 0), T("a first connection"));
    peer_cn(a.ssl, cn, sizeof cn);
    is_str(cn, "localhost", T("... the first certificate"));
    ok(roundtrip(&x, a.ssl, "before\n"), T("... works"));

    if (!(t2 = ctx_of("reloaded"))) { fail(T("a second context")); goto out; }
    isd_tls_ctx_unref(x.slot);
    x.slot = t2;

    ok(cli_tls(&x, &b, x.port_tls, 0), T("a connection after the reload"));
    peer_cn(b.ssl, cn, sizeof cn);
    is_str(cn, "reloaded", T("... the new certificate"));
    ok(roundtrip(&x, b.ssl, "new\n"), T("... works"));
    ok(roundtrip(&x, a.ssl, "after\n"), T("the first one still works (its context kept)"));
    ok(cli_writes(&x, a.ssl, "BYE\n"), T("the first one ends"));
    {
        char buf[16];
        int end;
        size_t n = cli_read(&x, a.ssl, buf, sizeof buf, 0, 3000, &end, NULL);
        ok(n == 4 && end == 1, T("... with its close_notify"));
    }
    pump(&x, 50);
    ok(roundtrip(&x, b.ssl, "still\n"), T("the second one still works"));
out:
    cli_free(&a);
    cli_free(&b);
    teardown(&x);
    cctx_free();
}

#define RUN(fn) do { \
        char name_[64]; \
        snprintf(name_, sizeof name_, "[%s%s] %s", BE ? BE : "-", \
                 PULL ? " pull" : "", #fn); \
        tap_subtest(fn, name_); \
    } while (0)

int main(void)
{
    char list[256], *save = NULL, *name;
    size_t i;

    alarm(600);
    signal(SIGPIPE, SIG_DFL);           /* the core must never raise it */
    snprintf(dir, sizeof dir, "%s/isd-tlsconn-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        tap_skip_all("no temporary directory");
        return 0;
    }
    if (system("openssl version >/dev/null 2>&1") != 0) {
        sh("rm -rf %s", dir);
        tap_skip_all("no openssl command to make certificates with");
        return 0;
    }
    ok(isd_tls_available(), "built with OpenSSL: %s", isd_tls_version());
    if (!ok(make_certs() == 0, "certificates made (openssl req)")) {
        sh("cat %s/openssl.log >&2", dir);
        sh("rm -rf %s", dir);
        return done_testing();
    }
    big = malloc(BIG);
    if (!big) {
        sh("rm -rf %s", dir);
        return done_testing();
    }
    for (i = 0; i < BIG; i++)
        big[i] = (char)('a' + (i * 7 + i / 4093) % 26);
    snprintf(list, sizeof list, "%s", isd_backends());
    for (name = strtok_r(list, " ", &save); name; name = strtok_r(NULL, " ", &save))
    for (PULL = 0; PULL < 2; PULL++) {
        BE = name;
        RUN(test_echo);
        RUN(test_finished_data);
        RUN(test_accept);
        RUN(test_proxy);
        RUN(test_starttls);
        RUN(test_reject);
        RUN(test_endings);
        RUN(test_reload);
    }
    free(big);
    sh("rm -rf %s", dir);
    return done_testing();
}

#else /* !ISD_HAVE_OPENSSL */

int main(void)
{
    isd_transport tp;

    ok(!isd_tls_available(), "built without OpenSSL: isd_tls_available() is 0");
    isd_tls_transport_init(&tp, 300);
    ok(tp.open == NULL, "the TLS transport has nothing to open");
    printf("ok %d # SKIP the TLS transport's tests: built without OpenSSL\n",
           ++tap_run_);
    fflush(stdout);
    return done_testing();
}

#endif
