#!perl
# $io as a filehandle (print $io ..., <$io>, sysread($io,...)...), as a hash
# key, == across callbacks, and ${*$io}{...} per-connection data.
use strict;
use warnings;
use feature 'say';
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;
use Scalar::Util qw(refaddr);

my %conn;     # "$io" => number
my %obj;      # "$io" => $io
my $n = 0;

sub r { log_event('%s=%s', @_) }

sub add {
    my ($io) = @_;
    $n++;
    $conn{$io} = $n;
    $obj{$io}  = $io;
    ${*$io}{mine} = "user data $n";
    r('add.str', "$io");
    r('add.addr', refaddr($io));
    print $io "hello ", "conn $n\n";
    1;
}

sub data {
    my ($io, $d) = @_;
    my $me = $conn{$io};
    r("key.$me", defined $me ? 'found' : 'missing');
    r("eq.$me", (exists $obj{$io} && $obj{$io} == $io) ? 1 : 0);
    r("addr.$me", refaddr($io));
    r("mine.$me", ${*$io}{mine});
    r("fileno.$me", fileno($io));
    r("inconns.$me", scalar(grep { $_ == $io } $d->connections));
    my $l = <$io>;
    (my $cmd = $l) =~ s/\n\z//;
    if ($cmd eq 'fmt') {
        printf $io "%05.1f|%s\n", 3.14159, 'x';
        say $io "said";
        say {$io} "said", " braces";
        syswrite($io, "sys-written\n");
        print {$io} "braces\n";
    }
    elsif ($cmd eq 'sysread') {                # "sysread\nSYSDATA"
        my $got = sysread($io, my $buf, 7);
        print $io "sysread $got $buf\n";
    }
    elsif ($cmd eq 'read') {                   # "read\nREADDATA"
        my $got = read($io, my $buf, 8);
        print $io "read $got $buf\n";
    }
    elsif ($cmd eq 'getc') {                   # "getc\nG\n"
        my $c = getc($io);
        my $rest = <$io>;
        print $io "getc $c", ($rest eq "\n" ? ' nl' : ' ?'), "\n";
    }
    elsif ($cmd eq 'eof') {                    # "eof\nmore\n"
        my $e = eof($io) ? 1 : 0;
        my $m = <$io>;
        print $io "eof $e $m";
    }
    elsif ($cmd eq 'list') {                   # "list\na\nb\n" then half-close
        my @l = <$io>;
        print $io "list ", scalar(@l), " ", join('', @l);
    }
    elsif ($cmd eq 'setmine') {
        ${*$io}{mine} = 'changed';
        print $io "set\n";
    }
    elsif ($cmd eq 'close') {
        print $io "closing\n";
        r("close.$me", close($io) ? 1 : 0);
    }
    else {
        print $io "R:$l";
    }
    return 1;
}

sub remove {
    my ($io) = @_;
    my $me = $conn{$io};
    r('remove.key', defined $me ? $me : 'missing');
    r("remove.eq.$me", (exists $obj{$io} && $obj{$io} == $io) ? 1 : 0);
    r("remove.mine.$me", ${*$io}{mine});
    delete $conn{$io};
    delete $obj{$io};
}

sub val {
    my ($srv, $key) = @_;
    $srv->wait_event(qr/^\Q$key\E=/, 3);
    my @v = map { /^\Q$key\E=(.*)\z/s ? $1 : () } $srv->events;
    return $v[-1];
}

for my $be (backends()) {
    isd_subtest "backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, read_timeout => 1,
                               callback => { add => \&add, data => \&data, remove => \&remove });
        my $a = client($srv);
        is(read_line($a), "hello conn 1\n", 'print $io LIST');
        my $b = client($srv);
        is(read_line($b), "hello conn 2\n", 'second connection');

        print $a "x\n";
        is(read_line($a), "R:x\n", '<$io> returns the line');
        print $b "y\n";
        is(read_line($b), "R:y\n", 'B');
        is(val($srv, 'key.1'), 'found', '$io works as a hash key (A)');
        is(val($srv, 'key.2'), 'found', '$io works as a hash key (B)');
        is(val($srv, 'eq.1'), 1, 'same object in add and data (==)');
        is(val($srv, 'eq.2'), 1, 'same object in add and data (==), B');
        is(val($srv, 'mine.1'), 'user data 1', '${*$io}{mine} persists from add to data');
        is(val($srv, 'mine.2'), 'user data 2', '... per connection');
        like(val($srv, 'fileno.1'), qr/^\d+$/, 'fileno($io)');
        is(val($srv, 'inconns.1'), 1, '$daemon->connections holds the same $io (==)');
        my @addr = $srv->grep_events(qr/^add\.addr=/);
        my ($a1) = $addr[0] =~ /=(\d+)/;
        is(val($srv, 'addr.1'), $a1, 'same refaddr in add and data');

        print $a "fmt\n";
        is(read_line($a), "003.1|x\n", 'printf $io');
        is(read_line($a), "said\n", 'say $io');
        is(read_line($a), "said braces\n", 'say {$io}');
        is(read_line($a), "sys-written\n", 'syswrite($io, ...)');
        is(read_line($a), "braces\n", 'print {$io}');

        print $a "sysread\nSYSDATA";
        is(read_line($a), "sysread 7 SYSDATA\n", 'sysread($io, ...)');
        print $a "read\nREADDATA";
        is(read_line($a), "read 8 READDATA\n", 'read($io, ...)');
        print $a "getc\nG\n";
        is(read_line($a), "getc G nl\n", 'getc($io)');
        print $a "eof\nmore\n";
        is(read_line($a), "eof 0 more\n", 'eof($io) false with buffered input');

        print $a "setmine\n";
        is(read_line($a), "set\n", 'set');
        print $a "z\n";
        is(read_line($a), "R:z\n", 'z');
        is(val($srv, 'mine.1'), 'changed', '${*$io}{mine} changes persist');

        # remove finds everything too
        my $ap = $a->sockport;
        close $a;
        ok($srv->wait_event(qr/^remove\.key=/), 'remove');
        is(val($srv, 'remove.key'), 1, '$io as a hash key in remove');
        is(val($srv, 'remove.eq.1'), 1, '== in remove');
        is(val($srv, 'remove.mine.1'), 'changed', '${*$io}{mine} in remove');

        # list context <$io> reads to EOF
        my $c = client($srv);
        is(read_line($c), "hello conn 3\n", 'third');
        print $c "list\na\nb\n";
        shutdown($c, 1);
        is(read_line($c), "list 2 a\n", 'my @l = <$io> reads the remaining lines');
        is(read_line($c), "b\n", '... both');
        close $c;

        # close($io)
        print $b "close\n";
        is(read_line($b), "closing\n", 'output before close($io)');
        is(read_until_eof($b, 3), '', 'close($io): EOF');
        ok(got_eof($b), 'closed');
        is(val($srv, 'close.2'), 1, 'close($io) returns true');
        close $b;

        my $d = client($srv);
        is(read_line($d), "hello conn 4\n", 'still serving');
        close $d;
        unlike($srv->stderr, qr/panic|Attempt to free|Segmentation/, 'no panic');
        is($srv->stop, 15, 'SIGTERM still ends the server (no signal left blocked)');
    };
}

done_testing;
