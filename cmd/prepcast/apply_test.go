package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prepcast/prepcast/packager"
)

// "prepcast apply" without a trusted key, or with flags that contradict
// each other, exits 2 and says how to configure it; a refused package exits
// 1. Nothing is written to the root but prepcast's own directory.
func TestApplyExitCodes(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	pubFile := filepath.Join(t.TempDir(), "institute.pub")
	if err := os.WriteFile(pubFile, packager.EncodePublicKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	req := `{"format":"prepcast-apply/2","public_key":"` + strings.Repeat("A", 43) + `=","package_size":10,"to_seq":1,"to_manifest":"` + strings.Repeat("a", 64) + `"}` + "\n0123456789"
	for _, tt := range []struct {
		name  string
		args  []string
		code  int
		wants []string
	}{
		{"no key", nil, exitUsage, []string{"no-key", "--public-key FILE", "--trust-on-first-use"}},
		{"both key modes", []string{"--public-key", pubFile, "--trust-on-first-use"}, exitUsage, []string{"one or the other"}},
		{"retention too short", []string{"--public-key", pubFile, "--retention", "1s"}, exitUsage, []string{"shorter than 1m0s"}},
		{"garbage package", []string{"--public-key", pubFile}, exitFailed, []string{"bad-package"}},
		{"trust on first use warns", []string{"--trust-on-first-use"}, exitFailed, []string{"warning: --trust-on-first-use", "bad-package"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			var stdout, stderr bytes.Buffer
			err := cmdApply(context.Background(), append([]string{"--root", root}, tt.args...), strings.NewReader(req), &stdout, &stderr)
			code := exitCode(context.Background(), err, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, out)
			}
			for _, w := range tt.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q: %s", w, out)
				}
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if e.Name() != ".prepcast" {
					t.Errorf("%s written to the root", e.Name())
				}
			}
		})
	}
}
