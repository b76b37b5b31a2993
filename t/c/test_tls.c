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
