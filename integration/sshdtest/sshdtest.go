// Package sshdtest starts real OpenSSH sshd servers on 127.0.0.1 for tests
// and benchmarks.
//
// Each [Server] is a private, non-system sshd (/usr/sbin/sshd -D -e) with its
// own directory holding its sshd_config, a freshly generated ed25519 host key,
// the authorized client key, a known_hosts file, the sshd log and the webroot
// that a difusor's web server would serve. It listens on 127.0.0.1 only, on a
// free port that stays the same across [Server.Stop] and [Server.Restart], and
// lets root (or [Options.User]) log in with the client key only. Faults a difusor shows in
// production can be injected: [Server.Stop] (a crash or reboot, open sessions
// included), [Server.Restart] and [Server.Pause] (a hung server).
//
// Tests call [Start], which skips the test when sshd cannot run here (no
// /usr/sbin/sshd, not Linux, not root) unless PREPCAST_REQUIRE_SSHD=1, which
// turns that into a failure. Programs call [StartServer] and must call
// [Server.Close].
//
// The configuration follows what makes a loopback sshd behave like a real
// difusor under load: an empty HOME for sessions (so shell start-up files do
// not cost every exec session), no PAM, no PID file, StrictModes off and a
// MaxStartups far above OpenSSH's default of 10 concurrent handshakes.
package sshdtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the sshd binary every Server runs: /usr/sbin/sshd, or the
// absolute path in PREPCAST_SSHD (an sshd elsewhere, or a missing one to see
// how the tests behave without it). sshd re-executes itself per connection
// and therefore needs an absolute path.
var SSHDPath = sshdPath()

func sshdPath() string {
	if p := os.Getenv("PREPCAST_SSHD"); filepath.IsAbs(p) {
		return p
	}
	return "/usr/sbin/sshd"
}

// RequireEnv is the environment variable that, set to "1", makes [Start] fail
// a test instead of skipping it when sshd cannot run on this machine.
const RequireEnv = "PREPCAST_REQUIRE_SSHD"

// ChrootBase is where a chrooted webroot is created when the server's own
// directory cannot hold it. sshd accepts a ChrootDirectory only if every
// component of its path is owned by root and not writable by group or others,
// which rules out anything under /tmp or /var/tmp (mode 1777).
const ChrootBase = "/var/lib/prepcast-sshdtest"

const (
	host         = "127.0.0.1"
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	portAttempts = 5
)

// Options configures a Server. The zero value is a plain server that allows
// both SFTP and exec sessions (ssh, rsync) for root.
type Options struct {
	// Chroot serves the webroot through ChrootDirectory and
	// "ForceCommand internal-sftp", as difusores often configure: the client
	// sees the webroot as Root() == "/www", cannot see anything outside the
	// chroot, and gets no exec sessions.
	Chroot bool
	// NoExec allows SFTP only ("ForceCommand internal-sftp"), without chroot:
	// an exec session runs the SFTP server instead of the requested command.
	NoExec bool
	// ExtraConfig holds extra sshd_config lines, one per element. A keyword
	// they set (before any Match line) replaces the server's default for it,
	// for example "MaxStartups 10:30:100" or
	// "Subsystem sftp /usr/lib/openssh/sftp-server". They may end with Match
	// blocks. Port, ListenAddress, AddressFamily, HostKey, PidFile and
	// AuthorizedKeysFile belong to the harness and are refused (a Match block
	// may set AuthorizedKeysFile).
	ExtraConfig []string
	// ClientKey is the path of an unencrypted private key whose public key the
	// server authorizes. If empty, an ed25519 key is generated in the server's
	// directory. To share one key among many servers, create it once with
	// [GenerateKey] and pass its path to each.
	ClientKey string
	// User is the Unix user the client logs in as; empty means root. The
	// user must exist, with a login shell listed in /etc/shells and a
	// password field that is not locked ("*", not "!"), since sshd runs
	// without PAM. The webroot is then owned by the user, and the server's
	// directory and its parents are made traversable by it, since sshd
	// reads authorized_keys with the user's rights.
	User string
	// Wrap is a command line run in place of sshd, with sshd's own command
	// line appended; it must end by exec'ing its arguments in the same
	// process, as unshare(1) and setpriv(1) do, so that the process the
	// harness waits on is sshd. It lets a test give sshd (and every
	// session) a private mount namespace, for example.
	Wrap []string
}

