package sftp

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/prepcast/prepcast/targets"
)

// errPeerClosed marks a connection that the server or the network closed,
// as opposed to one that prepcast closed because it stopped answering.
var errPeerClosed = errors.New("connection closed by the server or the network")

// timeoutError reports a server that did not answer in time.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("server did not answer within %v", e.d) }

// Is makes errors.Is(err, os.ErrDeadlineExceeded) hold.
func (e *timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// Timeout reports true, like net.Error timeouts.
func (e *timeoutError) Timeout() bool { return true }

// conn is one SSH connection with its SFTP session. It dies once, for one
// reason; a dead conn is never used for new operations.
type conn struct {
	ssh   *ssh.Client
	sftp  *pkgsftp.Client
	feats Features

	dead chan struct{}
	once sync.Once
	why  error // set before dead is closed

	dirMu sync.Mutex
	dirs  map[string]struct{} // relative directories known to exist

	syncMu   sync.Mutex
	syncers  []*pkgsftp.Client // extra sessions for SyncFiles, opened on first use
	warmOnce sync.Once         // warmSyncers

	raw rawHolder     // the copy-data session (copydata.go)
	wr  writeSessions // more sessions for small writes (writesessions.go)
}

// kill closes the connection, which fails every request in flight on it.
func (c *conn) kill(why error) {
	c.once.Do(func() {
		c.why = why
		close(c.dead)
		_ = c.ssh.Close() // closes the TCP connection; unblocks all readers and writers
	})
}

// cause returns why the connection died, or nil while it is alive.
func (c *conn) cause() error {
	select {
	case <-c.dead:
		return c.why
	default:
		return nil
	}
}

func (c *conn) hasDir(rel string) bool {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	_, ok := c.dirs[rel]
	return ok
}

func (c *conn) addDir(rel string) {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	if len(c.dirs) >= maxDirCache {
		clear(c.dirs)
	}
	c.dirs[rel] = struct{}{}
}

// forgetDirs drops rel and everything below it from the directory cache.
// With all false it only looks below rel when rel itself is cached, which
// keeps it cheap for the files that Rename and Remove mostly see.
func (c *conn) forgetDirs(rel string, all bool) {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	if _, ok := c.dirs[rel]; !ok && !all {
		return
	}
	delete(c.dirs, rel)
	prefix := rel + "/"
	for d := range c.dirs {
		if strings.HasPrefix(d, prefix) {
			delete(c.dirs, d)
		}
	}
}

// forgetAllDirs empties the directory cache; it is called when the server
// says a path is missing, in case a directory was removed behind our back.
func (c *conn) forgetAllDirs() {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	clear(c.dirs)
}

// dialAttempt is one dial shared by every caller that needs a connection
// while it runs.
type dialAttempt struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int // callers still waiting; the dial is cancelled when none are
	c       *conn
	err     error
}

// getConn returns the live connection, dialing one if there is none. One
// dial at a time serves all callers; a failed dial is reported to callers
// for redialDelay before another is tried.
func (t *Target) getConn(ctx context.Context) (*conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, targets.Permanent(targets.ErrClosed)
	}
	if c := t.cur; c != nil {
		why := c.cause()
		if why == nil {
			t.mu.Unlock()
			return c, nil
		}
		t.cur = nil
		t.log.Debug("sftp connection lost; reconnecting", zap.Error(why))
	}
	d := t.dialing
	if d == nil {
		if t.lastErr != nil && time.Since(t.lastFail) < t.redialDelay {
			err := t.lastErr
			t.mu.Unlock()
			return nil, err
		}
		dctx, cancel := context.WithCancel(t.bg)
		d = &dialAttempt{done: make(chan struct{}), cancel: cancel}
		t.dialing = d
		t.wg.Add(1)
		go t.runDial(dctx, d)
	}
	d.waiters++
	t.mu.Unlock()

	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		t.mu.Lock()
		d.waiters--
		if d.waiters == 0 && t.dialing == d {
			t.dialing = nil
			d.cancel()
		}
		t.mu.Unlock()
		return nil, fmt.Errorf("connect %s: %w", t.cfg.Address, ctx.Err())
	}
}

