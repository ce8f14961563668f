package sshdtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

const opTimeout = 10 * time.Second

// connect opens an SFTP session to s as s.User() with s.ClientKeyPath(),
// closed when the test ends.
func connect(t *testing.T, s *Server, hostKey ssh.HostKeyCallback) *sftp.Client {
	t.Helper()
	pem, err := os.ReadFile(s.ClientKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User:            s.User(),
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey,
		Timeout:         opTimeout,
	})
	if err != nil {
		t.Fatalf("ssh dial %s: %v", s.Addr(), err)
	}
	client, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		t.Fatalf("sftp session on %s: %v", s.Addr(), err)
	}
	t.Cleanup(func() {
		client.Close()
		conn.Close()
	})
	return client
}

func fixedHostKey(t *testing.T, s *Server) ssh.HostKeyCallback {
	t.Helper()
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s.HostKeyLine()))
	if err != nil {
		t.Fatalf("parse HostKeyLine %q: %v", s.HostKeyLine(), err)
	}
	return ssh.FixedHostKey(key)
}

func knownHostsFile(t *testing.T, s *Server) ssh.HostKeyCallback {
	t.Helper()
	cb, err := knownhosts.New(s.KnownHostsFile())
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

// within runs f and fails the test if it takes longer than opTimeout.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(opTimeout):
		t.Fatalf("%s: no answer after %v", what, opTimeout)
		return nil
	}
}

