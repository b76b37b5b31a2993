#!perl
# data($io, $server, $line): the line is passed as the third argument AND
# returned by $io->getline (POD, CALLBACKS).  They are two views of the bytes
# received: a callback that changes its $_[2] (chomp, s///, undef) must still
# get the line as received from getline, and changing what getline returned
# (an alias of it, as foreach makes) must not change $_[2].  The SV passed
# as $_[2] is reused for the next message only when nothing kept it: a kept
# reference, or a $_[2] made a number, a reference, UTF-8 or read-only, must
# neither change nor leak into the next message.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use TestISD;
use Test::More;

sub data {
    my ($io, $d) = @_;
    my $w = $_[2] =~ /^(\w+)/ ? $1 : '';
    my $l;
    if    ($w eq 'chomp') { chomp $_[2];            $l = $io->getline }
    elsif ($w eq 'subst') { $_[2] =~ s/^subst/XX/;  $l = $io->getline }
    elsif ($w eq 'undef') { $_[2] = undef;          $l = $io->getline }
    elsif ($w eq 'alias') {
        for my $got ($io->getline) { $l = $got; chomp $got }    # $got aliases the returned SV
        $io->print('arg=' . (defined $_[2] ? $_[2] =~ s/\n/\\n/r : 'undef') . "\n");
    }
    else { $l = $io->getline }
    $l = defined $l ? $l =~ s/\n/\\n/r : 'undef';
    $io->print("getline=$l\n");
    return 1;
}

for my $be (backends()) {
    isd_subtest "data's \$_[2] and getline are independent, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => { data => \&data });
        my $c = client($srv);
        for my $w (qw(plain chomp subst undef)) {
            print $c "$w line\n";
            is(read_line($c), "getline=$w line\\n\n", "$w \$_[2], then getline: the line as received");
        }
        print $c "alias line\n";
        is(read_line($c), "arg=alias line\\n\n", 'chomp on what getline returned leaves $_[2] alone');
        is(read_line($c), "getline=alias line\\n\n", 'getline returned the line');
        close $c;
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

# Each message's $_[2], kept (by reference, or changed into something else)
# or not, against the messages that follow it.
my (@kept, $odd);
sub keeper {
    my ($io, $d) = @_;
    # (no capturing match on $_[2]: that makes it copy-on-write, and such
    # an SV is never reused anyway)
    my ($w, $n) = split ' ', $_[2];
    my $flags = (utf8::is_utf8($_[2]) ? 'U' : '') . (ref $_[2] ? 'R' : '');
    my $len = length $_[2];
    if    ($w eq 'keep')  { push @kept, \$_[2] }
    elsif ($w eq 'num')   { $_[2] = 42 + $n }
    elsif ($w eq 'ref')   { $_[2] = [$n] }
    elsif ($w eq 'utf8')  { utf8::upgrade($_[2]); $_[2] .= "\x{263a}" }
    elsif ($w eq 'ro')    { Internals::SvREADONLY($_[2], 1) }
    elsif ($w eq 'big')   { $_[2] x= 1000 }
    elsif ($w eq 'show')  {
        $io->print(join(',', map { $$_ =~ s/\n//r } @kept) . "\n");
        return 1;
    }
    $io->print("$w $n [$flags] $len\n") if $w ne 'big';
    $io->print("big $n\n") if $w eq 'big';
    return 1;
}

for my $be (backends()) {
    isd_subtest "\$_[2] reused only when nothing kept it, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => { data => \&keeper });
        my $c = client($srv);
        my @w = qw(plain keep plain num plain keep ref plain utf8 plain ro plain big plain keep);
        my $n = 0;
        my (@want, @got);
        for my $w (@w) {
            $n++;
            print $c "$w $n\n";            # one at a time, and then pipelined
        }
        print $c "show 0\n";
        for my $i (0 .. $#w) {
            my $line = "$w[$i] " . ($i + 1) . "\n";
            push @want, $w[$i] eq 'big' ? "big " . ($i + 1) . "\n" : "$w[$i] " . ($i + 1) . " [] " . length($line) . "\n";
            push @got, read_line($c);
        }
        is_deeply(\@got, \@want, 'every message arrived as a plain byte string of its own length');
        is(read_line($c), join(',', map { "keep $_" } grep { $w[$_ - 1] eq 'keep' } 1 .. @w) . "\n",
           'the kept $_[2]s still hold their own messages');
        close $c;
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

# getline's result is the caller's own: kept by reference, gathered by map
# or pushed, each value stays the line it was.
my (@refs, @pushed);
sub gatherer {
    my ($io, $d) = @_;
    my ($w) = split ' ', $_[2];
    if ($w eq 'ref')  { push @refs, \ scalar $io->getline; return 1 }
    if ($w eq 'push') { push @pushed, $io->getline; return 1 }
    if ($w eq 'map') {
        $io->getline;
        my @two = map { scalar $io->getline } 1 .. 2;
        $io->print(join('|', @two) =~ s/\n/;/gr . "\n");
        return 1;
    }
    $io->getline;
    $io->print(join('|', (map { $$_ } @refs), @pushed) =~ s/\n/;/gr . "\n");
    1;
}

for my $be (backends()) {
    isd_subtest "getline's values stay apart, backend $be" => sub {
        my $srv = start_server(backend => $be, timeout => 1, callback => { data => \&gatherer });
        my $c = client($srv);
        print $c "ref 1\nref 2\npush 3\npush 4\nmap\nm1\nm2\nshow\n";
        is(read_line($c), "m1;|m2;\n", 'map over getline: two lines');
        is(read_line($c), "ref 1;|ref 2;|push 3;|push 4;\n",
           'referenced and pushed results keep their own lines');
        close $c;
        is($srv->stop, 15, 'SIGTERM ends the server');
    };
}

done_testing;
