package IO::Socket::INET::Daemon::Daemonize;

# daemonize, pid_file, log_file, user and group: the options of
# IO::Socket::INET::Daemon->new for running as a system service.  Loaded by
# IO::Socket::INET::Daemon only when one of them is given; check is called
# by new, run by run (once: it sets _daemonized, then runs the server).
# IO::Socket::INET::Daemon/OPERATIONS documents what they do.

use strict;
use warnings;

our $VERSION = '1.05';
our @CARP_NOT = ('IO::Socket::INET::Daemon');

use Carp ();
use Errno ();
use Fcntl ();
use File::Spec ();
use IO::Handle ();
use POSIX ();

my $NAME = 'IO::Socket::INET::Daemon';

# The pid files of this process: path => { fh (open, locked), pid (of the
# process that may remove it) }.
my %PID_FILE;

END {
    local ($!, $@);
    release($_) for keys %PID_FILE;
}

sub _bad { IO::Socket::INET::Daemon::_bad(@_) }

# ---------------------------------------------------------------- new

sub check {
    my ($rc) = @_;
    if (exists $rc->{daemonize}) {
        my $v = $rc->{daemonize};
        _bad(daemonize => $v, 'is not 0 or 1') if defined $v and (ref $v or $v !~ /\A[01]?\z/);
    }
    # undef: none (so that an option left out on a command line can be
    # passed on as it is)
    for my $k (qw(pid_file log_file)) {
        next unless defined $rc->{$k};
        my $p = $rc->{$k};
        _bad($k => $p, 'is not a path') if ref $p or !length $p or $p =~ /\0/;
        _bad($k => $p, 'is a directory') if -d $p;
        # (daemonize changes to /; the file is removed from there)
        $rc->{$k} = File::Spec->rel2abs($p);
    }
    _bad(log_file => $rc->{log_file}, 'goes with daemonize => 1 (in the foreground STDOUT'
         . ' and STDERR are left as they are)') if defined $rc->{log_file} and !$rc->{daemonize};
    if (defined $rc->{user}) {
        my $u = $rc->{user};
        _bad(user => $u, 'is not a user name or uid') if ref $u or !length $u;
        if ($u =~ /\A\d+\z/) {
            _bad(user => $u, 'has no passwd entry (give group too)')
                unless defined getpwuid($u) or defined $rc->{group};
        }
        else {
            _bad(user => $u, 'is not a user on this system') unless defined getpwnam($u);
        }
    }
    if (defined $rc->{group}) {
        my $g = $rc->{group};
        _bad(group => $g, 'is not a group name or gid') if ref $g or !length $g;
        _bad(group => $g, 'is not a group on this system')
            unless $g =~ /\A\d+\z/ or defined getgrnam($g);
    }
    return;
}

# ---------------------------------------------------------------- run

sub _croak {
    my ($msg) = @_;
    chomp $msg;
    Carp::croak("$NAME: $msg");
}

