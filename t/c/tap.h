/*
 * tap.h - a tiny TAP producer for the C unit tests in t/c/.
 *
 * Header only, no dependencies beyond libc.  Usage:
 *
 *     #include "tap.h"
 *     int main(void) {
 *         ok(1 + 1 == 2, "addition works");
 *         is_int(strlen("abc"), 3, "strlen of %s", "abc");
 *         is_str(name, "expected", "name is %s", "expected");
 *         is_mem(buf, n, "abc", 3, "bytes");
 *         diag("some detail: %d", 42);
 *         return done_testing();
 *     }
 *
 * tap_subtest(fn, "name") runs fn in a child process (see below).
 *
 * ok()/is_*() return non-zero when the test passed.  done_testing() prints
 * the plan (unless plan() was called) and returns the exit status: 0 if every
 * test passed and the count matched the plan, 1 otherwise.
 * Output goes to stdout and is flushed after every line, so a crash leaves
 * everything printed so far intact; diagnostics go to stderr, as "# ..." lines.
 */
#ifndef ISD_TAP_H
#define ISD_TAP_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_run_    = 0;   /* tests run */
static int tap_failed_ = 0;   /* tests failed */
static int tap_planned_ = -1; /* plan(n), -1 = none */
static int tap_report_fd_ = -1; /* in a tap_subtest child: the pipe home */
static const char *tap_todo_ = NULL; /* todo_start("why"): failures expected */

#if defined(__GNUC__) || defined(__clang__)
#define TAP_PRINTF_(f, a) __attribute__((format(printf, f, a)))
#define TAP_UNUSED_ __attribute__((unused))
#else
#define TAP_PRINTF_(f, a)
#define TAP_UNUSED_
#endif

static void tap_vline_(FILE *fh, const char *prefix, const char *fmt,
                       va_list ap)
{
    char buf[4096];
    const char *s, *nl;
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* one "# " per output line, so multi-line diagnostics stay TAP */
    for (s = buf; ; s = nl + 1) {
        nl = strchr(s, '\n');
        if (nl) {
            fprintf(fh, "%s%.*s\n", prefix, (int)(nl - s), s);
            if (!nl[1]) break;
        } else {
            fprintf(fh, "%s%s\n", prefix, s);
            break;
        }
    }
    fflush(fh);
}

static TAP_UNUSED_ TAP_PRINTF_(1, 2) void diag(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    tap_vline_(stderr, "# ", fmt, ap);
    va_end(ap);
}

static TAP_UNUSED_ TAP_PRINTF_(1, 2) void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vline_(stdout, "# ", fmt, ap);
    va_end(ap);
}

static TAP_UNUSED_ void plan(int n)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    tap_planned_ = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

static TAP_UNUSED_ void tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fflush(stdout);
    exit(0);
}

static int tap_vok_(int pass, const char *file, int line, const char *fmt,
                    va_list ap)
{
    char name[1024];
    char *h;
    vsnprintf(name, sizeof name, fmt, ap);
    for (h = name; *h; h++)              /* '#' would start a directive */
        if (*h == '#') *h = '_';
    tap_run_++;
    if (!pass && !tap_todo_) tap_failed_++;
    if (tap_todo_)
        printf("%sok %d - %s # TODO %s\n", pass ? "" : "not ", tap_run_,
               name, tap_todo_);
    else
        printf("%sok %d - %s\n", pass ? "" : "not ", tap_run_, name);
    fflush(stdout);
    if (tap_report_fd_ >= 0) {
        char ch = pass || tap_todo_ ? '1' : '0';
        while (write(tap_report_fd_, &ch, 1) < 0 && errno == EINTR) ;
    }
    if (!pass && !tap_todo_)            /* a TODO failure is expected */
        diag("  Failed test '%s'\n  at %s line %d.", name, file, line);
    return pass;
}

static TAP_UNUSED_ TAP_PRINTF_(4, 5)
int tap_ok_(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = tap_vok_(pass, file, line, fmt, ap);
    va_end(ap);
    return r;
}

static TAP_UNUSED_ TAP_PRINTF_(5, 6)
int tap_is_int_(long long got, long long want, const char *file, int line,
                const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = tap_vok_(got == want, file, line, fmt, ap);
    va_end(ap);
    if (!r) diag("         got: %lld\n    expected: %lld", got, want);
    return r;
}

