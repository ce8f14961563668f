package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/integration/faultproxy"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/status"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// proxiedTarget starts a fault proxy in front of s and returns an SFTP
// target that reaches s through it; both are closed when the test ends.
// The host key is pinned directly, so it does not depend on the address.
func proxiedTarget(t *testing.T, name string, s *sshdtest.Server, opTimeout, keepalive time.Duration) (*sftptarget.Target, *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.Start(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	tg, err := sftptarget.New(sftptarget.Config{Name: name, Address: p.Addr(), User: s.User(), Root: s.Root(),
		IdentityFile: s.ClientKeyPath(), HostKey: s.HostKeyLine(),
		DialTimeout: 5 * time.Second, OpTimeout: opTimeout, Keepalive: keepalive}, zaptest.NewLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg, p
}

// fastRetries makes an engine retry within tens of milliseconds.
func fastRetries(eng *publisher.Engine, attempts int) *publisher.Engine {
	eng.Retry = publisher.RetryPolicy{Attempts: attempts, Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	return eng
}

// servedSiteCheck returns a reader's check of a webroot: json/main.json is
// whole JSON and every file it names is there with the SHA-256 it states.
func servedSiteCheck(web string) func() (string, error) {
	return func() (string, error) {
		data, err := os.ReadFile(filepath.Join(web, "json", "main.json"))
		if err != nil {
			return "", err
		}
		var mj mainJSON
		if err := json.Unmarshal(data, &mj); err != nil {
			return "", fmt.Errorf("main.json is not whole JSON: %w", err)
		}
		for _, p := range sortedKeys(mj.Archivos) {
			b, err := os.ReadFile(filepath.Join(web, filepath.FromSlash(p)))
			if err != nil {
				return "", fmt.Errorf("main.json of %s names a missing file: %w", mj.Corte, err)
			}
			if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != mj.Archivos[p] {
				return "", fmt.Errorf("main.json of %s names %s but the target holds other bytes", mj.Corte, p)
			}
		}
		return mj.Corte, nil
	}
}

// waitSwitches waits up to 2 s for a reader to have seen n cuts.
func waitSwitches(r *pointerReader, n int64) {
	for deadline := time.Now().Add(2 * time.Second); r.switches.Load() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// A link that resets every connection mid-file, attempt after attempt,
// still gets the cut through: each attempt keeps the files staged by the
// ones before, so the push converges while the fault persists. A reader
// of the target never sees a pointer to a missing or partial file.
func TestFaultResetMidFile(t *testing.T) {
	e := newEnv(t, 2)
	// About 1.2 MB of new 20-60 KB images a cut, 4 files in flight: a
	// connection that carries 400 KiB completes a few of them.
	e.gen.imagesPerCut, e.gen.imageMax = 30, 60<<10
	eng := fastRetries(e.engine(), 15)
	eng.FilesInFlight = 4
	c1 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c1.Seq)

	// From cut 2 on, difusor-2 is reached through a link that resets every
	// connection once it has carried 400 KiB to the server: a third of the
	// delta, far more than the SSH handshake.
	const resetAt = 400 << 10
	tg, proxy := proxiedTarget(t, "difusor-2", e.servers[1], 10*time.Second, 2*time.Second)
	proxy.ResetAfter(resetAt)
	c2 := e.nextCut()
	if c2.DeltaBytes < 2*resetAt {
		t.Fatalf("the delta (%d bytes) is too small to be cut twice at %d bytes", c2.DeltaBytes, resetAt)
	}
	web := e.servers[1].WebRoot()
	reader := startReader(servedSiteCheck(web))
	results := eng.Push(context.Background(), e.specs(e.targets[0], tg))
	waitSwitches(reader, 2)
	reader.finish(t, 2)
	requireOK(t, results, c2.Seq)
	r, st := results[1], proxy.Stats()
	// A reset fails the operations in flight; each is tried once more on
	// a new connection (a small file is held whole, so it can be), and an
	// attempt fails only when that fails too: how many attempts it takes
	// depends on where the resets fall.
	if st.Resets < 2 {
		t.Fatalf("the link reset %d connections (the push took %d attempts); want at least 2", st.Resets, r.Attempts)
	}
	// No single connection can carry the delta, so the ack itself shows
	// that connections and attempts kept each other's staged files. Every
	// attempt but the last failed, and the audit history says so.
	hist, err := e.db.History(context.Background(), "difusor-2", 0)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, a := range hist {
		switch {
		case a.Seq != c2.Seq:
		case a.Result == "failed":
			failed++
		}
	}
	if failed != r.Attempts-1 {
		t.Errorf("audit history has %d failed attempts for cut %d, want %d", failed, c2.Seq, r.Attempts-1)
	}
	for _, s := range e.servers {
		e.checkTarget(s.WebRoot(), c2.Seq)
	}
	if des, _ := os.ReadDir(filepath.Join(web, ".prepcast", "staging")); len(des) != 0 {
		t.Errorf("staging not empty after the ack: %d entries", len(des))
	}
	t.Logf("%d connections reset, %d attempts, %d bytes sent for a %d-byte delta, %v",
		st.Resets, r.Attempts, r.Bytes, c2.DeltaBytes, r.Duration)
}

// A difusor that hangs (accepts, answers nothing, never closes) is detected
// within the keepalive and operation timeouts, retried, and reported with a
// retryable timeout; the healthy targets ack without waiting for it, and it
// still serves its previous cut whole. Once it answers again it catches up.
func TestFaultBlackholeDetected(t *testing.T) {
	e := newEnv(t, 3)
	const opTimeout, keepalive = 2 * time.Second, 500 * time.Millisecond
	tg, proxy := proxiedTarget(t, "difusor-3", e.servers[2], opTimeout, keepalive)
	e.targets[2] = tg
	eng := e.engine()
	eng.Retry = publisher.RetryPolicy{Attempts: 3, Base: 100 * time.Millisecond, Max: 300 * time.Millisecond}
	c1 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c1.Seq)

	// A push that starts within the second of the previous ack waits for
	// the server's clock to pass it (publisher/deltastage.go, up to 1 s):
	// both measured pushes start past that second, so they compare.
	pastAckSecond := func() { time.Sleep(1100 * time.Millisecond) }

	// A fault-free cut of the same shape gives the healthy targets' baseline.
	cb := e.nextCut()
	pastAckSecond()
	base := eng.Push(context.Background(), e.specs())
	requireOK(t, base, cb.Seq)

	// The SSH connection to difusor-3 is open and idle when it hangs.
	proxy.Blackhole(true)
	c2 := e.nextCut()
	pastAckSecond()
	start := time.Now()
	results := eng.Push(context.Background(), e.specs())
	took := time.Since(start)
	hung := results[2]
	if hung.Err == nil {
		t.Fatal("the hung target acked")
	}
	if !targets.IsRetryable(hung.Err) || !errors.Is(hung.Err, os.ErrDeadlineExceeded) {
		t.Errorf("hung target: %v; want a retryable timeout", hung.Err)
	}
	if hung.Attempts != eng.Retry.Attempts {
		t.Errorf("hung target: %d attempts, want %d", hung.Attempts, eng.Retry.Attempts)
	}
	if took > 10*time.Second {
		t.Errorf("the push took %v with one target hung; keepalive %v and op timeout %v should bound it", took, keepalive, opTimeout)
	}
	for i, r := range results[:2] {
		if r.Err != nil || r.Ack == nil || r.Ack.Seq != c2.Seq {
			t.Fatalf("healthy %s: %v", r.Target, r.Err)
		}
		if 2*r.Duration > hung.Duration {
			t.Errorf("healthy %s took %v, the hung one %v: held up by it", r.Target, r.Duration, hung.Duration)
		}
		// Within 20 % of its fault-free push (plus 100 ms for timer noise
		// on a shared machine, the pushes being a few tens of ms).
		if limit := base[i].Duration*12/10 + 100*time.Millisecond; r.Duration > limit {
			t.Errorf("healthy %s took %v with a hung neighbour, %v without", r.Target, r.Duration, base[i].Duration)
		}
		e.checkTarget(e.servers[i].WebRoot(), c2.Seq)
	}
	e.checkTarget(e.servers[2].WebRoot(), cb.Seq) // nothing partial served
	v, err := status.Build(context.Background(), status.Source{Store: e.store, DB: e.db,
		Targets: []string{"difusor-1", "difusor-2", "difusor-3"}, MaxLag: 15 * time.Minute}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if top := v.Targets[0]; top.Name != "difusor-3" || top.State != status.StateFailing || !strings.Contains(top.Detail, "timeout") && !strings.Contains(top.Detail, "did not answer") {
		t.Errorf("status does not show the hung target first, failing with its cause: %+v", top)
	}
	t.Logf("hung target failed after %d attempts in %v (%v); healthy ones took %v and %v",
		hung.Attempts, hung.Duration, hung.Err, results[0].Duration, results[1].Duration)

	// Healed. The target reports its last failed dial for a short while
	// before dialling again; enough attempts to outlast that.
	proxy.Blackhole(false)
	eng.Retry.Attempts = 6
	c3 := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), c3.Seq)
	for _, s := range e.servers {
		e.checkTarget(s.WebRoot(), c3.Seq)
	}
}

// A difusor behind a slow WAN link (50 ms round trip, 1 MiB/s) gets every
// cut right.
func TestFaultSlowWAN(t *testing.T) {
	e := newEnv(t, 2)
	tg, proxy := proxiedTarget(t, "difusor-2", e.servers[1], 10*time.Second, 2*time.Second)
	e.targets[1] = tg
	const rate = 1 << 20
	proxy.SetLatency(25 * time.Millisecond)
	proxy.SetBandwidth(rate)
	eng := fastRetries(e.engine(), 3)
	for k := 1; k <= 2; k++ {
		up := proxy.Stats().BytesUp
		ci := e.nextCut()
		results := eng.Push(context.Background(), e.specs())
		requireOK(t, results, ci.Seq)
		for _, s := range e.servers {
			e.checkTarget(s.WebRoot(), ci.Seq)
		}
		// The slow link really carried the cut, at no more than its rate.
		r := results[1]
		if sent := proxy.Stats().BytesUp - up; sent < r.Bytes {
			t.Errorf("cut %d: the link carried %d bytes to the server, the push sent %d", k, sent, r.Bytes)
		}
		if min := time.Duration(float64(r.Bytes) / rate * float64(time.Second)); r.Duration < min {
			t.Errorf("cut %d: %d bytes took %v through a %d B/s link", k, r.Bytes, r.Duration, rate)
		}
		t.Logf("cut %d: %d bytes in %d attempts, %v through the slow link", k, r.Bytes, r.Attempts, r.Duration)
	}
}