func putFile(c *sftp.Client, name string, data []byte) error {
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runSSH runs args on s through the OpenSSH client and returns its stdout.
func runSSH(t *testing.T, s *Server, args ...string) (string, error) {
	t.Helper()
	cmd := s.SSHCommand(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("run ssh: %v", err)
	}
	timer := time.AfterFunc(opTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		return stdout.String(), errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}

func TestServeWebroot(t *testing.T) {
	sharedKey := filepath.Join(t.TempDir(), "id_ed25519")
	if _, err := GenerateKey(sharedKey); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		opts      Options
		knownHost bool // verify the host key from KnownHostsFile instead of HostKeyLine
		wantRoot  string
		exec      bool // exec sessions run the requested command
	}{
		{name: "plain", opts: Options{}, exec: true},
		{name: "chroot", opts: Options{Chroot: true, ClientKey: sharedKey}, knownHost: true, wantRoot: "/www"},
		{name: "noexec", opts: Options{NoExec: true, ClientKey: sharedKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.opts)
			if tt.wantRoot != "" && s.Root() != tt.wantRoot {
				t.Errorf("Root() = %q, want %q", s.Root(), tt.wantRoot)
			}
			if !tt.opts.Chroot && s.Root() != s.WebRoot() {
				t.Errorf("Root() = %q, WebRoot() = %q; want the same without chroot", s.Root(), s.WebRoot())
			}
			if want := "[127.0.0.1]:" + strings.TrimPrefix(s.Addr(), "127.0.0.1:") + " " + s.HostKeyLine(); s.KnownHostsLine() != want {
				t.Errorf("KnownHostsLine() = %q, want %q", s.KnownHostsLine(), want)
			}
			if tt.opts.ClientKey != "" && s.ClientKeyPath() != tt.opts.ClientKey {
				t.Errorf("ClientKeyPath() = %q, want %q", s.ClientKeyPath(), tt.opts.ClientKey)
			}
			cb := fixedHostKey(t, s)
			if tt.knownHost {
				cb = knownHostsFile(t, s)
			}
			c := connect(t, s, cb)
			if _, ok := c.HasExtension("posix-rename@openssh.com"); !ok {
				t.Fatal("server lacks posix-rename@openssh.com")
			}

			dir := path.Join(s.Root(), "json")
			final, staged := path.Join(dir, "main.json"), path.Join(dir, "main.json.tmp")
			oldData, newData := []byte(`{"cut":1}`), []byte(`{"cut":2}`)
			if err := c.MkdirAll(dir); err != nil {
				t.Fatalf("mkdir %s: %v", dir, err)
			}
			if err := putFile(c, final, oldData); err != nil {
				t.Fatalf("write %s: %v", final, err)
			}
			if err := putFile(c, staged, newData); err != nil {
				t.Fatalf("write %s: %v", staged, err)
			}
			if err := c.PosixRename(staged, final); err != nil {
				t.Fatalf("posix-rename %s over %s: %v", staged, final, err)
			}
			got, err := os.ReadFile(filepath.Join(s.WebRoot(), "json", "main.json"))
			if err != nil || !bytes.Equal(got, newData) {
				t.Errorf("webroot json/main.json = %q, %v; want %q", got, err, newData)
			}
			if _, err := os.Stat(filepath.Join(s.WebRoot(), "json", "main.json.tmp")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("staged file still in webroot after rename: %v", err)
			}

			if tt.opts.Chroot {
				if wd, err := c.Getwd(); err != nil || wd != s.Root() {
					t.Errorf("Getwd() = %q, %v; want %q", wd, err, s.Root())
				}
				if _, err := c.Stat("/etc/passwd"); err == nil {
					t.Error("chrooted client can stat /etc/passwd")
				}
			}

			out, err := runSSH(t, s, "echo", "exec-marker")
			switch {
			case tt.exec && (err != nil || strings.TrimSpace(out) != "exec-marker"):
				t.Errorf("ssh echo exec-marker = %q, %v; want exec-marker", out, err)
			case !tt.exec && strings.Contains(out, "exec-marker"):
				t.Errorf("ssh echo ran a command on an SFTP-only server: %q", out)
			}
			if tt.exec {
				if _, err := runSSH(t, s, "true"); err != nil {
					t.Errorf("ssh true: %v", err)
				}
			}

			before, err := s.CPUSeconds()
			if err != nil {
				t.Errorf("CPUSeconds: %v", err)
			}
			if tt.exec {
				// A session that burns about 0.1 s of CPU in a child of a
				// child of sshd counts once it has ended.
				if _, err := runSSH(t, s, `i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done`); err != nil {
					t.Errorf("ssh busy loop: %v", err)
				}
				deadline := time.Now().Add(opTimeout)
				for {
					after, err := s.CPUSeconds()
					if err == nil && after-before >= 0.05 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("CPUSeconds() = %v, %v after a busy session; want at least %v", after, err, before+0.05)
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}

			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if strings.HasPrefix(s.WebRoot(), ChrootBase+"/") {
				if _, err := os.Stat(filepath.Dir(s.WebRoot())); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("chroot outside the server directory survives Close: %v", err)
				}
			}
			if _, err := s.CPUSeconds(); err == nil {
				t.Error("CPUSeconds after Close: no error")
			}
		})
	}
}

func TestStopRestart(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := connect(t, s, fixedHostKey(t, s))
	name := path.Join(s.Root(), "kept.txt")
	if err := putFile(c, name, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := within(t, "stat on a stopped server", func() error { _, err := c.Stat(name); return err }); err == nil {
		t.Error("open session still answers after Stop")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s after Stop succeeded", addr)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := s.CPUSeconds(); err == nil {
		t.Error("CPUSeconds while stopped: no error")
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Addr() != addr {
		t.Fatalf("Addr() after Restart = %s, want %s", s.Addr(), addr)
	}
	c = connect(t, s, fixedHostKey(t, s))
	f, err := c.Open(name)
	if err != nil {
		t.Fatalf("open %s after Restart: %v", name, err)
	}
	defer f.Close()
	if got, err := io.ReadAll(f); err != nil || string(got) != "kept" {
		t.Errorf("%s after Restart = %q, %v; want %q", name, got, err, "kept")
	}

	// Restart of a running server replaces it, sessions included.
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	if err := within(t, "stat after a second Restart", func() error { _, err := c.Stat(name); return err }); err == nil {
		t.Error("session survived Restart")
	}
	connect(t, s, fixedHostKey(t, s))
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c := connect(t, s, fixedHostKey(t, s))

	if err := s.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Stat(s.Root()); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("stat answered while paused: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// New connections are accepted by the kernel but get no banner.
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial while paused: %v", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var nerr net.Error
	if line, err := bufio.NewReader(conn).ReadString('\n'); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("banner read while paused = %q, %v; want a timeout", line, err)
	}

	if err := s.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stat started while paused: %v after Resume", err)
		}
	case <-time.After(opTimeout):
		t.Fatal("stat started while paused: no answer after Resume")
	}
	_ = conn.SetReadDeadline(time.Now().Add(opTimeout))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
		t.Errorf("banner after Resume = %q, %v", line, err)
	}
	connect(t, s, fixedHostKey(t, s))
}

