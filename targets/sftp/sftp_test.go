package sftp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// newOSServer serves a fresh directory of the real filesystem and fails the
// test if anything appears next to that directory, outside the root.
func newOSServer(t testing.TB, opts ...targettest.ServerOption) *targettest.Server {
	t.Helper()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, err := os.ReadDir(parent)
		if err != nil || len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("outside the root, the directory holds %v (%v); want only root", names, err)
		}
	})
	return targettest.NewSFTPServer(t, root, opts...)
}

func configFor(srv *targettest.Server) Config {
	return Config{
		Name:         "difusor-1",
		Address:      srv.Addr,
		User:         srv.User,
		Root:         srv.Root,
		IdentityFile: srv.ClientKeyPath,
		HostKey:      srv.HostKeyLine,
	}
}

func newTarget(t testing.TB, cfg Config) *Target {
	t.Helper()
	tg, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tg.Close() })
	return tg
}

// linkingTarget adds the symbolic links the conformance suite needs.
type linkingTarget struct{ *Target }

func (l linkingTarget) Symlink(ctx context.Context, oldname, newname string) error {
	c, err := l.getConn(ctx)
	if err != nil {
		return err
	}
	return c.sftp.Symlink(path.Join(l.root, oldname), path.Join(l.root, newname))
}

func TestConformance(t *testing.T) {
	t.Run("OS", func(t *testing.T) {
		targettest.Run(t, func(t *testing.T) targets.Target {
			return linkingTarget{newTarget(t, configFor(newOSServer(t)))}
		})
	})
	t.Run("MemFS", func(t *testing.T) {
		targettest.Run(t, func(t *testing.T) targets.Target {
			srv := targettest.NewSFTPServer(t, "/srv/prep", targettest.WithMemFS())
			return linkingTarget{newTarget(t, configFor(srv))}
		})
	})
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) (ssh.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub, priv
}

func writeKeyFile(t *testing.T, priv ed25519.PrivateKey) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "id_ed25519", string(pem.EncodeToMemory(block)))
}

