package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
)

// afterFailedPush pushes a cut over what a push that failed midway leaves
// in the staging directory: every file of the cut under its staging name,
// at its size but with other bytes, and the staged ack and proof index.
// Servers that refuse to overwrite (ProFTPD's default) must still take the
// push, and nothing of the leftovers may reach a served name.
func (m *matrixRun) afterFailedPush(t *testing.T) {
	m.gen.next(t, m.src)
	if out, err := exec.Command(m.bin, "cut", "--config", m.cfg).CombinedOutput(); err != nil {
		t.Fatalf("prepcast cut: %v\n%s", err, out)
	}
	ci := m.latest(t)
	man, mb, err := m.store.Manifest(ci.Seq)
	if err != nil {
		t.Fatal(err)
	}
	tg := m.target(t, m.srv.Root)
	defer tg.Close() // closed before the push too: some servers allow one connection
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := tg.MkdirAll(ctx, publisher.StagingDir); err != nil {
		t.Fatal(err)
	}
	proof := func(p string) string { return publisher.StagingDir + "/proof-" + path.Base(p) }
	leftovers := map[string]int64{
		publisher.StagingDir + "/ack.json":                           300,
		proof(packager.ProofIndexPath):                               200,
		proof(packager.ProofManifestPath(ci.Seq, packager.Hash(mb))): 100,
	}
	for _, e := range man.Entries {
		if e.Size < publisher.ResumeMinSize {
			leftovers[publisher.StagingDir+"/"+e.SHA256] = e.Size
		}
	}
	for p, size := range leftovers {
		junk := bytes.Repeat([]byte{'#'}, int(size))
		if err := tg.WriteFile(ctx, p, bytes.NewReader(junk), size); err != nil {
			t.Fatalf("leave %s behind: %v", p, err)
		}
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command(m.bin, "push", "--config", m.cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("prepcast push over %d leftover staging files on %s: %v after %v\n%s",
			len(leftovers), m.spec.Name, err, time.Since(start).Round(time.Millisecond), out)
	}
	if strings.Contains(string(out), "FAILED") {
		t.Fatalf("prepcast push reported a failure:\n%s", out)
	}
	m.checkHolds(t, ci.Seq)
	m.checkSite(t, ci)
	m.note(fmt.Sprintf("leftovers=%d", len(leftovers)))
}