func TestStartServerRefuses(t *testing.T) {
	if reason := Unavailable(); reason != "" {
		t.Skip(reason)
	}
	tests := []struct {
		name string
		dir  string
		opts Options
		want string
	}{
		{"percent in dir", "a%u", Options{}, "must not contain %"},
		{"managed keyword", "m", Options{ExtraConfig: []string{"ListenAddress=0.0.0.0:22"}}, "the harness sets listenaddress itself"},
		{"line break", "n", Options{ExtraConfig: []string{"LogLevel INFO\nPort 22"}}, "line break"},
		{"missing client key", "k", Options{ClientKey: "/nonexistent/key"}, "read client key"},
		{"bad sshd option", "b", Options{ExtraConfig: []string{"NoSuchOption yes"}}, "Bad configuration option: NoSuchOption"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := StartServer(filepath.Join(t.TempDir(), tt.dir), tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("StartServer succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("StartServer error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestExtraConfig(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		wants []string // lines of "sshd -T" for a root login from 127.0.0.1
	}{
		{"defaults", Options{}, []string{"maxstartups 200:30:400", "loglevel ERROR", "usepam no", "maxsessions 64", "subsystem sftp internal-sftp"}},
		{"last value wins keyword", Options{ExtraConfig: []string{"MaxStartups 10:30:100"}}, []string{"maxstartups 10:30:100"}},
		{"repeated subsystem", Options{ExtraConfig: []string{"Subsystem sftp /usr/lib/openssh/sftp-server"}}, []string{"subsystem sftp /usr/lib/openssh/sftp-server"}},
		{"keyword=value", Options{ExtraConfig: []string{"# comment", "LogLevel=INFO"}}, []string{"loglevel INFO"}},
		{"match block", Options{Chroot: true, ExtraConfig: []string{"Match Address 127.0.0.1", "MaxSessions 2"}}, []string{"maxsessions 2", "maxstartups 200:30:400", "forcecommand internal-sftp -d /www"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.opts)
			conn := fmt.Sprintf("user=root,host=localhost,addr=127.0.0.1,laddr=127.0.0.1,lport=%d", s.Port())
			out, err := exec.Command(SSHDPath, "-T", "-f", filepath.Join(s.Dir(), "sshd_config"), "-C", conn).CombinedOutput()
			if err != nil {
				t.Fatalf("sshd -T: %v\n%s", err, out)
			}
			lines := strings.Split(string(out), "\n")
			for _, want := range tt.wants {
				if !slices.Contains(lines, want) {
					t.Errorf("effective sshd config lacks %q", want)
				}
			}
		})
	}

	t.Run("takes effect", func(t *testing.T) {
		t.Parallel()
		// At LogLevel INFO instead of ERROR sshd logs accepted logins.
		s := Start(t, Options{ExtraConfig: []string{"LogLevel INFO"}})
		connect(t, s, fixedHostKey(t, s))
		deadline := time.Now().Add(opTimeout)
		for {
			data, err := os.ReadFile(s.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte("Accepted publickey for root")) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("sshd log lacks the accepted login at LogLevel INFO:\n%s", data)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestRestartRefusesTakenPort(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("take the port: %v", err)
	}
	defer l.Close()
	err = s.Restart()
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Restart on a taken port = %v, want an error naming the port conflict", err)
	}
	l.Close()
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart once the port is free: %v", err)
	}
	connect(t, s, fixedHostKey(t, s))
}
