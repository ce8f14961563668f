// Package sftp is the SFTP [targets.Target]: a difusor reached over SSH with
// a pinned host key, one connection per target shared by every operation,
// built lazily and rebuilt after it is lost.
//
// Every operation is bounded: dialing honours ctx and DialTimeout, the SSH
// handshake and each SFTP request must make progress within OpTimeout, and
// keepalives detect a server that stopped answering between operations. When
// a bound is hit the connection is closed, which fails everything in flight
// on it at once with a retryable error; the next call dials again.
//
// The server should offer posix-rename@openssh.com (OpenSSH's sftp-server and
// internal-sftp do): it is what lets prepcast switch a file atomically. A
// server without it is refused unless Config.AllowNonAtomicReplace is set.
// What else the server allows (extra sessions for fsync, extensions) is
// detected per connection, and the fallback picked is logged once per
// target (see [Strategy]).
package sftp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	pkgsftp "github.com/pkg/sftp"
	"github.com/prepcast/prepcast/internal/safepath"
	"github.com/prepcast/prepcast/internal/termsafe"
	"github.com/prepcast/prepcast/targets"
)

// Defaults that [New] applies to zero Config durations.
const (
	// DefaultDialTimeout bounds establishing a TCP connection.
	DefaultDialTimeout = 10 * time.Second
	// DefaultOpTimeout bounds the handshake and any operation without progress.
	DefaultOpTimeout = 30 * time.Second
	// DefaultKeepalive is the interval between keepalive requests.
	DefaultKeepalive = 10 * time.Second
)

const (
	// maxConcurrentWrites is how many 32 KiB write requests one upload keeps
	// in flight: 512 KiB a file, 8 MiB a target with 16 files in flight,
	// enough for 160 MB/s at 50 ms RTT, while the client's memory stays
	// bounded with many targets pushed at once.
	maxConcurrentWrites = 16
	// removeWorkers bounds the concurrent removals RemoveAll issues in one
	// directory.
	removeWorkers = 16
	// defaultRedialDelay is how long a failed dial is reported to later
	// callers before a new dial is tried, so that many callers retrying at
	// once cannot hammer a failing server.
	defaultRedialDelay = 250 * time.Millisecond
	// cancelGrace is how long a cancelled WriteFile waits for its in-flight
	// requests before it closes the connection to return promptly.
	cancelGrace = time.Second
	// maxDirCache bounds the directories remembered per connection.
	maxDirCache = 1 << 16
)

// preferredCiphers come first in the default cipher list: AEAD ciphers, AES
// first because AES-NI makes them the fastest on the publisher's hardware.
var preferredCiphers = []string{
	"aes128-gcm@openssh.com",
	"aes256-gcm@openssh.com",
	"chacha20-poly1305@openssh.com",
}

