/*
 * floor - the smallest echo server we can write in C, the floor no Perl
 * server can beat.  Single thread, epoll level-triggered, non-blocking
 * sockets: read into a buffer, write it straight back; what the client
 * does not take at once is kept and written when the socket is writable
 * (reading from that client pauses meanwhile).  Bytes are echoed as they
 * come, so every line comes back unchanged and in order.
 *
 *   floor PORT [HOST]     (HOST: numeric IPv4, default 127.0.0.1)
 *
 * Built with -DFLOOR_UNIX (bench/run makes it bench/.build/floor-unix), it
 * listens on a UNIX stream socket instead, the rest unchanged:
 *
 *   floor-unix unix:PATH  (a file at PATH is replaced, and removed again on
 *                          SIGTERM)
 *
 * The UNIX code is compiled in only then, so that the TCP floor stays the
 * very program it was (bench/run's TCP rows must not move).
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
#ifdef FLOOR_UNIX
#include <sys/un.h>
#endif

struct pend {            /* unwritten output of one connection */
    size_t len, off;
    char data[];
};

static struct pend **pending; /* indexed by fd */
static size_t npending;
static int ep;

static void set_events(int fd, uint32_t ev, int op)
{
    struct epoll_event e = { .events = ev, .data.fd = fd };
    epoll_ctl(ep, op, fd, &e);
}

static void drop(int fd)
{
    if ((size_t)fd < npending) {
        free(pending[fd]);
        pending[fd] = NULL;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* write buf[0..len) to fd; keep what does not go out.  0 ok, -1 dropped */
static int send_or_keep(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w > 0) {
            off += w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        drop(fd);
        return -1;
    }
    if (off == len)
        return 0;
    if ((size_t)fd >= npending) {
        size_t n = npending ? npending : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        pending = realloc(pending, n * sizeof *pending);
        if (!pending) {
            perror("realloc");
            exit(1);
        }
        memset(pending + npending, 0, (n - npending) * sizeof *pending);
        npending = n;
    }
    struct pend *p = malloc(sizeof *p + (len - off));
    if (!p) {
        drop(fd);
        return -1;
    }
    p->len = len - off;
    p->off = 0;
    memcpy(p->data, buf + off, p->len);
    pending[fd] = p;
    set_events(fd, EPOLLOUT, EPOLL_CTL_MOD); /* stop reading until drained */
    return 0;
}

#ifdef FLOOR_UNIX
static const char *unix_path;

static void on_term(int sig)
{
    unlink(unix_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* a listening UNIX stream socket at PATH (a file there is replaced) */
static int listen_unix(const char *path)
{
    struct sockaddr_un u;
    memset(&u, 0, sizeof u);
    u.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof u.sun_path) {
        fprintf(stderr, "floor: UNIX socket path too long\n");
        exit(2);
    }
    strcpy(u.sun_path, path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    unlink(path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&u, sizeof u) < 0 ||
        listen(lfd, SOMAXCONN) < 0) {
        perror("floor: listen");
        exit(1);
    }
    unix_path = path;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    return lfd;
}
#endif

int main(int argc, char **argv)
{
#ifdef FLOOR_UNIX
    if (argc < 2 || strncmp(argv[1], "unix:", 5) != 0) {
        fprintf(stderr, "usage: floor-unix unix:PATH\n");
        return 2;
    }
#else
    if (argc < 2) {
        fprintf(stderr, "usage: floor PORT [HOST]\n");
        return 2;
    }
#endif
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
#ifdef FLOOR_UNIX
    int lfd = listen_unix(argv[1] + 5);
#else
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &a.sin_addr) != 1) {
        fprintf(stderr, "floor: bad host\n");
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(lfd, SOMAXCONN) < 0) {
        perror("floor: listen");
        return 1;
    }
#endif
    ep = epoll_create1(EPOLL_CLOEXEC);
    set_events(lfd, EPOLLIN, EPOLL_CTL_ADD);
    static char buf[65536];
    struct epoll_event evs[512];
    for (;;) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            perror("floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int j = 0; j < 64; j++) {
                    int c = accept4(lfd, NULL, NULL,
                                    SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break; /* EAGAIN, or EMFILE & co: try next time */
#ifndef FLOOR_UNIX
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#endif
                    set_events(c, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            if ((size_t)fd < npending && pending[fd]) {
                /* writable again: push out what is left */
                struct pend *p = pending[fd];
                while (p->off < p->len) {
                    ssize_t w = write(fd, p->data + p->off, p->len - p->off);
                    if (w > 0) {
                        p->off += w;
                        continue;
                    }
                    if (w < 0 && errno == EINTR)
                        continue;
                    break;
                }
                if (p->off == p->len) {
                    free(p);
                    pending[fd] = NULL;
                    set_events(fd, EPOLLIN, EPOLL_CTL_MOD);
                } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    drop(fd);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0)
                send_or_keep(fd, buf, (size_t)r);
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                drop(fd);
        }
    }
}
