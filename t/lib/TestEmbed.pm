package TestEmbed;

# Helpers for t/59-embed.t (the server inside another event loop, issue 16).
#
# A case runs in a process of its own: a "host" child (TestISD's
# start_server, child_run) loads ONE event loop (EV, AnyEvent on EV or on
# its pure-Perl loop, IO::Async, Mojo::IOLoop, POE), gives it a recurring
# timer of its own (every 0.05 s, the firing times kept) and a control
# socket of its own (a socketpair with the test), attaches the server to
# it and runs that loop.  Everything the test asks of the host loop goes
# over the control socket and is done in the host loop's own I/O callback
# (outside a server step): "stop", "grace S", "destroy", "detach",
# "attach", "timer S BUSY_MS", "ticks", ...; each command gets one line
# back, "ok ..." or "err ...".
#
# Cases run in worker processes, a few at a time (they mostly wait); a
# worker records its checks (chk_*) and the test process replays them,
# in order, as one subtest per case.

use strict;
use warnings;

use Exporter ();
use IO::Handle ();
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC);
use Storable ();
use File::Temp ();
use Time::HiRes ();
use TestISD ();          # (not imported: no second alarm)

our @ISA    = ('Exporter');
our @EXPORT = qw(loop_variants start_case run_cases
                 chk_ok chk_is chk_like chk_between chk_diag);

sub now { Time::HiRes::time() }

# ------------------------------------------------------------ the loops

# Every host loop: name (for the test names), attach (the LOOP argument),
# module (loaded in the host child only), env (set there before it loads),
# impl (what the loop must turn out to run on, a regex).
sub loop_variants {
    return (
        { name => 'EV',            attach => 'EV',           module => 'EV' },
        { name => 'AnyEvent(EV)',  attach => 'AnyEvent',     module => 'AnyEvent',
          env => { PERL_ANYEVENT_MODEL => 'EV' },   impl => qr/^AnyEvent::Impl::EV$/ },
        { name => 'AnyEvent(Perl)', attach => 'AnyEvent',    module => 'AnyEvent',
          env => { PERL_ANYEVENT_MODEL => 'Perl' }, impl => qr/^AnyEvent::Impl::Perl$/ },
        { name => 'IO::Async',     attach => 'IO::Async',    module => 'IO::Async::Loop' },
        { name => 'Mojo::IOLoop',  attach => 'Mojo::IOLoop', module => 'Mojo::IOLoop' },
        { name => 'POE',           attach => 'POE',          module => 'POE', import => 1 },
    );
}

# ------------------------------------------------------- checks (workers)

my @RESULTS;             # [ok, name, diag]
my $RECORDING;           # in a worker: record, else Test::More

sub _res {
    my ($ok, $name, $diag) = @_;
    if ($RECORDING) {
        push @RESULTS, [ $ok ? 1 : 0, $name, $ok ? '' : ($diag || '') ];
    }
    else {
        local $Test::Builder::Level = $Test::Builder::Level + 2;
        Test::More::ok($ok, $name) or ($diag and Test::More::diag($diag));
    }
    return $ok;
}

sub _show { defined $_[0] ? "'$_[0]'" : 'undef' }

sub chk_ok {
    @_ >= 2 or die "chk_ok: no name (a list-context expression as the condition?)\n";
    my ($ok, $name, $diag) = @_;
    _res($ok, $name, $diag);
}

sub chk_is {
    my ($got, $exp, $name) = @_;
    my $ok = (!defined $got && !defined $exp)
          || (defined $got && defined $exp && $got eq $exp);
    _res($ok, $name, "     got: " . _show($got) . "\nexpected: " . _show($exp));
}

sub chk_like {
    my ($got, $re, $name) = @_;
    my $ok = defined $got && $got =~ $re ? 1 : 0;       # (a list-context match: ())
    my $show = defined $got && length $got > 200 ? substr($got, 0, 200) . '...' : $got;
    _res($ok, $name, "     got: " . _show($show) . "\nexpected: $re");
}