sub run {
    my ($self) = @_;
    my $daemon = $self->{daemonize};
    my $path = $self->{pid_file};
    my $drop = defined $self->{user} || defined $self->{group};

    # what can be found out before anything is taken: the log file, who to
    # become
    my ($log, @ids);
    if ($daemon and defined $self->{log_file}) {
        open $log, '>>', $self->{log_file} or _croak("cannot open log_file $self->{log_file}: $!");
    }
    if ($drop) {
        @ids = eval { ids($self) } or _croak($@);
    }

    # 1. the pid file, locked: a second instance stops here, before binding
    if (defined $path) {
        my $fh = eval { lock_pid_file($path) } or _croak($@);
        $PID_FILE{$path} = { fh => $fh, pid => $$ };
    }

    # 2. bind, in the process that was started: its errors are the caller's
    # (prefork workers with reuseport bind their own sockets: not here)
    if (!($self->{workers} and $self->{reuseport}) and !$self->listen) {
        my ($err, $errno) = ($@, $! + 0);
        release($path) if defined $path;
        $! = $errno;
        _croak("listen: $err") if $daemon;
        ($@, $!) = ($err, $errno);
        return;                         # (what run does when it cannot listen)
    }

    if (!$daemon) {
        # 3. (no fork) 4. this process's PID 5. who it runs as
        eval {
            write_pid($path, $$) if defined $path;
            drop($self, @ids) if $drop;
            1;
        } or do {
            my $err = $@;
            release($path) if defined $path;
            _croak($err);
        };
        $self->{_daemonized} = 1;
        return serve($self, $path);
    }

    # 3. fork; the process that was started waits for the daemon to say
    # "ready" (or what went wrong) and leaves with its answer
    pipe(my $r, my $w) or _croak("pipe: $!");
    STDOUT->flush;
    STDERR->flush;
    my $pid = fork;
    if (!defined $pid) {
        my $err = "fork: $!";
        release($path) if defined $path;
        _croak($err);
    }
    if ($pid) {
        close $w;
        my $msg = '';
        while ($msg !~ /\n/) {
            my $n = sysread($r, $msg, 4096, length $msg);
            next if !defined $n and $!{EINTR};
            last unless $n;
        }
        waitpid($pid, 0);               # (the first child: gone at once)
        _leave(0) if $msg eq "ready\n";
        $msg =~ s/\Aerror //;
        $msg =~ s/\n.*//s;
        $msg = 'the daemon exited before it was ready'
               . (defined $self->{log_file} ? " (see $self->{log_file})" : '') unless length $msg;
        print STDERR "$NAME: $msg\n";
        _leave(1);
    }

    # the first child: a session of its own, and out of it at once
    close $r;
    my $sid = POSIX::setsid();
    if (!defined $sid or $sid < 0) {       # (-1, as the system call returns)
        _tell($w, "error setsid: $!");
        POSIX::_exit(1);
    }
    $pid = fork;
    if (!defined $pid) {
        _tell($w, "error fork: $!");
        POSIX::_exit(1);
    }
    POSIX::_exit(0) if $pid;

    # the daemon (no session leader: it cannot get a terminal back); the
    # UNIX socket files bound are its to remove
    $self->_own_paths;
    my $ok = eval {
        chdir '/' or die "chdir /: $!\n";
        umask 022;
        open STDIN, '<', File::Spec->devnull or die "STDIN: /dev/null: $!\n";
        my $out = $log || File::Spec->devnull;
        open STDOUT, $log ? '>>&' : '>', $out or die "STDOUT: $!\n";
        open STDERR, $log ? '>>&' : '>', $out or die "STDERR: $!\n";
        STDOUT->autoflush(1);
        STDERR->autoflush(1);
        close $log if $log;
        # 4. the daemon's PID 5. who it runs as
        if (defined $path) {
            $PID_FILE{$path}{pid} = $$;
            write_pid($path, $$);
        }
        drop($self, @ids) if $drop;
        1;
    };
    if (!$ok) {
        my $err = $@;
        release($path) if defined $path;
        print STDERR "$NAME: $err";
        _tell($w, "error $err");
        POSIX::_exit(1);                # (nothing of the caller's runs here)
    }
    $self->{_daemonized} = 1;
    _tell($w, "ready");
    close $w;
    # 6. serve
    return serve($self, $path);
}

# run, then the pid file goes
sub serve {
    my ($self, $path) = @_;
    my @r = wantarray ? $self->run : scalar $self->run;
    release($path) if defined $path;
    return wantarray ? @r : $r[0];
}

sub _tell {
    my ($w, $msg) = @_;
    $msg =~ s/\n+\z//;
    $msg =~ s/\n/ /g;
    local $SIG{PIPE} = 'IGNORE';
    syswrite $w, "$msg\n";
}

# The process that was started leaves: no END block, no DESTROY (which
# would remove a UNIX socket file the daemon serves on).
sub _leave {
    STDOUT->flush;
    STDERR->flush;
    POSIX::_exit($_[0]);
}

# ---------------------------------------------------------- pid file

# The pid file, open and locked (flock, exclusive, not waiting), or die
# saying why.  A file nobody holds a lock on is stale: it is taken over.
sub lock_pid_file {
    my ($path) = @_;
    for (1 .. 5) {
        sysopen(my $fh, $path, Fcntl::O_RDWR() | Fcntl::O_CREAT(), 0644)
            or die "cannot open pid file $path: $!\n";
        if (!flock($fh, Fcntl::LOCK_EX() | Fcntl::LOCK_NB())) {
            die "cannot lock pid file $path: $!\n" unless $!{EWOULDBLOCK} or $!{EAGAIN};
            my $pid = read_pid($fh);
            $! = Errno::EWOULDBLOCK();
            die "pid file $path is locked by "
                . (defined $pid ? "process $pid" : 'another process')
                . ": another instance is running\n";
        }
        # still the file at $path, not one its owner removed meanwhile
        my @a = stat $fh;
        my @b = stat $path;
        return $fh if @b and $a[0] == $b[0] and $a[1] == $b[1];
        close $fh;
    }
    die "cannot lock pid file $path: it keeps being replaced\n";
}

sub read_pid {
    my ($fh) = @_;
    sysseek($fh, 0, 0) or return undef;
    my $n = sysread($fh, my $s, 64);
    return $n && $s =~ /\A\s*(\d+)/ ? $1 : undef;
}