// Config describes one difusor reached over SFTP.
type Config struct {
	// Name identifies the target in errors and logs.
	Name string
	// Address is the server's host:port.
	Address string
	// User is the SSH user name.
	User string
	// Root is the absolute remote directory that the difusor's web server
	// serves. It may be a symbolic link; links below it are never followed
	// by Walk or RemoveAll.
	Root string

	// IdentityFile is the private key to authenticate with. When empty the
	// keys of the ssh-agent at $SSH_AUTH_SOCK are used.
	IdentityFile string
	// Passphrase decrypts an encrypted IdentityFile. It is used once, by
	// New, and not retained.
	Passphrase []byte

	// KnownHosts is a known_hosts file that pins the server's host key.
	// Non-standard ports are written "[host]:port" in it, as ssh-keyscan
	// -p does. The file is read again at every connect.
	KnownHosts string
	// HostKey pins the server's host key directly, as one authorized_keys
	// line ("ssh-ed25519 AAAA..."). Exactly one of KnownHosts and HostKey
	// must be set: an unknown host key is never trusted.
	HostKey string

	// DialTimeout bounds establishing the TCP connection (default 10s).
	DialTimeout time.Duration
	// OpTimeout bounds the SSH handshake and the time any operation may go
	// without progress: an upload must keep consuming its source and a
	// request must be answered within it (default 30s).
	OpTimeout time.Duration
	// Keepalive is the interval between keepalive@openssh.com requests; a
	// connection whose keepalive is not answered within three intervals
	// (or OpTimeout, if shorter) is closed. Zero means 10s; negative
	// disables keepalives.
	Keepalive time.Duration

	// Ciphers, when set, is the exact cipher list offered, in order of
	// preference. The default prefers aes128-gcm@openssh.com,
	// aes256-gcm@openssh.com and chacha20-poly1305@openssh.com and falls
	// back to the AES-CTR ciphers.
	Ciphers []string

	// FileMode is the permission every file written gets (default 0644),
	// whatever the server's umask; DirMode that of every directory created
	// (default 0755).
	FileMode fs.FileMode
	DirMode  fs.FileMode

	// AllowNonAtomicReplace lets the target publish to a server without
	// posix-rename@openssh.com: a new path is still renamed into place
	// atomically, but a replaced file is removed and then renamed, so a
	// reader may find it missing for about one round trip. Without it such
	// a server is refused at connect.
	AllowNonAtomicReplace bool

	// FsyncSessions is how many extra SFTP sessions flush files
	// (fsync@openssh.com) alongside the uploads: 0 means
	// DefaultFsyncSessions, negative means none (flushes are pipelined on
	// the main session). A server that refuses extra sessions gets the
	// main session whatever this says.
	FsyncSessions int

	// Dial opens the TCP connection; tests and fault-injection proxies set
	// it. The default is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Features lists the optional SFTP extensions the server offered when the
// connection was made.
type Features struct {
	PosixRename bool // posix-rename@openssh.com: atomic replace
	Fsync       bool // fsync@openssh.com: used after every upload
	StatVFS     bool // statvfs@openssh.com: used by FreeSpace
	Hardlink    bool // hardlink@openssh.com
	Limits      bool // limits@openssh.com
	CopyData    bool // copy-data, version 1: server-side range copies (WriteFileRanges)
}

// Target is a difusor reached over SFTP. It implements [targets.Target] and
// [targets.SpaceReporter]; its methods are safe for concurrent use.
type Target struct {
	cfg     Config // defaults applied, Passphrase cleared
	root    string // cleaned Root
	log     *zap.Logger
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	signer  ssh.Signer    // nil: use the ssh-agent at agentSock
	agent   string        // SSH_AUTH_SOCK when signer is nil
	hostKey ssh.PublicKey // nil: use cfg.KnownHosts
	ciphers []string

	redialDelay time.Duration

	bg     context.Context // cancelled by Close; parent of every dial
	stopBg context.CancelFunc
	wg     sync.WaitGroup // dials and per-connection goroutines

	mu       sync.Mutex
	closed   bool
	cur      *conn
	dialing  *dialAttempt
	lastErr  error // of the last failed dial
	lastFail time.Time
	feats    Features

	connected       bool     // a connection was made at least once
	sessionsRefused string   // why the server refused an extra session; "" if it never did
	recalled        bool     // sessionsRefused came from Recall, not from this process
	announced       Strategy // last strategy logged
	modeWarn        sync.Once
	chmodWarn       sync.Once
}

var (
	_ targets.Target        = (*Target)(nil)
	_ targets.SpaceReporter = (*Target)(nil)
	_ targets.BoundedReader = (*Target)(nil)
	_ targets.Adapter       = (*Target)(nil)
)

// New checks cfg and returns a Target that connects on first use. Every
// error it returns is [targets.Permanent]: a configuration that no retry
// can fix. log may be nil.
func New(cfg Config, log *zap.Logger) (*Target, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Name == "" {
		return nil, targets.Permanent(errors.New("sftp: target name is empty"))
	}
	bad := func(format string, args ...any) error {
		return targets.Permanent(fmt.Errorf("sftp %s: %s", cfg.Name, fmt.Sprintf(format, args...)))
	}

	host, port, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, bad("address %q is not host:port: %v", cfg.Address, err)
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return nil, bad("address %q needs a host and a port between 1 and 65535", cfg.Address)
	}
	if cfg.User == "" {
		return nil, bad("user is empty: set the SSH user name")
	}
	if !path.IsAbs(cfg.Root) {
		return nil, bad("root %q is not an absolute path: set the directory the web server serves", cfg.Root)
	}

	t := &Target{
		cfg:         cfg,
		root:        path.Clean(cfg.Root),
		log:         log.With(zap.String("target", cfg.Name)),
		dial:        cfg.Dial,
		redialDelay: defaultRedialDelay,
	}
	t.cfg.Passphrase = nil
	if t.dial == nil {
		t.dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}

	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dial_timeout", &t.cfg.DialTimeout, DefaultDialTimeout},
		{"op_timeout", &t.cfg.OpTimeout, DefaultOpTimeout},
		{"keepalive", &t.cfg.Keepalive, DefaultKeepalive},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0 && d.name != "keepalive":
			return nil, bad("%s %v is negative: use a positive duration, or 0 for the default %v", d.name, *d.v, d.def)
		}
	}

	if t.cfg.FileMode == 0 {
		t.cfg.FileMode = DefaultFileMode
	}
	if t.cfg.DirMode == 0 {
		t.cfg.DirMode = DefaultDirMode
	}
	if t.cfg.FileMode&^fs.ModePerm != 0 || t.cfg.DirMode&^fs.ModePerm != 0 {
		return nil, bad("file_mode %04o / dir_mode %04o: only permission bits (0777) may be set", uint32(t.cfg.FileMode), uint32(t.cfg.DirMode))
	}
	if t.cfg.FsyncSessions == 0 {
		t.cfg.FsyncSessions = DefaultFsyncSessions
	}

	if err := t.setCiphers(cfg.Ciphers); err != nil {
		return nil, bad("%v", err)
	}
	if err := t.setAuth(cfg); err != nil {
		return nil, bad("%v", err)
	}
	if err := t.setHostKey(cfg); err != nil {
		return nil, bad("%v", err)
	}

	t.bg, t.stopBg = context.WithCancel(context.Background())
	return t, nil
}

