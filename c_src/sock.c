/*
 * sock.c - listening, accepting, addresses.
 *
 * Setup errors come back as -1 with errno kept and a message naming the
 * step and the address in the caller's buffer: "bind 127.0.0.1:5000:
 * Address already in use".
 */
#include "isd_int.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>

void isd_nodelay(int fd)
{
    int one = 1;

    /* Replies are batched per wake-up already; Nagle would only add
     * delayed-ACK stalls to a request/reply protocol.  Not a TCP socket
     * (UNIX, later): harmless failure. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int isd_fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

const char *isd_addr_host(const isd_addr *a, char *buf, size_t len)
{
    const void *src = NULL;

    if (a->sa.sa_family == AF_INET)
        src = &a->in4.sin_addr;
    else if (a->sa.sa_family == AF_INET6)
        src = &a->in6.sin6_addr;
    if (!src || !inet_ntop(a->sa.sa_family, src, buf, (socklen_t)len)) {
        if (len)
            buf[0] = '\0';
    }
    return buf;
}

unsigned isd_addr_port(const isd_addr *a)
{
    if (a->sa.sa_family == AF_INET)
        return ntohs(a->in4.sin_port);
    if (a->sa.sa_family == AF_INET6)
        return ntohs(a->in6.sin6_port);
    return 0;
}

socklen_t isd_addr_len(const isd_addr *a)
{
    if (a->sa.sa_family == AF_INET)
        return sizeof a->in4;
    if (a->sa.sa_family == AF_INET6)
        return sizeof a->in6;
    return 0;
}

/* "host:port", or "[v6]:port", for messages. */
static void fmt_hostport(const struct sockaddr *sa, char *buf, size_t len)
{
    isd_addr a;
    char h[INET6_ADDRSTRLEN];

    memset(&a, 0, sizeof a);
    if (sa->sa_family == AF_INET6)
        memcpy(&a.in6, sa, sizeof a.in6);
    else
        memcpy(&a.in4, sa, sizeof a.in4);
    isd_addr_host(&a, h, sizeof h);
    snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             h, isd_addr_port(&a));
}

/* SO_RCVBUF/SO_SNDBUF as o asks: past net.core.rmem_max (wmem_max) with
 * the FORCE variants where the process may (root, CAP_NET_ADMIN), else
 * capped there by the kernel.  0, or -1 with errno. */
static int set_bufs(int fd, const isd_listen_opts *o)
{
    int k;

    for (k = 0; o && k < 2; k++) {
        int v = k ? o->sndbuf : o->rcvbuf;
        if (v <= 0)
            continue;
#if defined(SO_RCVBUFFORCE) && defined(SO_SNDBUFFORCE)
        if (setsockopt(fd, SOL_SOCKET, k ? SO_SNDBUFFORCE : SO_RCVBUFFORCE,
                       &v, sizeof v) == 0)
            continue;
#endif
        if (setsockopt(fd, SOL_SOCKET, k ? SO_SNDBUF : SO_RCVBUF, &v,
                       sizeof v) < 0)
            return -1;
    }
    return 0;
}

/* socket, options, bind, listen on one address: the fd, or -1 with errno
 * and err naming the step and the address. */
static int listen_on(const struct sockaddr *sa, socklen_t salen, int type,
                     const isd_listen_opts *o, char *err, size_t errlen)
{
    char where[INET6_ADDRSTRLEN + 16];
    const char *step = "socket";
    int fd, one = 1, saved;

    fd = socket(sa->sa_family, type, 0);
    if (fd < 0)
        goto fail;
    step = "fcntl";
    if (isd_fd_nonblock_cloexec(fd) < 0)
        goto fail;
    step = "setsockopt";
    /* (not for UDP: there it would let a second socket share the port) */
    if (type == SOCK_STREAM
        && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        goto fail;
    if (o && o->reuseport) {
#ifdef SO_REUSEPORT
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            goto fail;
#else
        errno = ENOPROTOOPT;
        goto fail;
#endif
    }
    if (sa->sa_family == AF_INET6 && o && o->v6only >= 0) {
        int v = o->v6only ? 1 : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) < 0)
            goto fail;
    }
    if (set_bufs(fd, o) < 0)
        goto fail;
    step = "bind";
    if (bind(fd, sa, salen) < 0)
        goto fail;
    step = "listen";
    if (type == SOCK_STREAM
        && listen(fd, o && o->backlog > 0 ? o->backlog : SOMAXCONN) < 0)
        goto fail;
    return fd;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (err) {
        fmt_hostport(sa, where, sizeof where);
        snprintf(err, errlen, "%s %s: %s", step, where, strerror(saved));
    }
    errno = saved;
    return -1;
}