func TestHostKeyPinning(t *testing.T) {
	srv := newOSServer(t)
	_, port, _ := net.SplitHostPort(srv.Addr)
	otherKey, _ := newKey(t)
	otherLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey)))
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ssh.NewPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecdsaLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ecPub)))

	tests := []struct {
		name       string
		knownHosts string // content; "" uses HostKey
		hostKey    string
		wantErr    string // "" means the connection succeeds
	}{
		{name: "known_hosts pins the key", knownHosts: srv.KnownHostsLine() + "\n"},
		{name: "host_key pins the key", hostKey: srv.HostKeyLine},
		{name: "unknown host", knownHosts: "# empty\n", wantErr: "not pinned"},
		{name: "pinned without the port", knownHosts: "127.0.0.1 " + srv.HostKeyLine + "\n", wantErr: "not pinned"},
		{name: "changed key in known_hosts", knownHosts: knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, otherKey) + "\n", wantErr: "HOST KEY CHANGED"},
		{name: "changed host_key", hostKey: otherLine, wantErr: "HOST KEY CHANGED"},
		{name: "pinned key type not offered", hostKey: ecdsaLine, wantErr: "offers no host key of the pinned types"},
		{name: "revoked key", knownHosts: "@revoked * " + srv.HostKeyLine + "\n" + srv.KnownHostsLine() + "\n", wantErr: "revoked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(srv)
			cfg.HostKey = tc.hostKey
			if tc.knownHosts != "" {
				cfg.KnownHosts = writeFile(t, "known_hosts", tc.knownHosts)
			}
			before := srv.Connections()
			tg := newTarget(t, cfg)
			err := tg.Connect(t.Context())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Connect succeeded, want the host key refused")
			}
			msg := err.Error()
			if !targets.IsPermanent(err) || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("Connect error = %v, want a permanent error saying %q", err, tc.wantErr)
			}
			if srv.Connections() != before {
				t.Error("the SSH handshake completed with a refused host key")
			}
			if strings.Contains(tc.wantErr, "CHANGED") || tc.wantErr == "not pinned" {
				wants := []string{ssh.FingerprintSHA256(srv.HostKey), srv.HostKeyLine}
				if tc.knownHosts != "" {
					wants = append(wants, "ssh-keyscan -p "+port+" 127.0.0.1 >> "+cfg.KnownHosts)
				}
				for _, w := range wants {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not contain %q", msg, w)
					}
				}
			}
			if tc.wantErr == "not pinned" && strings.Contains(msg, "CHANGED") {
				t.Errorf("an unknown host is reported as changed: %v", err)
			}
			// The refusal is remembered, not retried in a hot loop.
			if err2 := tg.Connect(t.Context()); !targets.IsPermanent(err2) {
				t.Errorf("second Connect: %v", err2)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	wrongPub, wrongPriv := newKey(t)
	agentPub, agentPriv := newKey(t)
	// An encrypted key made with few KDF rounds (ssh-keygen -a 1), so that
	// decrypting it is quick under the race detector.
	const encrypted = "testdata/id_ed25519_encrypted"
	pubLine, err := os.ReadFile(encrypted + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	encPub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	srv := newOSServer(t, targettest.WithAuthorizedKey(encPub), targettest.WithAuthorizedKey(agentPub))

	t.Run("wrong key", func(t *testing.T) {
		cfg := configFor(srv)
		cfg.IdentityFile = writeKeyFile(t, wrongPriv)
		err := newTarget(t, cfg).Connect(t.Context())
		if err == nil || !targets.IsPermanent(err) {
			t.Fatalf("Connect with an unauthorized key: %v, want a permanent error", err)
		}
		for _, w := range []string{`"prep"`, srv.Addr, ssh.FingerprintSHA256(wrongPub)} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not name %s", err, w)
			}
		}
	})
	t.Run("encrypted key", func(t *testing.T) {
		tests := []struct {
			passphrase string
			wantErr    string
		}{
			{"", "passphrase_env"},
			{"wrong", "passphrase"},
			{"otra-Frase-Equivocada", "passphrase"},
			{"secreto", ""},
		}
		for _, tc := range tests {
			cfg := configFor(srv)
			cfg.IdentityFile = encrypted
			cfg.Passphrase = []byte(tc.passphrase)
			tg, err := New(cfg, nil)
			if tc.wantErr != "" {
				if !targets.IsPermanent(err) || !strings.Contains(fmt.Sprint(err), tc.wantErr) {
					t.Errorf("New with passphrase %q: %v, want a permanent error naming %s", tc.passphrase, err, tc.wantErr)
				}
				if len(tc.passphrase) > 5 && strings.Contains(fmt.Sprint(err), tc.passphrase) {
					t.Errorf("the error echoes the passphrase: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if err := tg.Connect(t.Context()); err != nil {
				t.Errorf("Connect with the decrypted key: %v", err)
			}
			_ = tg.Close()
		}
	})
	t.Run("ssh-agent", func(t *testing.T) {
		keyring := agent.NewKeyring()
		sock := serveAgent(t, keyring)
		t.Setenv("SSH_AUTH_SOCK", sock)
		cfg := configFor(srv)
		cfg.IdentityFile = ""
		if err := newTarget(t, cfg).Connect(t.Context()); !targets.IsPermanent(err) || !strings.Contains(err.Error(), "no keys") {
			t.Errorf("Connect with an empty agent: %v, want a permanent error", err)
		}
		if err := keyring.Add(agent.AddedKey{PrivateKey: agentPriv}); err != nil {
			t.Fatal(err)
		}
		if err := newTarget(t, cfg).Connect(t.Context()); err != nil {
			t.Errorf("Connect with the agent's key: %v", err)
		}
	})
}

func serveAgent(t *testing.T, a agent.Agent) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = agent.ServeAgent(a, c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		_ = os.RemoveAll(dir)
	})
	return sock
}

func TestServerRequirements(t *testing.T) {
	srv := newOSServer(t)
	file := filepath.Join(srv.Root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		srv     *targettest.Server
		root    string
		wantErr string
	}{
		{"no posix-rename", newOSServer(t, targettest.WithoutPosixRename()), "", "posix-rename"},
		{"no posix-rename (memfs)", targettest.NewSFTPServer(t, "/", targettest.WithMemFS(), targettest.WithoutPosixRename()), "", "posix-rename"},
		{"missing root", srv, filepath.Join(srv.Root, "missing"), "root " + filepath.Join(srv.Root, "missing") + " does not exist"},
		{"root is a file", srv, file, "root " + file + " is not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(tc.srv)
			if tc.root != "" {
				cfg.Root = tc.root
			}
			tg := newTarget(t, cfg)
			err := tg.Connect(t.Context())
			if !targets.IsPermanent(err) || !strings.Contains(fmt.Sprint(err), tc.wantErr) {
				t.Fatalf("Connect: %v, want a permanent error saying %q", err, tc.wantErr)
			}
			if err := tg.WriteFile(t.Context(), "f", strings.NewReader("x"), 1); !targets.IsPermanent(err) {
				t.Errorf("WriteFile after a refused connect: %v, want the permanent error", err)
			}
		})
	}
}

