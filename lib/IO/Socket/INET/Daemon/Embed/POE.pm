package IO::Socket::INET::Daemon::Embed::POE;

# attach('POE'): a POE session of its own watches the server's descriptor
# (select_read) and deadlines (delay); detach ends it.

use strict;
use warnings;

our $VERSION = '1.05';

use POE;                # (POE::Kernel and POE::Session)
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {
    my ($self) = @_;
    my $weak = $self;
    Scalar::Util::weaken($weak);
    $self->{sid} = POE::Session->create(inline_states => {
        _start  => sub { },
        io_on   => sub { $_[POE::Session::KERNEL()]->select_read($_[POE::Session::ARG0()], 'ready') },
        io_off  => sub { $_[POE::Session::KERNEL()]->select_read($_[POE::Session::ARG0()]) },
        ready   => sub { $weak->{io_cb}->() if $weak and $weak->{io_cb} },
        arm     => sub { $_[POE::Session::KERNEL()]->delay(due => $_[POE::Session::ARG0()]) },
        disarm  => sub { $_[POE::Session::KERNEL()]->delay('due') },
        due     => sub { $weak->{timer_cb}->() if $weak and $weak->{timer_cb} },
        _stop   => sub { },
    })->ID;
}

sub _watch_io {
    my ($self, $fd, $cb) = @_;
    $self->{io_cb} = $cb;
    $POE::Kernel::poe_kernel->call($self->{sid}, io_on => $self->_dup_fh($fd));
}

sub _unwatch_io {
    my ($self) = @_;
    my $fh = delete $self->{fh} or return;
    delete $self->{io_cb};
    $POE::Kernel::poe_kernel->call($self->{sid}, io_off => $fh);
    close $fh;
}

sub _watch_timer {
    my ($self, $after, $cb) = @_;
    $self->{timer_cb} = $cb;
    $POE::Kernel::poe_kernel->call($self->{sid}, arm => $after);
}

sub _unwatch_timer {
    my ($self) = @_;
    delete $self->{timer_cb};
    $POE::Kernel::poe_kernel->call($self->{sid}, disarm => ());
}

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed::POE - attach('POE'): the server inside POE

=head1 SYNOPSIS

    \$server->attach('POE');
    POE::Kernel->run;

=head1 DESCRIPTION

A POE session of its own: C<select_read> on a duplicate of the server's
descriptor, C<delay> for its deadlines; C<detach> ends it.  Loads POE
when attached.  See L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
