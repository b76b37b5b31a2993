#!/usr/bin/perl
# Echo server on a UNIX stream socket: IO::Socket::INET::Daemon used as a
# 0.04 script would use it (getline/print in "data", an "add" callback that
# accepts), as isd-04style.pl does on TCP; only the listener differs.
#   perl isd-unix.pl PATH
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $path = shift or die "usage: $0 PATH\n";
my $server = IO::Socket::INET::Daemon->new(
    listen   => ["unix:$path"],
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
$server->run or die "$0: cannot listen on unix:$path: $!\n";
