package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/state"
)

var crashTrials = flag.Int("crash.trials", 50, "kill -9 trials in TestCrashConsistency")

// buildPrepcast builds the prepcast command once per test binary.
func buildPrepcast(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "prepcast")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/prepcast/prepcast/cmd/prepcast").CombinedOutput()
	if err != nil {
		t.Fatalf("build prepcast: %v\n%s", err, out)
	}
	return bin
}

// TestCrashConsistency kills "prepcast cycle" with SIGKILL at random moments
// while it pushes to three real sshd targets (one in package mode), and after every kill checks
// what a difusor serves and what the acks say; then one more cycle must
// bring every target to the latest cut.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	bin := buildPrepcast(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "results")
	stateDir := filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dir, "keys")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	var servers []*sshdtest.Server
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nretry: {attempts: 2, base: 1s}\nretention: {cuts: 3, window: 1m}\ntargets:\n",
		src, stateDir, filepath.Join(dir, "keys", "manifest.key"))
	for i := 0; i < 3; i++ {
		s := sshdtest.Start(t, sshdtest.Options{Chroot: i == 2})
		servers = append(servers, s)
		mode := ""
		if i == 1 { // package mode: prepcast apply runs on the server
			mode = fmt.Sprintf(", mode: exec, apply_command: %q", bin+" apply --root "+s.Root()+" --public-key "+filepath.Join(dir, "keys", "manifest.pub"))
		}
		fmt.Fprintf(&b, "  - {name: d%d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s%s}\n",
			i+1, s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root(), mode)
	}
	cfg := filepath.Join(dir, "prepcast.yaml")
	os.WriteFile(cfg, []byte(b.String()), 0o644)
	gen := newTreeGen(7)
	gen.imagesPerCut, gen.imageMax = 40, 200<<10 // cuts of a few MB: pushes last long enough to be killed in
	gen.deltaRows = 20000                        // a 1 MB database changed a little every cut: d1 and d3 stage it from ranges (copy-data)
	cycle := func() *exec.Cmd {
		cmd := exec.Command(bin, "cycle", "--config", cfg)
		cmd.Stdout, cmd.Stderr = nil, nil
		return cmd
	}
	// A first cycle untouched, to learn how long one takes.
	gen.next(t, src)
	start := time.Now()
	if out, err := cycle().CombinedOutput(); err != nil {
		t.Fatalf("first cycle: %v\n%s", err, out)
	}
	full := time.Since(start)
	rng := mrand.New(mrand.NewPCG(2024, 6))
	store, err := packager.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	kills := 0
	for trial := 0; trial < *crashTrials; trial++ {
		if trial%3 == 0 { // a new cut every few trials; the others kill a retry of the same cut
			gen.next(t, src)
		}
		cmd := cycle()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(full + full/2))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++ // killed before it finished
		}
		for i, s := range servers {
			// An apply that had the whole package when its publisher died
			// finishes on its own; the check waits for it.
			unlock := holdApplyLock(t, s.WebRoot())
			checkServed(t, store, s.WebRoot(), fmt.Sprintf("trial %d, d%d", trial, i+1))
			unlock()
		}
		checkLocalState(t, filepath.Join(stateDir, "state.db"), servers, fmt.Sprintf("trial %d", trial))
	}
	// Converge.
	if out, err := cycle().CombinedOutput(); err != nil {
		t.Fatalf("cycle after the kills: %v\n%s", err, out)
	}
	latest, _ := store.Latest()
	m, mb, err := store.Manifest(latest.Seq)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers {
		ack := readAck(t, s.WebRoot())
		if ack == nil || ack.Seq != latest.Seq || ack.Manifest != packager.Hash(mb) {
			t.Fatalf("d%d did not converge to cut %d: %+v", i+1, latest.Seq, ack)
		}
		if err := holds(s.WebRoot(), m); err != nil {
			t.Fatalf("d%d: %v", i+1, err)
		}
	}
	t.Logf("%d trials, %d processes killed mid-cycle (a full cycle took %v); every target converged to cut %d", *crashTrials, kills, full, latest.Seq)
	// The file-mode targets stage the changed database from ranges of the
	// served one: the kills above interrupted that staging too.
	gen.next(t, src)
	out, err := cycle().CombinedOutput()
	if err != nil {
		t.Fatalf("cycle after convergence: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "copied on the difusores' servers") {
		t.Fatalf("no file was staged from ranges of a served file (copy-data):\n%s", out)
	}
}

func readAck(t *testing.T, web string) *publisher.Ack {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(web, ".prepcast", "ack.json"))
	if err != nil {
		return nil
	}
	a, err := publisher.ParseAck(data)
	if err != nil {
		t.Fatalf("%s: ack.json is unreadable after a kill: %v", web, err)
	}
	return a
}

// holds checks that web has every file of m with m's bytes.
func holds(web string, m *packager.Manifest) error {
	for _, e := range m.Entries {
		sha, err := hashes.of(filepath.Join(web, filepath.FromSlash(e.Path)))
		if err != nil {
			return fmt.Errorf("cut %d: %s missing: %v", m.Seq, e.Path, err)
		}
		if sha != e.SHA256 {
			return fmt.Errorf("cut %d: %s holds other bytes", m.Seq, e.Path)
		}
	}
	return nil
}