// Server is one running (or stopped) sshd. Its methods are safe for
// concurrent use.
type Server struct {
	dir            string
	cfgPath        string
	logPath        string
	knownHostsPath string
	clientKeyPath  string
	hostKeyLine    string
	knownHostsLine string
	root           string // the webroot as the SFTP client names it
	webRoot        string // the webroot on the local filesystem
	removeOnClose  string // chroot directory outside dir, "" if none
	owner          owner  // of the webroot; zero for root
	port           int
	opts           Options

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	done   chan struct{} // closed when cmd has exited and been reaped
	paused []int         // pids stopped by Pause
	closed bool
}

// Start starts a Server in a fresh t.TempDir() and closes it when the test
// ends; if the test failed, it first logs the tail of the sshd log. When sshd
// cannot run on this machine, Start skips the test with the reason, or fails
// it if PREPCAST_REQUIRE_SSHD=1. Start fails the test if sshd does not start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("sshdtest: %s (%s=1 requires a real sshd)", reason, RequireEnv)
		}
		if quiet.Load() {
			t.SkipNow() // the reason was given once, before the tests ran
		}
		t.Skipf("sshdtest: %s; set %s=1 to fail instead of skipping", reason, RequireEnv)
	}
	s, err := StartServer(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd %s log %s, last lines:\n%s", s.Addr(), s.logPath, s.logTail(40))
		}
		if err := s.Close(); err != nil {
			t.Errorf("sshdtest: %v", err)
		}
	})
	return s
}

// quiet is set by [Quiet].
var quiet atomic.Bool

// Quiet makes [Start] skip without repeating the reason, for a TestMain
// that has said once why sshd cannot run here.
func Quiet() { quiet.Store(true) }

// Unavailable returns why no Server can run on this machine, or "" if one can.
func Unavailable() string {
	switch {
	case runtime.GOOS != "linux":
		return "real sshd servers need Linux, this is " + runtime.GOOS
	case os.Geteuid() != 0:
		return "real sshd servers need root (they log in as root and chroot)"
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		return SSHDPath + " not found (install the Debian package openssh-server: apt-get install openssh-server)"
	}
	return ""
}

