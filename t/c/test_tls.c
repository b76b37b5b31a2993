/* test_tls.c - TLS server contexts (c_src/tls.c), with certificates made by
 * the openssl command and real handshakes against OpenSSL clients over
 * socket pairs: the certificate, SNI, ALPN, versions and client
 * verification a context gives.  Without OpenSSL at build time: that a
 * context fails, saying how to get TLS. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "isd.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef ISD_HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char dir[256];

static int sh(const char *fmt, const char *a)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, a, a, a, a, a, a, a, a, a, a, a);
    return system(cmd);
}

/* dir/name (kept to the end: a test's few dozen, freed by paths_free) */
static char *paths[64];
static int npaths;

static const char *path(const char *name)
{
    char buf[400];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    if (npaths == 64)
        return "/nonexistent";
    return paths[npaths++] = strdup(buf);
}

static void paths_free(void)
{
    while (npaths > 0)
        free(paths[--npaths]);
}

/* A CA; server certificates for localhost and mail.example signed by it;
 * a client certificate; a key of nobody's. */
static int make_certs(void)
{
    const char *mk =
        "cd %s && exec >openssl.log 2>&1 && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "  -keyout ca.key -out ca.pem -days 2 -subj /CN=isd-test-ca && "
        "for n in localhost mail.example client; do "
        "  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "    -keyout $n.key -out $n.csr -subj /CN=$n && "
        "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key "
        "    -CAcreateserial -out $n.pem -days 2 || exit 1; "
        "done && "
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
        "  -out other.key";
    return sh(mk, dir);
}

/* Drive a handshake between server s and client c (each on its end of a
 * socket pair, non-blocking) to the end: 1 both done, 0 one failed. */
static int handshake(SSL *s, SSL *c)
{
    int i, sd = 0, cd = 0;

    for (i = 0; i < 200 && (!sd || !cd); i++) {
        if (!cd) {
            int r = SSL_do_handshake(c);
            if (r == 1)
                cd = 1;
            else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ
                     && SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
                return 0;
        }
        if (!sd) {
            int r = SSL_do_handshake(s);
            if (r == 1)
                sd = 1;
            else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ
                     && SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
                return 0;
        }
    }
    /* TLS 1.3: the server learns of a bad client certificate on its
     * first read after the client's Finished */
    {
        char b;
        int r = SSL_read(s, &b, 1);
        if (r <= 0 && SSL_get_error(s, r) != SSL_ERROR_WANT_READ)
            return 0;
    }
    return sd && cd;
}

typedef struct hs {
    int    ok;
    char   cn[64];          /* the certificate the client got */
    char   alpn[32];
    int    version;
    char   peer_cn[64];     /* the client's, as the server saw it */
} hs;

/* One connection: a client with sni/alpn/its certificate (NULL: none)
 * and the least/most versions, against context t. */
static hs connect_one(isd_tls_ctx *t, const char *sni, const char *alpn_wire,
                      unsigned alpn_len, const char *client_cert,
                      int max_version)
{
    hs h;
    int sv[2];
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *s, *c;

    memset(&h, 0, sizeof h);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(cctx, max_version);
    if (client_cert) {
        SSL_CTX_use_certificate_file(cctx, path("client.pem"), SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(cctx, path("client.key"), SSL_FILETYPE_PEM);
    }
    s = SSL_new((SSL_CTX *)isd_tls_ctx_ssl_ctx(t));
    c = SSL_new(cctx);
    SSL_set_fd(s, sv[0]);
    SSL_set_fd(c, sv[1]);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    if (alpn_wire)
        SSL_set_alpn_protos(c, (const unsigned char *)alpn_wire, alpn_len);
    h.ok = handshake(s, c);
    if (h.ok) {
        X509 *x = SSL_get1_peer_certificate(c);
        const unsigned char *a;
        unsigned al;
        if (x) {
            X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                      h.cn, sizeof h.cn);
            X509_free(x);
        }
        SSL_get0_alpn_selected(s, &a, &al);
        if (a && al < sizeof h.alpn) {
            memcpy(h.alpn, a, al);
            h.alpn[al] = '\0';
        }
        h.version = SSL_version(s);
        x = SSL_get1_peer_certificate(s);
        if (x) {
            X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                      h.peer_cn, sizeof h.peer_cn);
            X509_free(x);
        }
    }
    SSL_free(s);
    SSL_free(c);
    SSL_CTX_free(cctx);
    close(sv[0]);
    close(sv[1]);
    ERR_clear_error();
    return h;
}

/* ------------------------------------------- connections (isd_tls_conn) */

