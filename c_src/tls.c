/*
 * tls.c - TLS server contexts (OpenSSL): what a listener's certificates,
 * client verification, versions, ciphers, ALPN and SNI become, made once
 * and shared (counted) by the connections that use them.  A reload makes
 * a new context: open connections keep the one they started with.
 *
 * Built with OpenSSL when Makefile.PL finds it (ISD_HAVE_OPENSSL); without
 * it every context fails to be made, saying so (isd_tls_available() 0).
 */
#include "isd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <dirent.h>

#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0   /* SO_NOSIGPIPE is set at accept instead */
#endif

#ifdef ISD_HAVE_OPENSSL

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>

struct isd_tls_ctx {
    unsigned       refs;
    SSL_CTX       *ctx;       /* the default certificate's */
    size_t         nsni;
    SSL_CTX      **sni_ctx;   /* ... and one per SNI name */
    char         **sni_host;  /* lower case; "*.example" a wildcard */
    unsigned char *alpn;      /* the server's protocols, wire format */
    unsigned       alpnlen;
};

int isd_tls_available(void) { return 1; }

const char *isd_tls_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/* "what: reason" of OpenSSL's last error (the queue emptied), or of errno */
static void tls_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256];

    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        /* "error:0A00018F:SSL routines::ee key too small": the reason */
        {
            const char *r = strrchr(buf, ':');
            snprintf(err, errlen, "%s: %s", what, r && r[1] ? r + 1 : buf);
        }
    } else {
        snprintf(err, errlen, "%s: %s", what, strerror(errno ? errno : EINVAL));
    }
    ERR_clear_error();
}

