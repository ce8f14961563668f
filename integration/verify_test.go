package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prepcast/prepcast/integration/nginxtest"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/internal/webfetch"
	"github.com/prepcast/prepcast/packager"
	"github.com/prepcast/prepcast/verify"
)

// runVerify runs "prepcast verify" and returns its exit code and output.
func runVerify(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"verify"}, args...)...)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("run verify: %v", err)
	return -1, ""
}

func writeKey(t *testing.T, pub []byte) string {
	p := filepath.Join(t.TempDir(), "manifest.pub")
	if err := os.WriteFile(p, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerifyRealNginx pushes real cuts over real sshd and checks with
// "prepcast verify" what real nginx serves from that webroot, with the
// documented rules: the exact site passes, a flipped byte, a missing image
// or another key fail with 1 naming what differs, an unreachable site is 2.
func TestVerifyRealNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prepcast command")
	}
	e := newEnv(t, 1)
	for range 2 {
		ci := e.nextCut()
		requireOK(t, e.engine().Push(context.Background(), e.specs()), ci.Seq)
	}
	web := e.servers[0].WebRoot()
	ng := nginxtest.Start(t, nginxtest.Options{Root: web})
	bin := buildPrepcast(t)
	key := writeKey(t, packager.EncodePublicKey(e.pub))

	code, out := runVerify(t, bin, ng.URL, "--public-key", key, "--lang", "en")
	if code != 0 || !strings.Contains(out, "Served cut: 2") || !strings.Contains(out, packager.Fingerprint(e.pub)) {
		t.Fatalf("exact site: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "Warning") {
		t.Errorf("the documented rules drew a warning:\n%s", out)
	}
	code, out = runVerify(t, bin, ng.URL, "--public-key", key, "--full")
	if code != 0 || !strings.Contains(out, "RESULTADO: el sitio sirve exactamente") || !strings.Contains(out, "(tiempo del centro)") {
		t.Fatalf("exact site, --full, Spanish by default: exit %d\n%s", code, out)
	}
	t.Logf("prepcast verify --full:\n%s", out)

	// One flipped byte in a CSV, same size.
	csv := filepath.Join(web, "datos", "PUE_GUB_2024.csv")
	orig, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(orig)
	flipped[len(flipped)/2] ^= 0x01
	os.WriteFile(csv, flipped, 0o644)
	code, out = runVerify(t, bin, ng.URL, "--public-key", key, "--lang", "en")
	if code != 1 || !strings.Contains(out, "changed") || !strings.Contains(out, "datos/PUE_GUB_2024.csv") {
		t.Errorf("flipped byte: exit %d\n%s", code, out)
	}
	os.WriteFile(csv, orig, 0o644)

	// A missing image (found by --full).
	m, _, _ := e.store.Manifest(2)
	var img string
	for _, en := range m.Entries {
		if strings.HasSuffix(en.Path, ".jpg") {
			img = en.Path
			break
		}
	}
	imgPath := filepath.Join(web, filepath.FromSlash(img))
	os.Rename(imgPath, imgPath+".away")
	code, out = runVerify(t, bin, ng.URL, "--public-key", key, "--full", "--lang", "en")
	if code != 1 || !strings.Contains(out, "missing") || !strings.Contains(out, img) || !strings.Contains(out, "HTTP 404") {
		t.Errorf("missing image: exit %d\n%s", code, out)
	}
	t.Logf("prepcast verify --full --lang en, an image removed:\n%s", out)
	os.Rename(imgPath+".away", imgPath)

	// Another key: bad signature.
	other := writeKey(t, packager.EncodePublicKey(newKey(t)))
	code, out = runVerify(t, bin, ng.URL, "--public-key", other, "--lang", "en")
	if code != 1 || !strings.Contains(out, "Bad signature") {
		t.Errorf("other key: exit %d\n%s", code, out)
	}

	// JSON output of the exact site.
	code, out = runVerify(t, bin, ng.URL, "--public-key", key, "--json")
	if code != 0 || !strings.Contains(out, `"files_checked"`) {
		t.Errorf("--json: exit %d\n%s", code, out)
	}

	// Unreachable, and usage errors.
	url := ng.URL
	ng.Close()
	if code, out := runVerify(t, bin, url, "--public-key", key); code != 2 {
		t.Errorf("unreachable: exit %d\n%s", code, out)
	}
	if code, _ := runVerify(t, bin, url); code != 2 {
		t.Errorf("no key: exit %d", code)
	}
}

// TestVerifyWhilePushing runs the verifier in a loop against real nginx
// while cycles push new cuts to the webroot it serves: a cut switching
// under the verifier is never reported as a mismatch.
func TestVerifyWhilePushing(t *testing.T) {
	e := newEnv(t, 1)
	ci := e.nextCut()
	requireOK(t, e.engine().Push(context.Background(), e.specs()), ci.Seq)
	ng := nginxtest.Start(t, nginxtest.Options{Root: e.servers[0].WebRoot()})
	client := webfetch.New(webfetch.Options{UserAgent: "prepcast/test"})

	var stop sync.WaitGroup
	done := make(chan struct{})
	var mu sync.Mutex
	runs, retried := 0, 0
	seen := map[int64]bool{}
	var failure error
	stop.Add(1)
	go func() {
		defer stop.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			rep, err := verify.Run(context.Background(), verify.Options{URL: ng.URL, PublicKey: e.pub, Client: client,
				Full: true, Settle: 50 * time.Millisecond, Attempts: 20})
			mu.Lock()
			if err == nil && !rep.OK() {
				err = errors.New("false mismatch: problem " + rep.Problem + " " + mismatchText(rep))
			}
			if err != nil && failure == nil {
				failure = err
			}
			if err == nil {
				runs++
				seen[rep.Seq] = true
				if rep.Attempts > 1 {
					retried++
				}
			}
			mu.Unlock()
		}
	}()
	for range 6 {
		ci := e.nextCut()
		requireOK(t, e.engine().Push(context.Background(), e.specs()), ci.Seq)
	}
	close(done)
	stop.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if runs < 3 || len(seen) < 2 {
		t.Fatalf("%d verifications across %d cuts: the test did not exercise anything", runs, len(seen))
	}
	t.Logf("%d full verifications across %d cuts while pushing, %d retried after a switch", runs, len(seen), retried)
}