// hashCache remembers file hashes by path, inode, size and mtime, so that
// checking the same webroots after every kill does not read every image
// again (a file rewritten by rename is a new inode).
type hashCache struct {
	mu sync.Mutex
	m  map[string]string
}

var hashes = &hashCache{m: map[string]string{}}

func (c *hashCache) of(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	var ino uint64
	if st != nil {
		ino = st.Ino
	}
	key := fmt.Sprintf("%s|%d|%d|%d", p, ino, fi.Size(), fi.ModTime().UnixNano())
	c.mu.Lock()
	sha, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return sha, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	sha = hex.EncodeToString(sum[:])
	c.mu.Lock()
	c.m[key] = sha
	c.mu.Unlock()
	return sha, nil
}

// checkServed asserts the guarantees a reader of web relies on:
//   - json/main.json is the pointer of some cut, and every file it names
//     (with its SHA-256) is there with those bytes;
//   - every file of that cut is there, with its bytes or, for a file at a
//     stable path that a newer cut rewrites, the newer cut's bytes (the
//     crash came while that newer cut was being committed, pointer last);
//   - every file at a served path holds bytes some cut published there:
//     nothing partial, no staging file;
//   - the ack names a cut that web holds in the same sense.
func checkServed(t *testing.T, store *packager.Store, web, where string) {
	t.Helper()
	seqs, err := store.Seqs()
	if err != nil {
		t.Fatal(err)
	}
	var manifests []*packager.Manifest
	known := map[string]int64{} // path + sha -> newest cut that has it
	for _, seq := range seqs {
		m, _, err := store.Manifest(seq)
		if err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, m)
		for _, e := range m.Entries {
			known[e.Path+" "+e.SHA256] = m.Seq
		}
	}
	files := walkWebroot(t, web)
	if len(files) == 0 {
		return // nothing published yet
	}
	for p, sha := range files {
		// A per-cut file of a cut already pruned from the local store may
		// still wait out its retention window; anything else unknown is
		// partial or foreign.
		if _, ok := known[p+" "+sha]; !ok && !olderCutFile(p) {
			t.Fatalf("%s: %s at a served path is no cut's file (partial or staging leftover)", where, p)
		}
	}
	ptr, ok := files["json/main.json"]
	if !ok {
		t.Fatalf("%s: files but no json/main.json", where)
	}
	var served *packager.Manifest
	for i := len(manifests) - 1; i >= 0; i-- {
		if e, ok := manifests[i].Lookup("json/main.json"); ok && e.SHA256 == ptr {
			served = manifests[i]
			break
		}
	}
	if served == nil {
		t.Fatalf("%s: main.json is no cut's pointer", where)
	}
	data, err := os.ReadFile(filepath.Join(web, "json", "main.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mj mainJSON
	if err := json.Unmarshal(data, &mj); err != nil {
		t.Fatalf("%s: main.json: %v", where, err)
	}
	for p, want := range mj.Archivos {
		if files[p] != want {
			t.Fatalf("%s: main.json of cut %d names %s, the difusor holds %q", where, served.Seq, p, files[p])
		}
	}
	holdsAtLeast := func(m *packager.Manifest, what string) {
		for _, e := range m.Entries {
			got, ok := files[e.Path]
			if !ok {
				t.Fatalf("%s: %s cut %d, but %s is missing", where, what, m.Seq, e.Path)
			}
			if got != e.SHA256 && known[e.Path+" "+got] <= m.Seq {
				t.Fatalf("%s: %s cut %d, but %s holds bytes of no newer cut", where, what, m.Seq, e.Path)
			}
		}
	}
	holdsAtLeast(served, "main.json names")
	if a := readAck(t, web); a != nil {
		for _, m := range manifests {
			if m.Seq == a.Seq {
				holdsAtLeast(m, "ack.json claims")
			}
		}
	}
}

// holdApplyLock takes the lock "prepcast apply" holds on a webroot (if one
// ever ran there), waiting for a running apply to end.
func holdApplyLock(t *testing.T, web string) func() {
	t.Helper()
	f, err := os.Open(filepath.Join(web, ".prepcast", "apply.lock"))
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// olderCutFile reports whether p is a per-cut path (a cut's JSON directory
// or zip) that may belong to a cut pruned from the local store and still
// wait on the difusor for its retention window.
func olderCutFile(p string) bool {
	return strings.HasPrefix(p, "json/2024") || strings.HasSuffix(p, "_PREP_PUE.zip")
}

// checkLocalState asserts that the state database opens after a kill and
// records no ack that a target does not itself hold.
func checkLocalState(t *testing.T, path string, servers []*sshdtest.Server, where string) {
	t.Helper()
	db, err := state.Open(path)
	if err != nil {
		t.Fatalf("%s: state after a kill: %v", where, err)
	}
	defer db.Close()
	acks, err := db.Acks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range servers {
		local, ok := acks[fmt.Sprintf("d%d", i+1)]
		if !ok {
			continue
		}
		remote := readAck(t, s.WebRoot())
		if remote == nil || local.Seq > remote.Seq {
			t.Fatalf("%s: local state says d%d acked cut %d, the target says %+v", where, i+1, local.Seq, remote)
		}
	}
}
