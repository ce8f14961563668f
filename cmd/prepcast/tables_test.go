package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rowOf returns the line of out that starts with name and a space.
func rowOf(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	t.Fatalf("no row for %s:\n%s", name, out)
	return ""
}

// A refused host key is named in the target's own row of the push table
// and of status, from the start of the error, not cut from the left.
func TestTablesShowErrorsByCause(t *testing.T) {
	c := newCLI(t, 2, true)
	code, out := c.run("cycle", "--config", c.cfg)
	if code != 1 {
		t.Fatalf("cycle: exit %d\n%s", code, out)
	}
	if r := rowOf(t, out, "d2"); !strings.Contains(r, "FAILED") || !strings.Contains(r, "HOST KEY CHANGED for "+c.srv[1].Addr) {
		t.Fatalf("push row of the refused target does not give the cause:\n%s\n(all:\n%s)", r, out)
	}
	code, out = c.run("status", "--config", c.cfg)
	if code != 0 { // failing, but within max_lag
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if r := rowOf(t, out, "d2"); !strings.Contains(r, "failing") || !strings.Contains(r, "HOST KEY CHANGED for "+c.srv[1].Addr) {
		t.Fatalf("status row of the refused target does not give the cause:\n%s", r)
	}
	if !strings.Contains(out, "errors in full:\nd2:\n    read ack: ") || !strings.Contains(out, "ssh-keyscan") {
		t.Fatalf("the whole error is not below the status table:\n%s", out)
	}
	if r := rowOf(t, out, "d1"); !strings.HasSuffix(strings.TrimSpace(r), " -") {
		t.Fatalf("ok target shows a cause: %s", r)
	}
}

// push --verify counts and lists the files it repaired.
func TestPushVerifyShowsRepairedFiles(t *testing.T) {
	c := newCLI(t, 1, false)
	if code, out := c.run("cycle", "--config", c.cfg); code != 0 {
		t.Fatalf("cycle: exit %d\n%s", code, out)
	}
	tampered := filepath.Join(c.srv[0].Root, "acta1.jpg")
	if err := os.WriteFile(tampered, []byte("not the signed bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := c.run("push", "--config", c.cfg, "--verify")
	if code != 0 {
		t.Fatalf("push --verify: exit %d\n%s", code, out)
	}
	row := rowOf(t, out, "d1")
	if !regexp.MustCompile(`^d1\s+ok, repaired 1\s+1 \S+\s+1\s`).MatchString(row) {
		t.Fatalf("push --verify row does not count the repaired file:\n%s", out)
	}
	if !strings.Contains(out, "d1: repaired 1 altered or missing files:\n    acta1.jpg\n") {
		t.Fatalf("push --verify does not list the repaired file:\n%s", out)
	}
	if data, _ := os.ReadFile(tampered); len(data) != 5000 {
		t.Fatalf("acta1.jpg not repaired: %d bytes", len(data))
	}
}