static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    const isd_tls_ctx *t = arg;
    unsigned char *o = NULL;

    (void)ssl;
    /* the server's preference first; no protocol in common: none agreed
     * (the connection goes on without ALPN, $io->tls->{alpn} undef) */
    if (!t->alpn || SSL_select_next_proto(&o, outlen, t->alpn, t->alpnlen,
                                          in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

/* Whether host (as the client sent it) is name: equal but for case, or
 * "*.rest" against one more label ending in ".rest". */
static int sni_match(const char *name, const char *host)
{
    if (name[0] == '*' && name[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot && dot != host && strcasecmp(dot + 1, name + 2) == 0;
    }
    return strcasecmp(name, host) == 0;
}

static int sni_select(SSL *ssl, int *alert, void *arg)
{
    const isd_tls_ctx *t = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    size_t i;

    (void)alert;
    if (!host)
        return SSL_TLSEXT_ERR_OK;       /* no SNI: the default */
    for (i = 0; i < t->nsni; i++)       /* exact names first */
        if (t->sni_host[i][0] != '*' && sni_match(t->sni_host[i], host))
            break;
    if (i == t->nsni)
        for (i = 0; i < t->nsni; i++)
            if (t->sni_host[i][0] == '*' && sni_match(t->sni_host[i], host))
                break;
    if (i < t->nsni)
        SSL_set_SSL_CTX(ssl, t->sni_ctx[i]);
    return SSL_TLSEXT_ERR_OK;           /* unknown names: the default */
}

static const unsigned char sid_ctx[] = "IO::Socket::INET::Daemon";

/* what: file, or -1 with err when it cannot be read (OpenSSL's own word
 * for that is "system lib") */
static int readable(const char *what, const char *file, char *err,
                    size_t errlen)
{
    FILE *f = fopen(file, "r");

    if (!f) {
        snprintf(err, errlen, "%s %s: %s", what, file, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* A context for one certificate, with o's settings. */
static SSL_CTX *ctx_for(const isd_tls_opts *o, const char *cert,
                        const char *key, isd_tls_ctx *t, char *err,
                        size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    char what[600];
    int min = o->min_version ? o->min_version : TLS1_2_VERSION;

    if (!c) {
        tls_err(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                           | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS
                        | SSL_MODE_ENABLE_PARTIAL_WRITE
                        | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_CTX_set_min_proto_version(c, min)) {
        snprintf(err, errlen, "min_version: 0x%04x is not a TLS version "
                 "this OpenSSL has", (unsigned)min);
        goto fail;
    }
    if (!cert || !*cert) {
        snprintf(err, errlen, "cert_file: none given");
        goto fail;
    }
    snprintf(what, sizeof what, "cert_file %s", cert);
    if (readable("cert_file", cert, err, errlen) < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM)
            snprintf(what, sizeof what, "cert_file %s: no PEM certificate "
                     "in it", cert);
        tls_err(err, errlen, what);
        goto fail;
    }
    if (!key || !*key)
        key = cert;
    snprintf(what, sizeof what, "key_file %s", key);
    if (readable("key_file", key, err, errlen) < 0)
        goto fail;
    if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof what, "key_file %s does not go with "
                     "cert_file %s", key, cert);
        else if (ERR_GET_LIB(e) == ERR_LIB_PEM || ERR_GET_LIB(e) == ERR_LIB_SSL)
            snprintf(what, sizeof what, "key_file %s: no private key in it "
                     "(PEM)", key);
        tls_err(err, errlen, what);
        goto fail;
    }
    snprintf(what, sizeof what, "key_file %s does not go with cert_file %s",
             key, cert);
    if (SSL_CTX_check_private_key(c) != 1) {
        tls_err(err, errlen, what);
        goto fail;
    }
    if (o->ciphers && *o->ciphers && !SSL_CTX_set_cipher_list(c, o->ciphers)) {
        snprintf(what, sizeof what, "ciphers '%s'", o->ciphers);
        tls_err(err, errlen, what);
        goto fail;
    }
    if (o->ciphersuites && *o->ciphersuites
        && !SSL_CTX_set_ciphersuites(c, o->ciphersuites)) {
        snprintf(what, sizeof what, "ciphersuites '%s'", o->ciphersuites);
        tls_err(err, errlen, what);
        goto fail;
    }
    if (o->ca_file || o->ca_path) {
        snprintf(what, sizeof what, "ca_file %s / ca_path %s",
                 o->ca_file ? o->ca_file : "-", o->ca_path ? o->ca_path : "-");
        if (o->ca_file && readable("ca_file", o->ca_file, err, errlen) < 0)
            goto fail;
        if (o->ca_path) {
            DIR *dp = opendir(o->ca_path);
            if (!dp) {
                snprintf(err, errlen, "ca_path %s: %s", o->ca_path,
                         strerror(errno));
                goto fail;
            }
            closedir(dp);
        }
        if (SSL_CTX_load_verify_locations(c, o->ca_file, o->ca_path) != 1) {
            tls_err(err, errlen, what);
            goto fail;
        }
        if (o->ca_file) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(c, names);
        }
    }
    if (o->verify != ISD_TLS_VERIFY_NONE) {
        if (!o->ca_file && !o->ca_path) {
            snprintf(err, errlen, "verify_client: needs ca_file or ca_path "
                     "(the CAs client certificates are checked against)");
            goto fail;
        }
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER
                              | (o->verify == ISD_TLS_VERIFY_REQUIRE
                                 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
    }
    /* (sessions resumed across connections need it once peers are checked) */
    SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1);
    if (t->alpn)
        SSL_CTX_set_alpn_select_cb(c, alpn_select, t);
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

static void ctx_free(isd_tls_ctx *t)
{
    size_t i;

    if (t->ctx)
        SSL_CTX_free(t->ctx);
    for (i = 0; i < t->nsni; i++) {
        if (t->sni_ctx && t->sni_ctx[i])
            SSL_CTX_free(t->sni_ctx[i]);
        if (t->sni_host)
            free(t->sni_host[i]);
    }
    free(t->sni_ctx);
    free(t->sni_host);
    free(t->alpn);
    free(t);
}

isd_tls_ctx *isd_tls_ctx_new(const isd_tls_opts *o, char *err, size_t errlen)
{
    isd_tls_ctx *t;
    size_t i, n;

    ERR_clear_error();
    if (!(t = calloc(1, sizeof *t)))
        goto nomem;
    t->refs = 1;
    /* ALPN: the names, in the server's order of preference */
    for (n = 0; o->alpn && o->alpn[n]; n++) {
        size_t l = strlen(o->alpn[n]);
        unsigned char *a;
        if (l == 0 || l > 255) {
            snprintf(err, errlen, "alpn: '%s' is not a protocol name "
                     "(1 to 255 bytes)", o->alpn[n]);
            ctx_free(t);
            errno = EINVAL;
            return NULL;
        }
        if (!(a = realloc(t->alpn, t->alpnlen + 1 + l))) {
            ctx_free(t);
            goto nomem;
        }
        t->alpn = a;
        a[t->alpnlen] = (unsigned char)l;
        memcpy(a + t->alpnlen + 1, o->alpn[n], l);
        t->alpnlen += 1 + (unsigned)l;
    }
    if (!(t->ctx = ctx_for(o, o->cert_file, o->key_file, t, err, errlen))) {
        ctx_free(t);
        errno = EINVAL;
        return NULL;
    }
    if (o->nsni) {
        if (!(t->sni_ctx = calloc(o->nsni, sizeof *t->sni_ctx))
            || !(t->sni_host = calloc(o->nsni, sizeof *t->sni_host))) {
            ctx_free(t);
            goto nomem;
        }
        for (i = 0; i < o->nsni; i++) {
            const isd_tls_sni *s = &o->sni[i];
            char pre[300], *p;
            if (!s->host || !*s->host) {
                snprintf(err, errlen, "sni: an empty host name");
                ctx_free(t);
                errno = EINVAL;
                return NULL;
            }
            t->nsni = i + 1;
            if (!(t->sni_host[i] = strdup(s->host))) {
                ctx_free(t);
                goto nomem;
            }
            for (p = t->sni_host[i]; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            if (!(t->sni_ctx[i] = ctx_for(o, s->cert_file, s->key_file, t,
                                          pre, sizeof pre))) {
                snprintf(err, errlen, "sni %s: %s", s->host, pre);
                ctx_free(t);
                errno = EINVAL;
                return NULL;
            }
        }
        SSL_CTX_set_tlsext_servername_callback(t->ctx, sni_select);
        SSL_CTX_set_tlsext_servername_arg(t->ctx, t);
    }
    return t;
nomem:
    snprintf(err, errlen, "out of memory");
    errno = ENOMEM;
    return NULL;
}

isd_tls_ctx *isd_tls_ctx_ref(isd_tls_ctx *t)
{
    if (t)
        t->refs++;
    return t;
}

void isd_tls_ctx_unref(isd_tls_ctx *t)
{
    if (t && --t->refs == 0)
        ctx_free(t);
}

void *isd_tls_ctx_ssl_ctx(const isd_tls_ctx *t)
{
    return t ? t->ctx : NULL;
}

/* ------------------------------------------------------------ connections */

#define TLS_RECORD 16384        /* the most a record holds */

struct isd_tls_conn {
    SSL         *ssl;
    isd_tls_ctx *t;
    int          fd;
    int          started;       /* the handshake is done */
    int          dead;          /* a fatal error: no close_notify */
    int          reneg;         /* the peer asked to renegotiate */
    size_t       wpending;      /* a write to repeat: its length */
    unsigned long long rbytes;  /* bytes received from the socket */
    char        *pre;           /* bytes read before us (fed): first */
    size_t       prelen, prepos;
    char         err[300];
};

/* The socket BIO of our own: recv and send with MSG_NOSIGNAL (a peer gone
 * must not raise SIGPIPE in the embedder's process), EINTR retried, and
 * the bytes fed before the handshake read first. */
static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *out, int len)
{
    isd_tls_conn *tc = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (tc->prepos < tc->prelen) {
        size_t k = tc->prelen - tc->prepos;
        if (k > (size_t)len)
            k = (size_t)len;
        memcpy(out, tc->pre + tc->prepos, k);
        tc->prepos += k;
        if (tc->prepos == tc->prelen) {
            free(tc->pre);
            tc->pre = NULL;
            tc->prelen = tc->prepos = 0;
        }
        return (int)k;
    }
    do
        n = recv(tc->fd, out, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        tc->rbytes += (unsigned long long)n;
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static int bio_write(BIO *b, const char *in, int len)
{
    isd_tls_conn *tc = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    do
        n = send(tc->fd, in, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "isd socket");

    if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write)
        && BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_meth = m;
    else if (m)
        BIO_meth_free(m);
}

/* A renegotiation (TLS 1.2: a ClientHello after the handshake) is refused
 * by OpenSSL with a warning the peer may ignore; we end the connection. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    isd_tls_conn *tc = SSL_get_app_data(ssl);

    (void)ret;
    if ((where & SSL_CB_HANDSHAKE_START) && tc && tc->started
        && SSL_version(ssl) < TLS1_3_VERSION)
        tc->reneg = 1;
}

isd_tls_conn *isd_tls_conn_new(isd_tls_ctx *t, int fd)
{
    isd_tls_conn *tc;
    BIO *b;

    pthread_once(&bio_once, bio_init);
    if (!bio_meth || !(tc = calloc(1, sizeof *tc))) {
        errno = ENOMEM;
        return NULL;
    }
    tc->fd = fd;
    if (!(tc->ssl = SSL_new(t->ctx)) || !(b = BIO_new(bio_meth))) {
        SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        errno = ENOMEM;
        return NULL;
    }
    BIO_set_data(b, tc);
    SSL_set_bio(tc->ssl, b, b);
    SSL_set_app_data(tc->ssl, tc);
    SSL_set_info_callback(tc->ssl, info_cb);
    SSL_set_read_ahead(tc->ssl, 1);     /* a recv for many records */
    SSL_set_accept_state(tc->ssl);
    tc->t = isd_tls_ctx_ref(t);
    return tc;
}

int isd_tls_conn_feed(isd_tls_conn *tc, const void *p, size_t n)
{
    char *q;

    if (!n)
        return 0;
    if (!(q = realloc(tc->pre, tc->prelen + n))) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(q + tc->prelen, p, n);
    tc->pre = q;
    tc->prelen += n;
    tc->rbytes += n;
    return 0;
}

int isd_tls_pending(const isd_tls_conn *tc)
{
    return SSL_has_pending(tc->ssl) || tc->prepos < tc->prelen;
}

void isd_tls_conn_free(isd_tls_conn *tc)
{
    if (!tc)
        return;
    SSL_free(tc->ssl);
    free(tc->pre);
    isd_tls_ctx_unref(tc->t);
    free(tc);
}

const char *isd_tls_error(const isd_tls_conn *tc) { return tc->err; }

/* r, the result of an SSL call that failed: -1 with errno and *want (or
 * 0 at close_notify), tc->err saying why a failure is one. */
static int tls_fail(isd_tls_conn *tc, int r, unsigned *want)
{
    int e = SSL_get_error(tc->ssl, r), saved = errno;
    const char *pfx = tc->started ? "TLS" : "TLS handshake";
    unsigned long q;

    *want = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = ISD_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = ISD_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:         /* (close_notify: reads give 0) */
        errno = 0;
        return 0;
    case SSL_ERROR_SYSCALL:
        q = ERR_peek_last_error();
        ERR_clear_error();
        if (!q && (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR)) {
            *want = ISD_READ;           /* (not expected; be safe) */
            errno = EAGAIN;
            return -1;
        }
        tc->dead = 1;
        if (!tc->started) {             /* the core says "not complete" */
            tc->err[0] = 0;
            errno = saved && saved != EPIPE ? saved : ECONNABORTED;
            return -1;
        }
        snprintf(tc->err, sizeof tc->err, "%s: %s", pfx,
                 saved && saved != EPIPE ? strerror(saved)
                 : "the peer went without close_notify");
        errno = saved == EPIPE || !saved ? ECONNRESET : saved;
        return -1;
    default:
        tc->dead = 1;
        q = ERR_peek_last_error();
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
        if (q && ERR_GET_LIB(q) == ERR_LIB_SSL
            && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            if (!tc->started) {
                tc->err[0] = 0;
                errno = ECONNABORTED;
                return -1;
            }
            snprintf(tc->err, sizeof tc->err,
                     "%s: the peer went without close_notify", pfx);
            errno = ECONNRESET;
            return -1;
        }
#endif
        if (q) {
            char buf[256];
            const char *r2;
            ERR_error_string_n(q, buf, sizeof buf);
            r2 = strrchr(buf, ':');
            snprintf(tc->err, sizeof tc->err, "%s: %s", pfx,
                     r2 && r2[1] ? r2 + 1 : buf);
        } else {
            snprintf(tc->err, sizeof tc->err, "%s: error %d", pfx, e);
        }
        {
            long v = SSL_get_verify_result(tc->ssl);
            if (v != X509_V_OK && strstr(tc->err, "certificate"))
                snprintf(tc->err, sizeof tc->err, "%s: client certificate: %s",
                         pfx, X509_verify_cert_error_string(v));
        }
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

int isd_tls_handshake(isd_tls_conn *tc, unsigned *want)
{
    int r;

    ERR_clear_error();
    *want = 0;
    r = SSL_do_handshake(tc->ssl);
    if (r == 1) {
        tc->started = 1;
        return 1;
    }
    if (tls_fail(tc, r, want) < 0 && errno == EAGAIN)
        return 0;
    if (errno == 0 || errno == ECONNABORTED || errno == ECONNRESET) {
        int e = errno ? errno : ECONNABORTED;
        if (errno == 0)                 /* close_notify mid-handshake */
            tc->err[0] = 0;
        errno = tc->rbytes ? e : ENODATA;  /* none at all: a port check */
    }
    return -1;
}

ssize_t isd_tls_read(isd_tls_conn *tc, void *buf, size_t len, unsigned *want)
{
    size_t got = 0;
    int r;

    ERR_clear_error();
    *want = 0;
    r = SSL_read_ex(tc->ssl, buf, len, &got);
    if (tc->reneg) {
        snprintf(tc->err, sizeof tc->err, "TLS: renegotiation refused");
        tc->dead = 1;
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    if (r == 1)
        return (ssize_t)got;
    return tls_fail(tc, r, want);
}

ssize_t isd_tls_writev(isd_tls_conn *tc, const struct iovec *iov, int iovcnt,
                       unsigned *want)
{
    size_t n = 0, done = 0, take;
    const char *p;
    int i, r;
    /* small pieces gathered (made anew on a retry: the same bytes are at
     * the queue's head, and OpenSSL takes them from another address) */
    char gather[TLS_RECORD];

    ERR_clear_error();
    *want = 0;
    if (iovcnt <= 0)
        return 0;
    if (iov[0].iov_len >= TLS_RECORD || iovcnt == 1) {
        /* a big piece (or the only one): as it is, a record at a time */
        p = iov[0].iov_base;
        n = tc->wpending ? tc->wpending : iov[0].iov_len;
    } else {
        /* small pieces: gathered into one record */
        take = tc->wpending ? tc->wpending : TLS_RECORD;
        for (i = 0; i < iovcnt && n < take; i++) {
            size_t k = iov[i].iov_len < take - n ? iov[i].iov_len : take - n;
            memcpy(gather + n, iov[i].iov_base, k);
            n += k;
        }
        p = gather;
    }
    r = SSL_write_ex(tc->ssl, p, n, &done);
    if (r == 1) {
        tc->wpending = 0;
        return (ssize_t)done;
    }
    r = tls_fail(tc, r, want);
    if (r < 0 && errno == EAGAIN)
        tc->wpending = n;               /* (the same bytes next time) */
    else if (r == 0) {                  /* (a write after close_notify) */
        errno = EPIPE;
        r = -1;
    }
    return r;
}

int isd_tls_shutdown(isd_tls_conn *tc, unsigned *want)
{
    int r;

    *want = 0;
    if (tc->dead || !tc->started)
        return 1;                       /* (no close_notify after those) */
    ERR_clear_error();
    r = SSL_shutdown(tc->ssl);
    if (r >= 0)                         /* 0: ours sent, theirs not waited for */
        return 1;
    r = tls_fail(tc, r, want);
    return r < 0 && errno == EAGAIN ? 0 : -1;
}

int isd_tls_info_get(const isd_tls_conn *tc, isd_tls_info *out)
{
    const unsigned char *a = NULL;
    unsigned al = 0;

    memset(out, 0, sizeof *out);
    out->version = SSL_get_version(tc->ssl);
    out->cipher = SSL_get_cipher_name(tc->ssl);
    out->sni = SSL_get_servername(tc->ssl, TLSEXT_NAMETYPE_host_name);
    SSL_get0_alpn_selected(tc->ssl, &a, &al);
    out->alpn = al ? (const char *)a : NULL;
    out->alpnlen = al;
    {
        X509 *x = SSL_get0_peer_certificate(tc->ssl);
        out->peer_verified = x && SSL_get_verify_result(tc->ssl) == X509_V_OK;
    }
    return 0;
}

static const char *name_line(X509_NAME *n, char *buf, size_t len)
{
    BIO *b;
    int k;

    buf[0] = '\0';
    if (!n || !(b = BIO_new(BIO_s_mem())))
        return buf;
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    k = BIO_read(b, buf, (int)len - 1);
    buf[k > 0 ? k : 0] = '\0';
    BIO_free(b);
    return buf;
}

const char *isd_tls_peer_subject(const isd_tls_conn *tc, char *buf, size_t len)
{
    X509 *x = SSL_get0_peer_certificate(tc->ssl);
    if (!x || SSL_get_verify_result(tc->ssl) != X509_V_OK) {
        buf[0] = '\0';
        return buf;
    }
    return name_line(X509_get_subject_name(x), buf, len);
}

const char *isd_tls_peer_issuer(const isd_tls_conn *tc, char *buf, size_t len)
{
    X509 *x = SSL_get0_peer_certificate(tc->ssl);
    if (!x || SSL_get_verify_result(tc->ssl) != X509_V_OK) {
        buf[0] = '\0';
        return buf;
    }
    return name_line(X509_get_issuer_name(x), buf, len);
}

/* ------------------------------------------------------------- transport */

static void *tp_open(isd_conn *c, int fd, void *arg)
{
    isd_tls_ctx *t = *(isd_tls_ctx *const *)arg;

    (void)c;
    if (!t) {
        errno = ENOPROTOOPT;
        return NULL;
    }
    return isd_tls_conn_new(t, fd);
}

static int tp_feed(void *t, const void *p, size_t n)
{
    return isd_tls_conn_feed(t, p, n);
}

static int tp_start(void *t, unsigned *want)
{
    return isd_tls_handshake(t, want);
}

static ssize_t tp_recv(void *t, void *buf, size_t len, unsigned *want)
{
    return isd_tls_read(t, buf, len, want);
}

static ssize_t tp_sendv(void *t, const struct iovec *iov, int iovcnt,
                        unsigned *want)
{
    return isd_tls_writev(t, iov, iovcnt, want);
}

static int tp_pending(void *t)
{
    return isd_tls_pending(t);
}

static void tp_shutdown(void *t)
{
    unsigned want;

    (void)isd_tls_shutdown(t, &want);   /* once, without waiting */
}

static const char *tp_error(void *t)
{
    return isd_tls_error(t);
}

static void tp_free(void *t)
{
    isd_tls_conn_free(t);
}

void isd_tls_transport_init(isd_transport *tp, unsigned timeout_ms)
{
    memset(tp, 0, sizeof *tp);
    tp->open = tp_open;
    tp->feed = tp_feed;
    tp->start = tp_start;
    tp->recv = tp_recv;
    tp->sendv = tp_sendv;
    tp->pending = tp_pending;
    tp->shutdown = tp_shutdown;
    tp->error = tp_error;
    tp->free = tp_free;
    tp->timeout_ms = timeout_ms;
    tp->what = "TLS handshake";
}

isd_tls_conn *isd_conn_tls(const isd_conn *c)
{
    const isd_transport *tp;
    void *t = isd_conn_transport(c, &tp);

    return t && tp->open == tp_open ? t : NULL;
}

#else /* !ISD_HAVE_OPENSSL */

int isd_tls_available(void) { return 0; }
const char *isd_tls_version(void) { return NULL; }

isd_tls_ctx *isd_tls_ctx_new(const isd_tls_opts *o, char *err, size_t errlen)
{
    (void)o;
    snprintf(err, errlen, "built without OpenSSL (install its headers, "
             "e.g. apt-get install libssl-dev, and rebuild: perl Makefile.PL "
             "&& make)");
    errno = ENOTSUP;
    return NULL;
}

isd_tls_ctx *isd_tls_ctx_ref(isd_tls_ctx *t) { return t; }
void isd_tls_ctx_unref(isd_tls_ctx *t) { (void)t; }
void *isd_tls_ctx_ssl_ctx(const isd_tls_ctx *t) { (void)t; return NULL; }

/* (no context can be made: no connection either) */
isd_tls_conn *isd_tls_conn_new(isd_tls_ctx *t, int fd)
{
    (void)t; (void)fd;
    errno = ENOTSUP;
    return NULL;
}
void isd_tls_conn_free(isd_tls_conn *tc) { (void)tc; }
int isd_tls_conn_feed(isd_tls_conn *tc, const void *p, size_t n)
{ (void)tc; (void)p; (void)n; errno = ENOSYS; return -1; }
int isd_tls_pending(const isd_tls_conn *tc) { (void)tc; return 0; }
void isd_tls_transport_init(isd_transport *tp, unsigned timeout_ms)
{ memset(tp, 0, sizeof *tp); tp->timeout_ms = timeout_ms; }
isd_tls_conn *isd_conn_tls(const isd_conn *c) { (void)c; return NULL; }
int isd_tls_handshake(isd_tls_conn *tc, unsigned *want)
{ (void)tc; *want = 0; errno = ENOTSUP; return -1; }
ssize_t isd_tls_read(isd_tls_conn *tc, void *buf, size_t len, unsigned *want)
{ (void)tc; (void)buf; (void)len; *want = 0; errno = ENOTSUP; return -1; }
ssize_t isd_tls_writev(isd_tls_conn *tc, const struct iovec *iov, int iovcnt,
                       unsigned *want)
{ (void)tc; (void)iov; (void)iovcnt; *want = 0; errno = ENOTSUP; return -1; }
int isd_tls_shutdown(isd_tls_conn *tc, unsigned *want)
{ (void)tc; *want = 0; errno = ENOTSUP; return -1; }
const char *isd_tls_error(const isd_tls_conn *tc) { (void)tc; return ""; }
int isd_tls_info_get(const isd_tls_conn *tc, isd_tls_info *out)
{ (void)tc; memset(out, 0, sizeof *out); errno = ENOTSUP; return -1; }
const char *isd_tls_peer_subject(const isd_tls_conn *tc, char *buf, size_t len)
{ (void)tc; if (len) buf[0] = '\0'; return buf; }
const char *isd_tls_peer_issuer(const isd_tls_conn *tc, char *buf, size_t len)
{ (void)tc; if (len) buf[0] = '\0'; return buf; }

#endif
