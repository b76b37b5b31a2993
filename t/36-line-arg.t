#!perl
# data($io, $server, $line): the line is passed as the third argument AND
# returned by $io->getline (POD, CALLBACKS).  They are two views of the bytes
# received: a callback that changes its $_[2] (chomp, s///, undef) must still
# get the line as received from getline, and changing what getline returned
# (an alias of it, as foreach makes) must not change $_[2].
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

done_testing;
