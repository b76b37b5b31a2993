#!perl
# Embedded (issue 16): what the host loop's own code does to the server
# between its steps must take effect without waiting for the next socket
# event: resume, idle_timeout, close during a graceful stop, a server timer
# made after a step that took a while (the host fires its one-shot timer
# early, by its cached clock); and a program that exits with its server
# still attached exits silently.  Each case in a process of its own, for
# AnyEvent (on EV) and Mojo::IOLoop.  (An outside review found each of
# these failing.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use TestProc qw(spawn reap slurp spit);
use Test::More;
use File::Temp ();
use Config;

my %have = map { $_ => scalar eval "require $_; 1" } qw(AnyEvent EV Mojo::IOLoop);
my @loops = grep { $_ eq 'AnyEvent' ? $have{AnyEvent} && $have{EV} : $have{'Mojo::IOLoop'} } qw(AnyEvent Mojo);
plan skip_all => 'neither AnyEvent with EV nor Mojo::IOLoop is installed' unless @loops;

my $dir = File::Temp->newdir('isd-embed-XXXXXX', TMPDIR => 1);
my $blib = "-I$FindBin::Bin/../blib/lib -I$FindBin::Bin/../blib/arch";

# the host program: LOOP CASE; prints "ok ..." / "not ok ..." lines
my $host = <<'EOF';
use strict; use warnings;
use IO::Socket::INET::Daemon; use IO::Socket::INET; use Time::HiRes qw(time);
my ($loop, $case) = @ARGV;
my ($after, $run, $stop);
if ($loop eq 'AnyEvent') {
    require EV; require AnyEvent;
    my $cv; my @keep;
    $after = sub { my ($t, $cb) = @_; push @keep, AnyEvent->timer(after => $t, cb => $cb) };
    $run = sub { $cv = AnyEvent->condvar; $cv->recv };
    $stop = sub { $cv->send };
} else {
    require Mojo::IOLoop;
    $after = sub { Mojo::IOLoop->timer($_[0] => $_[1]) };
    $run = sub { Mojo::IOLoop->start };
    $stop = sub { Mojo::IOLoop->stop };
}
my ($pio, @got, $t0, $removed, $fired);
our $s = IO::Socket::INET::Daemon->new(host => '127.0.0.1', port => 0, callback => {
    data => sub {
        my ($io, $srv, $m) = @_;
        push @got, [$m, time - $t0];
        if ($m eq "a\n") { $io->pause; $pio = $io }
        if ($m eq "busy\n") {
            my $end = time + 0.05; 1 while time < $end;
            $srv->timer(after => 0.3, cb => sub { $fired = time - $t0 });
        }
        $pio = $io;
        1;
    },
    remove => sub { $removed = time - $t0 },
    error  => sub { },     # (the idle timeout is reported there)
});
$s->attach($loop) or die "attach: $@";
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $s->sockport) or die "connect: $!";
$t0 = time;
if ($case eq 'resume') {
    $c->syswrite("a\nb\n");
    $after->(0.2, sub { $pio->resume });
    $after->(1.2, $stop);
    $run->();
    print((grep { $_->[0] eq "b\n" and $_->[1] > 0.15 and $_->[1] < 0.6 } @got)
          ? "ok resume from the host loop delivers the buffered line\n"
          : "not ok resume from the host loop delivers the buffered line\n");
}
elsif ($case eq 'idle') {
    $c->syswrite("x\n");
    $after->(0.2, sub { $pio->idle_timeout(0.2) });
    $after->(1.5, $stop);
    $run->();
    print(defined $removed && $removed > 0.3 && $removed < 1
          ? "ok idle_timeout set from the host loop: removed at ${\ sprintf '%.2f', $removed}\n"
          : "not ok idle_timeout set from the host loop (removed: ${\ ($removed // 'never')})\n");
}
elsif ($case eq 'grace') {
    $c->syswrite("x\n");
    my $detached;
    $after->(0.1, sub { $s->stop(grace => 5) });
    $after->(0.2, sub { $pio->close });
    $after->(0.25, sub { });
    my $check; $check = sub { if (!$s->{_embed}) { $detached = time - $t0; $stop->() } else { $after->(0.02, $check) } };
    $after->(0.21, $check);
    $after->(3, $stop);
    $run->();
    print(defined $detached && $detached < 1
          ? "ok the last connection closed from the host loop ends the graceful stop\n"
          : "not ok the last connection closed from the host loop ends the graceful stop\n");
}
elsif ($case eq 'timer') {
    $c->syswrite("busy\n");
    $after->(1.5, $stop);
    $run->();
    print(defined $fired && $fired > 0.3 && $fired < 0.9
          ? "ok a server timer made in a 50 ms data callback fires on time\n"
          : "not ok a server timer made in a 50 ms data callback fires on time (${\ ($fired // 'never')})\n");
}
elsif ($case eq 'exit') {
    $after->(0.1, $stop);
    $run->();
    print "ok exits\n";
}
EOF
spit("$dir/host.pl", $host);

for my $loop (@loops) {
    for my $case (qw(resume idle grace timer exit)) {
        my $out = "$dir/$loop-$case.out";
        my $err = "$dir/$loop-$case.err";
        my $p = spawn([$^X, split(' ', $blib), "$dir/host.pl", $loop, $case],
                      stdout => $out, stderr => $err);
        my $st = reap($p, 15);
        my $o = slurp($out);
        my $e = slurp($err);
        my @lines = $o =~ /^((?:not )?ok .*)$/mg;
        ok(@lines && !grep(/^not ok/, @lines), "$loop $case: " . join('; ', @lines) || 'no answer');
        is($st, 0, "$loop $case: exits 0");
        is($e, '', "$loop $case: nothing on STDERR") or diag $e;
    }
}

done_testing;