int isd_listen_addr(const isd_addr *a, const isd_listen_opts *o, char *err,
                    size_t errlen)
{
    socklen_t len = isd_addr_len(a);

    if (!len) {
        if (err)
            snprintf(err, errlen, "listen: not an IPv4 or IPv6 address");
        errno = EAFNOSUPPORT;
        return -1;
    }
    return listen_on(&a->sa, len, SOCK_STREAM, o, err, errlen);
}

int isd_listen_udp(const isd_addr *a, const isd_listen_opts *o, char *err,
                   size_t errlen)
{
    socklen_t len = isd_addr_len(a);

    if (!len) {
        if (err)
            snprintf(err, errlen, "listen: not an IPv4 or IPv6 address");
        errno = EAFNOSUPPORT;
        return -1;
    }
    return listen_on(&a->sa, len, SOCK_DGRAM, o, err, errlen);
}

int isd_listen_any(unsigned port, const isd_listen_opts *o, int fds[2],
                   char *err, size_t errlen)
{
    return isd_listen_any_type(port, SOCK_STREAM, o, fds, err, errlen);
}

static int listen_twins(unsigned port, int type, isd_listen_opts *o,
                        int fds[2], char *err, size_t errlen);
static int listen_pair(unsigned port, int type, isd_listen_opts *o,
                       int fds[2], char *err, size_t errlen);

int isd_listen_any_type(unsigned port, int type, const isd_listen_opts *o,
                        int fds[2], char *err, size_t errlen)
{
    isd_listen_opts v6 = { -1, -1, 0, -1, 0, 0 };
    isd_addr a;

    if (port > 65535) {
        if (err)
            snprintf(err, errlen, "port %u is out of range", port);
        errno = EINVAL;
        return -1;
    }
    if (o)
        v6 = *o;
    /* One dual-stack socket where the system lets IPv6 sockets take IPv4
     * (Linux by default; not OpenBSD, nor where bindv6only is set and
     * refused), else IPv6 alone here and IPv4 on the same port. */
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_addr = in6addr_any;
    a.in6.sin6_port = htons((unsigned short)port);
    if (v6.v6only != 1) {
        v6.v6only = 0;
        fds[0] = listen_on(&a.sa, sizeof a.in6, type, &v6, err, errlen);
        if (fds[0] >= 0)
            return 1;
        if (errno != ENOPROTOOPT && errno != EINVAL
            && errno != EAFNOSUPPORT && errno != EOPNOTSUPP)
            return -1;                  /* (the port is taken...) */
    }
    return listen_twins(port, type, &v6, fds, err, errlen);
}

/* An IPv6-only socket and an IPv4 one on the same port (IPv4 alone without
 * IPv6).  Port 0: the IPv4 twin takes the port the first got, and if that
 * is taken in IPv4 the pair is tried again on other ports. */
static int listen_twins(unsigned port, int type, isd_listen_opts *o,
                        int fds[2], char *err, size_t errlen)
{
    int tries, r = -1;

    for (tries = 0; tries < (port ? 1 : 8); tries++) {
        r = listen_pair(port, type, o, fds, err, errlen);
        if (r >= 0 || port || errno != EADDRINUSE)
            break;
    }
    return r;
}