// StartServer starts a Server that keeps its files in dir (created if
// missing) and returns once the server accepts connections and sends its SSH
// banner. The caller must call [Server.Close]. With Options.Chroot, the
// webroot lives in dir when every component of dir's path is root-owned and
// not group- or world-writable, and under [ChrootBase] otherwise.
func StartServer(dir string, opts Options) (*Server, error) {
	if reason := Unavailable(); reason != "" {
		return nil, fmt.Errorf("start sshd: %s", reason)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	if err := checkConfigPath(dir); err != nil {
		return nil, fmt.Errorf("start sshd in %s: %w", dir, err)
	}
	if err := checkExtraConfig(opts.ExtraConfig); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	s := &Server{
		dir:            dir,
		cfgPath:        filepath.Join(dir, "sshd_config"),
		logPath:        filepath.Join(dir, "sshd.log"),
		knownHostsPath: filepath.Join(dir, "known_hosts"),
		opts:           opts,
	}
	s.opts.ExtraConfig = slices.Clone(opts.ExtraConfig)
	s.opts.Wrap = slices.Clone(opts.Wrap)
	if err := s.prepare(); err != nil {
		_ = s.cleanupLocked()
		return nil, fmt.Errorf("start sshd in %s: %w", dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			_ = s.cleanupLocked()
			return nil, fmt.Errorf("start sshd: %w", err)
		}
		s.setPort(port)
		if err = s.writeConfig(); err == nil {
			err = os.WriteFile(s.knownHostsPath, []byte(s.knownHostsLine+"\n"), 0o600)
		}
		if err == nil {
			var bindRace bool
			bindRace, err = s.launchLocked()
			if err == nil {
				break
			}
			if bindRace && attempt < portAttempts {
				continue // another process took the port meanwhile: pick another
			}
		}
		_ = s.cleanupLocked()
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	return s, nil
}

// prepare creates the server's directories and keys.
func (s *Server) prepare() error {
	if err := ensurePrivsepDir(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create server directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "home"), 0o755); err != nil {
		return fmt.Errorf("create session home: %w", err)
	}

	hostKeyPath := filepath.Join(s.dir, "ssh_host_ed25519_key")
	hostPub, err := GenerateKey(hostKeyPath)
	if err != nil {
		return fmt.Errorf("generate host key: %w", err)
	}
	s.hostKeyLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub)))

	s.clientKeyPath = s.opts.ClientKey
	var clientPub ssh.PublicKey
	if s.clientKeyPath == "" {
		s.clientKeyPath = filepath.Join(s.dir, "client_ed25519")
		clientPub, err = GenerateKey(s.clientKeyPath)
		if err != nil {
			return fmt.Errorf("generate client key: %w", err)
		}
	} else {
		if s.clientKeyPath, err = filepath.Abs(s.clientKeyPath); err != nil {
			return fmt.Errorf("client key: %w", err)
		}
		if clientPub, err = readPublicKey(s.clientKeyPath); err != nil {
			return err
		}
	}
	keysMode := os.FileMode(0o600)
	if s.opts.User != "" && s.opts.User != "root" {
		keysMode = 0o644 // read with the user's rights
		if s.owner, err = lookupOwner(s.opts.User); err != nil {
			return err
		}
		if err := traversable(s.dir); err != nil {
			return err
		}
	}
	_ = os.Remove(filepath.Join(s.dir, "authorized_keys")) // WriteFile keeps an existing file's mode
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(clientPub), keysMode); err != nil {
		return fmt.Errorf("write authorized_keys: %w", err)
	}
	if err := s.owner.chown(filepath.Join(s.dir, "home")); err != nil {
		return fmt.Errorf("create session home: %w", err)
	}

	if !s.opts.Chroot {
		s.webRoot = filepath.Join(s.dir, "www")
		s.root = s.webRoot
		if err := os.MkdirAll(s.webRoot, 0o755); err != nil {
			return fmt.Errorf("create webroot: %w", err)
		}
		return s.owner.chown(s.webRoot)
	}
	chroot := filepath.Join(s.dir, "chroot")
	if rootOwnedPath(s.dir) {
		if err := os.Mkdir(chroot, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create chroot: %w", err)
		}
	} else {
		if err := os.MkdirAll(ChrootBase, 0o755); err != nil {
			return fmt.Errorf("create chroot base: %w", err)
		}
		if !rootOwnedPath(ChrootBase) {
			return fmt.Errorf("chroot base %s: every component of its path must be owned by root and not group- or world-writable", ChrootBase)
		}
		if chroot, err = os.MkdirTemp(ChrootBase, "chroot-"); err != nil {
			return fmt.Errorf("create chroot: %w", err)
		}
		s.removeOnClose = chroot
	}
	if err := os.Chmod(chroot, 0o755); err != nil {
		return fmt.Errorf("create chroot: %w", err)
	}
	s.webRoot = filepath.Join(chroot, "www")
	s.root = "/www"
	if err := os.MkdirAll(s.webRoot, 0o755); err != nil {
		return fmt.Errorf("create webroot: %w", err)
	}
	return s.owner.chown(s.webRoot)
}

func (s *Server) setPort(port int) {
	s.port = port
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.hostKeyLine))
	if err != nil {
		panic("sshdtest: own host key line does not parse: " + err.Error())
	}
	s.knownHostsLine = knownhosts.Line([]string{s.Addr()}, hostKey)
}

// managedKeywords are the sshd_config keywords the harness owns:
// ExtraConfig may not set them.
var managedKeywords = map[string]bool{
	"port": true, "listenaddress": true, "addressfamily": true,
	"hostkey": true, "pidfile": true, "authorizedkeysfile": true,
}

