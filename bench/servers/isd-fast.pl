#!/usr/bin/perl
# Echo server: IO::Socket::INET::Daemon in its fastest documented style
# (the line is the third argument of "data"; no "add").
#   perl isd-fast.pl PORT
use strict;
use warnings;
use IO::Socket::INET::Daemon;

my $port = shift or die "usage: $0 PORT\n";
my $server = IO::Socket::INET::Daemon->new(
    port     => $port,
    host     => '127.0.0.1',
    callback => { data => sub { $_[0]->print($_[2]); 1 } },
);
$SIG{TERM} = $SIG{INT} = sub { $server->stop };
$server->run or die "$0: cannot listen on 127.0.0.1:$port: $!\n";
