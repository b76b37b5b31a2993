/*
 * loadgen - load generator for line-echo servers (bench/ of
 * IO-Socket-INET-Daemon).  Linux, epoll, non-blocking, single thread.
 *
 *   loadgen echo    -p PORT [-c CONNS] [-d DEPTH] [-t SECS] [-w WARMUP]
 *                           [-s LINELEN] [-g GRACE] [-C CONNECT_TIMEOUT]
 *                           [-P SERVER_PID] [-A PID] [-x v1|v2] [-T]
 *   loadgen connect -p PORT [-c CONNS] [-t SECS] [-w WARMUP] [-s LINELEN]
 *                           [-P SERVER_PID] [-A PID] [-x v1|v2] [-T]
 *   loadgen idle    -p PORT -P SERVER_PID [-n CONNS] [-t SECS] [-s LINELEN]
 *                           [-T]
 *   loadgen bcast   -p PORT -P SERVER_PID [-n CONNS] [-r ROUNDS] [-s SIZE]
 *                           [-t IDLE_SECS] [-g GRACE] [-C CONNECT_TIMEOUT]
 *   loadgen udp     -p PORT [-c SENDERS] [-d DEPTH] [-t SECS] [-w WARMUP]
 *                           [-s SIZE] [-L LOSS_TIMEOUT] [-g GRACE]
 *                           [-P SERVER_PID]
 *
 * and the modes of the reliability suite (xt/, through xt/lib/ISDStress.pm):
 *
 *   loadgen hold    -p PORT [-n N] [-c INFLIGHT] [-h HOLD_SECS] [-D SECS]
 *   loadgen short   -p PORT [-n TOTAL] [-c CONCURRENCY] [-D SECS]
 *   loadgen pipe    -p PORT [-n CONNS] [-l LINES] [-D SECS]
 *   loadgen loris   -p PORT [-n N] [-t SECS] [-i MS] [-D SECS]
 *   loadgen flood   -p PORT [-n N] [-t SECS] [-D SECS]
 *
 * Common: -H HOST (default 127.0.0.1, numeric IPv4 only), -B SRC (bind
 * connections to 64 source addresses from SRC on, e.g. 127.23.5.1: in
 * connect mode one address has only ~28k ports, and a closed port stays in
 * TIME_WAIT for a second before reuse, which would cap the rate), -v
 * (progress on stderr).  -U PATH (every mode but udp; bench/run uses it in
 * echo): connect to the UNIX stream socket PATH instead of HOST:PORT (-p
 * and -B are then not used); the output is the same.
 *
 * echo:    CONNS connections each keep DEPTH lines in flight; every reply
 *          is compared byte for byte with the line sent (each line carries
 *          its connection number and sequence number, so a wrong reply is
 *          classified as lost, reordered or corrupt).  Runs WARMUP seconds
 *          unmeasured, then SECS measured, then stops sending and waits for
 *          the replies still in flight (GRACE seconds without progress at
 *          most); what never comes back is counted as lost.
 * connect: CONNS slots each loop: connect, send one line, read the reply,
 *          check it, close.
 * idle:    opens CONNS connections, each proven live with one request and
 *          its reply, then reports the growth of the server's VmRSS
 *          (from /proc/PID/status) per connection.  SECS bounds the whole
 *          run (the connections proven by then are the ones counted).
 * bcast:   broadcast and idle cost of a server holding many connections
 *          (bench/control, servers bench/servers/bcast-*.pl).  Opens one
 *          control connection, then CONNS receivers (500 at a time, each
 *          batch counted in by the server before the next).  The protocol,
 *          on the control connection only, lines ending in "\n":
 *            "COUNT"            -> "<connections open, control included>"
 *            "B <round> <size>" -> the server queues one message of <size>
 *                bytes for every connection but the control, then answers
 *                "OK <how many it queued it for>"
 *          The message is the same for everyone: the round number in 10
 *          digits, a space, "abc...xyzabc..." up to <size> - 1 bytes, "\n".
 *          Phases: COUNT until it is CONNS + 1 (CONNECT_TIMEOUT seconds at
 *          most); IDLE_SECS seconds with nothing sent, measuring the
 *          server's CPU time (idle_cpu_pct, in % of one core) and context
 *          switches (idle_switches: its wake-ups and preemptions); COUNT
 *          again (nobody dropped); then ROUNDS broadcasts, each timed from
 *          writing "B" until every receiver holds the whole message,
 *          checked byte for byte (a round gives up after GRACE seconds
 *          without a byte arriving, 10 * GRACE in all), with the server's
 *          CPU time per round (srv_cpu_ms) and the load generator's share
 *          of a core (lg_cpu).  Before the first round the server's VmHWM
 *          is reset (writing 5 to /proc/PID/clear_refs; hwm_reset=1 when
 *          allowed); VmRSS before the first round and after the last give
 *          rss_growth_kb, the highest VmHWM after any round minus that
 *          VmRSS gives hwm_growth_kb (the transient peak).  SIZE defaults
 *          to 1024 (12 .. 16 MiB), IDLE_SECS to 5, ROUNDS to 5.
 * udp:     UDP echo.  SENDERS UDP sockets (each its own port, connected to
 *          HOST:PORT) each keep DEPTH datagrams in flight; a datagram is
 *          SIZE bytes (default 64, 21 .. 4096) in the format of the echo
 *          lines, carrying its sender and sequence number, and its reply
 *          must be the same bytes.  Slot k of a sender sends sequence
 *          numbers k, k + DEPTH, k + 2 DEPTH, ..., one at a time: a reply
 *          frees its slot for the next.  UDP may drop datagrams (a full
 *          socket buffer): a slot whose reply has not come within
 *          LOSS_TIMEOUT seconds (default 0.2) gives up on it and sends the
 *          next, so a loss costs a pause, not a stall.  A reply that comes
 *          after that is counted as late (not lost, and not a request
 *          done: its sender had moved on); lost = given up on and never
 *          came back, over the whole run (warm-up and the final wait
 *          included), and loss_pct = lost / sent in %.  WARMUP, SECS and
 *          the final wait are as in echo (the final wait ends when every
 *          slot has its reply or gave up on it, 10 * GRACE at most).
 *          reqs, rps and the latencies count the replies that came in time
 *          in the measured window.  status: OK when loss_pct < 0.1 (UDP
 *          on loopback should lose nothing; a server that is too slow
 *          overflows its socket buffer), LOST at 0.1% or more, CORRUPT on
 *          a reply that is not one of ours (wrong bytes or length, another
 *          sender's, a duplicate), ERROR.  refused counts ICMP port
 *          unreachable (ECONNREFUSED: nothing listened for a moment).
 *
 * With -P, echo, connect and udp also report the server's CPU time during the
 * measured window: srv_cpu (in CPUs, 1.0 = one core busy all the time) and
 * srv_ns_per_req (server CPU nanoseconds per request or connection), from
 * /proc/PID/schedstat: a cost per request that other load on the machine
 * disturbs much less than requests/s.  lg_cpu is the load generator's own
 * CPU use in the window (near 1.0: it, not the server, set the pace).
 * -P PID,PID,... sums the CPU time of several processes (the workers of a
 * prefork server); the first is the one idle and bcast read memory from.
 * -A PID,PID,... (echo, connect): the same for processes between the load
 * generator and the server (a balancer such as HAProxy), reported apart
 * as aux_cpu and aux_ns_per_req.
 *
 * -x v2 | -x v1 (echo, connect; TCP only): every connection starts with a
 * PROXY protocol header (HAProxy's doc/proxy-protocol.txt), sent in the
 * same write as the connection's first request(s), as HAProxy sends it:
 * v2 is the binary form, 16 bytes (the 12-byte signature, 0x21 = version
 * 2 + PROXY, 0x11 = TCP over IPv4, length 12) and 12 bytes of addresses;
 * v1 the text form "PROXY TCP4 SRC DST SPORT DPORT\r\n".  The source is
 * the connection's own address and port (getsockname once it is
 * connected), the destination HOST:PORT.  The server must take the header
 * off: the replies are checked against the lines alone.
 *
 * -T (echo, connect, idle; TCP only; built with -DLOADGEN_TLS and linked
 * with -lssl -lcrypto, as bench/run builds it): every connection speaks
 * TLS 1.3 (OpenSSL, non-blocking, in the same epoll loop), the server's
 * certificate not checked (the bench makes its own).  The TCP connect is
 * followed by the handshake (SSL_connect until done: WANT_READ and
 * WANT_WRITE wait in epoll); the lines then go through SSL_write (a write
 * that would block is retried with the same bytes: partial writes and a
 * moving buffer allowed) and come back through SSL_read (read-ahead on,
 * drained while SSL_has_pending).  In echo and idle the handshake is part
 * of connecting (CONNECT_TIMEOUT bounds both); in connect mode each cycle
 * is connect, handshake, one line, its reply, close_notify and close: its
 * rate is handshakes per second.  The output is the same.  Built without
 * LOADGEN_TLS (the reliability suite builds it so), -T is refused and
 * nothing of OpenSSL is compiled in.
 *
 * The reliability suite's modes: against a line echo server, every line
 * sent must come back byte-exact; a line starting with 'q' must come back
 * and then be followed by the server closing.  Their lines are their own
 * (not the numbered lines above), and so are their results.
 *
 * hold:    open N connections (at most INFLIGHT connects at once, default
 *          256), prove each with a request and reply, print "phase1 ...",
 *          keep all N open for HOLD_SECS (default 1), then prove every one
 *          again at once ("phase2 ...").
 * short:   TOTAL short connections (default 100), CONCURRENCY at a time
 *          (default 256): connect, one line, its reply, close (every other
 *          one asks the server to close: "q").
 * pipe:    CONNS connections each pipelining LINES numbered lines (default
 *          1000); every reply is checked in order.
 * loris:   N connections that each send one byte per second of a line for
 *          SECS seconds (default 5), then its end; meanwhile a probe
 *          connection sends a line every MS ms (default 50) and its reply
 *          latency is recorded.  Every trickled line must finally come
 *          back whole.
 * flood:   connect N sockets as fast as possible, send nothing, hold them
 *          SECS seconds (default 5), close them all.  Counts connects and
 *          server-side closes.
 *
 * Their output is "key value" lines on stdout (flushed as they come: e.g.
 * "phase1_live 10000"), ending with the counters every one of them
 * reports (connected, refused, connect_failed, reset, bad_reply,
 * early_eof, errors); problems are "error: ..." lines on stderr (the first
 * 20), and lg_cpu_ms (this tool's CPU time) and with -P srv_cpu_ms
 * (the server's, as in the other modes), over the whole run.  -D is the
 * deadline of the whole run (default 120 s): past it they
 * print "deadline 1" and stop.  Exit 0 when every check passed, 1 when one
 * failed, 2 past the deadline (and 2 on a usage error).  -H, -B and -U
 * work as in the other modes; -n and -c are apart (N and the
 * concurrency), -t is the length of loris and flood.
 *
 * Output (the other modes): one line of key=value pairs on stdout, e.g.
 *   mode=echo status=OK c=50 d=16 secs=2.000 reqs=... rps=... p50_us=...
 * status is OK, LOST/REORDERED, CORRUPT, CLOSED, STALLED, CONNECT_FAILED or
 * ERROR (bcast: OK, CORRUPT, LOST, CLOSED, BAD_REPLY, TIMEOUT,
 * CONNECT_FAILED or ERROR); details=... says more (no spaces).  Exit code 0
 * when the run completed (whatever the status), 2 on a usage error, 1 on a
 * local failure (cannot create sockets, ...).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef LOADGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* ------------------------------------------------------------------ */
/* options                                                            */

static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_conns = 1;
static int opt_depth = 1;
static double opt_secs = 5.0;
static double opt_warm = 1.0;
static double opt_grace = 2.0;
static double opt_ctimeout = 15.0;
static int opt_linelen = 32;
static int opt_pid = 0;            /* -P PID[,PID...]: the first, for RSS */
static int opt_pids[64];            /* ... all of them, for CPU time */
static int opt_npids = 0;
static int opt_verbose = 0;
static const char *opt_unix;       /* -U PATH: a UNIX stream socket */
static double opt_losstimeout = 0.2;
static int opt_proxy;              /* -x v1|v2: a PROXY header, version 1 or 2 */
static int opt_apids[64];          /* -A PID[,PID...]: a balancer's CPU time */
static int opt_napids = 0;
static int opt_tls;                /* -T: TLS 1.3 (built with LOADGEN_TLS) */

static struct sockaddr_in g_addr;
static struct sockaddr_in g_src;   /* -B: source address to bind */
static int g_have_src;
static struct sockaddr_un g_unaddr;   /* -U */

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    printf("mode=error status=ERROR details=%s:%s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Raise RLIMIT_NOFILE to what is needed (up to the hard limit, or above
 * it when we may). */
static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if ((long)rl.rlim_cur >= need)
        return;
    if ((long)rl.rlim_max < need) {
        struct rlimit want = { (rlim_t)need, (rlim_t)need };
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur < need)
        fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE is %ld, %ld wanted\n",
                (long)rl.rlim_cur, need);
}

/* ------------------------------------------------------------------ */
/* latency histogram: log-linear, 1/128 relative precision            */

#define H_EXP 48
static uint64_t hist[H_EXP][256];
static uint64_t hist_n;

/* row 0 holds 0..255 ns exactly; row e >= 1 holds v >> e in 128..255 */
static void hist_add(uint64_t ns)
{
    int e = 0;
    while ((ns >> e) >= 256)
        e++;
    if (e >= H_EXP) {
        e = H_EXP - 1;
        ns = (uint64_t)255 << e;
    }
    hist[e][ns >> e]++;
    hist_n++;
}

/* the p-quantile in microseconds (bucket lower bound, < 1% low) */
static double hist_pct(double p)
{
    if (!hist_n)
        return -1;
    uint64_t want = (uint64_t)(p * hist_n);
    if (want >= hist_n)
        want = hist_n - 1;
    uint64_t seen = 0;
    for (int e = 0; e < H_EXP; e++)
        for (int i = 0; i < 256; i++) {
            seen += hist[e][i];
            if (seen > want)
                return ((uint64_t)i << e) / 1000.0;
        }
    return -1;
}

/* ------------------------------------------------------------------ */
/* lines: "CCCCCC SSSSSSSSSSSS xxx...x\n", LINELEN bytes               */