sub write_pid {
    my ($path, $pid) = @_;
    my $fh = $PID_FILE{$path}{fh};
    my $s = "$pid\n";
    truncate($fh, 0) or die "pid file $path: truncate: $!\n";
    sysseek($fh, 0, 0) or die "pid file $path: seek: $!\n";
    my $n = syswrite($fh, $s);
    die "pid file $path: write: " . (defined $n ? 'short write' : $!) . "\n"
        unless defined $n and $n == length $s;
    return 1;
}

# The pid file goes, if this is the process that wrote it (not a child
# forked from it, which has a copy of the descriptor and of %PID_FILE).
# Where the directory does not let it (privileges dropped), it is emptied.
# The lock goes with the last descriptor.
sub release {
    my ($path) = @_;
    my $p = $PID_FILE{$path} or return;
    return if $p->{pid} != $$;
    delete $PID_FILE{$path};
    truncate($p->{fh}, 0) unless unlink $path;
    close $p->{fh};
    return;
}

# In a prefork worker: the pid file's descriptor is the master's to hold
# (the lock stays as long as the master has it); this one lets go of its
# copy, and never removes the file.
sub child {
    for my $path (keys %PID_FILE) {
        my $p = delete $PID_FILE{$path};
        close $p->{fh} if $p->{pid} != $$;
    }
    return;
}

# ------------------------------------------------------ user and group

# (uid or undef, gid, supplementary gids) of user and group, or die.
sub ids {
    my ($self) = @_;
    my ($u, $g) = @{$self}{qw(user group)};
    my ($name, $uid, $gid, @groups);
    if (defined $u) {
        my @pw = $u =~ /\A\d+\z/ ? getpwuid($u) : getpwnam($u);
        if (@pw) {
            ($name, $uid, $gid) = @pw[0, 2, 3];
        }
        else {
            die "user '$u' does not exist\n" unless $u =~ /\A\d+\z/;
            $uid = $u + 0;
        }
    }
    if (defined $g) {
        if ($g =~ /\A\d+\z/) {
            $gid = $g + 0;
        }
        else {
            $gid = getgrnam($g);
            die "group '$g' does not exist\n" unless defined $gid;
        }
    }
    die "user '$u' has no passwd entry (give group too)\n" unless defined $gid;
    if (defined $name) {
        # its supplementary groups, as initgroups(3) finds them
        setgrent();
        while (my @gr = getgrent()) {
            push @groups, $gr[2] if grep { $_ eq $name } split ' ', $gr[3];
        }
        endgrent();
    }
    my %seen = ($gid => 1);
    return ($uid, $gid, grep { !$seen{$_}++ } @groups);
}

# Become $uid (if defined) in group $gid with @groups, for good, or die.
sub drop {
    my ($self, $uid, $gid, @groups) = @_;
    my $who = join ' and ', map { "$_ '$self->{$_}'" } grep { defined $self->{$_} } qw(user group);
    my @eg = split ' ', $);
    if ($> != 0) {
        # not root: nothing can change; fine if it is who we are already
        return 1 if (!defined $uid or ($< == $uid and $> == $uid))
                    and (split ' ', $()[0] == $gid and $eg[0] == $gid;
        die "cannot switch to $who: not running as root (uid $>)\n";
    }
    # the group first (and the supplementary groups, while still root)
    defined POSIX::setgid($gid) or die "cannot switch to $who: setgid($gid): $!\n";
    $! = 0;
    $) = join ' ', $gid, $gid, @groups;     # (egid, then the setgroups list)
    my $err = $!;
    @eg = split ' ', $);
    my %want = map { $_ => 1 } $gid, @groups;
    my %have = map { $_ => 1 } @eg[1 .. $#eg];
    die "cannot switch to $who: setgroups($gid @groups): " . ($err || 'not taken') . "\n"
        if $eg[0] != $gid or (split ' ', $()[0] != $gid
           or join(',', sort keys %want) ne join(',', sort keys %have);
    if (defined $uid) {
        defined POSIX::setuid($uid) or die "cannot switch to $who: setuid($uid): $!\n";
        die "cannot switch to $who: still uid $< (effective $>)\n" if $< != $uid or $> != $uid;
        if ($uid != 0) {
            # for good: root cannot come back
            die "cannot switch to $who: setuid(0) still works after it\n"
                if defined POSIX::setuid(0);
            die "cannot switch to $who: setgid(0) still works after it\n"
                if $gid != 0 and defined POSIX::setgid(0);
        }
    }
    return 1;
}

1;

__END__

=head1 NAME

IO::Socket::INET::Daemon::Daemonize - daemon mode, pid file and dropping privileges for IO::Socket::INET::Daemon

=head1 DESCRIPTION

Loaded by L<IO::Socket::INET::Daemon> when C<new> is given C<daemonize>,
C<pid_file>, C<log_file>, C<user> or C<group>; nothing here is called
directly.  L<IO::Socket::INET::Daemon/OPERATIONS> documents what they do.

=cut
