package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonConfig adds a listen address and a schedule whose window is far
// ahead to c's config, so that nothing but the start-up catch-up pushes.
func daemonConfig(t *testing.T, c *cli) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data, _ := os.ReadFile(c.cfg)
	extra := fmt.Sprintf("listen: %q\nschedule: {every: 10m, start: \"2099-06-02T20:00\", end: \"2099-06-03T20:00\"}\n", addr)
	if err := os.WriteFile(c.cfg, append([]byte(extra), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startDaemon runs "prepcast run" as a child process, as systemd would.
func startDaemon(t *testing.T, cfg string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "PREPCAST_RUN_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &out
}

func waitAcked(t *testing.T, addr string, n int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/status")
		if err != nil {
			continue
		}
		var v struct {
			Counts struct{ Acked int } `json:"counts"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err == nil && v.Counts.Acked == n {
			return
		}
	}
	t.Fatalf("%d targets did not acknowledge the latest cut within %s", n, within)
}

func waitExit(t *testing.T, cmd *exec.Cmd, out *strings.Builder) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		t.Fatalf("the daemon did not stop:\n%s", out)
	}
	return -1
}

// A daemon started while difusores lag catches them up at once, not at
// its next tick (here a day away); SIGTERM, what systemd sends to stop a
// unit, stops it cleanly with exit 0, and SIGINT with 130.
func TestDaemonCatchesUpAtStartAndStopsCleanly(t *testing.T) {
	c := newCLI(t, 2, false)
	addr := daemonConfig(t, c)
	if code, out := c.run("cut", "--config", c.cfg); code != 0 {
		t.Fatalf("cut: exit %d\n%s", code, out)
	}
	start := time.Now()
	cmd, out := startDaemon(t, c.cfg)
	waitAcked(t, addr, 2, 15*time.Second)
	t.Logf("caught up 2 difusores %s after start", time.Since(start).Round(time.Millisecond))
	// The listener is read-only: the dashboard at /, and 405 for any
	// method but GET and HEAD on every path.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Último corte: 1 (") || !strings.Contains(string(page), `data-difusor="d2"`) {
		t.Fatalf("GET /: %s\n%s", resp.Status, page)
	}
	for _, path := range []string{"/", "/status", "/metrics", "/healthz", "/events"} {
		resp, err := http.Post("http://"+addr+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %s, want 405", path, resp.Status)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, out); code != 0 || !strings.Contains(out.String(), "stopped on SIGTERM") {
		t.Fatalf("SIGTERM: exit %d, want 0\n%s", code, out)
	}
	if !strings.Contains(out.String(), "catching up 2 lagging difusores: d1, d2") {
		t.Fatalf("no catch-up at start:\n%s", out)
	}

	c.write(2)
	if code, out := c.run("cut", "--config", c.cfg); code != 0 {
		t.Fatalf("cut 2: exit %d\n%s", code, out)
	}
	cmd, out = startDaemon(t, c.cfg)
	waitAcked(t, addr, 2, 15*time.Second)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, cmd, out); code != exitInterrupted {
		t.Fatalf("SIGINT: exit %d, want %d\n%s", code, exitInterrupted, out)
	}
}
