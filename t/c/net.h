/*
 * net.h - what the C tests that serve real sockets share: turning a loop
 * for a while, and a blocking-connect client on 127.0.0.1 (non-blocking
 * afterwards).  Included after isd.h by test_server.c, test_proxyconn.c
 * and test_udp.c; pump and pump_until take their context (anything with
 * an isd_loop *l).  (inline: a test that uses some draws no warnings
 * for the others)
 */
#ifndef ISD_TEST_NET_H
#define ISD_TEST_NET_H

#include <sys/socket.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* run the loop for ms */
static inline void tc_pump(isd_loop *l, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    do isd_loop_run_once(l, 5, NULL); while (isd_now_ms() < end);
}

/* run the loop until *what >= n, at most ms; whether it got there */
static inline int tc_pump_until(isd_loop *l, const int *what, int n, int ms)
{
    uint64_t end = isd_now_ms() + (uint64_t)ms;
    while (*what < n && isd_now_ms() < end)
        isd_loop_run_once(l, 5, NULL);
    return *what >= n;
}

#define pump(x, ms)                tc_pump((x)->l, (ms))
#define pump_until(x, what, n, ms) tc_pump_until((x)->l, (what), (n), (ms))

static inline int cli_connect_to(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
#ifdef SO_NOSIGPIPE
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
    }
#endif
    if (connect(fd, sa, len) < 0) { close(fd); return -1; }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static inline int cli_connect(unsigned port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return cli_connect_to((struct sockaddr *)&sin, sizeof sin);
}

#endif