func (t *Target) runDial(ctx context.Context, d *dialAttempt) {
	defer t.wg.Done()
	defer d.cancel()
	start := time.Now()
	c, err := t.connect(ctx)

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dialing == d {
		t.dialing = nil
	}
	switch {
	case err != nil:
		err = fmt.Errorf("connect %s: %w", t.cfg.Address, err)
		if ctx.Err() == nil {
			t.lastErr, t.lastFail = err, time.Now()
		}
		t.log.Debug("sftp connect failed", zap.Error(err))
	case t.closed:
		c.kill(targets.ErrClosed)
		c, err = nil, targets.Permanent(targets.ErrClosed)
	case t.cur != nil && t.cur.cause() == nil:
		// A later dial (started after this one was abandoned) won.
		c.kill(errors.New("superseded by another connection"))
		c = t.cur
	default:
		t.cur, t.feats, t.lastErr, t.connected = c, c.feats, nil, true
		t.announceLocked()
		t.log.Debug("sftp connected",
			zap.String("address", t.cfg.Address),
			zap.Duration("took", time.Since(start)),
			zap.Bool("fsync", c.feats.Fsync),
			zap.Bool("statvfs", c.feats.StatVFS))
	}
	d.c, d.err = c, err
	close(d.done)
}

// connect dials, authenticates, starts SFTP and checks the server. The
// handshake ignores ctx, so a deadline on the TCP connection bounds it and
// cancelling ctx moves that deadline to the past.
func (t *Target) connect(ctx context.Context) (*conn, error) {
	nc, stopAbort, err := t.dialBounded(ctx)
	if err != nil {
		return nil, err
	}
	c, err := t.handshake(ctx, nc)
	if !stopAbort() {
		if c != nil {
			c.kill(ctx.Err())
		}
		_ = nc.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if !targets.IsPermanent(err) && errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("%w (%w)", &timeoutError{t.cfg.OpTimeout}, err)
		}
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})

	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		err := c.ssh.Wait()
		c.kill(fmt.Errorf("%w: %v", errPeerClosed, err))
		_ = c.sftp.Close()
	}()
	go func() {
		defer t.wg.Done()
		t.keepalive(c)
	}()
	return c, nil
}

// dialBounded opens a TCP connection to the target within the dial
// timeout, for a handshake that ignores ctx: the connection's deadline is
// the operation timeout, and cancelling ctx moves it to the past until the
// returned stop is called (it reports false if ctx was cancelled first).
func (t *Target) dialBounded(ctx context.Context) (net.Conn, func() bool, error) {
	dctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	nc, err := t.dial(dctx, "tcp", t.cfg.Address)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	_ = nc.SetDeadline(time.Now().Add(t.cfg.OpTimeout))
	return nc, context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) }), nil
}

// handshake runs SSH and SFTP on nc and checks what prepcast needs.
// ErrHostKey is wrapped by the error of a handshake refused because the
// server's host key is not the pinned one (unknown, changed or revoked);
// ErrAuth by the error of a server that refused prepcast's key.
var (
	ErrHostKey = errors.New("host key refused")
	ErrAuth    = errors.New("authentication refused")
)

// DialSSH opens a new SSH connection to the difusor with the target's
// pinned host key and credentials, exactly as a push does, for a tool that
// needs more of the connection than a Target offers ("prepcast check" opens
// extra sessions on it). The caller closes the client. Its error wraps
// ErrHostKey or ErrAuth when the handshake failed at that step.
func (t *Target) DialSSH(ctx context.Context) (*ssh.Client, error) {
	nc, stopAbort, err := t.dialBounded(ctx)
	if err != nil {
		return nil, err
	}
	client, err := t.sshHandshake(ctx, nc)
	stopAbort()
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return client, nil
}

