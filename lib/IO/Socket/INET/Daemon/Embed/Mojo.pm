package IO::Socket::INET::Daemon::Embed::Mojo;

# attach('Mojo', loop => $loop): the server's descriptor and deadlines
# watched by a Mojo::IOLoop's reactor (default: Mojo::IOLoop->singleton).

use strict;
use warnings;

our $VERSION = '1.05';

use Mojo::IOLoop ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {
    my ($self, $o) = @_;
    my $loop = IO::Socket::INET::Daemon::Embed::_loop_option($o, 'Mojo::IOLoop', 'a Mojo::IOLoop');
    $self->{reactor} = ($loop || Mojo::IOLoop->singleton)->reactor;
}

sub _watch_io {
    my ($self, $fd, $cb) = @_;
    my $fh = $self->_dup_fh($fd);
    $self->{reactor}->io($fh => sub { $cb->() })->watch($fh, 1, 0);
}

sub _unwatch_io {
    my ($self) = @_;
    my $fh = delete $self->{fh} or return;
    $self->{reactor}->remove($fh);
    close $fh;
}

sub _watch_timer   { $_[0]{tid} = $_[0]{reactor}->timer($_[1] => $_[2]) }
sub _unwatch_timer { my $id = delete $_[0]{tid}; $_[0]{reactor}->remove($id) if defined $id }

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed::Mojo - attach('Mojo'): the server inside a Mojo::IOLoop

=head1 SYNOPSIS

    \$server->attach('Mojo');         # loop => \$loop: default Mojo::IOLoop->singleton
    Mojo::IOLoop->start;

=head1 DESCRIPTION

The reactor's C<io> (on a duplicate of the server's descriptor) and
C<timer>, of the given C<loop> (default: C<< Mojo::IOLoop->singleton >>).
Loads Mojo::IOLoop when attached.  See
L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
