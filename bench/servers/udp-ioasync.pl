#!/usr/bin/perl
# UDP echo server: IO::Async::Socket on the default IO::Async loop, bound
# as in the "Receive-first on a UDP Socket" example of its docs; on_recv
# sends each datagram back to its sender.  By default with its fastest
# documented options: recv_all (receive until the socket is empty on each
# readiness), autoflush (send at once, instead of one datagram per write
# readiness) and send_all (for what had to wait).  With "plain", with none
# of them: IO::Async::Socket as its SYNOPSIS uses it.
#   perl udp-ioasync.pl PORT [plain]
use strict;
use warnings;
use IO::Async::Loop;
use IO::Async::Socket;

my ($port, $style) = @ARGV;
$port or die "usage: $0 PORT [plain]\n";
my %fast = ($style // '') eq 'plain' ? () : (recv_all => 1, autoflush => 1, send_all => 1);
my $loop = IO::Async::Loop->new;
my $socket = IO::Async::Socket->new(
    %fast,
    on_recv => sub {
        my ($self, $dgram, $addr) = @_;
        $self->send($dgram, 0, $addr);
    },
    on_recv_error => sub { die "$0: recv: $_[1]\n" },
    on_send_error => sub { warn "$0: send: $_[1]\n" },
);
$loop->add($socket);
$socket->bind(host => '127.0.0.1', service => $port, socktype => 'dgram')->get;
$loop->run;
