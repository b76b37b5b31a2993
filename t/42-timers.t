#!perl
# Timers (issue 12): $server->timer(after => S, every => S, cb => sub { my
# ($server, $t) = @_ }) returns an IO::Socket::INET::Daemon::Timer.
# One-shot and repeating timers fire at about the right time (checked
# loosely: never early, and late by at most a generous margin), in order of
# their due times; after => 0 fires on the next loop cycle; cancel (from
# outside or from the timer's own callback) stops one and active tells;
# a dropped handle keeps firing; a die in the callback goes to error and a
# repeating timer goes on; timers wait between runs and fire again in the
# next one; destroy cancels them; bad arguments croak naming the method and
# the value; 100,000 pending timers cost no CPU.
#
# Timing is measured in the server process: each timer logs
# "made NAME T" just before timer() is called and "fire NAME T N" each time
# its callback runs (Time::HiRes::time, both in the same process).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../xt/lib";
use TestISD;
use ISDStress qw(proc_cpu_ticks clk_tck asan_build);
use Test::More;
use Scalar::Util qw(refaddr);
use Time::HiRes ();

my $EARLY = 0.002;                  # 1 ms resolution: rounding, not early firing
my $LATE  = 0.3;                    # the loose upper bound on lateness
my $TCLASS = 'IO::Socket::INET::Daemon::Timer';

# ------------------------------------------------------------- child side

my %T;            # child: timer handles kept, by name
my %N;            # child: firings, by name
my $DADDR;        # child: refaddr of the daemon

# mk($d, $name, %timer_args): make a timer whose callback logs its firings;
# keep => 0 drops the handle, then => sub { my ($server, $t, $n) = @_ }
# runs after the log in the callback.
sub mk {
    my ($d, $name, %o) = @_;
    my $keep = exists $o{keep} ? delete $o{keep} : 1;
    my $then = delete $o{then};
    $N{$name} = 0;
    log_event('made %s %.6f', $name, TestISD::now());
    my $t = $d->timer(%o, cb => sub {
        my $n = ++$N{$name};
        log_event('fire %s %.6f %d', $name, TestISD::now(), $n);
        $then->(@_, $n) if $then;
    });
    $T{$name} = $t if $keep;
    return $t;
}

sub error_cb {
    my ($io, $d, $msg) = @_;
    log_event('error %s %s %s %s', defined $io ? 'io' : 'undef',
              (ref $d && refaddr($d) == $DADDR) ? 'same' : 'other',
              ($msg =~ /\n/ ? 'nl' : 'onel'), $msg);
}

# A server whose data callback runs commands: "NAME ARGS..." calls
# $commands{NAME}->($io, $daemon, ARGS...) and answers "ok RESULTS...\n"
# (or "died MESSAGE\n").  "ping" answers "ok pong".
sub tserver {
    my (%a) = @_;
    my $cmds = delete $a{commands} || {};
    my $cb   = delete $a{callback} || {};
    my $init = delete $a{child_init};
    my %cmd = (ping => sub { 'pong' }, %$cmds);
    return start_server(
        timeout        => undef,
        child_deadline => 25,
        %a,
        callback => {
            data => sub {
                my ($io, $d, $line) = @_;
                $line =~ s/\s+\z//;
                my ($name, @arg) = split ' ', $line;
                my $code = $cmd{$name};
                if (!$code) { $io->print("unknown $name\n"); return 1 }
                my @r = eval { $code->($io, $d, @arg) };
                if ($@) {
                    (my $e = $@) =~ s/\s+/ /g;
                    $io->print("died $e\n");
                    return 1;
                }
                $io->print(join(' ', 'ok', map { defined $_ ? $_ : 'undef' } @r) . "\n");
                return 1;
            },
            error => \&error_cb,
            %$cb,
        },
        child_init => sub {
            $DADDR = refaddr($_[0]);
            %T = ();
            %N = ();
            $init->(@_) if $init;
        },
    );
}

# ------------------------------------------------------------ parent side

# cmd($sock, "line", $timeout): the answer without "ok " (undef if none or
# not ok; the raw answer is diagnosed).
sub cmd {
    my ($c, $line, $timeout) = @_;
    print $c "$line\n";
    my $r = read_line($c, defined $timeout ? $timeout : 5);
    if (!defined $r || $r !~ /^ok(?: (.*))?\n\z/) {
        diag("command '$line': " . (defined $r ? "answer $r" : 'no answer'));
        return undef;
    }
    return defined $1 ? $1 : '';
}

sub made {
    my ($srv, $name) = @_;
    my ($e) = $srv->grep_events(qr/^made \Q$name\E /);
    return $e && $e =~ /^made \S+ (\S+)$/ ? $1 : undef;
}