static int listen_pair(unsigned port, int type, isd_listen_opts *o,
                       int fds[2], char *err, size_t errlen)
{
    isd_listen_opts v6 = *o;
    isd_addr a;
    socklen_t len = sizeof a;
    int n = 0, e;

    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_addr = in6addr_any;
    a.in6.sin6_port = htons((unsigned short)port);
    v6.v6only = 1;
    fds[0] = listen_on(&a.sa, sizeof a.in6, type, &v6, err, errlen);
    if (fds[0] >= 0) {
        n = 1;
        if (!port) {                    /* the IPv4 one on the same port */
            if (getsockname(fds[0], &a.sa, &len) < 0) {
                e = errno;
                close(fds[0]);
                errno = e;
                return -1;
            }
            port = ntohs(a.in6.sin6_port);
        }
    } else if (errno != EAFNOSUPPORT) {
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    a.in4.sin_addr.s_addr = htonl(INADDR_ANY);
    a.in4.sin_port = htons((unsigned short)port);
    v6.v6only = -1;
    fds[n] = listen_on(&a.sa, sizeof a.in4, type, &v6, err, errlen);
    if (fds[n] < 0) {
        e = errno;
        if (n)
            close(fds[0]);
        errno = e;
        return -1;
    }
    return n + 1;
}

int isd_listen_unix(const char *path, const isd_listen_opts *o, char *err,
                    size_t errlen)
{
    struct sockaddr_un un;
    struct stat st;
    size_t n = strlen(path);
    const char *step = "socket";
    int fd = -1, probe, saved, r;

    if (!n || n >= sizeof un.sun_path) {
        if (err)
            snprintf(err, errlen, "listen unix:%s: the path is %s", path,
                     n ? "too long" : "empty");
        errno = n ? ENAMETOOLONG : EINVAL;
        return -1;
    }
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path, n);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            if (err)
                snprintf(err, errlen, "listen unix:%s: a file that is not a "
                         "socket is there", path);
            errno = EEXIST;
            return -1;
        }
        /* Live (something accepts on it) or stale (its server is gone)?
         * Never blocking: a live server with a full backlog answers
         * EAGAIN, and is live all the same. */
        probe = socket(AF_UNIX, SOCK_STREAM, 0);
        if (probe < 0)
            goto fail;
        if (isd_fd_nonblock_cloexec(probe) < 0) {
            saved = errno;
            close(probe);
            errno = saved;
            goto fail;
        }
        do
            r = connect(probe, (struct sockaddr *)&un, sizeof un);
        while (r < 0 && errno == EINTR);
        saved = r == 0 ? 0 : errno;
        close(probe);
        if (saved != ECONNREFUSED && saved != ENOENT) {
            int live = saved == 0 || saved == EAGAIN || saved == EINPROGRESS
                       || saved == EWOULDBLOCK;
            if (err)
                snprintf(err, errlen, "listen unix:%s: %s", path,
                         live ? "a server is listening on it"
                              : strerror(saved));
            errno = live ? EADDRINUSE : saved;
            return -1;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            step = "unlink";
            goto fail;
        }
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        goto fail;
    step = "fcntl";
    if (isd_fd_nonblock_cloexec(fd) < 0)
        goto fail;
    step = "setsockopt";
    if (set_bufs(fd, o) < 0)
        goto fail;
    step = "bind";
    if (bind(fd, (struct sockaddr *)&un, sizeof un) < 0)
        goto fail;
    step = "chmod";
    if (o && o->mode >= 0 && chmod(path, (mode_t)o->mode) < 0)
        goto fail_bound;
    step = "listen";
    if (listen(fd, o && o->backlog > 0 ? o->backlog : SOMAXCONN) < 0)
        goto fail_bound;
    return fd;
fail_bound:
    saved = errno;
    unlink(path);
    errno = saved;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (err)
        snprintf(err, errlen, "%s unix:%s: %s", step, path, strerror(saved));
    errno = saved;
    return -1;
}

int isd_listen_tcp(const char *host, unsigned port, int family, int backlog,
                   char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    isd_listen_opts o = { backlog, -1, 0, -1, 0, 0 };
    char portstr[16];
    int fd = -1, rc;

    if (port > 65535) {
        if (err)
            snprintf(err, errlen, "port %u is out of range", port);
        errno = EINVAL;
        return -1;
    }
    if (host && (!*host || strcmp(host, "*") == 0))
        host = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        if (err)
            snprintf(err, errlen, "resolve %s: %s", host ? host : "*",
                     gai_strerror(rc));
        errno = rc == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
        if (!errno)
            errno = EADDRNOTAVAIL;
        return -1;
    }
    /* The first address that binds wins (0.04's one listener; more with
     * isd_listen_addr). */
    for (ai = res; ai; ai = ai->ai_next) {
        fd = listen_on(ai->ai_addr, ai->ai_addrlen, SOCK_STREAM, &o, err,
                       errlen);
        if (fd >= 0)
            break;
    }
    rc = errno;
    freeaddrinfo(res);
    errno = rc;
    return fd;
}

void isd_addr_unmap(isd_addr *a)
{
    if (a->sa.sa_family == AF_INET6
        && IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr)) {
        struct sockaddr_in in4;

        memset(&in4, 0, sizeof in4);
        in4.sin_family = AF_INET;
        in4.sin_port = a->in6.sin6_port;
        memcpy(&in4.sin_addr, a->in6.sin6_addr.s6_addr + 12, 4);
        memset(a, 0, sizeof *a);
        a->in4 = in4;
    }
}

int isd_accept(int lfd, isd_addr *peer)
{
    socklen_t len = sizeof *peer;
    int fd;

    for (;;) {
#ifdef ISD_HAVE_ACCEPT4
        fd = accept4(lfd, &peer->sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        fd = accept(lfd, &peer->sa, &len);
        if (fd >= 0 && isd_fd_nonblock_cloexec(fd) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
#endif
        if (fd >= 0 || errno != EINTR)
            break;
    }
    if (fd >= 0) {
        int one = 1;
#ifndef __linux__
        /* Linux inherits TCP_NODELAY from the listener (isd_nodelay);
         * elsewhere set it on each connection. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#endif
#ifdef SO_NOSIGPIPE
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        ISD_UNUSED(one);
        isd_addr_unmap(peer);
    }
    return fd;
}