func TestFeaturesAndFreeSpace(t *testing.T) {
	tg := newTarget(t, configFor(newOSServer(t)))
	if got := tg.Features(); got != (Features{}) {
		t.Errorf("Features before connect = %+v, want none", got)
	}
	free, ok, err := tg.FreeSpace(t.Context())
	if err != nil || !ok || free <= 0 {
		t.Errorf("FreeSpace = %d, %v, %v; want a positive size", free, ok, err)
	}
	if got, want := tg.Features(), (Features{PosixRename: true, StatVFS: true, Hardlink: true}); got != want {
		t.Errorf("Features = %+v, want %+v", got, want)
	}
}

func TestReconnectAfterDrop(t *testing.T) {
	srv := newOSServer(t)
	tg := newTarget(t, configFor(srv))
	ctx := t.Context()
	if err := tg.WriteFile(ctx, "f.txt", strings.NewReader("hola"), 4); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		srv.DropConnections()
		if got, err := tg.ReadFile(ctx, "f.txt"); err != nil || string(got) != "hola" {
			t.Fatalf("ReadFile after drop %d = %q, %v; want the file", i+1, got, err)
		}
	}
	srv.DropConnections()
	if err := tg.WriteFile(ctx, "g.txt", strings.NewReader("adiós"), int64(len("adiós"))); err != nil {
		t.Fatalf("WriteFile after a drop: %v", err)
	}
	if got := srv.Connections(); got != 5 {
		t.Errorf("server saw %d connections, want 5 (one per drop)", got)
	}
}

func TestConcurrentCallersShareOneConnection(t *testing.T) {
	srv := newOSServer(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, configFor(srv))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := tg.ReadFile(t.Context(), "f"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := srv.Connections(); got != 1 {
		t.Errorf("20 concurrent callers made %d connections, want 1", got)
	}
}

func TestStalledServer(t *testing.T) {
	const opTimeout = 300 * time.Millisecond
	srv := newOSServer(t)
	cfg := configFor(srv)
	cfg.OpTimeout = opTimeout
	tg := newTarget(t, cfg)
	tg.redialDelay = 0 // each case dials again at once
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 4<<20)
	ops := []struct {
		name string
		op   func() error
	}{
		{"ReadFile", func() error { _, err := tg.ReadFile(ctx, "f"); return err }},
		{"WriteFile", func() error { return tg.WriteFile(ctx, "big", bytes.NewReader(big), int64(len(big))) }},
		{"Rename", func() error { return tg.Rename(ctx, "a", "b") }},
		{"Connect", func() error { return tg.Connect(ctx) }}, // the handshake stalls
	}
	for _, o := range ops {
		if o.name != "Connect" {
			if err := eventually(func() error { return tg.Connect(ctx) }); err != nil {
				t.Fatal(err)
			}
		}
		srv.Stall(true)
		start := time.Now()
		err := o.op()
		took := time.Since(start)
		srv.Stall(false)
		if err == nil || !targets.IsRetryable(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s on a stalled server: %v, want a retryable timeout", o.name, err)
		}
		if took < opTimeout*3/4 || took > opTimeout+time.Second {
			t.Errorf("%s on a stalled server took %v, want about %v", o.name, took, opTimeout)
		}
	}
	if err := eventually(func() error { return tg.WriteFile(ctx, "f", strings.NewReader("ok"), 2) }); err != nil {
		t.Errorf("WriteFile once the server answers again: %v", err)
	}
}

