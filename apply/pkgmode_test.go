package apply_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/apply"
	"github.com/prepcast/prepcast/internal/cuttest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/state"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/targettest"
)

// pkgTargetAtFirstCut makes a store with one cut, and a package-mode
// target that an engine brought to it.
func pkgTargetAtFirstCut(t *testing.T) (*fixture, *execMem, *publisher.Engine, *packager.CutInfo) {
	t.Helper()
	f := newFixture(t)
	x := newExecMem(t, "pkg", f.Pub)
	eng := f.engine()
	first := f.Cut()
	if r := pushPkg(eng, x)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	return f, x, eng, first
}

func TestPackageModeBringsEachCut(t *testing.T) {
	f := newFixture(t)
	x := newExecMem(t, "pkg", f.Pub)
	eng := f.engine()
	clock := time.Date(2024, 6, 2, 20, 0, 0, 0, time.UTC)
	x.now = func() time.Time { return clock }
	for k := int64(1); k <= 3; k++ {
		clock = clock.Add(apply.DefaultRetention + time.Minute)
		ci := f.Cut()
		r := pushPkg(eng, x)[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		checkServes(t, f, x.Mem, ci.Seq)
		// The package built by the cut went, and nothing else.
		if r.Bytes != ci.PackageSize || x.got.Load() < ci.PackageSize {
			t.Fatalf("cut %d: sent %d bytes, apply read %d; the cut's package has %d", k, r.Bytes, x.got.Load(), ci.PackageSize)
		}
	}
	if got := x.runs.Load(); got != 3 {
		t.Fatalf("apply ran %d times, want 3", got)
	}
	// json/c001 left the manifest at cut 2 and was deleted at cut 3, a
	// retention later on the difusor's clock; json/c002 left at cut 3 and
	// is still retired.
	if _, ok := x.File("json/c001/totales.json"); ok {
		t.Fatal("retired json/c001 was not deleted")
	}
	if _, ok := x.File("json/c002/totales.json"); !ok {
		t.Fatal("json/c002 deleted before the difusor's retention")
	}
	if _, ok := x.File(apply.PinnedKeyPath); ok {
		t.Fatal("a key was pinned although the difusor was given one")
	}
	for p := range x.Files() {
		if strings.HasPrefix(p, publisher.StagingDir+"/") {
			t.Fatalf("staging leftover %s", p)
		}
	}
	// The difusor keeps the signed manifest of its cut, and nothing older.
	_, mb, _ := f.manifest(3)
	var kept []string
	for p := range x.Files() {
		if strings.HasPrefix(p, apply.HeldDir+"/") {
			kept = append(kept, p)
		}
	}
	if got := mustFile(t, x.Mem, apply.HeldDir+"/"+packager.Hash(mb)+".json"); !bytes.Equal(got, mb) || len(kept) != 3 {
		t.Fatalf("kept %v; want cut 3's manifest, signature and the record", kept)
	}
}

func TestPackageModeCorruptStreamCommitsNothing(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	before := mustFile(t, x.Mem, "json/main.json")
	ci := f.Cut()
	for _, at := range []int64{ci.PackageSize / 2, ci.PackageSize - 20} {
		x.corrupt = at
		r := pushPkg(eng, x)[0]
		if r.Err == nil {
			t.Fatalf("flipped byte %d of %d: push succeeded", at, ci.PackageSize)
		}
		if !strings.Contains(r.Err.Error(), "bad-package") {
			t.Fatalf("flipped byte %d: error %v does not say the package was bad", at, r.Err)
		}
		if got := mustFile(t, x.Mem, "json/main.json"); !bytes.Equal(got, before) {
			t.Fatalf("flipped byte %d: main.json changed to %s", at, got)
		}
		checkServes(t, f, x.Mem, ci.Seq-1)
	}
	x.corrupt = 0
	if r := pushPkg(eng, x)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServes(t, f, x.Mem, ci.Seq)
}

func TestPackageModeRefusesOtherKey(t *testing.T) {
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name string
		prep func(x *execMem)
		want string
	}{
		{"configured key", func(x *execMem) { x.pub = other }, "key-mismatch"},
		{"pinned key", func(x *execMem) {
			x.pub, x.tofu = nil, true
			_ = x.SetFile(apply.PinnedKeyPath, packager.EncodePublicKey(other))
		}, "pinned"},
		{"no key", func(x *execMem) { x.pub = nil }, "--public-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			x := newExecMem(t, "pkg", f.Pub)
			tt.prep(x)
			f.Cut()
			r := pushPkg(f.engine(), x)[0]
			if r.Err == nil || !strings.Contains(r.Err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", r.Err, tt.want)
			}
			if !targets.IsPermanent(r.Err) || r.Attempts != 1 {
				t.Fatalf("a key mismatch must not be retried: permanent=%v attempts=%d", targets.IsPermanent(r.Err), r.Attempts)
			}
			if _, ok := x.File("json/main.json"); ok {
				t.Fatal("main.json written despite the refusal")
			}
		})
	}
}

