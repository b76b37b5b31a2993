#!/usr/bin/perl
# Broadcast server for bench/control: Mojo::IOLoop->server (on EV when EV
# is installed), each stream with timeout(3600) (the timeout machinery is
# active, nothing expires in a run), connection limit raised above 10,000,
# the streams in a hash.  On any connection, "COUNT" answers the number of
# open connections and "B <round> <size>" writes one <size>-byte message
# to every stream but the asking one, then answers "OK <how many got it>";
# other lines are ignored.  The message: the round in 10 digits, a space,
# "abc..xyz" repeated up to <size> - 1 bytes, "\n" (bench/loadgen.c, mode
# bcast, checks it).
#   perl bcast-mojo.pl PORT
use strict;
use warnings;
use Mojo::IOLoop;

my $port = shift or die "usage: $0 PORT\n";

my %fill;
sub message {
    my ($round, $size) = @_;
    my $n = $size - 12;
    $fill{$size} //= substr('abcdefghijklmnopqrstuvwxyz' x (int($n / 26) + 1), 0, $n);
    return sprintf('%010d ', $round) . $fill{$size} . "\n";
}

my %streams;
Mojo::IOLoop->singleton->max_connections(1_000_000);
Mojo::IOLoop->server({address => '127.0.0.1', port => $port, backlog => 4096} => sub {
    my ($loop, $stream, $id) = @_;
    $stream->timeout(3600);
    $streams{$id} = $stream;
    my $buf = '';
    $stream->on(close => sub { delete $streams{$id} });
    $stream->on(read => sub {
        my ($stream, $bytes) = @_;
        $buf .= $bytes;
        while ($buf =~ s/^([^\n]*)\n//) {
            my $line = $1;
            $line =~ s/\r\z//;
            if ($line eq 'COUNT') {
                $stream->write(scalar(keys %streams) . "\n");
            }
            elsif ($line =~ /^B (\d+) (\d+)$/ && $2 >= 12) {
                my $msg = message($1, $2);
                my $n = 0;
                for my $o (values %streams) {
                    next if $o == $stream;
                    $o->write($msg);
                    $n++;
                }
                $stream->write("OK $n\n");
            }
        }
    });
});
Mojo::IOLoop->start;