static void make_line(char *buf, int conn, uint64_t seq)
{
    /* conn: 6 digits, seq: 12 digits */
    char *p = buf;
    int c = conn;
    for (int i = 5; i >= 0; i--) { p[i] = '0' + c % 10; c /= 10; }
    p[6] = ' ';
    uint64_t s = seq;
    for (int i = 18; i >= 7; i--) { p[i] = '0' + s % 10; s /= 10; }
    p[19] = ' ';
    /* the rest is filler, prepared once per buffer by init_line */
}

static void init_line(char *buf)
{
    memset(buf, 'x', opt_linelen - 1);
    buf[opt_linelen - 1] = '\n';
}

/* make_line(buf, conn, seq + 1) from make_line(buf, conn, seq): the lines
 * of a connection are kept and counted up in place (this tool must stay
 * cheaper per line than the fastest server it measures). */
static void next_line(char *buf)
{
    int i = 18;
    while (i > 7 && buf[i] == '9')
        buf[i--] = '0';
    buf[i]++;
}

/* Parse a received (wrong) line: returns 1 and sets conn/seq when it has
 * our format. */
static int parse_line(const char *buf, int len, int *conn, uint64_t *seq)
{
    if (len < 20)
        return 0;
    int c = 0;
    uint64_t s = 0;
    for (int i = 0; i < 6; i++) {
        if (buf[i] < '0' || buf[i] > '9') return 0;
        c = c * 10 + (buf[i] - '0');
    }
    if (buf[6] != ' ') return 0;
    for (int i = 7; i < 19; i++) {
        if (buf[i] < '0' || buf[i] > '9') return 0;
        s = s * 10 + (uint64_t)(buf[i] - '0');
    }
    *conn = c;
    *seq = s;
    return 1;
}

/* ------------------------------------------------------------------ */
/* sockets                                                            */

static int g_ep;

/* -U: a connection to the UNIX stream socket.  A non-blocking connect to
 * it completes at once or fails with EAGAIN when the server's backlog is
 * full: then it is tried again, for 1 s at most. */
static int start_connect_unix(void)
{
    for (int tries = 0;; tries++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&g_unaddr, sizeof g_unaddr) == 0 ||
            errno == EINPROGRESS)
            return fd;
        int e = errno;
        close(fd);
        errno = e;
        if (e != EAGAIN || tries >= 1000)
            return -1;
        usleep(1000);
    }
}

/* slot: connections are spread over 64 source addresses from -B on */
static int start_connect(int slot)
{
    if (opt_unix)
        return start_connect_unix();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g_have_src) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        struct sockaddr_in src = g_src;
        src.sin_addr.s_addr = htonl(ntohl(g_src.sin_addr.s_addr) + slot % 64);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int sock_error(int fd)
{
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return errno;
    return err;
}

/* Write buf[*off .. len) to fd, non-blocking, moving *off on: 0 when all
 * of it went, 1 when the socket is full (the rest waits for EPOLLOUT), -1
 * on an error (errno says which).  Every mode's TCP and UNIX output. */
static int write_pending(int fd, const char *buf, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t w = write(fd, buf + *off, len - *off);
        if (w > 0) {
            *off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 1;
        if (w == 0)
            errno = EPIPE;
        return -1;
    }
    return 0;
}

/* -x: the PROXY header of connection fd (connected) into buf (at least
 * 108 bytes); returns its length, or -1 when getsockname fails. */
#define PROXY_HDR_MAX 108
static int proxy_header(int fd, char *buf)
{
    struct sockaddr_in src;
    socklen_t sl = sizeof src;
    if (getsockname(fd, (struct sockaddr *)&src, &sl) < 0 ||
        src.sin_family != AF_INET)
        return -1;
    if (opt_proxy == 1) {
        char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &src.sin_addr, a, sizeof a);
        inet_ntop(AF_INET, &g_addr.sin_addr, b, sizeof b);
        return snprintf(buf, PROXY_HDR_MAX, "PROXY TCP4 %s %s %u %u\r\n", a, b,
                        (unsigned)ntohs(src.sin_port),
                        (unsigned)ntohs(g_addr.sin_port));
    }
    static const char sig[12] = { '\r', '\n', '\r', '\n', '\0', '\r',
                                  '\n', 'Q', 'U', 'I', 'T', '\n' };
    unsigned char *u = (unsigned char *)buf;
    memcpy(u, sig, 12);
    u[12] = 0x21;                    /* version 2, command PROXY */
    u[13] = 0x11;                    /* AF_INET, STREAM */
    u[14] = 0;
    u[15] = 12;                      /* address block length, big-endian */
    memcpy(u + 16, &src.sin_addr, 4);          /* network order already */
    memcpy(u + 20, &g_addr.sin_addr, 4);
    memcpy(u + 24, &src.sin_port, 2);
    memcpy(u + 26, &g_addr.sin_port, 2);
    return 28;
}

/* every mode's epoll: id is a connection's index (echo, connect, ...) or
 * its address (the xt modes) */
static void ep_set(int fd, int op, uint32_t ev, uint64_t id)
{
    struct epoll_event e;
    e.events = ev;
    e.data.u64 = id;
    if (epoll_ctl(g_ep, op, fd, &e) < 0 && op != EPOLL_CTL_DEL)
        die("epoll_ctl");
}

/* epoll_wait on g_ep: the number of events, 0 when interrupted */
static int ep_wait(struct epoll_event *evs, int max, int timeout_ms)
{
    int k = epoll_wait(g_ep, evs, max, timeout_ms);
    if (k < 0) {
        if (errno == EINTR)
            return 0;
        die("epoll_wait");
    }
    return k;
}

#ifdef LOADGEN_TLS
/* ------------------------------------------------------------------ */
/* -T: TLS 1.3 clients (OpenSSL), non-blocking, in the modes' epoll      */

static SSL_CTX *g_tls;

static int tls_no_chain(X509_STORE_CTX *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 1;
}

static void tls_setup(void)
{
    g_tls = SSL_CTX_new(TLS_client_method());
    if (!g_tls || !SSL_CTX_set_min_proto_version(g_tls, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(g_tls, TLS1_3_VERSION)) {
        fprintf(stderr, "loadgen: cannot set up a TLS 1.3 client context\n");
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    /* the bench's own certificate: not checked, and its chain not even
     * built (with SSL_VERIFY_NONE alone OpenSSL still verifies it, one
     * ECDSA verification more per handshake, and ignores the result).
     * The server's signature over the handshake is checked all the same. */
    SSL_CTX_set_verify(g_tls, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(g_tls, tls_no_chain, NULL);
    /* a write that would block is retried with the same bytes, which may
     * have moved (echo's buffer is compacted) and may have grown */
    SSL_CTX_set_mode(g_tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* one read() takes what the socket has; SSL_has_pending drains it */
    SSL_CTX_set_read_ahead(g_tls, 1);
    /* a peer's close without close_notify is an end, not an error */
    SSL_CTX_set_options(g_tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* no resumption: every handshake is a full one */
    SSL_CTX_set_session_cache_mode(g_tls, SSL_SESS_CACHE_OFF);
}

static char tls_text[160];

/* what went wrong (after SSL_get_error e), in tls_text; clears the queue */
static const char *tls_why(int e)
{
    unsigned long q = ERR_get_error();
    if (q)
        ERR_error_string_n(q, tls_text, sizeof tls_text);
    else if (e == SSL_ERROR_SYSCALL)
        snprintf(tls_text, sizeof tls_text, "%s", errno ? strerror(errno) : "eof");
    else
        snprintf(tls_text, sizeof tls_text, "ssl_error_%d", e);
    ERR_clear_error();
    return tls_text;
}

static SSL *tls_new(int fd)
{
    SSL *ssl = SSL_new(g_tls);
    if (!ssl)
        return NULL;
    if (!SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, "localhost");
    return ssl;
}

/* The handshake, as far as it goes: 1 done, 0 waiting for *ev, -1 failed
 * (why in tls_text). */
static int tls_step(SSL *ssl, uint32_t *ev)
{
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *ev = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        ERR_clear_error();
        return 0;
    }
    tls_why(e);
    return -1;
}

/* write_pending through TLS: 0 all went, 1 would block, -1 an error
 * (errno: the socket's, else EPROTO with the reason in tls_text) */
static int tls_write_pending(SSL *ssl, const char *buf, size_t len, size_t *off)
{
    while (*off < len) {
        int w = SSL_write(ssl, buf + *off, (int)(len - *off));
        if (w > 0) {
            *off += (size_t)w;
            continue;
        }
        int e = SSL_get_error(ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return 1;
        }
        int se = errno;
        tls_why(e);
        errno = e == SSL_ERROR_SYSCALL && se ? se : EPROTO;
        return -1;
    }
    return 0;
}

/* read() through TLS: > 0 bytes, 0 the end (close_notify or EOF), -1 with
 * errno EAGAIN (nothing now) or an error (the socket's, else EPROTO, the
 * reason in tls_text) */
static ssize_t tls_read(SSL *ssl, char *buf, size_t len)
{
    int r = SSL_read(ssl, buf, (int)len);
    if (r > 0)
        return r;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    int se = errno;
    tls_why(e);
    errno = e == SSL_ERROR_SYSCALL && se ? se : EPROTO;
    return -1;
}
#endif

/* ------------------------------------------------------------------ */
/* server CPU time (-P PID): nanoseconds on CPU, from /proc/PID/schedstat,
 * else from the utime+stime ticks of /proc/PID/stat; -1 if unknown      */

static double pid_cpu_ns(int pid);

/* the sum over the processes pids[0 .. n - 1]; -1 if unknown */
static double pids_cpu_ns(const int *pids, int n)
{
    double sum = 0;
    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++) {
        double v = pid_cpu_ns(pids[i]);
        if (v < 0)
            return -1;
        sum += v;
    }
    return sum;
}

/* every -P process (a prefork server's workers) */
static double server_cpu_ns(void) { return pids_cpu_ns(opt_pids, opt_npids); }

static double pid_cpu_ns(int pid)
{
    char path[64];
    unsigned long long ns;
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        int ok = fscanf(f, "%llu", &ns) == 1;
        fclose(f);
        if (ok && ns > 0)
            return (double)ns;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut, st;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (ut + st) * 1e9 / sysconf(_SC_CLK_TCK);
}

static double own_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* every -A process (a balancer) */
static double aux_cpu_ns(void) { return pids_cpu_ns(opt_apids, opt_napids); }

static double cpu_at_start = -1;
static double cpu_used_ns = -1;
static double aux_at_start = -1;
static double aux_used_ns = -1;
static double own_at_start, own_used_s = -1;

static void cpu_window_start(void)
{
    cpu_at_start = server_cpu_ns();
    aux_at_start = aux_cpu_ns();
    own_at_start = own_cpu_s();
}

static void cpu_window_end(void)
{
    double now = server_cpu_ns();
    cpu_used_ns = cpu_at_start >= 0 && now >= 0 ? now - cpu_at_start : -1;
    now = aux_cpu_ns();
    aux_used_ns = aux_at_start >= 0 && now >= 0 ? now - aux_at_start : -1;
    own_used_s = own_cpu_s() - own_at_start;
}

/* " srv_cpu=F srv_ns_per_req=N lg_cpu=F" for the report line; lg_cpu is
 * the load generator's own CPU use (1.0: it was the bottleneck) */
static const char *cpu_report(double secs, uint64_t reqs)
{
    static char b[192];
    double lg = secs > 0 && own_used_s >= 0 ? own_used_s / secs : -1;
    int n;
    if (cpu_used_ns < 0 || secs <= 0)
        n = snprintf(b, sizeof b, " srv_cpu=-1 srv_ns_per_req=-1 lg_cpu=%.3f", lg);
    else
        n = snprintf(b, sizeof b, " srv_cpu=%.3f srv_ns_per_req=%.0f lg_cpu=%.3f",
                     cpu_used_ns / 1e9 / secs, reqs ? cpu_used_ns / reqs : -1.0,
                     lg);
    /* -A: the balancer's share, apart */
    if (opt_napids > 0 && n > 0 && n < (int)sizeof b) {
        if (aux_used_ns < 0 || secs <= 0)
            snprintf(b + n, sizeof b - n, " aux_cpu=-1 aux_ns_per_req=-1");
        else
            snprintf(b + n, sizeof b - n, " aux_cpu=%.3f aux_ns_per_req=%.0f",
                     aux_used_ns / 1e9 / secs,
                     reqs ? aux_used_ns / reqs : -1.0);
    }
    return b;
}

/* ------------------------------------------------------------------ */
/* echo mode                                                          */

enum { C_CONNECTING, C_OPEN, C_DEAD, C_HANDSHAKE };

struct conn {
    int fd;
    int state;
    int id;
    uint64_t sseq;        /* next sequence number to send */
    uint64_t rseq;        /* next sequence number expected back */
    uint64_t *stime;      /* send time per in-flight slot (depth ring) */
    char *obuf;           /* unsent bytes */
    int olen, ooff;
    int want_out;
    char *exp;            /* expected line being received (line rseq) */
    char *next;           /* the next line to send (line sseq) */
    int rpos;             /* bytes of it matched so far */
    char bad[96];         /* received bytes of a wrong line, for details */
    int badlen;
#ifdef LOADGEN_TLS
    SSL *ssl;             /* -T */
#endif
};

static struct conn *conns;
static uint64_t n_ok, n_lost, n_reord, n_corrupt, n_closed, n_connfail;
static int measuring, sending = 1;
static char details[256] = "-";

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (strcmp(details, "-") != 0)
        return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details, sizeof details, fmt, ap);
    va_end(ap);
    for (char *p = details; *p; p++)
        if (*p == ' ' || *p == '\n' || *p == '\t')
            *p = '_';
}

/* the reason of a TLS failure (EPROTO), for details */
static const char *conn_tls_text(void)
{
#ifdef LOADGEN_TLS
    return tls_text;
#else
    return "EPROTO";
#endif
}

static void conn_kill(struct conn *c)
{
    if (c->state == C_DEAD)
        return;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
#ifdef LOADGEN_TLS
    if (c->ssl) {
        SSL_free(c->ssl);   /* (conn_end sends close_notify first) */
        c->ssl = NULL;
    }
#endif
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
}

/* The end of a connection that did nothing wrong (a run is over): -T,
 * close_notify first (not waiting for the server's), as a client that
 * means to go says so; then conn_kill. */
static void conn_end(struct conn *c)
{
#ifdef LOADGEN_TLS
    if (c->ssl && c->state == C_OPEN) {
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
#endif
    conn_kill(c);
}

static void conn_queue(struct conn *c, uint64_t t)
{
    int L = opt_linelen;
    if (c->ooff == c->olen)
        c->ooff = c->olen = 0;
    if (c->olen + L > opt_depth * L) {
        /* compact */
        memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
    }
    memcpy(c->obuf + c->olen, c->next, L);
    next_line(c->next);
    c->stime[c->sseq % opt_depth] = t;
    c->sseq++;
    c->olen += L;
}

static void conn_flush(struct conn *c)
{
    size_t off = (size_t)c->ooff;
#ifdef LOADGEN_TLS
    int r = c->ssl ? tls_write_pending(c->ssl, c->obuf, (size_t)c->olen, &off)
                   : write_pending(c->fd, c->obuf, (size_t)c->olen, &off);
#else
    int r = write_pending(c->fd, c->obuf, (size_t)c->olen, &off);
#endif
    c->ooff = (int)off;
    if (r > 0) {
        if (!c->want_out) {
            ep_set(c->fd, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT, c->id);
            c->want_out = 1;
        }
        return;
    }
    if (r < 0) {
        if (measuring || sending)
            n_closed++;
        note("conn_%d:write:%s", c->id, errno == EPROTO ? conn_tls_text() : strerror(errno));
        conn_kill(c);
        return;
    }
    c->ooff = c->olen = 0;
    if (c->want_out) {
        ep_set(c->fd, EPOLL_CTL_MOD, EPOLLIN, c->id);
        c->want_out = 0;
    }
}

static void conn_bad_line(struct conn *c, const char *data, int avail)
{
    /* The wrong line: what matched so far plus what is at hand. */
    int n = c->rpos;
    if (n > (int)sizeof c->bad - 1)
        n = sizeof c->bad - 1;
    memcpy(c->bad, c->exp, n);
    int m = avail;
    if (n + m > (int)sizeof c->bad - 1)
        m = sizeof c->bad - 1 - n;
    memcpy(c->bad + n, data, m);
    c->badlen = n + m;
    int oc;
    uint64_t os;
    if (parse_line(c->bad, c->badlen, &oc, &os) && oc == c->id) {
        if (os > c->rseq) {
            n_lost++;
            note("conn_%d:expected_seq_%llu_got_%llu(lost_or_reordered)", c->id,
                 (unsigned long long)c->rseq, (unsigned long long)os);
        } else {
            n_reord++;
            note("conn_%d:expected_seq_%llu_got_%llu(reordered_or_duplicated)",
                 c->id, (unsigned long long)c->rseq, (unsigned long long)os);
        }
    } else if (parse_line(c->bad, c->badlen, &oc, &os)) {
        n_reord++;
        note("conn_%d:got_line_of_conn_%d", c->id, oc);
    } else {
        n_corrupt++;
        note("conn_%d:corrupt_reply_at_seq_%llu", c->id,
             (unsigned long long)c->rseq);
    }
    conn_kill(c);
}

/* Process received bytes; returns number of completed lines. */
static int conn_input(struct conn *c, const char *data, int len, uint64_t t)
{
    int L = opt_linelen;
    int done = 0;
    while (len > 0) {
        if (c->rseq >= c->sseq) {
            /* a reply to nothing we sent */
            n_corrupt++;
            note("conn_%d:unsolicited_bytes_after_seq_%llu", c->id,
                 (unsigned long long)c->rseq);
            conn_kill(c);
            return done;
        }
        int n = L - c->rpos;
        if (n > len)
            n = len;
        if (memcmp(c->exp + c->rpos, data, n) != 0) {
            /* find the first differing byte, then classify */
            conn_bad_line(c, data, len);
            return done;
        }
        c->rpos += n;
        data += n;
        len -= n;
        if (c->rpos == L) {
            c->rpos = 0;
            next_line(c->exp);
            if (measuring) {
                hist_add(t - c->stime[c->rseq % opt_depth]);
                n_ok++;
            }
            c->rseq++;
            done++;
            if (sending)
                conn_queue(c, t);
        }
    }
    return done;
}

#ifdef LOADGEN_TLS
/* -T: the handshake of conns c, as far as it goes: 1 done (C_OPEN), 0
 * waiting (epoll told what for), -1 failed (killed, noted) */
static int conn_handshake(struct conn *c)
{
    uint32_t ev = 0;
    int h = tls_step(c->ssl, &ev);
    if (h > 0) {
        c->state = C_OPEN;
        ep_set(c->fd, EPOLL_CTL_MOD, EPOLLIN, c->id);
    } else if (h == 0) {
        ep_set(c->fd, EPOLL_CTL_MOD, ev, c->id);
    } else {
        note("conn_%d:tls_handshake:%s", c->id, tls_text);
        conn_kill(c);
    }
    return h;
}
#endif

static int open_all(int first, int n, double deadline)
{
    /* connect with at most 128 in flight */
    int next = first, open = 0, inflight = 0, failed = 0;
    n += first;
    struct epoll_event evs[256];
    while ((open + failed < n - first) && now_s() < deadline) {
        while (next < n && inflight < 128) {
            struct conn *c = &conns[next];
            c->fd = start_connect(c->id);
            if (c->fd < 0) {
                note("connect:%s", strerror(errno));
                c->state = C_DEAD;
                failed++;
                next++;
                continue;
            }
            c->state = C_CONNECTING;
            ep_set(c->fd, EPOLL_CTL_ADD, EPOLLOUT, c->id);
            inflight++;
            next++;
        }
        int k = ep_wait(evs, 256, 50);
        for (int i = 0; i < k; i++) {
            struct conn *c = &conns[evs[i].data.u64];
#ifdef LOADGEN_TLS
            if (c->state == C_HANDSHAKE) {
                int h = conn_handshake(c);
                if (h) {
                    inflight--;
                    if (h > 0)
                        open++;
                    else
                        failed++;
                }
                continue;
            }
#endif
            if (c->state != C_CONNECTING)
                continue;
            int err = sock_error(c->fd);
            if (err) {
                inflight--;
                errno = err;
                note("connect:%s", strerror(err));
                conn_kill(c);
                failed++;
                continue;
            }
#ifdef LOADGEN_TLS
            if (opt_tls) {
                /* connected: the handshake (still in flight meanwhile) */
                c->ssl = tls_new(c->fd);
                if (!c->ssl) {
                    inflight--;
                    note("conn_%d:SSL_new:%s", c->id, tls_why(SSL_ERROR_SSL));
                    conn_kill(c);
                    failed++;
                    continue;
                }
                c->state = C_HANDSHAKE;
                int h = conn_handshake(c);
                if (h) {
                    inflight--;
                    if (h > 0)
                        open++;
                    else
                        failed++;
                }
                continue;
            }
#endif
            inflight--;
            c->state = C_OPEN;
            ep_set(c->fd, EPOLL_CTL_MOD, EPOLLIN, c->id);
            open++;
        }
    }
    if (opt_verbose)
        fprintf(stderr, "loadgen: %d/%d connected, %d failed\n",
                open, n - first, failed);
    /* anything still connecting (or in its handshake) is given up */
    for (int i = first; i < n; i++)
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE) {
            conn_kill(&conns[i]);
            failed++;
        }
    n_connfail += failed;
    return open;
}

static void alloc_conns(int n)
{
    conns = calloc(n, sizeof *conns);
    if (!conns)
        die("calloc");
    for (int i = 0; i < n; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].state = C_DEAD;
        conns[i].stime = calloc(opt_depth, sizeof(uint64_t));
        /* (-x: the PROXY header goes before the first wave) */
        conns[i].obuf = malloc((size_t)opt_depth * opt_linelen + PROXY_HDR_MAX);
        conns[i].exp = malloc(opt_linelen);
        conns[i].next = malloc(opt_linelen);
        if (!conns[i].stime || !conns[i].obuf || !conns[i].exp || !conns[i].next)
            die("malloc");
        init_line(conns[i].exp);
        make_line(conns[i].exp, i, 0);
        memcpy(conns[i].next, conns[i].exp, opt_linelen);
    }
}