typedef struct pair {
    int           sv[2];
    SSL_CTX      *cctx;
    SSL          *c;        /* the client: OpenSSL itself */
    isd_tls_conn *s;        /* the server: ours */
} pair;

static int pair_open(pair *p, isd_tls_ctx *t, const char *sni, int cert)
{
    memset(p, 0, sizeof *p);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv) < 0)
        return -1;
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
    if (cert) {
        SSL_CTX_use_certificate_file(p->cctx, path(cert == 1 ? "client.pem" : "other.pem"),
                                     SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(p->cctx, path(cert == 1 ? "client.key" : "other.key"),
                                    SSL_FILETYPE_PEM);
    }
    p->c = SSL_new(p->cctx);
    SSL_set_fd(p->c, p->sv[1]);
    SSL_set_connect_state(p->c);
    if (sni)
        SSL_set_tlsext_host_name(p->c, sni);
    SSL_set_alpn_protos(p->c, (const unsigned char *)"\x02h2", 3);
    p->s = isd_tls_conn_new(t, p->sv[0]);
    return p->s ? 0 : -1;
}

static void pair_close(pair *p)
{
    isd_tls_conn_free(p->s);
    SSL_free(p->c);
    SSL_CTX_free(p->cctx);
    close(p->sv[0]);
    if (p->sv[1] >= 0)
        close(p->sv[1]);
    ERR_clear_error();
}

/* both handshakes: 1 done, -1 the server's failed */
static int pair_handshake(pair *p)
{
    int i, sd = 0, cd = 0, r;
    unsigned want;

    for (i = 0; i < 200 && !sd; i++) {
        if (!cd && SSL_do_handshake(p->c) == 1)
            cd = 1;
        r = isd_tls_handshake(p->s, &want);
        if (r < 0)
            return -1;
        if (r == 1)
            sd = 1;
        else if (!want)
            return -1;
    }
    if (!cd)
        SSL_do_handshake(p->c);
    return sd ? 1 : -1;
}

/* the server reads until n bytes or nothing more comes */
static size_t srv_read_all(pair *p, char *buf, size_t n)
{
    size_t got = 0;
    int i;
    unsigned want;

    for (i = 0; i < 1000 && got < n; i++) {
        ssize_t r = isd_tls_read(p->s, buf + got, n - got, &want);
        if (r > 0)
            got += (size_t)r;
        else
            break;
    }
    return got;
}

