#!/usr/bin/perl
# Broadcast server for bench/control: AnyEvent::Socket tcp_server +
# AnyEvent::Handle on EV, each handle with timeout => 3600 (the timeout
# machinery is active, nothing expires in a run), the handles in a hash.
# On any connection, "COUNT" answers the number of open connections and
# "B <round> <size>" push_writes one <size>-byte message to every handle
# but the asking one, then answers "OK <how many got it>"; other lines are
# ignored.  The message: the round in 10 digits, a space, "abc..xyz"
# repeated up to <size> - 1 bytes, "\n" (bench/loadgen.c, mode bcast,
# checks it).
#   perl bcast-anyevent.pl PORT
use strict;
use warnings;
use EV;
use AnyEvent;
use AnyEvent::Socket qw(tcp_server);
use AnyEvent::Handle;

my $port = shift or die "usage: $0 PORT\n";
die "$0: AnyEvent is not on EV\n" unless AnyEvent::detect() eq 'AnyEvent::Impl::EV';

my %fill;
sub message {
    my ($round, $size) = @_;
    my $n = $size - 12;
    $fill{$size} //= substr('abcdefghijklmnopqrstuvwxyz' x (int($n / 26) + 1), 0, $n);
    return sprintf('%010d ', $round) . $fill{$size} . "\n";
}

my %conn;
my $reader;
$reader = sub {
    my ($h, $line) = @_;
    if ($line eq 'COUNT') {
        $h->push_write(scalar(keys %conn) . "\n");
    }
    elsif ($line =~ /^B (\d+) (\d+)$/ && $2 >= 12) {
        my $msg = message($1, $2);
        my $n = 0;
        for my $o (values %conn) {
            next if $o == $h;
            $o->push_write($msg);
            $n++;
        }
        $h->push_write("OK $n\n");
    }
    $h->push_read(line => $reader);
};
my $guard = tcp_server '127.0.0.1', $port, sub {
    my ($fh) = @_;
    my $h;
    $h = AnyEvent::Handle->new(
        fh       => $fh,
        timeout  => 3600,
        on_error => sub { delete $conn{$h}; $h->destroy },
        on_eof   => sub { delete $conn{$h}; $h->destroy },
    );
    $conn{$h} = $h;
    $h->push_read(line => $reader);
}, sub { 4096 };    # listen backlog
my $quit = AnyEvent->condvar;
my @sig = map { AnyEvent->signal(signal => $_, cb => sub { $quit->send }) } qw(TERM INT);
$quit->recv;
