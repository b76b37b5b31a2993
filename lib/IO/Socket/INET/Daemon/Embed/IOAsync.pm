package IO::Socket::INET::Daemon::Embed::IOAsync;

# attach('IO::Async', loop => $loop): the server's descriptor and deadlines
# watched by an IO::Async::Loop (default: IO::Async::Loop->new, the
# process's loop).

use strict;
use warnings;

our $VERSION = '1.04';

use IO::Async::Loop ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {
    my ($self, $o) = @_;
    my $loop = delete $o->{loop};
    Carp::croak("IO::Socket::INET::Daemon::attach: loop: '$loop' is not an IO::Async::Loop")
        if defined $loop and !(Scalar::Util::blessed($loop) and $loop->isa('IO::Async::Loop'));
    $self->{loop} = $loop || IO::Async::Loop->new;
}

# (a duplicate of the descriptor: the loop may close its handle)
sub _watch_io {
    my ($self, $fd, $cb) = @_;
    open my $fh, '<&', $fd or Carp::croak("IO::Socket::INET::Daemon::attach: dup $fd: $!");
    $self->{fh} = $fh;
    $self->{loop}->watch_io(handle => $fh, on_read_ready => $cb);
}

sub _unwatch_io {
    my ($self) = @_;
    my $fh = delete $self->{fh} or return;
    $self->{loop}->unwatch_io(handle => $fh, on_read_ready => 1);
    close $fh;
}

sub _watch_timer   { $_[0]{tid} = $_[0]{loop}->watch_time(after => $_[1], code => $_[2]) }
sub _unwatch_timer { my $id = delete $_[0]{tid}; $_[0]{loop}->unwatch_time($id) if defined $id }

1;
