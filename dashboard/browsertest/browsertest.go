// Package browsertest opens pages in a real headless Chromium for tests,
// driven with chromedp, and keeps their screenshots as test artifacts.
//
// [Start] skips the test when Chromium is not installed (Debian package
// chromium), saying so once per test binary, unless
// PREPCAST_REQUIRE_SSHD=1 (set by make test and CI, which install it),
// which turns that into a failure.
package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is the browser the tests run: /usr/bin/chromium, or the
// path in PREPCAST_CHROMIUM.
var ChromiumPath = chromiumPath()

func chromiumPath() string {
	if p := os.Getenv("PREPCAST_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// RequireEnv, set to "1", makes a missing browser a failure.
const RequireEnv = "PREPCAST_REQUIRE_SSHD"

// ArtifactsEnv names a directory where screenshots are kept after the
// tests; without it they go to the test's temporary directory.
const ArtifactsEnv = "PREPCAST_ARTIFACTS"

var told atomic.Bool

// Unavailable returns why no browser can run here, or "".
func Unavailable() string {
	if _, err := os.Stat(ChromiumPath); err != nil {
		return ChromiumPath + " not found (install the Debian package chromium: apt-get install chromium)"
	}
	return ""
}

// Start starts a fresh headless Chromium (its own user-data-dir, no
// network services of its own) and returns a chromedp context for a tab of
// width×height CSS pixels; the browser ends with the test.
func Start(t testing.TB, width, height int) context.Context {
	t.Helper()
	if reason := Unavailable(); reason != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("browsertest: %s (%s=1 requires it)", reason, RequireEnv)
		}
		if told.Swap(true) {
			t.SkipNow()
		}
		t.Skipf("browsertest: %s; skipping the tests that need a browser", reason)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("browsertest: start %s: %v", ChromiumPath, err)
	}
	return tctx
}

// Screenshot saves a PNG of what the window shows as name in the artifacts
// directory and returns its path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("browsertest: screenshot: %v", err)
	}
	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}
