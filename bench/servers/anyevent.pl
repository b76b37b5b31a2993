#!/usr/bin/perl
# Echo server: AnyEvent::Socket tcp_server + AnyEvent::Handle, on EV.
# The usual idiom: a push_read(line) reader that re-queues itself.
#   perl anyevent.pl PORT
#   BENCH_TLS_CERT=cert.pem BENCH_TLS_KEY=key.pem perl anyevent.pl PORT
#       (TLS: tls => 'accept', tls_ctx => { cert_file, key_file }; needs
#       Net::SSLeay)
use strict;
use warnings;
use EV;
use AnyEvent;
use AnyEvent::Socket qw(tcp_server);
use AnyEvent::Handle;

my $port = shift or die "usage: $0 PORT\n";
die "$0: AnyEvent is not on EV\n" unless AnyEvent::detect() eq 'AnyEvent::Impl::EV';

# BENCH_TLS_CERT=FILE BENCH_TLS_KEY=FILE (bench/run's TLS rows): the
# documented tls_ctx hash, the same one for every handle with cache => 1
# (else each connection would make its own AnyEvent::TLS context, reading
# the files again)
my @tls = $ENV{BENCH_TLS_CERT}
    ? (tls => 'accept',
       tls_ctx => { cert_file => $ENV{BENCH_TLS_CERT}, key_file => $ENV{BENCH_TLS_KEY}, cache => 1 })
    : ();

my %conn;
my $reader;
$reader = sub {
    my ($h, $line, $eol) = @_;
    $h->push_write($line . $eol);
    $h->push_read(line => $reader);
};
my $guard = tcp_server '127.0.0.1', $port, sub {
    my ($fh) = @_;
    my $h;
    $h = AnyEvent::Handle->new(
        fh       => $fh,
        @tls,
        on_error => sub { delete $conn{$h}; $h->destroy },
        on_eof   => sub { delete $conn{$h}; $h->destroy },
    );
    $conn{$h} = $h;
    $h->push_read(line => $reader);
}, sub { 4096 };    # listen backlog
my $quit = AnyEvent->condvar;
my @sig = map { AnyEvent->signal(signal => $_, cb => sub { $quit->send }) } qw(TERM INT);
$quit->recv;
