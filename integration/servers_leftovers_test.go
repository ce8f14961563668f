package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/integration/servers"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/targets"
	"github.com/prepcast/prepcast/targets/sftp"
	"github.com/prepcast/prepcast/targets/targettest"
)

// target returns an SFTP target on the matrix's server, logged in as the
// difusor's user, rooted at root (under the server's root). The caller
// closes it.
func (m *matrixRun) target(t *testing.T, root string) *sftp.Target {
	t.Helper()
	tg, err := sftp.New(sftp.Config{
		Name: m.spec.Name, Address: m.srv.Addr, User: m.srv.User, Root: root,
		IdentityFile: m.srv.ClientKey, HostKey: m.srv.HostKey,
		DialTimeout: 5 * time.Second, OpTimeout: 20 * time.Second, Keepalive: 5 * time.Second,
		FileMode: 0o644, DirMode: 0o755,
		AllowNonAtomicReplace: m.spec.Has(servers.NoPosixRename),
	}, zaptest.NewLogger(t).Named(m.spec.Name))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// targetContract runs the targets.Target conformance suite against the
// server, each check in a new directory of its own: what the publisher
// asks of every difusor (overwrite, rename over a name, walk, remove...)
// holds on this server too.
func (m *matrixRun) targetContract(t *testing.T) {
	if m.spec.Has(servers.SlowDownload) {
		t.Skip("the suite reads megabytes back: minutes at this server's download limit")
	}
	var n atomic.Int64
	targettest.Run(t, func(t *testing.T) targets.Target {
		root := fmt.Sprintf("%s/contract-%d", m.srv.Root, n.Add(1))
		base := m.target(t, m.srv.Root)
		defer base.Close()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := base.MkdirAll(ctx, path.Base(root)); err != nil {
			t.Fatalf("make %s: %v", root, err)
		}
		t.Cleanup(func() {
			cleanup := m.target(t, m.srv.Root)
			defer cleanup.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := cleanup.RemoveAll(ctx, path.Base(root)); err != nil {
				t.Errorf("remove %s: %v", root, err)
			}
		})
		return m.target(t, root)
	})
}

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
