package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/prepcast/prepcast/check"
	"github.com/prepcast/prepcast/config"
	"github.com/prepcast/prepcast/integration/nginxtest"
	"github.com/prepcast/prepcast/integration/servers"
	"github.com/prepcast/prepcast/integration/sshdtest"
)

// difusorSite is one real difusor on loopback: OpenSSH sshd writing a
// webroot that nginx (workers as nobody) serves, with a published
// json/main.json.
type difusorSite struct {
	sshd  *sshdtest.Server
	nginx *nginxtest.Server
}

func startDifusor(t *testing.T, so sshdtest.Options, no nginxtest.Options) *difusorSite {
	t.Helper()
	s := sshdtest.Start(t, so)
	web := s.WebRoot()
	if err := os.MkdirAll(filepath.Join(web, "json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web, "json", "main.json"), []byte(`{"corte":"20240602_2000"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte("<h1>PREP</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	no.Root = web
	return &difusorSite{sshd: s, nginx: nginxtest.Start(t, no)}
}

// checkConfig is a config with one target for d and the given check:
// section.
func checkConfig(t *testing.T, d *difusorSite, checkSection string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf(`source: %s/src
state_dir: %s/state
signing_key: %s/key
targets:
  - name: diario
    address: %q
    user: %s
    identity_file: %s
    host_key: %q
    root: %s
    url: %s
check: {%s}
`, dir, dir, dir, d.sshd.Addr(), d.sshd.User(), d.sshd.ClientKeyPath(), d.sshd.HostKeyLine(), d.sshd.Root(), d.nginx.URL, checkSection)
	c, err := config.Parse([]byte(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeouts.Operation = 10 * time.Second
	return c
}

// treeHash hashes a directory tree: every name, kind, mode and file
// content.
func treeHash(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			line += " " + hex.EncodeToString(h[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:]) + fmt.Sprintf(" (%d entries)", len(lines))
}

// runCheck checks d's one target and asserts that the site is unchanged.
func runCheck(t *testing.T, d *difusorSite, c *config.Config) check.Difusor {
	t.Helper()
	before := treeHash(t, d.sshd.WebRoot())
	res, err := check.Run(context.Background(), check.Options{Config: c, Targets: c.EnabledTargets(), UploadTest: time.Second, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if after := treeHash(t, d.sshd.WebRoot()); after != before {
		t.Errorf("the check changed the difusor's site: tree %s before, %s after", before, after)
	}
	var b strings.Builder
	res.WriteText(&b)
	t.Logf("check:\n%s", b.String())
	return res.Difusores[0]
}

func wantVerdict(t *testing.T, d check.Difusor, id string, v check.Verdict, detail ...string) {
	t.Helper()
	r := d.Row(id)
	if r == nil {
		t.Fatalf("no row %s", id)
	}
	if r.Verdict != v {
		t.Errorf("%s: %s (%s: %s), want %s", id, r.Verdict, r.Value, r.Detail, v)
	}
	for _, s := range detail {
		if !strings.Contains(r.Detail+" "+r.Fix, s) {
			t.Errorf("%s: detail %q does not say %q", id, r.Detail, s)
		}
	}
}

// TestCheckCompliantDifusorPasses: a difusor with the documented nginx
// rules and an OpenSSH SFTP server passes every row, with measured figures.
func TestCheckCompliantDifusorPasses(t *testing.T) {
	d := startDifusor(t, sshdtest.Options{}, nginxtest.Options{})
	c := checkConfig(t, d, "min_free_disk: 1MB, min_upload_rate: 100kB/s")
	got := runCheck(t, d, c)
	for _, r := range got.Rows {
		if r.Verdict != check.Pass {
			t.Errorf("%s: %s %q (%s)", r.ID, r.Verdict, r.Value, r.Detail)
		}
	}
	if !got.Passed {
		t.Error("a compliant difusor did not pass")
	}
	for _, id := range []string{check.RowOS, check.RowWebServer, check.RowFreeDisk, check.RowUploadRate, check.RowCacheControl} {
		if r := got.Row(id); r == nil || r.Call == "" {
			t.Errorf("row %s is missing or not tied to the call", id)
		}
	}
	t.Logf("upload: %s (%s)", got.Row(check.RowUploadRate).Value, got.Row(check.RowUploadRate).Detail)
	if r := got.Row(check.RowUploadRate); r.Number == nil || *r.Number <= 0 {
		t.Errorf("upload rate %v: no sustained figure", r.Value)
	}
	if r := got.Row(check.RowFreeDisk); r.Number == nil || *r.Number <= 0 {
		t.Errorf("free disk %v: no figure", r.Value)
	}
	if r := got.Row(check.RowReadBackRate); r == nil || r.Number == nil || *r.Number < 1e6 {
		t.Errorf("read-back rate %+v: OpenSSH on loopback sends megabytes a second", r)
	}
	if r := got.Row(check.RowSFTPSessions); r.Number == nil || *r.Number < 9 {
		t.Errorf("sessions %v", r.Value)
	}
	for _, want := range []string{"posix-rename", "fsync", "statvfs"} {
		if !strings.Contains(got.Row(check.RowSFTPExtensions).Value, want) {
			t.Errorf("extensions %q lack %s", got.Row(check.RowSFTPExtensions).Value, want)
		}
	}
	if !strings.Contains(got.Row(check.RowWebServer).Value, "nginx") {
		t.Errorf("web server %q", got.Row(check.RowWebServer).Value)
	}
	if got.Row(check.RowClockSkew) == nil {
		t.Error("no clock skew row")
	}
}

// TestCheckWithoutCacheControlRuleFails: nginx serving the site with no
// rules fails the Cache-Control row, naming it; nothing else fails.
func TestCheckWithoutCacheControlRuleFails(t *testing.T) {
	d := startDifusor(t, sshdtest.Options{}, nginxtest.Options{NoRules: true})
	got := runCheck(t, d, checkConfig(t, d, "min_free_disk: 1MB, min_upload_rate: 100kB/s"))
	wantVerdict(t, got, check.RowCacheControl, check.Fail, "Cache-Control rule on json/main.json is missing no-cache, no-store, must-revalidate")
	if got.Passed || got.Fails != 1 {
		t.Errorf("passed %v with %d fails, want exactly the Cache-Control row", got.Passed, got.Fails)
	}
}

// TestCheckCachingHeadersContradictTheRule: the three directives with a
// max-age and an Expires in the future still fail.
func TestCheckCachingHeadersContradictTheRule(t *testing.T) {
	rules := `location = /json/main.json {
    add_header Cache-Control "no-cache, no-store, must-revalidate, max-age=600" always;
    expires 1h;
}`
	d := startDifusor(t, sshdtest.Options{}, nginxtest.Options{Rules: rules})
	got := runCheck(t, d, checkConfig(t, d, "min_free_disk: 1MB, min_upload_rate: 100kB/s"))
	wantVerdict(t, got, check.RowCacheControl, check.Fail, "contradict", "max-age=600")
}

// TestCheckUnreadableFilesFailFileModes: an SFTP server with umask 077
// (internal-sftp -u 0077) whose root was itself created with that umask
// (0700). Every file prepcast writes gets file_mode 0644, so the file is
// not the problem: nginx, running as nobody, cannot enter root. That is
// what a difusor sees when its webroot was made over SFTP with a
// restrictive umask, and the check must fail naming file modes and the
// directory.
func TestCheckUnreadableFilesFailFileModes(t *testing.T) {
	d := startDifusor(t, sshdtest.Options{ExtraConfig: []string{"Subsystem sftp internal-sftp -u 0077"}}, nginxtest.Options{})
	if err := os.Chmod(d.sshd.WebRoot(), 0o700); err != nil {
		t.Fatal(err)
	}
	got := runCheck(t, d, checkConfig(t, d, "min_free_disk: 1MB, min_upload_rate: 100kB/s"))
	wantVerdict(t, got, check.RowFileModes, check.Fail, "the web server cannot read files written over SFTP", "HTTP 403",
		fmt.Sprintf("directory %s is 0700", d.sshd.Root()), "file_mode", "umask")
	wantVerdict(t, got, check.RowWriteRename, check.Pass)
	if got.Passed {
		t.Error("passed")
	}
}

// TestCheckUploadBelowThresholdFails: a threshold above what loopback
// gives fails the upload row, with the figure measured.
func TestCheckUploadBelowThresholdFails(t *testing.T) {
	d := startDifusor(t, sshdtest.Options{}, nginxtest.Options{})
	got := runCheck(t, d, checkConfig(t, d, "min_free_disk: 1MB, min_upload_rate: 1000GB/s"))
	wantVerdict(t, got, check.RowUploadRate, check.Fail)
	if r := got.Row(check.RowUploadRate); r.Number == nil || *r.Number <= 0 {
		t.Errorf("no figure: %+v", r)
	}
	if got.Fails != 1 {
		t.Errorf("%d fails, want only the upload row", got.Fails)
	}
}

// TestCheckFreeDiskBelowThresholdFails: free disk is read with statvfs and
// compared with the threshold.
func TestCheckFreeDiskBelowThresholdFails(t *testing.T) {
	d := startDifusor(t, sshdtest.Options{}, nginxtest.Options{})
	got := runCheck(t, d, checkConfig(t, d, "min_free_disk: 1000TB, min_upload_rate: 100kB/s"))
	wantVerdict(t, got, check.RowFreeDisk, check.Fail, "below the call's minimum of 1000000.0 GB")
}

// TestCheckWhilePublishing runs a check while cuts are pushed to the same
// difusor: every push acks, the site ends holding exactly the last cut (no
// file of the check left, none of the cut touched), and the check passes.
// The check takes no lock: it writes only its own names.
func TestCheckWhilePublishing(t *testing.T) {
	e := newEnv(t, 1)
	s := e.servers[0]
	eng := e.engine()
	ci := e.nextCut()
	requireOK(t, eng.Push(context.Background(), e.specs()), ci.Seq)
	ng := nginxtest.Start(t, nginxtest.Options{Root: s.WebRoot()})
	c := checkConfig(t, &difusorSite{sshd: s, nginx: ng}, "min_free_disk: 1MB, min_upload_rate: 10kB/s")

	done := make(chan *check.Result, 1)
	go func() {
		res, err := check.Run(context.Background(), check.Options{Config: c, Targets: c.EnabledTargets(), UploadTest: 2 * time.Second, Store: e.store})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	pushes := 0
	var res *check.Result
	for res == nil || pushes < 2 {
		ci = e.nextCut()
		requireOK(t, eng.Push(context.Background(), e.specs()), ci.Seq)
		pushes++
		if res == nil {
			select {
			case res = <-done:
			default:
			}
		}
	}
	e.checkTarget(s.WebRoot(), ci.Seq)
	if res == nil {
		t.Fatal("no check result")
	}
	for _, r := range res.Difusores[0].Rows {
		if r.Verdict == check.Fail {
			t.Errorf("%s failed while publishing: %s %s", r.ID, r.Value, r.Detail)
		}
	}
	if r := res.Difusores[0].Row(check.RowRetainedCuts); r == nil || r.Verdict != check.Pass || !strings.Contains(r.Detail, "latest cut ") {
		t.Errorf("retained cuts row: %+v", r)
	}
	// The pushes publish their proof in .well-known/prepcast/; the check's
	// probe files must all be gone from it.
	probes, _ := filepath.Glob(filepath.Join(s.WebRoot(), ".well-known", "prepcast", "check-*"))
	if len(probes) > 0 {
		t.Errorf("the check left its probe files behind: %v", probes)
	}
	t.Logf("%d pushes during the check", pushes)
}

// TestCheckSSHFailuresNameTheStep: a changed host key fails ssh_host_key,
// a key the server does not know fails ssh_auth (the host key passing),
// each with targets/sftp's error; a closed port fails ssh_reach.
func TestCheckSSHFailuresNameTheStep(t *testing.T) {
	s := sshdtest.Start(t, sshdtest.Options{})
	other := sshdtest.Start(t, sshdtest.Options{})
	stranger := filepath.Join(t.TempDir(), "id_ed25519")
	if _, err := sshdtest.GenerateKey(stranger); err != nil {
		t.Fatal(err)
	}
	cfg := func(hostKey, identity, addr string) *config.Config {
		dir := t.TempDir()
		c, err := config.Parse([]byte(fmt.Sprintf("source: %s/s\nstate_dir: %s/st\nsigning_key: %s/k\ntargets:\n  - {name: d, address: %q, user: root, identity_file: %s, host_key: %q, root: %s}\n",
			dir, dir, dir, addr, identity, hostKey, s.Root())), dir)
		if err != nil {
			t.Fatal(err)
		}
		c.Timeouts.Dial, c.Timeouts.Operation = 3*time.Second, 5*time.Second
		return c
	}
	run := func(c *config.Config) check.Difusor {
		res, err := check.Run(context.Background(), check.Options{Config: c, Targets: c.EnabledTargets(), UploadTest: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return res.Difusores[0]
	}
	d := run(cfg(other.HostKeyLine(), s.ClientKeyPath(), s.Addr()))
	wantVerdict(t, d, check.RowSSHReach, check.Pass)
	wantVerdict(t, d, check.RowSSHHostKey, check.Fail, "HOST KEY CHANGED")
	wantVerdict(t, d, check.RowSSHAuth, check.Fail)

	d = run(cfg(s.HostKeyLine(), stranger, s.Addr()))
	wantVerdict(t, d, check.RowSSHHostKey, check.Pass)
	wantVerdict(t, d, check.RowSSHAuth, check.Fail, "refused the key", "authorized_keys")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d = run(cfg(s.HostKeyLine(), s.ClientKeyPath(), addr))
	wantVerdict(t, d, check.RowSSHReach, check.Fail, "connection refused")
	if d.Passed {
		t.Error("an unreachable difusor passed")
	}
}

// TestCheckSlowDownloadWarns: MySecureShell as Debian ships it sends 5 KB/s
// a connection; the check measures that and warns, naming the setting,
// while the rows the call asks for are not affected by it.
func TestCheckSlowDownloadWarns(t *testing.T) {
	spec, _ := servers.Lookup("mysecureshell")
	srv := servers.Start(t, spec)
	dir := t.TempDir()
	c, err := config.Parse([]byte(fmt.Sprintf(`source: %s/src
state_dir: %s/state
signing_key: %s/key
targets:
  - {name: difusor, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s, allow_non_atomic_replace: true}
check: {min_free_disk: 1MB, min_upload_rate: 100kB/s}
`, dir, dir, dir, srv.Addr, srv.User, srv.ClientKey, srv.HostKey, srv.Root)), dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := check.Run(context.Background(), check.Options{Config: c, Targets: c.EnabledTargets(), UploadTest: time.Second, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res.WriteText(&b)
	t.Logf("check:\n%s", b.String())
	d := res.Difusores[0]
	wantVerdict(t, d, check.RowReadBackRate, check.Warn, "verify.time_per_push", "Download 0")
	if r := d.Row(check.RowReadBackRate); r.Number == nil || *r.Number > 20e3 || *r.Number < 1e3 {
		t.Errorf("read-back rate %+v, want about 5 KB/s (Download 5k)", r)
	}
	wantVerdict(t, d, check.RowUploadRate, check.Pass)
	// allow_non_atomic_replace is set: no posix-rename is a warning.
	wantVerdict(t, d, check.RowSFTPExtensions, check.Warn, "allow_non_atomic_replace")
	wantVerdict(t, d, check.RowWriteRename, check.Pass)
	if d.Row(check.RowFreeDisk).Verdict == check.Fail {
		t.Errorf("free disk %+v: a server whose statvfs fails is not a failed requirement", d.Row(check.RowFreeDisk))
	}
}
