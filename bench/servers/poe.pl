#!/usr/bin/perl
# Echo server: POE::Component::Server::TCP with a "\n" line filter
# (POE's default filter would answer with "\r\n"), on POE's IO::Poll loop.
#   perl poe.pl PORT
use strict;
use warnings;
use IO::Poll;    # POE picks POE::Loop::IO_Poll when IO::Poll is loaded
use POE qw(Component::Server::TCP Filter::Line);

my $port = shift or die "usage: $0 PORT\n";
POE::Component::Server::TCP->new(
    Address      => '127.0.0.1',
    Port         => $port,
    ClientFilter => POE::Filter::Line->new(Literal => "\n"),
    ClientInput  => sub { $_[HEAP]{client}->put($_[ARG0]) },
    Error        => sub { die "$0: cannot listen on 127.0.0.1:$port: $_[ARG2]\n" },
);
POE::Kernel->run;
