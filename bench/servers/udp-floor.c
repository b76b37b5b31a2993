/*
 * udp-floor - the smallest UDP echo server we can write in C, the floor no
 * Perl server can beat.  Single thread, one blocking UDP socket, no event
 * loop: recvmmsg (MSG_WAITFORONE: wait for the first datagram, then take
 * what else is queued, 64 at most, the module's batch too) receives a
 * batch, sendmmsg sends every datagram of it back to its sender unchanged,
 * in one system call.  The kernel's socket buffers are left at their
 * defaults, as the module leaves them.  A reply the kernel refuses is
 * dropped; when SIGTERM ends the server it says on stderr how many, if
 * any (bench/run shows a server's stderr in its Notes).
 *
 *   udp-floor PORT [HOST]     (HOST: numeric IPv4, default 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH 64
#define DGRAM 65536   /* the largest UDP payload fits (65,507 bytes) */

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: udp-floor PORT [HOST]\n");
        return 2;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &a.sin_addr) != 1) {
        fprintf(stderr, "udp-floor: bad host\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("udp-floor: bind");
        return 1;
    }
    /* SIGTERM interrupts the blocking recvmmsg (no SA_RESTART) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    static char buf[BATCH][DGRAM];
    static struct sockaddr_in from[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr mm[BATCH];
    unsigned long long in = 0, out = 0, dropped = 0;
    while (!stop) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = buf[i];
            iov[i].iov_len = DGRAM;
            memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
            mm[i].msg_hdr.msg_name = &from[i];
            mm[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int n = recvmmsg(fd, mm, BATCH, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("udp-floor: recvmmsg");
            return 1;
        }
        in += n;
        /* the same headers send each datagram back: iov_len becomes the
         * length received, msg_name already holds the sender */
        for (int i = 0; i < n; i++)
            iov[i].iov_len = mm[i].msg_len;
        int off = 0;
        while (off < n) {
            int s = sendmmsg(fd, mm + off, n - off, 0);
            if (s > 0) {
                off += s;
                out += s;
            } else if (s < 0 && errno == EINTR) {
                continue;
            } else {
                off++;          /* this one cannot go: drop it */
                dropped++;
            }
        }
    }
    if (dropped)
        fprintf(stderr, "udp-floor: %llu datagrams in, %llu out, %llu "
                "replies dropped\n", in, out, dropped);
    return 0;
}