// eventually retries op a few times, as the publisher would: with the short
// OpTimeout of these tests, a handshake on a loaded machine may time out.
func eventually(op func() error) error {
	var err error
	for range 5 {
		if err = op(); err == nil || !targets.IsRetryable(err) {
			return err
		}
	}
	return err
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	srv := newOSServer(t)
	cfg := configFor(srv)
	cfg.Keepalive = 100 * time.Millisecond
	cfg.OpTimeout = 5 * time.Second
	tg := newTarget(t, cfg)
	if err := tg.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	tg.mu.Lock()
	c := tg.cur
	tg.mu.Unlock()
	// Keepalives are answered: the connection stays up.
	time.Sleep(500 * time.Millisecond)
	if why := c.cause(); why != nil {
		t.Fatalf("connection closed while the server answered: %v", why)
	}
	srv.Stall(true)
	select {
	case <-c.dead:
	case <-time.After(2 * time.Second):
		t.Fatal("the connection to a stalled server is still up after 2s of keepalives")
	}
	if why := c.cause(); !errors.Is(why, os.ErrDeadlineExceeded) {
		t.Errorf("connection closed because %v, want a keepalive timeout", why)
	}
	srv.Stall(false)
	if err := tg.WriteFile(t.Context(), "f", strings.NewReader("ok"), 2); err != nil {
		t.Errorf("WriteFile after the keepalive closed the connection: %v", err)
	}
}

// blockingReader gives n bytes, then blocks until ctx ends.
type blockingReader struct {
	ctx context.Context
	n   int
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	n := min(len(p), b.n)
	b.n -= n
	return n, nil
}

func TestCancellation(t *testing.T) {
	srv := newOSServer(t)
	cfg := configFor(srv)
	cfg.OpTimeout = 10 * time.Second
	tg := newTarget(t, cfg)
	big := bytes.Repeat([]byte("x"), 4<<20)
	tests := []struct {
		name  string
		stall bool
		op    func(ctx context.Context) error
	}{
		{"slow source", false, func(ctx context.Context) error {
			return tg.WriteFile(ctx, "f", &blockingReader{ctx: ctx, n: 100_000}, 1<<20)
		}},
		{"write to a stalled server", true, func(ctx context.Context) error {
			return tg.WriteFile(ctx, "f", bytes.NewReader(big), int64(len(big)))
		}},
		{"read from a stalled server", true, func(ctx context.Context) error {
			_, err := tg.ReadFile(ctx, "f")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tg.Connect(t.Context()); err != nil {
				t.Fatal(err)
			}
			srv.Stall(tc.stall)
			defer srv.Stall(false)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := tc.op(ctx)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("returned %v after the context ended, want promptly", took-200*time.Millisecond)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want the context's", err)
			}
		})
	}
	if err := tg.WriteFile(t.Context(), "g", strings.NewReader("ok"), 2); err != nil {
		t.Errorf("WriteFile after cancellations: %v", err)
	}
}

func TestDial(t *testing.T) {
	srv := newOSServer(t)
	t.Run("failure is held off", func(t *testing.T) {
		var dials atomic.Int32
		errRefused := errors.New("connection refused")
		cfg := configFor(srv)
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return nil, errRefused
		}
		tg := newTarget(t, cfg)
		tg.redialDelay = time.Hour
		for range 3 {
			if err := tg.Connect(t.Context()); !errors.Is(err, errRefused) || !targets.IsRetryable(err) {
				t.Fatalf("Connect: %v, want a retryable dial error", err)
			}
		}
		if got := dials.Load(); got != 1 {
			t.Errorf("3 calls within the hold-off dialed %d times, want 1", got)
		}
		tg.mu.Lock()
		tg.redialDelay = 0
		tg.mu.Unlock()
		_ = tg.Connect(t.Context())
		if got := dials.Load(); got != 2 {
			t.Errorf("after the hold-off, dials = %d, want 2", got)
		}
	})
	t.Run("honours ctx", func(t *testing.T) {
		cancelled := make(chan struct{})
		cfg := configFor(srv)
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		}
		tg := newTarget(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if err := tg.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Connect = %v, want the context's error", err)
		}
		select {
		case <-cancelled:
		case <-time.After(2 * time.Second):
			t.Error("the dial was not cancelled when its only caller gave up")
		}
	})
	t.Run("through a proxy", func(t *testing.T) {
		var proxied atomic.Int32
		cfg := configFor(srv)
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			proxied.Add(1)
			a, b := net.Pipe()
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			go func() { _, _ = io.Copy(c, b); _ = c.Close() }()
			go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
			return a, nil
		}
		cfg.HostKey = ""
		cfg.KnownHosts = writeFile(t, "known_hosts", srv.KnownHostsLine()+"\n")
		tg := newTarget(t, cfg)
		if err := tg.WriteFile(t.Context(), "p", strings.NewReader("proxied"), 7); err != nil {
			t.Fatalf("WriteFile through the proxy: %v", err)
		}
		if proxied.Load() != 1 {
			t.Errorf("dialer used %d times, want 1", proxied.Load())
		}
	})
}

