// Package integration tests prepcast end to end against real OpenSSH sshd
// targets that the tests start on 127.0.0.1 (see integration/sshdtest).
package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// env is a publisher with a results tree, a store and real sshd targets.
type env struct {
	t       *testing.T
	src     string
	store   *packager.Store
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	db      *state.DB
	servers []*sshdtest.Server
	targets []*sftptarget.Target
	gen     *treeGen
}

func newEnv(t *testing.T, n int, opts ...sshdtest.Options) *env {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	stateDir := t.TempDir()
	st, err := packager.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(stateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, src: t.TempDir(), store: st, pub: pub, priv: priv, db: db, gen: newTreeGen(1)}
	for i := 0; i < n; i++ {
		var o sshdtest.Options
		if i < len(opts) {
			o = opts[i]
		}
		s := sshdtest.Start(t, o)
		e.servers = append(e.servers, s)
		e.targets = append(e.targets, e.newTarget(fmt.Sprintf("difusor-%d", i+1), s, s.HostKeyLine()))
	}
	return e
}

func (e *env) newTarget(name string, s *sshdtest.Server, hostKey string) *sftptarget.Target {
	e.t.Helper()
	tg, err := sftptarget.New(sftptarget.Config{Name: name, Address: s.Addr(), User: s.User(), Root: s.Root(),
		IdentityFile: s.ClientKeyPath(), HostKey: hostKey,
		DialTimeout: 5 * time.Second, OpTimeout: 10 * time.Second, Keepalive: 2 * time.Second}, zaptest.NewLogger(e.t).Named(name))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { tg.Close() })
	return tg
}

func (e *env) engine() *publisher.Engine {
	return &publisher.Engine{Store: e.store, PublicKey: e.pub, DB: e.db, Log: zaptest.NewLogger(e.t), Publisher: "test",
		Retry: publisher.RetryPolicy{Attempts: 3, Base: 300 * time.Millisecond, Max: time.Second}, CycleTimeout: time.Minute,
		RetentionWindow: time.Hour}
}

func (e *env) specs(ts ...targets.Target) []publisher.TargetSpec {
	if len(ts) == 0 {
		for _, t := range e.targets {
			ts = append(ts, t)
		}
	}
	out := make([]publisher.TargetSpec, len(ts))
	for i, t := range ts {
		out[i] = publisher.TargetSpec{Target: t}
	}
	return out
}

// nextCut moves the results tree to its next cut and cuts it.
func (e *env) nextCut() *packager.CutInfo {
	e.t.Helper()
	e.gen.next(e.t, e.src)
	res, err := e.store.Cut(context.Background(), packager.CutOptions{Source: e.src, Key: e.priv, Pointers: []string{"json/main.json"}, Keep: 10, Package: true})
	if err != nil {
		e.t.Fatalf("cut: %v", err)
	}
	return res.Info
}

// checkTarget asserts that webroot holds cut seq exactly: every file of the
// manifest with the manifest's SHA-256, nothing else but files retired in
// the ack, no staging leftovers at a served path, and an ack for the cut.
func (e *env) checkTarget(webroot string, seq int64) {
	e.t.Helper()
	m, mb, _ := e.store.Manifest(seq)
	data, err := os.ReadFile(filepath.Join(webroot, ".prepcast", "ack.json"))
	if err != nil {
		e.t.Fatalf("%s: no ack: %v", webroot, err)
	}
	ack, err := publisher.ParseAck(data)
	if err != nil {
		e.t.Fatal(err)
	}
	if ack.Seq != seq || ack.Manifest != packager.Hash(mb) {
		e.t.Fatalf("%s: ack for cut %d (%.12s), want %d (%.12s)", webroot, ack.Seq, ack.Manifest, seq, packager.Hash(mb))
	}
	if ack.Signature != packager.SignatureBase64(mustSig(e.t, e.store, seq)) {
		e.t.Errorf("%s: ack signature is not the cut's", webroot)
	}
	// The acked cut's signed manifest is published, byte for byte.
	if pub, err := os.ReadFile(filepath.Join(webroot, filepath.FromSlash(packager.ProofManifestPath(seq, packager.Hash(mb))))); err != nil || string(pub) != string(mb) {
		e.t.Errorf("%s: cut %d's signed manifest is not published as signed: %v", webroot, seq, err)
	}
	retired := map[string]bool{}
	for _, r := range ack.Retired {
		retired[r.Path] = true
	}
	got := walkWebroot(e.t, webroot)
	for _, ent := range m.Entries {
		if got[ent.Path] != ent.SHA256 {
			e.t.Fatalf("%s: %s has sha %.12s, manifest says %.12s", webroot, ent.Path, got[ent.Path], ent.SHA256)
		}
		delete(got, ent.Path)
	}
	for p := range got {
		if !retired[p] {
			e.t.Errorf("%s: unexpected file %s (not in cut %d, not retired)", webroot, p, seq)
		}
	}
}

