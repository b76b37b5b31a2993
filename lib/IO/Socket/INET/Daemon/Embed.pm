package IO::Socket::INET::Daemon::Embed;

# The server inside another event loop: what attach and detach do, the same
# for every loop.  A subclass per loop (Embed/EV.pm, AnyEvent.pm,
# IOAsync.pm, Mojo.pm, POE.pm) gives its three watchers: the server's
# descriptor (readable when it has work), a one-shot timer, and their
# removal.  Loaded only by attach.  The POD is in IO::Socket::INET::Daemon
# (EMBEDDING).

use strict;
use warnings;

our $VERSION = '1.05';

use Carp ();
use Scalar::Util ();

# croaks name the caller of attach (the subclasses trust this package)
our @CARP_NOT = ('IO::Socket::INET::Daemon');

# With the poll backend there is no descriptor to watch: a step every this
# many seconds.
our $POLL_INTERVAL = 0.01;

my %LOOP = (
    EV             => 'EV',
    AnyEvent       => 'AnyEvent',
    'IO::Async'    => 'IOAsync',
    IOAsync        => 'IOAsync',
    Mojo           => 'Mojo',
    'Mojo::IOLoop' => 'Mojo',
    POE            => 'POE',
);

sub loops { sort keys %LOOP }

# attach($server, NAME, OPTIONS): the glue object, kept in $server->{_embed}.
sub attach {
    my ($server, $name, %o) = @_;
    my $m = 'IO::Socket::INET::Daemon::attach';
    Carp::croak("$m: loop: " . (defined $name ? "'$name'" : 'undef')
                . ' is not one of ' . join(', ', map { "'$_'" } grep { !/\AIOAsync\z/ } loops()))
        unless defined $name and $LOOP{$name};
    my $class = __PACKAGE__ . '::' . $LOOP{$name};
    (my $file = "$class.pm") =~ s{::}{/}g;
    require $file;
    return $class->_new($server, %o);
}

sub _new {
    my ($class, $server, %o) = @_;
    my $self = bless { server => $server, pid => $$ }, $class;
    Scalar::Util::weaken($self->{server});
    $self->_init(\%o);
    Carp::croak('IO::Socket::INET::Daemon::attach: unknown option'
                . (keys %o > 1 ? 's ' : ' ') . join(', ', map { "'$_'" } sort keys %o))
        if %o;
    $server->detach;                    # (only once the options are good)
    my $fd = $server->fd;               # listens now (croaks if it cannot)
    my $weak = $self;
    Scalar::Util::weaken($weak);
    $self->{step} = sub { $weak->_step if $weak };
    if (defined $fd) {
        $self->_watch_io($fd, $self->{step});
    } else {
        $self->{poll} = 1;
    }
    $server->{_embed} = $self;
    $self->_arm;
    return $self;
}

# One step of the server; then the timer for its next deadline.  Once it
# was stopped (stop, destroy, the end of a graceful stop), the glue goes.
sub _step {
    my ($self) = @_;
    my $s = $self->{server};
    return $self->_stop unless $s and $s->{_embed} and $s->{_embed} == $self;
    # a forked child's copy: the descriptor is its parent's (attach anew)
    return $s->detach if $$ != $self->{pid};
    my $alive = $s->run_once(0);
    if (!$alive) {
        warn "IO::Socket::INET::Daemon: $@\n" if !defined $alive and length $@;
        return $s->detach;
    }
    $self->_arm;
}

# The timer, for the server's next deadline (kept if that did not move).
sub _arm {
    my ($self) = @_;
    my $s = $self->{server} or return;
    my $t = $s->next_timeout;
    $t = 0 if delete $self->{soon};
    $t = $POLL_INTERVAL if $self->{poll} and (!defined $t or $t > $POLL_INTERVAL);
    if (!defined $t) {
        $self->_unwatch_timer if $self->{timer_on};
        $self->{timer_on} = $self->{due} = undef;
        return;
    }
    my $due = Time::HiRes::time() + $t;
    return if $self->{timer_on} and $t > 0 and abs($due - $self->{due}) < 0.001;
    $self->_unwatch_timer if $self->{timer_on};
    $self->{due} = $due;
    $self->{timer_on} = 1;
    # (a one-shot: once it fired it is no timer to keep, even if the host
    # loop fired it early, by its cached clock, and the deadline is the same)
    my $weak = $self;
    Scalar::Util::weaken($weak);
    my $step = $self->{step};
    $self->_watch_timer($t, sub { $weak->{timer_on} = undef if $weak; $step->() });
}

# For the subclasses.  A duplicate of the server's descriptor, as a handle
# (in {fh}), for loops that watch handles: they may close theirs.
sub _dup_fh {
    my ($self, $fd) = @_;
    open my $fh, '<&', $fd or Carp::croak("IO::Socket::INET::Daemon::attach: dup $fd: $!");
    return $self->{fh} = $fh;
}

# The loop => OBJECT option, taken out of %$o: an object of $class, or
# undef (the loop's default).
sub _loop_option {
    my ($o, $class, $what) = @_;
    my $loop = delete $o->{loop};
    Carp::croak("IO::Socket::INET::Daemon::attach: loop: '$loop' is not $what")
        if defined $loop and !(Scalar::Util::blessed($loop) and $loop->isa($class));
    return $loop;
}

# A call from the host loop's code, between steps, changed what the server
# has to do (stop, destroy, a timer, resume, idle_timeout, close, ...): a
# step soon.
sub wake { $_[0]{soon} = 1; $_[0]->_arm }

sub _stop {
    my ($self) = @_;
    return if $self->{stopped}++;
    # (at exit the host loop may be gone already, and does not run again)
    return if ${^GLOBAL_PHASE} eq 'DESTRUCT';
    $self->_unwatch_timer if $self->{timer_on};
    $self->{timer_on} = undef;
    $self->_unwatch_io unless $self->{poll};
}

sub DESTROY { $_[0]->_stop }

require Time::HiRes;

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Embed - the server inside another event loop (what attach does)

=head1 SYNOPSIS

    \$server->attach('AnyEvent');     # or 'EV', 'IO::Async', 'Mojo', 'POE'
    ...                               # the host loop runs
    \$server->detach;

=head1 DESCRIPTION

The common part of L<IO::Socket::INET::Daemon/attach>: it watches the
server's descriptor (L<IO::Socket::INET::Daemon/fd>) for reading and arms
one timer for the server's next deadline
(L<IO::Socket::INET::Daemon/next_timeout>); either runs one step
(L<IO::Socket::INET::Daemon/run_once>) and re-arms the timer.  Once the
server was stopped (C<stop>, C<destroy>, the end of a graceful stop) it
detaches itself.  With the poll backend, which has no descriptor, it
runs a step every C<$IO::Socket::INET::Daemon::Embed::POLL_INTERVAL>
seconds (0.01).  It is loaded by C<attach> only; the subclasses load
their loop.  See L<IO::Socket::INET::Daemon/EMBEDDING>.

=head1 AUTHORS

The IO-Socket-INET-Daemon 1.x authors; see L<IO::Socket::INET::Daemon>.

=head1 COPYRIGHT AND LICENSE

Artistic License 2.0, as IO::Socket::INET::Daemon.

=cut
