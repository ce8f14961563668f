package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/publisher"
)

// The push table shows rates from the staging time of every attempt, no
// rate where too little time was measured (never 97,425 MB/s), attempts as
// attempts, and the fallback a target picked for its server.
func TestPushTableRatesAndStrategy(t *testing.T) {
	results := []publisher.Result{
		{Target: "retried", Ack: &publisher.Ack{Seq: 3, ID: "20240602_2010"}, Attempts: 3, Files: 404,
			Bytes: 400e6, Wire: 20 * time.Second, Duration: 25 * time.Second,
			Strategy: "rename: posix-rename, fsync: main session (the server refuses extra sessions: ssh: rejected: connect failed)"},
		{Target: "resumed", Ack: &publisher.Ack{Seq: 3, ID: "20240602_2010"}, Attempts: 2, Files: 10,
			Bytes: 400e6, Wire: 4 * time.Millisecond, Duration: time.Second},
		{Target: "down", Attempts: 5, Err: errors.New("connect: refused")},
	}
	var b strings.Builder
	printResults(&b, results)
	out := b.String()
	lines := strings.Split(out, "\n")
	find := func(name string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, name+" ") {
				return l
			}
		}
		t.Fatalf("no line for %s in\n%s", name, out)
		return ""
	}
	if l := find("retried"); !strings.Contains(l, " 404 ") || !strings.Contains(l, "20.0 MB/s") || column(find("TARGET"), l, "ATTEMPTS") != "3" {
		t.Errorf("retried: %q, want 404 files, 20.0 MB/s and 3 attempts", l)
	}
	if l := find("resumed"); strings.Contains(l, "MB/s") {
		t.Errorf("resumed: %q, want no rate from 4 ms of staging", l)
	}
	if !strings.Contains(out, "retried: rename: posix-rename, fsync: main session (the server refuses extra sessions") {
		t.Errorf("the fallback strategy is not shown:\n%s", out)
	}
	if strings.Contains(out, "resumed: rename") {
		t.Errorf("a target on the defaults shows a strategy line:\n%s", out)
	}
}

// column returns the value of the named column in row, by where header
// places it (the table is aligned with spaces).
func column(header, row, name string) string {
	i := strings.Index(header, name)
	if i < 0 || i >= len(row) {
		return ""
	}
	f := strings.Fields(row[i:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