// configKeyword returns the lower-cased keyword of an sshd_config line, or ""
// for a blank line or comment. sshd accepts "Keyword value" and
// "Keyword=value".
func configKeyword(line string) string {
	f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '=' })
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return ""
	}
	return strings.ToLower(f[0])
}

// checkExtraConfig refuses ExtraConfig lines that would break the harness.
// Inside a Match block, AuthorizedKeysFile may name another file, as a
// difusor's restricted account does.
func checkExtraConfig(lines []string) error {
	inMatch := false
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return fmt.Errorf("extra config line %q holds a line break; pass one line per element", l)
		}
		kw := configKeyword(l)
		inMatch = inMatch || kw == "match"
		if inMatch && kw == "authorizedkeysfile" {
			continue
		}
		if managedKeywords[kw] {
			return fmt.Errorf("extra config line %q: the harness sets %s itself", l, kw)
		}
	}
	return nil
}

// writeConfig writes sshd_config for the current port: the harness's own
// settings, then the defaults that ExtraConfig does not replace, then
// ExtraConfig, then the chroot Match block.
func (s *Server) writeConfig() error {
	// A keyword set by ExtraConfig before its first Match line replaces the
	// default: sshd keeps the first value for most keywords but the last for
	// some (MaxStartups) and refuses a repeated Subsystem.
	replaced := map[string]bool{}
	for _, l := range s.opts.ExtraConfig {
		kw := configKeyword(l)
		if kw == "match" {
			break
		}
		replaced[kw] = true
	}
	defaults := [][2]string{
		{"PubkeyAuthentication", "yes"},
		{"PasswordAuthentication", "no"},
		{"KbdInteractiveAuthentication", "no"},
		{"PermitRootLogin", "prohibit-password"},
		{"UsePAM", "no"},
		{"StrictModes", "no"},
		{"UseDNS", "no"},
		{"Subsystem", "sftp internal-sftp"},
		// Sessions get an empty HOME: bash reads ~/.bashrc for every exec
		// session (rsync --server, cat), and a developer's rc files can cost
		// far more CPU than a difusor's would.
		{"SetEnv", quote("HOME=" + filepath.Join(s.dir, "home"))},
		{"X11Forwarding", "no"},
		{"AllowAgentForwarding", "no"},
		{"AllowTcpForwarding", "no"},
		{"PermitTunnel", "no"},
		{"PrintMotd", "no"},
		{"PrintLastLog", "no"},
		{"MaxStartups", "200:30:400"},
		{"MaxSessions", "64"},
		{"ClientAliveInterval", "0"},
		{"LogLevel", "ERROR"},
	}
	if hasPerSourcePenalties() {
		// Killed sessions and refused clients must not lock loopback out.
		defaults = append(defaults, [2]string{"PerSourcePenalties", "no"})
	}
	if s.opts.NoExec && !s.opts.Chroot {
		defaults = append(defaults, [2]string{"ForceCommand", "internal-sftp"})
	}

	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# prepcast sshdtest: private, non-system sshd on %s", s.Addr())
	line("ListenAddress %s", s.Addr())
	line("AddressFamily inet")
	line("HostKey %s", quote(filepath.Join(s.dir, "ssh_host_ed25519_key")))
	line("PidFile none")
	line("AuthorizedKeysFile %s", quote(filepath.Join(s.dir, "authorized_keys")))
	for _, kv := range defaults {
		if !replaced[strings.ToLower(kv[0])] {
			line("%s %s", kv[0], kv[1])
		}
	}
	for _, l := range s.opts.ExtraConfig {
		line("%s", l)
	}
	if s.opts.Chroot {
		line("Match User %s", s.User())
		line("\tChrootDirectory %s", quote(filepath.Dir(s.webRoot)))
		line("\tForceCommand internal-sftp -d %s", s.root)
	}
	if err := os.WriteFile(s.cfgPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write sshd_config: %w", err)
	}
	return nil
}

