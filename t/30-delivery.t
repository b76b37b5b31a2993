#!perl
# Nothing lost: every byte a callback prints before remove, stop, destroy, a
# false return (or a die, or $io->close) reaches the peer, in order, also
# after a 20 MiB print and also for a peer ended from another peer's
# callback; and remove runs exactly when the POD says it does.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $MiB = 1048576;
my $MIB = (($ENV{LD_PRELOAD} || '') =~ /asan/ || $ENV{ISD_VALGRIND}) ? 4 : 20;    # lighter under ASan, valgrind
my $base = substr(join('', map { chr } 0 .. 250) x (int($MiB / 251) + 1), 0, $MiB);
sub chunk { sprintf('%08d', $_[0]) . substr($base, 8) }    # 1 MiB, numbered

sub payload {
    my ($mib, $tag) = @_;
    return "head $tag\n" . join('', map { chunk($_) } 0 .. $mib - 1)
         . "tail $mib\n" . "sys $tag\n" . "say $tag\n";
}

sub finish {
    my ($io, $d, $how) = @_;
    log_event('finish %s %s', $io->peerport, $how);
    return 0 if $how eq 'false';
    die "boom\n" if $how eq 'die';
    if    ($how eq 'remove')   { $d->remove($io) }
    elsif ($how eq 'stop')     { $d->stop }
    elsif ($how eq 'destroy')  { $d->destroy }
    elsif ($how eq 'close')    { $io->close }
    elsif ($how eq 'shutdown') { $io->shutdown(2) }
    return 1;
}

sub data {
    my ($io, $d, $l) = @_;
    (my $cmd = $l) =~ s/\n\z//;
    if ($cmd =~ /^send (\d+) (\w+)$/) {
        my ($mib, $how) = ($1, $2);
        $io->print("head $how\n");
        $io->print(chunk($_)) for 0 .. $mib - 1;
        $io->printf("tail %d\n", $mib);
        $io->syswrite("sys $how\n");
        $io->say("say $how");
        return finish($io, $d, $how);
    }
    if ($cmd =~ /^queue (\d+) (\w+)$/) {      # queue output, end nothing
        my ($mib, $tag) = ($1, $2);
        $io->print("head $tag\n");
        $io->print(chunk($_)) for 0 .. $mib - 1;
        $io->printf("tail %d\n", $mib);
        $io->syswrite("sys $tag\n");
        $io->say("say $tag");
        log_event('queued %s', $io->peerport);
        return 1;
    }
    if ($cmd =~ /^(remove|destroy) (\d+)$/) {  # end another peer
        my ($how, $port) = ($1, $2);
        if ($how eq 'destroy') {
            $io->print("destroying\n");
            $d->destroy;
            return 1;
        }
        my ($p) = grep { $_->peerport == $port } $d->connections;
        $d->remove($p) if $p;
        $io->print($p ? "removed $port\n" : "no $port\n");
        return 1;
    }
    if ($cmd =~ /^lines (\d+) (\w+)$/) {        # many small prints
        my ($n, $how) = ($1, $2);
        $io->print("l$_\n") for 1 .. $n;
        return finish($io, $d, $how);
    }
    $io->print($l);
    return 1;
}

my %cb = (
    data   => \&data,
    remove => sub { log_event('remove %s', $_[0]->peerport) },
    error  => sub { log_event('error %s', $_[2]) },
);

# run, and run again after stop (connections stay open across stop)
sub run_twice {
    my ($d) = @_;
    $d->run;
    log_event('run_returned');
    $d->run;
    log_event('run_returned again');
}

