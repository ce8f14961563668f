package integration

import (
	"context"
	"fmt"
	"path"
	"sync/atomic"
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
