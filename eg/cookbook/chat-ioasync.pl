#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with IO::Async::Listener and IO::Async::Stream.
#   perl chat-ioasync.pl [PORT [IDLE_SECONDS]]
use strict;
use warnings;
use IO::Async::Loop;
use IO::Async::Listener;
use IO::Async::Stream;
use IO::Async::Timer::Countdown;

my $port = shift // 5000;
my $idle = shift // 300;
my %stream;                     # "$stream" => $stream, for every connection
my %nick;                       # "$stream" => nick, once its first line came
my $guests = 0;

my $loop = IO::Async::Loop->new;

# One line from $stream; false when the client is leaving.
sub line {
    my ($stream, $line) = @_;
    if ($line eq '/quit') {
        $stream->write("* bye\n");
        $stream->close_when_empty;      # after the output is out
        return 0;
    }
    if (!defined $nick{$stream}) {
        $nick{$stream} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
        $stream->write("* you are $nick{$stream}\n");
        return 1;
    }
    $_->write("$nick{$stream}: $line\n") for grep { $_ != $stream } values %stream;
    return 1;
}

my $listener = IO::Async::Listener->new(
    on_stream => sub {
        my ($listener, $stream) = @_;
        if (keys %stream >= 100) {      # no limit built in: refuse
            syswrite $stream->write_handle, "* the room is full, try again later\n";
            return;                     # $stream goes out of scope: closed
        }
        my $timer = IO::Async::Timer::Countdown->new(
            delay     => $idle,         # no input for that long
            on_expire => sub { $_[0]->parent->close },
        );
        $stream->configure(
            on_read => sub {
                my ($stream, $buffref, $eof) = @_;
                while ($$buffref =~ s/\A(.*?)\r?\n//) {
                    $timer->reset;
                    next if line($stream, $1);
                    $$buffref = '';     # leaving: the rest is not read
                    last;
                }
                return 0;
            },
            on_closed => sub {
                my ($stream) = @_;
                delete $stream{$stream};
                delete $nick{$stream};
            },
            on_read_error  => sub { warn "chat: read: $_[1]\n";  $_[0]->close },
            on_write_error => sub { warn "chat: write: $_[1]\n"; $_[0]->close },
        );
        $stream->add_child($timer);
        $timer->start;
        $stream{$stream} = $stream;
        $listener->add_child($stream);
        $stream->write("Welcome! Your first line is your nick.\n");
    },
);
$loop->add($listener);
$listener->listen(
    addr => { family => 'inet', socktype => 'stream', ip => '127.0.0.1', port => $port },
)->get;

$loop->attach_signal($_ => sub { $loop->stop }) for qw(INT TERM);
$loop->run;
