package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
)

func requireOK(t *testing.T, results []publisher.Result, seq int64) {
	t.Helper()
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Target, r.Err)
		}
		if r.Ack == nil || r.Ack.Seq != seq {
			t.Fatalf("%s: acked %+v, want cut %d", r.Target, r.Ack, seq)
		}
	}
}

// Three real sshd targets (one chrooted, as difusores often configure) get
// five successive cuts; after each, every webroot equals the cut byte for
// byte and the local state mirrors the acks.
func TestPushFiveCutsToThreeTargets(t *testing.T) {
	e := newEnv(t, 3, sshdtest.Options{}, sshdtest.Options{Chroot: true}, sshdtest.Options{NoExec: true})
	eng := e.engine()
	for k := 1; k <= 5; k++ {
		ci := e.nextCut()
		results := eng.Push(context.Background(), e.specs())
		requireOK(t, results, ci.Seq)
		for _, s := range e.servers {
			e.checkTarget(s.WebRoot(), ci.Seq)
		}
		m, _, _ := e.store.Manifest(ci.Seq)
		for _, r := range results {
			if k == 1 {
				continue
			}
			// Bandwidth accounting: exactly the delta's payload was sent.
			if r.Bytes != ci.DeltaBytes || r.Files != ci.DeltaFiles {
				t.Errorf("cut %d, %s: sent %d bytes in %d files, delta is %d bytes in %d files", k, r.Target, r.Bytes, r.Files, ci.DeltaBytes, ci.DeltaFiles)
			}
		}
		acks, err := e.db.Acks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range e.targets {
			if a := acks[tg.Name()]; a.Seq != ci.Seq || a.ManifestSHA256 != ci.ManifestSHA256 {
				t.Errorf("local ack of %s = %+v, want cut %d", tg.Name(), a, ci.Seq)
			}
		}
		_ = m
	}
	// Pushing again when every target holds the latest cut sends nothing.
	for _, r := range eng.Push(context.Background(), e.specs()) {
		if r.Err != nil || r.Bytes != 0 {
			t.Errorf("%s: idle push sent %d bytes (%v)", r.Target, r.Bytes, r.Err)
		}
	}
	// No staging leftovers.
	for _, s := range e.servers {
		if des, _ := os.ReadDir(filepath.Join(s.WebRoot(), ".prepcast", "staging")); len(des) != 0 {
			t.Errorf("%s: staging not empty: %d entries", s.WebRoot(), len(des))
		}
	}
}

// A target that is down during cuts 2 and 3 fails on its own, costs the
// others nothing, and after it returns gets one combined delta to cut 4.
func TestStoppedTargetCatchesUpWithOneCombinedDelta(t *testing.T) {
	e := newEnv(t, 3)
	eng := e.engine()
	c1 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c1.Seq)
	down := e.servers[1]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	for k := 2; k <= 3; k++ {
		ci := e.nextCut()
		results := eng.Push(context.Background(), e.specs())
		for i, r := range results {
			if i == 1 {
				if r.Err == nil {
					t.Fatalf("cut %d: stopped target acked", k)
				}
				continue
			}
			if r.Err != nil || r.Ack.Seq != ci.Seq {
				t.Fatalf("cut %d: healthy target %s: %v", k, r.Target, r.Err)
			}
		}
	}
	if err := down.Restart(); err != nil {
		t.Fatal(err)
	}
	c4 := e.nextCut()
	results := eng.Push(context.Background(), e.specs())
	requireOK(t, results, c4.Seq)
	m1, _, _ := e.store.Manifest(1)
	m4, _, _ := e.store.Manifest(4)
	d := packager.ComputeDelta(m1, m4)
	if r := results[1]; r.Files != len(d.Changed) || r.Bytes != d.Bytes() || len(r.Cuts) != 1 {
		t.Errorf("catch-up sent %d files / %d bytes in %d cuts; the combined delta 1->4 is %d files / %d bytes",
			r.Files, r.Bytes, len(r.Cuts), len(d.Changed), d.Bytes())
	}
	for _, s := range e.servers {
		e.checkTarget(s.WebRoot(), 4)
	}
	hist, err := e.db.History(context.Background(), "difusor-2", 0)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, a := range hist {
		if a.Result == "failed" {
			failed++
		}
	}
	if failed == 0 {
		t.Error("audit history has no failed attempt for the stopped target")
	}
}

