// Package servers starts the real SFTP servers that difusores run, each on
// 127.0.0.1 on a free port and set up as a difusor's administrator would:
// OpenSSH in several configurations (through integration/sshdtest),
// ProFTPD's mod_sftp, gesftpserver, dropbear with OpenSSH's sftp-server, and
// MySecureShell. Every server has its own host key (which the client pins),
// authorizes one client key, logs in a real non-root Unix user and serves a
// webroot owned by that user; [Server] holds what a prepcast target needs.
//
// Tests call [Start], which skips the test when the server's Debian package
// is not installed (or fails it when PREPCAST_REQUIRE_SSHD=1) and stops the
// server when the test ends. The servers need Linux and root: they bind
// ports as root, switch to the login user, and chroot.
package servers

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

// RequireEnv set to "1" turns a server that cannot run here (missing
// package, not root) into a test failure instead of a skip; "make test"
// sets it. It is the same variable as sshdtest's.
const RequireEnv = sshdtest.RequireEnv

// LoginUser is the non-root Unix user every server logs the client in as.
// [Start] creates it when missing (useradd), with the shell /bin/sh, a
// password field of "*" (no password, not locked: sshd and dropbear refuse
// locked accounts even for key logins) and its home under [Base].
const LoginUser = "prepcast-difusor"

// Base holds what must outlive one test's temporary directory or be
// reachable by the login user whatever the test directory's modes: the
// login user's home (dropbear reads ~/.ssh/authorized_keys).
const Base = "/var/lib/prepcast-servers"

const (
	host         = "127.0.0.1"
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
)

// Limit is something a server refuses or does differently from OpenSSH's
// defaults, which prepcast must cope with.
type Limit string

// The limits of the servers in [Specs].
const (
	// OneSession: the server refuses a second session (channel) on a
	// connection, as OpenSSH with "MaxSessions 1" does.
	OneSession Limit = "one-session"
	// RestrictiveModes: files and directories are created unreadable by
	// other users (umask 0077, MySecureShell's DefaultRights 0640 0750), so
	// the web server, another user, cannot read them unless the client
	// sets their modes.
	RestrictiveModes Limit = "restrictive-modes"
	// NoPosixRename: the server does not offer posix-rename@openssh.com,
	// so a file cannot be replaced atomically.
	NoPosixRename Limit = "no-posix-rename"
	// SlowDownload: the server sends file contents slowly (MySecureShell as
	// Debian ships it: "Download 5k" per connection, "GlobalDownload 50k"),
	// so reading back more than a few kilobytes takes minutes. A push reads
	// only the ack and the proof index back.
	SlowDownload Limit = "slow-download"
)

// Spec describes one server set-up.
type Spec struct {
	// Name identifies the set-up in test names and the README's table.
	Name string
	// Setup says in one line how the difusor's administrator configured it.
	Setup string
	// Packages are the Debian packages it needs.
	Packages []string
	// Binaries are the files that must exist (one per package at least).
	Binaries []string
	// Limits are what prepcast must cope with on this server.
	Limits []Limit
	// Quick marks the set-ups of the default, quick run of the matrix.
	Quick bool

	start func(dir string, o startOptions) (*Server, error)
}

// Has reports whether the server imposes l.
func (s Spec) Has(l Limit) bool {
	for _, x := range s.Limits {
		if x == l {
			return true
		}
	}
	return false
}

type startOptions struct {
	clientKey string // path of the private key to authorize
	clientPub ssh.PublicKey
}

// Server is one running server. Its fields are what a prepcast target
// config needs, plus the webroot on the local filesystem for assertions.
type Server struct {
	Spec Spec
	// Addr is "127.0.0.1:PORT".
	Addr string
	// User is the login user.
	User string
	// ClientKey is the path of the unencrypted private key the server
	// authorizes.
	ClientKey string
	// HostKey is the server's host public key, "ssh-ed25519 AAAA...".
	HostKey string
	// KnownHostsLine is "[127.0.0.1]:PORT ssh-ed25519 AAAA...".
	KnownHostsLine string
	// Root is the webroot as the SFTP client names it.
	Root string
	// WebRoot is the webroot on the local filesystem.
	WebRoot string
	// LogPath is the server's log file.
	LogPath string

	close     func() error
	closeOnce sync.Once
	closeErr  error
}

