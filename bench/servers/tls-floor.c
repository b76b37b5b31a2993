/*
 * tls-floor - the smallest TLS echo server we can write in C with OpenSSL:
 * the floor of bench/run's TLS rows, as floor.c is of the plain ones.
 * Single thread, epoll level-triggered, non-blocking sockets: SSL_accept
 * (through SSL_do_handshake) until done, then SSL_read into a buffer and
 * SSL_write it straight back, again while OpenSSL holds more already read
 * (read-ahead on: one read() takes what the socket has); what does not go
 * out at once is kept and written when the socket is writable (reading
 * from that client pauses meanwhile).  TLS 1.3 only; OpenSSL's defaults otherwise (key exchange
 * X25519 first, AES-256-GCM first, two session tickets per handshake).
 *
 *   tls-floor [--no-release-buffers] [--cert FILE] [--key FILE] PORT [HOST]
 *
 * CERT and KEY (PEM) default to $BENCH_TLS_CERT and $BENCH_TLS_KEY, as the
 * bench's Perl servers take them; HOST is a numeric IPv4 address, default
 * 127.0.0.1.  SSL_MODE_RELEASE_BUFFERS is on (an idle connection gives its
 * read and write buffers back, about 34 KiB); --no-release-buffers turns
 * it off, to measure what it saves (bench/run's row floor-keepbuf).
 *
 * Build: cc -O2 -Wall -Wextra -o tls-floor tls-floor.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct conn {            /* one per descriptor */
    SSL *ssl;
    int open;            /* handshake done */
    char *pend;          /* unwritten output, pend[poff .. plen) */
    size_t plen, poff;
};

static struct conn *conns;   /* indexed by fd */
static size_t nconns;
static int ep;
static char buf[65536];

static void set_events(int fd, uint32_t ev, int op)
{
    struct epoll_event e = { .events = ev, .data.fd = fd };
    epoll_ctl(ep, op, fd, &e);
}

static struct conn *conn_of(int fd)
{
    if ((size_t)fd >= nconns) {
        size_t n = nconns ? nconns : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        conns = realloc(conns, n * sizeof *conns);
        if (!conns) {
            perror("tls-floor: realloc");
            exit(1);
        }
        memset(conns + nconns, 0, (n - nconns) * sizeof *conns);
        nconns = n;
    }
    return &conns[fd];
}

static void drop(int fd)
{
    struct conn *c = &conns[fd];
    SSL_free(c->ssl);    /* (no close_notify: the client is gone or going) */
    free(c->pend);
    memset(c, 0, sizeof *c);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    ERR_clear_error();
}

/* SSL_write buf[*off .. len), moving *off on: 0 when all went, 1 when the
 * socket is full (WANT_WRITE, or WANT_READ), -1 on an error */
static int ssl_send(SSL *ssl, const char *b, size_t len, size_t *off)
{
    while (*off < len) {
        size_t n = len - *off > 0x40000000 ? 0x40000000 : len - *off;
        int w = SSL_write(ssl, b + *off, (int)n);
        if (w > 0) {
            *off += (size_t)w;
            continue;
        }
        int e = SSL_get_error(ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 1;
        return -1;
    }
    return 0;
}

/* Echo what can be read: a record at a time, while OpenSSL holds more
 * (the socket's rest shows in epoll); stops there, at WANT_READ, or when
 * the client does not take our output (then the rest is kept and we wait
 * for EPOLLOUT).  0 ok, -1 dropped. */
static int echo(int fd)
{
    struct conn *c = &conns[fd];
    for (;;) {
        int r = SSL_read(c->ssl, buf, sizeof buf);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            drop(fd);     /* close_notify, EOF, reset, a TLS error */
            return -1;
        }
        size_t off = 0;
        int s = ssl_send(c->ssl, buf, (size_t)r, &off);
        if (s < 0) {
            drop(fd);
            return -1;
        }
        if (s == 0) {
            /* more of it already read from the socket (read-ahead)?  epoll
             * would not show that; what is still in the socket, it will */
            if (!SSL_has_pending(c->ssl))
                return 0;
            continue;
        }
        {
            /* keep the rest (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: the retry
             * may come from another address, with the same bytes) */
            c->plen = (size_t)r - off;
            c->poff = 0;
            c->pend = malloc(c->plen);
            if (!c->pend) {
                drop(fd);
                return -1;
            }
            memcpy(c->pend, buf + off, c->plen);
            set_events(fd, EPOLLOUT, EPOLL_CTL_MOD);
            return 0;
        }
    }
}

