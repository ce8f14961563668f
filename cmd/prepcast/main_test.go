package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets/targettest"
)

type cli struct {
	t   *testing.T
	dir string
	cfg string
	src string
	srv []*targettest.Server
}

// newCLI writes a config with n in-process SFTP targets; badKey makes the
// last one pinned to a wrong host key.
func newCLI(t *testing.T, n int, badKey bool) *cli {
	dir := t.TempDir()
	c := &cli{t: t, dir: dir, cfg: filepath.Join(dir, "prepcast.yaml"), src: filepath.Join(dir, "results")}
	if _, _, err := packager.GenerateKey(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nretry: {attempts: 1}\ntargets:\n", c.src, filepath.Join(dir, "state"), filepath.Join(dir, "keys", "manifest.key"))
	for i := 0; i < n; i++ {
		s := targettest.NewSFTPServer(t, "")
		c.srv = append(c.srv, s)
		key := s.HostKeyLine
		if badKey && i == n-1 {
			key = targettest.NewSFTPServer(t, "").HostKeyLine
		}
		fmt.Fprintf(&b, "  - {name: d%d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s}\n", i+1, s.Addr, s.User, s.ClientKeyPath, key, s.Root)
	}
	os.WriteFile(c.cfg, []byte(b.String()), 0o644)
	c.write(1)
	return c
}

func (c *cli) write(n int) {
	os.MkdirAll(filepath.Join(c.src, "json"), 0o755)
	os.WriteFile(filepath.Join(c.src, "json", "main.json"), []byte(fmt.Sprintf(`{"corte":%d}`, n)), 0o644)
	os.WriteFile(filepath.Join(c.src, fmt.Sprintf("acta%d.jpg", n)), bytes.Repeat([]byte{byte(n)}, 5000), 0o644)
}

func (c *cli) run(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String() + errb.String()
}

func TestCycleWhilePushRunningExitsZeroAndLeavesTheCut(t *testing.T) {
	c := newCLI(t, 2, false)
	os.MkdirAll(filepath.Join(c.dir, "state"), 0o755)
	lock, err := publisher.LockPush(filepath.Join(c.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	code, out := c.run("cycle", "--config", c.cfg)
	if code != 0 || !strings.Contains(out, "another prepcast process is pushing") || !strings.Contains(out, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("cycle during a push: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "cut 1 ") {
		t.Fatalf("cycle did not make its cut:\n%s", out)
	}
	lock.Unlock()
	code, out = c.run("push", "--config", c.cfg)
	if code != 0 {
		t.Fatalf("push: exit %d\n%s", code, out)
	}
	for _, s := range c.srv {
		if b, err := os.ReadFile(filepath.Join(s.Root, "json", "main.json")); err != nil || string(b) != `{"corte":1}` {
			t.Fatalf("%s: main.json = %q, %v", s.Root, b, err)
		}
	}
	code, out = c.run("status", "--config", c.cfg)
	if code != 0 || !strings.Contains(out, "d1") || strings.Contains(out, "never pushed") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
}

func TestPushExitCodes(t *testing.T) {
	c := newCLI(t, 2, true)
	if code, out := c.run("cycle", "--config", c.cfg); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "host_key") {
		t.Fatalf("cycle with a refused target: exit %d, want 1\n%s", code, out)
	}
	if code, out := c.run("status", "--config", c.cfg, "--probe"); code != 1 || !strings.Contains(out, "failing") || !strings.Contains(out, "probe:") {
		t.Fatalf("status with a refused target, probed: exit %d, want 1\n%s", code, out)
	}
	if code, out := c.run("push", "--config", c.cfg, "--target", "d1"); code != 0 {
		t.Fatalf("push to the healthy target only: exit %d\n%s", code, out)
	}
	if code, out := c.run("push", "--config", c.cfg, "--target", "nope"); code != 2 || !strings.Contains(out, `"nope" is not in the config`) {
		t.Fatalf("unknown target: exit %d\n%s", code, out)
	}
	if code, out := c.run("cut", "--config", c.cfg); code != 0 || !strings.Contains(out, "no change since cut 1") {
		t.Fatalf("unchanged cut: exit %d\n%s", code, out)
	}
	if code, out := c.run("cuts", "--config", c.cfg); code != 0 || !strings.Contains(out, "SEQ") {
		t.Fatalf("cuts: exit %d\n%s", code, out)
	}
	os.WriteFile(c.cfg, []byte("source: /nope\nbogus_field: 1\n"), 0o644)
	if code, out := c.run("cut", "--config", c.cfg); code != 2 || !strings.Contains(out, "bogus_field") {
		t.Fatalf("bad config: exit %d, want 2\n%s", code, out)
	}
	if code, _ := c.run("frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

// The daemon waits for its window, runs a cycle when asked with SIGUSR1,
// serves /status and /metrics meanwhile, and stops on cancellation.
func TestRunDaemonTriggerAndHTTP(t *testing.T) {
	c := newCLI(t, 2, false)
	addr := daemonConfig(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, []string{"run", "--config", c.cfg}, &out, io.Discard) }()
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s", what)
	}
	waitFor("the HTTP server", func() bool { _, err := get("/healthz"); return err == nil })
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	waitFor("both targets to ack cut 1", func() bool {
		body, err := get("/status")
		if err != nil {
			return false
		}
		var v struct {
			Counts struct{ Acked int } `json:"counts"`
		}
		return json.Unmarshal([]byte(body), &v) == nil && v.Counts.Acked == 2
	})
	metrics, err := get("/metrics")
	if err != nil || !strings.Contains(metrics, `prepcast_target_acked_seq{target="d1"} 1`) {
		t.Fatalf("metrics: %v\n%s", err, metrics)
	}
	// The next cut goes over the same connections: one per difusor for
	// the daemon's life, not one per cut.
	c.write(2)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	waitFor("both targets to ack cut 2", func() bool {
		m, err := get("/metrics")
		return err == nil && strings.Contains(m, `prepcast_target_acked_seq{target="d1"} 2`) &&
			strings.Contains(m, `prepcast_target_acked_seq{target="d2"} 2`)
	})
	for i, s := range c.srv {
		if n := s.Connections(); n != 1 {
			t.Errorf("d%d: %d SSH connections for two cuts, want 1", i+1, n)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitInterrupted {
			t.Fatalf("run exited %d, want %d", code, exitInterrupted)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
}

// prepcast package writes a cut's package: a tar in a zstd stream that
// holds the cut's new files, signed, from any origin.
func TestPackageCommandWritesTheCheckedStream(t *testing.T) {
	c := newCLI(t, 0, false)
	for n := 1; n <= 2; n++ {
		c.write(n)
		if code, out := c.run("cut", "--config", c.cfg); code != 0 {
			t.Fatalf("cut %d: exit %d\n%s", n, code, out)
		}
	}
	pub, err := packager.LoadPublicKey(filepath.Join(c.dir, "keys", "manifest.pub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args  []string
		from  int64
		files []string
	}{
		{nil, 1, []string{"acta2.jpg", "json/main.json"}},
		{[]string{"--from", "0", "--cut", "2"}, 0, []string{"acta1.jpg", "acta2.jpg", "json/main.json"}},
	} {
		p := filepath.Join(c.dir, fmt.Sprintf("from-%d.tar.zst", tt.from))
		code, out := c.run(append([]string{"package", "--config", c.cfg, "--out", p}, tt.args...)...)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("package from cut %d to cut 2:", tt.from)) {
			t.Fatalf("package %v: exit %d\n%s", tt.args, code, out)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		pc, err := packager.ReadPackage(f, pub, nil, nil, func(e packager.Entry, r io.Reader) error {
			b, err := io.ReadAll(r)
			if want, _ := os.ReadFile(filepath.Join(c.src, e.Path)); !bytes.Equal(b, want) {
				t.Errorf("%s differs from the tree", e.Path)
			}
			got = append(got, e.Path)
			return err
		})
		f.Close()
		if err != nil || pc.Delta.FromSeq != tt.from || strings.Join(got, ",") != strings.Join(tt.files, ",") {
			t.Fatalf("package %v: %v, from %d, files %v", tt.args, err, pc.Delta.FromSeq, got)
		}
	}
	// A stored package that rotted is refused, discarded and built again.
	idx := filepath.Join(c.dir, "state", "store", "cuts", "000002", packager.PackageName(1, packager.FileDeltas))
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 1
	os.Chmod(idx, 0o644)
	os.WriteFile(idx, b, 0o644)
	p := filepath.Join(c.dir, "again.tar.zst")
	if code, out := c.run("package", "--config", c.cfg, "--out", p); code == 0 || !strings.Contains(out, "does not match its record") {
		t.Fatalf("rotten package: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("a package that failed its check was left at --out: %v", err)
	}
	if code, out := c.run("package", "--config", c.cfg, "--out", p); code != 0 {
		t.Fatalf("package after the rot: exit %d\n%s", code, out)
	}
	if code, out := c.run("package", "--config", c.cfg); code != 2 || !strings.Contains(out, "--out") {
		t.Fatalf("no --out: exit %d\n%s", code, out)
	}
	if code, out := c.run("package", "--config", c.cfg, "--cut", "2", "--from", "2", "--out", "-"); code == 0 || !strings.Contains(out, "older") {
		t.Fatalf("--from 2 --cut 2: exit %d\n%s", code, out)
	}
}
