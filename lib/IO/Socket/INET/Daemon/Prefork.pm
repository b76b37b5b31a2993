package IO::Socket::INET::Daemon::Prefork;

# Prefork workers: a master process that binds once, forks the workers
# that serve (each runs the C event loop and the callbacks), and only
# supervises them: restarts the ones that die (at most one start per second
# per slot), rolling restarts on HUP, more or fewer on TTIN/TTOU, a
# graceful stop on TERM/INT, an immediate one on QUIT, recycling after
# max_requests.  Loaded by IO::Socket::INET::Daemon when workers => N is
# given; not on the hot path, so plain Perl.

use strict;
use warnings;

our $VERSION = '1.05';

use Carp ();
use Errno ();
use POSIX ();
use Time::HiRes ();

my $NAME = 'IO::Socket::INET::Daemon';

# what the master handles (blocked while it forks a worker, so that one
# sent to the new worker waits for the worker's own handlers)
my @SIGNALS = qw(TERM INT QUIT HUP TTIN TTOU);

sub _bad { IO::Socket::INET::Daemon::_bad(@_) }

sub _now { Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC()) }

# ---------------------------------------------------------------- new

# Options checked in new: workers, stop_grace, max_requests, and what
# reuseport means with workers (each worker binds a socket of its own).
sub check {
    my ($rc, $specs) = @_;
    if (exists $rc->{workers} and defined $rc->{workers}) {
        my $n = $rc->{workers};
        _bad(workers => $n, 'is not a number of processes (1 to 4096)')
            if ref $n or $n !~ /\A[1-9]\d{0,3}\z/ or $n > 4096;
    }
    for my $k (qw(stop_grace max_requests)) {
        _bad($k => $rc->{$k}, 'goes with workers => N') if defined $rc->{$k} and !$rc->{workers};
    }
    if (exists $rc->{stop_grace}) {
        _bad(stop_grace => $rc->{stop_grace}, 'is not a number of seconds')
            unless IO::Socket::INET::Daemon::_seconds($rc->{stop_grace});
    }
    if (exists $rc->{max_requests} and defined $rc->{max_requests}) {
        my $n = $rc->{max_requests};
        _bad(max_requests => $n, 'is not a positive integer') if ref $n or $n !~ /\A[1-9]\d*\z/;
    }
    if ($rc->{workers} and $rc->{reuseport}) {
        for my $s (@$specs) {
            my $what = $s->{type} eq 'unix' ? "unix:$s->{path}"
                     : $s->{type} eq 'fd' ? "fd:$s->{fd}"
                     : $s->{type} eq 'systemd' ? 'systemd' . (defined $s->{name} ? ":$s->{name}" : '')
                     : undef;
            _bad(reuseport => 1, "with workers binds a socket per worker: '$what' cannot be one "
                 . '(SO_REUSEPORT is for TCP and UDP ports)') if defined $what;
            _bad(reuseport => 1, 'with workers binds a socket per worker: port 0 would give each '
                 . 'worker a port of its own (give the port)') unless $s->{port};
        }
    }
    return;
}

# ---------------------------------------------------------------- master