sub chk_between {
    my ($got, $lo, $hi, $name) = @_;
    my $ok = defined $got && $got =~ /^-?[\d.e+-]+$/ && $got >= $lo && $got <= $hi;
    _res($ok, $name, "     got: " . _show($got) . "\nexpected: between $lo and $hi");
}

sub chk_diag {
    my ($msg) = @_;
    if ($RECORDING) { push @RESULTS, [ undef, $msg, '' ] }
    else            { Test::More::diag($msg) }
}

# run_cases($jobs, [name, code], ...): run each code in a worker process of
# its own, $jobs at a time, and replay each one's checks as a subtest named
# name, in the order given.  A worker has a deadline of
# $TestEmbed::CASE_DEADLINE seconds; one that dies, hangs or exits
# without reporting fails its subtest.
our $CASE_DEADLINE = 25;

sub run_cases {
    my ($jobs, @cases) = @_;
    $jobs = 1 if $jobs < 1;
    my $dir = File::Temp->newdir('isd-embed-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my (%running, %done);       # pid => index; index => [status, results, secs]
    my @queue = (0 .. $#cases);
    my $next_out = 0;
    while (@queue || %running) {
        while (@queue && keys %running < $jobs) {
            my $i = shift @queue;
            my $file = "$dir/case-$i";
            my $pid = fork;
            die "run_cases: fork: $!" unless defined $pid;
            if (!$pid) {
                _worker($cases[$i][1], $file);
                POSIX::_exit(0);
            }
            $running{$pid} = [ $i, now() ];
        }
        my $pid = waitpid(-1, 0);
        next if $pid <= 0 || !$running{$pid};
        my ($i, $t0) = @{ delete $running{$pid} };
        my $res = -s "$dir/case-$i" ? eval { Storable::retrieve("$dir/case-$i") } : undef;
        $done{$i} = [ $?, $res, now() - $t0 ];
        while (exists $done{$next_out}) {
            _replay($cases[$next_out][0], @{ delete $done{$next_out} });
            $next_out++;
        }
    }
}

sub _worker {
    my ($code, $file) = @_;
    $RECORDING = 1;
    @RESULTS = ();
    $SIG{ALRM} = sub {
        push @RESULTS, [ 0, "case deadline of ${CASE_DEADLINE}s", '' ];
        Storable::nstore({ results => \@RESULTS }, $file);
        TestISD::_deadline();
    };
    alarm $CASE_DEADLINE;
    my $ok = eval { $code->(); 1 };
    push @RESULTS, [ 0, 'case body died', "$@" ] unless $ok;
    alarm 0;
    Storable::nstore({ results => \@RESULTS }, $file);
    # the host child (a TestISD::Server) is stopped here, by DESTROY
}

sub _replay {
    my ($name, $status, $res, $secs) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::subtest(sprintf('%s (%.1fs)', $name, $secs), sub {
        if (!$res) {
            Test::More::fail("the case reported nothing (wait status $status)");
        }
        for my $r (@{ $res->{results} || [] }) {
            my ($ok, $n, $diag) = @$r;
            if (!defined $ok) { Test::More::note($n); next }
            Test::More::ok($ok, $n) or ($diag ne '' and Test::More::diag($diag));
        }
        Test::More::is($status, 0, 'the case process exited 0') if $res;
        Test::More::done_testing();
    });
}

# --------------------------------------------------------------- a case

# start_case($variant, $backend, %new_args): the host child (see above)
# with a server made by new(backend => $backend, timeout => undef,
# %new_args) and the echo callbacks below; returns a TestEmbed::Case.
# attach => 0 leaves it unattached at first.
sub start_case {
    my ($v, $backend, %a) = @_;
    my $attach = exists $a{attach} ? delete $a{attach} : 1;
    socketpair(my $mine, my $theirs, AF_UNIX, SOCK_STREAM, PF_UNSPEC)
        or die "socketpair: $!";
    $_->autoflush(1) for $mine, $theirs;
    my $srv = TestISD::start_server(
        backend        => $backend,
        timeout        => undef,
        callback       => _callbacks(),
        %a,
        child_deadline => $CASE_DEADLINE - 3,
        keep_fds       => [ fileno $theirs ],
        child_run      => sub { _host_main($_[0], $v, $theirs, $attach) },
    );
    close $theirs;
    return bless { srv => $srv, ctl => $mine, v => $v, backend => $backend }, 'TestEmbed::Case';
}

# --------------------------------------------------------- the host child

my $CB = 0;              # server callbacks run (all of them, tick too)
my $SERVER_TICKS = 0;

sub _callbacks {
    return {
        add    => sub { $CB++; TestISD::log_event('add'); 1 },
        data   => sub {
            my ($io, $s, $line) = @_;
            $CB++;
            die "boom in data\n" if $line =~ /^die/;
            if ($line =~ /^slow (\d+)/) {      # a callback that works a while
                my $end = now() + $1 / 1000;
                1 while now() < $end;
            }
            $io->print("echo $line");
            1;
        },
        remove => sub { $CB++; TestISD::log_event('remove') },
        error  => sub { my ($io, $s, $msg) = @_; $CB++; TestISD::log_event('error %s', $msg) },
        tick   => sub { $CB++; $SERVER_TICKS++ },
    };
}

sub _host_main {
    my ($d, $v, $ctl, $attach) = @_;
    local $SIG{__WARN__} = sub { TestISD::log_event('warn %s', $_[0]); print STDERR $_[0] };
    $ENV{$_} = $v->{env}{$_} for keys %{ $v->{env} || {} };
    my $h = TestEmbed::Host->new($v);
    my @ticks = ();                     # the host timer's firings
    my %timer;                          # server timers made by "timer"
    my $attach_args = sub { ($v->{attach}, $h->attach_opts) };
    my %cmd = (
        ping     => sub { 'pong' },
        impl     => sub { $h->impl },
        port     => sub { $d->sockport },
        embedded => sub { $d->{_embed} ? 1 : 0 },
        glue     => sub { ref($d->{_embed}) || 'none' },
        cb       => sub { $CB },
        ticks_reset => sub { @ticks = (); 'reset' },
        # ticks: N MAXGAP SPAN (from the reset to now)
        ticks    => sub {
            my $max = 0;
            for my $i (1 .. $#ticks) {
                my $g = $ticks[$i] - $ticks[$i - 1];
                $max = $g if $g > $max;
            }
            sprintf '%d %.3f', scalar @ticks, $max;
        },
        stop     => sub { $d->stop ? 1 : 0 },
        grace    => sub { $d->stop(grace => $_[0]) ? 1 : 0 },
        destroy  => sub { $d->destroy; 1 },
        detach   => sub { $d->detach },
        attach   => sub { $d->attach($attach_args->()); 1 },
        next_timeout => sub { my $t = $d->next_timeout; defined $t ? sprintf('%.3f', $t) : 'undef' },
        # timer S BUSY_MS: BUSY_MS of work in this host callback first,
        # then a server timer after S seconds; it logs "timer_fired ELAPSED"
        timer    => sub {
            my ($after, $busy) = @_;
            my $end = now() + ($busy || 0) / 1000;
            1 while now() < $end;
            my $t0 = now();
            my $name = "t" . (keys(%timer) + 1);
            $timer{$name} = $d->timer(after => $after, cb => sub {
                TestISD::log_event('timer_fired %s %.3f', $name, now() - $t0);
            });
            $name;
        },
        quit     => sub { $h->quit; 'bye' },
    );
    my $buf = '';
    $ctl->blocking(0);
    $h->every(0.05, sub { push @ticks, now() });
    $h->io($ctl, sub {
        my $n = sysread($ctl, $buf, 4096, length $buf);
        if (defined $n && $n == 0) {            # the test is gone
            $h->quit;
            return;
        }
        while ($buf =~ s/\A([^\n]*)\n//) {
            my ($c, @arg) = split ' ', $1;
            my $r = eval { $cmd{$c} ? $cmd{$c}->(@arg) : die "unknown command $c\n" };
            my $line = defined $r ? "ok $r" : "err $@";
            $line =~ s/\n/ /g;
            syswrite $ctl, "$line\n";
        }
    });
    if ($attach) {
        my $glue = $d->attach($attach_args->());
        TestISD::log_event('attached %s', ref $glue);
    }
    TestISD::log_event('impl %s', $h->impl);
    $h->run;
    TestISD::log_event('host_returned embedded=%d', $d->{_embed} ? 1 : 0);
    $d->detach;
}

# ------------------------------------------------------------------ Case

package TestEmbed::Case;

sub srv  { $_[0]{srv} }
sub port { $_[0]{srv}->port }

# cmd("CMD ARGS", $timeout): the host loop's answer without its "ok ",
# undef (and {last_err} set) for an "err" line or no answer in time.
sub cmd {
    my ($self, $line, $timeout) = @_;
    $self->{last_err} = undef;
    print { $self->{ctl} } "$line\n";
    my $r = TestISD::read_line($self->{ctl}, defined $timeout ? $timeout : 3);
    if (!defined $r) {
        $self->{last_err} = 'no answer';
        return undef;
    }
    chomp $r;
    return $1 if $r =~ /\Aok (.*)\z/s;
    $self->{last_err} = $r;
    return undef;
}

# ticks_over($secs): host timer firings in the next $secs seconds.
sub ticks_over {
    my ($self, $secs) = @_;
    $self->cmd('ticks_reset');
    Time::HiRes::sleep($secs);
    my $t = $self->cmd('ticks');
    return defined $t ? (split ' ', $t)[0] : undef;
}

# wait_cmd("CMD", $want, $timeout): poll CMD until it answers $want.
sub wait_cmd {
    my ($self, $line, $want, $timeout) = @_;
    my $got;
    TestISD::wait_until(sub { $got = $self->cmd($line); defined $got && $got eq $want }, $timeout || 3, 0.02);
    return $got;
}

# finish(%o): quit the host loop; checks that it returns, that the host
# child exits 0, and (unless warnings => 1) that nothing warned.
sub finish {
    my ($self, %o) = @_;
    my $srv = $self->{srv};
    TestEmbed::chk_is($self->cmd('quit'), 'bye', 'the host loop takes "quit"');
    close $self->{ctl};
    my $st = $srv->wait_exit(5);
    TestEmbed::chk_is($st, 0, 'the host child exits 0');
    my @ev = $srv->events;
    TestEmbed::chk_ok(scalar(grep { /^host_returned/ } @ev), 'the host loop returned normally',
                      join("\n", @ev[ ($#ev > 20 ? $#ev - 20 : 0) .. $#ev ]));
    TestEmbed::chk_ok(!grep({ /^child_died/ } @ev), 'no die reached the host loop',
                      join("\n", grep { /^child_died/ } @ev));
    unless ($o{warnings}) {
        my $err = $srv->stderr;
        TestEmbed::chk_is($err, '', 'nothing on the host child\'s STDERR (no warnings)');
    }
    return @ev;
}

# ------------------------------------------------------------------ Host

# The host loop's own watchers: every (a recurring timer), io (read
# readiness of a handle), run, quit; attach_opts (what attach gets for it);
# impl (what it runs on).
package TestEmbed::Host;

sub new {
    my ($class, $v) = @_;
    my $sub = {
        EV => 'EV', AnyEvent => 'AE', 'IO::Async' => 'IOAsync',
        'Mojo::IOLoop' => 'Mojo', POE => 'POE',
    }->{ $v->{attach} } or die "no host for $v->{attach}";
    (my $file = "$v->{module}.pm") =~ s{::}{/}g;
    require $file;
    $v->{module}->import if $v->{import};      # (use POE: POE::Kernel, POE::Session)
    my $self = bless { v => $v, w => [] }, "TestEmbed::Host::$sub";
    $self->init;
    return $self;
}
sub init {}
sub attach_opts { () }

package TestEmbed::Host::EV;
our @ISA = ('TestEmbed::Host');
sub every { my ($s, $t, $cb) = @_; push @{ $s->{w} }, EV::timer($t, $t, $cb) }
sub io    { my ($s, $fh, $cb) = @_; push @{ $s->{w} }, EV::io($fh, EV::READ(), $cb) }
sub run   { EV::run() }
sub quit  { EV::break(EV::BREAK_ALL()) }
sub impl  { 'EV ' . EV::backend() }

package TestEmbed::Host::AE;
our @ISA = ('TestEmbed::Host');
sub every { my ($s, $t, $cb) = @_; push @{ $s->{w} }, AnyEvent->timer(after => $t, interval => $t, cb => $cb) }
sub io    { my ($s, $fh, $cb) = @_; push @{ $s->{w} }, AnyEvent->io(fh => $fh, poll => 'r', cb => $cb) }
sub run   { my ($s) = @_; $s->{cv} = AnyEvent->condvar; $s->{cv}->recv }
sub quit  { $_[0]{cv}->send if $_[0]{cv} }
sub impl  { AnyEvent::detect() }

package TestEmbed::Host::IOAsync;
our @ISA = ('TestEmbed::Host');
sub init  { require IO::Async::Timer::Periodic; $_[0]{loop} = IO::Async::Loop->new }
sub attach_opts { (loop => $_[0]{loop}) }
sub every {
    my ($s, $t, $cb) = @_;
    my $p = IO::Async::Timer::Periodic->new(interval => $t, on_tick => $cb);
    $p->start;
    $s->{loop}->add($p);
}
sub io    { my ($s, $fh, $cb) = @_; $s->{loop}->watch_io(handle => $fh, on_read_ready => $cb) }
sub run   { $_[0]{loop}->run }
sub quit  { $_[0]{loop}->stop }
sub impl  { ref $_[0]{loop} }

package TestEmbed::Host::Mojo;
our @ISA = ('TestEmbed::Host');
sub attach_opts { (loop => Mojo::IOLoop->singleton) }
sub every { my ($s, $t, $cb) = @_; Mojo::IOLoop->recurring($t => sub { $cb->() }) }
sub io    { my ($s, $fh, $cb) = @_; Mojo::IOLoop->singleton->reactor->io($fh => sub { $cb->() })->watch($fh, 1, 0) }
sub run   { Mojo::IOLoop->start }
sub quit  { Mojo::IOLoop->stop }
sub impl  { ref Mojo::IOLoop->singleton->reactor }

package TestEmbed::Host::POE;
our @ISA = ('TestEmbed::Host');
# (a session of the host's own, made by run; its watchers set up in _start)
sub every { my ($s, $t, $cb) = @_; push @{ $s->{every} }, [ $t, $cb ] }
sub io    { my ($s, $fh, $cb) = @_; push @{ $s->{io} }, [ $fh, $cb ] }
sub run {
    my ($s) = @_;
    my (%states, @start);
    my $n = 0;
    for my $e (@{ $s->{every} || [] }) {
        my ($t, $cb) = @$e;
        my $ev = 'every' . $n++;
        $states{$ev} = sub { $_[POE::Session::KERNEL()]->delay($ev => $t); $cb->() };
        push @start, sub { $_[POE::Session::KERNEL()]->delay($ev => $t) };
    }
    for my $e (@{ $s->{io} || [] }) {
        my ($fh, $cb) = @$e;
        my $ev = 'io' . $n++;
        $states{$ev} = sub { $cb->() };
        push @start, sub { $_[POE::Session::KERNEL()]->select_read($fh, $ev) };
    }
    POE::Session->create(inline_states => {
        %states,
        _start => sub { $_->(@_) for @start },
    });
    POE::Kernel->run;
}
sub quit  { $POE::Kernel::poe_kernel->stop }
sub impl  { 'POE ' . $POE::Kernel::poe_kernel->poe_kernel_loop }

1;
