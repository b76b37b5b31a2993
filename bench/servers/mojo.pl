#!/usr/bin/perl
# Echo server: Mojo::IOLoop->server (on EV when EV is installed), no
# inactivity timeout, connection limit raised above the idle test's 10,000.
#   perl mojo.pl PORT
use strict;
use warnings;
use Mojo::IOLoop;

my $port = shift or die "usage: $0 PORT\n";
Mojo::IOLoop->singleton->max_connections(1_000_000);
Mojo::IOLoop->server({address => '127.0.0.1', port => $port, backlog => 4096} => sub {
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
