#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with AnyEvent::Socket and AnyEvent::Handle.
#   perl chat-anyevent.pl [PORT [IDLE_SECONDS]]
use strict;
use warnings;
use AnyEvent;
use AnyEvent::Socket qw(tcp_server);
use AnyEvent::Handle;

my $port = shift // 5000;
my $idle = shift // 300;
my %handle;                     # "$hdl" => $hdl, for every connection
my %nick;                       # "$hdl" => nick, once its first line came
my $guests = 0;

sub gone {
    my ($hdl) = @_;
    delete $handle{$hdl};
    delete $nick{$hdl};
    $hdl->destroy;              # what was pushed is still written (linger)
}

sub line {
    my ($hdl, $line) = @_;
    if ($line eq '/quit') {
        $hdl->push_write("* bye\n");
        return gone($hdl);
    }
    if (!defined $nick{$hdl}) {
        $nick{$hdl} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
        $hdl->push_write("* you are $nick{$hdl}\n");
        return;
    }
    $_->push_write("$nick{$hdl}: $line\n") for grep { $_ != $hdl } values %handle;
}

my $listener = tcp_server '127.0.0.1', $port, sub {
    my ($fh) = @_;
    if (keys %handle >= 100) {          # no Concurrency here: refuse
        syswrite $fh, "* the room is full, try again later\n";
        return;                         # $fh goes out of scope: closed
    }
    my $hdl = AnyEvent::Handle->new(
        fh          => $fh,
        rtimeout    => $idle,           # no input for that long
        on_rtimeout => sub { gone($_[0]) },
        on_eof      => sub { gone($_[0]) },
        on_error    => sub {
            my ($hdl, $fatal, $msg) = @_;
            warn "chat: $msg\n";
            gone($hdl);
        },
        on_read     => sub { $_[0]->push_read(line => \&line) },
    );
    $handle{$hdl} = $hdl;
    $hdl->push_write("Welcome! Your first line is your nick.\n");
};

my $done = AnyEvent->condvar;
my @signals = map { AnyEvent->signal(signal => $_, cb => sub { $done->send }) } qw(INT TERM);
$done->recv;