static char rbuf[1 << 16];

#ifdef LOADGEN_TLS
/* pump for -T: the same, through SSL_read (drained while OpenSSL holds
 * more than it has given us: epoll cannot see that) */
static int pump_tls(int timeout_ms)
{
    static struct epoll_event evs[1024];
    int k = ep_wait(evs, 1024, timeout_ms);
    uint64_t t = now_ns();
    int lines = 0;
    for (int i = 0; i < k; i++) {
        struct conn *c = &conns[evs[i].data.u64];
        if (c->state != C_OPEN)
            continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            for (;;) {
                ssize_t r = tls_read(c->ssl, rbuf, sizeof rbuf);
                if (r > 0) {
                    lines += conn_input(c, rbuf, (int)r, t);
                    if (c->state != C_OPEN || !SSL_has_pending(c->ssl))
                        break;
                    continue;
                }
                if (r < 0 && errno == EAGAIN)
                    break;
                n_closed++;
                note("conn_%d:server_closed(%s)_after_%llu_replies", c->id,
                     r == 0 ? "eof" : errno == EPROTO ? tls_text : strerror(errno),
                     (unsigned long long)c->rseq);
                conn_kill(c);
                break;
            }
            if (c->state != C_OPEN)
                continue;
        }
        if (c->ooff < c->olen)
            conn_flush(c);
    }
    return lines;
}
#endif

/* One pass of the event loop for echo-like traffic. */
static int pump(int timeout_ms)
{
    static struct epoll_event evs[1024];
#ifdef LOADGEN_TLS
    if (opt_tls)
        return pump_tls(timeout_ms);
#endif
    int k = ep_wait(evs, 1024, timeout_ms);
    uint64_t t = now_ns();
    int lines = 0;
    for (int i = 0; i < k; i++) {
        struct conn *c = &conns[evs[i].data.u64];
        if (c->state != C_OPEN)
            continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            ssize_t r = read(c->fd, rbuf, sizeof rbuf);
            if (r > 0) {
                lines += conn_input(c, rbuf, (int)r, t);
                if (c->state != C_OPEN)
                    continue;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                n_closed++;
                note("conn_%d:server_closed(%s)_after_%llu_replies", c->id,
                     r == 0 ? "eof" : strerror(errno),
                     (unsigned long long)c->rseq);
                conn_kill(c);
                continue;
            }
        }
        if (c->ooff < c->olen)
            conn_flush(c);
    }
    return lines;
}

static void report_echo(const char *mode, double secs, int n, int open)
{
    const char *status = "OK";
    if (n_corrupt)
        status = "CORRUPT";
    else if (n_lost || n_reord)
        status = "LOST/REORDERED";
    else if (n_closed)
        status = "CLOSED";
    else if (open < n || n_connfail)
        status = "CONNECT_FAILED";
    double rps = secs > 0 ? n_ok / secs : 0;
    printf("mode=%s status=%s c=%d d=%d secs=%.3f reqs=%llu rps=%.1f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f lost=%llu "
           "reordered=%llu corrupt=%llu closed=%llu connect_failed=%llu "
           "open=%d%s details=%s\n",
           mode, status, n, opt_depth, secs, (unsigned long long)n_ok, rps,
           hist_pct(0.50), hist_pct(0.99), hist_pct(0.999), hist_pct(1.0),
           (unsigned long long)n_lost, (unsigned long long)n_reord,
           (unsigned long long)n_corrupt, (unsigned long long)n_closed,
           (unsigned long long)n_connfail, open, cpu_report(secs, n_ok),
           details);
    fflush(stdout);
}

