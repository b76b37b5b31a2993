package IO::Socket::INET::Daemon::Embed::IOAsync;

# attach('IO::Async', loop => $loop): the server's descriptor and deadlines
# watched by an IO::Async::Loop (default: IO::Async::Loop->new, the
# process's loop).

use strict;
use warnings;

our $VERSION = '1.05';

use IO::Async::Loop ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {
    my ($self, $o) = @_;
    $self->{loop} = IO::Socket::INET::Daemon::Embed::_loop_option($o, 'IO::Async::Loop',
                                                                   'an IO::Async::Loop')
                    || IO::Async::Loop->new;
}

sub _watch_io {
    my ($self, $fd, $cb) = @_;
    $self->{loop}->watch_io(handle => $self->_dup_fh($fd), on_read_ready => $cb);
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

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed::IOAsync - attach('IO::Async'): the server inside an IO::Async::Loop

=head1 SYNOPSIS

    my \$loop = IO::Async::Loop->new;
    \$server->attach('IO::Async', loop => \$loop);   # loop: default IO::Async::Loop->new
    \$loop->run;

=head1 DESCRIPTION

C<watch_io> on a duplicate of the server's descriptor, and C<watch_time>,
on the given C<loop> (default: C<< IO::Async::Loop->new >>, the
process's loop).  Loads IO::Async::Loop when attached.  See
L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
