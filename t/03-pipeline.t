#!perl
# Line delivery: pipelined lines, big pipelines, partial lines.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

my $log = 0;    # child: log every data call while true

sub data {
    my ($io, $d, $arg) = @_;
    if (defined $arg && $arg =~ /^noread/) {    # reads nothing: the line is dropped
        log_event('%s', $arg);
        return 1;
    }
    my $line = $io->getline;
    if ($log) {
        log_event('data %s', $line);
        log_event('arg-differs') if !defined $arg || $arg ne $line;
    }
    if ($line eq "log on\n")  { $log = 1; }
    if ($line eq "log off\n") { $log = 0; }
    $io->print("R:$line");
    return 1;
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1,
                               callback => { data => \&data });
        my $c = client($srv);

        # 100 lines in one write
        print $c "log on\n";
        is(read_line($c), "R:log on\n", 'first reply');
        my $req = join '', map { "line $_\n" } 1 .. 100;
        is(send_all($c, $req), length $req, '100 lines sent in one write');
        my @got;
        for (1 .. 100) {
            my $l = read_line($c, 5);
            last unless defined $l;
            push @got, $l;
        }
        is(scalar(@got), 100, '100 replies');
        is_deeply(\@got, [ map { "R:line $_\n" } 1 .. 100 ], '100 replies in order');
        is($srv->count(qr/^data line \d+\n\z/), 100, 'data called once per line');
        is($srv->count(qr/^arg-differs/), 0, '3rd argument equals getline (with its "\n")');

        # 10000 lines
        print $c "log off\n";
        is(read_line($c), "R:log off\n", 'logging off');
        $req = join '', map { "big $_\n" } 1 .. 10000;
        my $t0 = now();
        is(send_all($c, $req, 10), length $req, '10000 lines sent');
        my $expect = join '', map { "R:big $_\n" } 1 .. 10000;
        my $resp = read_n($c, length $expect, 10);
        is(length $resp, length $expect, '10000 replies, all bytes');
        ok($resp eq $expect, '10000 replies in order');
        diag(sprintf '10000 lines round trip in %.2fs', now() - $t0) if $ENV{TEST_VERBOSE};

        # a partial line across writes
        print $c "log on\n";
        is(read_line($c), "R:log on\n", 'logging on');
        print $c "hel";
        is(read_for($c, 0.3), '', 'no reply to a partial line');
        print $c "lo\n";
        is(read_line($c), "R:hello\n", 'partial line completed by the next write');
        is($srv->count(qr/^data hel/), 1, 'data called once for the split line');

        # a line in three pieces plus the start of the next in the last piece
        print $c "a";
        Time::HiRes::sleep(0.05);
        print $c "b";
        Time::HiRes::sleep(0.05);
        print $c "c\nde";
        is(read_line($c), "R:abc\n", 'line in three pieces');
        print $c "f\n";
        is(read_line($c), "R:def\n", 'rest of the next line kept');

        # a callback that reads nothing: each line delivered once, then dropped
        print $c "noread 1\nnoread 2\n";
        print $c "after\n";
        is(read_line($c), "R:after\n", 'lines the callback did not read are dropped, the next one is served');
        Time::HiRes::sleep(0.2);
        is($srv->count(qr/^noread 1\n\z/), 1, 'an unread line is delivered once (no busy loop)');
        is($srv->count(qr/^noread 2\n\z/), 1, 'the next unread line too');

        # a partial line never stalls another client
        my $other = client($srv);
        print $c "par";
        Time::HiRes::sleep(0.1);
        my $t = now();
        print $other "other\n";
        is(read_line($other, 2), "R:other\n", 'other client served while a partial line is pending');
        ok(now() - $t < 0.5, 'promptly');
        print $c "tial\n";
        is(read_line($c), "R:partial\n", 'partial line completed afterwards');

        close $other;
        close $c;
        ok($srv->alive, 'server alive');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
