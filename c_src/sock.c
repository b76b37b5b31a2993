/*
 * sock.c - listening, accepting, addresses.
 *
 * Setup errors come back as -1 with errno kept and a message naming the
 * step and the address in the caller's buffer: "bind 127.0.0.1:5000:
 * Address already in use".
 */
#include "isd_int.h"

#include <sys/socket.h>
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

int isd_listen_tcp(const char *host, unsigned port, int family, int backlog,
                   char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[16], where[INET6_ADDRSTRLEN + 16];
    const char *step = "socket";
    int fd = -1, rc, one = 1, saved = 0;

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
    /* The first address that binds wins (more listeners: a later release). */
    for (ai = res; ai; ai = ai->ai_next) {
        fmt_hostport(ai->ai_addr, where, sizeof where);
        step = "socket";
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            goto fail;
        step = "fcntl";
        if (isd_fd_nonblock_cloexec(fd) < 0)
            goto fail;
        step = "setsockopt";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            goto fail;
        step = "bind";
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
            goto fail;
        step = "listen";
        if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0)
            goto fail;
        freeaddrinfo(res);
        return fd;
    fail:
        saved = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (err)
        snprintf(err, errlen, "%s %s: %s", step, where, strerror(saved));
    errno = saved;
    return -1;
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
    }
    return fd;
}