// launchLocked starts sshd on s.port and waits until it serves its banner.
// bindRace reports that sshd failed because the port was taken.
func (s *Server) launchLocked() (bindRace bool, err error) {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return false, fmt.Errorf("open sshd log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	argv := append(slices.Clone(s.opts.Wrap), SSHDPath, "-D", "-e", "-f", s.cfgPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return false, fmt.Errorf("run %s: %w", SSHDPath, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for {
		select {
		case <-done:
			out := s.logSince(logStart)
			bindRace = bytes.Contains(out, []byte("Address already in use"))
			return bindRace, fmt.Errorf("sshd on %s exited at start (%v); log %s:\n%s",
				s.Addr(), cmd.ProcessState, s.logPath, tail(out, 20))
		default:
		}
		if ownsListener(cmd.Process.Pid, s.port) {
			if lastErr = checkBanner(s.Addr(), time.Until(deadline)); lastErr == nil {
				s.cmd, s.done, s.paused = cmd, done, nil
				return false, nil
			}
		}
		if time.Now().After(deadline) {
			pids, _ := freezeTree(cmd.Process.Pid)
			killAll(pids)
			_ = cmd.Process.Kill()
			<-done
			if lastErr == nil {
				lastErr = errors.New("port not listening")
			}
			return false, fmt.Errorf("sshd on %s not ready after %v: %v; log %s:\n%s",
				s.Addr(), startTimeout, lastErr, s.logPath, tail(s.logSince(logStart), 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkBanner connects to addr and reads the SSH protocol banner.
func checkBanner(addr string, timeout time.Duration) error {
	timeout = max(timeout, 100*time.Millisecond)
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReaderSize(conn, 256).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read banner from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("read banner from %s: got %q, want SSH-2.0-...", addr, strings.TrimSpace(line))
	}
	// Answer with an identification of our own: a client that leaves
	// without one makes sshd log an error, which would clutter the log.
	_, _ = conn.Write([]byte("SSH-2.0-prepcast_sshdtest_probe\r\n"))
	return nil
}

// Addr returns the server's "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort(host, strconv.Itoa(s.port)) }

// Port returns the server's TCP port, which Restart keeps.
func (s *Server) Port() int { return s.port }

// User returns the user the client logs in as: Options.User, or "root".
func (s *Server) User() string {
	if s.opts.User != "" {
		return s.opts.User
	}
	return "root"
}

// Root returns the webroot as the SFTP client must name it: "/www" for a
// chrooted server, the same as WebRoot otherwise.
func (s *Server) Root() string { return s.root }

// PID returns the listening sshd's process ID (0 when it is stopped); the
// sshd of every connection, and what its sessions run, are its children.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// WebRoot returns the webroot's path on the local filesystem, for assertions.
// It survives Stop and Restart; Close may remove it.
func (s *Server) WebRoot() string { return s.webRoot }

// Dir returns the directory holding the server's configuration, keys and log.
func (s *Server) Dir() string { return s.dir }

// LogPath returns the file that collects sshd's log (LogLevel ERROR unless
// ExtraConfig says otherwise) across restarts.
func (s *Server) LogPath() string { return s.logPath }

// HostKeyLine returns the server's own host public key in authorized_keys
// form: "ssh-ed25519 AAAA...".
func (s *Server) HostKeyLine() string { return s.hostKeyLine }

// KnownHostsLine returns the known_hosts line for the server:
// "[127.0.0.1]:PORT ssh-ed25519 AAAA...".
func (s *Server) KnownHostsLine() string { return s.knownHostsLine }

// KnownHostsFile returns the path of a known_hosts file holding only
// KnownHostsLine.
func (s *Server) KnownHostsFile() string { return s.knownHostsPath }

// ClientKeyPath returns the path of the private key the server authorizes.
func (s *Server) ClientKeyPath() string { return s.clientKeyPath }

// SSHArgs returns the OpenSSH client command line, up to but excluding the
// destination, that authenticates with ClientKeyPath and accepts only this
// server's host key: "ssh -F /dev/null -p PORT -i KEY -o ...". Joined with
// spaces it suits rsync -e when the server's directory contains no spaces.
func (s *Server) SSHArgs() []string {
	return []string{"ssh", "-F", "/dev/null", "-p", strconv.Itoa(s.port), "-i", s.clientKeyPath,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + s.knownHostsPath,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "LogLevel=ERROR",
	}
}

// SSHCommand returns an ssh client command that runs args on the server as
// User (see SSHArgs). A Chroot server refuses exec sessions; on a NoExec
// server the session runs the SFTP server instead of args.
func (s *Server) SSHCommand(args ...string) *exec.Cmd {
	argv := append(s.SSHArgs(), "--", s.User()+"@"+host)
	argv = append(argv, args...)
	return exec.Command(argv[0], argv[1:]...)
}

// Stop kills sshd and every process it started (open sessions included) with
// SIGKILL, as a crash would, and waits for the listener to exit, so that new
// connections are refused. Stopping a stopped server does nothing. Stop
// reports an error if sshd had already exited on its own.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done, s.paused = nil, nil, nil
	select {
	case <-done:
		return fmt.Errorf("stop sshd on %s: it had exited on its own (%v); log %s:\n%s",
			s.Addr(), cmd.ProcessState, s.logPath, s.logTail(20))
	default:
	}
	// Freeze the whole tree first so that no process forks or is reparented
	// away from the listener while the tree is being killed.
	pids, err := freezeTree(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
	}
	killAll(pids)
	select {
	case <-done:
		return err
	case <-time.After(stopTimeout):
		return fmt.Errorf("stop sshd on %s: pid %d still running after SIGKILL and %v", s.Addr(), cmd.Process.Pid, stopTimeout)
	}
}

// Restart starts sshd again, on the same port with the same keys, config and
// webroot, and waits until it serves its banner. It stops the server first if
// it is running. A port that stays taken by another process makes it fail.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("restart sshd on %s: server is closed", s.Addr())
	}
	if err := s.stopLocked(); err != nil {
		return fmt.Errorf("restart sshd: %w", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		bindRace, err := s.launchLocked()
		if err == nil {
			return nil
		}
		if !bindRace || time.Now().After(deadline) {
			return fmt.Errorf("restart sshd: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // the port is in use, perhaps briefly
	}
}

// Pause stops (SIGSTOP) sshd and every process it started, like a hung
// server: TCP connections still open (the kernel completes them) but no
// banner, handshake or SFTP reply is sent until Resume.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("pause sshd on %s: not running", s.Addr())
	}
	pids, err := freezeTree(s.cmd.Process.Pid)
	s.paused = append(s.paused, pids...)
	if err != nil {
		return fmt.Errorf("pause sshd on %s: %w", s.Addr(), err)
	}
	return nil
}

// Resume continues (SIGCONT) the processes Pause stopped.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("resume sshd on %s: not running", s.Addr())
	}
	err := continueTree(s.cmd.Process.Pid, s.paused)
	s.paused = nil
	if err != nil {
		return fmt.Errorf("resume sshd on %s: %w", s.Addr(), err)
	}
	return nil
}