func mismatchText(rep *verify.Report) string {
	var b strings.Builder
	for _, m := range rep.Mismatches {
		b.WriteString(m.Path + " " + string(m.Kind) + "; ")
	}
	return b.String()
}

func newKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestStatusAckedNotServed: a difusor whose pointer file was written with
// mode 0600 (a restrictive umask on its SFTP server) acknowledges the cut
// over SFTP while real nginx, whose workers run as another user, answers
// 403: status --probe says "acked, not served" and exits 1.
func TestStatusAckedNotServed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prepcast command")
	}
	bin := buildPrepcast(t)
	dir := t.TempDir()
	src, stateDir := filepath.Join(dir, "results"), filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dir, "keys")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	s := sshdtest.Start(t, sshdtest.Options{})
	ng := nginxtest.Start(t, nginxtest.Options{Root: s.WebRoot()})
	cfg := filepath.Join(dir, "prepcast.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("source: %s\nstate_dir: %s\nsigning_key: %s\nretry: {attempts: 2, base: 1s}\ntargets:\n"+
		"  - {name: d1, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s, url: %q}\n",
		src, stateDir, filepath.Join(dir, "keys", "manifest.key"), s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root(), ng.URL)), 0o644)
	newTreeGen(5).next(t, src)
	if out, err := exec.Command(bin, "cycle", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("cycle: %v\n%s", err, out)
	}
	status := func() (int, string) {
		out, err := exec.Command(bin, "status", "--probe", "--config", cfg).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := status(); code != 0 || !strings.Contains(out, "SERVED") || strings.Contains(out, "not served") {
		t.Fatalf("site serving its cut: exit %d\n%s", code, out)
	}
	if err := os.Chmod(filepath.Join(s.WebRoot(), "json", "main.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := status()
	if code != 1 || !strings.Contains(out, "acked, not served: 403 on json/main.json") {
		t.Fatalf("0600 pointer: exit %d\n%s", code, out)
	}
	t.Logf("status --probe:\n%s", out)
}
