#!/usr/bin/perl
# UDP echo server: IO::Socket::INET::Daemon on a UDP listener, in the style
# of its UDP documentation: each datagram is the third argument of "data",
# and one print sends it back to its sender as one datagram.
#   perl udp-isd.pl PORT
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    listen   => ["udp:127.0.0.1:$port"],
    callback => { data => sub { $_[0]->print($_[2]); 1 } },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on udp:127.0.0.1:$port: $!\n";
