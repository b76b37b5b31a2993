package IO::Socket::INET::Daemon::Embed::AnyEvent;

# attach('AnyEvent'): the server's descriptor and deadlines as AnyEvent
# watchers (whatever AnyEvent runs on: EV, its pure-Perl loop, ...).

use strict;
use warnings;

our $VERSION = '1.05';

use AnyEvent ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {}

sub _watch_io      { $_[0]{io} = AnyEvent->io(fh => $_[1], poll => 'r', cb => $_[2]) }
sub _unwatch_io    { delete $_[0]{io} }
sub _watch_timer   { $_[0]{tw} = AnyEvent->timer(after => $_[1], cb => $_[2]) }
sub _unwatch_timer { delete $_[0]{tw} }

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed::AnyEvent - attach('AnyEvent'): the server inside whatever AnyEvent runs on

=head1 SYNOPSIS

    use AnyEvent;
    \$server->attach('AnyEvent');
    AnyEvent->condvar->recv;

=head1 DESCRIPTION

AnyEvent watchers (C<< AnyEvent->io >>, C<< AnyEvent->timer >>) for the
server's descriptor and deadlines, on any AnyEvent backend (EV, its pure
Perl loop, ...).  Loads AnyEvent when attached.  See
L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
