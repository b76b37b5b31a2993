#!/usr/bin/perl
# The cookbook's chat server (IO::Socket::INET::Daemon::Cookbook), here
# with Net::Server::Multiplex (one process; Net::Server's forking
# personalities cannot share a room).
#   perl chat-netserver.pl [PORT [IDLE_SECONDS]]
package ChatServer;
use strict;
use warnings;
use parent 'Net::Server::Multiplex';

my $port = shift // 5000;
my $idle = shift // 300;
my %client;                     # "$fh" => $fh, for every connection
my %nick;                       # "$fh" => nick, once its first line came
my $guests = 0;

# Called on an object of its own for each connection.
sub mux_connection {
    my ($self, $mux, $fh) = @_;
    if (keys %client >= 100) {          # no limit built in: refuse
        $mux->write($fh, "* the room is full, try again later\n");
        $mux->shutdown($fh, 1);         # after the output is out
        return;
    }
    $client{$fh} = $fh;
    $mux->write($fh, "Welcome! Your first line is your nick.\n");
    $mux->set_timeout($fh, $idle);
}

sub mux_input {
    my ($self, $mux, $fh, $in) = @_;
    return $$in = '' unless $client{$fh};
    while ($$in =~ s/\A(.*?)\r?\n//) {
        my $line = $1;
        $mux->set_timeout($fh, undef);  # input: the clock starts over
        $mux->set_timeout($fh, $idle);
        if ($line eq '/quit') {
            $mux->write($fh, "* bye\n");
            delete $client{$fh};
            $mux->shutdown($fh, 1);     # after the output is out
            return $$in = '';
        }
        if (!defined $nick{$fh}) {
            $nick{$fh} = $line =~ /\A\w{1,20}\z/ ? $line : 'guest' . ++$guests;
            $mux->write($fh, "* you are $nick{$fh}\n");
            next;
        }
        $mux->write($_, "$nick{$fh}: $line\n") for grep { $_ ne $fh } values %client;
    }
}

sub mux_timeout {
    my ($self, $mux, $fh) = @_;
    $mux->close($fh);                   # mux_close follows
}

sub mux_close {
    my ($self, $mux, $fh) = @_;
    delete $client{$fh};
    delete $nick{$fh};
}

__PACKAGE__->run(host => '127.0.0.1', port => $port, proto => 'tcp', log_level => 1);