// sshHandshake authenticates on nc: the host key against the pinned one,
// then the configured keys.
func (t *Target) sshHandshake(ctx context.Context, nc net.Conn) (*ssh.Client, error) {
	hk, err := t.hostKeyChecker()
	if err != nil {
		return nil, err
	}
	signers, keys, closeAgent, err := t.signers(ctx)
	if err != nil {
		return nil, err
	}
	defer closeAgent()

	var authTried atomic.Bool
	cc := &ssh.ClientConfig{
		User: t.cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			authTried.Store(true)
			return signers, nil
		})},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms,
		Config:            ssh.Config{Ciphers: t.ciphers},
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, t.cfg.Address, cc)
	if err != nil {
		var neg *ssh.AlgorithmNegotiationError
		switch herr := hk.failure(); {
		case herr != nil:
			return nil, targets.Permanent(herr)
		case errors.As(err, &neg) && strings.Contains(neg.What, "host key"):
			return nil, targets.Permanent(fmt.Errorf(
				"the server at %s offers no host key of the pinned types %v (it offers %v): if its keys changed, confirm the new fingerprint with the difusor and pin it: %w (%w)",
				t.cfg.Address, neg.SupportedAlgorithms, neg.RequestedAlgorithms, err, ErrHostKey))
		case errors.As(err, &neg):
			return nil, targets.Permanent(fmt.Errorf("ssh handshake: no algorithm in common with the server: %w", err))
		case authTried.Load() && !isConnLoss(err):
			return nil, targets.Permanent(fmt.Errorf(
				"authenticate as %q at %s with %s: the server refused the key; add its public key to ~%s/.ssh/authorized_keys on the server: %w (%w)",
				t.cfg.User, t.cfg.Address, keys, t.cfg.User, err, ErrAuth))
		}
		return nil, fmt.Errorf("ssh handshake: %w", err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func (t *Target) handshake(ctx context.Context, nc net.Conn) (*conn, error) {
	client, err := t.sshHandshake(ctx, nc)
	if err != nil {
		return nil, err
	}
	sc2, err := pkgsftp.NewClient(client,
		pkgsftp.UseConcurrentWrites(true),
		pkgsftp.MaxConcurrentRequestsPerFile(maxConcurrentWrites))
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("start sftp subsystem: %w", err)
	}
	c := &conn{ssh: client, sftp: sc2, dead: make(chan struct{}), dirs: make(map[string]struct{})}
	has := func(name, version string) bool {
		v, ok := sc2.HasExtension(name)
		return ok && (version == "" || v == version)
	}
	c.feats = Features{
		PosixRename: has("posix-rename@openssh.com", ""),
		Fsync:       has("fsync@openssh.com", "1"),
		StatVFS:     has("statvfs@openssh.com", ""),
		Hardlink:    has("hardlink@openssh.com", ""),
		Limits:      has("limits@openssh.com", ""),
		CopyData:    has(copyDataName, "1"),
	}
	fail := func(err error) (*conn, error) {
		c.kill(err)
		_ = sc2.Close()
		return nil, err
	}
	if !c.feats.PosixRename && !t.cfg.AllowNonAtomicReplace {
		return fail(targets.Permanent(errNoPosixRename))
	}
	if c.feats.CopyData {
		// The pipelined session (small files, range copies) opens while
		// the root is checked and the first operations run. (Not sooner,
		// alongside the SFTP client's: some servers behind an OpenSSH
		// banner, MySecureShell, refuse a second session that early, and
		// close the connection.)
		// A server that refuses it (OpenSSH MaxSessions 1) refuses the
		// flush sessions too: flushes go on the main session from the
		// start, and the strategy says why.
		go func() {
			var refused *ssh.OpenChannelError
			if _, err := c.rawSession(); errors.As(err, &refused) && c.cause() == nil {
				t.noteSessionsRefused(err)
			}
		}()
	}
	fi, err := sc2.Stat(t.root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail(targets.Permanent(fmt.Errorf("root %s does not exist on the server: create it or fix root", t.root)))
	case errors.Is(err, fs.ErrPermission):
		return fail(targets.Permanent(fmt.Errorf("root %s: permission denied for user %q: %w", t.root, t.cfg.User, err)))
	case err != nil:
		return fail(fmt.Errorf("stat root %s: %w", t.root, err))
	case !fi.IsDir():
		return fail(targets.Permanent(fmt.Errorf("root %s is not a directory on the server: fix root", t.root)))
	}
	return c, nil
}

// signers returns the keys to authenticate with, a description of them for
// errors, and a function that releases the agent connection.
func (t *Target) signers(ctx context.Context) ([]ssh.Signer, string, func(), error) {
	if t.signer != nil {
		pub := t.signer.PublicKey()
		return []ssh.Signer{t.signer},
			fmt.Sprintf("key %s %s from %s", pub.Type(), ssh.FingerprintSHA256(pub), t.cfg.IdentityFile),
			func() {}, nil
	}
	var d net.Dialer
	ac, err := d.DialContext(ctx, "unix", t.agent)
	if err != nil {
		return nil, "", nil, fmt.Errorf("connect to ssh-agent at SSH_AUTH_SOCK=%s (or set identity_file): %w", t.agent, err)
	}
	signers, err := agent.NewClient(ac).Signers()
	if err != nil {
		_ = ac.Close()
		return nil, "", nil, fmt.Errorf("list ssh-agent keys: %w", err)
	}
	if len(signers) == 0 {
		_ = ac.Close()
		return nil, "", nil, targets.Permanent(fmt.Errorf("the ssh-agent at SSH_AUTH_SOCK=%s holds no keys: ssh-add one, or set identity_file", t.agent))
	}
	fps := make([]string, len(signers))
	for i, s := range signers {
		fps[i] = s.PublicKey().Type() + " " + ssh.FingerprintSHA256(s.PublicKey())
	}
	return signers, "ssh-agent keys [" + strings.Join(fps, ", ") + "]", func() { _ = ac.Close() }, nil
}

// keepalive sends keepalive@openssh.com requests until c dies, and kills c
// when one is not answered in time.
func (t *Target) keepalive(c *conn) {
	if t.cfg.Keepalive < 0 {
		return
	}
	timeout := min(3*t.cfg.Keepalive, t.cfg.OpTimeout)
	tick := time.NewTicker(t.cfg.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-tick.C:
		}
		timer := time.AfterFunc(timeout, func() {
			c.kill(fmt.Errorf("keepalive: %w", &timeoutError{timeout}))
		})
		_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
		timer.Stop()
		if err != nil {
			c.kill(fmt.Errorf("keepalive: %w: %v", errPeerClosed, err))
			return
		}
	}
}

