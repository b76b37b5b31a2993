#!/usr/bin/perl
# Echo server: IO::Socket::INET::Daemon used exactly as a 0.04 script
# would use it: getline/print in "data", an "add" callback that accepts.
#   perl isd-04style.pl PORT
#   BENCH_PROXY_PROTOCOL=1 perl isd-04style.pl PORT   (proxy_protocol => 1)
use strict;
use warnings;
use IO::Socket::INET::Daemon;

# BENCH_PROXY_PROTOCOL=1 (bench/run sets it for its PROXY rows): every
# connection starts with a PROXY header; BENCH_TRUSTED_PROXIES=CIDR,CIDR
# adds trusted_proxies.  Neither key is passed when not set.
my @proxy = $ENV{BENCH_PROXY_PROTOCOL} ? (proxy_protocol => 1) : ();
push @proxy, trusted_proxies => [ split /,/, $ENV{BENCH_TRUSTED_PROXIES} ]
    if $ENV{BENCH_PROXY_PROTOCOL} && $ENV{BENCH_TRUSTED_PROXIES};

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
    @proxy,
    callback => {
        add  => sub { return 1 },
        data => sub {
            my $io = shift;
            my $l  = $io->getline;
            $io->print($l);
            return 1;
        },
    },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $!\n";