# The state of the master, kept in $self->{_prefork}:
#   workers  { PID => { slot, started, ready, old, stopping, stop_at, killed } }
#   want     how many workers (TTIN/TTOU change it)
#   last     [ time a worker was last started in each slot ]
#   master   the master's PID
sub run {
    my ($self) = @_;
    my $pf = $self->{_prefork} = {
        workers => {}, want => $self->{workers}, last => [], master => $$,
        ever_ready => 0, pipe_r => undef,
    };
    my $per_worker = $self->{reuseport};

    # bind once (with reuseport, each worker binds its own: the first one
    # to fail makes run fail)
    if (!$per_worker) {
        $self->listen or return;
    }
    pipe(my $r, my $w) or do { $@ = "pipe: $!"; return };
    $pf->{pipe_r} = $r;
    $pf->{pipe_w} = $w;
    $r->blocking(0);

    my @sig;
    my $h = sub { push @sig, $_[0] };
    local @SIG{@SIGNALS} = ($h) x @SIGNALS;
    local $SIG{CHLD} = sub { };         # (only to wake the wait)
    local $SIG{PIPE} = 'IGNORE';

    my ($stopping, $deadline, $failed);
    my $grace = exists $self->{stop_grace} ? $self->{stop_grace} : 10;
    my $linger = $self->{linger};
    my $buf = '';
    my $ping_at = $self->{_watchdog} ? _now() : undef;

    while (1) {
        # the ones that ended (collected first: what they said before
        # ending is then in the pipe)
        my @ended;
        while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
            push @ended, [ $pid, $? ];
        }
        # what the workers said
        while (1) {
            my $n = sysread($r, $buf, 4096, length $buf);
            last unless $n;
        }
        while ($buf =~ s/\A([^\n]*)\n//) {
            my ($what, $pid, $msg) = split / /, $1, 3;
            my $wk = $pf->{workers}{$pid // ''} or next;
            if ($what eq 'ready') {
                $wk->{ready} = 1;
                $pf->{ever_ready} = 1;
            }
            elsif ($what eq 'retire') {
                $wk->{old} = 1;         # (replaced, then stopped)
            }
            elsif ($what eq 'fail') {
                $wk->{fail} = $msg;
            }
        }

        for my $e (@ended) {
            my ($pid, $st) = @$e;
            my $wk = delete $pf->{workers}{$pid} or next;
            if (defined $wk->{fail} and $wk->{fail} =~ /\Alisten: / and !$pf->{ever_ready}
                and !$stopping) {
                # the first workers cannot bind (the port is taken): no
                # use starting more
                ($failed, $stopping) = ($wk->{fail}, 'now');
                next;
            }
            next if $wk->{stopping} and !$wk->{killed};
            _report($self, "worker $wk->{slot} (pid $pid) "
                    . ($wk->{killed} ? 'did not stop in time: killed'
                       : ($st & 127) ? 'died of signal ' . ($st & 127)
                       : 'exited with status ' . ($st >> 8))
                    . (defined $wk->{fail} ? ": $wk->{fail}" : '')
                    . ($stopping || $wk->{old} ? '' : ': a new one is started'));
        }

        # signals
        while (defined(my $s = shift @sig)) {
            if ($s eq 'TERM' or $s eq 'INT') {
                $stopping ||= 'grace';
            }
            elsif ($s eq 'QUIT') {
                $stopping = 'now';
            }
            elsif ($stopping) {
                next;
            }
            elsif ($s eq 'HUP') {
                # new certificates for the new workers (they are forked
                # from the master, with its TLS contexts)
                $self->tls_reload if $self->{_tls} and !$per_worker;
                $_->{old} = 1 for values %{ $pf->{workers} };
            }
            elsif ($s eq 'TTIN') {
                $pf->{want}++ if $pf->{want} < 4096;
            }
            elsif ($s eq 'TTOU') {
                $pf->{want}-- if $pf->{want} > 1;
            }
        }

        my $now = _now();
        if ($stopping) {
            if (!$deadline) {
                # no new clients: the master's copy of the listeners is
                # closed too (else they would wait in a backlog that no
                # worker accepts from any more); a later run binds anew
                $self->_unlisten;
                # TERM (QUIT) to every worker; KILL for those still there
                # when they have had their grace and linger
                $deadline = $now + ($stopping eq 'now' ? 0 : $grace) + $linger + 5;
                $deadline = $now + 5 if $stopping eq 'now' and $linger > 5;
            }
            for my $pid (keys %{ $pf->{workers} }) {
                my $wk = $pf->{workers}{$pid};
                my $sig = $stopping eq 'now' ? 'QUIT' : 'TERM';
                if (($wk->{stopping} // '') ne $sig) {
                    $wk->{stopping} = $sig;
                    kill $sig, $pid;
                }
                if ($now >= $deadline and !$wk->{killed}) {
                    $wk->{killed} = 1;
                    kill 'KILL', $pid;
                }
            }
            last unless %{ $pf->{workers} };
        }
        else {
            _supervise($self, $now, $grace, $linger);
        }

        if ($ping_at and $now >= $ping_at) {
            IO::Socket::INET::Daemon::Systemd::notify($self->{_notify}, "WATCHDOG=1\n");
            $ping_at = $now + $self->{_watchdog} / 2;
        }

        # wait: a line from a worker, a signal (which interrupts it, or
        # at the latest after 0.2 s), or the next start a slot is due
        my $wait = 0.2;
        $wait = $ping_at - _now() if $ping_at and $ping_at - _now() < $wait;
        $wait = 0 if @sig or $wait < 0;
        my $rin = '';
        vec($rin, fileno($r), 1) = 1;
        select(my $rout = $rin, undef, undef, $wait);
    }
    delete $pf->{pipe_w};
    close $w;
    close $r;
    if (defined $failed) {
        $@ = $failed;
        $! = Errno::EADDRINUSE() if $failed =~ /in use/i;
        return;
    }
    return 1;
}

# Start what is missing, stop what was replaced.
sub _supervise {
    my ($self, $now, $grace, $linger) = @_;
    my $pf = $self->{_prefork};
    my %current;                        # slot => its worker (not old)
    for my $pid (keys %{ $pf->{workers} }) {
        my $wk = $pf->{workers}{$pid};
        $current{ $wk->{slot} } = $wk unless $wk->{old} or $wk->{stopping};
    }
    # old workers: stopped once their slot's new worker is ready, or at
    # once when the slot is gone (TTOU); killed if they take too long
    for my $pid (keys %{ $pf->{workers} }) {
        my $wk = $pf->{workers}{$pid};
        if ($wk->{stopping}) {
            if (!$wk->{killed} and $now >= $wk->{stop_at} + $grace + $linger + 5) {
                $wk->{killed} = 1;
                kill 'KILL', $pid;
            }
            next;
        }
        next unless $wk->{old} or $wk->{slot} >= $pf->{want};
        my $new = $current{ $wk->{slot} };
        next if $wk->{slot} < $pf->{want} and !($new and $new->{ready} and $new != $wk);
        $wk->{stopping} = 'TERM';
        $wk->{stop_at} = $now;
        delete $current{ $wk->{slot} } if ($current{ $wk->{slot} } // 0) == $wk;
        kill 'TERM', $pid;
    }
    # a worker in every slot, at most one start per second per slot
    for my $slot (0 .. $pf->{want} - 1) {
        next if $current{$slot};
        next if defined $pf->{last}[$slot] and $now < $pf->{last}[$slot] + 1;
        $pf->{last}[$slot] = $now;
        _spawn($self, $slot);
    }
}

sub _spawn {
    my ($self, $slot) = @_;
    my $pf = $self->{_prefork};
    STDOUT->flush;
    STDERR->flush;
    my $block = POSIX::SigSet->new(map { POSIX->can("SIG$_")->() } @SIGNALS);
    my $old = POSIX::SigSet->new;
    POSIX::sigprocmask(POSIX::SIG_BLOCK(), $block, $old);
    my $pid = fork;
    if (!defined $pid or $pid) {
        my $err = $!;
        POSIX::sigprocmask(POSIX::SIG_SETMASK(), $old);
        if (!defined $pid) {
            _report($self, "worker $slot: fork: $err");
            return;
        }
        $pf->{workers}{$pid} = { slot => $slot, started => _now() };
        return;
    }
    $self->{_sigmask} = $old;           # (the worker unblocks once it has its handlers)
    # the worker: never back into the master's code
    my $rc = eval { worker($self, $slot) };
    if (!defined $rc) {
        my $err = $@;
        eval { print STDERR "$NAME: worker $slot: $err" };
        $rc = 1;
    }
    STDOUT->flush;
    STDERR->flush;
    POSIX::_exit($rc);
}

sub _report {
    my ($self, $msg) = @_;
    warn "$NAME: $msg\n";
}

# ---------------------------------------------------------------- worker

# A worker's life: signals of its own, its listeners (with reuseport),
# worker_start, "ready", run, worker_stop; the exit status.
sub worker {
    my ($self, $slot) = @_;
    my $pf = $self->{_prefork};
    my $w = $pf->{pipe_w};
    close $pf->{pipe_r};
    my $master = $pf->{master};
    $self->{_worker} = $slot;
    delete $self->{_prefork};
    my $tell = sub { local $SIG{PIPE} = 'IGNORE'; syswrite $w, "$_[0] $$" . (defined $_[1] ? " $_[1]" : '') . "\n" };

    my $grace = exists $self->{stop_grace} ? $self->{stop_grace} : 10;
    my ($quit, $asked);
    $SIG{$_} = 'DEFAULT' for qw(CHLD PIPE);
    $SIG{$_} = 'IGNORE' for qw(HUP TTIN TTOU);
    # (a stop before run, during worker_start, is lost when run starts:
    # $asked makes the first cycle of run stop it again, below)
    $SIG{TERM} = $SIG{INT} = sub { $asked = 1; $self->stop(grace => $grace) };
    $SIG{QUIT} = sub { $asked = $quit = 1; $self->stop(grace => 0) };
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), delete $self->{_sigmask});
    IO::Socket::INET::Daemon::Daemonize::child()
        if $INC{'IO/Socket/INET/Daemon/Daemonize.pm'};

    if ($self->{reuseport}) {
        if (!$self->listen) {
            (my $err = "$@") =~ s/\n/ /g;
            $tell->(fail => "listen: $err");
            return 3;
        }
    }
    if (my $cb = $self->{callback}{worker_start}) {
        if (!eval { $cb->($self, $slot); 1 }) {
            (my $err = "$@") =~ s/\n+\z//;
            $err =~ s/\n/ /g;              # (one line to the master)
            $tell->(fail => "worker_start died: $err");
            return 4;
        }
    }
    # TERM or QUIT before run: stopped in its first cycle
    $self->timer(after => 0, cb => sub {
        $_[0]->stop(grace => $quit ? 0 : $grace) if $asked;
    });
    # the master gone (killed): stop, rather than serve on unsupervised
    $self->timer(every => 1, cb => sub {
        $_[0]->stop(grace => $grace) if getppid() != $master;
    });
    if (my $max = $self->{max_requests}) {
        my $told;
        $self->timer(every => 0.05, cb => sub {
            return if $told or $_[0]->stats->{accepted} < $max;
            $told = 1;
            $tell->('retire');          # (the master starts a new one, then stops this one)
        });
    }
    $tell->('ready');
    my $ok = $self->run;
    if (!$ok) {
        (my $err = "$@") =~ s/\n/ /g;
        $tell->(fail => "run: $err");
    }
    return 0 if $quit;
    if (my $cb = $self->{callback}{worker_stop}) {
        warn "$NAME: worker_stop died: $@" unless eval { $cb->($self, $slot); 1 };
    }
    $self->destroy;                     # (output delivered, for up to linger)
    return $ok ? 0 : 1;
}

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Prefork - prefork workers for IO::Socket::INET::Daemon

=head1 DESCRIPTION

Loaded by L<IO::Socket::INET::Daemon> when C<new> is given C<workers>;
nothing here is called directly.  L<IO::Socket::INET::Daemon/PREFORK
WORKERS> documents what it does.

=cut