// Close stops the server and every process it started. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	data, _ := os.ReadFile(s.LogPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if out := strings.Join(lines, "\n"); out != "" {
		return out
	}
	return "(empty)"
}

// Specs returns every server set-up, in the order of the README's table.
func Specs() []Spec {
	return []Spec{
		{
			Name:     "openssh-chroot",
			Setup:    "OpenSSH sshd, internal-sftp, ChrootDirectory (root-owned) with the webroot inside, owned by the login user",
			Packages: []string{"openssh-server"}, Binaries: []string{sshdtest.SSHDPath},
			Quick: true,
			start: startOpenSSH(sshdtest.Options{Chroot: true}),
		},
		{
			Name:     "openssh-sftp-server",
			Setup:    "OpenSSH sshd, Subsystem sftp /usr/lib/openssh/sftp-server, non-root user, no chroot",
			Packages: []string{"openssh-server"}, Binaries: []string{sshdtest.SSHDPath, openSSHSFTPServer},
			start: startOpenSSH(sshdtest.Options{ExtraConfig: []string{"Subsystem sftp " + openSSHSFTPServer}}),
		},
		{
			Name:     "openssh-maxsessions1",
			Setup:    "OpenSSH sshd, internal-sftp, MaxSessions 1 (one session per connection)",
			Packages: []string{"openssh-server"}, Binaries: []string{sshdtest.SSHDPath},
			Limits: []Limit{OneSession},
			start:  startOpenSSH(sshdtest.Options{ExtraConfig: []string{"MaxSessions 1"}}),
		},
		{
			Name:     "openssh-umask077",
			Setup:    "OpenSSH sshd, chroot, ForceCommand internal-sftp -u 0077 (files 0600, directories 0700)",
			Packages: []string{"openssh-server"}, Binaries: []string{sshdtest.SSHDPath},
			Limits: []Limit{RestrictiveModes},
			start: startOpenSSH(sshdtest.Options{Chroot: true, ExtraConfig: []string{
				// A ForceCommand in a Match block wins over the harness's
				// chroot block, which comes after it: sshd keeps the first.
				"Match User " + LoginUser, "\tForceCommand internal-sftp -u 0077 -d /www"}}),
		},
		{
			Name:     "openssh-no-posix-rename",
			Setup:    "OpenSSH sshd, Subsystem sftp sftp-server -P posix-rename (listed, but refused)",
			Packages: []string{"openssh-server"}, Binaries: []string{sshdtest.SSHDPath, openSSHSFTPServer},
			Limits: []Limit{NoPosixRename},
			start: startOpenSSH(sshdtest.Options{ExtraConfig: []string{
				"Subsystem sftp " + openSSHSFTPServer + " -P posix-rename"}}),
		},
		{
			Name:     "proftpd",
			Setup:    "ProFTPD 1.3.8 mod_sftp, standalone, DefaultRoot (chroot), SFTPAuthorizedUserKeys, defaults otherwise",
			Packages: []string{"proftpd-core", "proftpd-mod-crypto"}, Binaries: []string{proftpdPath, proftpdSFTPModule},
			Quick: true,
			start: startProFTPD(nil),
		},
		{
			Name:     "proftpd-ratelimit",
			Setup:    "ProFTPD 1.3.8 mod_sftp as above with TransferRate APPE,STOR,STOU 256 (256 KB/s per upload)",
			Packages: []string{"proftpd-core", "proftpd-mod-crypto"}, Binaries: []string{proftpdPath, proftpdSFTPModule},
			start: startProFTPD([]string{"TransferRate APPE,STOR,STOU 256"}),
		},
		{
			Name:     "proftpd-no-posix-rename",
			Setup:    "ProFTPD 1.3.8 mod_sftp as above with SFTPExtensions -posixRename",
			Packages: []string{"proftpd-core", "proftpd-mod-crypto"}, Binaries: []string{proftpdPath, proftpdSFTPModule},
			Limits: []Limit{NoPosixRename},
			start:  startProFTPD([]string{"SFTPExtensions -posixRename"}),
		},
		{
			Name:     "gesftpserver",
			Setup:    "OpenSSH sshd with Subsystem sftp /usr/libexec/gesftpserver (Green End SFTP server), non-root user",
			Packages: []string{"openssh-server", "gesftpserver"}, Binaries: []string{sshdtest.SSHDPath, gesftpserverPath},
			start: startOpenSSH(sshdtest.Options{ExtraConfig: []string{"Subsystem sftp " + gesftpserverPath}}),
		},
		{
			Name:     "dropbear",
			Setup:    "dropbear -F -E -s -w with OpenSSH's sftp-server (/usr/lib/sftp-server), key in ~/.ssh/authorized_keys",
			Packages: []string{"dropbear-bin", "openssh-sftp-server"}, Binaries: []string{dropbearPath, dropbearKeyPath, dropbearSFTPServer},
			start: startDropbear,
		},
		{
			Name: "mysecureshell",
			Setup: "OpenSSH sshd with Subsystem sftp \"/usr/bin/mysecureshell -c sftp-server\", Debian's /etc/ssh/sftp_config " +
				"(DefaultRights 0640 0750, LimitConnectionByUser 1, Download 5k) with Home set to the site, VirtualChroot",
			Packages: []string{"openssh-server", "mysecureshell"}, Binaries: []string{sshdtest.SSHDPath, mysecureshellPath, unsharePath},
			Limits: []Limit{NoPosixRename, RestrictiveModes, OneSession, SlowDownload},
			start:  startMySecureShell,
		},
	}
}

