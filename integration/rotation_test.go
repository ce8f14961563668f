package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/status"
)

// TestFaultSameSizeChangeFoundByRotation alters an acta image on a real
// sshd difusor without changing its size (nothing but its bytes tells) and
// checks that the rotating verification, each push by a new Engine sharing
// only the state database (as cron runs a new process per cycle), finds it
// and repairs it within the pushes its budget promises (period/every), and
// that status shows the mismatch and the repair.
func TestFaultSameSizeChangeFoundByRotation(t *testing.T) {
	e := newEnv(t, 1)
	e.gen.imagesPerCut = 20
	var ci = e.nextCut()
	for range 2 {
		ci = e.nextCut()
	}
	budget := publisher.VerifyBudget{Period: 2 * time.Hour, Every: 10 * time.Minute} // 12 pushes per round
	push := func() publisher.Result {
		eng := e.engine()
		eng.Rotation = budget
		r := eng.Push(context.Background(), e.specs())[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r
	}
	push()
	m, _, _ := e.store.Manifest(ci.Seq)
	// The last image in path order: the rotation reaches it late.
	var img string
	for _, ent := range m.Entries {
		if strings.HasSuffix(ent.Path, ".jpg") {
			img = ent.Path
		}
	}
	web := e.servers[0].WebRoot()
	p := filepath.Join(web, filepath.FromSlash(img))
	orig, _ := os.ReadFile(p)
	forged := bytes.Clone(orig)
	copy(forged[len(forged)/2:], "MANIPULADA")
	os.WriteFile(p, forged, 0o644)

	rounds := int(budget.Period / budget.Every)
	found, checked := 0, 0
	for n := 1; n <= rounds && found == 0; n++ {
		r := push()
		checked += r.Verified
		if len(r.Repaired) > 0 {
			if strings.Join(r.Repaired, ",") != img {
				t.Fatalf("push %d repaired %v, want %s", n, r.Repaired, img)
			}
			found = n
		}
	}
	if found == 0 {
		t.Fatalf("a same-size change of %s was not found within %d pushes (%d files of %d checked)", img, rounds, checked, len(m.Entries))
	}
	t.Logf("found and repaired at push %d of the %d the budget allows (%d files of %d read back)", found, rounds, checked, len(m.Entries))
	if got, _ := os.ReadFile(p); !bytes.Equal(got, orig) {
		t.Fatal("the image was not restored to its signed bytes")
	}
	e.checkTarget(web, ci.Seq)
	v, err := status.Build(context.Background(), status.Source{Store: e.store, DB: e.db, Targets: []string{"difusor-1"}, MaxLag: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vr := v.Targets[0].Verify
	if vr == nil || vr.Mismatches != 1 || strings.Join(vr.Repaired, ",") != img || !strings.Contains(v.Targets[0].Detail, "verify: 1 repaired") {
		t.Errorf("status after the repair: %+v, detail %q", vr, v.Targets[0].Detail)
	}
}

// TestFaultReconcileSameSizeOnSSHD: a difusor whose ack is garbage holds a
// file of the cut at the right size with other bytes; reconciling it by
// listing sends that file again instead of accepting it by its size.
func TestFaultReconcileSameSizeOnSSHD(t *testing.T) {
	e := newEnv(t, 1)
	e.nextCut()
	eng := e.engine()
	requireOK(t, eng.Push(context.Background(), e.specs()), 1)
	m, _, _ := e.store.Manifest(1)
	var img string
	for _, ent := range m.Entries {
		if strings.HasSuffix(ent.Path, ".jpg") {
			img = ent.Path
			break
		}
	}
	web := e.servers[0].WebRoot()
	p := filepath.Join(web, filepath.FromSlash(img))
	orig, _ := os.ReadFile(p)
	forged := bytes.Clone(orig)
	forged[0] ^= 0xff
	os.WriteFile(p, forged, 0o644)
	os.WriteFile(filepath.Join(web, ".prepcast", "ack.json"), []byte("{garbage"), 0o644)
	ci := e.nextCut()
	results := eng.Push(context.Background(), e.specs())
	requireOK(t, results, ci.Seq)
	if !results[0].Reconciled {
		t.Fatal("not reconciled")
	}
	m2, _, _ := e.store.Manifest(ci.Seq)
	if err := holds(web, m2); err != nil {
		t.Fatalf("after reconciling: %v", err)
	}
}

// rusageEnv, when set, makes this test binary a small wrapper that runs the
// command in its arguments after "--" and writes the command's peak RSS
// (bytes) to file descriptor 3 (see peakRSS).
const rusageEnv = "PREPCAST_TEST_RUSAGE_WRAPPER"

func init() {
	if os.Getenv(rusageEnv) == "" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	c := exec.Command(args[0], args[1:]...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	c.Run()
	ru, _ := c.ProcessState.SysUsage().(*syscall.Rusage)
	report := os.NewFile(3, "rusage")
	if ru != nil {
		fmt.Fprintf(report, "%d\n", ru.Maxrss<<10) // kilobytes on Linux
	}
	report.Close()
	os.Exit(c.ProcessState.ExitCode())
}

// peakRSS runs the command and returns its peak resident set in bytes and
// its error. The kernel counts in a child's peak the parent's resident set
// at the fork (Go forks sharing the parent's memory until exec, and exec
// records the old address space's high-water mark), so the command is
// started by a fresh copy of this test binary, before any test ran, whose
// own few MB are the only floor.
func peakRSS(t *testing.T, stdout, stderr *bytes.Buffer, name string, args ...string) (int64, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{"-test.run=^$", "--", name}, args...)...)
	cmd.Env = append(os.Environ(), rusageEnv+"=1")
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = stdout, stderr, []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var rss int64
	fmt.Fscan(r, &rss)
	err = cmd.Wait()
	if rss == 0 {
		t.Fatalf("no peak RSS reported for %s %v", name, args)
	}
	return rss, err
}

// TestStatusProbeMemoryOnHostileAck runs the built prepcast's "status
// --probe" against a real sshd difusor whose ack.json is a 600 MB file, and
// then a link to /dev/zero, and measures the process's peak RSS (rusage
// Maxrss): it must stay under 100 MB and return promptly, with an error
// naming the difusor and the file.
func TestStatusProbeMemoryOnHostileAck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds prepcast")
	}
	bin := buildPrepcast(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "results")
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dir, "keys")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	s := sshdtest.Start(t, sshdtest.Options{})
	cfg := filepath.Join(dir, "prepcast.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("source: %s\nstate_dir: %s\nsigning_key: %s\ntargets:\n  - {name: d1, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s}\n",
		src, filepath.Join(dir, "state"), filepath.Join(dir, "keys", "manifest.key"), s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root())), 0o644)
	newTreeGen(3).next(t, src)
	if out, err := exec.Command(bin, "cycle", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("cycle: %v\n%s", err, out)
	}
	var sink bytes.Buffer
	if floor, err := peakRSS(t, &sink, &sink, "/bin/true"); err == nil {
		t.Logf("floor of the measurement (the wrapper's own peak, with /bin/true): %.1f MB", float64(floor)/1e6)
	}
	ack := filepath.Join(s.WebRoot(), ".prepcast", "ack.json")
	for _, kind := range []string{"600 MB ack.json", "ack.json -> /dev/zero"} {
		os.Remove(ack)
		if strings.HasPrefix(kind, "600") {
			// Sparse: 600 MB for the SFTP server, no disk for the test.
			f, err := os.Create(ack)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(600 << 20)
			f.Close()
		} else if err := os.Symlink("/dev/zero", ack); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		start := time.Now()
		rss, err := peakRSS(t, &out, &errOut, bin, "status", "--probe", "--json", "--config", cfg)
		took := time.Since(start)
		t.Logf("%s: status --probe peak RSS %.1f MB, %v, exit %v", kind, float64(rss)/1e6, took.Round(time.Millisecond), err)
		if rss > 100e6 {
			t.Errorf("%s: status --probe peak RSS %.1f MB, want at most 100 MB", kind, float64(rss)/1e6)
		}
		if took > 30*time.Second {
			t.Errorf("%s: status --probe took %v", kind, took)
		}
		var v status.View
		if jerr := json.Unmarshal(out.Bytes(), &v); jerr != nil {
			t.Fatalf("%s: status output: %v\n%s\n%s", kind, jerr, out.String(), errOut.String())
		}
		p := v.Targets[0].Probe
		if err == nil || p == nil || p.Agrees || !strings.Contains(p.Error, "d1") || !strings.Contains(p.Error, publisher.AckPath) {
			t.Errorf("%s: exit %v, probe %+v; want a disagreement naming d1 and %s", kind, err, p, publisher.AckPath)
		}
	}
	os.Remove(ack)
}
