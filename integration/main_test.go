package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/integration/sshdtest"
)

// TestMain says once, before any test runs, why the tests that need a real
// sshd cannot run here and which Debian package provides it. With
// PREPCAST_REQUIRE_SSHD=1 (make test, CI) that is one failure instead of
// one per test; otherwise those tests skip and the others run.
func TestMain(m *testing.M) {
	if reason := sshdtest.Unavailable(); reason != "" {
		if os.Getenv(sshdtest.RequireEnv) == "1" {
			fmt.Fprintf(os.Stderr, "FAIL: integration tests need a real OpenSSH sshd: %s.\n%s=1 requires it; unset it to skip these tests instead.\n", reason, sshdtest.RequireEnv)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "integration: skipping every test that needs a real OpenSSH sshd: %s.\n", reason)
		sshdtest.Quiet()
	}
	os.Exit(m.Run())
}

// Without sshd, the integration tests say so once, naming the Debian
// package, and skip; with PREPCAST_REQUIRE_SSHD=1 that is one failure.
func TestMissingSSHDIsOneMessage(t *testing.T) {
	if os.Getenv("PREPCAST_SSHD") != "" {
		t.Skip("already running without sshd")
	}
	run := func(require string) (string, int) {
		cmd := exec.Command(os.Args[0], "-test.run", "^(TestStatusShowsUnreachableTargetAndRecovery|TestPushFiveCutsToThreeTargets|TestWrongHostKeyRefused)$", "-test.v")
		cmd.Env = append(os.Environ(), "PREPCAST_SSHD=/nonexistent/sshd", sshdtest.RequireEnv+"="+require)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run("")
	if code != 0 || strings.Count(out, "Debian package openssh-server") != 1 || strings.Contains(out, "--- FAIL") || !strings.Contains(out, "--- SKIP") {
		t.Fatalf("without sshd: exit %d, want 0 with one message naming openssh-server and skips:\n%s", code, out)
	}
	out, code = run("1")
	if code != 1 || strings.Count(out, "Debian package openssh-server") != 1 || strings.Contains(out, "=== RUN") {
		t.Fatalf("without sshd, %s=1: exit %d, want 1 with one message and no test run:\n%s", sshdtest.RequireEnv, code, out)
	}
}
