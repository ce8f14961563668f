// Package nginxtest starts real nginx servers on 127.0.0.1 for integration
// tests: a difusor's web server serving its webroot, with the master running
// as root and the workers as an unprivileged user, as a difusor runs it. The
// workers can then read only what the files' modes let another user read,
// which is the point: a file written with mode 0600 is answered 403.
package nginxtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
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
)

// NginxPath is the nginx binary the tests run (Debian package nginx).
const NginxPath = "/usr/sbin/nginx"

// RequireEnv set to "1" turns a missing nginx into a test failure instead of
// a skip; "make test" sets it (it is the same variable as sshdtest's).
const RequireEnv = "PREPCAST_REQUIRE_SSHD"

// WorkerUser and WorkerGroup are the unprivileged user and group nginx's
// workers run as.
const (
	WorkerUser  = "nobody"
	WorkerGroup = "nogroup"
)

// DifusorRules are the server-block directives the README and the difusor's
// guide tell a difusor to add: json/main.json and the proof index are never
// cached, the published proof of each cut (.well-known/prepcast/) is served
// even where a rule hides dot-directories (its cut files never change, so
// they may be cached for good), and prepcast's private directory is not
// served. Tests serve webroots with exactly these rules, so the documented
// snippet is the tested one.
const DifusorRules = `location = /json/main.json {
    add_header Cache-Control "no-cache, no-store, must-revalidate" always;
    expires off;
}
location = /.well-known/prepcast/index.json {
    add_header Cache-Control "no-cache, no-store, must-revalidate" always;
    expires off;
}
location ^~ /.well-known/prepcast/cuts/ {
    add_header Cache-Control "public, max-age=31536000, immutable" always;
}
location ^~ /.prepcast/ { deny all; }
`

// Options configures a Server.
type Options struct {
	// Root is the directory served at "/". It and its ancestors are made
	// searchable (o+x) by the worker user if they are not; its files are
	// left as they are.
	Root string
	// Rules are directives inside the server block, e.g. DifusorRules
	// (the default when empty) or rules that a test wants to get wrong.
	Rules string
	// NoRules serves Root with no rules at all (Rules is ignored).
	NoRules bool
}

// Server is one running nginx.
type Server struct {
	URL  string // "http://127.0.0.1:PORT/"
	Addr string // "127.0.0.1:PORT"
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Unavailable returns why no Server can run here, or "".
func Unavailable() string {
	switch {
	case runtime.GOOS != "linux":
		return "real nginx servers need Linux, this is " + runtime.GOOS
	case os.Geteuid() != 0:
		return "real nginx servers need root (the master runs as root, the workers as " + WorkerUser + ")"
	}
	if _, err := os.Stat(NginxPath); err != nil {
		return NginxPath + " not found (install the Debian package nginx)"
	}
	if _, err := user.Lookup(WorkerUser); err != nil {
		return "no user " + WorkerUser + " for nginx's workers"
	}
	return ""
}

// Start starts nginx serving o.Root for the test and stops it when the test
// ends (logging the error log's tail if the test failed). It skips the test
// when nginx cannot run here, or fails it when RequireEnv is "1".
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("nginxtest: %s (%s=1 requires it)", reason, RequireEnv)
		}
		t.Skipf("nginxtest: %s; set %s=1 to fail instead of skipping", reason, RequireEnv)
	}
	s, err := StartServer(t.TempDir(), o)
	if err != nil {
		t.Fatalf("nginxtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			t.Logf("nginx %s error log:\n%s", s.Addr, tail(string(b), 30))
		}
		s.Close()
	})
	return s
}

// StartServer starts nginx with its configuration, logs and temporary files
// in dir, and returns once it accepts connections. The caller must Close it.
func StartServer(dir string, o Options) (*Server, error) {
	if reason := Unavailable(); reason != "" {
		return nil, errors.New(reason)
	}
	root, err := filepath.Abs(o.Root)
	if err != nil || o.Root == "" {
		return nil, fmt.Errorf("nginx root %q: give an absolute directory", o.Root)
	}
	if err := searchable(root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rules := o.Rules
	if rules == "" {
		rules = DifusorRules
	}
	if o.NoRules {
		rules = ""
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan struct{})}
		s.URL = "http://" + s.Addr + "/"
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(config(dir, root, s.Addr, rules)), 0o644); err != nil {
			return nil, err
		}
		s.cmd = exec.Command(NginxPath, "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", conf)
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start nginx: %w", err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		if err := s.waitReady(5 * time.Second); err != nil {
			s.Close()
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			lastErr = fmt.Errorf("nginx on %s did not start: %v; error log: %s", s.Addr, err, tail(string(b), 10))
			if strings.Contains(string(b), "Address already in use") {
				continue
			}
			return nil, lastErr
		}
		return s, nil
	}
	return nil, lastErr
}

// config is nginx.conf for one server.
func config(dir, root, addr, rules string) string {
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
user %s %s;
pid %s;
error_log %s info;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log %s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    sendfile on;
    server {
        listen %s;
        server_name localhost;
        root %s;
%s
    }
}
`, WorkerUser, WorkerGroup, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log"),
		filepath.Join(dir, "client_body"), filepath.Join(dir, "proxy"), filepath.Join(dir, "fastcgi"),
		filepath.Join(dir, "uwsgi"), filepath.Join(dir, "scgi"), addr, root, indent(rules, "        "))
}

func indent(s, by string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = by + l
	}
	return strings.Join(lines, "\n")
}

// waitReady polls until nginx answers HTTP, or it exits, or d passes.
func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			return errors.New("nginx exited")
		default:
		}
		resp, err := c.Get(s.URL + "nginxtest-probe")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops nginx (fast shutdown) and waits for it.
func (s *Server) Close() {
	s.once.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// ErrorLog returns nginx's error log so far.
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
	return string(b)
}

// searchable makes dir and each of its ancestors searchable by others, as a
// web root's path must be for a worker running as another user.
func searchable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("nginx root: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("nginx root: make %s searchable: %w", p, err)
			}
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