for my $be (backends()) {
    for my $how (qw(remove false die close shutdown destroy)) {
        # 20 MiB for the main endings, less for the others (time)
        my $mib = ($how eq 'remove' || $how eq 'false' || $how eq 'destroy') ? $MIB : int($MIB / 4) || 1;
        isd_subtest "$mib MiB then $how, backend $be" => sub {
            my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
            my $c = client($srv);
            my $p = $c->sockport;
            print $c "send $mib $how\n";
            my $got = read_until_eof($c, 20);
            ok(got_eof($c), 'the server closed the connection');
            my $want = payload($mib, $how);
            is(length $got, length $want, "every byte arrived (" . length($want) . ')');
            ok($got eq $want, 'byte-exact and in order');
            Time::HiRes::sleep(0.1);
            my $removes = $srv->count(qr/^remove $p$/);
            is($removes, ($how eq 'false' || $how eq 'die') ? 1 : 0,
               "remove callback called $removes times (once after false/die, never after the server ended it)");
            if ($how eq 'die') {
                ok($srv->count(qr/^error data callback died: boom/), 'the die was reported');
            }
            if ($how eq 'destroy') {
                ok($srv->wait_event(qr/^run_returned 1$/, 3), 'destroy from a callback makes run return');
            }
            else {
                my $o = client($srv);
                print $o "still\n";
                is(read_line($o), "still\n", 'the server serves on');
                close $o;
            }
            close $c;
        };
    }

    isd_subtest "$MIB MiB then stop, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb},
                               child_run => \&run_twice);
        my $c = client($srv);
        print $c "send $MIB stop\n";
        my $want = payload($MIB, 'stop');
        my $got = read_n($c, length $want, 20);
        ok($got eq $want, 'every byte printed before stop arrived, in order');
        ok($srv->wait_event(qr/^run_returned$/, 3), 'run returned');
        print $c "after\n";
        is(read_line($c, 5), "after\n", 'the connection stays open across stop and the next run');
        is(read_for($c, 0.1), '', 'nothing else');
        close $c;
    };

    isd_subtest "many small prints then each ending, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        for my $how (qw(remove false die close)) {
            my $c = client($srv);
            print $c "lines 10000 $how\n";
            my $got = read_until_eof($c, 10);
            ok(got_eof($c), "$how: closed");
            ok($got eq join('', map { "l$_\n" } 1 .. 10000), "$how: 10000 lines, all in order");
            close $c;
        }
    };

    isd_subtest "a peer ended from another peer's callback gets its queued $MIB MiB, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        my $a = client($srv);
        my $pa = $a->sockport;
        print $a "queue $MIB A\n";          # A does not read yet
        ok($srv->wait_event(qr/^queued $pa$/, 5), 'output queued for A');
        my $b = client($srv);
        print $b "remove $pa\n";
        is(read_line($b, 5), "removed $pa\n", 'B removed A');
        my $got = read_until_eof($a, 20);    # now A reads
        ok(got_eof($a), 'A sees the close');
        ok($got eq payload($MIB, 'A'), "A got all $MIB MiB queued before the remove, in order");
        is($srv->count(qr/^remove $pa$/), 0, 'no remove callback for A (removed by the server)');
        print $b "x\n";
        is(read_line($b), "x\n", 'B served on');
        close $a;
        close $b;
    };

    isd_subtest "destroy from a callback delivers every peer's queued output, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => {%cb});
        my $mib = $MIB > 8 ? 4 : 2;
        my @peers;
        for my $tag (qw(P Q R)) {
            my $c = client($srv);
            print $c "queue $mib $tag\n";
            ok($srv->wait_event(qr/^queued ${\ $c->sockport}$/, 5), "$tag: output queued");
            push @peers, [$tag, $c];
        }
        my $k = client($srv);
        print $k "destroy 0\n";
        # the daemon lingers in destroy until everything is delivered
        for my $pc (@peers) {
            my ($tag, $c) = @$pc;
            my $got = read_until_eof($c, 20);
            ok(got_eof($c), "$tag: closed");
            ok($got eq payload($mib, $tag), "$tag: all $mib MiB arrived, in order");
        }
        is(read_until_eof($k, 5), "destroying\n", 'the destroying peer got its reply too');
        ok($srv->wait_event(qr/^run_returned 1$/, 5), 'run returned');
        ok($srv->wait_event(qr/^child_done$/, 5), 'the server ended');
        close $_->[1] for @peers;
        close $k;
    };
}

done_testing;