// CPUSeconds returns the CPU time (user + system) that this run of sshd has
// used so far: the listener's own and that of its reaped children (utime,
// stime, cutime and cstime from /proc/PID/stat), plus the same for every
// process still running under it, such as open sessions. Compare two values
// taken during one run; Restart starts again from zero.
func (s *Server) CPUSeconds() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0, fmt.Errorf("read sshd cpu time on %s: not running", s.Addr())
	}
	secs, err := treeCPUSeconds(s.cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("read sshd cpu time on %s: %w", s.Addr(), err)
	}
	return secs, nil
}

// Close stops the server and removes its chroot if that lives outside the
// server's directory (see [ChrootBase]). The server's directory itself is
// left alone. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.stopLocked()
	if s.closed {
		return err
	}
	s.closed = true
	if rerr := s.cleanupLocked(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("close sshd on %s: %w", s.Addr(), err)
	}
	return nil
}

func (s *Server) cleanupLocked() error {
	if s.removeOnClose == "" {
		return nil
	}
	dir := s.removeOnClose
	s.removeOnClose = ""
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove chroot: %w", err)
	}
	return nil
}

// GenerateKey writes a new unencrypted ed25519 private key in OpenSSH format
// to path (mode 0600) and its public key to path+".pub", replacing both, and
// returns the public key.
func GenerateKey(path string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "prepcast-sshdtest")
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	_ = os.Remove(path) // WriteFile keeps the mode of an existing file
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	return sshPub, nil
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("read client key %s (it must be an unencrypted private key): %w", path, err)
	}
	return signer.PublicKey(), nil
}

