package IO::Socket::INET::Daemon::Systemd;

# Sockets handed down by systemd (socket activation) or by Server::Starter,
# and systemd's notification protocol (sd_notify), without libsystemd.
# Loaded by IO::Socket::INET::Daemon only when the environment has
# LISTEN_FDS, SERVER_STARTER_PORT or NOTIFY_SOCKET.

use strict;
use warnings;

our $VERSION = '1.05';

use Carp ();
use Socket ();

# What this process inherited, found once per process: a list of
# { fd, spec ('127.0.0.1:5000', '[::]:5000', 'unix:/path'), name, from }.
my ($FOUND_PID, @FOUND);

sub inherited {
    return @FOUND if defined $FOUND_PID and $FOUND_PID == $$;
    ($FOUND_PID, @FOUND) = ($$);
    my @cand;
    if (defined $ENV{LISTEN_FDS}) {
        # systemd: fds 3 .. 3+N-1, for the PID it started only
        my $pid = $ENV{LISTEN_PID};
        my $n = $ENV{LISTEN_FDS};
        my @names = split /:/, defined $ENV{LISTEN_FDNAMES} ? $ENV{LISTEN_FDNAMES} : '', -1;
        if (!defined $pid or $pid !~ /\A\d+\z/ or $pid != $$) {
            _report('LISTEN_FDS is set for process ' . (defined $pid ? "'$pid'" : '(no LISTEN_PID)')
                    . ", not this one ($$): ignored");
        }
        elsif ($n !~ /\A\d+\z/ or $n > 4096) {
            _report("LISTEN_FDS='$n' is not a number of descriptors: ignored");
        }
        else {
            push @cand, map { { fd => 3 + $_, name => defined $names[$_] && length $names[$_] ? $names[$_] : 'unknown',
                                from => 'systemd' } } 0 .. $n - 1;
        }
        # not for our children (sd_listen_fds(1) does the same)
        delete @ENV{qw(LISTEN_PID LISTEN_FDS LISTEN_FDNAMES)};
    }
    if (defined $ENV{SERVER_STARTER_PORT}) {
        # Server::Starter: "127.0.0.1:5000=3;8080=4;/tmp/app.sock=5"
        for my $pair (split /;/, $ENV{SERVER_STARTER_PORT}) {
            my ($name, $fd) = $pair =~ /\A(.*)=(\d+)\z/s or do {
                _report("SERVER_STARTER_PORT entry '$pair' is not ADDRESS=FD: ignored");
                next;
            };
            push @cand, { fd => $fd + 0, name => $name, from => 'Server::Starter' };
        }
    }
    for my $c (@cand) {
        my ($spec, $why) = IO::Socket::INET::Daemon::_fd_spec($c->{fd});
        if (!defined $spec) {
            _report("$c->{from} socket $c->{name} (fd $c->{fd}): " . ($why || 'unusable') . ': ignored');
            next;
        }
        push @FOUND, { %$c, spec => $spec };
    }
    return @FOUND;
}

sub _report { Carp::carp("IO::Socket::INET::Daemon: $_[0]") }

# The inherited sockets a listen SPEC (as _listen_spec parsed it) stands
# for; $addrs: the numeric addresses its host resolves to.  A TCP SPEC takes
# a socket on its port bound to one of its addresses or to every address
# ("--port 5000" in Server::Starter binds 0.0.0.0:5000 for an app that
# says localhost:5000).
sub matching {
    my ($spec, $addrs, $used) = @_;
    my @m;
    for my $f (inherited()) {
        next if $used->{ $f->{fd} };
        if ($spec->{type} eq 'systemd') {
            next unless $f->{from} eq 'systemd';
            next if defined $spec->{name} and $spec->{name} ne $f->{name};
        }
        elsif ($spec->{type} eq 'unix') {
            next unless $f->{spec} eq "unix:$spec->{path}";
        }
        elsif ($spec->{type} eq 'tcp' or $spec->{type} eq 'udp') {
            my ($udp, $host, $port) = $f->{spec} =~ /\A(udp:)?\[?(.*?)\]?:(\d+)\z/ or next;
            next if !$udp != ($spec->{type} eq 'tcp');
            next unless $spec->{port} and $port == $spec->{port};
            next unless $host eq '0.0.0.0' or $host eq '::' or $spec->{host} eq '*'
                        or grep { $_ eq $host } @$addrs;
        }
        else {
            next;
        }
        push @m, $f;
    }
    # taken: another daemon of this process, or this one after destroy
    # (which closed them), does not take them again
    my %m = map { $_->{fd} => 1 } @m;
    @FOUND = grep { !$m{ $_->{fd} } } @FOUND;
    return @m;
}

# sd_notify: one datagram to $path ('/run/...' or '@abstract').  False
# (with $!) if it could not be sent.
sub notify {
    my ($path, $state) = @_;
    return 0 unless defined $path and length $path;
    (my $addr = $path) =~ s/\A@/\0/;
    socket(my $s, Socket::AF_UNIX(), Socket::SOCK_DGRAM(), 0) or return 0;
    my $ok = defined send($s, $state, 0, Socket::pack_sockaddr_un($addr));
    close $s;
    return $ok;
}

# run, telling systemd: READY=1 once listening, WATCHDOG=1 from the event
# loop at half WATCHDOG_USEC, STOPPING=1 when run returns.
sub run {
    my ($self, $serve) = @_;
    $serve ||= sub { $_[0]->_run };
    if (!exists $self->{_notify}) {
        $self->{_notify} = delete $ENV{NOTIFY_SOCKET};   # (not for children)
        $self->{_notify_pid} = $$;
        my $usec = delete $ENV{WATCHDOG_USEC};
        my $wpid = delete $ENV{WATCHDOG_PID};
        $self->{_watchdog} = $usec / 1e6
            if defined $usec and $usec =~ /\A\d+\z/ and $usec > 0
               and (!defined $wpid or $wpid eq $$);
    }
    # a child forked with a copy of the server: systemd hears from the main
    # process only
    return $serve->($self) if $self->{_notify_pid} != $$ or !defined $self->{_notify};
    # (prefork workers with reuseport bind their own)
    if (!($self->{workers} and $self->{reuseport})) {
        $self->listen or return;
    }
    if (!$self->{_ready}++) {
        notify($self->{_notify}, "READY=1\nMAINPID=$$\n")
            or Carp::carp("IO::Socket::INET::Daemon: sd_notify READY=1 to $self->{_notify}: $!");
        if ($self->{_watchdog} and !$self->{workers}) {   # (a prefork master pings itself)
            my $path = $self->{_notify};
            $self->timer(every => $self->{_watchdog} / 2, cb => sub {
                notify($path, "WATCHDOG=1\n") if $$ == $_[0]->{_notify_pid};
            });
        }
    }
    my @r = $serve->($self);
    notify($self->{_notify}, "STOPPING=1\n");
    return wantarray ? @r : $r[0];
}

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Systemd - socket activation and sd_notify for IO::Socket::INET::Daemon

=head1 DESCRIPTION

Loaded by L<IO::Socket::INET::Daemon> when the environment has
C<LISTEN_FDS>, C<SERVER_STARTER_PORT> or C<NOTIFY_SOCKET>; nothing here
is called directly.  L<IO::Socket::INET::Daemon/LISTENING> and
L<IO::Socket::INET::Daemon/SYSTEMD AND SERVER::STARTER> document what it
does.

=cut