sub fires {
    my ($srv, $name) = @_;
    return map { /^fire \S+ (\S+) \d+$/ ? $1 : () } $srv->grep_events(qr/^fire \Q$name\E /);
}

sub ev_time {
    my ($srv, $re) = @_;
    my ($e) = $srv->grep_events($re);
    return $e && $e =~ /^\S+ (?:\S+ )?(\d+\.\d+)/ ? $1 : undef;
}

sub fmt { defined $_[0] ? sprintf('%.3f', $_[0]) : 'undef' }

sub in_range {
    my ($v, $lo, $hi, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(defined $v && $v >= $lo && $v <= $hi, sprintf '%s: %s (in [%.3f, %.3f])', $what, fmt($v), $lo, $hi);
}

# sleep until $t0 + $secs
sub sleep_until {
    my ($t) = @_;
    my $left = $t - TestISD::now();
    Time::HiRes::sleep($left) if $left > 0;
}

sub server_ok {
    my ($srv) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok($srv->alive, 'the server is alive');
    my $err = $srv->stderr;
    is($err, '', 'the server printed nothing on stderr');
}

require IO::Socket::INET::Daemon;
if (!ok(IO::Socket::INET::Daemon->can('timer'), 'IO::Socket::INET::Daemon has timer')) {
    done_testing;       # nothing below can work: fail at once
    exit 1;
}

for my $be (backends()) {

    # ------------------------------------------------------------ timing
    isd_subtest "one-shot, repeating, fractions, order, backend $be" => sub {
        my @order = (5, 2, 8, 1, 7, 3, 6, 4);       # made in this order, due 20 ms apart
        my $srv = tserver(
            backend  => $be,
            commands => {
                go => sub {
                    my ($io, $d) = @_;
                    my $t = mk($d, 'once', after => 0.3,
                               then => sub { $io->print("fired once\n") });
                    my $ok = ref($t) eq $TCLASS && $t->isa($TCLASS) ? 1 : 0;
                    mk($d, 'rep',  every => 0.1);
                    mk($d, 'rep4', every => 0.4);
                    mk($d, 'both', after => 0.5, every => 0.2);
                    mk($d, 'frac', after => 0.125);
                    mk($d, "o$_", after => 0.02 * $_) for @order;
                    return ($ok, map { $T{$_}->active ? 1 : 0 } qw(once rep both));
                },
                active => sub { map { $T{$_}->active ? 1 : 0 } @_[2 .. $#_] },
                cancel => sub {
                    my @r = map { $T{$_}->cancel ? 1 : 0 } @_[2 .. $#_];
                    log_event('cancelled %.6f', TestISD::now());
                    @r;
                },
            });
        my $c = client($srv);
        my $t_go = now();
        is(cmd($c, 'go'), '1 1 1 1', "timer returns an $TCLASS; active while pending");
        is(read_line($c, 1.5), "fired once\n", 'what the one-shot printed reaches the client');
        my $got_once = now() - $t_go;
        ok($got_once >= 0.3 - $EARLY, 'not before 0.3 s (client side: ' . fmt($got_once) . ')');
        sleep_until($t_go + 1.1);
        is(cmd($c, 'active once rep rep4 both frac'), '0 1 1 1 0',
           'active: false after a one-shot fired, true for repeating timers');
        is(cmd($c, 'cancel rep rep4 both'), '1 1 1', 'cancel returns true');
        my $t_cancel = ev_time($srv, qr/^cancelled /);
        Time::HiRes::sleep(0.35);

        # one-shot, after 0.3
        my $m = made($srv, 'once');
        my @f = fires($srv, 'once');
        is(scalar(@f), 1, 'one-shot fired exactly once');
        in_range($f[0] - $m, 0.3 - $EARLY, 0.3 + $LATE, 'one-shot after 0.3 fired after') if @f;

        # fraction, 1/8 s
        @f = fires($srv, 'frac');
        is(scalar(@f), 1, 'after => 0.125 fired once');
        in_range($f[0] - made($srv, 'frac'), 0.125 - $EARLY, 0.125 + $LATE, 'after 0.125 fired after') if @f;

        # every 0.1 over ~1.1 s
        $m = made($srv, 'rep');
        @f = fires($srv, 'rep');
        my $n1 = grep { $_ <= $m + 1.0 + $EARLY } @f;
        ok($n1 >= 6 && $n1 <= 11, "every 0.1: $n1 firings in the first second (6..11)");
        in_range($f[0] - $m, 0.1 - $EARLY, 0.1 + $LATE, 'every 0.1: first firing after') if @f;
        my @early = grep { $f[$_] - $m < 0.1 * ($_ + 1) - $EARLY } 0 .. $#f;
        is(scalar(@early), 0, 'every 0.1: firing N never before N*0.1 s')
            or diag("early: @early; " . join ' ', map { fmt($_ - $m) } @f);
        my @after_cancel = grep { $_ > $t_cancel } @f;
        is(scalar(@after_cancel), 0, 'no firing after cancel');

        # every 0.4
        $m = made($srv, 'rep4');
        @f = fires($srv, 'rep4');
        ok(@f >= 1 && @f <= 2, 'every 0.4: ' . scalar(@f) . ' firings in 1.1 s (1..2)');
        in_range($f[0] - $m, 0.4 - $EARLY, 0.4 + $LATE, 'every 0.4 alone: first firing after every') if @f;
        in_range($f[1] - $m, 0.8 - $EARLY, 1.1 + $LATE, 'every 0.4: second firing after') if @f > 1;

        # after 0.5, every 0.2
        $m = made($srv, 'both');
        @f = fires($srv, 'both');
        ok(@f >= 2 && @f <= 4, 'after 0.5 every 0.2: ' . scalar(@f) . ' firings by 1.1 s (2..4)');
        in_range($f[0] - $m, 0.5 - $EARLY, 0.5 + $LATE, 'after 0.5 every 0.2: first firing after `after`') if @f;
        # (the repeat is due `every` after the first one was due, not after
        # it ran: a late first firing makes this gap shorter by as much)
        my $late1 = @f ? $f[0] - $m - 0.5 : 0;
        $late1 = 0 if $late1 < 0;
        in_range($f[1] - $f[0], 0.2 - $EARLY - $late1, 0.2 + $LATE, 'then `every` between firings') if @f > 1;
        ok(@f < 2 || $f[1] - $m >= 0.7 - $EARLY, 'second firing not before after + every');

        # order of due times
        my @seq = map { /^fire (o\d+) / ? $1 : () } $srv->events;
        is("@seq", join(' ', map { "o$_" } 1 .. 8), 'one-shots fire in order of due time, not of making');
        for my $k (1 .. 8) {
            my ($fk) = fires($srv, "o$k");
            my $d = defined $fk ? $fk - made($srv, "o$k") : undef;
            ok(defined $d && $d >= 0.02 * $k - $EARLY && $d <= 0.02 * $k + $LATE,
               "after => " . 0.02 * $k . ' fired after ' . fmt($d)) or last;
        }
        server_ok($srv);
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------------ after 0
    isd_subtest "after => 0: the next loop cycle, backend $be" => sub {
        my $in_data = 0;
        my $chain = 0;
        my $chain_on = 0;
        my $step;
        $step = sub {
            my ($d) = @_;
            $chain++;
            $d->timer(after => 0, cb => $step) if $chain_on;
        };
        my $srv = tserver(
            backend    => $be,
            child_init => sub {
                my ($d) = @_;
                $d->timer(after => 0, cb => sub { log_event('init0 %.6f', TestISD::now()) });
            },
            commands => {
                go => sub {
                    my ($io, $d) = @_;
                    $in_data = 1;
                    mk($d, 'zero', after => 0,
                       then => sub { log_event('zero_in_data %d', $in_data) });
                    my $fired_inside = $N{zero};
                    $in_data = 0;
                    return $fired_inside;
                },
                chain => sub { $chain_on = 1; $chain = 0; $_[1]->timer(after => 0, cb => $step); 1 },
                count => sub { $chain },
                unchain => sub { $chain_on = 0; $chain },
            });
        ok($srv->wait_event(qr/^init0 /, 2), 'after => 0 made before run fires when run starts');
        my $c = client($srv);
        is(cmd($c, 'go'), '0', 'not fired inside timer()');
        ok($srv->wait_event(qr/^fire zero /, 1), 'after => 0 made in data fires without further traffic');
        my ($f) = fires($srv, 'zero');
        in_range(defined $f ? $f - made($srv, 'zero') : undef, 0, 0.3, 'after => 0 fired after');
        is(($srv->grep_events(qr/^zero_in_data /))[0], 'zero_in_data 0', 'after the data callback returned');
        Time::HiRes::sleep(0.1);
        is(scalar(fires($srv, 'zero')), 1, 'fired once');

        # a timer callback making an after => 0 timer: a new cycle each time,
        # so the loop still serves clients between them
        is(cmd($c, 'chain'), '1', 'a chain of after => 0 timers started');
        my @n;
        for my $i (1 .. 3) {
            Time::HiRes::sleep(0.05);
            my $r = cmd($c, 'count', 2);
            ok(defined $r, "a client is served while the chain runs ($i)") or last;
            push @n, $r;
        }
        ok(@n == 3 && $n[0] > 0 && $n[2] > $n[0], "the chain goes on meanwhile (@n)");
        my $stopped = cmd($c, 'unchain', 2);
        ok(defined $stopped, 'chain stopped');
        Time::HiRes::sleep(0.1);
        my $after = cmd($c, 'count');
        ok(defined $after && defined $stopped && $after <= $stopped + 1, "and stays stopped ($stopped, $after)");
        server_ok($srv);
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------ cancel, active
    isd_subtest "cancel and active, backend $be" => sub {
        my $srv = tserver(
            backend  => $be,
            commands => {
                go => sub {
                    my ($io, $d) = @_;
                    mk($d, 'out',  every => 0.1);
                    mk($d, 'late', after => 0.6);
                    mk($d, 'self', every => 0.05, then => sub {
                        my ($s, $t, $n) = @_;
                        log_event('args %d %s %s %s %s', scalar(@_) - 1, ref $s,
                                  (ref $s && refaddr($s) == $DADDR) ? 'same' : 'other',
                                  ref $t, (ref $t && $T{self} && refaddr($t) == refaddr($T{self})) ? 'same' : 'other')
                            if $n == 1;
                        return unless $n == 3;
                        my $r1 = $t->cancel ? 1 : 0;
                        my $a  = $t->active ? 1 : 0;
                        my $r2 = $t->cancel ? 1 : 0;
                        log_event('selfcancel %d %d %d', $r1, $a, $r2);
                    });
                    # two timers due together, each cancelling the other
                    for my $p (['pairA', 'pairB'], ['pairB', 'pairA']) {
                        my ($me, $other) = @$p;
                        mk($d, $me, after => 0.2, then => sub { $T{$other}->cancel });
                    }
                    return map { $T{$_}->active ? 1 : 0 } qw(out late self pairA pairB);
                },
                active => sub { map { $T{$_}->active ? 1 : 0 } @_[2 .. $#_] },
                cancel => sub {
                    my @r = map { $T{$_}->cancel ? 1 : 0 } @_[2 .. $#_];
                    log_event('cancelled %.6f', TestISD::now());
                    @r;
                },
            });
        my $c = client($srv);
        my $t_go = now();
        is(cmd($c, 'go'), '1 1 1 1 1', 'all active when made');
        sleep_until($t_go + 0.35);
        is(cmd($c, 'cancel out late'), '1 1', 'cancel from outside returns true');
        is(cmd($c, 'active out late'), '0 0', 'active false after cancel');
        is(cmd($c, 'cancel out late'), '1 1', 'cancel again: still true (idempotent)');
        my $t_cancel = ev_time($srv, qr/^cancelled /);
        sleep_until($t_go + 0.9);

        my @f = fires($srv, 'out');
        ok(@f >= 1, 'every 0.1 fired before the cancel (' . scalar(@f) . ')');
        is(scalar(grep { $_ > $t_cancel } @f), 0, 'and never after it');
        is(scalar(fires($srv, 'late')), 0, 'a one-shot cancelled before it was due never fires');

        is(scalar(fires($srv, 'self')), 3, 'a timer cancelling itself in its 3rd callback fired 3 times');
        is(($srv->grep_events(qr/^selfcancel /))[0], 'selfcancel 1 0 1',
           'inside its callback: cancel true, then active false, cancel again true');
        is(cmd($c, 'active self'), '0', 'inactive afterwards');

        my $pairs = scalar(fires($srv, 'pairA')) + scalar(fires($srv, 'pairB'));
        is($pairs, 1, 'of two timers due together, each cancelling the other, one fires');
        is(cmd($c, 'active pairA pairB'), '0 0', 'both inactive');
        is(cmd($c, 'cancel pairA pairB'), '1 1', 'cancel of a fired or cancelled one-shot: true');

        is(($srv->grep_events(qr/^args /))[0],
           "args 2 IO::Socket::INET::Daemon same $TCLASS same",
           'cb gets ($server, $timer): the daemon and the handle timer() returned');
        server_ok($srv);
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------ dropped handles
    isd_subtest "a dropped handle keeps firing, backend $be" => sub {
        my $chain;
        $chain = sub {
            my ($s, $t) = @_;
            my $n = ++$N{chain};
            log_event('fire chain %.6f %d', TestISD::now(), $n);
            $s->timer(after => 0.05, cb => $chain) if $n < 5;
        };
        my $srv = tserver(
            backend  => $be,
            commands => {
                go => sub {
                    my ($io, $d) = @_;
                    # never held: void context
                    mk($d, 'void', every => 0.1, keep => 0,
                       then => sub { $_[1]->cancel if $_[2] == 5 });
                    mk($d, 'void1', after => 0.2, keep => 0);
                    # held, then dropped
                    mk($d, 'held', every => 0.1,
                       then => sub { $_[1]->cancel if $_[2] == 8 });
                    $N{chain} = 0;
                    log_event('made chain %.6f', TestISD::now());
                    $d->timer(after => 0.05, cb => $chain);
                    1;
                },
                drop => sub {
                    delete $T{held};
                    log_event('dropped %.6f', TestISD::now());
                    1;
                },
            });
        my $c = client($srv);
        my $t_go = now();
        is(cmd($c, 'go'), '1', 'timers made');
        sleep_until($t_go + 0.25);
        is(cmd($c, 'drop'), '1', 'the held handle dropped');
        my $t_drop = ev_time($srv, qr/^dropped /);
        ok($srv->wait_event(qr/^fire held \S+ 8$/, 2), 'the dropped timer went on to its 8th firing');
        ok($srv->wait_event(qr/^fire void \S+ 5$/, 1), 'a timer whose handle was never kept fires');
        ok($srv->wait_event(qr/^fire chain \S+ 5$/, 1), 'a one-shot made in a timer callback fires (chain of 5)');
        Time::HiRes::sleep(0.3);
        my @held = fires($srv, 'held');
        is(scalar(@held), 8, 'held-then-dropped: 8 firings, then its own cancel stopped it');
        ok(scalar(grep { $_ > $t_drop } @held) >= 2, 'firings after the drop: ' . scalar(grep { $_ > $t_drop } @held));
        is(scalar(fires($srv, 'void')), 5, 'never held: 5 firings, then cancelled through the $t its cb got');
        my @v1 = fires($srv, 'void1');
        is(scalar(@v1), 1, 'a one-shot whose handle was never kept fires once');
        in_range(@v1 ? $v1[0] - made($srv, 'void1') : undef, 0.2 - $EARLY, 0.2 + $LATE, 'at');
        my @ch = fires($srv, 'chain');
        is(scalar(@ch), 5, 'chain: 5 firings');
        my @gaps = map { $ch[$_] - $ch[$_ - 1] } 1 .. $#ch;
        is(scalar(grep { $_ < 0.05 - $EARLY } @gaps), 0, 'each 0.05 s after the one before')
            or diag join ' ', map { fmt($_) } @gaps;
        server_ok($srv);
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------ die in a timer
    isd_subtest "a die in a timer callback, backend $be" => sub {
        my $srv = tserver(
            backend  => $be,
            commands => {
                go => sub {
                    my ($io, $d) = @_;
                    mk($d, 'drep', every => 0.1, then => sub {
                        my ($s, $t, $n) = @_;
                        $t->cancel if $n == 4;
                        die "boom $n\n";
                    });
                    mk($d, 'donce', after => 0.1, then => sub { die "once-died\n" });
                    1;
                },
                active => sub { map { $T{$_}->active ? 1 : 0 } @_[2 .. $#_] },
            });
        my $c = client($srv);
        is(cmd($c, 'go'), '1', 'timers made');
        ok($srv->wait_event(qr/^fire drep \S+ 4$/, 2), 'a repeating timer whose cb dies goes on (4th firing)');
        Time::HiRes::sleep(0.3);
        is(scalar(fires($srv, 'drep')), 4, 'fired 4 times (then cancelled itself)');
        my @err = $srv->grep_events(qr/^error /);
        for my $n (1 .. 4) {
            is(scalar(grep { /^error undef same onel .*timer callback died: boom $n\z/ } @err), 1,
               "die $n reported to error(undef, \$server, 'timer callback died: boom $n')");
        }
        is(scalar(grep { /^error undef same onel .*timer callback died: once-died\z/ } @err), 1,
           'a one-shot dying reported once');
        is(scalar(@err), 5, 'nothing else reported') or diag explain \@err;
        is(cmd($c, 'active drep donce'), '0 0', 'both inactive afterwards');
        is(cmd($c, 'ping'), 'pong', 'the server still serves');
        server_ok($srv);
        close $c;
        $srv->stop;

        # without an error callback: warned
        $srv = tserver(
            backend  => $be,
            callback => { error => undef },
            commands => {
                go => sub { mk($_[1], 'w', after => 0.05, then => sub { die "warned-die\n" }); 1 },
            });
        $c = client($srv);
        is(cmd($c, 'go'), '1', 'timer made (no error callback)');
        ok(wait_until(sub { $srv->stderr =~ /^IO::Socket::INET::Daemon: .*timer callback died: warned-die/m }, 2),
           'the die is warned "IO::Socket::INET::Daemon: ... timer callback died: ..."')
            or diag('stderr: ' . $srv->stderr);
        is(cmd($c, 'ping'), 'pong', 'the server still serves');
        ok($srv->alive, 'alive');
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------ stop, run again
    isd_subtest "timers wait between runs, backend $be" => sub {
        my $srv = tserver(
            backend   => $be,
            child_run => sub {
                my ($d) = @_;
                $d->run;
                log_event('stopped %.6f', TestISD::now());
                log_event('gap_active %d %d', ($T{rep} && $T{rep}->active) ? 1 : 0,
                          ($T{gap} && $T{gap}->active) ? 1 : 0);
                Time::HiRes::sleep(0.6);
                log_event('rerun %.6f', TestISD::now());
                $d->run;
                log_event('run2_returned');
            },
            commands => {
                go => sub {
                    mk($_[1], 'rep', every => 0.1);
                    mk($_[1], 'rep2', every => 0.1, keep => 0);
                    1;
                },
                stop => sub {
                    mk($_[1], 'gap', after => 0.2);   # due while run is not running
                    $_[1]->stop;
                    1;
                },
                active => sub { map { $T{$_}->active ? 1 : 0 } @_[2 .. $#_] },
            });
        my $c = client($srv);
        is(cmd($c, 'go'), '1', 'timers made');
        Time::HiRes::sleep(0.35);
        is(cmd($c, 'stop', 3), '1', 'stopped');
        ok($srv->wait_event(qr/^rerun /, 3), 'the server runs again after a pause');
        Time::HiRes::sleep(0.45);
        is(cmd($c, 'active rep gap'), '1 0', 'running again: the repeating timer active, the one-shot fired');
        my $t_stop = ev_time($srv, qr/^stopped /);
        my $t_rerun = ev_time($srv, qr/^rerun /);
        ok(defined $t_stop && defined $t_rerun, 'times of stop and rerun logged') or return;
        is(($srv->grep_events(qr/^gap_active /))[0], 'gap_active 1 1', 'between runs timers are still active (stop does not cancel)');
        for my $name (qw(rep rep2 gap)) {
            my @in_gap = grep { $_ > $t_stop && $_ < $t_rerun } fires($srv, $name);
            is(scalar(@in_gap), 0, "$name: no firing between the runs");
        }
        my @rep = fires($srv, 'rep');
        ok(scalar(grep { $_ < $t_stop } @rep) >= 2, 'every 0.1 fired in the first run');
        ok(scalar(grep { $_ > $t_rerun } @rep) >= 2, 'and fires again in the second');
        ok(scalar(grep { $_ > $t_rerun } fires($srv, 'rep2')) >= 2, 'a dropped one too');
        my @gap = fires($srv, 'gap');
        is(scalar(@gap), 1, 'a one-shot that fell due between runs fires once');
        in_range(@gap ? $gap[0] - $t_rerun : undef, 0, $LATE, 'at the start of the next run');
        server_ok($srv);
        close $c;
        $srv->stop;
    };

    # ------------------------------------------------------------- destroy
    isd_subtest "destroy cancels every timer, backend $be" => sub {
        my $srv = tserver(
            backend        => $be,
            child_deadline => 10,
            child_run      => sub {
                my ($d) = @_;
                $d->run;
                log_event('after_destroy %d %d', map { $T{$_}->active ? 1 : 0 } qw(rep once));
                log_event('cancel_after %d', $T{rep}->cancel ? 1 : 0);
                $d->timer(after => 0.5, cb => sub { log_event('new_fired %.6f', TestISD::now()); $_[0]->stop });
                log_event('rerun %.6f', TestISD::now());
                $d->run;
                log_event('run2_returned');
            },
            commands => {
                go => sub {
                    mk($_[1], 'rep',  every => 0.1);
                    mk($_[1], 'once', after => 0.5);
                    mk($_[1], 'drop', every => 0.1, keep => 0);
                    1;
                },
                destroy => sub {
                    $_[1]->destroy;
                    log_event('destroyed %.6f', TestISD::now());
                    1;
                },
            });
        my $c = client($srv);
        is(cmd($c, 'go'), '1', 'timers made');
        Time::HiRes::sleep(0.25);
        print $c "destroy\n";
        read_until_eof($c, 3);
        ok(got_eof($c), 'destroy closed the connection');
        ok($srv->wait_event(qr/^run2_returned$/, 3), 'a timer made after destroy fires in the next run (and stops it)');
        my $t_d = ev_time($srv, qr/^destroyed /);
        ok(defined $t_d, 'destroy time logged') or return;
        is(($srv->grep_events(qr/^after_destroy /))[0], 'after_destroy 0 0', 'after destroy: timers inactive');
        is(($srv->grep_events(qr/^cancel_after /))[0], 'cancel_after 1', 'cancel after destroy: true');
        for my $name (qw(rep once drop)) {
            is(scalar(grep { $_ > $t_d } fires($srv, $name)), 0, "$name: no firing after destroy");
        }
        ok(scalar(fires($srv, 'rep')) >= 1, 'rep had fired before destroy');
        my $t_new = ev_time($srv, qr/^new_fired /);
        my $t_rerun = ev_time($srv, qr/^rerun /);
        in_range(defined $t_new && defined $t_rerun ? $t_new - $t_rerun : undef,
                 0.5 - $EARLY, 0.5 + $LATE, 'the new timer fired after');
        is($srv->wait_exit(3), 0, 'the server child exited 0');
        is($srv->stderr, '', 'nothing on stderr');
        close $c;

        # destroy from a timer callback, with other timers due in the same pass
        $srv = tserver(
            backend        => $be,
            child_deadline => 10,
            child_run      => sub {
                my ($d) = @_;
                mk($d, 'tC', every => 0.05);
                mk($d, 'tA', after => 0.2, then => sub {
                    $_[0]->destroy;
                    log_event('destroyed %.6f', TestISD::now());
                });
                mk($d, 'tB', after => 0.2);
                $d->run;
                log_event('run_returned');
            });
        ok($srv->wait_event(qr/^run_returned$/, 3), 'destroy in a timer callback: run returns');
        $t_d = ev_time($srv, qr/^destroyed /);
        ok(defined $t_d, 'destroyed') or return;
        is(scalar(fires($srv, 'tA')), 1, 'the destroying timer fired once');
        ok(scalar(fires($srv, 'tC')) >= 2, 'the repeating one had fired');
        is(scalar(grep { $_ > $t_d } map { fires($srv, $_) } qw(tB tC)), 0,
           'nothing fires after destroy, not even a timer due in the same pass');
        is($srv->wait_exit(3), 0, 'the server child exited 0');
        is($srv->stderr, '', 'nothing on stderr');
    };

    # ------------------------------------------------- in-process: croaks
    isd_subtest "bad arguments croak, handles outlive the daemon, backend $be" => sub {
        my $d = IO::Socket::INET::Daemon->new(port => 0, host => '127.0.0.1', backend => $be);
        my $cb = sub { };
        my $M = 'IO::Socket::INET::Daemon::timer';
        my @cases = (
            [[after => 1], qr/^\Q$M\E: cb: .*is not a code reference/, 'no cb'],
            [[after => 1, cb => 'main::foo'], qr/^\Q$M\E: cb: .*main::foo.* is not a code reference/, 'cb a string'],
            [[after => 1, cb => {}], qr/^\Q$M\E: cb: .*HASH.* is not a code reference/, 'cb a hash ref'],
            [[cb => $cb], qr/^\Q$M\E: needs after or every/, 'neither after nor every'],
            [[after => -1, cb => $cb], qr/^\Q$M\E: after: '-1' is not a number of seconds/, 'after -1'],
            [[after => -0.001, cb => $cb], qr/^\Q$M\E: after: '-0.001' is not a number of seconds/, 'after -0.001'],
            [[every => -2, cb => $cb], qr/^\Q$M\E: every: '-2' is not a number of seconds/, 'every -2'],
            [[after => 'abc', cb => $cb], qr/^\Q$M\E: after: 'abc' is not a number of seconds/, "after 'abc'"],
            [[every => '1s', cb => $cb], qr/^\Q$M\E: every: '1s' is not a number of seconds/, "every '1s'"],
            [[after => 1, every => 'x', cb => $cb], qr/^\Q$M\E: every: 'x' is not a number of seconds/, "every 'x' with after"],
            [[every => 0, cb => $cb], qr/^\Q$M\E: every: '0' must be more than 0/, 'every 0'],
            [[after => 1, every => 0, cb => $cb], qr/^\Q$M\E: every: '0' must be more than 0/, 'every 0 with after'],
            [[after => 1, cb => $cb, repeat => 1], qr/^\Q$M\E: .*\brepeat\b/, 'unknown option'],
        );
        for my $case (@cases) {
            my ($args, $re, $what) = @$case;
            my $t = eval { $d->timer(@$args) };
            my $err = $@;
            ok(!defined $t, "$what: no timer");
            like($err, $re, "$what: croaks naming the method and the value");
        }
        my $t = eval { $d->timer(after => 1, cb => $cb, repeat => 1) };
        like($@, qr/unknown/i, 'unknown option: says so');
        like($@, qr/ at \Q$0\E line \d+/, "the croak is reported at the caller's line");

        for my $ok ([after => 0], [after => 0.001], [after => '2.5'], [every => 0.001], [after => 0, every => 1]) {
            my $t = eval { $d->timer(@$ok, cb => $cb) };
            ok($t && ref $t eq $TCLASS, "accepted: @$ok") or diag $@;
            ok($t && $t->cancel, 'and cancelled');
        }

        # destroy cancels; handles outlive the daemon
        my $t1 = $d->timer(after => 10, cb => $cb);
        my $t2 = $d->timer(every => 1, cb => $cb);
        ok($t1->active && $t2->active, 'active before destroy');
        $d->destroy;
        ok(!$t1->active && !$t2->active, 'destroy (not running) cancels them');
        ok($t1->cancel, 'cancel after destroy: true');
        my $t3 = $d->timer(after => 10, cb => $cb);
        ok($t3 && $t3->active, 'a timer can be made after destroy');
        undef $d;
        ok(!$t3->active, 'the daemon freed: its timers are not active');
        ok($t3->cancel, 'and cancel still answers true');
        undef $t3;
        undef $t1;
        undef $t2;
        pass('handles freed after the daemon: no crash');
    };

    # ---------------------------------------------------- 100,000 timers
    isd_subtest "100,000 pending timers cost no CPU, backend $be" => sub {
        if (!-r "/proc/$$/stat") { pass('skipped: needs Linux /proc'); return }
        my @held;
        my $ticks = 0;
        my $srv = tserver(
            backend  => $be,
            callback => { tick => sub { $ticks++ } },      # once per loop cycle
            commands => {
                ticks => sub { $ticks },
                many => sub {
                    my ($io, $d) = @_;
                    my $t0 = TestISD::now();
                    my $never = sub { log_event('many_fired') };
                    for my $i (0 .. 99_999) {
                        # due between 60 and 70 s from now, in no particular order
                        my $t = $d->timer(after => 60 + (($i * 7919) % 10_000) / 1000, cb => $never);
                        push @held, $t if $i % 2;       # half held, half dropped
                    }
                    return sprintf '%.3f', TestISD::now() - $t0;
                },
                short => sub { mk($_[1], 'short', after => 0.5); 1 },
                cancelheld => sub {
                    my $t0 = TestISD::now();
                    my $n = grep { $_->cancel } @held;
                    return ($n, sprintf '%.3f', TestISD::now() - $t0);
                },
                three => sub {
                    mk($_[1], 'three3', after => 0.3);
                    mk($_[1], 'three1', after => 0.1);
                    mk($_[1], 'three2', after => 0.2);
                    1;
                },
            });
        my $c = client($srv);
        my $made = cmd($c, 'many', 20);
        ok(defined $made, "100,000 timers made in the server (${\ ($made // '?')} s)") or return;
        is(cmd($c, 'short'), '1', 'a short timer made after them');
        Time::HiRes::sleep(0.2);
        my $pid = $srv->pid;
        my $k0 = cmd($c, 'ticks');
        my $c0 = proc_cpu_ticks($pid);
        my $t0 = now();
        Time::HiRes::sleep(1.0);
        my $c1 = proc_cpu_ticks($pid);
        my $k1 = cmd($c, 'ticks');
        my $secs = now() - $t0;
        my $cpu = ($c1 - $c0) / clk_tck();
        my $max = asan_build() ? 0.4 : 0.2;
        ok($cpu < $max, sprintf 'server CPU over %.2f s of idling with 100,000 timers pending: %.2f s (< %.1f)',
                                $secs, $cpu, $max);
        # the 'ticks' command itself and the short timer: a few cycles
        ok(defined $k0 && defined $k1 && $k1 - $k0 <= 6,
           'loop cycles over that second: ' . (defined $k0 && defined $k1 ? $k1 - $k0 : '?') . ' (<= 6: no wakeups while nothing is due)');
        my @s = fires($srv, 'short');
        is(scalar(@s), 1, 'the short timer fired');
        in_range(@s ? $s[0] - made($srv, 'short') : undef, 0.5 - $EARLY, 0.5 + 0.5, 'after 0.5 alongside: fired after');
        my $t_ping = now();
        my $pongs = 0;
        for (1 .. 50) { $pongs++ if (cmd($c, 'ping') // '') eq 'pong' }
        is($pongs, 50, 'echo round trips alongside');
        ok(now() - $t_ping < 2, sprintf '50 round trips in %.2f s', now() - $t_ping);

        my $r = cmd($c, 'cancelheld', 10);
        like($r // '', qr/^50000 /, 'the 50,000 held ones cancelled (' . ($r // 'undef') . ')');
        is(cmd($c, 'three'), '1', 'three more made');
        ok($srv->wait_event(qr/^fire three3 /, 2), 'they fire');
        my @seq = map { /^fire (three\d) / ? $1 : () } $srv->events;
        is("@seq", 'three1 three2 three3', 'in order of due time');
        is($srv->count(qr/^many_fired$/), 0, 'none of the 100,000 fired');
        server_ok($srv);
        close $c;
        $srv->stop;
    };
}

done_testing;
