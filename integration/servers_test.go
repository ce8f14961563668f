package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/nginxtest"
	"github.com/prepcast/prepcast/integration/servers"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/state"
)

// renameFallbackOptIn is the target config (YAML flow fields, without
// braces) that opts in to the remove-then-rename fallback on servers
// without posix-rename.
const renameFallbackOptIn = "allow_non_atomic_replace: true"

// matrixEnv selects the servers TestServerMatrix runs: unset or "quick"
// the quick ones (one OpenSSH set-up and ProFTPD, a few seconds each),
// "full" every one (CI), or a comma-separated list of names.
const matrixEnv = "PREPCAST_SERVER_MATRIX"

// matrixRetention is the retention window of the matrix's config: long
// enough that files retired by one push outlive the next few pushes of a
// test, short enough to wait out.
const matrixRetention = 2 * time.Second

func matrixSpecs(t *testing.T) []servers.Spec {
	t.Helper()
	all := servers.Specs()
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	switch v := strings.TrimSpace(os.Getenv(matrixEnv)); v {
	case "", "quick":
		var quick []servers.Spec
		for _, s := range all {
			if s.Quick {
				quick = append(quick, s)
			}
		}
		return quick
	case "full":
		return all
	default:
		var out []servers.Spec
		for _, name := range strings.Split(v, ",") {
			s, ok := servers.Lookup(strings.TrimSpace(name))
			if !ok {
				t.Fatalf("%s=%q: no server %q; use quick, full or names among %s", matrixEnv, v, name, strings.Join(names, ", "))
			}
			out = append(out, s)
		}
		return out
	}
}

// TestServerMatrix runs one suite against every real SFTP server that
// difusores run (integration/servers), through the prepcast command as an
// operator runs it: a full push, an incremental cut that sends only its
// delta, the pointer switched last (checked after every push and by
// readers racing the pushes, on the filesystem and through nginx), files
// retired only after the retention window, and nginx, running as another
// user, serving byte for byte the signed cut.
func TestServerMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real SFTP servers")
	}
	specs := matrixSpecs(t)
	bin := buildPrepcast(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if out, err := exec.Command(bin, "keygen", "--out", keys).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	pub, err := packager.LoadPublicKey(filepath.Join(keys, "manifest.pub"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var summary []string
	for _, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			var run *matrixRun
			t.Cleanup(func() {
				mu.Lock()
				defer mu.Unlock()
				result := "pass"
				switch {
				case t.Failed():
					result = "FAIL"
				case t.Skipped():
					result = "skip"
				}
				line := fmt.Sprintf("%-26s %-5s %5.1fs", spec.Name, result, time.Since(start).Seconds())
				if run != nil {
					line += "  " + strings.Join(append(run.steps, run.notes...), " ")
				}
				summary = append(summary, line)
			})
			run = newMatrixRun(t, bin, filepath.Join(keys, "manifest.key"), pub, spec)
			run.suite()
		})
	}
	t.Cleanup(func() {
		slices.Sort(summary)
		t.Logf("server matrix (%s=%s):\n%s", matrixEnv, os.Getenv(matrixEnv), strings.Join(summary, "\n"))
	})
}

// matrixRun is one server of the matrix and the prepcast set-up that
// publishes to it.
type matrixRun struct {
	t      *testing.T
	bin    string
	cfg    string
	src    string
	state  string
	spec   servers.Spec
	srv    *servers.Server
	web    *nginxtest.Server // nil when modes are not checked
	store  *packager.Store
	pub    ed25519.PublicKey
	gen    *treeGen
	served bool // the site is checked through nginx (modes are prepcast's)
	notes  []string
	steps  []string // "name:result(seconds)" per step run
}

// note adds a measurement to the server's line in the matrix summary.
func (m *matrixRun) note(s string) { m.notes = append(m.notes, s) }

