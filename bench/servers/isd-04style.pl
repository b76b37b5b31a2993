#!/usr/bin/perl
# Echo server: IO::Socket::INET::Daemon used exactly as a 0.04 script
# would use it: getline/print in "data", an "add" callback that accepts.
#   perl isd-04style.pl PORT
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
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