// checkConfigPath refuses directory names that sshd_config cannot carry:
// sshd expands %-tokens in AuthorizedKeysFile and ChrootDirectory, and a
// quote or line break would end the value.
func checkConfigPath(dir string) error {
	if strings.ContainsAny(dir, "%\"\\\r\n") {
		return errors.New(`directory name must not contain %, ", \ or line breaks (sshd_config cannot quote them)`)
	}
	return nil
}

// quote quotes an sshd_config value; checkConfigPath keeps quotes out of it.
func quote(v string) string { return `"` + v + `"` }

// rootOwnedPath reports whether every component of the absolute path p is a
// directory owned by root and not writable by group or others, as sshd
// requires of a ChrootDirectory.
func rootOwnedPath(p string) bool {
	for {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 || !ownedByRoot(fi) {
			return false
		}
		parent := filepath.Dir(p)
		if parent == p {
			return true
		}
		p = parent
	}
}

// ensurePrivsepDir creates sshd's privilege separation directory if missing.
func ensurePrivsepDir() error {
	const dir = "/run/sshd"
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err == nil {
		err = os.Chmod(dir, 0o755) // whatever the umask
	}
	if err != nil {
		return fmt.Errorf("create sshd privilege separation directory: %w", err)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	penaltiesOnce sync.Once
	penalties     bool
)

// hasPerSourcePenalties reports whether sshd knows PerSourcePenalties
// (OpenSSH 9.8 and later), which is on by default and would refuse loopback
// clients after killed sessions or failed logins.
func hasPerSourcePenalties() bool {
	penaltiesOnce.Do(func() {
		// "sshd -V" prints the version; versions without -V print it in
		// their usage message.
		out, _ := exec.Command(SSHDPath, "-V").CombinedOutput()
		m := regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`).FindSubmatch(out)
		if m == nil {
			return
		}
		major, _ := strconv.Atoi(string(m[1]))
		minor, _ := strconv.Atoi(string(m[2]))
		penalties = major > 9 || major == 9 && minor >= 8
	})
	return penalties
}

func (s *Server) logSince(offset int64) []byte {
	data, err := os.ReadFile(s.logPath)
	if err != nil || offset > int64(len(data)) {
		return nil
	}
	return data[offset:]
}

func (s *Server) logTail(n int) string { return tail(s.logSince(0), n) }

// tail returns the last n lines of data.
func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "\n")
	if out == "" {
		return "(empty)"
	}
	return out
}

// owner is a Unix user and group that owns the webroot; the zero value is
// root, whose files need no change of owner.
type owner struct{ uid, gid int }

func lookupOwner(name string) (owner, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return owner{}, fmt.Errorf("login user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return owner{}, fmt.Errorf("login user %s: uid %q, gid %q are not numbers", name, u.Uid, u.Gid)
	}
	return owner{uid, gid}, nil
}

func (o owner) chown(p string) error {
	if o == (owner{}) {
		return nil
	}
	if err := os.Chown(p, o.uid, o.gid); err != nil {
		return fmt.Errorf("give %s to uid %d: %w", p, o.uid, err)
	}
	return nil
}

// traversable adds search permission for others to dir and each of its
// parents that lacks it (t.TempDir() directories are 0700), so that a
// non-root login user can reach authorized_keys and the webroot.
func traversable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("make %s traversable: %w", dir, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s traversable: %w", p, err)
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}