func newMatrixRun(t *testing.T, bin, signingKey string, pub ed25519.PublicKey, spec servers.Spec) *matrixRun {
	t.Helper()
	srv := servers.Start(t, spec)
	t.Logf("%s on %s: %s", spec.Name, srv.Addr, spec.Setup)
	dir := t.TempDir()
	m := &matrixRun{t: t, bin: bin, spec: spec, srv: srv, pub: pub, gen: newTreeGen(16),
		src: filepath.Join(dir, "results"), state: filepath.Join(dir, "state"), cfg: filepath.Join(dir, "prepcast.yaml")}
	m.served = true
	url := ""
	if m.served {
		m.web = nginxtest.Start(t, nginxtest.Options{Root: srv.WebRoot})
		url = ", url: " + m.web.URL
	}
	extra := ""
	if spec.Has(servers.NoPosixRename) && renameFallbackOptIn != "" {
		extra = ", " + renameFallbackOptIn
	}
	if err := os.MkdirAll(m.src, 0o755); err != nil {
		t.Fatal(err)
	}
	// A push reads back for at most 2 s: MySecureShell sends at 5 KB/s.
	conf := fmt.Sprintf(`source: %s
state_dir: %s
signing_key: %s
retention: {cuts: 3, window: %s}
retry: {attempts: 2, base: 200ms, max: 1s}
timeouts: {dial: 5s, operation: 20s, keepalive: 5s, cycle: 2m}
verify: {time_per_push: 2s}
targets:
  - {name: difusor, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s, file_mode: "0644", dir_mode: "0755"%s%s}
`, m.src, m.state, signingKey, matrixRetention, srv.Addr, srv.User, srv.ClientKey, srv.HostKey, srv.Root, url, extra)
	if err := os.WriteFile(m.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// suite runs the steps in order; a failed step ends the run, since the
// next ones build on it.
func (m *matrixRun) suite() {
	t := m.t
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"target-contract", m.targetContract},
		{"full-push", m.fullPush},
		{"served", func(t *testing.T) { m.checkSite(t, m.latest(t)) }},
		{"incremental", m.incremental},
		{"after-failed-push", m.afterFailedPush},
		{"reader-race", m.readerRace},
		{"retention", m.retention},
		{"served-final", func(t *testing.T) { m.checkSite(t, m.latest(t)) }},
	}
	for _, s := range steps {
		begin := time.Now()
		var skipped bool
		ok := t.Run(s.name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			s.run(t)
		})
		result := "ok"
		switch {
		case !ok:
			result = "FAIL"
		case skipped:
			result = "skip"
		}
		m.steps = append(m.steps, fmt.Sprintf("%s:%s(%.1fs)", s.name, result, time.Since(begin).Seconds()))
		if !ok {
			return
		}
	}
}

// cycle runs "prepcast cycle" (cut + push) on the next state of the
// results tree and checks what the difusor holds afterwards.
func (m *matrixRun) cycle(t *testing.T) *packager.CutInfo {
	t.Helper()
	m.gen.next(t, m.src)
	start := time.Now()
	out, err := exec.Command(m.bin, "cycle", "--config", m.cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("prepcast cycle to %s (%s): %v after %v\n%s", m.spec.Name, m.srv.Addr, err, time.Since(start).Round(time.Millisecond), out)
	}
	ci := m.latest(t)
	m.checkHolds(t, ci.Seq)
	return ci
}