static void test_conns(isd_tls_ctx *t, isd_tls_ctx *tv)
{
    pair p;
    char buf[4096], big_in[4096];
    unsigned want;
    ssize_t r;
    size_t w;
    isd_tls_info in;

    if (!ok(pair_open(&p, t, "mail.example", 0) == 0, "conn: made"))
        return;
    ok(isd_tls_handshake(p.s, &want) == 0 && want == ISD_READ,
       "conn: handshake waits to read the ClientHello");
    ok(pair_handshake(&p) == 1, "conn: handshake done");
    isd_tls_info_get(p.s, &in);
    is_str(in.version, "TLSv1.3", "conn: version");
    ok(in.cipher && strncmp(in.cipher, "TLS_", 4) == 0, "conn: cipher %s", in.cipher ? in.cipher : "-");
    is_str(in.sni ? in.sni : "-", "mail.example", "conn: the SNI name");
    ok(in.alpn && in.alpnlen == 2 && memcmp(in.alpn, "h2", 2) == 0, "conn: ALPN h2");
    ok(!in.peer_verified, "conn: no client certificate");
    r = isd_tls_read(p.s, buf, sizeof buf, &want);
    ok(r < 0 && errno == EAGAIN && want == ISD_READ, "conn: nothing to read: EAGAIN, want read");
    SSL_write(p.c, "hello\n", 6);
    w = srv_read_all(&p, buf, 6);
    is_mem(buf, w, "hello\n", 6, "conn: read what the client wrote");

    /* small pieces: gathered into a record; all of it arrives */
    {
        struct iovec iov[3] = { { "one ", 4 }, { "two ", 4 }, { "three\n", 6 } };
        r = isd_tls_writev(p.s, iov, 3, &want);
        is_int((int)r, 14, "conn: writev of three pieces takes all 14 bytes");
        r = SSL_read(p.c, buf, sizeof buf);
        is_mem(buf, r > 0 ? (size_t)r : 0, "one two three\n", 14, "conn: the client reads them whole");
    }

    /* a big queue against a client that does not read: EAGAIN, want
     * write; then the same head again as the client reads: byte-exact */
    {
        static char big[1 << 20];
        size_t sent = 0, rcvd = 0, i;
        int eagain = 0, bad = 0, rounds;
        for (i = 0; i < sizeof big; i++)
            big[i] = (char)('a' + i % 26);
        for (rounds = 0; rounds < 100000 && (sent < sizeof big || rcvd < sizeof big); rounds++) {
            if (sent < sizeof big) {
                struct iovec v = { big + sent, sizeof big - sent };
                r = isd_tls_writev(p.s, &v, 1, &want);
                if (r > 0)
                    sent += (size_t)r;
                else if (errno == EAGAIN && want == ISD_WRITE)
                    eagain++;
                else
                    break;
            }
            if (eagain && (rounds % 4 == 0 || sent == sizeof big)) {
                int k = SSL_read(p.c, big_in, sizeof big_in);
                if (k > 0) {
                    for (i = 0; i < (size_t)k; i++)
                        if (big_in[i] != (char)('a' + (rcvd + i) % 26))
                            bad++;
                    rcvd += (size_t)k;
                }
            }
        }
        ok(eagain > 0, "conn: 1 MiB to a client that does not read: EAGAIN, want write (%d times)", eagain);
        ok(sent == sizeof big && rcvd == sizeof big && !bad,
           "conn: then all of it, byte-exact, as it reads (%zu sent, %zu read)", sent, rcvd);
    }

    /* close_notify from the client: 0 */
    SSL_shutdown(p.c);
    r = isd_tls_read(p.s, buf, sizeof buf, &want);
    is_int((int)r, 0, "conn: the client's close_notify reads as EOF");
    ok(isd_tls_shutdown(p.s, &want) == 1, "conn: ours sent back");
    pair_close(&p);

    /* the peer goes without close_notify: ECONNRESET */
    pair_open(&p, t, NULL, 0);
    pair_handshake(&p);
    SSL_write(p.c, "x", 1);
    close(p.sv[1]);
    p.sv[1] = -1;
    w = srv_read_all(&p, buf, 1);
    r = isd_tls_read(p.s, buf, sizeof buf, &want);
    ok(w == 1 && r < 0 && errno == ECONNRESET, "conn: a client that goes without close_notify: ECONNRESET (%s)",
       isd_tls_error(p.s));
    pair_close(&p);

    /* our close_notify: the client reads 0 */
    pair_open(&p, t, NULL, 0);
    pair_handshake(&p);
    ok(isd_tls_shutdown(p.s, &want) == 1, "conn: shutdown sends close_notify");
    {
        int k = SSL_read(p.c, buf, sizeof buf);
        ok(k <= 0 && SSL_get_error(p.c, k) == SSL_ERROR_ZERO_RETURN, "conn: the client sees it");
    }
    pair_close(&p);

    /* plain text on a TLS connection: EPROTO, with OpenSSL's reason */
    pair_open(&p, t, NULL, 0);
    if (write(p.sv[1], "GET / HTTP/1.0\r\n\r\n", 18) != 18)
        diag("write failed");
    ok(isd_tls_handshake(p.s, &want) < 0 && errno == EPROTO, "conn: plain HTTP: the handshake fails (%s)",
       isd_tls_error(p.s));
    ok(isd_tls_error(p.s)[0] != '\0', "conn: ... with a reason");
    pair_close(&p);

    /* a client certificate: verified, its subject; a bad one refused */
    if (tv) {
        char sub[200], iss[200];
        pair_open(&p, tv, NULL, 1);
        ok(pair_handshake(&p) == 1, "conn: a client certificate of the CA: handshake");
        {
            /* (TLS 1.3: the server checks it after the client's Finished) */
            r = isd_tls_read(p.s, buf, sizeof buf, &want);
        }
        isd_tls_info_get(p.s, &in);
        ok(in.peer_verified, "conn: verified");
        is_str(isd_tls_peer_subject(p.s, sub, sizeof sub), "CN=client", "conn: its subject");
        is_str(isd_tls_peer_issuer(p.s, iss, sizeof iss), "CN=isd-test-ca", "conn: its issuer");
        pair_close(&p);
        pair_open(&p, tv, NULL, 0);
        r = pair_handshake(&p);
        if (r == 1)
            r = isd_tls_read(p.s, buf, sizeof buf, &want);
        ok(r < 0 && errno == EPROTO, "conn: no client certificate where one is required: refused (%s)",
           isd_tls_error(p.s));
        pair_close(&p);
    }
}

static isd_tls_ctx *ctx_or_diag(const isd_tls_opts *o, char *err, size_t n)
{
    isd_tls_ctx *t = isd_tls_ctx_new(o, err, n);
    if (!t)
        diag("isd_tls_ctx_new: %s", err);
    return t;
}