static void handshake(int fd)
{
    struct conn *c = &conns[fd];
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->open = 1;
        set_events(fd, EPOLLIN, EPOLL_CTL_MOD);
        if (SSL_has_pending(c->ssl))
            echo(fd);     /* the client's first line, read with the handshake */
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        set_events(fd, EPOLLIN, EPOLL_CTL_MOD);
    else if (e == SSL_ERROR_WANT_WRITE)
        set_events(fd, EPOLLOUT, EPOLL_CTL_MOD);
    else
        drop(fd);
}

static void usage(void)
{
    fprintf(stderr, "usage: tls-floor [--no-release-buffers] [--cert FILE] "
                    "[--key FILE] PORT [HOST]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *cert = getenv("BENCH_TLS_CERT"), *key = getenv("BENCH_TLS_KEY");
    const char *port = NULL, *host = "127.0.0.1";
    int release = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-release-buffers"))
            release = 0;
        else if (!strcmp(argv[i], "--cert") && i + 1 < argc)
            cert = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else if (argv[i][0] == '-')
            usage();
        else if (!port)
            port = argv[i];
        else
            host = argv[i];
    }
    if (!port || !cert || !key)
        usage();
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tls-floor: cannot set up TLS with %s and %s:\n", cert, key);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    if (release)
        mode |= SSL_MODE_RELEASE_BUFFERS;
    SSL_CTX_set_mode(ctx, mode);
    /* read what the socket has, not a record header and then its body (two
     * reads per record); the records read ahead are drained with
     * SSL_has_pending */
    SSL_CTX_set_read_ahead(ctx, 1);

    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(port));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "tls-floor: bad host\n");
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(lfd, SOMAXCONN) < 0) {
        perror("tls-floor: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    set_events(lfd, EPOLLIN, EPOLL_CTL_ADD);
    struct epoll_event evs[512];
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            perror("tls-floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int j = 0; j < 64; j++) {
                    int fdc = accept4(lfd, NULL, NULL,
                                      SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fdc < 0)
                        break; /* EAGAIN, or EMFILE & co: try next time */
                    setsockopt(fdc, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = conn_of(fdc);
                    c->ssl = SSL_new(ctx);
                    if (!c->ssl || !SSL_set_fd(c->ssl, fdc)) {
                        SSL_free(c->ssl);
                        c->ssl = NULL;
                        close(fdc);
                        ERR_clear_error();
                        continue;
                    }
                    SSL_set_accept_state(c->ssl);
                    set_events(fdc, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            if ((size_t)fd >= nconns || !conns[fd].ssl)
                continue;
            struct conn *c = &conns[fd];
            if (!c->open) {
                handshake(fd);
                continue;
            }
            if (c->pend) {
                /* writable again: push out what is left */
                int s = ssl_send(c->ssl, c->pend, c->plen, &c->poff);
                if (s < 0) {
                    drop(fd);
                    continue;
                }
                if (s > 0)
                    continue;
                free(c->pend);
                c->pend = NULL;
                c->plen = c->poff = 0;
                set_events(fd, EPOLLIN, EPOLL_CTL_MOD);
                /* (what SSL holds already decrypted, epoll will not show) */
                if (SSL_has_pending(c->ssl))
                    echo(fd);
                continue;
            }
            echo(fd);
        }
    }
}
