package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/publisher"
	"github.com/prepcast/prepcast/status"
	"github.com/prepcast/prepcast/targets"
	sftptarget "github.com/prepcast/prepcast/targets/sftp"
)

// pushHealthy pushes to all targets and checks that every target but the
// faulty one acked and holds the cut; it returns the faulty one's result.
func (e *env) pushExpectOneFailure(faulty int) publisher.Result {
	e.t.Helper()
	results := e.engine().Push(context.Background(), e.specs())
	latest, _ := e.store.Latest()
	for i, r := range results {
		if i == faulty {
			if r.Err == nil {
				e.t.Fatalf("%s acked despite its fault", r.Target)
			}
			continue
		}
		if r.Err != nil || r.Ack.Seq != latest.Seq {
			e.t.Fatalf("healthy %s: %v", r.Target, r.Err)
		}
		e.checkTarget(e.servers[i].WebRoot(), latest.Seq)
	}
	// The operator sees it: status lists the faulty target first, failing,
	// with the cause.
	var names []string
	for _, tg := range e.targets {
		names = append(names, tg.Name())
	}
	v, err := status.Build(context.Background(), status.Source{Store: e.store, DB: e.db, Targets: names, MaxLag: 15 * time.Minute}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if top := v.Targets[0]; top.Name != results[faulty].Target || top.State != status.StateFailing || top.LastError == "" {
		e.t.Fatalf("status does not show the fault first: %+v", top)
	}
	return results[faulty]
}

// A host key that changed since it was pinned in known_hosts is refused,
// loudly, and nothing is written; the others ack.
func TestFaultHostKeyChanged(t *testing.T) {
	e := newEnv(t, 2)
	other := sshdtest.Start(t, sshdtest.Options{})
	// known_hosts pins, for difusor-2's address, another server's key.
	kh := filepath.Join(t.TempDir(), "known_hosts")
	otherKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(other.HostKeyLine()))
	if err != nil {
		t.Fatal(err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(e.servers[1].Addr())}, otherKey)
	os.WriteFile(kh, []byte(line+"\n"), 0o600)
	s := e.servers[1]
	tg, err := sftptarget.New(sftptarget.Config{Name: "difusor-2", Address: s.Addr(), User: s.User(), Root: s.Root(),
		IdentityFile: s.ClientKeyPath(), KnownHosts: kh, OpTimeout: 5 * time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	e.targets[1] = tg
	e.nextCut()
	r := e.pushExpectOneFailure(1)
	if !targets.IsPermanent(r.Err) || !strings.Contains(strings.ToUpper(r.Err.Error()), "CHANGED") || r.Attempts != 1 {
		t.Fatalf("changed host key: attempts %d, %v", r.Attempts, r.Err)
	}
	if des, _ := os.ReadDir(s.WebRoot()); len(des) != 0 {
		t.Error("files were written to the target whose key changed")
	}
	// Once the operator checks the new key with the difusor and pins it,
	// the target catches up.
	os.WriteFile(kh, []byte(s.KnownHostsLine()+"\n"), 0o600)
	time.Sleep(400 * time.Millisecond) // a failed connect is not retried for 250 ms
	latest, _ := e.store.Latest()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), latest.Seq)
	e.checkTarget(s.WebRoot(), latest.Seq)
}

// Authentication revoked by the difusor: a permanent error for that target
// only; once the key is authorized again the target catches up.
func TestFaultAuthRevoked(t *testing.T) {
	e := newEnv(t, 2)
	c1 := e.nextCut()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), c1.Seq)
	ak := filepath.Join(e.servers[1].Dir(), "authorized_keys")
	keep, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(ak, nil, 0o600)
	e.targets[1].Close() // drop the authenticated connection: the next one must log in again
	e.targets[1] = e.newTarget("difusor-2", e.servers[1], e.servers[1].HostKeyLine())
	e.nextCut()
	r := e.pushExpectOneFailure(1)
	if !targets.IsPermanent(r.Err) || !strings.Contains(r.Err.Error(), "authenticat") || r.Attempts != 1 {
		t.Fatalf("revoked key: attempts %d, %v", r.Attempts, r.Err)
	}
	e.checkTarget(e.servers[1].WebRoot(), c1.Seq) // still whole on the old cut
	os.WriteFile(ak, keep, 0o600)
	time.Sleep(400 * time.Millisecond) // a failed login is not retried for 250 ms
	latest := e.nextCut()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), latest.Seq)
	e.checkTarget(e.servers[1].WebRoot(), latest.Seq)
}

// A difusor's disk without room for the cut: refused before anything is
// staged, with the numbers; the target keeps serving its cut; with room
// again it converges.
func TestFaultDiskFull(t *testing.T) {
	e := newEnv(t, 2)
	c1 := e.nextCut()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), c1.Seq)
	web := e.servers[1].WebRoot()
	// Put the webroot on a tmpfs just big enough for what it holds.
	held := t.TempDir()
	if out, err := exec.Command("cp", "-a", web+"/.", held).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", web).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", web).Run() })
	if out, err := exec.Command("cp", "-a", held+"/.", web).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	e.gen.imagesPerCut, e.gen.imageMax = 30, 120<<10 // a few MB: more than the tmpfs holds
	e.nextCut()
	r := e.pushExpectOneFailure(1)
	if !errors.Is(r.Err, publisher.ErrNoSpace) || !strings.Contains(r.Err.Error(), "MB free") {
		t.Fatalf("disk full: %v", r.Err)
	}
	e.checkTarget(web, c1.Seq)
	if out, err := exec.Command("mount", "-o", "remount,size=64m", web).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v %s", err, out)
	}
	latest, _ := e.store.Latest()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), latest.Seq)
	e.checkTarget(web, latest.Seq)
}

// Files a difusor altered or lost after it acked are found by a verifying
// push and sent again; the untouched target sends nothing.
func TestFaultTamperedFilesRepaired(t *testing.T) {
	e := newEnv(t, 2)
	ci := e.nextCut()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), ci.Seq)
	web := e.servers[1].WebRoot()
	m, _, _ := e.store.Manifest(ci.Seq)
	var csv, img string
	for _, ent := range m.Entries {
		switch {
		case strings.HasSuffix(ent.Path, ".csv") && csv == "":
			csv = ent.Path
		case strings.HasSuffix(ent.Path, ".jpg") && img == "":
			img = ent.Path
		}
	}
	// Same size, other votes: only reading it back tells.
	p := filepath.Join(web, filepath.FromSlash(csv))
	data, _ := os.ReadFile(p)
	copy(data[len(data)-8:], []byte("99999999"))
	os.WriteFile(p, data, 0o644)
	os.Remove(filepath.Join(web, filepath.FromSlash(img)))
	eng := e.engine()
	eng.Verify = true
	results := eng.Push(context.Background(), e.specs())
	requireOK(t, results, ci.Seq)
	if got := strings.Join(results[1].Repaired, ","); got != strings.Join([]string{img, csv}, ",") && got != strings.Join([]string{csv, img}, ",") {
		t.Fatalf("repaired %v, want %s and %s", results[1].Repaired, csv, img)
	}
	if len(results[0].Repaired) != 0 || results[0].Bytes != 0 {
		t.Errorf("untouched target: repaired %v, sent %d bytes", results[0].Repaired, results[0].Bytes)
	}
	e.checkTarget(web, ci.Seq)
}