func TestBigFileRoundTrip(t *testing.T) {
	srv := newOSServer(t)
	tg := newTarget(t, configFor(srv))
	data := make([]byte, 8<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := tg.MkdirAll(t.Context(), "actas/2024"); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFile(t.Context(), "actas/2024/big.bin", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(srv.Root, "actas/2024/big.bin"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("file on the server: %d bytes, %v; want the %d bytes written", len(onDisk), err, len(data))
	}
	got, err := tg.ReadFile(t.Context(), "actas/2024/big.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadFile: %d bytes, %v; want the %d bytes written", len(got), err, len(data))
	}
	if srv.BytesReceived() < int64(len(data)) {
		t.Errorf("server received %d bytes, want at least %d", srv.BytesReceived(), len(data))
	}
}

func TestWalkNeverLeavesRoot(t *testing.T) {
	srv := newOSServer(t)
	outside := filepath.Join(filepath.Dir(srv.Root), "outside")
	t.Cleanup(func() { _ = os.RemoveAll(outside) }) // before newOSServer's check
	if err := os.MkdirAll(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "sub", "secret"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(srv.Root, "escape")); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, configFor(srv))
	var seen []string
	err := tg.Walk(t.Context(), "", func(fi targets.FileInfo) error {
		seen = append(seen, fi.Path)
		if !fi.Symlink {
			t.Errorf("Walk reports %s as a regular file", fi.Path)
		}
		return nil
	})
	if err != nil || len(seen) != 1 || seen[0] != "escape" {
		t.Errorf("Walk = %v, %v; want only the link escape", seen, err)
	}
	if err := tg.RemoveAll(t.Context(), "escape"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "sub", "secret")); err != nil {
		t.Errorf("RemoveAll of a link removed what it points to: %v", err)
	}
	// A write through a name that is not in clean form is refused.
	if err := tg.WriteFile(t.Context(), "escape/../../outside/x", strings.NewReader("x"), 1); !targets.IsPermanent(err) {
		t.Errorf("WriteFile escaping the root: %v, want a permanent error", err)
	}
}

func TestErrors(t *testing.T) {
	srv := newOSServer(t)
	tg := newTarget(t, configFor(srv))
	_, err := tg.ReadFile(t.Context(), "missing.txt")
	if want := "sftp difusor-1: read missing.txt: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) || !targets.IsRetryable(err) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}

	status := func(code uint32) error { return &pkgsftp.StatusError{Code: code} }
	tests := []struct {
		name      string
		err       error
		notExist  bool
		perm      bool
		permanent bool
	}{
		{"no such file", status(uint32(pkgsftp.ErrSSHFxNoSuchFile)), true, false, false},
		{"permission denied", status(uint32(pkgsftp.ErrSSHFxPermissionDenied)), false, true, true},
		{"normalised permission", &os.PathError{Op: "remove", Path: "/x", Err: os.ErrPermission}, false, true, true},
		{"unsupported", status(uint32(pkgsftp.ErrSSHFxOpUnsupported)), false, false, true},
		{"failure (also a full disk)", status(uint32(pkgsftp.ErrSSHFxFailure)), false, false, false},
	}
	for _, tc := range tests {
		got := mapStatus(tc.err)
		if errors.Is(got, fs.ErrNotExist) != tc.notExist || errors.Is(got, fs.ErrPermission) != tc.perm || targets.IsPermanent(got) != tc.permanent {
			t.Errorf("%s: mapStatus = %v (not exist %v, permission %v, permanent %v), want %v, %v, %v", tc.name, got,
				errors.Is(got, fs.ErrNotExist), errors.Is(got, fs.ErrPermission), targets.IsPermanent(got),
				tc.notExist, tc.perm, tc.permanent)
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores file permissions")
	}
	srv := newOSServer(t)
	locked := filepath.Join(srv.Root, "locked")
	if err := os.Mkdir(locked, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(locked, 0o755) })
	tg := newTarget(t, configFor(srv))
	err := tg.WriteFile(t.Context(), "locked/f", strings.NewReader("x"), 1)
	if !errors.Is(err, fs.ErrPermission) || !targets.IsPermanent(err) {
		t.Errorf("WriteFile into a read-only directory: %v, want a permanent fs.ErrPermission", err)
	}
}