func (t *Target) setCiphers(want []string) error {
	supported := ssh.SupportedAlgorithms().Ciphers
	if len(want) == 0 {
		t.ciphers = slices.Clone(preferredCiphers)
		for _, c := range supported {
			if !slices.Contains(t.ciphers, c) {
				t.ciphers = append(t.ciphers, c)
			}
		}
		return nil
	}
	for _, c := range want {
		if !slices.Contains(supported, c) {
			return fmt.Errorf("cipher %q is not supported: use some of %v", c, supported)
		}
	}
	t.ciphers = slices.Clone(want)
	return nil
}

func (t *Target) setAuth(cfg Config) error {
	if cfg.IdentityFile == "" {
		t.agent = os.Getenv("SSH_AUTH_SOCK")
		if t.agent == "" {
			return errors.New("no identity_file is set and SSH_AUTH_SOCK is empty: set identity_file or run an ssh-agent")
		}
		return nil
	}
	pem, err := os.ReadFile(cfg.IdentityFile)
	if err != nil {
		return fmt.Errorf("read identity_file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(cfg.Passphrase) == 0 {
			return fmt.Errorf("identity_file %s is encrypted: set passphrase_env to the name of an environment variable that holds its passphrase", cfg.IdentityFile)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, cfg.Passphrase)
		if err != nil {
			return fmt.Errorf("decrypt identity_file %s (is the passphrase in passphrase_env right?): %w", cfg.IdentityFile, err)
		}
	}
	if err != nil {
		return fmt.Errorf("parse identity_file %s: %w", cfg.IdentityFile, err)
	}
	t.signer = signer
	return nil
}