// Lookup returns the Spec named name.
func Lookup(name string) (Spec, bool) {
	for _, s := range Specs() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Unavailable returns why spec's server cannot run on this machine, naming
// the Debian package to install, or "" if it can.
func Unavailable(spec Spec) string {
	switch {
	case runtime.GOOS != "linux":
		return "real SFTP servers need Linux, this is " + runtime.GOOS
	case os.Geteuid() != 0:
		return "real SFTP servers need root (they switch to the login user and chroot)"
	}
	for _, b := range spec.Binaries {
		if _, err := os.Stat(b); err != nil {
			return fmt.Sprintf("%s: %s not found (install the Debian packages %s)", spec.Name, b, strings.Join(spec.Packages, " "))
		}
	}
	return ""
}

// Start starts spec's server for the test, with a fresh client key, and
// closes it when the test ends, logging the tail of its log if the test
// failed. It skips the test when the server cannot run here, or fails it
// when PREPCAST_REQUIRE_SSHD=1.
func Start(t testing.TB, spec Spec) *Server {
	t.Helper()
	if reason := Unavailable(spec); reason != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("servers: %s (%s=1 requires every server of the matrix)", reason, RequireEnv)
		}
		t.Skipf("servers: %s; set %s=1 to fail instead of skipping", reason, RequireEnv)
	}
	s, err := StartServer(t.TempDir(), spec)
	if err != nil {
		t.Fatalf("servers: start %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s on %s, log %s, last lines:\n%s", spec.Name, s.Addr, s.LogPath, s.LogTail(40))
		}
		if err := s.Close(); err != nil {
			t.Errorf("servers: %v", err)
		}
	})
	return s
}

// StartServer starts spec's server with its files in dir (created if
// missing) and returns once it sends its SSH banner. The caller must Close
// it.
func StartServer(dir string, spec Spec) (*Server, error) {
	if reason := Unavailable(spec); reason != "" {
		return nil, errors.New(reason)
	}
	if err := EnsureLoginUser(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, "client_ed25519")
	pub, err := sshdtest.GenerateKey(keyPath)
	if err != nil {
		return nil, err
	}
	s, err := spec.start(dir, startOptions{clientKey: keyPath, clientPub: pub})
	if err != nil {
		return nil, err
	}
	s.Spec = spec
	return s, nil
}