func TestNewValidates(t *testing.T) {
	srv := newOSServer(t)
	tests := []struct {
		name   string
		change func(t *testing.T, c *Config)
		want   string
	}{
		{"no name", func(_ *testing.T, c *Config) { c.Name = "" }, "name"},
		{"bad address", func(_ *testing.T, c *Config) { c.Address = "example.org" }, "address"},
		{"bad port", func(_ *testing.T, c *Config) { c.Address = "example.org:0" }, "address"},
		{"no user", func(_ *testing.T, c *Config) { c.User = "" }, "user"},
		{"relative root", func(_ *testing.T, c *Config) { c.Root = "www" }, "root"},
		{"no host key", func(_ *testing.T, c *Config) { c.HostKey = "" }, "host_key"},
		{"both host keys", func(_ *testing.T, c *Config) { c.KnownHosts = "/etc/ssh/ssh_known_hosts" }, "only one"},
		{"bad host key", func(_ *testing.T, c *Config) { c.HostKey = "ssh-ed25519 !!!" }, "host_key"},
		{"missing known_hosts", func(_ *testing.T, c *Config) { c.HostKey, c.KnownHosts = "", "/nonexistent/known_hosts" }, "known_hosts"},
		{"missing identity", func(_ *testing.T, c *Config) { c.IdentityFile = "/nonexistent/id" }, "identity_file"},
		{"no identity, no agent", func(t *testing.T, c *Config) { c.IdentityFile = ""; t.Setenv("SSH_AUTH_SOCK", "") }, "SSH_AUTH_SOCK"},
		{"unknown cipher", func(_ *testing.T, c *Config) { c.Ciphers = []string{"rot13"} }, "cipher"},
		{"negative timeout", func(_ *testing.T, c *Config) { c.OpTimeout = -time.Second }, "op_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(srv)
			tc.change(t, &cfg)
			_, err := New(cfg, nil)
			if !targets.IsPermanent(err) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("New: %v, want a permanent error naming %s", err, tc.want)
			}
		})
	}
	cfg := configFor(srv)
	cfg.Ciphers = []string{"chacha20-poly1305@openssh.com"}
	cfg.Keepalive = -1
	if err := newTarget(t, cfg).Connect(t.Context()); err != nil {
		t.Errorf("Connect with one chosen cipher and no keepalives: %v", err)
	}
}

func BenchmarkWriteFile(b *testing.B) {
	srv := targettest.NewSFTPServer(b, "")
	tg, err := New(configFor(srv), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tg.Close()
	data := make([]byte, 64<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := tg.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := tg.WriteFile(ctx, "bench.bin", bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDirCacheHealsAfterExternalRemoval(t *testing.T) {
	srv := newOSServer(t)
	tg := newTarget(t, configFor(srv))
	ctx := t.Context()
	if err := tg.MkdirAll(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(srv.Root, "a")); err != nil {
		t.Fatal(err)
	}
	// The target still believes a/b exists, so the write fails...
	_ = tg.MkdirAll(ctx, "a/b")
	if err := tg.WriteFile(ctx, "a/b/f", strings.NewReader("x"), 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteFile into a directory removed behind the target's back: %v, want fs.ErrNotExist", err)
	}
	// ...and forgets, so that MkdirAll makes it again.
	if err := tg.MkdirAll(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := tg.WriteFile(ctx, "a/b/f", strings.NewReader("x"), 1); err != nil {
		t.Fatalf("WriteFile after MkdirAll again: %v", err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("work", func(t *testing.T) {
		srv := newOSServer(t)
		cfg := configFor(srv)
		cfg.OpTimeout = 10 * time.Second
		cfg.Keepalive = time.Second
		tg := newTarget(t, cfg)
		ctx := t.Context()
		if err := tg.WriteFile(ctx, "f", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
		srv.DropConnections()
		if _, err := tg.ReadFile(ctx, "f"); err != nil {
			t.Fatal(err)
		}
		srv.Stall(true)
		defer srv.Stall(false)
		// These calls give up while their requests hang; Close must end them.
		for range 3 {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			if _, err := tg.ReadFile(cctx, "f"); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("ReadFile on a stalled server: %v, want the context's error", err)
			}
			cancel()
		}
		if err := tg.Close(); err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Errorf("%d goroutines before, %d after the target and server closed:\n%s", before, n, buf.String())
	}
}
