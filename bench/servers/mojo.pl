#!/usr/bin/perl
# Echo server: Mojo::IOLoop->server (on EV when EV is installed), no
# inactivity timeout, connection limit raised above the idle test's 10,000.
#   perl mojo.pl PORT
#   BENCH_TLS_CERT=cert.pem BENCH_TLS_KEY=key.pem perl mojo.pl PORT
#       (TLS: tls => 1, tls_cert, tls_key; needs IO::Socket::SSL)
#   BENCH_TLS_REUSE_CTX=1 BENCH_TLS_CERT=... BENCH_TLS_KEY=... perl mojo.pl PORT
#       (the same, and one IO::Socket::SSL context for all connections)
use strict;
use warnings;
use Mojo::IOLoop;

# BENCH_TLS_CERT=FILE BENCH_TLS_KEY=FILE (bench/run's TLS rows): as
# documented.  Mojo hands the file names to IO::Socket::SSL->start_SSL for
# every connection, which then builds a new SSL context (loading the
# system's CA store into it, although nothing is verified).
# BENCH_TLS_REUSE_CTX=1 (bench/run's mojo-ctx): one context, made here,
# for all connections, through tls_options (SSL_reuse_ctx).
my @tls = $ENV{BENCH_TLS_CERT}
    ? (tls => 1, tls_cert => $ENV{BENCH_TLS_CERT}, tls_key => $ENV{BENCH_TLS_KEY})
    : ();
if (@tls && $ENV{BENCH_TLS_REUSE_CTX}) {
    require IO::Socket::SSL;
    my $ctx = IO::Socket::SSL::SSL_Context->new(
        SSL_server    => 1,
        SSL_cert_file => $ENV{BENCH_TLS_CERT},
        SSL_key_file  => $ENV{BENCH_TLS_KEY},
    ) or die "$0: $IO::Socket::SSL::SSL_ERROR\n";
    push @tls, tls_options => { SSL_reuse_ctx => $ctx };
}

my $port = shift or die "usage: $0 PORT\n";
Mojo::IOLoop->singleton->max_connections(1_000_000);
Mojo::IOLoop->server({address => '127.0.0.1', port => $port, backlog => 4096, @tls} => sub {
    my ($loop, $stream) = @_;
    $stream->timeout(0);
    my $buf = '';
    $stream->on(read => sub {
        my ($stream, $bytes) = @_;
        $buf .= $bytes;
        while ($buf =~ s/^([^\n]*\n)//) {
            $stream->write($1);
        }
    });
});
Mojo::IOLoop->start;