static int run_echo(void)
{
    int n = opt_conns;
    raise_nofile(n + 64);
    alloc_conns(n);
    double t0 = now_s();
    int open = open_all(0, n, t0 + opt_ctimeout);
    if (open == 0) {
        printf("mode=echo status=CONNECT_FAILED c=%d d=%d secs=0 reqs=0 rps=0 "
               "p50_us=-1 p99_us=-1 p999_us=-1 max_us=-1 lost=0 reordered=0 "
               "corrupt=0 closed=0 connect_failed=%llu open=0 details=%s\n",
               n, opt_depth, (unsigned long long)n_connfail, details);
        return 0;
    }
    /* first wave: DEPTH lines per connection */
    uint64_t t = now_ns();
    for (int i = 0; i < n; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_OPEN)
            continue;
        if (opt_proxy) {
            /* the header, then the first DEPTH lines: one write */
            int h = proxy_header(c->fd, c->obuf);
            if (h < 0) {
                note("conn_%d:getsockname:%s", c->id, strerror(errno));
                n_connfail++;
                conn_kill(c);
                open--;
                continue;
            }
            c->ooff = 0;
            c->olen = h;
        }
        for (int j = 0; j < opt_depth; j++)
            conn_queue(c, t);
        conn_flush(c);
    }
    double start = now_s();
    double mstart = start + opt_warm;
    double mend = mstart + opt_secs;
    double tnow;
    while ((tnow = now_s()) < mstart)
        pump(10);
    measuring = 1;
    n_ok = 0;
    memset(hist, 0, sizeof hist);
    hist_n = 0;
    double real_start = now_s();
    cpu_window_start();
    while ((tnow = now_s()) < mend)
        pump(10);
    measuring = 0;
    sending = 0;
    double real_secs = now_s() - real_start;
    cpu_window_end();
    uint64_t measured = n_ok;
    /* drain: wait for everything in flight, GRACE seconds of silence at
     * most, 10 * GRACE in all */
    double last = now_s(), dl = last + 10 * opt_grace;
    for (;;) {
        uint64_t pending = 0;
        for (int i = 0; i < n; i++)
            if (conns[i].state == C_OPEN)
                pending += conns[i].sseq - conns[i].rseq;
        if (!pending)
            break;
        double tn = now_s();
        if (tn - last > opt_grace || tn > dl) {
            /* these never came back */
            int stalled_conns = 0;
            for (int i = 0; i < n; i++)
                if (conns[i].state == C_OPEN &&
                    conns[i].sseq != conns[i].rseq)
                    stalled_conns++;
            n_lost += pending;
            note("%llu_replies_never_came_back_on_%d_connections(%.1fs_"
                 "without_progress)", (unsigned long long)pending,
                 stalled_conns, opt_grace);
            break;
        }
        if (pump(10) > 0)
            last = now_s();
    }
    n_ok = measured;
    report_echo("echo", real_secs, n, open);
    for (int i = 0; i < n; i++)
        conn_end(&conns[i]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* connect mode                                                       */

struct slot {
    int fd;
    int state; /* 0 idle, 1 connecting, 2 waiting reply; -T: 3 handshake,
                  4 sending the line */
    int rpos;
    uint64_t t0;
    uint64_t seq;
#ifdef LOADGEN_TLS
    SSL *ssl;
#endif
};

/* the end of a slot's cycle (or of its failure) */
static inline void slot_close(struct slot *x)
{
#ifdef LOADGEN_TLS
    if (x->ssl) {
        SSL_free(x->ssl);
        x->ssl = NULL;
    }
#endif
    close(x->fd);
    x->state = 0;
}

#ifdef LOADGEN_TLS
/* -T, a slot in its handshake (3) or sending its line (4): as far as it
 * goes.  0 waiting or done (now 2: waiting for the reply), -1 failed (the
 * caller counts it and closes).  The line is made again in out for a
 * retry: the same bytes at the same address. */
static int slot_tls_step(struct slot *x, int id, char *out)
{
    uint32_t ev = 0;
    if (x->state == 3) {
        int h = tls_step(x->ssl, &ev);
        if (h < 0) {
            note("tls_handshake:%s", tls_text);
            return -1;
        }
        if (h == 0) {
            ep_set(x->fd, EPOLL_CTL_MOD, ev, id);
            return 0;
        }
        x->state = 4;
    }
    init_line(out);
    make_line(out, id, x->seq);
    int w = SSL_write(x->ssl, out, opt_linelen);
    if (w == opt_linelen) {
        x->state = 2;
        ep_set(x->fd, EPOLL_CTL_MOD, EPOLLIN, id);
        return 0;
    }
    int e = SSL_get_error(x->ssl, w);
    if (w <= 0 && (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)) {
        ERR_clear_error();
        ep_set(x->fd, EPOLL_CTL_MOD, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT, id);
        return 0;
    }
    note("tls_write:%s", w > 0 ? "short" : tls_why(e));
    return -1;
}
#endif

static int run_connect(void)
{
    int n = opt_conns;
    raise_nofile(n + 64);
    struct slot *s = calloc(n, sizeof *s);
    /* (-x: the PROXY header, then the line, in one write) */
    char *out = malloc(PROXY_HDR_MAX + opt_linelen), *exp = malloc(opt_linelen);
    if (!s || !out || !exp)
        die("calloc");
    uint64_t seq = 0, n_done = 0, n_fail = 0, n_bad = 0, n_eof = 0;
    double start = now_s(), mstart = start + opt_warm,
           mend = mstart + opt_secs;
    int meas = 0;
    double real_start = 0;
    struct epoll_event evs[256];
    for (;;) {
        double tn = now_s();
        if (!meas && tn >= mstart) {
            meas = 1;
            n_done = 0;
            memset(hist, 0, sizeof hist);
            hist_n = 0;
            real_start = tn;
            cpu_window_start();
        }
        int stopping = tn >= mend;
        if (stopping && meas == 1) {
            cpu_window_end();
            meas = 2;
        }
        int busy = 0;
        for (int i = 0; i < n; i++) {
            if (s[i].state == 0 && !stopping) {
                s[i].fd = start_connect(i);
                if (s[i].fd < 0) {
                    n_fail++;
                    note("connect:%s", strerror(errno));
                    if (errno == EMFILE || errno == ENFILE)
                        die("socket");
                    continue;
                }
                s[i].state = 1;
                s[i].t0 = now_ns();
                s[i].seq = seq++;
                s[i].rpos = 0;
                ep_set(s[i].fd, EPOLL_CTL_ADD, EPOLLOUT, i);
            }
            if (s[i].state)
                busy++;
        }
        if (stopping && !busy)
            break;
        if (stopping && tn > mend + 10 * opt_grace) {
            n_fail += busy;
            note("%d_connections_got_no_reply_in_%.1fs", busy,
                 10 * opt_grace);
            for (int i = 0; i < n; i++)
                if (s[i].state)
                    slot_close(&s[i]);
            break;
        }
        int k = ep_wait(evs, 256, 10);
        uint64_t t = now_ns();
        for (int j = 0; j < k; j++) {
            struct slot *x = &s[evs[j].data.u64];
            int id = (int)evs[j].data.u64;
            if (x->state == 1) {
                int err = sock_error(x->fd);
                if (err) {
                    n_fail++;
                    note("connect:%s", strerror(err));
                    slot_close(x);
                    continue;
                }
#ifdef LOADGEN_TLS
                if (opt_tls) {
                    /* connected: the handshake, then the line (below) */
                    x->ssl = tls_new(x->fd);
                    if (!x->ssl) {
                        n_fail++;
                        note("SSL_new:%s", tls_why(SSL_ERROR_SSL));
                        slot_close(x);
                        continue;
                    }
                    /* all of the line or nothing: a retry makes it again */
                    SSL_clear_mode(x->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
                    x->state = 3;
                    goto tls_step;
                }
#endif
                int h = 0;
                if (opt_proxy && (h = proxy_header(x->fd, out)) < 0) {
                    n_fail++;
                    note("getsockname:%s", strerror(errno));
                    slot_close(x);
                    continue;
                }
                char *line = out + h;
                init_line(line);
                make_line(line, id, x->seq);
                ssize_t w = write(x->fd, out, h + opt_linelen);
                if (w != h + opt_linelen) {
                    n_fail++;
                    note("write:%s", w < 0 ? strerror(errno) : "short");
                    slot_close(x);
                    continue;
                }
                x->state = 2;
                ep_set(x->fd, EPOLL_CTL_MOD, EPOLLIN, id);
            } else if (x->state == 2) {
                char b[512];
#ifdef LOADGEN_TLS
            tls_read_more:;
                ssize_t r = x->ssl ? tls_read(x->ssl, b, sizeof b)
                                   : read(x->fd, b, sizeof b);
#else
                ssize_t r = read(x->fd, b, sizeof b);
#endif
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (r <= 0) {
                    n_eof++;
                    note("server_closed_before_reply(%s)",
                         r == 0 ? "eof" : errno == EPROTO ? conn_tls_text() : strerror(errno));
                    slot_close(x);
                    continue;
                }
                init_line(exp);
                make_line(exp, id, x->seq);
                if (x->rpos + r > opt_linelen ||
                    memcmp(exp + x->rpos, b, r) != 0) {
                    n_bad++;
                    note("wrong_reply_on_slot_%d", id);
                    slot_close(x);
                    continue;
                }
                x->rpos += r;
                if (x->rpos == opt_linelen) {
#ifdef LOADGEN_TLS
                    if (x->ssl) {
                        /* close_notify, not waiting for the server's */
                        SSL_shutdown(x->ssl);
                        ERR_clear_error();
                    }
#endif
                    slot_close(x);
                    if (meas == 1 && !stopping) {
                        n_done++;
                        hist_add(t - x->t0);
                    }
                }
#ifdef LOADGEN_TLS
                else if (x->ssl)
                    goto tls_read_more;   /* until WANT_READ */
#endif
            }
#ifdef LOADGEN_TLS
            else if (x->state == 3 || x->state == 4) {
            tls_step:
                if (slot_tls_step(x, id, out) < 0) {
                    n_fail++;
                    slot_close(x);
                }
            }
#endif
        }
    }
    double secs = (meas ? (mend < now_s() ? mend : now_s()) - real_start : 0);
    const char *status = n_bad ? "LOST/REORDERED"
                       : n_eof ? "CLOSED"
                       : n_fail ? "CONNECT_FAILED" : "OK";
    printf("mode=connect status=%s c=%d secs=%.3f conns=%llu cps=%.1f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "connect_failed=%llu wrong=%llu closed=%llu%s details=%s\n",
           status, n, secs, (unsigned long long)n_done,
           secs > 0 ? n_done / secs : 0, hist_pct(0.5), hist_pct(0.99),
           hist_pct(0.999), hist_pct(1.0), (unsigned long long)n_fail,
           (unsigned long long)n_bad, (unsigned long long)n_eof,
           cpu_report(secs, n_done), details);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------ */
/* idle mode                                                          */

static long read_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* RSS once it holds still: two equal readings 100 ms apart (2 s max). */
static long settled_rss(int pid)
{
    long prev = read_rss_kb(pid);
    for (int i = 0; i < 20; i++) {
        usleep(100000);
        long cur = read_rss_kb(pid);
        if (cur == prev)
            return cur;
        prev = cur;
    }
    return prev;
}

/* Prove `count` connections starting at conns[first] live: one line each,
 * reply checked.  Returns how many answered before the deadline. */
static int prove(int first, int count, double deadline)
{
    uint64_t t = now_ns();
    int want = 0;
    for (int i = first; i < first + count; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_OPEN)
            continue;
        conn_queue(c, t);
        conn_flush(c);
        if (c->state == C_OPEN)
            want++;
    }
    int got = 0;
    while (got < want && now_s() < deadline) {
        got += pump(20);
        /* dead connections no longer count */
        int alive_pending = 0;
        for (int i = first; i < first + count; i++)
            if (conns[i].state == C_OPEN && conns[i].sseq != conns[i].rseq)
                alive_pending++;
        if (!alive_pending)
            break;
    }
    return got;
}

static int run_idle(void)
{
    int n = opt_conns;
    if (opt_pid <= 0) {
        fprintf(stderr, "loadgen: idle needs -P SERVER_PID\n");
        return 2;
    }
    raise_nofile(n + 64);
    opt_depth = 1;
    int warm = 64;
    alloc_conns(n + warm);
    double t0 = now_s(), deadline = t0 + opt_secs;
    sending = 0; /* no follow-up request after a reply */
    measuring = 0;

    /* warm-up: a few connections opened, used and closed, so that the
     * server's one-time allocations are not counted */
    int wopen = open_all(n, warm, deadline);
    int wgot = prove(n, warm, deadline);
    for (int i = n; i < n + warm; i++)
        conn_end(&conns[i]);
    usleep(200000);
    if (opt_verbose)
        fprintf(stderr, "loadgen: idle warm-up %d/%d proven\n", wgot, wopen);

    long before = settled_rss(opt_pid);

    /* open in batches of 500, proving each batch */
    int proven = 0, opened = 0;
    for (int b = 0; b < n && now_s() < deadline; b += 500) {
        int cnt = n - b < 500 ? n - b : 500;
        opened += open_all(b, cnt, deadline);
        proven += prove(b, cnt, deadline);
        if (opt_verbose)
            fprintf(stderr, "loadgen: idle %d opened, %d proven, %.1fs\n",
                    opened, proven, now_s() - t0);
    }
    double took = now_s() - t0;
    usleep(300000);
    long after = settled_rss(opt_pid);
    /* still alive? count connections the server closed meanwhile */
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (conns[i].state == C_OPEN) {
            char b;
            ssize_t r = recv(conns[i].fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                alive++;
        }
    double per = proven > 0 && before >= 0 && after >= 0
                     ? (after - before) * 1024.0 / proven : -1;
    const char *status = proven == n && alive == n ? "OK"
                       : n_lost || n_reord || n_corrupt ? "LOST/REORDERED"
                       : proven < n && now_s() >= deadline ? "TIMEOUT"
                       : "INCOMPLETE";
    printf("mode=idle status=%s n=%d opened=%d proven=%d alive=%d "
           "rss_before_kb=%ld rss_after_kb=%ld bytes_per_conn=%.1f "
           "secs=%.3f connect_failed=%llu closed=%llu details=%s\n",
           status, n, opened, proven, alive, before, after, per, took,
           (unsigned long long)n_connfail, (unsigned long long)n_closed,
           details);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        conn_end(&conns[i]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* bcast mode                                                         */

static int opt_rounds = 5;
static long bc_size = 1024;
static int bc_n;            /* receivers: conns[0 .. n-1]; control: conns[n] */
static char *bc_msg;        /* the message of the current round */
static int bc_round;        /* the round being received; 0: none */
static int bc_done;         /* receivers holding the whole message */
static char ctl_in[256];    /* control: bytes received, not yet a line */
static int ctl_len;
static int ctl_dead;
static uint64_t n_badreply;

/* Field KEY ("VmHWM:", "voluntary_ctxt_switches:") of /proc/PID/status,
 * or -1. */
static long status_field(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) {
            v = strtol(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* context switches: each time the server went to sleep (voluntary) or was
 * preempted */
static long server_switches(void)
{
    long v = status_field(opt_pid, "voluntary_ctxt_switches:");
    long nv = status_field(opt_pid, "nonvoluntary_ctxt_switches:");
    return v < 0 || nv < 0 ? -1 : v + nv;
}

/* Reset the server's VmHWM to its VmRSS; 1 when allowed. */
static int reset_hwm(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", opt_pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

/* the message of round R, as the servers build it */
static void bc_make(char *buf, int round)
{
    snprintf(buf, 12, "%010d ", round);
    for (long i = 11; i < bc_size - 1; i++)
        buf[i] = 'a' + (i - 11) % 26;
    buf[bc_size - 1] = '\n';
}

static void alloc_bcast(int n)
{
    conns = calloc(n, sizeof *conns);
    bc_msg = malloc(bc_size);
    if (!conns || !bc_msg)
        die("calloc");
    for (int i = 0; i < n; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].state = C_DEAD;
    }
}

/* Receiver bytes: conn->rpos counts the bytes of the current message,
 * conn->rseq is the last round received whole. */
static void bc_input(struct conn *c, const char *data, long len)
{
    if (!bc_round || c->rseq == (uint64_t)bc_round) {
        n_corrupt++;
        note("conn_%d:%ld_unexpected_bytes_%s_round_%d", c->id, len,
             bc_round ? "after_the_message_of" : "outside_a", bc_round);
        conn_kill(c);
        return;
    }
    long want = bc_size - c->rpos;
    if (len > want || memcmp(bc_msg + c->rpos, data, len) != 0) {
        long off = 0;
        while (off < len && off < want && bc_msg[c->rpos + off] == data[off])
            off++;
        n_corrupt++;
        note("conn_%d:round_%d:wrong_byte_at_offset_%ld_of_%ld", c->id,
             bc_round, c->rpos + off, bc_size);
        conn_kill(c);
        return;
    }
    c->rpos += len;
    if (c->rpos == bc_size) {
        c->rpos = 0;
        c->rseq = bc_round;
        bc_done++;
    }
}

/* One pass of the event loop; returns the bytes received. */
static long bc_pump(int timeout_ms)
{
    static struct epoll_event evs[1024];
    int k = ep_wait(evs, 1024, timeout_ms);
    long bytes = 0;
    for (int i = 0; i < k; i++) {
        struct conn *c = &conns[evs[i].data.u64];
        if (c->state != C_OPEN)
            continue;
        if (c->id == bc_n) {
            /* the control connection */
            ssize_t r = read(c->fd, ctl_in + ctl_len,
                             sizeof ctl_in - 1 - ctl_len);
            if (r > 0) {
                ctl_len += r;
                if (ctl_len == (int)sizeof ctl_in - 1 &&
                    !memchr(ctl_in, '\n', ctl_len)) {
                    n_badreply++;
                    note("control:reply_line_too_long");
                    ctl_dead = 1;
                    conn_kill(c);
                }
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                note("control:server_closed(%s)",
                     r == 0 ? "eof" : strerror(errno));
                ctl_dead = 1;
                conn_kill(c);
            }
            continue;
        }
        ssize_t r = read(c->fd, rbuf, sizeof rbuf);
        if (r > 0) {
            bytes += r;
            bc_input(c, rbuf, r);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            n_closed++;
            note("conn_%d:server_closed(%s)_in_round_%d", c->id,
                 r == 0 ? "eof" : strerror(errno), bc_round);
            conn_kill(c);
        }
    }
    return bytes;
}

/* A line from the control connection (without "\n") into out, by the
 * deadline; 0 if none came. */
static int ctl_line(char *out, int outlen, double deadline)
{
    for (;;) {
        char *nl = memchr(ctl_in, '\n', ctl_len);
        if (nl) {
            int l = nl - ctl_in;
            int m = l < outlen - 1 ? l : outlen - 1;
            memcpy(out, ctl_in, m);
            out[m] = 0;
            if (m && out[m - 1] == '\r')
                out[m - 1] = 0;
            memmove(ctl_in, nl + 1, ctl_len - l - 1);
            ctl_len -= l + 1;
            return 1;
        }
        if (ctl_dead || now_s() >= deadline)
            return 0;
        bc_pump(5);
    }
}

static int ctl_send(const char *s)
{
    struct conn *c = &conns[bc_n];
    if (c->state != C_OPEN)
        return 0;
    size_t len = strlen(s), off = 0;
    double dl = now_s() + 5;
    int r;
    while ((r = write_pending(c->fd, s, len, &off)) > 0 && now_s() < dl)
        usleep(1000);
    if (r == 0)
        return 1;
    note("control:write:%s", r < 0 ? strerror(errno) : "timeout");
    ctl_dead = 1;
    conn_kill(c);
    return 0;
}

/* The server's count of open connections, -1 if it did not answer by the
 * deadline, -2 if the answer was not a number. */
static long ctl_count(double deadline)
{
    char line[256], *end;
    if (!ctl_send("COUNT\n") || !ctl_line(line, sizeof line, deadline))
        return -1;
    long v = strtol(line, &end, 10);
    if (end == line || *end) {
        n_badreply++;
        note("control:COUNT_answered_'%.40s'", line);
        return -2;
    }
    return v;
}

/* Ask COUNT until it is at least `want` (or the deadline); the last answer. */
static long ctl_wait_count(long want, double deadline)
{
    long v;
    for (;;) {
        v = ctl_count(deadline);
        if (v < 0 || v >= want || now_s() >= deadline)
            return v;
        double until = now_s() + 0.02;
        while (now_s() < until)
            bc_pump(5);
    }
}

static double median(double *v, int n)
{
    if (n <= 0)
        return -1;
    double *s = malloc(n * sizeof *s);
    if (!s)
        die("malloc");
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

static int alive_receivers(void)
{
    int a = 0;
    for (int i = 0; i < bc_n; i++)
        if (conns[i].state == C_OPEN)
            a++;
    return a;
}

/* "a,b,c" of the first n values (%.Nf), for the report line */
static void join_values(char *out, size_t outlen, const double *v, int n,
                        int decimals)
{
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n && o + 24 < outlen; i++)
        o += snprintf(out + o, outlen - o, "%s%.*f", i ? "," : "", decimals,
                      v[i]);
    if (!n)
        snprintf(out, outlen, "-");
}

static int run_bcast(void)
{
    int n = opt_conns;
    if (opt_pid <= 0) {
        fprintf(stderr, "loadgen: bcast needs -P SERVER_PID\n");
        return 2;
    }
    raise_nofile(n + 64);
    bc_n = n;
    alloc_bcast(n + 1);
    sending = 0;
    measuring = 0;
    double t0 = now_s(), cdl = t0 + opt_ctimeout;
    const char *status = NULL;
    int opened = 0, rounds_done = 0, hwm_reset = 0;
    long count = -1, count_after_idle = -1;
    long rss_before = -1, rss_after = -1, hwm_before = -1, hwm_max = -1;
    long sw0 = -1, sw1 = -1;
    double idle_pct = -1, idle_wall = 0, connect_secs = -1;
    double *ms = calloc(opt_rounds, sizeof(double));
    double *ok_ms = calloc(opt_rounds, sizeof(double));
    double *srv_ms = calloc(opt_rounds, sizeof(double));
    double *lg = calloc(opt_rounds, sizeof(double));
    if (!ms || !ok_ms || !srv_ms || !lg)
        die("calloc");
    uint64_t n_lost_rx = 0, n_wrong_ok = 0;

    /* the control connection, then the receivers, 500 at a time, each
     * batch counted in by the server before the next */
    if (open_all(n, 1, cdl) != 1) {
        status = "CONNECT_FAILED";
        note("control_connection_failed");
        goto report;
    }
    count = ctl_wait_count(1, cdl);
    for (int b = 0; b < n && count >= 0 && now_s() < cdl; b += 500) {
        int cnt = n - b < 500 ? n - b : 500;
        opened += open_all(b, cnt, cdl);
        count = ctl_wait_count(opened + 1, cdl);
        if (opt_verbose)
            fprintf(stderr, "loadgen: bcast %d opened, server counts %ld, "
                    "%.1fs\n", opened, count, now_s() - t0);
    }
    connect_secs = now_s() - t0;
    if (count != n + 1) {
        status = count == -2 ? "BAD_REPLY" : ctl_dead ? "CLOSED"
               : n_connfail ? "CONNECT_FAILED" : "TIMEOUT";
        note("server_counts_%ld_connections_of_%d+1_after_%.1fs", count,
             n, now_s() - t0);
        goto report;
    }

    /* idle: nothing sent for IDLE_SECS */
    {
        double until = now_s() + 0.5;   /* let the accepts settle */
        while (now_s() < until)
            bc_pump(50);
        double c0 = server_cpu_ns();
        sw0 = server_switches();
        double w0 = now_s(), w1 = w0 + opt_secs;
        while (now_s() < w1)
            bc_pump(100);
        double c1 = server_cpu_ns();
        sw1 = server_switches();
        idle_wall = now_s() - w0;
        if (c0 >= 0 && c1 >= 0)
            idle_pct = (c1 - c0) / 1e9 / idle_wall * 100;
        count_after_idle = ctl_count(now_s() + 5);
        if (count_after_idle != n + 1 || n_closed || n_corrupt) {
            status = n_corrupt ? "CORRUPT" : n_closed || ctl_dead ? "CLOSED"
                   : count_after_idle == -2 ? "BAD_REPLY" : "TIMEOUT";
            note("after_idle_the_server_counts_%ld_connections",
                 count_after_idle);
            goto report;
        }
    }

    /* rounds */
    hwm_reset = reset_hwm();
    rss_before = settled_rss(opt_pid);
    hwm_before = status_field(opt_pid, "VmHWM:");
    for (int r = 1; r <= opt_rounds; r++) {
        int want = alive_receivers();
        char cmd[64], line[256];
        bc_make(bc_msg, r);
        bc_round = r;
        bc_done = 0;
        double sc0 = server_cpu_ns(), own0 = own_cpu_s();
        snprintf(cmd, sizeof cmd, "B %d %ld\n", r, bc_size);
        uint64_t ts = now_ns();
        if (!ctl_send(cmd)) {
            status = "CLOSED";
            break;
        }
        double start = now_s(), last = start;
        uint64_t t_all = 0, t_ok = 0;
        long sent = -1;
        while (!t_all || !t_ok) {
            long got = bc_pump(10);
            double tn = now_s();
            if (got > 0)
                last = tn;
            if (!t_all && bc_done >= alive_receivers())
                t_all = now_ns();
            if (!t_ok && memchr(ctl_in, '\n', ctl_len)) {
                t_ok = now_ns();
                last = tn;
                ctl_line(line, sizeof line, tn);
                char *end;
                if (strncmp(line, "OK", 2) != 0) {
                    n_badreply++;
                    note("control:round_%d:B_answered_'%.40s'", r, line);
                } else if (line[2] == ' ') {
                    sent = strtol(line + 3, &end, 10);
                    if (*end || sent != want) {
                        n_wrong_ok++;
                        note("control:round_%d:server_queued_it_for_%ld_of_%d",
                             r, sent, want);
                    }
                }
            }
            if (ctl_dead && !t_ok)
                break;
            if (tn - last > opt_grace || tn - start > 10 * opt_grace)
                break;
        }
        double sc1 = server_cpu_ns(), own1 = own_cpu_s();
        long hwm = status_field(opt_pid, "VmHWM:");
        if (hwm > hwm_max)
            hwm_max = hwm;
        if (!t_all || !t_ok || n_corrupt || n_badreply) {
            int alive = alive_receivers();
            if (!t_all && alive > bc_done) {
                n_lost_rx += alive - bc_done;
                note("round_%d:%d_of_%d_receivers_got_the_whole_message_"
                     "in_%.1fs", r, bc_done, alive, now_s() - start);
            }
            if (!t_ok)
                note("round_%d:no_OK_on_the_control_connection", r);
            break;
        }
        ms[r - 1] = (t_all - ts) / 1e6;
        ok_ms[r - 1] = (t_ok - ts) / 1e6;
        double wall = (t_all > t_ok ? t_all : t_ok) - ts;
        srv_ms[r - 1] = sc0 >= 0 && sc1 >= 0 ? (sc1 - sc0) / 1e6 : -1;
        lg[r - 1] = wall > 0 ? (own1 - own0) / (wall / 1e9) : -1;
        rounds_done = r;
        if (opt_verbose)
            fprintf(stderr, "loadgen: bcast round %d: %.2f ms (OK after %.2f "
                    "ms), server %.2f ms CPU, VmHWM %ld kB\n", r, ms[r - 1],
                    ok_ms[r - 1], srv_ms[r - 1], hwm);
    }
    bc_round = 0;
    rss_after = settled_rss(opt_pid);

report:
    if (!status)
        status = n_corrupt ? "CORRUPT"
               : n_lost_rx ? "LOST"
               : n_closed ? "CLOSED"
               : n_badreply || n_wrong_ok ? "BAD_REPLY"
               : ctl_dead ? "CLOSED"
               : rounds_done < opt_rounds ? "TIMEOUT" : "OK";
    {
        int k = rounds_done;
        double mn = -1, mx = -1;
        for (int i = 0; i < k; i++) {
            if (mn < 0 || ms[i] < mn) mn = ms[i];
            if (ms[i] > mx) mx = ms[i];
        }
        char rl[2048], ol[2048], sl[2048];
        join_values(rl, sizeof rl, ms, k, 2);
        join_values(ol, sizeof ol, ok_ms, k, 2);
        join_values(sl, sizeof sl, srv_ms, k, 2);
        printf("mode=bcast status=%s n=%d opened=%d count=%ld "
               "connect_secs=%.3f rounds=%d rounds_done=%d size=%ld "
               "idle_secs=%.3f idle_cpu_pct=%.3f idle_switches=%ld "
               "bcast_ms_median=%.3f bcast_ms_min=%.3f bcast_ms_max=%.3f "
               "ok_ms_median=%.3f srv_cpu_ms_median=%.3f lg_cpu_median=%.3f "
               "rss_before_kb=%ld rss_after_kb=%ld rss_growth_kb=%ld "
               "hwm_before_kb=%ld hwm_max_kb=%ld hwm_growth_kb=%ld "
               "hwm_reset=%d lost=%llu corrupt=%llu closed=%llu "
               "bad_reply=%llu connect_failed=%llu round_ms=%s ok_ms=%s "
               "srv_cpu_ms=%s details=%s\n",
               status, n, opened, count, connect_secs, opt_rounds, k, bc_size,
               idle_wall, idle_pct,
               sw0 >= 0 && sw1 >= 0 ? sw1 - sw0 : -1,
               median(ms, k), mn, mx, median(ok_ms, k), median(srv_ms, k),
               median(lg, k), rss_before, rss_after,
               rss_before >= 0 && rss_after >= 0 ? rss_after - rss_before : -1,
               hwm_before, hwm_max,
               rss_before >= 0 && hwm_max >= 0 ? hwm_max - rss_before : -1,
               hwm_reset, (unsigned long long)n_lost_rx,
               (unsigned long long)n_corrupt, (unsigned long long)n_closed,
               (unsigned long long)(n_badreply + n_wrong_ok),
               (unsigned long long)n_connfail, rl, ol, sl, details);
    }
    fflush(stdout);
    for (int i = 0; i <= n; i++)
        conn_kill(&conns[i]);
    return 0;
}

/* ------------------------------------------------------------------ */
/* udp mode                                                           */

enum { U_IDLE, U_TOSEND, U_INFLIGHT };
#define U_LATE 4            /* seqs given up on, kept per slot for late
                             * replies */
#define U_BATCH 64          /* datagrams per recvmmsg/sendmmsg at most */

struct uslot {
    uint64_t seq;           /* the datagram in flight or to send */
    uint64_t t;             /* when it was sent */
    int state;
    uint64_t late[U_LATE];  /* seq + 1 of datagrams given up on; 0: free */
};

struct usender {
    int fd;
    int want_out;
    int tosend;             /* slots in U_TOSEND */
};

static struct usender *us;
static struct uslot *uslots;     /* sender i, slot k: uslots[i * D + k] */
static char *ubuf;               /* its datagram: ubuf + (i * D + k) * size */
static char *ufill;              /* a datagram with the filler, header 0 */
static uint64_t u_sent, u_timeout, u_late, u_dup, u_refused, u_senderr;

static void udp_give_up(struct uslot *sl)
{
    /* remember it: a reply may still come */
    int j, oldest = 0;
    for (j = 0; j < U_LATE; j++)
        if (!sl->late[j])
            break;
    if (j == U_LATE) {
        for (j = 1; j < U_LATE; j++)
            if (sl->late[j] < sl->late[oldest])
                oldest = j;
        j = oldest;
    }
    sl->late[j] = sl->seq + 1;
    u_timeout++;
}

/* Send what is U_TOSEND on sender i (sendmmsg; what the socket does not
 * take waits for EPOLLOUT). */
static void udp_flush(int i)
{
    struct usender *s = &us[i];
    if (!s->tosend)
        return;
    int D = opt_depth, L = opt_linelen;
    static struct mmsghdr mm[U_BATCH];
    static struct iovec iov[U_BATCH];
    static int idx[U_BATCH];
    int k = 0;
    while (s->tosend) {
        int n = 0;
        for (; k < D && n < U_BATCH; k++) {
            struct uslot *sl = &uslots[(size_t)i * D + k];
            if (sl->state != U_TOSEND)
                continue;
            char *b = ubuf + ((size_t)i * D + k) * L;
            make_line(b, i, sl->seq);
            iov[n].iov_base = b;
            iov[n].iov_len = L;
            memset(&mm[n].msg_hdr, 0, sizeof mm[n].msg_hdr);
            mm[n].msg_hdr.msg_iov = &iov[n];
            mm[n].msg_hdr.msg_iovlen = 1;
            idx[n++] = k;
        }
        if (!n)
            break;
        int done = 0;
        while (done < n) {
            int r = sendmmsg(s->fd, mm + done, n - done, MSG_DONTWAIT);
            if (r > 0) {
                uint64_t t = now_ns();
                for (int j = done; j < done + r; j++) {
                    struct uslot *sl = &uslots[(size_t)i * D + idx[j]];
                    sl->state = U_INFLIGHT;
                    sl->t = t;
                    s->tosend--;
                    u_sent++;
                }
                done += r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                          errno == ENOBUFS)) {
                if (!s->want_out) {
                    ep_set(s->fd, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT, i);
                    s->want_out = 1;
                }
                return;
            }
            /* ECONNREFUSED (an earlier datagram met a closed port) or
             * worse: this one counts as sent and given up on later */
            if (errno == ECONNREFUSED)
                u_refused++;
            else {
                u_senderr++;
                note("sender_%d:send:%s", i, strerror(errno));
            }
            struct uslot *sl = &uslots[(size_t)i * D + idx[done]];
            sl->state = U_INFLIGHT;
            sl->t = now_ns();
            s->tosend--;
            u_sent++;
            done++;
        }
    }
    if (s->want_out) {
        ep_set(s->fd, EPOLL_CTL_MOD, EPOLLIN, i);
        s->want_out = 0;
    }
}

/* A reply on sender i; returns 1 if it was a request done in time. */
static int udp_reply(int i, const char *data, int len, uint64_t t)
{
    int D = opt_depth, L = opt_linelen;
    int oc;
    uint64_t seq;
    if (len != L || !parse_line(data, len, &oc, &seq) ||
        memcmp(data + 19, ufill + 19, L - 19) != 0) {   /* " xxx...\n" */
        n_corrupt++;
        note("sender_%d:corrupt_reply_of_%d_bytes", i, len);
        return 0;
    }
    if (oc != i) {
        n_corrupt++;
        note("sender_%d:got_the_datagram_of_sender_%d", i, oc);
        return 0;
    }
    struct uslot *sl = &uslots[(size_t)i * D + seq % D];
    if (sl->state == U_INFLIGHT && sl->seq == seq) {
        if (measuring) {
            hist_add(t - sl->t);
            n_ok++;
        }
        if (sending) {
            sl->seq += D;
            sl->state = U_TOSEND;
            us[i].tosend++;
        } else {
            sl->state = U_IDLE;
        }
        return 1;
    }
    for (int j = 0; j < U_LATE; j++)
        if (sl->late[j] == seq + 1) {
            sl->late[j] = 0;
            u_late++;
            return 0;
        }
    u_dup++;
    n_corrupt++;
    note("sender_%d:reply_to_seq_%llu_not_in_flight(duplicate?)", i,
         (unsigned long long)seq);
    return 0;
}

/* Slots whose reply is overdue give up on it (and send the next when
 * sending); returns how many are still in flight. */
static int udp_expire(void)
{
    int D = opt_depth, inflight = 0;
    uint64_t t = now_ns(), limit = (uint64_t)(opt_losstimeout * 1e9);
    for (int i = 0; i < opt_conns; i++) {
        int any = 0;
        for (int k = 0; k < D; k++) {
            struct uslot *sl = &uslots[(size_t)i * D + k];
            if (sl->state != U_INFLIGHT)
                continue;
            if (t - sl->t < limit) {
                inflight++;
                continue;
            }
            udp_give_up(sl);
            if (sending) {
                sl->seq += D;
                sl->state = U_TOSEND;
                us[i].tosend++;
                any = 1;
            } else {
                sl->state = U_IDLE;
            }
        }
        if (any)
            udp_flush(i);
    }
    return inflight;
}

/* One pass of the event loop; returns the replies done in time. */
static int udp_pump(int timeout_ms)
{
    static struct epoll_event evs[1024];
    static char rb[U_BATCH][4096 + 64];
    static struct mmsghdr mm[U_BATCH];
    static struct iovec iov[U_BATCH];
    int k = ep_wait(evs, 1024, timeout_ms);
    uint64_t t = now_ns();
    int done = 0;
    int vlen = opt_depth + 4 < U_BATCH ? opt_depth + 4 : U_BATCH;
    for (int e = 0; e < k; e++) {
        int i = (int)evs[e].data.u64;
        struct usender *s = &us[i];
        if (evs[e].events & (EPOLLIN | EPOLLERR)) {
            for (int j = 0; j < vlen; j++) {
                iov[j].iov_base = rb[j];
                iov[j].iov_len = sizeof rb[j];
                memset(&mm[j].msg_hdr, 0, sizeof mm[j].msg_hdr);
                mm[j].msg_hdr.msg_iov = &iov[j];
                mm[j].msg_hdr.msg_iovlen = 1;
            }
            int r = recvmmsg(s->fd, mm, vlen, MSG_DONTWAIT, NULL);
            if (r < 0) {
                if (errno == ECONNREFUSED)
                    u_refused++;
                else if (errno != EAGAIN && errno != EINTR) {
                    u_senderr++;
                    note("sender_%d:recv:%s", i, strerror(errno));
                }
            }
            for (int j = 0; j < r; j++)
                done += udp_reply(i, rb[j], (int)mm[j].msg_len, t);
        }
        if (s->tosend)
            udp_flush(i);
    }
    return done;
}

/* pump until the time until, expiring what is overdue every so often */
static void udp_run_until(double until, double *next_exp, double every)
{
    double tnow;
    while ((tnow = now_s()) < until) {
        udp_pump(1);
        if (tnow >= *next_exp) {
            udp_expire();
            *next_exp = tnow + every;
        }
    }
}

static int run_udp(void)
{
    int n = opt_conns, D = opt_depth, L = opt_linelen;
    raise_nofile(n + 64);
    us = calloc(n, sizeof *us);
    uslots = calloc((size_t)n * D, sizeof *uslots);
    ubuf = malloc((size_t)n * D * L);
    ufill = malloc(L);
    if (!us || !uslots || !ubuf || !ufill)
        die("calloc");
    init_line(ufill);
    make_line(ufill, 0, 0);
    for (size_t j = 0; j < (size_t)n * D; j++)
        init_line(ubuf + j * L);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0)
            die("connect");
        us[i].fd = fd;
        ep_set(fd, EPOLL_CTL_ADD, EPOLLIN, i);
        for (int k = 0; k < D; k++) {
            uslots[(size_t)i * D + k].seq = k;
            uslots[(size_t)i * D + k].state = U_TOSEND;
        }
        us[i].tosend = D;
    }
    for (int i = 0; i < n; i++)
        udp_flush(i);
    double start = now_s(), mstart = start + opt_warm,
           mend = mstart + opt_secs, next_exp = start;
    /* expiry is checked every 5 ms, or a tenth of the timeout if less */
    double every = opt_losstimeout / 10 < 0.005 ? opt_losstimeout / 10 : 0.005;
    udp_run_until(mstart, &next_exp, every);
    measuring = 1;
    n_ok = 0;
    memset(hist, 0, sizeof hist);
    hist_n = 0;
    double real_start = now_s();
    cpu_window_start();
    udp_run_until(mend, &next_exp, every);
    measuring = 0;
    sending = 0;
    double real_secs = now_s() - real_start;
    cpu_window_end();
    uint64_t measured = n_ok;
    /* the final wait: every slot gets its reply or gives up on it */
    double dl = now_s() + 10 * opt_grace;
    while (now_s() < dl) {
        udp_pump(1);
        if (!udp_expire())
            break;
    }
    /* the replies still on their way after that (late ones) */
    {
        double until = now_s() + 0.05;
        while (now_s() < until)
            udp_pump(5);
    }
    int left = 0;
    for (size_t j = 0; j < (size_t)n * D; j++)
        if (uslots[j].state == U_INFLIGHT) {
            udp_give_up(&uslots[j]);
            left++;
        }
    if (left)
        note("%d_slots_still_waiting_after_%.1fs", left, 10 * opt_grace);
    n_ok = measured;
    uint64_t lost = u_timeout - u_late;
    double loss_pct = u_sent ? 100.0 * lost / u_sent : 0;
    if (lost && !strcmp(details, "-"))
        note("%llu_of_%llu_datagrams_never_came_back(%llu_more_came_after_"
             "%.0f_ms)", (unsigned long long)lost,
             (unsigned long long)u_sent, (unsigned long long)u_late,
             opt_losstimeout * 1000);
    if (u_refused && !strcmp(details, "-"))
        note("%llu_ICMP_port_unreachable", (unsigned long long)u_refused);
    const char *status = n_corrupt ? "CORRUPT"
                       : loss_pct >= 0.1 ? "LOST"
                       : u_senderr ? "ERROR" : "OK";
    printf("mode=udp status=%s c=%d d=%d size=%d secs=%.3f reqs=%llu "
           "rps=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "sent=%llu lost=%llu late=%llu loss_pct=%.4f corrupt=%llu "
           "dup=%llu refused=%llu errors=%llu loss_timeout_ms=%.0f%s "
           "details=%s\n",
           status, n, D, L, real_secs, (unsigned long long)n_ok,
           real_secs > 0 ? n_ok / real_secs : 0, hist_pct(0.50),
           hist_pct(0.99), hist_pct(0.999), hist_pct(1.0),
           (unsigned long long)u_sent, (unsigned long long)lost,
           (unsigned long long)u_late, loss_pct,
           (unsigned long long)n_corrupt, (unsigned long long)u_dup,
           (unsigned long long)u_refused, (unsigned long long)u_senderr,
           opt_losstimeout * 1000, cpu_report(real_secs, n_ok), details);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        close(us[i].fd);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the reliability suite's modes (xt/): hold, short, pipe, loris, flood */
/*                                                                    */
/* A connection of these modes carries lines of its own (not the      */
/* numbered LINELEN lines of echo), one request at a time or a        */
/* pipeline, with its own buffers; what they share with the modes     */
/* above: start_connect (-H, -B, -U), sock_error, ep_set and ep_wait, */
/* now_s, raise_nofile, cmp_double and the options.                   */

enum { ST_FREE = 0, ST_CONNECTING, ST_SENDING, ST_WAITING, ST_IDLE,
       ST_WAITEOF, ST_TRICKLE, ST_DONE };

typedef struct xconn {
    int      fd;
    int      state;
    unsigned id;
    unsigned events;          /* current epoll interest */
    char    *out;             /* pending output */
    size_t   outlen, outoff, outcap;
    char    *in;              /* input not yet matched */
    size_t   inlen, incap;
    char     expect[64];      /* the reply expected (one line) */
    size_t   explen;
    /* pipe mode */
    uint64_t sent_lines, got_lines;
    /* loris mode */
    size_t   trickled;
    double   t0;
} xconn;

static double deadline_at;       /* -D: the whole run's deadline */
static unsigned n_opt = 100, c_opt = 256, l_opt = 1000, i_opt = 50;
static double h_opt = 1, s_opt = 5;
static int x_failed;             /* a check failed */
static unsigned long n_errors;

/* counters */
static unsigned long c_connected, c_refused, c_connfail, c_reset, c_badreply,
                     c_eof_early, c_ok, c_closed_by_server, c_addrnotavail;

/* a result: a "key value" line, flushed at once (xt/lib/ISDStress.pm
 * reads them as they come) */
static void kv(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kv(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* a failed check: "error: ..." on stderr (the first 20) */
static void xerr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void xerr(const char *fmt, ...)
{
    va_list ap;
    n_errors++;
    x_failed = 1;
    if (n_errors > 20)
        return;                    /* the counters say the rest */
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void xdie(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void xdie(const char *fmt, ...)
{
    va_list ap;
    fputs("fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        xdie("out of memory");
    return p;
}

static void set_interest(xconn *c, unsigned ev)
{
    if (ev == c->events)
        return;
    ep_set(c->fd, !ev ? EPOLL_CTL_DEL : !c->events ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
           ev, (uint64_t)(uintptr_t)c);
    c->events = ev;
}

static void count_connect_error(int e)
{
    if (e == ECONNREFUSED)
        c_refused++;
    else if (e == EADDRNOTAVAIL)
        c_addrnotavail++;
    else if (e == ECONNRESET)
        c_reset++;
    else
        c_connfail++;
}

/* Start a non-blocking connect (start_connect: -H, -B, -U); 0 ok (maybe
 * in progress), -1 failed (counted). */
static int x_connect(xconn *c)
{
    c->events = 0;
    c->outlen = c->outoff = c->inlen = 0;
    c->fd = start_connect((int)c->id);
    if (c->fd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE) {  /* no socket: not a connect */
            xerr("socket: %s", strerror(e));
            return -1;
        }
        count_connect_error(e);
        xerr("connect: %s", strerror(e));
        return -1;
    }
    c->state = ST_CONNECTING;
    set_interest(c, EPOLLOUT);
    return 0;
}

static void x_close(xconn *c)
{
    if (c->fd >= 0) {
        if (c->events)
            set_interest(c, 0);
        close(c->fd);
    }
    c->fd = -1;
    c->events = 0;
    c->state = ST_DONE;
}

static void queue_out(xconn *c, const char *p, size_t n)
{
    if (c->outoff && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2 + 64;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* Write what is queued.  0 ok, -1 the connection failed (closed). */
static int flush_out(xconn *c)
{
    if (write_pending(c->fd, c->out, c->outlen, &c->outoff) < 0) {
        if (errno == ECONNRESET || errno == EPIPE)
            c_reset++;
        xerr("conn %u: send: %s", c->id, strerror(errno));
        x_close(c);
        return -1;
    }
    return 0;
}

/* Read what is there.  >0 bytes, 0 EOF, -1 nothing (EAGAIN), -2 error
 * (the connection is closed and counted). */
static ssize_t read_in(xconn *c)
{
    ssize_t n, total = 0;

    for (;;) {
        if (c->incap - c->inlen < 65536) {
            c->incap = c->inlen + 131072;
            c->in = xrealloc(c->in, c->incap);
        }
        n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        if (n > 0) {
            c->inlen += (size_t)n;
            total += n;
            if ((size_t)n < 65536)
                return total;
            continue;
        }
        if (n == 0)
            return total ? total : 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return total ? total : -1;
        if (errno == ECONNRESET)
            c_reset++;
        xerr("conn %u: recv: %s", c->id, strerror(errno));
        x_close(c);
        return -2;
    }
}

static void update_interest(xconn *c)
{
    unsigned ev = EPOLLIN;

    if (c->fd < 0)
        return;
    if (c->outoff < c->outlen)
        ev |= EPOLLOUT;
    set_interest(c, ev);
}

/* Send one line and expect it back. */
static void request(xconn *c, const char *line)
{
    size_t n = strlen(line);

    memcpy(c->expect, line, n);
    c->explen = n;
    queue_out(c, line, n);
    c->state = ST_WAITING;
    c->t0 = now_s();
    if (flush_out(c) == 0)
        update_interest(c);
}

/* Finished connecting?  0 yes, -1 failed (closed), 1 not yet. */
static int connect_done(xconn *c)
{
    int e = sock_error(c->fd);

    if (e == EINPROGRESS || e == EALREADY)
        return 1;
    if (e) {
        count_connect_error(e);
        xerr("conn %u: connect: %s", c->id, strerror(e));
        x_close(c);
        return -1;
    }
    c_connected++;
    return 0;
}

/* A reply arrived for a ST_WAITING connection: 1 complete and right, 0 not yet,
 * -1 wrong (counted). */
static int check_reply(xconn *c)
{
    char *nl = memchr(c->in, '\n', c->inlen);
    size_t len;

    if (!nl) {
        if (c->inlen <= c->explen)
            return 0;
        c_badreply++;
        xerr("conn %u: reply too long", c->id);
        return -1;
    }
    len = (size_t)(nl - c->in) + 1;
    if (len != c->explen || memcmp(c->in, c->expect, len) != 0) {
        c_badreply++;
        xerr("conn %u: expected '%.*s', got '%.*s'", c->id, (int)c->explen - 1,
            c->expect, (int)len - 1, c->in);
        return -1;
    }
    memmove(c->in, c->in + len, c->inlen - len);
    c->inlen -= len;
    return 1;
}

/* ep_wait, within the run's deadline (-D): -1 past it */
static int x_wait(struct epoll_event *evs, int max, int ms)
{
    if (now_s() > deadline_at) {
        kv("deadline 1");
        return -1;
    }
    return ep_wait(evs, max, ms);
}

#define XCONN(e) ((xconn *)(uintptr_t)(e).data.u64)

static xconn *xconns;

static xconn *new_conns(unsigned n)
{
    unsigned i;
    xconn *cs = calloc(n, sizeof *cs);

    if (!cs)
        xdie("out of memory");
    for (i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].id = i;
    }
    return cs;
}

/* Connect cs[0 .. n - 1] all at once and wait until each is connected
 * (then in state, watched for input) or failed (closed, counted): the
 * number that failed, -1 past the deadline. */
static long x_open_all(xconn *cs, unsigned n, int state)
{
    struct epoll_event evs[512];
    unsigned i, connected = 0, failed = 0;
    int k, m;

    for (i = 0; i < n; i++)
        if (x_connect(&cs[i]) < 0)
            failed++;
    while (connected + failed < n) {
        m = x_wait(evs, 512, 100);
        if (m < 0)
            return -1;
        for (k = 0; k < m; k++) {
            xconn *c = XCONN(evs[k]);
            int r = connect_done(c);
            if (r == 0) {
                c->state = state;
                set_interest(c, EPOLLIN);
                connected++;
            } else if (r < 0) {
                failed++;
            }
        }
    }
    return failed;
}

/* ------------------------------------------------------------------ hold */

/* Handle an event for a connection doing one request at a time.  Returns 1 when
 * the connection just finished its request (ok or not), else 0. */
static int step_request(xconn *c, uint32_t ev, const char *(*line_for)(xconn *))
{
    ssize_t n;
    int r;

    if (c->state == ST_CONNECTING) {
        r = connect_done(c);
        if (r > 0)
            return 0;
        if (r < 0)
            return 1;
        request(c, line_for(c));
        return 0;
    }
    if (ev & EPOLLOUT) {
        if (flush_out(c) < 0)
            return 1;
        update_interest(c);
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return 0;
    n = read_in(c);
    if (n == -2)
        return 1;
    if (c->state == ST_WAITING && c->inlen) {
        r = check_reply(c);
        if (r < 0) {
            x_close(c);
            return 1;
        }
        if (r > 0) {
            c_ok++;
            if (c->expect[0] == 'q') {
                c->state = ST_WAITEOF;
                if (n != 0)
                    return 0;      /* EOF comes later */
            } else {
                c->state = ST_IDLE;
                if (n == 0) {
                    c_eof_early++;
                    xerr("conn %u: closed by the server", c->id);
                    x_close(c);
                }
                return 1;
            }
        }
    }
    if (n == 0) {
        if (c->state == ST_WAITEOF) {
            c_closed_by_server++;
            x_close(c);
            return 1;
        }
        c_eof_early++;
        xerr("conn %u: EOF before the reply (state %d, %zu bytes in)", c->id,
            c->state, c->inlen);
        x_close(c);
        return 1;
    }
    if (c->state == ST_IDLE && c->inlen) {
        c_badreply++;
        xerr("conn %u: unexpected bytes", c->id);
    }
    return 0;
}

static char linebuf[64];
static const char *hold_line1(xconn *c) { snprintf(linebuf, sizeof linebuf, "h%u\n", c->id); return linebuf; }
static const char *hold_line2(xconn *c) { snprintf(linebuf, sizeof linebuf, "g%u-again\n", c->id); return linebuf; }

static void run_hold(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, next = 0, inflight = 0, done = 0, i, live;
    double t0 = now_s(), t1, hold_end;
    int k, n;

    xconns = new_conns(N);
    while (done < N) {
        while (next < N && inflight < c_opt) {
            if (x_connect(&xconns[next]) == 0)
                inflight++;
            else
                done++;
            next++;
        }
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            if (step_request(c, evs[k].events, hold_line1)) {
                inflight--;
                done++;
            }
        }
    }
    t1 = now_s();
    for (live = 0, i = 0; i < N; i++)
        if (xconns[i].state == ST_IDLE)
            live++;
    kv("phase1_live %u", live);
    kv("phase1_secs %.3f", t1 - t0);
    kv("phase1_done 1");
    /* hold: watch for anything happening to the idle connections */
    hold_end = now_s() + h_opt;
    while (now_s() < hold_end) {
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            ssize_t r = read_in(c);
            if (r == 0) {
                c_eof_early++;
                xerr("conn %u: closed by the server while idle", c->id);
                x_close(c);
            } else if (r > 0) {
                c_badreply++;
                xerr("conn %u: unexpected bytes while idle", c->id);
            }
        }
    }
    /* phase 2: every connection at once */
    t0 = now_s();
    c_ok = 0;
    for (i = 0; i < N; i++)
        if (xconns[i].state == ST_IDLE)
            request(&xconns[i], hold_line2(&xconns[i]));
    for (done = 0, i = 0; i < N; i++)
        if (xconns[i].state != ST_WAITING)
            done++;
    while (done < N) {
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++)
            if (step_request(XCONN(evs[k]), evs[k].events, hold_line2))
                done++;
    }
    for (live = 0, i = 0; i < N; i++)
        if (xconns[i].state == ST_IDLE)
            live++;
    kv("phase2_live %u", live);
    kv("phase2_secs %.3f", now_s() - t0);
    if (live != N)
        x_failed = 1;
    for (i = 0; i < N; i++)
        x_close(&xconns[i]);
}

/* ----------------------------------------------------------------- short */

static const char *short_line(xconn *c)
{
    /* every other connection asks the server to close */
    snprintf(linebuf, sizeof linebuf, "%c%u\n", (c->id & 1) ? 'q' : 's', c->id);
    return linebuf;
}

static void run_short(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, C = c_opt, next = 0, inflight = 0, done = 0;
    unsigned long ok_before;
    xconn *slots = new_conns(C);
    double t0 = now_s(), secs;
    unsigned i;
    int k, n;

    for (;;) {
        for (i = 0; i < C && next < N; i++) {
            xconn *c = &slots[i];
            if (c->state != ST_FREE && c->state != ST_DONE)
                continue;
            c->id = next++;
            c->state = ST_FREE;
            if (x_connect(c) == 0)
                inflight++;
            else
                done++;
        }
        if (done >= N)
            break;
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            ok_before = c_ok;
            if (step_request(c, evs[k].events, short_line)) {
                if (c->state == ST_IDLE)
                    x_close(c);      /* our side closes first */
                if (c->fd >= 0)
                    x_close(c);
                inflight--;
                done++;
            }
            (void)ok_before;
        }
    }
    secs = now_s() - t0;
    kv("short_total %u", N);
    kv("short_ok %lu", c_ok);
    kv("short_server_closed %lu", c_closed_by_server);
    kv("short_secs %.3f", secs);
    kv("short_per_sec %.0f", secs > 0 ? c_ok / secs : 0);
    if (c_ok != N)
        x_failed = 1;
    free(slots);
}

/* ------------------------------------------------------------------ pipe */

static void run_pipe(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i, done = 0;
    uint64_t L = l_opt, total_ok = 0;
    double t0, secs;
    char line[64];
    int k, n;

    long failed;

    xconns = new_conns(N);
    /* everyone connected first, then the clock starts */
    if ((failed = x_open_all(xconns, N, ST_SENDING)) < 0)
        goto end;
    done = (unsigned)failed;
    t0 = now_s();
    for (i = 0; i < N; i++)
        if (xconns[i].state == ST_SENDING)
            set_interest(&xconns[i], EPOLLIN | EPOLLOUT);
    while (done < N) {
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            uint32_t ev = evs[k].events;
            if (c->fd < 0)
                continue;
            if (ev & EPOLLOUT) {
                /* top up: keep at most ~256 KiB queued */
                while (c->sent_lines < L && c->outlen - c->outoff < 262144) {
                    int m = snprintf(line, sizeof line, "p%u.%llu\n", c->id,
                                     (unsigned long long)c->sent_lines);
                    queue_out(c, line, (size_t)m);
                    c->sent_lines++;
                }
                if (flush_out(c) < 0) {
                    done++;
                    continue;
                }
                if (c->sent_lines >= L && c->outoff == c->outlen)
                    set_interest(c, EPOLLIN);
            }
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = read_in(c);
                size_t off = 0;
                if (r == -2) {
                    done++;
                    continue;
                }
                for (;;) {
                    char *nl = memchr(c->in + off, '\n', c->inlen - off);
                    size_t len;
                    int m;
                    if (!nl)
                        break;
                    len = (size_t)(nl - (c->in + off)) + 1;
                    m = snprintf(line, sizeof line, "p%u.%llu\n", c->id,
                                 (unsigned long long)c->got_lines);
                    if ((size_t)m != len || memcmp(line, c->in + off, len)) {
                        c_badreply++;
                        xerr("conn %u: line %llu: expected '%.*s', got '%.*s'",
                            c->id, (unsigned long long)c->got_lines, m - 1,
                            line, (int)len - 1, c->in + off);
                    }
                    c->got_lines++;
                    total_ok++;
                    off += len;
                }
                memmove(c->in, c->in + off, c->inlen - off);
                c->inlen -= off;
                if (r == 0 || c->got_lines >= L) {
                    if (c->got_lines < L) {
                        c_eof_early++;
                        xerr("conn %u: EOF after %llu lines", c->id,
                            (unsigned long long)c->got_lines);
                    }
                    x_close(c);
                    done++;
                }
            }
        }
    }
    secs = now_s() - t0;
    kv("pipe_lines %llu", (unsigned long long)total_ok);
    kv("pipe_secs %.3f", secs);
    kv("pipe_lines_per_sec %.0f", secs > 0 ? total_ok / secs : 0);
    if (total_ok != (uint64_t)N * L)
        x_failed = 1;
end:
    for (i = 0; i < N; i++)
        x_close(&xconns[i]);
}

/* ----------------------------------------------------------------- loris */


static void run_loris(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i, live;
    xconn probe;
    double *lat = NULL, next_probe, next_tick, end, t0;
    size_t nlat = 0, latcap = 0;
    unsigned probe_seq = 0;
    char line[64];
    int k, n;

    /* the loris body: "l<id>" + filler, one byte a second */
    xconns = new_conns(N);
    memset(&probe, 0, sizeof probe);
    probe.fd = -1;
    probe.id = N;
    /* the probe first, then the lorises all at once */
    if (x_open_all(&probe, 1, ST_IDLE) != 0)
        xdie("probe: cannot connect");
    t0 = now_s();
    if (x_open_all(xconns, N, ST_TRICKLE) < 0)
        goto end;
    kv("loris_connected %lu", c_connected - 1);
    kv("loris_connect_secs %.3f", now_s() - t0);
    end = now_s() + s_opt;
    next_tick = now_s();
    next_probe = now_s();
    while (now_s() < end || probe.state == ST_WAITING) {
        double t = now_s();
        if (t >= next_tick && t < end) {
            /* one byte each */
            for (i = 0; i < N; i++) {
                xconn *c = &xconns[i];
                char ch;
                if (c->state != ST_TRICKLE)
                    continue;
                if (c->trickled == 0)
                    ch = 'l';
                else
                    ch = (char)('a' + (c->trickled + c->id) % 26);
                if (c->explen < sizeof c->expect - 2)
                    c->expect[c->explen++] = ch;
                else
                    continue;
                queue_out(c, &ch, 1);
                c->trickled++;
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            next_tick += 1.0;
        }
        if (t >= next_probe && probe.state == ST_IDLE && t < end) {
            snprintf(line, sizeof line, "probe%u\n", probe_seq++);
            request(&probe, line);
            next_probe = t + i_opt / 1000.0;
        }
        n = x_wait(evs, 512, 10);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            if (c == &probe) {
                ssize_t r;
                if (evs[k].events & EPOLLOUT) {
                    flush_out(c);
                    update_interest(c);
                }
                r = read_in(c);
                if (r == -2)
                    xdie("probe connection failed");
                if (c->state == ST_WAITING && c->inlen) {
                    int ok = check_reply(c);
                    if (ok < 0)
                        xdie("probe: wrong reply");
                    if (ok > 0) {
                        if (nlat == latcap) {
                            latcap = latcap ? latcap * 2 : 1024;
                            lat = xrealloc(lat, latcap * sizeof *lat);
                        }
                        lat[nlat++] = now_s() - c->t0;
                        c->state = ST_IDLE;
                    }
                }
                if (r == 0)
                    xdie("probe: closed by the server");
                continue;
            }
            if (evs[k].events & EPOLLOUT) {
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = read_in(c);
                if (r == 0) {
                    c_eof_early++;
                    xerr("loris %u: closed by the server after %zu bytes",
                        c->id, c->trickled);
                    x_close(c);
                } else if (r > 0) {
                    c_badreply++;
                    xerr("loris %u: reply before its line ended", c->id);
                }
            }
        }
    }
    /* end every line: each must come back whole */
    for (i = 0; i < N; i++) {
        xconn *c = &xconns[i];
        if (c->state != ST_TRICKLE)
            continue;
        c->expect[c->explen++] = '\n';
        queue_out(c, "\n", 1);
        c->state = ST_WAITING;
        if (flush_out(c) == 0)
            update_interest(c);
    }
    for (;;) {
        unsigned waiting = 0;
        for (i = 0; i < N; i++)
            if (xconns[i].state == ST_WAITING)
                waiting++;
        if (!waiting)
            break;
        n = x_wait(evs, 512, 100);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            ssize_t r;
            if (c == &probe || c->fd < 0)
                continue;
            if (evs[k].events & EPOLLOUT) {
                if (flush_out(c) < 0)
                    continue;
                update_interest(c);
            }
            r = read_in(c);
            if (r == -2)
                continue;
            if (c->inlen) {
                int ok = check_reply(c);
                if (ok > 0) {
                    c->state = ST_IDLE;
                    c_ok++;
                } else if (ok < 0) {
                    x_close(c);
                    continue;
                }
            }
            if (r == 0 && c->state == ST_WAITING) {
                c_eof_early++;
                xerr("loris %u: EOF before the echo", c->id);
                x_close(c);
            }
        }
    }
    for (live = 0, i = 0; i < N; i++)
        if (xconns[i].state == ST_IDLE)
            live++;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    kv("loris_lines_echoed %u", live);
    kv("loris_bytes_each %zu", N ? xconns[0].trickled : (size_t)0);
    kv("probe_count %zu", nlat);
    kv("probe_max_ms %.1f", nlat ? lat[nlat - 1] * 1000 : -1.0);
    kv("probe_p99_ms %.1f", nlat ? lat[(size_t)(nlat * 0.99)] * 1000 : -1.0);
    kv("probe_median_ms %.1f", nlat ? lat[nlat / 2] * 1000 : -1.0);
    if (live != N)
        x_failed = 1;
end:
    for (i = 0; i < N; i++)
        x_close(&xconns[i]);
    x_close(&probe);
    free(lat);
}

/* ----------------------------------------------------------------- flood */

static void run_flood(void)
{
    struct epoll_event evs[512];
    unsigned N = n_opt, i;
    unsigned long shed = 0;
    double end;
    int k, n;

    xconns = new_conns(N);
    for (i = 0; i < N; i++)
        x_connect(&xconns[i]);
    x_failed = 0;             /* refusals are part of a flood, not failures */
    n_errors = 0;
    end = now_s() + s_opt;
    while (now_s() < end) {
        n = x_wait(evs, 512, 50);
        if (n < 0)
            break;
        for (k = 0; k < n; k++) {
            xconn *c = XCONN(evs[k]);
            if (c->state == ST_CONNECTING) {
                int e = sock_error(c->fd);
                if (e == 0) {
                    c_connected++;
                    c->state = ST_IDLE;
                    set_interest(c, EPOLLIN);
                } else if (e != EINPROGRESS) {
                    c_connfail++;
                    x_close(c);
                }
                continue;
            }
            {
                char buf[256];
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    shed++;         /* the server closed it */
                    x_close(c);
                }
            }
        }
    }
    kv("flood_connected %lu", c_connected);
    kv("flood_shed %lu", shed);
    kv("flood_connfail %lu", c_connfail);
    for (i = 0; i < N; i++)
        x_close(&xconns[i]);
    x_failed = 0;
}

/* an xt mode, then the counters every one reports; exit 0 when every
 * check passed, 1 when one failed, 2 past the deadline */
static int run_xt(const char *mode, double deadline)
{
    raise_nofile((long)n_opt + (strcmp(mode, "short") ? 0 : c_opt) + 64);
    deadline_at = now_s() + deadline;
    cpu_window_start();
    if (!strcmp(mode, "hold"))
        run_hold();
    else if (!strcmp(mode, "short"))
        run_short();
    else if (!strcmp(mode, "pipe"))
        run_pipe();
    else if (!strcmp(mode, "loris"))
        run_loris();
    else
        run_flood();
    cpu_window_end();
    /* -P: the server's CPU time over the whole run, as echo measures it
     * over its window; and ours */
    if (opt_npids > 0)
        kv("srv_cpu_ms %.1f", cpu_used_ns >= 0 ? cpu_used_ns / 1e6 : -1.0);
    kv("lg_cpu_ms %.1f", own_used_s * 1e3);
    kv("connected %lu", c_connected);
    kv("refused %lu", c_refused);
    kv("connect_failed %lu", c_connfail + c_addrnotavail);
    kv("reset %lu", c_reset);
    kv("bad_reply %lu", c_badreply);
    kv("early_eof %lu", c_eof_early);
    kv("errors %lu", n_errors);
    if (now_s() > deadline_at)
        return 2;
    return x_failed ? 1 : 0;
}

/* ------------------------------------------------------------------ */

/* "PID,PID,..." into out (up to max); how many. */
static int parse_pids(const char *s, int *out, int max)
{
    char *end;
    int n = 0;

    while (*s && n < max) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen echo    -p PORT [-c C] [-d D] [-t S] [-w S] [-s LEN] "
        "[-g S] [-C S] [-x v1|v2] [-A PID] [-T]\n"
        "       loadgen connect -p PORT [-c C] [-t S] [-w S] [-x v1|v2] [-A PID] [-T]\n"
        "       loadgen idle    -p PORT -P PID [-n N] [-t S] [-T]\n"
        "       loadgen bcast   -p PORT -P PID [-n N] [-r ROUNDS] [-s SIZE] "
        "[-t IDLE_S] [-g S] [-C S]\n"
        "       loadgen udp     -p PORT [-c C] [-d D] [-t S] [-w S] [-s SIZE] "
        "[-L LOSS_S] [-g S]\n"
        "       loadgen hold    -p PORT [-n N] [-c INFLIGHT] [-h HOLD_S] [-D S]\n"
        "       loadgen short   -p PORT [-n TOTAL] [-c CONCURRENCY] [-D S]\n"
        "       loadgen pipe    -p PORT [-n CONNS] [-l LINES] [-D S]\n"
        "       loadgen loris   -p PORT [-n N] [-t S] [-i MS] [-D S]\n"
        "       loadgen flood   -p PORT [-n N] [-t S] [-D S]\n"
        "       common: -H HOST (IPv4 address, default 127.0.0.1) -B SRC -v\n"
        "               -U PATH (a UNIX stream socket instead of HOST:PORT)\n"
        "               -T (echo, connect, idle: TLS 1.3; built with -DLOADGEN_TLS)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    optind = 2;
    int ch;
    int is_bcast = !strcmp(mode, "bcast");
    int is_udp = !strcmp(mode, "udp");
    /* the reliability suite's modes: "key value" lines out, -n and -c
     * apart, -t the length of loris and flood, -D the deadline */
    static const char *const xt_modes[] = { "hold", "short", "pipe", "loris",
                                            "flood" };
    int is_xt = 0;
    double x_deadline = 120;
    for (size_t i = 0; i < sizeof xt_modes / sizeof *xt_modes; i++)
        if (!strcmp(mode, xt_modes[i]))
            is_xt = 1;
    if (is_udp)
        opt_linelen = 64;
    while ((ch = getopt(argc, argv, "H:B:p:c:n:d:t:w:s:g:C:P:r:vU:L:x:A:l:h:i:D:T")) != -1) {
        if (is_xt) {
            switch (ch) {
            case 'n': n_opt = (unsigned)strtoul(optarg, NULL, 10); continue;
            case 'c': c_opt = (unsigned)strtoul(optarg, NULL, 10); continue;
            case 'l': l_opt = (unsigned)strtoul(optarg, NULL, 10); continue;
            case 'h': h_opt = atof(optarg); continue;
            case 't': s_opt = atof(optarg); continue;
            case 'i': i_opt = (unsigned)strtoul(optarg, NULL, 10); continue;
            case 'D': x_deadline = atof(optarg); continue;
            case 'd': case 'w': case 's': case 'g': case 'C':
            case 'r': case 'L': case 'x': case 'A': case 'T':
                usage();
            }
        }
        switch (ch) {
        case 'H': opt_host = optarg; break;
        case 'B':
            memset(&g_src, 0, sizeof g_src);
            g_src.sin_family = AF_INET;
            if (inet_pton(AF_INET, optarg, &g_src.sin_addr) != 1) {
                fprintf(stderr, "loadgen: -B wants a numeric IPv4 address\n");
                return 2;
            }
            g_have_src = 1;
            break;
        case 'p': opt_port = atoi(optarg); break;
        case 'c': case 'n': opt_conns = atoi(optarg); break;
        case 'd': opt_depth = atoi(optarg); break;
        case 't': opt_secs = atof(optarg); break;
        case 'w': opt_warm = atof(optarg); break;
        case 's':
            if (is_bcast)
                bc_size = atol(optarg);
            else
                opt_linelen = atoi(optarg);
            break;
        case 'r': opt_rounds = atoi(optarg); break;
        case 'g': opt_grace = atof(optarg); break;
        case 'C': opt_ctimeout = atof(optarg); break;
        case 'P':
            opt_npids = parse_pids(optarg, opt_pids, 64);
            opt_pid = opt_npids ? opt_pids[0] : 0;
            break;
        case 'v': opt_verbose = 1; break;
        case 'U': opt_unix = optarg; break;
        case 'L': opt_losstimeout = atof(optarg); break;
        case 'x':
            if (!strcmp(optarg, "v2") || !strcmp(optarg, "2"))
                opt_proxy = 2;
            else if (!strcmp(optarg, "v1") || !strcmp(optarg, "1"))
                opt_proxy = 1;
            else
                usage();
            break;
        case 'A':
            opt_napids = parse_pids(optarg, opt_apids, 64);
            break;
        case 'T': opt_tls = 1; break;
        default: usage();
        }
    }
    if (opt_unix && is_udp)
        usage();
    /* -x: TCP echo and connect only */
    if (opt_proxy && (opt_unix || (strcmp(mode, "echo") && strcmp(mode, "connect"))))
        usage();
    /* -T: TCP echo, connect and idle, without a PROXY header */
    if (opt_tls && (opt_unix || opt_proxy ||
                    (strcmp(mode, "echo") && strcmp(mode, "connect") &&
                     strcmp(mode, "idle"))))
        usage();
#ifdef LOADGEN_TLS
    if (opt_tls)
        tls_setup();
#else
    if (opt_tls) {
        fprintf(stderr, "loadgen: -T: built without TLS (cc -DLOADGEN_TLS ... "
                        "-lssl -lcrypto)\n");
        return 2;
    }
#endif
    if (opt_unix) {
        memset(&g_unaddr, 0, sizeof g_unaddr);
        g_unaddr.sun_family = AF_UNIX;
        if (strlen(opt_unix) >= sizeof g_unaddr.sun_path) {
            fprintf(stderr, "loadgen: -U: path too long\n");
            return 2;
        }
        strcpy(g_unaddr.sun_path, opt_unix);
        if (!opt_port)
            opt_port = 1;   /* not used */
    }
    if (is_xt) {
        if (opt_port <= 0 || opt_port > 65535 || !c_opt)
            usage();
    }
    else if (is_udp && (opt_losstimeout <= 0 || opt_grace <= 0))
        usage();
    if (!is_xt && (opt_port <= 0 || opt_port > 65535 || opt_conns < 1 ||
        opt_conns > 999999 || opt_depth < 1 || opt_depth > 4096 ||
        opt_linelen < 21 || opt_linelen > 4096 || opt_secs <= 0 ||
        opt_warm < 0))
        usage();
    if (is_bcast && (bc_size < 12 || bc_size > (16L << 20) || opt_rounds < 1 ||
                     opt_rounds > 10000 || opt_grace <= 0))
        usage();
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons(opt_port);
    if (inet_pton(AF_INET, opt_host, &g_addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: -H wants a numeric IPv4 address\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0)
        die("epoll_create1");
    if (!strcmp(mode, "echo"))
        return run_echo();
    if (!strcmp(mode, "connect"))
        return run_connect();
    if (!strcmp(mode, "idle"))
        return run_idle();
    if (is_bcast)
        return run_bcast();
    if (is_udp)
        return run_udp();
    if (is_xt)
        return run_xt(mode, x_deadline);
    usage();
    return 2;
}