// isConnLoss reports whether err means the connection itself failed.
func isConnLoss(err error) bool {
	var ne net.Error
	return errors.Is(err, pkgsftp.ErrSSHFxConnectionLost) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne)
}

// hostKeyCheck verifies the server's host key against the pinned keys and
// remembers why it refused one.
type hostKeyCheck struct {
	t          *Target
	cb         ssh.HostKeyCallback // known_hosts; nil with a fixed host key
	algorithms []string            // host key algorithms of the pinned keys

	mu  sync.Mutex
	err error
}

func (t *Target) hostKeyChecker() (*hostKeyCheck, error) {
	hk := &hostKeyCheck{t: t}
	if t.hostKey != nil {
		hk.algorithms = algorithmsFor([]string{t.hostKey.Type()})
		return hk, nil
	}
	cb, err := knownhosts.New(t.cfg.KnownHosts)
	if err != nil {
		return nil, targets.Permanent(fmt.Errorf("read known_hosts: %w", err))
	}
	hk.cb = cb
	// Ask known_hosts which key types it pins for this host, so that the
	// server is asked for one of those rather than for a type it also has
	// but that is not pinned (which would look like a changed key).
	dummy, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil, err
	}
	var ke *knownhosts.KeyError
	if err := cb(t.cfg.Address, addrString(t.cfg.Address), dummy); errors.As(err, &ke) {
		var types []string
		for _, k := range ke.Want {
			types = append(types, k.Key.Type())
		}
		hk.algorithms = algorithmsFor(types)
	}
	return hk, nil
}