/* printable rendering of (at most the first 60 bytes of) a byte string */
static const char *tap_show_(const void *p, size_t n, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i, o = 0;
    if (!p) { snprintf(out, outlen, "NULL"); return out; }
    out[o++] = '"';
    for (i = 0; i < n && i < 60 && o + 6 < outlen; i++) {
        if (s[i] == '\n')       o += (size_t)snprintf(out + o, outlen - o, "\\n");
        else if (s[i] == '\r')  o += (size_t)snprintf(out + o, outlen - o, "\\r");
        else if (s[i] == '"' || s[i] == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\%c", s[i]);
        else if (s[i] < 32 || s[i] > 126)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", s[i]);
        else out[o++] = (char)s[i];
    }
    if (o + 1 < outlen) out[o++] = '"';
    out[o] = 0;
    if (i < n && o + 20 < outlen)
        snprintf(out + o, outlen - o, "... (%zu bytes)", n);
    return out;
}

static TAP_UNUSED_ TAP_PRINTF_(7, 8)
int tap_is_mem_(const void *got, size_t glen, const void *want, size_t wlen,
                const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int r, pass;
    pass = (got && want) ? (glen == wlen && memcmp(got, want, wlen) == 0)
                         : (got == want);
    va_start(ap, fmt);
    r = tap_vok_(pass, file, line, fmt, ap);
    va_end(ap);
    if (!r) {
        char a[400], b[400];
        size_t i = 0;
        if (got && want)
            while (i < glen && i < wlen &&
                   ((const char *)got)[i] == ((const char *)want)[i]) i++;
        diag("         got: %s (len %zu)\n    expected: %s (len %zu)\n"
             "    first difference at offset %zu",
             tap_show_(got, glen, a, sizeof a), glen,
             tap_show_(want, wlen, b, sizeof b), wlen, i);
    }
    return r;
}

static TAP_UNUSED_ TAP_PRINTF_(5, 6)
int tap_is_str_(const char *got, const char *want, const char *file, int line,
                const char *fmt, ...)
{
    va_list ap;
    int r, pass = (got && want) ? strcmp(got, want) == 0 : got == want;
    va_start(ap, fmt);
    r = tap_vok_(pass, file, line, fmt, ap);
    va_end(ap);
    if (!r) {
        char a[400], b[400];
        diag("         got: %s\n    expected: %s",
             tap_show_(got, got ? strlen(got) : 0, a, sizeof a),
             tap_show_(want, want ? strlen(want) : 0, b, sizeof b));
    }
    return r;
}

/* Run fn() in a child process so that a crash (or a sanitizer abort, or a
 * leak report at exit) in the code under test fails the tests it was
 * running instead of ending the whole program.  The child's ok()s are
 * numbered and counted as if they ran here; a child that dies or exits
 * non-zero adds one failed test saying so.  Returns non-zero if the child
 * ended cleanly. */
static TAP_UNUSED_ int tap_subtest(void (*fn)(void), const char *name)
{
    int fds[2], st = 0, clean;
    unsigned left;
    pid_t pid;
    char buf[256];
    ssize_t n;

    fflush(stdout);
    fflush(stderr);
    left = alarm(0);                    /* alarms are not inherited: */
    if (left) alarm(left);              /* pass the time left on */
    if (pipe(fds) != 0 || (pid = fork()) < 0) {
        /* no isolation available: just run it */
        fn();
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        tap_report_fd_ = fds[1];
        alarm(left ? left : 20);
        fn();
        fflush(stdout);
        fflush(stderr);
        exit(0);                        /* exit, not _exit: leak checkers */
    }
    close(fds[1]);
    for (;;) {
        n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        while (n-- > 0) {
            tap_run_++;
            if (buf[n] != '1') tap_failed_++;
        }
    }
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) ;
    clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!clean) {
        if (WIFSIGNALED(st))
            tap_ok_(0, __FILE__, __LINE__, "%s: died with signal %d after "
                    "test %d", name, WTERMSIG(st), tap_run_);
        else
            tap_ok_(0, __FILE__, __LINE__, "%s: exited with status %d "
                    "(a sanitizer report?)", name, WEXITSTATUS(st));
    }
    return clean;
}

static TAP_UNUSED_ int done_testing(void)
{
    if (tap_planned_ < 0) {
        printf("1..%d\n", tap_run_);
    } else if (tap_planned_ != tap_run_) {
        diag("Looks like you planned %d tests but ran %d.",
             tap_planned_, tap_run_);
        fflush(stdout);
        return 1;
    }
    fflush(stdout);
    if (tap_failed_) {
        diag("Looks like you failed %d test%s of %d.", tap_failed_,
             tap_failed_ == 1 ? "" : "s", tap_run_);
        return 1;
    }
    return 0;
}
#define done() done_testing()

/* Tests between todo_start("reason") and todo_end() are expected to fail
 * (known bugs): TAP "# TODO" directives, not counted as failures. */
#define todo_start(why) (tap_todo_ = (why))
#define todo_end()      (tap_todo_ = NULL)

/* ok(cond, "name %d", ...) - the name is a printf format (required) */
#define ok(cond, ...) tap_ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define pass(...)     tap_ok_(1, __FILE__, __LINE__, __VA_ARGS__)
#define fail(...)     tap_ok_(0, __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) \
    tap_is_int_((long long)(got), (long long)(want), __FILE__, __LINE__, \
                __VA_ARGS__)
#define is_mem(got, glen, want, wlen, ...) \
    tap_is_mem_((got), (glen), (want), (wlen), __FILE__, __LINE__, \
                __VA_ARGS__)
#define is_str(got, want, ...) \
    tap_is_str_((got), (want), __FILE__, __LINE__, __VA_ARGS__)

#endif /* ISD_TAP_H */
