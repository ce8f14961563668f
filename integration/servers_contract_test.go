package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/integration/servers"
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
	// One connection makes and removes the checks' directories; each
	// check gets a target of its own, rooted in its directory.
	base := m.target(t, m.srv.Root)
	t.Cleanup(func() { base.Close() })
	n := 0
	targettest.Run(t, func(t *testing.T) targets.Target {
		n++
		dir := fmt.Sprintf("contract-%d", n)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := base.MkdirAll(ctx, dir); err != nil {
			t.Fatalf("make %s: %v", dir, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := base.RemoveAll(ctx, dir); err != nil {
				t.Errorf("remove %s: %v", dir, err)
			}
		})
		return m.target(t, m.srv.Root+"/"+dir)
	})
}