func (t *Target) setHostKey(cfg Config) error {
	switch {
	case cfg.KnownHosts == "" && cfg.HostKey == "":
		return errors.New("no host key is pinned: set known_hosts or host_key (prepcast never trusts a host key on first use)")
	case cfg.KnownHosts != "" && cfg.HostKey != "":
		return errors.New("both known_hosts and host_key are set: keep only one")
	case cfg.HostKey != "":
		key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(cfg.HostKey))
		if err != nil {
			return fmt.Errorf("parse host_key %q: want one line like \"ssh-ed25519 AAAA...\": %w", cfg.HostKey, err)
		}
		if len(rest) > 0 {
			return errors.New("host_key holds more than one key: pin a single key, or use known_hosts")
		}
		t.hostKey = key
		return nil
	}
	if _, err := knownhosts.New(cfg.KnownHosts); err != nil {
		return fmt.Errorf("read known_hosts: %w", err)
	}
	return nil
}

// Name returns the configured name.
func (t *Target) Name() string { return t.cfg.Name }

// Features reports the extensions of the current connection, or of the last
// one if it was lost; all false before the first connect.
func (t *Target) Features() Features {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.feats
}

// Connect makes sure a connection is up, dialing if needed. Calling it is
// optional: every method connects on demand. It returns the dial error,
// which is [targets.Permanent] for host key, authentication, missing
// posix-rename (unless Config.AllowNonAtomicReplace) and missing root.
func (t *Target) Connect(ctx context.Context) error {
	if _, err := t.getConn(ctx); err != nil {
		return fmt.Errorf("sftp %s: %w", t.cfg.Name, remoteText(err))
	}
	return nil
}

// Clients returns the SSH client and the main SFTP session of the current
// connection (dialing if needed), for a tool that inspects the server
// through the very connection a push uses ("prepcast check" on a server
// that allows one connection per user). They stay the Target's: the
// caller closes neither, and may open and close sessions of its own on
// the SSH client.
func (t *Target) Clients(ctx context.Context) (*ssh.Client, *pkgsftp.Client, error) {
	c, err := t.getConn(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("sftp %s: %w", t.cfg.Name, remoteText(err))
	}
	return c.ssh, c.sftp, nil
}

// Close closes the connection, fails the operations in flight on it and
// waits for the target's own goroutines. It is safe to call more than once.
func (t *Target) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	c := t.cur
	t.cur = nil
	t.stopBg()
	t.mu.Unlock()
	if c != nil {
		c.kill(targets.ErrClosed)
	}
	t.wg.Wait()
	return nil
}

// abs checks a relative path and joins it to the root.
func (t *Target) abs(rel string) (string, error) {
	if err := safepath.CheckInternal(rel); err != nil {
		return "", targets.Permanent(fmt.Errorf("refuse path: %w", err))
	}
	return path.Join(t.root, rel), nil
}

// opErr formats an error as "sftp <name>: <op> <path>: <cause>", with the
// cause's text escaped (see remoteText).
func (t *Target) opErr(op, p string, err error) error {
	err = remoteText(err)
	if p == "" {
		return fmt.Errorf("sftp %s: %s: %w", t.cfg.Name, op, err)
	}
	return fmt.Errorf("sftp %s: %s %s: %w", t.cfg.Name, op, p, err)
}

// remoteText returns err with its text made safe for a terminal and a log
// line (termsafe): an error may carry what the server said (an SFTP status
// message, an SSH disconnect reason, a command's standard error or exit
// message). Errors whose text is already safe are returned as they are;
// errors.Is and errors.As see through the escaped one.
func remoteText(err error) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	if plain := strings.ReplaceAll(s, `\`, ""); termsafe.Clip(plain, 0) == plain {
		return err
	}
	return &escapedError{err: err, text: termsafe.Clip(s, maxErrorText)}
}

// maxErrorText bounds the text of an error that carries what a server
// said (our own messages, such as a changed host key's, run to 1,000).
const maxErrorText = 4096

// escapedError is an error whose text was escaped; it unwraps to the
// original.
type escapedError struct {
	err  error
	text string
}

func (e *escapedError) Error() string { return e.text }
func (e *escapedError) Unwrap() error { return e.err }
