#!/usr/bin/perl
# Echo server: AnyEvent::Socket tcp_server + AnyEvent::Handle, on EV.
# The usual idiom: a push_read(line) reader that re-queues itself.
#   perl anyevent.pl PORT
use strict;
use warnings;
use EV;
use AnyEvent;
use AnyEvent::Socket qw(tcp_server);
use AnyEvent::Handle;

my $port = shift or die "usage: $0 PORT\n";
die "$0: AnyEvent is not on EV\n" unless AnyEvent::detect() eq 'AnyEvent::Impl::EV';

my %conn;
my $reader;
$reader = sub {
    my ($h, $line, $eol) = @_;
    $h->push_write($line . $eol);
    $h->push_read(line => $reader);
};
my $guard = tcp_server '127.0.0.1', $port, sub {
    my ($fh) = @_;
    my $h;
    $h = AnyEvent::Handle->new(
        fh       => $fh,
        on_error => sub { delete $conn{$h}; $h->destroy },
        on_eof   => sub { delete $conn{$h}; $h->destroy },
    );
    $conn{$h} = $h;
    $h->push_read(line => $reader);
}, sub { 4096 };    # listen backlog
my $quit = AnyEvent->condvar;
my @sig = map { AnyEvent->signal(signal => $_, cb => sub { $quit->send }) } qw(TERM INT);
$quit->recv;
