package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/prepcast/prepcast/dashboard/browsertest"
	"github.com/prepcast/prepcast/integration/sshdtest"
	"github.com/prepcast/prepcast/packager"
)

// rowState is what a person sees of one difusor's row.
type rowState struct {
	Name, Class, Text string
}

const readRows = `Array.from(document.querySelectorAll('#difusores tbody tr')).map(r => ({
  name: r.dataset.difusor, class: r.className, text: r.innerText }))`

// The daemon's dashboard, opened in a real headless Chromium while the
// daemon pushes to three real sshd difusores: every difusor is listed with
// the latest cut; when one difusor's sshd stops and a new cut is made, the
// page (never reloaded) shows the new cut and marks that difusor as
// lagging, with its error's cause. SIGTERM then stops the daemon with exit
// 0, as systemd expects.
func TestDashboardInBrowserFollowsTheNight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd, the daemon and a browser")
	}
	var servers []*sshdtest.Server
	for range 3 {
		servers = append(servers, sshdtest.Start(t, sshdtest.Options{}))
	}
	ctx := browsertest.Start(t, 1280, 720)
	bin := buildPrepcast(t)
	dir := t.TempDir()
	src, stateDir := filepath.Join(dir, "results"), filepath.Join(dir, "state")
	if out, err := exec.Command(bin, "keygen", "--out", filepath.Join(dir, "keys")).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "source: %s\nstate_dir: %s\nsigning_key: %s\nlisten: %q\nretry: {attempts: 2, base: 100ms, max: 200ms}\n"+
		"timeouts: {dial: 2s}\nmax_lag: 15m\nschedule: {every: 10m, start: \"2099-06-02T20:00\", end: \"2099-06-03T20:00\"}\ntargets:\n",
		src, stateDir, filepath.Join(dir, "keys", "manifest.key"), addr)
	for i, s := range servers {
		fmt.Fprintf(&b, "  - {name: difusor-%d, address: %q, user: %s, identity_file: %s, host_key: %q, root: %s}\n",
			i+1, s.Addr(), s.User(), s.ClientKeyPath(), s.HostKeyLine(), s.Root())
	}
	cfg := filepath.Join(dir, "prepcast.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := newTreeGen(17)
	gen.next(t, src)
	if out, err := exec.Command(bin, "cut", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("cut: %v\n%s", err, out)
	}
	store, err := packager.OpenStore(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	cut1, _ := store.Latest()

	daemon := exec.Command(bin, "run", "--config", cfg)
	var out strings.Builder
	daemon.Stdout, daemon.Stderr = &out, &out
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { daemon.Wait(); close(exited) }()
	t.Cleanup(func() {
		daemon.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("daemon output:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not listen on %s", addr)
		}
	}

	// The start-up catch-up brings every difusor to cut 1; the page shows it.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+addr+"/"), chromedp.WaitVisible("#difusores")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	latest1 := fmt.Sprintf("Último corte: %d (%s)", cut1.Seq, cut1.ID)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelector('#latest').innerText.startsWith(%q) && document.querySelectorAll('#difusores tbody tr.st-ok').length === 3`, latest1),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		rows, _ := chromedp.Run(ctx, chromedp.Evaluate[[]rowState](readRows))
		t.Fatalf("the page does not show 3 difusores up to date on cut 1: %v\n%+v", err, rows)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]rowState](readRows))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if want := fmt.Sprintf("difusor-%d", i+1); r.Name != want || !strings.Contains(r.Text, "al día") || !strings.Contains(r.Text, cut1.ID) {
			t.Errorf("row %d: %+v, want %s up to date on %s", i, r, want, cut1.ID)
		}
	}
	browsertest.Screenshot(t, ctx, "1-all-up-to-date.png")

	// difusor-3's server goes down; a new cut is made and pushed.
	if err := servers[2].Stop(); err != nil {
		t.Fatal(err)
	}
	gen.next(t, src)
	if err := daemon.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.querySelector('#latest').innerText.startsWith('Último corte: 2 ') &&
		 document.querySelector('tr[data-difusor="difusor-3"]').classList.contains('lagging') &&
		 document.querySelector('tr[data-difusor="difusor-3"]').innerText.includes('con falla') &&
		 document.querySelectorAll('#difusores tbody tr.st-ok').length === 2`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		rows, _ := chromedp.Run(ctx, chromedp.Evaluate[[]rowState](readRows))
		t.Fatalf("the page does not mark difusor-3 after cut 2: %v\n%+v", err, rows)
	}
	t.Logf("the page showed cut 2 and the lagging difusor %s after the signal", time.Since(start).Round(time.Millisecond))
	if kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)); err != nil || !kept {
		t.Fatalf("the page was reloaded to update (%v)", err)
	}
	d3, err := chromedp.Run(ctx, chromedp.Text(`tr[data-difusor="difusor-3"]`))
	if err != nil || !strings.Contains(d3, "1 corte") || !strings.Contains(d3, "connection refused") {
		t.Errorf("difusor-3 reads %q (%v): want its lag and the cause", d3, err)
	}
	browsertest.Screenshot(t, ctx, "2-difusor-3-down.png")
	cut2, _ := store.Latest()
	m, _, _ := store.Manifest(cut2.Seq)
	for _, s := range servers[:2] {
		if err := holds(s.WebRoot(), m); err != nil {
			t.Errorf("%s: %v", s.Addr(), err)
		}
	}

	// The systemd unit's stop: SIGTERM, a clean stop, exit 0.
	if err := daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop on SIGTERM")
	}
	if code := daemon.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the daemon exited %d on SIGTERM, want 0\n%s", code, out.String())
	}
}