func mustSig(t *testing.T, s *packager.Store, seq int64) []byte {
	sig, err := s.Signature(seq)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// walkWebroot returns path -> sha256 of every file below root outside
// .prepcast and the published proof (hashes are cached by inode, size and
// mtime across calls).
func walkWebroot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if fi.IsDir() {
			if rel == ".prepcast" || rel == packager.ProofDir {
				return filepath.SkipDir
			}
			return nil
		}
		sha, err := hashes.of(p)
		out[rel] = sha
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeGen writes a PREP-shaped results tree cut after cut: new acta images
// (never rewritten), rewritten CSV databases at stable paths, a JSON tree
// under a directory per cut, a per-cut zip, and json/main.json naming the
// cut's JSON files with their SHA-256 (so a reader can verify them).
type treeGen struct {
	rng          *mrand.Rand
	cut          int
	images       int
	imagesPerCut int // default 6
	imageMax     int // largest image in bytes, default 120 KB
	deltaRows    int // rows of a large database changed a little every cut (filedelta_test.go); 0: none
}

func newTreeGen(seed uint64) *treeGen { return &treeGen{rng: mrand.New(mrand.NewPCG(seed, 3))} }

type mainJSON struct {
	Corte    string            `json:"corte"`
	Archivos map[string]string `json:"archivos"` // path -> sha256
}

func (g *treeGen) next(t *testing.T, root string) {
	t.Helper()
	g.cut++
	id := fmt.Sprintf("20240602_%04d", 2000+g.cut)
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	// New acta images: incompressible, 20-120 KB.
	perCut, maxImg := g.imagesPerCut, g.imageMax
	if perCut == 0 {
		perCut = 6
	}
	if maxImg == 0 {
		maxImg = 120 << 10
	}
	for i := 0; i < perCut; i++ {
		g.images++
		img := make([]byte, 20<<10+g.rng.IntN(maxImg-20<<10))
		for j := range img {
			img[j] = byte(g.rng.Uint32())
		}
		write(fmt.Sprintf("actas/GUB/Gubernatura_%03d_PUEBLA_%04d_B01.jpg", g.images%26+1, g.images), img)
	}
	// CSV databases rewritten every cut.
	for _, e := range []string{"GUB", "DIP_LOC", "AYUN"} {
		var b strings.Builder
		b.WriteString("\ufeff" + e + "\n02/06/2024 " + id[9:11] + ":" + id[11:] + " (UTC-6)\n\n")
		for r := 0; r < 200+g.cut*10; r++ {
			fmt.Fprintf(&b, "'21%04dB0100,%d,%d,SIN DATO\n", r, g.rng.IntN(400), g.rng.IntN(400))
		}
		write("datos/PUE_"+e+"_2024.csv", []byte(b.String()))
	}
	g.writeDeltaCSV(write)
	// Per-cut zip; the previous one disappears from the tree.
	if g.cut > 1 {
		os.Remove(filepath.Join(root, fmt.Sprintf("datos/20240602_%04d_PREP_PUE.zip", 2000+g.cut-1)))
	}
	write(fmt.Sprintf("datos/%s_PREP_PUE.zip", id), []byte("PK\x03\x04"+id))
	// The site's JSON for this cut, in its own directory; older ones leave the tree.
	if g.cut > 1 {
		os.RemoveAll(filepath.Join(root, "json", fmt.Sprintf("20240602_%04d", 2000+g.cut-1)))
	}
	mj := mainJSON{Corte: id, Archivos: map[string]string{}}
	for _, name := range []string{"GUB/totales.json", "DIP_LOC/totales.json", "AYUN/totales.json", "GUB/distritos.json"} {
		data := []byte(fmt.Sprintf(`{"corte":%q,"votos":%d}`, id, g.rng.IntN(100000)))
		rel := "json/" + id + "/" + name
		write(rel, data)
		s := sha256.Sum256(data)
		mj.Archivos[rel] = hex.EncodeToString(s[:])
	}
	data, _ := json.Marshal(mj)
	write("json/main.json", data)
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

// pointerReader is a reader of a difusor's site that checks it in a loop
// while pushes run.
type pointerReader struct {
	stop     atomic.Bool
	reads    atomic.Int64
	switches atomic.Int64 // distinct cuts seen, the first one included
	wg       sync.WaitGroup
	errc     chan error
}

// startReader calls check in a loop until stopped. check reads the pointer
// and every file it names and returns a key of the cut it saw (or an
// error, which ends the loop and fails the test at stop).
func startReader(check func() (string, error)) *pointerReader {
	r := &pointerReader{errc: make(chan error, 1)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		last := ""
		for !r.stop.Load() {
			key, err := check()
			if err != nil {
				r.errc <- err
				return
			}
			if key != last {
				r.switches.Add(1)
				last = key
			}
			r.reads.Add(1)
		}
	}()
	return r
}

// finish stops the reader and fails the test if it saw anything wrong or
// did not see at least minCuts cuts in 10 reads.
func (r *pointerReader) finish(t *testing.T, minCuts int64) {
	t.Helper()
	r.stop.Store(true)
	r.wg.Wait()
	select {
	case err := <-r.errc:
		t.Fatal(err)
	default:
	}
	if r.switches.Load() < minCuts || r.reads.Load() < 10 {
		t.Fatalf("reader saw %d cuts in %d reads; the test did not exercise anything", r.switches.Load(), r.reads.Load())
	}
	t.Logf("reader checked the pointer and its files %d times across %d cuts", r.reads.Load(), r.switches.Load())
}