int main(void)
{
    char err[512];
    isd_tls_opts o;
    isd_tls_ctx *t;
    hs h;

    alarm(60);
    snprintf(dir, sizeof dir, "%s/isd-tls-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir) || system("openssl version >/dev/null 2>&1") != 0) {
        tap_skip_all("no openssl command to make certificates with");
        return 0;
    }
    ok(isd_tls_available(), "built with OpenSSL: %s", isd_tls_version());
    if (!ok(make_certs() == 0, "certificates made (openssl req, x509)")) {
        sh("cat %s/openssl.log >&2", dir);
        sh("rm -rf %s", dir);
        return done_testing();
    }

    /* the plain case */
    memset(&o, 0, sizeof o);
    o.cert_file = path("localhost.pem");
    o.key_file = path("localhost.key");
    t = ctx_or_diag(&o, err, sizeof err);
    ok(t != NULL, "a context of a certificate and its key");
    h = connect_one(t, NULL, NULL, 0, NULL, 0);
    ok(h.ok, "a handshake");
    is_str(h.cn, "localhost", "the client got the certificate");
    is_int(h.version, TLS1_3_VERSION, "TLS 1.3 by default");
    h = connect_one(t, NULL, NULL, 0, NULL, TLS1_2_VERSION);
    ok(h.ok && h.version == TLS1_2_VERSION, "a TLS 1.2 client is served");
    h = connect_one(t, NULL, NULL, 0, NULL, TLS1_1_VERSION);
    ok(!h.ok, "a TLS 1.1 client is refused (least: 1.2)");
    ok(isd_tls_ctx_ref(t) == t, "ref");
    isd_tls_ctx_unref(t);
    isd_tls_ctx_unref(t);

    o.min_version = TLS1_3_VERSION;
    t = ctx_or_diag(&o, err, sizeof err);
    h = connect_one(t, NULL, NULL, 0, NULL, TLS1_2_VERSION);
    ok(t && !h.ok, "min_version 1.3: a 1.2 client is refused");
    isd_tls_ctx_unref(t);
    o.min_version = 0;

    /* bad files and settings: NULL, and a reason naming what */
    o.cert_file = path("nope.pem");
    ok(!isd_tls_ctx_new(&o, err, sizeof err), "a missing cert_file fails");
    ok(strstr(err, "cert_file ") && strstr(err, "nope.pem: No such file"), "... naming it: %s", err);
    o.cert_file = path("localhost.pem");
    o.key_file = path("other.key");
    ok(!isd_tls_ctx_new(&o, err, sizeof err), "a key of another certificate fails");
    ok(strstr(err, "does not go with cert_file") != NULL, "... saying so: %s", err);
    o.key_file = path("ca.pem");
    ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "no private key"),
       "a certificate as the key fails: %s", err);
    o.key_file = NULL;
    ok(!isd_tls_ctx_new(&o, err, sizeof err), "no key_file, none in cert_file: fails: %s", err);
    o.key_file = path("localhost.key");
    o.ciphers = "NOT-A-CIPHER";
    ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "ciphers 'NOT-A-CIPHER'"),
       "bad ciphers: %s", err);
    o.ciphers = NULL;
    o.ciphersuites = "TLS_NOPE";
    ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "ciphersuites 'TLS_NOPE'"),
       "bad ciphersuites: %s", err);
    o.ciphersuites = NULL;
    o.verify = ISD_TLS_VERIFY_REQUIRE;
    ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "needs ca_file"),
       "verify_client without a CA: %s", err);
    o.verify = 0;
    {
        const char *bad[] = { "h2", "", NULL };
        o.alpn = bad;
        ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "alpn: ''"),
           "an empty ALPN name: %s", err);
        o.alpn = NULL;
    }

    /* ALPN: the server's preference wins; none in common: none */
    {
        const char *alpn[] = { "h2", "http/1.1", NULL };
        o.alpn = alpn;
        t = ctx_or_diag(&o, err, sizeof err);
        h = connect_one(t, NULL, "\x08http/1.1\x02h2", 12, NULL, 0);
        ok(h.ok, "ALPN: a handshake");
        is_str(h.alpn, "h2", "ALPN: the server's first choice the client has");
        h = connect_one(t, NULL, "\x08http/1.1", 9, NULL, 0);
        is_str(h.alpn, "http/1.1", "ALPN: the one in common");
        h = connect_one(t, NULL, "\x06spdy/3", 7, NULL, 0);
        ok(h.ok && !h.alpn[0], "ALPN: none in common: served, none agreed");
        isd_tls_ctx_unref(t);
        o.alpn = NULL;
    }

    /* SNI */
    {
        isd_tls_sni sni[2];
        sni[0].host = "Mail.Example";
        sni[0].cert_file = path("mail.example.pem");
        sni[0].key_file = path("mail.example.key");
        sni[1].host = "*.wild.example";
        sni[1].cert_file = path("mail.example.pem");
        sni[1].key_file = path("mail.example.key");
        o.sni = sni;
        o.nsni = 2;
        t = ctx_or_diag(&o, err, sizeof err);
        h = connect_one(t, "mail.example", NULL, 0, NULL, 0);
        is_str(h.cn, "mail.example", "SNI: the named certificate");
        h = connect_one(t, "MAIL.example", NULL, 0, NULL, 0);
        is_str(h.cn, "mail.example", "SNI: any case");
        h = connect_one(t, "a.wild.example", NULL, 0, NULL, 0);
        is_str(h.cn, "mail.example", "SNI: a wildcard, one label");
        h = connect_one(t, "a.b.wild.example", NULL, 0, NULL, 0);
        is_str(h.cn, "localhost", "SNI: not two labels: the default");
        h = connect_one(t, "other.example", NULL, 0, NULL, 0);
        is_str(h.cn, "localhost", "SNI: an unknown name: the default");
        h = connect_one(t, NULL, NULL, 0, NULL, 0);
        is_str(h.cn, "localhost", "SNI: none: the default");
        isd_tls_ctx_unref(t);
        sni[1].key_file = path("other.key");
        ok(!isd_tls_ctx_new(&o, err, sizeof err)
           && strstr(err, "sni *.wild.example: key_file"), "SNI: a bad pair fails, naming it: %s", err);
        o.sni = NULL;
        o.nsni = 0;
    }

    /* client certificates */
    o.ca_file = path("ca.pem");
    o.verify = ISD_TLS_VERIFY_REQUIRE;
    t = ctx_or_diag(&o, err, sizeof err);
    h = connect_one(t, NULL, NULL, 0, "client", 0);
    ok(h.ok, "verify require: a client with a certificate of the CA");
    is_str(h.peer_cn, "client", "... the server sees it");
    h = connect_one(t, NULL, NULL, 0, NULL, 0);
    ok(!h.ok, "verify require: a client without one is refused");
    isd_tls_ctx_unref(t);
    o.verify = ISD_TLS_VERIFY_OPTIONAL;
    t = ctx_or_diag(&o, err, sizeof err);
    h = connect_one(t, NULL, NULL, 0, NULL, 0);
    ok(h.ok && !h.peer_cn[0], "verify optional: a client without one is served");
    h = connect_one(t, NULL, NULL, 0, "client", 0);
    ok(h.ok && strcmp(h.peer_cn, "client") == 0, "verify optional: one with one too");
    isd_tls_ctx_unref(t);
    {
        /* connections: SNI and ALPN contexts, and a verifying one */
        isd_tls_opts oc;
        isd_tls_sni sni = { "mail.example", NULL, NULL };
        const char *alpn[] = { "h2", NULL };
        isd_tls_ctx *tc1, *tv;
        memset(&oc, 0, sizeof oc);
        oc.cert_file = path("localhost.pem");
        oc.key_file = path("localhost.key");
        sni.cert_file = path("mail.example.pem");
        sni.key_file = path("mail.example.key");
        oc.sni = &sni;
        oc.nsni = 1;
        oc.alpn = alpn;
        tc1 = ctx_or_diag(&oc, err, sizeof err);
        oc.sni = NULL;
        oc.nsni = 0;
        oc.ca_file = path("ca.pem");
        oc.verify = ISD_TLS_VERIFY_REQUIRE;
        tv = ctx_or_diag(&oc, err, sizeof err);
        if (tc1)
            test_conns(tc1, tv);
        isd_tls_ctx_unref(tc1);
        isd_tls_ctx_unref(tv);
    }
    o.ca_file = path("nope-ca.pem");
    ok(!isd_tls_ctx_new(&o, err, sizeof err) && strstr(err, "ca_file"),
       "a missing ca_file: %s", err);

    sh("rm -rf %s", dir);
    paths_free();
    return done_testing();
}

#else /* !ISD_HAVE_OPENSSL */

int main(void)
{
    char err[512];
    isd_tls_opts o;

    memset(&o, 0, sizeof o);
    o.cert_file = "x.pem";
    ok(!isd_tls_available(), "built without OpenSSL");
    ok(!isd_tls_ctx_new(&o, err, sizeof err), "no context");
    ok(strstr(err, "built without OpenSSL") && strstr(err, "libssl-dev"),
       "... saying how to get one: %s", err);
    return done_testing();
}

#endif