// check is the ssh.HostKeyCallback.
func (hk *hostKeyCheck) check(_ string, _ net.Addr, key ssh.PublicKey) error {
	err := hk.verify(key)
	hk.mu.Lock()
	hk.err = err
	hk.mu.Unlock()
	return err
}

// failure returns the host key refusal of the last handshake, if any.
func (hk *hostKeyCheck) failure() error {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	return hk.err
}

func (hk *hostKeyCheck) verify(key ssh.PublicKey) error {
	t := hk.t
	e := &hostKeyError{address: t.cfg.Address, offered: key, knownHosts: t.cfg.KnownHosts}
	if hk.cb == nil {
		if string(key.Marshal()) == string(t.hostKey.Marshal()) {
			return nil
		}
		e.pinned = []string{"host_key pins " + describeKey(t.hostKey)}
		return e
	}
	err := hk.cb(t.cfg.Address, addrString(t.cfg.Address), key)
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		e.revoked = fmt.Sprintf("%s:%d", re.Revoked.Filename, re.Revoked.Line)
		return e
	case errors.As(err, &ke):
		for _, k := range ke.Want {
			e.pinned = append(e.pinned, fmt.Sprintf("%s:%d pins %s", k.Filename, k.Line, describeKey(k.Key)))
		}
		return e
	}
	return fmt.Errorf("check host key against known_hosts %s: %w", t.cfg.KnownHosts, err)
}

// hostKeyError explains a refused host key and how to pin the right one.
type hostKeyError struct {
	address    string
	offered    ssh.PublicKey
	pinned     []string // the pinned keys that did not match; empty: unknown host
	revoked    string   // file:line of the @revoked entry
	knownHosts string
}

// Is makes a host key refusal match ErrHostKey.
func (e *hostKeyError) Is(target error) bool { return target == ErrHostKey }

func (e *hostKeyError) Error() string {
	offered := describeKey(e.offered)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.offered)))
	host, port, _ := net.SplitHostPort(e.address)
	keyscan := "ssh-keyscan " + host
	if port != "22" {
		keyscan = fmt.Sprintf("ssh-keyscan -p %s %s", port, host)
	}
	var pin string
	if e.knownHosts != "" {
		pin = fmt.Sprintf("pin it with `%s >> %s` or set host_key: %q", keyscan, e.knownHosts, line)
	} else {
		pin = fmt.Sprintf("set host_key: %q (or use known_hosts, filled with `%s`)", line, keyscan)
	}
	switch {
	case e.revoked != "":
		return fmt.Sprintf("host key %s offered by %s is revoked at %s: refusing to connect", offered, e.address, e.revoked)
	case len(e.pinned) == 0:
		return fmt.Sprintf("host key of %s is not pinned: the server offered %s; check this fingerprint with the difusor, then %s",
			e.address, offered, pin)
	}
	remove := ""
	if e.knownHosts != "" {
		remove = fmt.Sprintf("remove the old entry (ssh-keygen -R '%s' -f %s) and ", knownhosts.Normalize(e.address), e.knownHosts)
	}
	return fmt.Sprintf("HOST KEY CHANGED for %s: %s, but the server offered %s. This may be an attack (someone in the middle) or a reinstalled server: confirm the new fingerprint with the difusor before you %s%s",
		e.address, strings.Join(e.pinned, "; "), offered, remove, pin)
}

func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// algorithmsFor returns the host key algorithms that can present keys of
// the given types, in order, or nil (the defaults) if none is supported.
func algorithmsFor(types []string) []string {
	supported := ssh.SupportedAlgorithms().HostKeys
	var out []string
	for _, typ := range types {
		cands := []string{typ}
		if typ == ssh.KeyAlgoRSA {
			cands = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, a := range cands {
			if slices.Contains(supported, a) && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// addrString is a net.Addr for the configured address: known_hosts is
// checked against the name the operator configured, whatever the dialer
// (a proxy, in tests) says the remote address is.
type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }
