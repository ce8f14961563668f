package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prepcast/prepcast/applyproto"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/publisher"
)

// Package mode against real sshd: "prepcast apply" (the binary under test)
// runs on the server over SSH; every cut lands whole, only the package
// crosses the wire, a connection reset mid-package commits nothing, and a
// server that allows only SFTP is refused with a clear, permanent error.
func TestPackageModeOverSSH(t *testing.T) {
	bin := buildPrepcast(t)
	e := newEnv(t, 2, sshdtest.Options{}, sshdtest.Options{NoExec: true})
	e.gen.imagesPerCut, e.gen.imageMax = 30, 60<<10
	pubFile := filepath.Join(t.TempDir(), "institute.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(e.pub), 0o644); err != nil {
		t.Fatal(err)
	}
	s := e.servers[0]
	apply := bin + " apply --root " + s.Root() + " --public-key " + pubFile
	spec := func(tg *publisher.TargetSpec) []publisher.TargetSpec { return []publisher.TargetSpec{*tg} }
	eng := e.engine()
	clock := time.Now()
	eng.Now = func() time.Time { return clock }
	var delta, sent int64
	for k := 1; k <= 3; k++ {
		ci := e.nextCut()
		r := eng.Push(context.Background(), spec(&publisher.TargetSpec{Target: e.targets[0], Apply: apply}))[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		e.checkTarget(s.WebRoot(), ci.Seq)
		if r.Bytes != ci.PackageSize {
			t.Errorf("cut %d: sent %d bytes, the package has %d", k, r.Bytes, ci.PackageSize)
		}
		delta, sent = delta+ci.DeltaBytes, sent+r.Bytes
		// Past the retention window, the same target (and connection)
		// deletes retired files over SFTP, after apply reshaped the tree.
		clock = clock.Add(2 * eng.RetentionWindow)
		if r := eng.Push(context.Background(), spec(&publisher.TargetSpec{Target: e.targets[0], Apply: apply}))[0]; r.Err != nil {
			t.Fatalf("cut %d, deleting retired files: %v", k, r.Err)
		}
		if a := readAck(t, s.WebRoot()); k > 1 && len(a.Retired) != 0 {
			t.Fatalf("cut %d: retired files not deleted after the window: %v", k, a.Retired)
		}
	}
	t.Logf("3 cuts: %d bytes of files sent as %d bytes of packages", delta, sent)

	// A connection reset in the middle of the package: nothing committed.
	tg, proxy := proxiedTarget(t, "difusor-1", s, 10e9, 2e9)
	ci := e.nextCut()
	if ci.PackageSize < 800<<10 {
		t.Fatalf("package of %d bytes is too small for the test", ci.PackageSize)
	}
	proxy.ResetAfter(ci.PackageSize / 2)
	eng1 := fastRetries(e.engine(), 1)
	r := eng1.Push(context.Background(), spec(&publisher.TargetSpec{Target: tg, Apply: apply}))[0]
	if r.Err == nil {
		t.Fatal("push through a link that resets mid-package succeeded")
	}
	e.checkTarget(s.WebRoot(), ci.Seq-1)
	proxy.ResetAfter(0)
	r = eng1.Push(context.Background(), spec(&publisher.TargetSpec{Target: tg, Apply: apply}))[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	e.checkTarget(s.WebRoot(), ci.Seq)

	// A server that runs only SFTP answers the command with an SFTP server.
	r = eng.Push(context.Background(), spec(&publisher.TargetSpec{Target: e.targets[1], Apply: apply}))[0]
	if r.Err == nil || !strings.Contains(r.Err.Error(), "does not speak "+applyproto.Format) || r.Attempts != 1 {
		t.Fatalf("SFTP-only server: err = %v after %d attempts; want a permanent protocol error", r.Err, r.Attempts)
	}
	if _, err := os.Stat(filepath.Join(e.servers[1].WebRoot(), "json", "main.json")); err == nil {
		t.Fatal("main.json appeared on the SFTP-only server")
	}
}

// The setup the README recommends: the institute's key may run nothing but
// a forced command, which runs "prepcast apply" with the institute's public
// key for an apply request and the SFTP server for SFTP; the publisher's
// own apply_command carries no key. Cuts land whole; any other command is
// refused.
func TestPackageModeForcedCommand(t *testing.T) {
	bin := buildPrepcast(t)
	e := newEnv(t, 1, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp /usr/lib/openssh/sftp-server"}})
	s := e.servers[0]
	pubFile := filepath.Join(t.TempDir(), "institute.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(e.pub), 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "prepcast-difusor")
	script := "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n" +
		"  *\"prepcast apply\"*) exec " + bin + " apply --root " + s.WebRoot() + " --public-key " + pubFile + " ;;\n" +
		"  */sftp-server) exec /usr/lib/openssh/sftp-server ;;\n" +
		"  *) echo \"only prepcast apply and SFTP are allowed\" >&2; exit 1 ;;\n" +
		"esac\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(s.Dir(), "authorized_keys")
	key, err := os.ReadFile(ak)
	if err != nil {
		t.Fatal(err)
	}
	forced := "command=\"" + wrapper + "\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding " + string(key)
	if err := os.WriteFile(ak, []byte(forced), 0o600); err != nil {
		t.Fatal(err)
	}
	eng := e.engine()
	spec := []publisher.TargetSpec{{Target: e.targets[0], Apply: "prepcast apply --root " + s.Root()}}
	for k := 1; k <= 2; k++ {
		ci := e.nextCut()
		r := eng.Push(context.Background(), spec)[0]
		if r.Err != nil {
			t.Fatalf("cut %d: %v", k, r.Err)
		}
		e.checkTarget(s.WebRoot(), ci.Seq)
		if r.Bytes != ci.PackageSize {
			t.Fatalf("cut %d: sent %d bytes, not the package of %d", k, r.Bytes, ci.PackageSize)
		}
	}
	if out, err := s.SSHCommand("cat /etc/passwd").CombinedOutput(); err == nil || !strings.Contains(string(out), "only prepcast apply") {
		t.Fatalf("another command ran: %v %s", err, out)
	}
}