// Trust on first use pins the key once a whole package signed with it
// verified; the next package must be signed with it.
func TestPackageModeTrustOnFirstUsePinsAfterVerifying(t *testing.T) {
	f := newFixture(t)
	x := newExecMem(t, "pkg", nil)
	x.tofu = true
	f.Cut()
	if r := pushPkg(f.engine(), x)[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServes(t, f, x.Mem, 1)
	got, err := packager.ParsePublicKey(mustFile(t, x.Mem, apply.PinnedKeyPath))
	if err != nil || !got.Equal(f.Pub) {
		t.Fatalf("pinned %v, %v; want the institute's key", got, err)
	}
	// Another institute key now is refused, and the difusor keeps cut 1.
	g := newFixture(t)
	g.Store = f.Store
	_, g.Priv, _ = ed25519.GenerateKey(rand.Reader)
	g.Pub = g.Priv.Public().(ed25519.PublicKey)
	g.N, g.Src = f.N, f.Src
	g.Cut()
	r := pushPkg(g.engine(), x)[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "pinned") || !targets.IsPermanent(r.Err) {
		t.Fatalf("package under another key after pinning: %v", r.Err)
	}
	checkServes(t, f, x.Mem, 1)
}

func TestPackageModeLaggingTargetGetsOnePackageFromItsCut(t *testing.T) {
	f := newFixture(t)
	a := newExecMem(t, "a", f.Pub)
	b := newExecMem(t, "b", f.Pub)
	eng := f.engine()
	f.Cut()
	for _, x := range []*execMem{a, b} {
		if r := pushPkg(eng, x)[0]; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	f.Cut()
	f.Cut()
	ci := f.Cut() // cut 4; both targets hold cut 1
	rs := pushPkg(f.engine(), a, b)
	for _, r := range rs {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	checkServes(t, f, a.Mem, ci.Seq)
	checkServes(t, f, b.Mem, ci.Seq)
	pr, err := f.Store.OpenPackage(1, ci.Seq, packager.FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	info := pr.Info()
	pr.Close()
	if _, err := os.Stat(filepath.Join(f.Store.CutDir(ci.Seq), packager.PackageName(1, packager.FileDeltas))); err != nil || rs[0].Bytes != info.Size || rs[1].Bytes != info.Size {
		t.Fatalf("package from cut 1 (%d bytes, %v); targets were sent %d and %d bytes", info.Size, err, rs[0].Bytes, rs[1].Bytes)
	}
}

// A root whose ack an older prepcast wrote (no signed manifest kept) gets
// the whole cut, not a delta it could not check; nothing is deleted.
func TestPackageModeWithoutKeptManifestSendsWholeCut(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	for p := range x.Files() {
		if strings.HasPrefix(p, apply.HeldDir+"/") {
			_ = x.Remove(context.Background(), p)
		}
	}
	ci := f.Cut()
	r := pushPkg(eng, x)[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	checkServes(t, f, x.Mem, ci.Seq)
	full, err := f.Store.OpenPackage(0, ci.Seq, packager.WholeFiles)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if r.Bytes != full.Size() {
		t.Fatalf("sent %d bytes; the whole cut's package has %d", r.Bytes, full.Size())
	}
	if _, ok := x.File("json/c001/totales.json"); !ok {
		t.Fatal("a file deleted without a signed manifest of the previous cut")
	}
}

func TestApplyRefusesGarbage(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tt := range []struct {
		name, in, want string
	}{
		{"no request", "", "read request"},
		{"not json", "hello\n", "not a prepcast-apply/2 message"},
		{"other format", `{"format":"prepcast-apply/1"}` + "\n", "same prepcast version"},
		{"too long", strings.Repeat("x", 200<<10) + "\n", "too long"},
		{"no package", `{"format":"prepcast-apply/2","public_key":"` + strings.Repeat("A", 43) + `=","package_size":0}` + "\n", "no package"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := targettest.NewMem("d")
			var out bytes.Buffer
			err := apply.Apply(context.Background(), apply.Options{Target: m, PublicKey: pub, In: strings.NewReader(tt.in), Out: &out})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if !strings.HasPrefix(out.String(), `{"format":"prepcast-apply/2"`) {
				t.Fatalf("no greeting: %q", out.String())
			}
		})
	}
}

func TestPackageModeRebuildsDamagedPackage(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	ci := f.Cut()
	// A byte of the stored package rots (in its compressed metadata).
	cuttest.FlipByte(t, f.Store.PackagePath(ci), 100)
	r := pushPkg(eng, x)[0]
	if r.Err != nil {
		t.Fatalf("push with a damaged package: %v", r.Err)
	}
	if r.Attempts != 2 {
		t.Fatalf("%d attempts; want the refused package and its rebuild", r.Attempts)
	}
	checkServes(t, f, x.Mem, ci.Seq)
}

// An image rots in the store after its cut: the package carries the
// object's bytes, so the difusor refuses it, the rebuild finds the object
// corrupt, and the push stops for good, naming it; the difusor keeps
// serving its cut whole.
func TestPackageModeNeverCommitsARottenObject(t *testing.T) {
	f, x, eng, first := pkgTargetAtFirstCut(t)
	ci := f.Cut()
	m, _, _ := f.manifest(ci.Seq)
	img, _ := m.Lookup(fmt.Sprintf("actas/%03d.jpg", f.N))
	cuttest.FlipByte(t, f.Store.ObjectPath(img.SHA256), 10)
	r := pushPkg(eng, x)[0]
	if r.Err == nil || !targets.IsPermanent(r.Err) || !errors.Is(r.Err, packager.ErrCorruptObject) || !strings.Contains(r.Err.Error(), img.Path) {
		t.Fatalf("push of a cut with a rotten image: %v", r.Err)
	}
	checkServes(t, f, x.Mem, first.Seq)
}

// In both modes the index listing a cut is in place before the cut's
// pointer switches, and the proof files are the signed bytes.
func TestProofBeforePointerBothModes(t *testing.T) {
	for _, pkg := range []bool{false, true} {
		f := newFixture(t)
		eng := f.engine()
		x := newExecMem(t, "d", f.Pub)
		for range 2 {
			ci := f.Cut()
			var r publisher.Result
			if pkg {
				r = pushPkg(eng, x)[0]
			} else {
				r = eng.Push(context.Background(), []publisher.TargetSpec{{Target: x.Mem}})[0]
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			_, mb, sig, _ := f.Store.VerifiedManifest(ci.Seq, f.Pub)
			sha := packager.Hash(mb)
			if got, _ := x.File(packager.ProofManifestPath(ci.Seq, sha)); string(got) != string(mb) {
				t.Fatalf("package mode %v: cut %d's published manifest is not the signed bytes", pkg, ci.Seq)
			}
			if got, _ := x.File(packager.ProofSignaturePath(ci.Seq, sha)); string(got) != string(sig) {
				t.Fatalf("package mode %v: cut %d's published signature differs", pkg, ci.Seq)
			}
		}
		index, pointer := -1, -1
		for i, op := range x.Ops() {
			if op.Kind == targettest.OpRename && op.Err == nil {
				switch op.NewPath {
				case packager.ProofIndexPath:
					index = i
				case "json/main.json":
					pointer = i
				}
			}
		}
		if index < 0 || pointer < 0 || index > pointer {
			t.Errorf("package mode %v: last index rename at op %d, last pointer switch at op %d", pkg, index, pointer)
		}
	}
}

// How a difusor trusts the institute's key, as its greeting says, is
// recorded for status: a trust-on-first-use difusor is visible there.
func TestPackageModeRecordsKeyTrust(t *testing.T) {
	f := newFixture(t)
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eng := f.engine()
	eng.DB = db
	tofu := newExecMem(t, "tofu", nil)
	tofu.tofu = true
	fixed := newExecMem(t, "fixed", f.Pub)
	f.Cut()
	for _, r := range pushPkg(eng, tofu, fixed) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	got, err := db.KeyTrusts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got["tofu"] != "trust-on-first-use" || got["fixed"] != "public-key" {
		t.Fatalf("key trust recorded %v", got)
	}
}

// deltaPaths reads a whole package, its deltas decoded against what
// held returns for their paths, and returns the paths it carries as
// deltas.
func deltaPaths(t *testing.T, pr *packager.PackageReader, pub ed25519.PublicKey, held func(path string) []byte) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	_, err := packager.ReadPackage(pr, pub, func(path, sha string) ([]byte, error) {
		out[path] = true
		return held(path), nil
	}, func(*packager.PackageContent) error { return nil }, func(_ packager.Entry, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The rewritten database travels as a delta against the difusor's copy.
// A copy changed in the root (same size, so the greeting still vouches for
// the cut) is found before anything is committed; whole files replace it
// at once, and that difusor gets whole files from then on.
func TestPackageModeDeltasAndADamagedBase(t *testing.T) {
	f, x, eng, _ := pkgTargetAtFirstCut(t)
	const db = "datos/PUE_GUB_2024.csv"
	ci := f.Cut()
	pr, err := f.Store.OpenPackage(ci.Seq-1, ci.Seq, packager.FileDeltas)
	if err != nil {
		t.Fatal(err)
	}
	if d := deltaPaths(t, pr, f.Pub, func(p string) []byte { return mustFile(t, x.Mem, p) }); !d[db] || len(d) != 1 {
		t.Fatalf("the cut's package has delta members %v, want the database", d)
	}
	pr.Close()
	r := pushPkg(eng, x)[0]
	if r.Err != nil || r.Attempts != 1 || r.Bytes != ci.PackageSize {
		t.Fatalf("push: %v after %d attempts, %d bytes; the package with deltas has %d", r.Err, r.Attempts, r.Bytes, ci.PackageSize)
	}
	checkServes(t, f, x.Mem, ci.Seq)

	b := mustFile(t, x.Mem, db)
	i := bytes.Index(b, []byte("CAPTURADA"))
	b[i] = 'c'
	if err := x.SetFile(db, b); err != nil {
		t.Fatal(err)
	}
	ci = f.Cut()
	r = pushPkg(eng, x)[0]
	if r.Err != nil || r.Attempts != 2 {
		t.Fatalf("push over a damaged base: %v after %d attempts, want success at the second", r.Err, r.Attempts)
	}
	checkServes(t, f, x.Mem, ci.Seq)

	ci = f.Cut()
	whole, err := f.Store.OpenPackage(ci.Seq-1, ci.Seq, packager.WholeFiles)
	if err != nil {
		t.Fatal(err)
	}
	whole.Close()
	r = pushPkg(eng, x)[0]
	if r.Err != nil || r.Bytes != whole.Size() || whole.Size() <= ci.PackageSize {
		t.Fatalf("push after: %v, %d bytes; whole files %d, deltas %d", r.Err, r.Bytes, whole.Size(), ci.PackageSize)
	}
	checkServes(t, f, x.Mem, ci.Seq)
}
