#!/usr/bin/perl
# Echo server: IO::Socket::INET::Daemon in its fastest documented style
# (the line is the third argument of "data"; no "add").
#   perl isd-fast.pl PORT
#   BENCH_PROXY_PROTOCOL=1 perl isd-fast.pl PORT   (proxy_protocol => 1)
#   BENCH_TLS_CERT=cert.pem BENCH_TLS_KEY=key.pem perl isd-fast.pl PORT   (TLS)
use strict;
use warnings;
use IO::Socket::INET::Daemon;

# BENCH_PROXY_PROTOCOL=1 (bench/run sets it for its PROXY rows): every
# connection starts with a PROXY header; BENCH_TRUSTED_PROXIES=CIDR,CIDR
# adds trusted_proxies.  Neither key is passed when not set.
my @proxy = $ENV{BENCH_PROXY_PROTOCOL} ? (proxy_protocol => 1) : ();
push @proxy, trusted_proxies => [ split /,/, $ENV{BENCH_TRUSTED_PROXIES} ]
    if $ENV{BENCH_PROXY_PROTOCOL} && $ENV{BENCH_TRUSTED_PROXIES};

# BENCH_TLS_CERT=FILE BENCH_TLS_KEY=FILE (bench/run sets them for its TLS
# rows): TLS on every connection, tls => { cert_file, key_file }.  Not
# passed when not set.
my @tls = $ENV{BENCH_TLS_CERT}
    ? (tls => { cert_file => $ENV{BENCH_TLS_CERT}, key_file => $ENV{BENCH_TLS_KEY} })
    : ();

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
    @proxy,
    @tls,
    callback => { data => sub { $_[0]->print($_[2]); 1 } },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $!\n";