var userMu sync.Mutex

// EnsureLoginUser creates [LoginUser] if it does not exist. Concurrent
// callers, in this process or others, are fine.
func EnsureLoginUser() error {
	userMu.Lock()
	defer userMu.Unlock()
	if _, err := user.Lookup(LoginUser); err == nil {
		return nil
	}
	home := filepath.Join(Base, "home")
	if err := os.MkdirAll(Base, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Base, err)
	}
	var err error
	var out []byte
	// Another test process may hold the lock on /etc/passwd meanwhile, or
	// create the user first.
	for attempt := 0; attempt < 10; attempt++ {
		out, err = exec.Command("useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
			"--shell", "/bin/sh", "--password", "*", LoginUser).CombinedOutput()
		if _, lerr := user.Lookup(LoginUser); lerr == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("create login user %s: useradd: %v: %s", LoginUser, err, strings.TrimSpace(string(out)))
}

// loginOwner returns the uid and gid of [LoginUser].
func loginOwner() (uid, gid int, err error) {
	u, err := user.Lookup(LoginUser)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// mkdirOwned creates dir (mode 0755) owned by the login user.
func mkdirOwned(dir string) error {
	uid, gid, err := loginOwner()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

// traversable adds search permission for others to dir and each parent
// that lacks it, so that the login user can reach what lies below.
func traversable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func knownHostsLine(addr, hostKey string) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostKey))
	if err != nil {
		return "", fmt.Errorf("host key %q: %w", hostKey, err)
	}
	return knownhosts.Line([]string{addr}, key), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// daemon is a server process started by this package (not sshdtest's).
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startDaemon runs argv with its output appended to logPath, in its own
// process group, killed if this process dies, and waits until addr sends
// an SSH banner. inUse reports that the log says the port was taken.
func startDaemon(name string, argv []string, logPath, addr string) (d *daemon, inUse bool, err error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, false, err
	}
	start, _ := logf.Seek(0, 2)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, false, fmt.Errorf("run %s: %w", argv[0], err)
	}
	d = &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	logSince := func() string {
		data, _ := os.ReadFile(logPath)
		if int64(len(data)) < start {
			return ""
		}
		return string(data[start:])
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.done:
			out := logSince()
			return nil, strings.Contains(out, "in use"), fmt.Errorf("%s on %s exited at start (%v); log %s:\n%s", name, addr, cmd.ProcessState, logPath, out)
		default:
		}
		if err = checkBanner(addr); err == nil {
			return d, false, nil
		}
		if time.Now().After(deadline) {
			_ = d.stop()
			return nil, false, fmt.Errorf("%s on %s not ready after %v: %v; log %s:\n%s", name, addr, startTimeout, err, logPath, logSince())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the daemon and every process below it (sessions that called
// setsid included), as a crash would, and waits for it.
func (d *daemon) stop() error {
	root := d.cmd.Process.Pid
	_ = syscall.Kill(root, syscall.SIGSTOP) // no new sessions meanwhile
	for _, pid := range descendants(root) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-root, syscall.SIGKILL)
	select {
	case <-d.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop %s: pid %d still running after SIGKILL", d.name, d.cmd.Process.Pid)
	}
}

// checkBanner connects to addr and reads an SSH banner.
func checkBanner(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReaderSize(conn, 256).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("banner %q is not SSH-2.0", strings.TrimSpace(line))
	}
	_, _ = conn.Write([]byte("SSH-2.0-prepcast_servers_probe\r\n"))
	return nil
}

// startWithPort picks a free port and calls launch with it, again with
// another port when the chosen one was taken meanwhile.
func startWithPort(launch func(port int) (inUse bool, err error)) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		var inUse bool
		if inUse, err = launch(port); err == nil || !inUse {
			return err
		}
	}
	return err
}

// descendants returns the pids of every live process below root, read
// from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	for queue := children[root]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}
