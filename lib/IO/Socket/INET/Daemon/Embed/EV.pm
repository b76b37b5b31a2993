package IO::Socket::INET::Daemon::Embed::EV;

# attach('EV'): the server's descriptor and deadlines as EV watchers (on
# EV's default loop).

use strict;
use warnings;

our $VERSION = '1.05';

use EV ();
use parent -norequire, 'IO::Socket::INET::Daemon::Embed';

sub _init {}

sub _watch_io      { $_[0]{io} = EV::io($_[1], EV::READ(), $_[2]) }
sub _unwatch_io    { delete $_[0]{io} }
sub _watch_timer   { $_[0]{tw} = EV::timer($_[1], 0, $_[2]) }
sub _unwatch_timer { delete $_[0]{tw} }

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed::EV - attach('EV'): the server inside EV's default loop

=head1 SYNOPSIS

    use EV;
    \$server->attach('EV');
    EV::run;

=head1 DESCRIPTION

EV watchers (C<EV::io>, C<EV::timer>) on EV's default loop for the
server's descriptor and deadlines.  Loads EV when attached.  See
L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