// A target whose host key is not the pinned one is refused with a message
// that shows the key seen, and the others ack.
func TestWrongHostKeyRefused(t *testing.T) {
	e := newEnv(t, 3)
	other := sshdtest.Start(t, sshdtest.Options{})
	// difusor-2 is pinned to another server's key.
	e.targets[1] = e.newTarget("difusor-2", e.servers[1], other.HostKeyLine())
	ci := e.nextCut()
	start := time.Now()
	results := e.engine().Push(context.Background(), e.specs())
	for i, r := range results {
		if i == 1 {
			if r.Err == nil || !targets.IsPermanent(r.Err) {
				t.Fatalf("wrong host key: %v (want a permanent error)", r.Err)
			}
			msg := r.Err.Error()
			if !strings.Contains(msg, "SHA256:") || !strings.Contains(msg, "host_key") {
				t.Errorf("host key error does not show the key seen and how to pin it: %s", msg)
			}
			if r.Attempts != 1 {
				t.Errorf("a permanent error was retried %d times", r.Attempts)
			}
			continue
		}
		if r.Err != nil || r.Ack.Seq != ci.Seq {
			t.Fatalf("%s: %v", r.Target, r.Err)
		}
		e.checkTarget(e.servers[i].WebRoot(), ci.Seq)
	}
	if _, err := os.Stat(filepath.Join(e.servers[1].WebRoot(), "json", "main.json")); err == nil {
		t.Error("something was written to the target with the wrong host key")
	}
	t.Logf("push with one refused target took %v", time.Since(start))
}

// A root the difusor made read-only fails with a clear per-target error and
// leaves nothing partial; the others ack.
func TestReadOnlyRoot(t *testing.T) {
	e := newEnv(t, 2)
	ro := e.servers[1].WebRoot()
	// Root ignores permission bits, so make the directory immutable.
	if out, err := exec.Command("chattr", "+i", ro).CombinedOutput(); err != nil {
		t.Skipf("chattr +i unavailable here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", ro).Run() })
	ci := e.nextCut()
	results := e.engine().Push(context.Background(), e.specs())
	if results[0].Err != nil {
		t.Fatalf("healthy target: %v", results[0].Err)
	}
	e.checkTarget(e.servers[0].WebRoot(), ci.Seq)
	r := results[1]
	if r.Err == nil {
		t.Fatal("read-only root acked")
	}
	if !strings.Contains(r.Err.Error(), "difusor-2") {
		t.Errorf("error does not name the target: %v", r.Err)
	}
	des, _ := os.ReadDir(ro)
	if len(des) != 0 {
		t.Errorf("read-only root has entries: %v", des)
	}
}

// While cuts are pushed, a reader polls json/main.json on the target and
// every file it names: it never sees a missing file or other bytes.
func TestReaderNeverSeesMissingOrWrongFile(t *testing.T) {
	e := newEnv(t, 1)
	eng := e.engine()
	c1 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c1.Seq)
	web := e.servers[0].WebRoot()
	r := startReader(servedSiteCheck(web))
	for k := 2; k <= 8; k++ {
		ci := e.nextCut()
		requireOK(t, eng.Push(context.Background(), e.specs()), ci.Seq)
	}
	r.finish(t, 3)
}

// A per-target limit of N MB/s gives a measured rate within 15 % of N.
func TestPerTargetBandwidthLimit(t *testing.T) {
	e := newEnv(t, 1)
	const limit = 8 << 20 // bytes per second
	// About 24 MB of images: 3 s at the limit.
	big := make([]byte, 24<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	os.MkdirAll(filepath.Join(e.src, "actas"), 0o755)
	os.WriteFile(filepath.Join(e.src, "actas", "big.jpg"), big, 0o644)
	ci := e.nextCut()
	eng := e.engine()
	r := eng.Push(context.Background(), []publisher.TargetSpec{{Target: e.targets[0], Limit: limit}})[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Bytes != ci.Bytes {
		t.Fatalf("sent %d bytes, cut is %d", r.Bytes, ci.Bytes)
	}
	rate := float64(r.Bytes) / r.Wire.Seconds()
	if rate < 0.85*limit || rate > 1.15*limit {
		t.Fatalf("measured %.2f MB/s with a limit of %.2f MB/s", rate/(1<<20), float64(limit)/(1<<20))
	}
	t.Logf("limit %.1f MiB/s, measured %.2f MiB/s over %v", float64(limit)/(1<<20), rate/(1<<20), r.Wire)
}