func (m *matrixRun) latest(t *testing.T) *packager.CutInfo {
	t.Helper()
	if m.store == nil {
		st, err := packager.OpenStore(m.state)
		if err != nil {
			t.Fatal(err)
		}
		m.store = st
	}
	ci, err := m.store.Latest()
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// lastAttempt returns the newest push attempt recorded in the local state.
func (m *matrixRun) lastAttempt(t *testing.T) state.Attempt {
	t.Helper()
	db, err := state.OpenReadOnly(filepath.Join(m.state, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, err := db.History(context.Background(), "difusor", 1)
	if err != nil || len(h) == 0 {
		t.Fatalf("no push attempt recorded: %v", err)
	}
	return h[0]
}

// checkHolds asserts that the webroot holds cut seq as acked: the ack
// names the signed manifest, every file of the cut has its bytes, nothing
// else is at a served path but files retired inside the window, the
// pointer names only files present with the bytes it gives, and no staged
// file is left.
func (m *matrixRun) checkHolds(t *testing.T, seq int64) {
	t.Helper()
	web := m.srv.WebRoot
	man, mb, sig, err := m.store.VerifiedManifest(seq, m.pub)
	if err != nil {
		t.Fatalf("cut %d: %v", seq, err)
	}
	ack := readAck(t, web)
	if ack == nil || ack.Seq != seq || ack.Manifest != packager.Hash(mb) || ack.Signature != packager.SignatureBase64(sig) {
		t.Fatalf("ack on the difusor is %+v; want cut %d with its manifest's hash and signature", ack, seq)
	}
	if err := holds(web, man); err != nil {
		t.Fatal(err)
	}
	retired := map[string]bool{}
	for _, r := range ack.Retired {
		retired[r.Path] = true
	}
	files := walkWebroot(t, web)
	for p := range files {
		if _, ok := man.Lookup(p); !ok && !retired[p] {
			t.Errorf("%s is at a served path but is neither in cut %d nor retired (staging leftover?)", p, seq)
		}
	}
	if err := checkPointerFS(web); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(filepath.Join(web, ".prepcast", "staging")); len(des) != 0 {
		t.Errorf("%d staged files left in .prepcast/staging after a successful push", len(des))
	}
}

// checkPointerFS reads json/main.json from the webroot and every file it
// names: each must be there, whole, with the SHA-256 the pointer gives.
// It returns the cut id the pointer names.
func checkPointerFS(web string) error {
	_, err := readPointer(func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(web, filepath.FromSlash(p))) })
	return err
}

// errNoPointer is wrapped by readPointer's error when json/main.json
// itself is missing.
var errNoPointer = errors.New("json/main.json is missing")

// readPointer checks json/main.json and the files it names through get
// and returns the cut id it names.
func readPointer(get func(path string) ([]byte, error)) (string, error) {
	data, err := get("json/main.json")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %w", errNoPointer, err)
	}
	if err != nil {
		return "", fmt.Errorf("read json/main.json: %w", err)
	}
	var mj mainJSON
	if err := json.Unmarshal(data, &mj); err != nil {
		return "", fmt.Errorf("json/main.json is not whole JSON: %w", err)
	}
	for _, p := range sortedKeys(mj.Archivos) {
		b, err := get(p)
		if err != nil {
			return "", fmt.Errorf("json/main.json of %s names %s: %w", mj.Corte, p, err)
		}
		s := sha256.Sum256(b)
		if hex.EncodeToString(s[:]) != mj.Archivos[p] {
			return "", fmt.Errorf("json/main.json of %s names %s, but other bytes are there (%d bytes)", mj.Corte, p, len(b))
		}
	}
	return mj.Corte, nil
}

// httpGet fetches base+p and returns the body of a 200 answer.
func httpGet(client *http.Client, base, p string) ([]byte, error) {
	resp, err := client.Get(base + p)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("GET /%s: %s: %w", p, resp.Status, fs.ErrNotExist)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /%s: %s", p, resp.Status)
	}
	return body, nil
}

// fullPush publishes the first cut to the empty webroot.
func (m *matrixRun) fullPush(t *testing.T) {
	ci := m.cycle(t)
	a := m.lastAttempt(t)
	if a.Result != state.ResultOK || a.Seq != ci.Seq || a.Bytes != ci.Bytes || a.Files != ci.Files {
		t.Errorf("full push recorded %s for cut %d, %d bytes in %d files; the cut is %d, %d bytes in %d files",
			a.Result, a.Seq, a.Bytes, a.Files, ci.Seq, ci.Bytes, ci.Files)
	}
}

