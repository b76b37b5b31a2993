#!/usr/bin/perl
# Echo server: a pure-Perl IO::Select loop in the style of
# IO::Socket::INET::Daemon 0.04: blocking sockets, select, one getline per
# readable socket.  Lines that arrive together sit in PerlIO's buffer where
# select cannot see them, so pipelined requests stall: the benchmark is
# expected to report that.
#   perl select04.pl PORT
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;

my $port = shift or die "usage: $0 PORT\n";
my $listen = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Listen    => 4096,
    ReuseAddr => 1,
) or die "$0: cannot listen on 127.0.0.1:$port: $!\n";
my $select = IO::Select->new($listen);

while (1) {
    for my $io ($select->can_read) {
        if ($io == $listen) {
            my $client = $listen->accept or next;
            $client->autoflush(1);
            $select->add($client);
            next;
        }
        my $line = $io->getline;
        if (!defined $line) {
            $select->remove($io);
            $io->close;
            next;
        }
        $io->print($line);
    }
}
