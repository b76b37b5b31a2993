#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with Mojo::IOLoop.  perl chat-mojo.pl [PORT [IDLE_SECONDS]]
use strict;
use warnings;
use Mojo::IOLoop;

my $port = shift // 5000;
my $idle = shift // 300;
my %stream;                     # connection ID => stream, for every connection
my %nick;                       # connection ID => nick, once its first line came
my $guests = 0;

# One line from connection $id; false when the client is leaving.
sub line {
    my ($id, $line) = @_;
    my $stream = $stream{$id};
    if ($line eq '/quit') {
        $stream->write("* bye\n");
        $stream->close_gracefully;      # after the output is out
        return 0;
    }
    if (!defined $nick{$id}) {
        $nick{$id} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
        $stream->write("* you are $nick{$id}\n");
        return 1;
    }
    $stream{$_}->write("$nick{$id}: $line\n") for grep { $_ ne $id } keys %stream;
    return 1;
}

Mojo::IOLoop->singleton->max_connections(100);  # the 101st waits
Mojo::IOLoop->server({address => '127.0.0.1', port => $port} => sub {
    my ($loop, $stream, $id) = @_;
    $stream{$id} = $stream;
    $stream->timeout($idle);            # no traffic (in or out) for that long
    my $buffer = '';
    $stream->on(read => sub {
        my ($stream, $bytes) = @_;
        $buffer .= $bytes;
        while ($buffer =~ s/\A(.*?)\r?\n//) {
            next if line($id, $1);
            $buffer = '';               # leaving: the rest is not read
            last;
        }
    });
    $stream->on(close => sub {
        delete $stream{$id};
        delete $nick{$id};
    });
    $stream->on(error => sub {
        my ($stream, $err) = @_;
        warn "chat: $err\n";
    });
    $stream->write("Welcome! Your first line is your nick.\n");
});

Mojo::IOLoop->start unless Mojo::IOLoop->is_running;