// incremental pushes the next cut: only its delta is sent, and a file the
// cut did not change is left alone on the difusor (same inode).
func (m *matrixRun) incremental(t *testing.T) {
	before := m.latest(t)
	prev, _, err := m.store.Manifest(before.Seq)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]uint64{}
	for _, e := range prev.Entries {
		inodes[e.Path] = inode(t, filepath.Join(m.srv.WebRoot, filepath.FromSlash(e.Path)))
	}
	ci := m.cycle(t)
	a := m.lastAttempt(t)
	if a.Result != state.ResultOK || a.Bytes != ci.DeltaBytes || a.Files != ci.DeltaFiles {
		t.Errorf("incremental push recorded %s, %d bytes in %d files; the delta is %d bytes in %d files",
			a.Result, a.Bytes, a.Files, ci.DeltaBytes, ci.DeltaFiles)
	}
	cur, _, err := m.store.Manifest(ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := 0
	for _, e := range cur.Entries {
		old, ok := prev.Lookup(e.Path)
		if !ok || old.SHA256 != e.SHA256 {
			continue
		}
		unchanged++
		if got := inode(t, filepath.Join(m.srv.WebRoot, filepath.FromSlash(e.Path))); got != inodes[e.Path] {
			t.Errorf("%s did not change in cut %d but was rewritten on the difusor", e.Path, ci.Seq)
		}
	}
	if unchanged == 0 {
		t.Fatal("the cut changed every file; the test checks nothing")
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// readerRace pushes four cuts while readers fetch json/main.json and every
// file it names, from the filesystem and (where modes are prepcast's)
// through nginx: never a missing, partial or refused file. On a server
// without posix-rename, prepcast replaces main.json by removing it and
// renaming the new one into place, so a reader may find main.json itself
// missing for a moment; the longest such gap is measured, reported and
// bounded, and every file a pointer names must still be there, whole.
func (m *matrixRun) readerRace(t *testing.T) {
	web := m.srv.WebRoot
	gaps := &pointerGaps{allowed: m.spec.Has(servers.NoPosixRename)}
	readers := []*pointerReader{startReader(gaps.check("filesystem", func(p string) ([]byte, error) {
		return os.ReadFile(filepath.Join(web, filepath.FromSlash(p)))
	}))}
	if m.served {
		client := &http.Client{Timeout: 5 * time.Second}
		readers = append(readers, startReader(gaps.check("nginx", func(p string) ([]byte, error) {
			return httpGet(client, m.web.URL, p)
		})))
	}
	defer func() {
		for _, r := range readers {
			r.stop.Store(true)
			r.wg.Wait()
		}
	}()
	for range 4 {
		m.cycle(t)
	}
	for _, r := range readers {
		r.finish(t, 3)
	}
	if gaps.allowed {
		n, longest := gaps.result()
		t.Logf("json/main.json was missing %d times during the replaces, for at most %v (remove, then rename)", n, longest)
		m.note(fmt.Sprintf("main.json gap %d× ≤%v", n, longest.Round(100*time.Microsecond)))
		if longest > maxPointerGap {
			t.Errorf("json/main.json was missing for %v at once; the remove-then-rename fallback should keep it under %v", longest, maxPointerGap)
		}
	}
}

// maxPointerGap bounds how long json/main.json may be missing while the
// fallback for servers without posix-rename replaces it: a remove and a
// rename back to back, two round trips on loopback, with room for a
// loaded machine.
const maxPointerGap = 500 * time.Millisecond

// pointerGaps measures, across readers, the times json/main.json itself
// was found missing (allowed only on servers without posix-rename).
type pointerGaps struct {
	allowed bool
	mu      sync.Mutex
	n       int
	longest time.Duration
}

// check returns a reader's check: readPointer through get, where a
// missing main.json is a gap (if allowed) that lasts until it is back.
func (g *pointerGaps) check(via string, get func(string) ([]byte, error)) func() (string, error) {
	var gapStart time.Time
	last := ""
	return func() (string, error) {
		time.Sleep(time.Millisecond) // leave the CPU to the servers
		key, err := readPointer(get)
		now := time.Now()
		switch {
		case err == nil:
			if !gapStart.IsZero() {
				g.add(now.Sub(gapStart))
				gapStart = time.Time{}
			}
			last = key
			return key, nil
		case g.allowed && errors.Is(err, errNoPointer):
			if gapStart.IsZero() {
				gapStart = now
			}
			return last, nil
		default:
			return "", fmt.Errorf("%s: %w", via, err)
		}
	}
}

func (g *pointerGaps) add(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	g.longest = max(g.longest, d)
}

func (g *pointerGaps) result() (int, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n, g.longest
}

// retention checks that the files the last push retired are still there
// and served (a visitor who loaded the previous json/main.json can fetch
// them), and that every retired file is deleted by the first push after
// its retention window.
func (m *matrixRun) retention(t *testing.T) {
	ack := readAck(t, m.srv.WebRoot)
	if ack == nil || len(ack.Retired) == 0 {
		t.Fatalf("the last push retired nothing; the generator removes a zip and a JSON directory every cut")
	}
	var client *http.Client
	if m.served {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	// The files the last push retired carry the newest Since (kept to the
	// second): no push ran since, and the window is longer than a second,
	// so they must all be there. Older entries may already be gone.
	var newest time.Time
	for _, r := range ack.Retired {
		if r.Since.After(newest) {
			newest = r.Since
		}
	}
	for _, r := range ack.Retired {
		if !r.Since.Equal(newest) {
			continue
		}
		if _, err := os.Stat(filepath.Join(m.srv.WebRoot, filepath.FromSlash(r.Path))); err != nil {
			t.Errorf("%s retired at %v is gone inside the %v window: %v", r.Path, r.Since, matrixRetention, err)
		}
		if client != nil {
			if _, err := httpGet(client, m.web.URL, r.Path); err != nil {
				t.Errorf("retired %s is not served inside the window: %v", r.Path, err)
			}
		}
	}
	if wait := time.Until(newest.Add(matrixRetention + time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	ci := m.cycle(t)
	cur, _, err := m.store.Manifest(ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ack.Retired {
		if _, ok := cur.Lookup(r.Path); ok {
			continue
		}
		_, err := os.Stat(filepath.Join(m.srv.WebRoot, filepath.FromSlash(r.Path)))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s retired at %v is still on the difusor after the window (%v)", r.Path, r.Since, err)
		}
	}
}

// checkSite fetches every file of cut ci through nginx, running as another
// user, and compares it with the signed manifest; the files and
// directories prepcast wrote must have file_mode and dir_mode.
func (m *matrixRun) checkSite(t *testing.T, ci *packager.CutInfo) {
	if !m.served {
		t.Skipf("%s creates files unreadable by the web server (%s) and prepcast does not yet set file_mode/dir_mode before commit (issue 16)",
			m.spec.Name, servers.RestrictiveModes)
	}
	man, _, _, err := m.store.VerifiedManifest(ci.Seq, m.pub)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, e := range man.Entries {
		body, err := httpGet(client, m.web.URL, e.Path)
		if err != nil {
			t.Fatalf("nginx serving %s: %v", m.srv.WebRoot, err)
		}
		if s := sha256.Sum256(body); hex.EncodeToString(s[:]) != e.SHA256 || int64(len(body)) != e.Size {
			t.Fatalf("nginx serves %s with other bytes than the signed cut %d", e.Path, ci.Seq)
		}
	}
	if _, err := readPointer(func(p string) ([]byte, error) { return httpGet(client, m.web.URL, p) }); err != nil {
		t.Fatal(err)
	}
	web := m.srv.WebRoot
	err = filepath.WalkDir(web, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(web, p)
		switch {
		case rel == ".":
			return nil // the difusor's own directory
		case rel == ".prepcast":
			return filepath.SkipDir // not served
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = 0o755
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o (file_mode/dir_mode)", rel, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
