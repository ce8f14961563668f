package publisher

import (
	"context"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/targets/targettest"
)

// Each pushed cut's exact manifest and signature are published under their
// own names and listed in the index; a cut's proof stays while it is
// within the retention window after a newer cut replaced it, and goes after.
func TestProofPublishedAndRetired(t *testing.T) {
	f := newFixture(t)
	mem := targettest.NewMem("t")
	eng := f.engine()
	now := time.Date(2024, 6, 2, 20, 0, 0, 0, time.UTC)
	eng.Now = func() time.Time { return now }
	eng.RetentionWindow = 30 * time.Minute
	push := func() *packager.CutInfo {
		t.Helper()
		ci := f.Cut()
		if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
			t.Fatal(r.Err)
		}
		return ci
	}
	index := func() *packager.ProofIndex {
		t.Helper()
		data, ok := mem.File(packager.ProofIndexPath)
		if !ok {
			t.Fatal("no proof index on the target")
		}
		x, err := packager.ParseProofIndex(data)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	c1 := push()
	now = now.Add(10 * time.Minute)
	c2 := push()
	x := index()
	if len(x.Cuts) != 2 || x.Cuts[0].Seq != c1.Seq || x.Cuts[1].Seq != c2.Seq {
		t.Fatalf("index lists %+v, want cuts %d and %d", x.Cuts, c1.Seq, c2.Seq)
	}
	if x.Cuts[0].Replaced == nil || x.Cuts[1].Replaced != nil {
		t.Errorf("replaced times: %v, %v", x.Cuts[0].Replaced, x.Cuts[1].Replaced)
	}
	for _, pc := range x.Cuts {
		m, mb, sig, err := f.Store.VerifiedManifest(pc.Seq, f.Pub)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := mem.File(packager.ProofDir + "/" + pc.ManFile)
		if string(got) != string(mb) || packager.Hash(got) != pc.Manifest {
			t.Errorf("cut %d: published manifest differs from the signed bytes", pc.Seq)
		}
		gotSig, _ := mem.File(packager.ProofDir + "/" + pc.SigFile)
		if err := packager.Verify(f.Pub, got, gotSig); err != nil || string(gotSig) != string(sig) {
			t.Errorf("cut %d: published signature: %v", pc.Seq, err)
		}
		if pc.Files != m.Files {
			t.Errorf("cut %d: index says %d files, manifest %d", pc.Seq, pc.Files, m.Files)
		}
	}
	// Past the window after cut 2 replaced cut 1, cut 1's proof goes.
	now = now.Add(31 * time.Minute)
	c3 := push()
	x = index()
	if len(x.Cuts) != 2 || x.Cuts[0].Seq != c2.Seq || x.Cuts[1].Seq != c3.Seq {
		t.Fatalf("after the window the index lists %+v, want cuts %d and %d", x.Cuts, c2.Seq, c3.Seq)
	}
	for p := range mem.Files() {
		if len(p) > len(packager.ProofCutsDir) && p[:len(packager.ProofCutsDir)] == packager.ProofCutsDir {
			if p != packager.ProofDir+"/"+x.Cuts[0].ManFile && p != packager.ProofDir+"/"+x.Cuts[0].SigFile &&
				p != packager.ProofDir+"/"+x.Cuts[1].ManFile && p != packager.ProofDir+"/"+x.Cuts[1].SigFile {
				t.Errorf("%s left on the target after its cut left the index", p)
			}
		}
	}
	// A listed cut's proof file found missing is written again by the next
	// push that changes the index (here: cut 2 leaving it).
	sigPath := packager.ProofDir + "/" + x.Cuts[1].SigFile
	if err := mem.Remove(context.Background(), sigPath); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Minute)
	if r := eng.Push(context.Background(), []TargetSpec{{Target: mem}})[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	if x = index(); len(x.Cuts) != 1 || x.Cuts[0].Seq != c3.Seq {
		t.Fatalf("index lists %+v, want cut %d alone", x.Cuts, c3.Seq)
	}
	_, _, sig, err := f.Store.VerifiedManifest(c3.Seq, f.Pub)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := mem.File(sigPath); !ok || string(got) != string(sig) {
		t.Errorf("cut %d's signature was not written again (present %v)", c3.Seq, ok)
	}
}
